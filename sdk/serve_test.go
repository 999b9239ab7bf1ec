package sdk

import (
	"context"
	"errors"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
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
// and returns a host-side client.
func connect(t *testing.T, impl *testSubsystem) *testClient {
	t.Helper()
	return serveInProcess[wireLimits](t, impl, nil)
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
	if err != nil || h.GetStatus() != dwv1.HealthStatus_HEALTH_STATUS_NOT_SERVING {
		t.Fatalf("health before configure: %+v %v", h, err)
	}

	// Settings are strict too.
	if err := c.Configure(ctx, Config{Subsystem: "testsub", Settings: map[string]any{"rooot": "x"}}); !errors.Is(err, ErrInvalidSettings) ||
		!strings.Contains(err.Error(), `subsystems.testsub.rooot: unknown key (did you mean "root"?)`) {
		t.Fatalf("bad settings: %v", err)
	}
	kv := &memKV{}
	if err := c.Configure(ctx, Config{Subsystem: "testsub", Settings: map[string]any{"root": "x"}, DataDir: "/data", KV: kv}); err != nil {
		t.Fatal(err)
	}
	if err := c.Configure(ctx, Config{Subsystem: "testsub"}); !errors.Is(err, ErrFailedPrecondition) {
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
	if err != nil || norm["max_items"] != int64(3) || norm["mode"] != "fast" {
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
	if gen != 7 || got["max_items"] != int64(3) {
		t.Fatalf("after failed apply: %v gen %d", got, gen)
	}

	// Metrics and health cross the wire whole.
	m, err := c.Metrics(ctx)
	if err != nil || m.GetBackpressure() != dwv1.Backpressure_BACKPRESSURE_ELEVATED || m.GetBackpressureReason() != "half full" || len(m.GetMetrics()) != 2 ||
		m.GetMetrics()[0].GetLabels()["shard"] != "a" || m.GetMetrics()[1].GetKind() != dwv1.MetricKind_METRIC_KIND_COUNTER || m.GetMetrics()[1].GetValue() != 7 {
		t.Fatalf("metrics = %+v %v", m, err)
	}
	hc, err := c.Health(ctx)
	if err != nil || hc.GetStatus() != dwv1.HealthStatus_HEALTH_STATUS_DEGRADED || len(hc.GetComponents()) != 2 || hc.GetComponents()[1].GetMessage() != "disk gone" ||
		!hc.GetComponents()[0].GetCheckedAt().AsTime().Equal(time.Unix(100, 0)) {
		t.Fatalf("health = %+v %v", hc, err)
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

// TestConfigureAppliesLimitsOnce: Configure carries the starting limits and
// the plugin's ApplyLimits runs once, with them, not first with defaults.
func TestConfigureAppliesLimitsOnce(t *testing.T) {
	ctx := context.Background()
	impl := &testSubsystem{}
	c := connect(t, impl)
	if _, err := c.ConfigureWith(ctx, Config{Subsystem: "testsub"}, map[string]any{"max_items": 0}, 3); !errors.Is(err, ErrInvalidLimits) ||
		!strings.Contains(err.Error(), "limits.max_items: must be >= 1") {
		t.Fatalf("configure with bad limits: %v", err)
	}
	impl.mu.Lock()
	configured := impl.cfg.Subsystem != ""
	impl.mu.Unlock()
	if configured {
		t.Fatal("the plugin was configured although its starting limits were invalid")
	}
	applied, err := c.ConfigureWith(ctx, Config{Subsystem: "testsub"}, map[string]any{"max_items": 4, "mode": "safe"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if applied["max_items"] != int64(4) || applied["mode"] != "safe" {
		t.Fatalf("applied = %v", applied)
	}
	impl.mu.Lock()
	calls := slices.Clone(impl.applied)
	impl.mu.Unlock()
	if len(calls) != 1 || calls[0].MaxItems != 4 || calls[0].Mode != "safe" {
		t.Fatalf("ApplyLimits calls at start = %+v, want one with max_items 4", calls)
	}
	if _, gen, err := c.Limits(ctx); err != nil || gen != 3 {
		t.Fatalf("generation after configure = %d (%v), want 3", gen, err)
	}
}

type extremeLimits struct {
	I64  int64         `dw:"i64"`
	U64  uint64        `dw:"u64"`
	I8   int8          `dw:"i8"`
	Dur  time.Duration `dw:"dur"`
	Size Size          `dw:"size"`
	F    float64       `dw:"f"`
}

type extremeSubsystem struct {
	mu  sync.Mutex
	got []extremeLimits
}

func (s *extremeSubsystem) Info() Info                              { return Info{Name: "extreme", Version: "1"} }
func (s *extremeSubsystem) Configure(context.Context, Config) error { return nil }
func (s *extremeSubsystem) DefaultLimits() extremeLimits            { return extremeLimits{} }
func (s *extremeSubsystem) ApplyLimits(_ context.Context, l extremeLimits) error {
	s.mu.Lock()
	s.got = append(s.got, l)
	s.mu.Unlock()
	return nil
}
func (s *extremeSubsystem) Metrics(context.Context) (Metrics, error) { return Metrics{}, nil }
func (s *extremeSubsystem) Health(context.Context) Health            { return Health{} }

// TestLimitsCrossTheWireExactly: every value a limit can hold arrives
// unchanged, at the extremes of its type (google.protobuf.Struct, sdk 6.0's
// encoding, turned 2^53+1 into 2^53).
func TestLimitsCrossTheWireExactly(t *testing.T) {
	ctx := context.Background()
	impl := &extremeSubsystem{}
	c := serveInProcess[extremeLimits](t, impl, nil)
	if err := c.Configure(ctx, Config{Subsystem: "extreme"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		in   map[string]any
		want extremeLimits
	}{
		{map[string]any{"i64": int64(math.MaxInt64), "u64": uint64(math.MaxUint64), "i8": -128, "dur": "2562047h47m16.854775807s", "size": "8191PiB", "f": math.MaxFloat64},
			extremeLimits{I64: math.MaxInt64, U64: math.MaxUint64, I8: -128, Dur: math.MaxInt64, Size: 8191 << 50, F: math.MaxFloat64}},
		{map[string]any{"i64": int64(math.MinInt64), "u64": uint64(1<<53 + 1), "i8": 127, "dur": "1ns", "size": 9223372036854775807, "f": math.SmallestNonzeroFloat64},
			extremeLimits{I64: math.MinInt64, U64: 1<<53 + 1, I8: 127, Dur: 1, Size: math.MaxInt64, F: math.SmallestNonzeroFloat64}},
	}
	for i, tc := range cases {
		applied, err := c.ApplyLimits(ctx, tc.in, uint64(i+1))
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		impl.mu.Lock()
		got := impl.got[len(impl.got)-1]
		impl.mu.Unlock()
		if got != tc.want {
			t.Errorf("case %d: plugin got %+v, want %+v", i, got, tc.want)
		}
		// And back: the limits in force, as the host reads them.
		back := extremeLimits{}
		if err := Decode(&back, applied, "limits"); err != nil || back != tc.want {
			t.Errorf("case %d: limits in force read back as %+v (%v), want %+v", i, back, err, tc.want)
		}
	}
	// Out of range for the field's type is a problem, not a wrap-around.
	for _, bad := range []map[string]any{{"i8": 128}, {"u64": -1}, {"i64": uint64(math.MaxInt64) + 1}} {
		if _, err := c.ApplyLimits(ctx, bad, 9); !errors.Is(err, ErrInvalidLimits) {
			t.Errorf("ApplyLimits(%v) = %v, want ErrInvalidLimits", bad, err)
		}
	}
}

// panicAtStart panics in ApplyLimits when max_items is 13.
type panicAtStart struct{ testSubsystem }

func (s *panicAtStart) ApplyLimits(ctx context.Context, l wireLimits) error {
	if l.MaxItems == 13 {
		panic("unlucky pool size")
	}
	return s.testSubsystem.ApplyLimits(ctx, l)
}

// TestPanicInApplyLimitsAtStartNamesApplyLimits: the ApplyLimits that
// Configure runs is the plugin code that failed, and the error says so.
func TestPanicInApplyLimitsAtStartNamesApplyLimits(t *testing.T) {
	ctx := context.Background()
	c := serveInProcess[wireLimits](t, &panicAtStart{}, hclog.NewNullLogger())
	_, err := c.ConfigureWith(ctx, Config{Subsystem: "testsub"}, map[string]any{"max_items": 13}, 1)
	if !errors.Is(err, ErrPanicked) || !strings.Contains(err.Error(), "panicked in ApplyLimits: unlucky pool size (sdk/serve_test.go:") {
		t.Fatalf("Configure with limits that make ApplyLimits panic: %v", err)
	}
	// The plugin is not ready: its services stay refused.
	if _, err := c.Health(ctx); err != nil {
		t.Fatalf("the plugin stopped serving the contract: %v", err)
	}
}

type bigSettings struct {
	Seed uint64 `dw:"seed"`
	Min  int64  `dw:"min"`
}

// bigSettingsSubsystem records the settings Configure decodes.
type bigSettingsSubsystem struct {
	extremeSubsystem
	gotMu sync.Mutex
	got   bigSettings
}

func (s *bigSettingsSubsystem) Configure(_ context.Context, cfg Config) error {
	s.gotMu.Lock()
	defer s.gotMu.Unlock()
	return cfg.DecodeSettings(&s.got)
}

// TestSettingsCrossTheWireExactly: settings travel as exact JSON too (sdk
// 6.0's Struct turned 2^64-1 into 2^64, which no uint64 holds).
func TestSettingsCrossTheWireExactly(t *testing.T) {
	impl := &bigSettingsSubsystem{}
	c := serveInProcess[extremeLimits](t, impl, hclog.NewNullLogger())
	settings := map[string]any{"seed": uint64(math.MaxUint64), "min": int64(math.MinInt64)}
	if _, err := c.ConfigureWith(context.Background(), Config{Subsystem: "extreme", Settings: settings}, nil, 1); err != nil {
		t.Fatal(err)
	}
	impl.gotMu.Lock()
	got := impl.got
	impl.gotMu.Unlock()
	if got != (bigSettings{Seed: math.MaxUint64, Min: math.MinInt64}) {
		t.Fatalf("the plugin decoded %+v", got)
	}
}
