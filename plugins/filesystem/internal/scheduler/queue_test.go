package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

func TestClassStringAndParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Class
		wantErr bool
	}{
		{"high", High, false},
		{"normal", Normal, false},
		{"low", Low, false},
		{"", Normal, false},
		{"HIGH", Normal, true},
		{"urgent", Normal, true},
		{" low", Normal, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseClass(tt.in)
			if tt.wantErr {
				if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "high, normal or low") {
					t.Fatalf("ParseClass(%q) error %v, want invalid argument naming the allowed values", tt.in, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseClass(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if tt.in != "" && got.String() != tt.in {
				t.Fatalf("%v.String() = %q, want %q", got, got.String(), tt.in)
			}
		})
	}
	if got := [3]int{High.Weight(), Normal.Weight(), Low.Weight()}; got != [3]int{8, 4, 1} {
		t.Fatalf("weights %v, want [8 4 1]", got)
	}
	if Class(7).Weight() != 0 || Class(7).String() != "class(7)" {
		t.Fatalf("unknown class: weight %d, string %q", Class(7).Weight(), Class(7).String())
	}
	if _, err := New(1, 1).Admit(Class(-1)); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("Admit(unknown class) error %v, want invalid argument", err)
	}
}

func TestLimitsClamp(t *testing.T) {
	tests := []struct {
		maxQueued, depth         int
		wantMaxQueued, wantDepth int
	}{
		{0, 0, 1, 1},
		{-5, 3, 1, 3},
		{10, -1, 10, 1},
		{1024, 32, 1024, 32},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d,%d", tt.maxQueued, tt.depth), func(t *testing.T) {
			st := New(tt.maxQueued, tt.depth).Stats()
			if st.MaxQueued != tt.wantMaxQueued || st.Depth != tt.wantDepth {
				t.Fatalf("New: limits %d,%d; want %d,%d", st.MaxQueued, st.Depth, tt.wantMaxQueued, tt.wantDepth)
			}
			q := New(50, 50)
			q.SetLimits(tt.maxQueued, tt.depth)
			st = q.Stats()
			if st.MaxQueued != tt.wantMaxQueued || st.Depth != tt.wantDepth {
				t.Fatalf("SetLimits: limits %d,%d; want %d,%d", st.MaxQueued, st.Depth, tt.wantMaxQueued, tt.wantDepth)
			}
		})
	}
}

// TestAdmitRefusesWhenFull: a full queue refuses at once with backpressure,
// a retry hint and a message naming the limit and class; Done makes room.
func TestAdmitRefusesWhenFull(t *testing.T) {
	for _, c := range Classes {
		t.Run(c.String(), func(t *testing.T) {
			q := New(2, 1)
			a, err := q.Admit(High)
			if err != nil || a.Class() != High {
				t.Fatalf("Admit(High) = %v, %v", a, err)
			}
			if _, err := q.Admit(Normal); err != nil {
				t.Fatal(err)
			}
			op, err := q.Admit(c)
			if op != nil || !errors.Is(err, sdk.ErrBackpressure) {
				t.Fatalf("third Admit = %v, %v; want refusal wrapping ErrBackpressure", op, err)
			}
			after, ok := sdk.RetryAfter(err)
			if !ok || after < time.Second || after > time.Minute {
				t.Fatalf("retry hint %v (present %v), want within [1s, 60s]", after, ok)
			}
			for _, part := range []string{"queue full", "limits.max_queue_depth is 2", c.String() + "-priority"} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not mention %q", err, part)
				}
			}
			if st := q.Stats(); st.Refused[c] != 1 || st.Admitted[High]+st.Admitted[Normal]+st.Admitted[Low] != 2 {
				t.Fatalf("stats %+v: want 1 %v refused and 2 admitted", st, c)
			}

			a.Done()
			b, err := q.Admit(c)
			if err != nil {
				t.Fatalf("Admit after Done: %v", err)
			}
			b.Done()
		})
	}
}

