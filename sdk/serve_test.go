package sdk

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type wireLimits struct {
	MaxItems int           `dw:"max_items" min:"1"`
	Mode     string        `dw:"mode" enum:"fast,safe"`
	Buffer   Size          `dw:"buffer" min:"1KiB"`
	Interval time.Duration `dw:"interval" min:"1ms"`
}

// testSubsystem is a small in-memory Subsystem; fields are function hooks.
type testSubsystem struct {
	mu       sync.Mutex
	applied  []wireLimits
	cfg      Config
	applyErr error
}

func (s *testSubsystem) Info() Info { return Info{Name: "testsub", Version: "1.2.3"} }
func (s *testSubsystem) Configure(_ context.Context, cfg Config) error {
	var settings struct {
		Root string `dw:"root"`
	}
	if err := cfg.DecodeSettings(&settings); err != nil {
		return err
	}
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
	return nil
}
func (s *testSubsystem) DefaultLimits() wireLimits {
	return wireLimits{MaxItems: 10, Mode: "fast", Buffer: 64 << 20, Interval: time.Second}
}
func (s *testSubsystem) ApplyLimits(_ context.Context, l wireLimits) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applyErr != nil {
		return s.applyErr
	}
	s.applied = append(s.applied, l)
	return nil
}
func (s *testSubsystem) Metrics(context.Context) (Metrics, error) {
	return Metrics{Backpressure: BackpressureElevated, Reason: "half full", Values: []Metric{
		Gauge("items", "items held", 5, "shard", "a"),
		Counter("evictions", "items evicted", 7),
	}}, nil
}
func (s *testSubsystem) Health(context.Context) Health {
	return Health{Status: HealthDegraded, Message: "one shard down", Components: []ComponentHealth{
		{Name: "shard-a", Status: HealthServing, CheckedAt: time.Unix(100, 0)},
		{Name: "shard-b", Status: HealthNotServing, Message: "disk gone"},
	}}
}

var _ Subsystem[wireLimits] = (*testSubsystem)(nil)

// memKV is a map-backed KV for tests.
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (k *memKV) Put(_ context.Context, key string, v []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string][]byte{}
	}
	k.m[key] = slices.Clone(v)
	return nil
}
func (k *memKV) Get(_ context.Context, key string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	if !ok {
		return nil, ErrNotFound
	}
	return v, nil
}
func (k *memKV) Delete(_ context.Context, key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, key)
	return nil
}
func (k *memKV) List(_ context.Context, prefix string, fn func(string, []byte) error) error {
	k.mu.Lock()
	keys := slices.Sorted(maps.Keys(k.m))
	k.mu.Unlock()
	for _, key := range keys {
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		v, err := k.Get(context.Background(), key)
		if err != nil {
			continue
		}
		if err := fn(key, v); err != nil {
			return err
		}
	}
	return nil
}

// connect serves impl in-process over a real gRPC connection with a broker
// and returns the host-side client.
func connect(t *testing.T, impl *testSubsystem) *Client {
	t.Helper()
	srv := newSubsystemServer[wireLimits](impl, hclog.NewNullLogger())
	ps := map[string]plugin.Plugin{PluginName: newServerPlugin[wireLimits](impl, srv)}
	gc, _ := plugin.TestPluginGRPCConn(t, false, ps)
	t.Cleanup(func() {
		srv.close()
		// Close asks the server to stop (go-plugin's controller Shutdown);
		// calling the server's Stop as well races inside go-plugin.
		gc.Close()
	})
	raw, err := gc.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*Client)
}

