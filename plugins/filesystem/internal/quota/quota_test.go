package quota

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/sdk/v6"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const MiB = 1 << 20

// fakeClock is the injected clock: Sleep advances it and records the wait.
type fakeClock struct {
	mu      sync.Mutex
	t       time.Time
	slept   []time.Duration
	frozen  bool                                             // Sleep records but does not advance
	onSleep func(ctx context.Context, d time.Duration) error // optional, called first
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if c.onSleep != nil {
		if err := c.onSleep(ctx, d); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept = append(c.slept, d)
	if !c.frozen {
		c.t = c.t.Add(d)
	}
	return nil
}

// Slept returns the waits so far and forgets them.
func (c *fakeClock) Slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.slept
	c.slept = nil
	return s
}

func total(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum
}

func newTestQuotas(tb testing.TB, cfg Config, maxCallers int) (*Quotas, *fakeClock) {
	tb.Helper()
	clk := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	return newQuotas(cfg, maxCallers, clk.Now, clk.Sleep), clk
}

func mustAdmit(tb testing.TB, q *Quotas, caller string, firstBytes int64) {
	tb.Helper()
	if err := q.Admit(context.Background(), caller, firstBytes); err != nil {
		tb.Fatalf("Admit(%q, %d): %v", caller, firstBytes, err)
	}
}

func mustBytes(tb testing.TB, q *Quotas, caller string, n int64) {
	tb.Helper()
	if err := q.Bytes(context.Background(), caller, n); err != nil {
		tb.Fatalf("Bytes(%q, %d): %v", caller, n, err)
	}
}

// expectWaited checks the total of the waits since the last check.
func expectWaited(tb testing.TB, clk *fakeClock, want time.Duration) {
	tb.Helper()
	if got := total(clk.Slept()); got != want {
		tb.Fatalf("waited %v, want %v", got, want)
	}
}

func TestFiveMiBAtOneMiBPerSecond(t *testing.T) {
	limited := Config{Default: Rate{BytesPerSecond: MiB}, MaxWait: 10 * time.Second}
	tests := []struct {
		name  string
		setup func(q *Quotas)
		run   func(t *testing.T, q *Quotas)
		want  time.Duration
	}{
		{
			name: "rested caller, admit then the rest",
			run: func(t *testing.T, q *Quotas) {
				mustAdmit(t, q, "alice", MiB)
				mustBytes(t, q, "alice", 4*MiB)
			},
			want: 4 * time.Second,
		},
		{
			name: "admit caps the first bytes at the burst",
			run: func(t *testing.T, q *Quotas) {
				mustAdmit(t, q, "alice", 5*MiB)
				mustBytes(t, q, "alice", 4*MiB)
			},
			want: 4 * time.Second,
		},
		{
			name: "rested caller, bytes only",
			run:  func(t *testing.T, q *Quotas) { mustBytes(t, q, "alice", 5*MiB) },
			want: 4 * time.Second,
		},
		{
			name: "empty bucket after going from unlimited to limited",
			setup: func(q *Quotas) {
				q.Update(Config{})
				q.Update(limited)
			},
			run: func(t *testing.T, q *Quotas) {
				mustAdmit(t, q, "alice", MiB)
				mustBytes(t, q, "alice", 4*MiB)
			},
			want: 5 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, clk := newTestQuotas(t, limited, MaxCallers)
			if tt.setup != nil {
				tt.setup(q)
			}
			tt.run(t, q)
			expectWaited(t, clk, tt.want)
			st := q.Stats()["alice"]
			if st.ThrottledSeconds != tt.want.Seconds() {
				t.Errorf("ThrottledSeconds = %v, want %v", st.ThrottledSeconds, tt.want.Seconds())
			}
		})
	}
}