// TestRunningOpIsNotQueued: while its step runs, an op leaves room for
// another admission; afterwards it counts as queued again until Done.
func TestRunningOpIsNotQueued(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 1, 1)
	r.submitRunning(ctx, "a", Normal)
	if st := r.q.Stats(); st.Queued != [3]int{} || st.InFlight != 1 {
		t.Fatalf("stats while a runs: %+v; want nothing queued, 1 in flight", st)
	}
	b, err := r.q.Admit(Low)
	if err != nil {
		t.Fatalf("Admit while the only op runs: %v", err)
	}
	if _, err := r.q.Admit(Low); !errors.Is(err, sdk.ErrBackpressure) {
		t.Fatalf("Admit with b queued: %v, want backpressure", err)
	}
	b.Done()
	if err := r.finish("a"); err != nil {
		t.Fatal(err)
	}
	if st := r.q.Stats(); st.Queued[Normal] != 1 {
		t.Fatalf("stats after a's step: %+v; want a queued again (not Done)", st)
	}
	r.steps["a"].op.Done()
	if st := r.q.Stats(); st.Queued != [3]int{} {
		t.Fatalf("stats after Done: %+v; want nothing queued", st)
	}
}

func TestRetryAfterEstimate(t *testing.T) {
	tests := []struct {
		queued, depth int
		meanService   float64
		want          time.Duration
	}{
		{0, 1, 0, time.Second},              // no samples yet
		{4, 32, 0.001, time.Second},         // fast device: floor
		{9, 1, 0.5, 5 * time.Second},        // 10 × 0.5s
		{9, 2, 0.5, 3 * time.Second},        // 2.5s rounded up
		{1000, 1, 1, time.Minute},           // ceiling
		{3, 1, math.NaN(), time.Second},     // defensive
		{1 << 30, 1, 1e9, 60 * time.Second}, // no overflow
	}
	for _, tt := range tests {
		if got := retryAfter(tt.queued, tt.depth, tt.meanService); got != tt.want {
			t.Errorf("retryAfter(%d, %d, %v) = %v, want %v", tt.queued, tt.depth, tt.meanService, got, tt.want)
		}
	}
}

// TestRetryAfterFromServiceTimes: the hint follows measured service times.
func TestRetryAfterFromServiceTimes(t *testing.T) {
	clk := newFakeClock()
	q := New(4, 1)
	clk.install(q)
	op, err := q.Admit(Normal)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := op.Run(context.Background(), func() error { clk.Advance(2 * time.Second); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := q.Admit(High); err != nil {
			t.Fatal(err)
		}
	}
	_, err = q.Admit(High)
	if got, _ := sdk.RetryAfter(err); got != 10*time.Second {
		t.Fatalf("retry hint %v, want 10s: (4 queued + 1) × 2s service / depth 1 (err %v)", got, err)
	}
}

// TestSetLimitsDepth: growing depth dispatches waiters at once; shrinking
// it lets running steps finish, dispatches nothing until fewer than the
// new depth run, and drops nothing.
func TestSetLimitsDepth(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 100, 1)
	r.submitRunning(ctx, "run-0", Normal)
	for i := 1; i <= 7; i++ {
		r.submitWaiting(ctx, fmt.Sprintf("wait-%d", i), Normal)
	}

	r.q.SetLimits(100, 4)
	running := []string{"run-0"}
	for range 3 {
		running = append(running, r.next())
	}
	if st := r.q.Stats(); st.InFlight != 4 || st.Waiting[Normal] != 4 {
		t.Fatalf("after growing depth to 4: %+v; want 4 in flight, 4 waiting", st)
	}

	r.q.SetLimits(100, 2)
	for i, name := range running[:2] {
		if err := r.finish(name); err != nil {
			t.Fatal(err)
		}
		r.noneStarted()
		if st := r.q.Stats(); st.InFlight != 3-i || st.Waiting[Normal] != 4 {
			t.Fatalf("after %s finished under depth 2: %+v; want %d in flight, 4 waiting", name, st, 3-i)
		}
	}
	if err := r.finish(running[2]); err != nil {
		t.Fatal(err)
	}
	running = running[3:]
	running = append(running, r.next()) // 1 was left running: one more fits
	r.noneStarted()

	// From here every step must run, never more than 2 at once: each
	// finish lets exactly one waiter start.
	started, done := 5, 3
	for len(running) > 0 {
		if st := r.q.Stats(); st.InFlight > 2 {
			t.Fatalf("in flight %d exceeds the new depth 2", st.InFlight)
		}
		if err := r.finish(running[0]); err != nil {
			t.Fatal(err)
		}
		done++
		running = running[1:]
		if started < 8 {
			running = append(running, r.next())
			started++
		}
		r.noneStarted()
	}
	if done != 8 {
		t.Fatalf("%d of 8 steps completed", done)
	}
	if st := r.q.Stats(); st.Dispatched[Normal] != 8 || st.InFlight != 0 {
		t.Fatalf("final stats %+v: want 8 dispatched, none in flight", st)
	}
}

