package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/datawarehouse/dw/sdk/v6"
)

func apply(t *testing.T, c *Cache, l Limits) {
	t.Helper()
	if err := c.ApplyLimits(context.Background(), l); err != nil {
		t.Fatalf("ApplyLimits(%+v): %v", l, err)
	}
}

func put(t *testing.T, c *Cache, key string, size int) int {
	t.Helper()
	n, err := c.Put(key, make([]byte, size))
	if err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, size, err)
	}
	return n
}

func present(c *Cache, keys ...string) []string {
	var out []string
	for _, k := range keys {
		c.mu.Lock()
		ok := c.lru.Contains(k)
		c.mu.Unlock()
		if ok {
			out = append(out, k)
		}
	}
	return out
}

func metricValue(t *testing.T, c *Cache, name string) float64 {
	t.Helper()
	m, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range m.Values {
		if v.Name == name {
			return v.Value
		}
	}
	t.Fatalf("no metric %q in %+v", name, m.Values)
	return 0
}

func TestShrinkMaxEntriesEvictsOldestAtOnce(t *testing.T) {
	c := New()
	for i := range 10 {
		put(t, c, fmt.Sprintf("k%d", i), 10)
	}
	// k0 becomes the most recently used.
	if _, err := c.Get("k0"); err != nil {
		t.Fatal(err)
	}
	apply(t, c, Limits{MaxEntries: 3, MaxBytes: sdk.MiB})

	got := present(c, "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9")
	if want := "k0 k8 k9"; strings.Join(got, " ") != want {
		t.Errorf("after shrinking max_entries to 3, kept %v, want %s", got, want)
	}
	if n, b := c.Len(); n != 3 || b != 3*12 {
		t.Errorf("Len = %d entries, %d bytes; want 3, 36", n, b)
	}
	if v := metricValue(t, c, "evictions"); v != 7 {
		t.Errorf("evictions = %v, want 7", v)
	}
}

func TestShrinkMaxBytesEvictsOldestUntilItFits(t *testing.T) {
	c := New()
	for i := range 8 {
		put(t, c, fmt.Sprintf("k%d", i), 510) // 512 bytes each with the key
	}
	apply(t, c, Limits{MaxEntries: 100, MaxBytes: 2 * sdk.KiB})
	if n, b := c.Len(); n != 4 || b != 2048 {
		t.Errorf("Len = %d entries, %d bytes; want 4, 2048", n, b)
	}
	if got := present(c, "k3", "k4", "k7"); strings.Join(got, " ") != "k4 k7" {
		t.Errorf("kept %v of k3 k4 k7, want k4 k7", got)
	}
	// Growing again evicts nothing.
	apply(t, c, DefaultLimits())
	if n, _ := c.Len(); n != 4 {
		t.Errorf("after growing: %d entries, want 4", n)
	}
}

func TestApplyLimitsIsIdempotent(t *testing.T) {
	c := New()
	l := Limits{MaxEntries: 5, MaxBytes: sdk.KiB}
	for i := range 5 {
		put(t, c, fmt.Sprintf("k%d", i), 100)
	}
	apply(t, c, l)
	n1, b1 := c.Len()
	apply(t, c, l)
	n2, b2 := c.Len()
	if n1 != n2 || b1 != b2 {
		t.Errorf("second apply changed the cache: %d/%d → %d/%d", n1, b1, n2, b2)
	}
}

func TestPutEvictsToMakeRoom(t *testing.T) {
	c := New()
	apply(t, c, Limits{MaxEntries: 3, MaxBytes: sdk.KiB})
	put(t, c, "a", 99)
	put(t, c, "b", 99)
	put(t, c, "c", 99)
	if n := put(t, c, "d", 99); n != 1 {
		t.Errorf("put over max_entries evicted %d, want 1", n)
	}
	if got := present(c, "a", "b", "c", "d"); strings.Join(got, " ") != "b c d" {
		t.Errorf("kept %v, want b c d", got)
	}
	// A 700-byte entry needs two of the 100-byte ones gone: 300+700 > 1024.
	if n := put(t, c, "e", 699); n != 1 {
		t.Errorf("put over max_bytes evicted %d, want 1 (b; then 200+700 fits)", n)
	}
	if got := present(c, "b", "c", "d", "e"); strings.Join(got, " ") != "c d e" {
		t.Errorf("kept %v, want c d e", got)
	}
	if _, b := c.Len(); b != 100+100+700 {
		t.Errorf("bytes = %d, want 900", b)
	}
}