func TestAdmitRefusesBeyondMaxWaitAndTakesNothing(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		caller    string
		bytes     int64
		wantParts []string
	}{
		{
			name:      "operations, default",
			cfg:       Config{Default: Rate{OpsPerSecond: 1}, MaxWait: 500 * time.Millisecond},
			caller:    "alice",
			wantParts: []string{`"alice"`, "operations quota", "1 operations/s", "(limits.quota.default)", "1s wait", "limits.max_throttle_wait (500ms)"},
		},
		{
			name: "bytes, override",
			cfg: Config{
				Default: Rate{OpsPerSecond: 1000},
				Callers: map[string]Rate{"bulk": {BytesPerSecond: MiB}},
				MaxWait: 500 * time.Millisecond,
			},
			caller:    "bulk",
			bytes:     MiB,
			wantParts: []string{`"bulk"`, "bytes quota", "1048576 bytes/s", "(limits.quota.callers.bulk)", "1s wait"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, clk := newTestQuotas(t, tt.cfg, MaxCallers)
			mustAdmit(t, q, tt.caller, tt.bytes) // the burst
			expectWaited(t, clk, 0)

			var first string
			for i := range 2 { // the same instant: the same delay, so nothing was taken
				err := q.Admit(context.Background(), tt.caller, tt.bytes)
				if !errors.Is(err, sdk.ErrQuotaExceeded) {
					t.Fatalf("Admit #%d: %v, want ErrQuotaExceeded", i, err)
				}
				if ra, ok := sdk.RetryAfter(err); !ok || ra != time.Second {
					t.Errorf("RetryAfter = %v, %v; want 1s", ra, ok)
				}
				for _, part := range tt.wantParts {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("error %q lacks %q", err, part)
					}
				}
				if i == 0 {
					first = err.Error()
				} else if err.Error() != first {
					t.Errorf("second refusal %q differs from the first %q: the first took tokens", err, first)
				}
			}
			expectWaited(t, clk, 0)

			clk.Advance(500 * time.Millisecond)
			mustAdmit(t, q, tt.caller, tt.bytes)
			expectWaited(t, clk, 500*time.Millisecond)

			want := CallerStats{Admitted: 2, Throttled: 1, Refused: 2, ThrottledSeconds: 0.5}
			if got := q.Stats()[tt.caller]; got != want {
				t.Errorf("Stats = %+v, want %+v", got, want)
			}
		})
	}
}