// TestSetLimitsMaxQueued: a smaller limit refuses new admissions but keeps
// every queued op, which all complete; a larger one admits again.
func TestSetLimitsMaxQueued(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 10, 1)
	r.submitRunning(ctx, "run", Low)
	for i := range 5 {
		r.submitWaiting(ctx, fmt.Sprintf("q-%d", i), Low)
	}
	r.q.SetLimits(2, 1)
	if _, err := r.q.Admit(High); !errors.Is(err, sdk.ErrBackpressure) || !strings.Contains(err.Error(), "limits.max_queue_depth is 2") {
		t.Fatalf("Admit over the lowered limit: %v; want backpressure naming limit 2", err)
	}
	if st := r.q.Stats(); st.Queued[Low] != 5 {
		t.Fatalf("queued %v after lowering the limit, want the 5 kept", st.Queued)
	}
	if err := r.finish("run"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		name := r.next()
		if want := fmt.Sprintf("q-%d", i); name != want {
			t.Fatalf("ran %s, want %s", name, want)
		}
		if err := r.finish(name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r.steps[name].op.Done()
	}
	r.steps["run"].op.Done()
	r.q.SetLimits(3, 1)
	if op, err := r.q.Admit(High); err != nil {
		t.Fatalf("Admit after raising the limit: %v", err)
	} else {
		op.Done()
	}
}

// TestCancelWhileWaiting: a done ctx ends the wait with ctx's error, takes
// the op off the wait list, keeps it admitted until Done, and lets it run
// again later.
func TestCancelWhileWaiting(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		during  bool // cancel while waiting (else before Run)
		wantErr error
	}{
		{"cancel while waiting", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, true, context.Canceled},
		{"cancelled before Run", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, false, context.Canceled},
		{"deadline passed", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Unix(1, 0))
		}, false, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bg := context.Background()
			r := newRig(t, 10, 1)
			r.submitRunning(bg, "holder", High)
			ctx, cancel := tt.ctx()
			defer cancel()
			if !tt.during {
				cancel()
			}
			var s *step
			if tt.during {
				s = r.submitWaiting(ctx, "victim", Low)
				cancel()
			} else {
				s = r.submit(ctx, "victim", Low)
			}
			if err := r.result("victim"); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Run error %v, want %v", err, tt.wantErr)
			}
			if st := r.q.Stats(); st.Waiting[Low] != 0 || st.Queued[Low] != 1 || st.Dispatched[Low] != 0 {
				t.Fatalf("stats after cancel: %+v; want not waiting, still queued, never dispatched", st)
			}
			if err := r.finish("holder"); err != nil {
				t.Fatal(err)
			}
			ran := false
			if err := s.op.Run(bg, func() error { ran = true; return nil }); err != nil || !ran {
				t.Fatalf("Run after a cancelled wait: ran %v, err %v", ran, err)
			}
			s.op.Done()
			if st := r.q.Stats(); st.Queued[Low] != 0 {
				t.Fatalf("queued %v after Done, want no low", st.Queued)
			}
		})
	}
}