func TestLifecycleOverGRPC(t *testing.T) {
	ctx := context.Background()
	impl := &testSubsystem{}
	c := connect(t, impl)

	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "testsub" || info.Version != "1.2.3" || info.SDKVersion != Version {
		t.Fatalf("info = %+v", info)
	}
	if info.DefaultLimits["buffer"] != "64MiB" || info.DefaultLimits["interval"] != "1s" {
		t.Fatalf("default limits = %v", info.DefaultLimits)
	}

	// Before Configure: ApplyLimits is refused, health says why.
	if _, err := c.ApplyLimits(ctx, map[string]any{}, 1); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("apply before configure: %v", err)
	}
	h, err := c.Health(ctx)
	if err != nil || h.Status != HealthNotServing {
		t.Fatalf("health before configure: %+v %v", h, err)
	}

	// Settings are strict too.
	if err := c.Configure(ctx, ConfigureRequest{Subsystem: "testsub", Settings: map[string]any{"rooot": "x"}}); !errors.Is(err, ErrInvalidSettings) ||
		!strings.Contains(err.Error(), `subsystems.testsub.rooot: unknown key (did you mean "root"?)`) {
		t.Fatalf("bad settings: %v", err)
	}
	kv := &memKV{}
	if err := c.Configure(ctx, ConfigureRequest{Subsystem: "testsub", Settings: map[string]any{"root": "x"}, DataDir: "/data", KV: kv}); err != nil {
		t.Fatal(err)
	}
	if err := c.Configure(ctx, ConfigureRequest{Subsystem: "testsub"}); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("second configure: %v", err)
	}

	// ValidateLimits rejects with key paths and changes nothing.
	before, gen0, err := c.Limits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ValidateLimits(ctx, map[string]any{"max_items": -5, "mode": "ring", "buffer": "lots", "bogus": 1})
	if !errors.Is(err, ErrInvalidLimits) {
		t.Fatalf("validate bad limits: %v", err)
	}
	for _, want := range []string{"limits.max_items: must be >= 1, got -5", `limits.mode: must be one of fast, safe, got "ring"`, "limits.buffer:", "limits.bogus: unknown key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validate error %q lacks %q", err, want)
		}
	}
	after, gen1, _ := c.Limits(ctx)
	if !reflect.DeepEqual(before, after) || gen0 != gen1 {
		t.Fatalf("ValidateLimits changed limits: %v -> %v", before, after)
	}
	norm, err := c.ValidateLimits(ctx, map[string]any{"max_items": 3})
	if err != nil || norm["max_items"] != float64(3) || norm["mode"] != "fast" {
		t.Fatalf("validate good limits: %v %v", norm, err)
	}

	// ApplyLimits is idempotent and GetLimits echoes it.
	want := map[string]any{"max_items": 3, "mode": "safe", "buffer": "1MiB", "interval": "250ms"}
	a1, err := c.ApplyLimits(ctx, want, 7)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := c.ApplyLimits(ctx, want, 7)
	if err != nil || !reflect.DeepEqual(a1, a2) {
		t.Fatalf("apply twice: %v vs %v (%v)", a1, a2, err)
	}
	got, gen, err := c.Limits(ctx)
	if err != nil || gen != 7 || !reflect.DeepEqual(got, a1) {
		t.Fatalf("limits = %v gen %d (%v), want %v gen 7", got, gen, err, a1)
	}
	impl.mu.Lock()
	last := impl.applied[len(impl.applied)-1]
	impl.mu.Unlock()
	if last != (wireLimits{MaxItems: 3, Mode: "safe", Buffer: 1 << 20, Interval: 250 * time.Millisecond}) {
		t.Fatalf("plugin got %+v", last)
	}

	// A failing ApplyLimits keeps the old limits in force.
	impl.mu.Lock()
	impl.applyErr = errors.New("cannot shrink now")
	impl.mu.Unlock()
	if _, err := c.ApplyLimits(ctx, map[string]any{"max_items": 1}, 8); err == nil || !strings.Contains(err.Error(), "cannot shrink now") {
		t.Fatalf("failing apply: %v", err)
	}
	got, gen, _ = c.Limits(ctx)
	if gen != 7 || got["max_items"] != float64(3) {
		t.Fatalf("after failed apply: %v gen %d", got, gen)
	}

	// Metrics and health cross the wire whole.
	m, err := c.Metrics(ctx)
	if err != nil || m.Backpressure != BackpressureElevated || m.Reason != "half full" || len(m.Values) != 2 ||
		m.Values[0].Labels["shard"] != "a" || m.Values[1].Kind != KindCounter || m.Values[1].Value != 7 {
		t.Fatalf("metrics = %+v %v", m, err)
	}
	h, err = c.Health(ctx)
	if err != nil || h.Status != HealthDegraded || len(h.Components) != 2 || h.Components[1].Message != "disk gone" ||
		!h.Components[0].CheckedAt.Equal(time.Unix(100, 0)) {
		t.Fatalf("health = %+v %v", h, err)
	}

	// Host services: the plugin's KV reaches the store the host gave it.
	impl.mu.Lock()
	pkv := impl.cfg.KV
	impl.mu.Unlock()
	if pkv == nil {
		t.Fatal("plugin got no KV")
	}
	if err := pkv.Put(ctx, "dw://internal/backup/j1", []byte("state")); err != nil {
		t.Fatal(err)
	}
	if v, err := kv.Get(ctx, "dw://internal/backup/j1"); err != nil || string(v) != "state" {
		t.Fatalf("host store has %q %v", v, err)
	}
	if _, err := pkv.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	for _, k := range []string{"b/1", "a/2", "a/1"} {
		if err := pkv.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	var listed []string
	if err := pkv.List(ctx, "a/", func(k string, v []byte) error {
		listed = append(listed, k+"="+string(v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(listed, ",") != "a/1=a/1,a/2=a/2" {
		t.Fatalf("list = %v", listed)
	}
	if err := pkv.Put(ctx, "", nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty key: %v", err)
	}
	if err := pkv.Put(ctx, "big", make([]byte, MaxKVValueBytes+1)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("big value: %v", err)
	}
	if err := pkv.Delete(ctx, "a/1"); err != nil {
		t.Fatal(err)
	}
	if err := pkv.Delete(ctx, "a/1"); err != nil {
		t.Fatalf("delete is idempotent: %v", err)
	}
}