func TestByteAccounting(t *testing.T) {
	c := New()
	put(t, c, "key", 10) // 13
	put(t, c, "k2", 5)   // 7
	if _, b := c.Len(); b != 20 {
		t.Fatalf("bytes = %d, want 20", b)
	}
	put(t, c, "key", 1) // replaced: 4
	if _, b := c.Len(); b != 11 {
		t.Fatalf("after overwrite bytes = %d, want 11", b)
	}
	if ok, err := c.Delete("key"); err != nil || !ok {
		t.Fatalf("Delete = %v, %v; want true, nil", ok, err)
	}
	if ok, err := c.Delete("key"); err != nil || ok {
		t.Fatalf("second Delete = %v, %v; want false, nil", ok, err)
	}
	if n, b := c.Len(); n != 1 || b != 7 {
		t.Fatalf("after delete Len = %d, %d; want 1, 7", n, b)
	}
	if v := metricValue(t, c, "evictions"); v != 0 {
		t.Errorf("overwrite and delete counted %v evictions, want 0", v)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, b := c.Len(); n != 0 || b != 0 {
		t.Errorf("after shutdown Len = %d, %d; want 0, 0", n, b)
	}
}

func TestPutGetCopies(t *testing.T) {
	c := New()
	v := []byte("hello")
	put(t, c, "k", 0)
	if _, err := c.Put("k", v); err != nil {
		t.Fatal(err)
	}
	v[0] = 'j'
	got, err := c.Get("k")
	if err != nil || string(got) != "hello" {
		t.Fatalf("Get = %q, %v; want hello", got, err)
	}
	got[0] = 'y'
	if again, _ := c.Get("k"); string(again) != "hello" {
		t.Errorf("the cache shares memory with its callers: %q", again)
	}
}

func TestErrors(t *testing.T) {
	c := New()
	apply(t, c, Limits{MaxEntries: 10, MaxBytes: sdk.KiB})

	_, err := c.Get("missing")
	if !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want sdk.ErrNotFound", err)
	}
	_, err = c.Put("big", make([]byte, 1022))
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "limits.max_bytes = 1KiB") {
		t.Errorf("Put(too big) = %v, want sdk.ErrInvalidArgument naming limits.max_bytes = 1KiB", err)
	}
	if _, err := c.Put("fits", make([]byte, 1020)); err != nil {
		t.Errorf("Put of exactly max_bytes: %v", err)
	}
	for _, key := range []string{"", strings.Repeat("x", MaxKeyBytes+1)} {
		if _, err := c.Put(key, nil); !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "must be 1 to 1024 bytes") {
			t.Errorf("Put(key of %d bytes) = %v, want sdk.ErrInvalidArgument", len(key), err)
		}
		if _, err := c.Get(key); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Get(key of %d bytes) = %v, want sdk.ErrInvalidArgument", len(key), err)
		}
		if _, err := c.Delete(key); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Delete(key of %d bytes) = %v, want sdk.ErrInvalidArgument", len(key), err)
		}
	}
}

func TestMetricsAndBackpressure(t *testing.T) {
	c := New()
	apply(t, c, Limits{MaxEntries: 10, MaxBytes: 10 * sdk.KiB})
	bp := func() sdk.Backpressure {
		t.Helper()
		m, err := c.Metrics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return m.Backpressure
	}
	for i := range 8 {
		put(t, c, fmt.Sprintf("k%d", i), 10)
	}
	if got := bp(); got != sdk.BackpressureNone {
		t.Errorf("at 8/10 entries backpressure = %v, want none", got)
	}
	put(t, c, "k8", 10)
	if got := bp(); got != sdk.BackpressureElevated {
		t.Errorf("at 9/10 entries backpressure = %v, want elevated", got)
	}
	for _, k := range []string{"k7", "k8"} {
		if _, err := c.Delete(k); err != nil {
			t.Fatal(err)
		}
	}
	// 7 entries of 12 bytes hold 84; 90 % of 10KiB is 9216 bytes.
	put(t, c, "big", 9216-84-3-1)
	if got := bp(); got != sdk.BackpressureNone {
		t.Errorf("at 8/10 entries and 9215/10240 bytes backpressure = %v, want none", got)
	}
	put(t, c, "big", 9216-84-3)
	if got := bp(); got != sdk.BackpressureElevated {
		t.Errorf("at 8/10 entries and 9216/10240 bytes backpressure = %v, want elevated", got)
	}

	if _, err := c.Get("k1"); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Get("nope")
	if h, m := metricValue(t, c, "hits"), metricValue(t, c, "misses"); h != 1 || m != 1 {
		t.Errorf("hits, misses = %v, %v; want 1, 1", h, m)
	}
	if h := c.Health(context.Background()); h.Status != sdk.HealthServing {
		t.Errorf("health = %v, want serving", h.Status)
	}
}