// TestCancelKeepsOthersInOrder: a waiter leaving from the middle of its
// class does not disturb the others.
func TestCancelKeepsOthersInOrder(t *testing.T) {
	bg := context.Background()
	r := newRig(t, 10, 1)
	r.submitRunning(bg, "holder", Low)
	r.submitWaiting(bg, "l1", Low)
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	r.submitWaiting(ctx, "l2", Low)
	r.submitWaiting(bg, "l3", Low)
	cancel()
	if err := r.result("l2"); !errors.Is(err, context.Canceled) {
		t.Fatalf("l2: %v", err)
	}
	for _, name := range []string{"holder", "l1", "l3"} {
		if name != "holder" {
			if got := r.next(); got != name {
				t.Fatalf("ran %s, want %s", got, name)
			}
		}
		if err := r.finish(name); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDone(t *testing.T) {
	bg := context.Background()
	t.Run("idempotent", func(t *testing.T) {
		q := New(5, 1)
		op, _ := q.Admit(Normal)
		op.Done()
		op.Done()
		if st := q.Stats(); st.Queued != [3]int{} {
			t.Fatalf("queued %v after two Dones, want none", st.Queued)
		}
		if err := op.Run(bg, func() error { t.Error("fn ran after Done"); return nil }); !errors.Is(err, ErrDone) {
			t.Fatalf("Run after Done: %v, want ErrDone", err)
		}
	})
	t.Run("while waiting", func(t *testing.T) {
		r := newRig(t, 5, 1)
		r.submitRunning(bg, "holder", High)
		s := r.submitWaiting(bg, "w", Normal)
		s.op.Done()
		if err := r.result("w"); !errors.Is(err, ErrDone) {
			t.Fatalf("Run ended by Done: %v, want ErrDone", err)
		}
		if st := r.q.Stats(); st.Waiting != [3]int{} || st.Queued != [3]int{} {
			t.Fatalf("stats %+v; want nothing waiting or queued", st)
		}
		if err := r.finish("holder"); err != nil {
			t.Fatal(err)
		}
		r.noneStarted()
	})
	t.Run("while running", func(t *testing.T) {
		r := newRig(t, 5, 1)
		s := r.submitRunning(bg, "r", Low)
		s.op.Done()
		if err := r.finish("r"); err != nil {
			t.Fatalf("step finished after Done: %v, want its own nil", err)
		}
		if st := r.q.Stats(); st.Queued != [3]int{} || st.InFlight != 0 {
			t.Fatalf("stats %+v; want nothing queued or running", st)
		}
	})
}

func TestRunErrorsAndPanics(t *testing.T) {
	bg := context.Background()
	q := New(5, 1)
	op, _ := q.Admit(Normal)
	defer op.Done()
	boom := errors.New("boom")
	if err := op.Run(bg, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Run returned %v, want fn's error", err)
	}

	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic in fn did not propagate")
			}
		}()
		_ = op.Run(bg, func() error { panic("fn broke") })
	}()
	if st := q.Stats(); st.InFlight != 0 {
		t.Fatalf("in flight %d after a panicking fn, want the slot released", st.InFlight)
	}

	var nested error
	if err := op.Run(bg, func() error { nested = op.Run(bg, func() error { return nil }); return nil }); err != nil {
		t.Fatal(err)
	}
	if nested == nil || !strings.Contains(nested.Error(), "already running") {
		t.Fatalf("Run of an op inside its own Run: %v, want an already-running error", nested)
	}
}