func TestAdmitRefusesBeyondDeadline(t *testing.T) {
	q, clk := newTestQuotas(t, Config{Default: Rate{OpsPerSecond: 1}, MaxWait: time.Hour}, MaxCallers)
	mustAdmit(t, q, "alice", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := q.Admit(ctx, "alice", 0)
	if !errors.Is(err, sdk.ErrQuotaExceeded) || !strings.Contains(err.Error(), "remaining deadline") {
		t.Fatalf("Admit: %v, want ErrQuotaExceeded naming the deadline", err)
	}
	expectWaited(t, clk, 0)
	mustAdmit(t, q, "alice", 0) // nothing was taken: 1s, within MaxWait
	expectWaited(t, clk, time.Second)
}

func TestRetryAfter(t *testing.T) {
	tests := []struct{ in, want time.Duration }{
		{time.Nanosecond, time.Second},
		{time.Second, time.Second},
		{time.Second + time.Millisecond, 2 * time.Second},
		{2500 * time.Millisecond, 3 * time.Second},
		{time.Minute, time.Minute},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.in); got != tt.want {
			t.Errorf("retryAfter(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestOverridesAndDefault(t *testing.T) {
	cfg := Config{
		Default: Rate{OpsPerSecond: 2},
		Callers: map[string]Rate{
			"bulk": {BytesPerSecond: MiB}, // replaces the default: operations unlimited
			"free": {},                    // unlimited whatever the default
		},
		MaxWait: time.Minute,
	}
	tests := []struct {
		caller  string
		want    time.Duration
		tracked bool
	}{
		{caller: "alice", want: 500 * time.Millisecond, tracked: true}, // 2 in the burst, the third waits 1/2 s
		{caller: "bulk", want: 2 * time.Second, tracked: true},         // 1 MiB in the burst, then 1 s each
		{caller: "free", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.caller, func(t *testing.T) {
			q, clk := newTestQuotas(t, cfg, MaxCallers)
			for range 3 {
				mustAdmit(t, q, tt.caller, MiB)
			}
			expectWaited(t, clk, tt.want)
			st, ok := q.Stats()[tt.caller]
			if ok != tt.tracked {
				t.Fatalf("tracked = %v, want %v", ok, tt.tracked)
			}
			if ok && st.Admitted != 3 {
				t.Errorf("Admitted = %d, want 3", st.Admitted)
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	bytes := func(bps int64) Config { return Config{Default: Rate{BytesPerSecond: bps}, MaxWait: time.Minute} }
	ops := func(n float64) Config { return Config{Default: Rate{OpsPerSecond: n}, MaxWait: time.Minute} }
	tests := []struct {
		name  string
		start Config
		run   func(t *testing.T, q *Quotas, clk *fakeClock)
		want  time.Duration // waited in run's last step
	}{
		{
			name:  "smaller rate keeps spent tokens",
			start: bytes(2 * MiB),
			run: func(t *testing.T, q *Quotas, clk *fakeClock) {
				mustBytes(t, q, "a", 2*MiB) // the whole burst
				q.Update(bytes(MiB))
				mustBytes(t, q, "a", MiB)
			},
			want: time.Second,
		},
		{
			name:  "smaller burst caps a full bucket",
			start: bytes(2 * MiB),
			run: func(t *testing.T, q *Quotas, clk *fakeClock) {
				mustAdmit(t, q, "a", 0) // known, full (2 MiB)
				q.Update(bytes(MiB))
				mustBytes(t, q, "a", 2*MiB)
			},
			want: time.Second,
		},
		{
			name:  "larger rate keeps the debt",
			start: bytes(MiB),
			run: func(t *testing.T, q *Quotas, clk *fakeClock) {
				mustBytes(t, q, "a", MiB)
				q.Update(bytes(2 * MiB))
				mustBytes(t, q, "a", 2*MiB)
			},
			want: time.Second,
		},
		{
			name:  "time before the update accrues at the old rate",
			start: bytes(MiB),
			run: func(t *testing.T, q *Quotas, clk *fakeClock) {
				mustBytes(t, q, "a", MiB)
				clk.Advance(500 * time.Millisecond) // 1/2 MiB back
				q.Update(bytes(4 * MiB))
				mustBytes(t, q, "a", MiB) // 1/2 MiB missing at 4 MiB/s
			},
			want: 125 * time.Millisecond,
		},
		{
			name:  "unlimited to limited starts empty",
			start: Config{},
			run: func(t *testing.T, q *Quotas, clk *fakeClock) {
				mustAdmit(t, q, "a", 0)
				q.Update(ops(1))
				mustAdmit(t, q, "a", 0)
			},
			want: time.Second,
		},
		{
			name:  "unlimited to limited refills from the update",
			start: Config{},
			run: func(t *testing.T, q *Quotas, clk *fakeClock) {
				q.Update(ops(2))
				clk.Advance(time.Second)
				q.Update(ops(1)) // a refill period after going limited: full
				mustAdmit(t, q, "a", 0)
			},
			want: 0,
		},
		{
			name:  "unlimited to limited, half refilled",
			start: Config{},
			run: func(t *testing.T, q *Quotas, clk *fakeClock) {
				q.Update(bytes(MiB))
				clk.Advance(250 * time.Millisecond)
				mustBytes(t, q, "a", MiB)
			},
			want: 750 * time.Millisecond,
		},
		{
			name:  "limited, unlimited, limited again starts empty",
			start: ops(1),
			run: func(t *testing.T, q *Quotas, clk *fakeClock) {
				mustAdmit(t, q, "a", 0)
				clk.Advance(time.Hour)
				q.Update(Config{})
				q.Update(ops(1))
				mustAdmit(t, q, "a", 0)
			},
			want: time.Second,
		},
		{
			name:  "limited to unlimited never waits",
			start: bytes(MiB),
			run: func(t *testing.T, q *Quotas, clk *fakeClock) {
				mustBytes(t, q, "a", MiB)
				q.Update(Config{})
				mustBytes(t, q, "a", 100*MiB)
				for range 100 {
					mustAdmit(t, q, "a", MiB)
				}
			},
			want: 0,
		},
		{
			name: "removed unlimited override falls back to the default, empty",
			start: Config{
				Default: Rate{OpsPerSecond: 1},
				Callers: map[string]Rate{"x": {}},
				MaxWait: time.Minute,
			},
			run: func(t *testing.T, q *Quotas, clk *fakeClock) {
				mustAdmit(t, q, "x", 0)
				q.Update(ops(1))
				mustAdmit(t, q, "y", 0) // limited all along: starts full
				expectWaited(t, clk, 0)
				mustAdmit(t, q, "x", 0)
			},
			want: time.Second,
		},
		{
			name:  "new override on an unlimited default starts empty",
			start: Config{},
			run: func(t *testing.T, q *Quotas, clk *fakeClock) {
				q.Update(Config{Callers: map[string]Rate{"x": {OpsPerSecond: 1}}, MaxWait: time.Minute})
				mustAdmit(t, q, "x", 0)
			},
			want: time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, clk := newTestQuotas(t, tt.start, MaxCallers)
			tt.run(t, q, clk)
			expectWaited(t, clk, tt.want)
		})
	}
}

// TestUpdateRetunesIdleBuckets checks that Update reaches buckets not used
// since: the retune happens at the update's instant, not at the next use.
func TestUpdateRetunesIdleBuckets(t *testing.T) {
	q, clk := newTestQuotas(t, Config{Default: Rate{BytesPerSecond: MiB}}, MaxCallers)
	mustBytes(t, q, "a", MiB) // empty at t0
	q.Update(Config{Default: Rate{BytesPerSecond: 4 * MiB}})
	clk.Advance(250 * time.Millisecond) // 1 MiB back at the new rate
	mustBytes(t, q, "a", MiB)
	expectWaited(t, clk, 0)
}

func TestSnapshotForgetsOldEmptyStarts(t *testing.T) {
	q, clk := newTestQuotas(t, Config{Default: Rate{OpsPerSecond: 1}, Callers: map[string]Rate{"x": {}}}, MaxCallers)
	q.Update(Config{Default: Rate{OpsPerSecond: 1}})
	if _, ok := q.snap.Load().callers["x"]; !ok {
		t.Fatal("x lost its empty start right after the update")
	}
	clk.Advance(time.Second) // a full refill
	q.Update(Config{Default: Rate{OpsPerSecond: 1}})
	if n := len(q.snap.Load().callers); n != 0 {
		t.Fatalf("snapshot keeps %d stale callers, want 0", n)
	}
}

func TestBytesSplitsIntoBurstPieces(t *testing.T) {
	tests := []struct {
		name string
		rate int64
		n    int64
		want []time.Duration
	}{
		{"10 MiB at 1 MiB/s", MiB, 10 * MiB, slices.Repeat([]time.Duration{time.Second}, 9)},
		{"burst floor of 64 KiB", 1000, 3 * MinByteBurst, []time.Duration{65536 * time.Millisecond, 65536 * time.Millisecond}},
		{"one byte past the burst", MiB, MiB + 1, []time.Duration{time.Second / MiB}},
		{"within the burst", MiB, MiB, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, clk := newTestQuotas(t, Config{Default: Rate{BytesPerSecond: tt.rate}}, MaxCallers)
			mustBytes(t, q, "a", tt.n)
			if got := clk.Slept(); !slices.Equal(got, tt.want) {
				t.Fatalf("waits %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCancellation(t *testing.T) {
	t.Run("admit with a cancelled context takes nothing", func(t *testing.T) {
		q, clk := newTestQuotas(t, Config{Default: Rate{OpsPerSecond: 1}, MaxWait: time.Minute}, MaxCallers)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := q.Admit(ctx, "a", 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("Admit: %v, want context.Canceled", err)
		}
		mustAdmit(t, q, "a", 0)
		expectWaited(t, clk, 0)
	})
	t.Run("admit cancelled while waiting gives the tokens back", func(t *testing.T) {
		q, clk := newTestQuotas(t, Config{Default: Rate{OpsPerSecond: 1}, MaxWait: time.Minute}, MaxCallers)
		mustAdmit(t, q, "a", 0)
		ctx, cancel := context.WithCancel(context.Background())
		clk.onSleep = func(context.Context, time.Duration) error { cancel(); return nil }
		err := q.Admit(ctx, "a", 0)
		if !errors.Is(err, context.Canceled) || errors.Is(err, sdk.ErrQuotaExceeded) {
			t.Fatalf("Admit: %v, want context.Canceled only", err)
		}
		clk.onSleep = nil
		mustAdmit(t, q, "a", 0) // 1 s, not 2 s
		expectWaited(t, clk, time.Second)
		if st := q.Stats()["a"]; st.Admitted != 2 || st.Throttled != 2 {
			t.Errorf("Stats = %+v, want 2 admitted, 2 throttled", st)
		}
	})
	t.Run("bytes cancelled mid-transfer gives the pending piece back", func(t *testing.T) {
		q, clk := newTestQuotas(t, Config{Default: Rate{BytesPerSecond: MiB}}, MaxCallers)
		ctx, cancel := context.WithCancel(context.Background())
		sleeps := 0
		clk.onSleep = func(context.Context, time.Duration) error {
			if sleeps++; sleeps == 2 {
				cancel()
			}
			return nil
		}
		if err := q.Bytes(ctx, "a", 5*MiB); !errors.Is(err, context.Canceled) {
			t.Fatalf("Bytes: %v, want context.Canceled", err)
		}
		expectWaited(t, clk, time.Second) // piece 2 waited, piece 3 was cancelled
		clk.onSleep = nil
		mustBytes(t, q, "a", MiB) // piece 3's MiB came back: 1 s, not 2 s
		expectWaited(t, clk, time.Second)
	})
	t.Run("real timer", func(t *testing.T) {
		q := New(Config{Default: Rate{BytesPerSecond: 1}})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		err := q.Bytes(ctx, "a", 2*MinByteBurst) // about 18 h at 1 B/s
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Bytes: %v, want context.DeadlineExceeded", err)
		}
	})
}

// TestRealClockGenerousBound runs on the real clock: 1.25 MiB at 1 MiB/s
// with a 1 MiB burst cannot finish before 1/4 s.
func TestRealClockGenerousBound(t *testing.T) {
	q := New(Config{Default: Rate{BytesPerSecond: MiB}, MaxWait: time.Minute})
	start := time.Now()
	if err := q.Admit(context.Background(), "a", MiB); err != nil {
		t.Fatal(err)
	}
	if err := q.Bytes(context.Background(), "a", MiB/4); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 240*time.Millisecond || took > time.Minute {
		t.Fatalf("took %v, want about 250ms", took)
	}
}

func TestConcurrentReservationsShareOneBucket(t *testing.T) {
	q, clk := newTestQuotas(t, Config{Default: Rate{BytesPerSecond: MiB}}, MaxCallers)
	clk.frozen = true // every piece is reserved at the same instant
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { mustBytes(t, q, "a", MiB) })
	}
	wg.Wait()
	got := clk.Slept()
	slices.Sort(got)
	want := []time.Duration{1 * time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second,
		5 * time.Second, 6 * time.Second, 7 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
}

func TestConcurrentCallersAndUpdates(t *testing.T) {
	cfg := func(i int) Config {
		return Config{
			Default: Rate{BytesPerSecond: int64(1+i%3) * MiB, OpsPerSecond: float64(10 + i%2)},
			Callers: map[string]Rate{"c1": {}, "c2": {OpsPerSecond: float64(i % 2)}},
			MaxWait: time.Hour,
		}
	}
	q, _ := newTestQuotas(t, cfg(0), 4)
	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				caller := fmt.Sprintf("c%d", (w+i)%6)
				if err := q.Admit(context.Background(), caller, 64<<10); err != nil {
					errs <- err
					return
				}
				if err := q.Bytes(context.Background(), caller, 3*MiB); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range rounds {
			q.Update(cfg(i))
			_ = q.Stats()
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(q.Stats()); n > 4 {
		t.Errorf("%d callers tracked, bound is 4", n)
	}
}

func TestCallerBound(t *testing.T) {
	t.Run("at most maxCallers tracked", func(t *testing.T) {
		q, _ := newTestQuotas(t, Config{Default: Rate{OpsPerSecond: 100}, MaxWait: time.Minute}, 3)
		for i := range 10 {
			mustAdmit(t, q, fmt.Sprintf("c%d", i), 0)
		}
		st := q.Stats()
		if len(st) != 3 || q.cache.Len() != 3 {
			t.Fatalf("tracked %d (cache %d), want 3", len(st), q.cache.Len())
		}
		for _, c := range []string{"c7", "c8", "c9"} {
			if _, ok := st[c]; !ok {
				t.Errorf("%s, among the most recent, was evicted", c)
			}
		}
	})
	t.Run("evicted spent caller comes back empty", func(t *testing.T) {
		q, clk := newTestQuotas(t, Config{Default: Rate{OpsPerSecond: 1}, MaxWait: time.Minute}, 2)
		clk.frozen = true       // all at one instant
		mustAdmit(t, q, "a", 0) // spent
		mustAdmit(t, q, "b", 0)
		expectWaited(t, clk, 0)
		// c evicts a, whose bucket was spent: c cannot be told from a
		// returning caller, so it starts empty too.
		mustAdmit(t, q, "c", 0)
		if _, ok := q.Stats()["a"]; ok {
			t.Fatal("a still tracked")
		}
		expectWaited(t, clk, time.Second)
		mustAdmit(t, q, "a", 0) // no free burst (evicts b)
		expectWaited(t, clk, time.Second)
	})
	t.Run("evicted full caller comes back full", func(t *testing.T) {
		q, clk := newTestQuotas(t, Config{Default: Rate{OpsPerSecond: 1}, MaxWait: time.Minute}, 2)
		mustAdmit(t, q, "a", 0)
		clk.Advance(time.Second) // a is full again
		mustAdmit(t, q, "b", 0)
		mustAdmit(t, q, "a", 0) // touch a: b is now the oldest
		clk.Advance(time.Second)
		mustAdmit(t, q, "c", 0) // evicts b, full
		mustAdmit(t, q, "b", 0)
		expectWaited(t, clk, 0)
	})
}

func TestUnlimitedAllocatesNothing(t *testing.T) {
	q := New(Config{Callers: map[string]Rate{"bulk": {BytesPerSecond: MiB}}})
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if err := q.Admit(ctx, "alice", MiB); err != nil {
			t.Fatal(err)
		}
		if err := q.Bytes(ctx, "alice", MiB); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("unlimited Admit+Bytes allocates %v times, want 0", allocs)
	}
	if n := q.cache.Len(); n != 0 {
		t.Fatalf("unlimited caller tracked (%d entries)", n)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // "" for valid
	}{
		{"zero is unlimited", Config{}, ""},
		{"valid", Config{Default: Rate{BytesPerSecond: MiB, OpsPerSecond: 0.5}, Callers: map[string]Rate{"a": {}}, MaxWait: time.Second}, ""},
		{"negative wait", Config{MaxWait: -1}, "limits.max_throttle_wait"},
		{"negative bytes", Config{Default: Rate{BytesPerSecond: -1}}, "limits.quota.default: bytes per second -1"},
		{"negative ops", Config{Callers: map[string]Rate{"bob": {OpsPerSecond: -2}}}, "limits.quota.callers.bob: operations per second -2"},
		{"infinite ops", Config{Default: Rate{OpsPerSecond: math.Inf(1)}}, "limits.quota.default: operations per second +Inf"},
		{"empty caller", Config{Callers: map[string]Rate{"": {}}}, "empty caller name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, sdk.ErrInvalidLimits) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want ErrInvalidLimits containing %q", err, tt.want)
			}
		})
	}
}

func TestBursts(t *testing.T) {
	tests := []struct {
		rate      Rate
		wantBytes int64
		wantOps   int
	}{
		{Rate{}, 0, 0},
		{Rate{BytesPerSecond: 1}, MinByteBurst, 0},
		{Rate{BytesPerSecond: 3 * MiB}, 3 * MiB, 0},
		{Rate{OpsPerSecond: 0.1}, 0, 1},
		{Rate{OpsPerSecond: 2.9}, 0, 2},
		{Rate{OpsPerSecond: 1e300}, 0, maxBurst},
	}
	for _, tt := range tests {
		if b, o := tt.rate.ByteBurst(), tt.rate.OpsBurst(); b != tt.wantBytes || o != tt.wantOps {
			t.Errorf("%+v: bursts %d, %d; want %d, %d", tt.rate, b, o, tt.wantBytes, tt.wantOps)
		}
	}
}