func TestLimitsDecoding(t *testing.T) {
	tests := []struct {
		in      map[string]any
		want    Limits
		wantErr string
	}{
		{in: map[string]any{}, want: DefaultLimits()},
		{in: map[string]any{"max_entries": 5, "max_bytes": "1MiB"}, want: Limits{MaxEntries: 5, MaxBytes: sdk.MiB}},
		{in: map[string]any{"max_bytes": 4096}, want: Limits{MaxEntries: 10000, MaxBytes: 4 * sdk.KiB}},
		{in: map[string]any{"max_entries": -5}, wantErr: "limits.max_entries: must be >= 1, got -5"},
		{in: map[string]any{"max_entries": 0}, wantErr: "limits.max_entries: must be >= 1, got 0"},
		{in: map[string]any{"max_entries": "ten"}, wantErr: `limits.max_entries: must be`},
		{in: map[string]any{"max_bytes": "1000B"}, wantErr: "limits.max_bytes: must be >= 1KiB"},
		{in: map[string]any{"max_bytes": "lots"}, wantErr: `limits.max_bytes: `},
		{in: map[string]any{"max_entry": 5}, wantErr: `limits.max_entry: unknown key (did you mean "max_entries"?)`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.in), func(t *testing.T) {
			l := DefaultLimits()
			err := sdk.Decode(&l, tt.in, "limits")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode = %v, want an error containing %q", err, tt.wantErr)
				}
				if l != DefaultLimits() {
					t.Errorf("a failed decode changed the limits to %+v", l)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l != tt.want {
				t.Errorf("Decode = %+v, want %+v", l, tt.want)
			}
		})
	}
}

func TestConfigureRejectsSettings(t *testing.T) {
	c := New()
	err := c.Configure(context.Background(), sdk.Config{Subsystem: "kvcache", Settings: map[string]any{"size": 3}})
	if !errors.Is(err, sdk.ErrInvalidSettings) || !strings.Contains(err.Error(), "subsystems.kvcache.size: unknown key") {
		t.Errorf("Configure with a setting = %v, want sdk.ErrInvalidSettings naming subsystems.kvcache.size", err)
	}
	if err := c.Configure(context.Background(), sdk.Config{Subsystem: "kvcache"}); err != nil {
		t.Errorf("Configure without settings: %v", err)
	}
}

// TestConcurrentUse is meant for -race: puts, gets, deletes, metrics and
// limit changes at once, then the books must balance.
func TestConcurrentUse(t *testing.T) {
	c := New()
	apply(t, c, Limits{MaxEntries: 50, MaxBytes: 4 * sdk.KiB})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				key := fmt.Sprintf("w%d-%d", w, i%80)
				switch i % 4 {
				case 0, 1:
					if _, err := c.Put(key, make([]byte, i%200)); err != nil {
						t.Error(err)
						return
					}
				case 2:
					if _, err := c.Get(key); err != nil && !errors.Is(err, sdk.ErrNotFound) {
						t.Error(err)
						return
					}
				case 3:
					if _, err := c.Delete(key); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			l := Limits{MaxEntries: 10 + i%50, MaxBytes: sdk.Size(1024 + 64*(i%64))}
			if err := c.ApplyLimits(context.Background(), l); err != nil {
				t.Error(err)
				return
			}
			if _, err := c.Metrics(context.Background()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()

	c.mu.Lock()
	defer c.mu.Unlock()
	var sum int64
	for _, k := range c.lru.Keys() {
		v, _ := c.lru.Peek(k)
		sum += entrySize(k, v)
	}
	if sum != c.bytes {
		t.Errorf("bytes counter %d, entries hold %d", c.bytes, sum)
	}
	if c.lru.Len() > c.limits.MaxEntries || c.bytes > int64(c.limits.MaxBytes) {
		t.Errorf("%d entries, %d bytes break limits %+v", c.lru.Len(), c.bytes, c.limits)
	}
}