// TestStatsNumbers checks every Stats field through one scripted run with
// an injected clock.
func TestStatsNumbers(t *testing.T) {
	bg := context.Background()
	clk := newFakeClock()
	r := newRig(t, 10, 1)
	clk.install(r.q)
	r.submitRunning(bg, "a", High)
	r.submitWaiting(bg, "b", Low)
	if _, err := r.q.Admit(Normal); err != nil {
		t.Fatal(err)
	}
	want := Stats{MaxQueued: 10, Depth: 1, Queued: [3]int{0, 1, 1}, Waiting: [3]int{0, 0, 1}, InFlight: 1,
		Admitted: [3]uint64{1, 1, 1}, Dispatched: [3]uint64{1, 0, 0}}
	if got := r.q.Stats(); got != want {
		t.Fatalf("stats while a runs and b waits\n got %+v\nwant %+v", got, want)
	}

	clk.Advance(3 * time.Second)
	if err := r.finish("a"); err != nil {
		t.Fatal(err)
	}
	if got := r.next(); got != "b" {
		t.Fatalf("ran %s, want b", got)
	}
	clk.Advance(2 * time.Second)
	if err := r.finish("b"); err != nil {
		t.Fatal(err)
	}
	r.steps["a"].op.Done()
	want = Stats{MaxQueued: 10, Depth: 1, Queued: [3]int{0, 1, 1}, Waiting: [3]int{},
		Admitted: [3]uint64{1, 1, 1}, Dispatched: [3]uint64{1, 0, 1},
		WaitSeconds: [3]float64{0, 0, 3}, ServiceSeconds: [3]float64{3, 0, 2}}
	if got := r.q.Stats(); got != want {
		t.Fatalf("stats at the end\n got %+v\nwant %+v", got, want)
	}
}

func TestBackpressureLevels(t *testing.T) {
	never := time.Duration(math.MaxInt64)
	tests := []struct {
		queued, maxQueued int
		sinceRefusal      time.Duration
		want              sdk.Backpressure
	}{
		{0, 10, never, sdk.BackpressureNone},
		{4, 10, never, sdk.BackpressureNone},
		{5, 10, never, sdk.BackpressureElevated},
		{8, 10, never, sdk.BackpressureElevated},
		{9, 10, never, sdk.BackpressureSaturated},
		{15, 10, never, sdk.BackpressureSaturated}, // over a lowered limit
		{511, 1024, never, sdk.BackpressureNone},
		{512, 1024, never, sdk.BackpressureElevated},
		{922, 1024, never, sdk.BackpressureSaturated},
		{0, 10, 999 * time.Millisecond, sdk.BackpressureSaturated},
		{0, 10, time.Second, sdk.BackpressureNone},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d of %d, refused %v ago", tt.queued, tt.maxQueued, tt.sinceRefusal), func(t *testing.T) {
			got, reason := backpressure(tt.queued, tt.maxQueued, 1, 8, tt.sinceRefusal)
			if got != tt.want {
				t.Fatalf("backpressure = %v (%s), want %v", got, reason, tt.want)
			}
			if !strings.Contains(reason, fmt.Sprintf("%d of %d queued", tt.queued, tt.maxQueued)) {
				t.Fatalf("reason %q does not give the fill", reason)
			}
		})
	}
}

// TestBackpressureFromQueue: the live state follows fill and recent refusals.
func TestBackpressureFromQueue(t *testing.T) {
	clk := newFakeClock()
	q := New(10, 1)
	clk.install(q)
	check := func(want sdk.Backpressure, wantReason string) {
		t.Helper()
		got, reason := q.Backpressure()
		if got != want || !strings.Contains(reason, wantReason) {
			t.Fatalf("Backpressure() = %v, %q; want %v mentioning %q", got, reason, want, wantReason)
		}
	}
	var ops []*Op
	admit := func(n int) {
		t.Helper()
		for range n {
			op, err := q.Admit(High) // high fills the whole queue
			if err != nil {
				t.Fatal(err)
			}
			ops = append(ops, op)
		}
	}
	check(sdk.BackpressureNone, "0% full (0 of 10 queued, 0 of 1 running)")
	admit(5)
	check(sdk.BackpressureElevated, "50% full")
	admit(5)
	check(sdk.BackpressureSaturated, "100% full")
	if _, err := q.Admit(High); err == nil {
		t.Fatal("Admit on a full queue succeeded")
	}
	for _, op := range ops[2:] {
		op.Done()
	}
	check(sdk.BackpressureSaturated, "refused work in the last second")
	clk.Advance(time.Second)
	check(sdk.BackpressureNone, "20% full")
	for _, op := range ops[:2] {
		op.Done()
	}
}

// TestCancelRacesHandOver: a slot handed to a waiter whose ctx is already
// done is either used (fn runs) or given back to the next waiter; the books
// stay right either way. Which one happens is the runtime's choice, so the
// test repeats the race and checks the invariants of both outcomes.
func TestCancelRacesHandOver(t *testing.T) {
	bg := context.Background()
	outcomes := map[string]int{}
	for i := range 40 {
		clk := newFakeClock()
		r := newRig(t, 10, 1)
		clk.install(r.q)
		r.submitRunning(bg, "holder", High)
		ctx, cancel := context.WithCancel(bg)
		victim := fmt.Sprintf("victim-%d", i)
		r.submitWaiting(ctx, victim, Low)
		clk.Advance(5 * time.Second)
		next := fmt.Sprintf("next-%d", i)
		r.submitWaiting(bg, next, Low)
		clk.Advance(time.Second)

		r.q.mu.Lock()
		if i%2 == 0 {
			cancel() // the waiter sees both at once, or wakes for ctx and finds the slot
		}
		r.q.depth = 2
		r.q.dispatchLocked() // hands the free slot to the victim
		r.q.mu.Unlock()
		cancel()

		// A given-back slot goes to next, so next starting is also the sign
		// that the victim gave it back.
		first := r.next()
		switch first {
		case victim:
			if err := r.finish(victim); err != nil {
				t.Fatalf("victim ran but Run returned %v", err)
			}
			outcomes["ran"]++
		case next:
			if err := r.result(victim); !errors.Is(err, context.Canceled) {
				t.Fatalf("victim: %v, want context.Canceled", err)
			}
			if st := r.q.Stats(); st.Dispatched[Low] != 1 || st.InFlight != 2 || st.Queued[Low] != 1 || st.WaitSeconds[Low] != 1 {
				t.Fatalf("stats after a given-back slot: %+v; want 1 low dispatched (next, after 1s), 2 in flight, victim queued", st)
			}
			outcomes["gave back"]++
		default:
			t.Fatalf("%s started, want %s or %s", first, victim, next)
		}
	}
	t.Logf("outcomes over 40 races: %v", outcomes)
}

// TestAdmissionKeepsRoomForHigherPriorities: low fills the queue only to
// 3/4 and normal to 7/8; high is admitted up to the bound.
func TestAdmissionKeepsRoomForHigherPriorities(t *testing.T) {
	q := New(16, 1)
	admit := func(c Class, n int) {
		t.Helper()
		for i := range n {
			if _, err := q.Admit(c); err != nil {
				t.Fatalf("%v #%d: %v", c, i+1, err)
			}
		}
	}
	admit(Low, 12)
	if _, err := q.Admit(Low); !errors.Is(err, sdk.ErrBackpressure) || !strings.Contains(err.Error(), "the last 4 places are kept for higher priorities") {
		t.Fatalf("13th low: %v", err)
	}
	admit(Normal, 2)
	if _, err := q.Admit(Normal); !errors.Is(err, sdk.ErrBackpressure) {
		t.Fatalf("15th op, normal: %v", err)
	}
	admit(High, 2)
	if _, err := q.Admit(High); !errors.Is(err, sdk.ErrBackpressure) || !strings.Contains(err.Error(), "queue full: 16 operations queued") {
		t.Fatalf("17th op, high: %v", err)
	}
	for _, tc := range []struct{ max, normal, low int }{{1, 1, 1}, {2, 2, 2}, {4, 4, 3}, {8, 7, 6}, {1024, 896, 768}} {
		if n, l := admissionLimit(tc.max, Normal), admissionLimit(tc.max, Low); n != tc.normal || l != tc.low || admissionLimit(tc.max, High) != tc.max {
			t.Errorf("max %d: normal %d low %d, want %d %d", tc.max, n, l, tc.normal, tc.low)
		}
	}
}
