package scheduler

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestHighRunsBeforeLowFlood: depth 1, a low step holds the slot and a
// flood of low steps waits; a high step that arrives last runs next, and
// the lows then run in arrival order.
func TestHighRunsBeforeLowFlood(t *testing.T) {
	for _, flood := range []int{1, 10, 200} {
		t.Run(fmt.Sprintf("flood=%d", flood), func(t *testing.T) {
			ctx := context.Background()
			r := newRig(t, 1000, 1)
			r.submitRunning(ctx, "low-0", Low)
			for i := 1; i <= flood; i++ {
				r.submitWaiting(ctx, fmt.Sprintf("low-%d", i), Low)
			}
			r.submitWaiting(ctx, "high", High)

			if err := r.finish("low-0"); err != nil {
				t.Fatalf("low-0: %v", err)
			}
			if got := r.next(); got != "high" {
				t.Fatalf("after the holder, %s ran; want high before any of %d queued lows", got, flood)
			}
			if err := r.finish("high"); err != nil {
				t.Fatalf("high: %v", err)
			}
			for i := 1; i <= flood; i++ {
				want := fmt.Sprintf("low-%d", i)
				if got := r.next(); got != want {
					t.Fatalf("dispatch %d: got %s, want %s (FIFO within a class)", i, got, want)
				}
				if err := r.finish(want); err != nil {
					t.Fatalf("%s: %v", want, err)
				}
			}
		})
	}
}

// TestDispatchOrder checks the whole smooth weighted round robin sequence:
// depth 1, a holder, then waiters queued in the given order; the dispatch
// order after the holder is released must be exactly want.
func TestDispatchOrder(t *testing.T) {
	tests := []struct {
		name    string
		waiters string // class initials in arrival order
		want    string
	}{
		{"one class is FIFO", "L L L", "L1 L2 L3"},
		{"high and low 8:1", "L L H H H H H H H H H H", "H1 H2 H3 H4 L1 H5 H6 H7 H8 H9 H10 L2"},
		{"all three 8:4:1", "L L L N N N N H H H H H H H H H",
			"H1 N1 H2 H3 N2 H4 L1 H5 N3 H6 H7 N4 H8 H9 L2 L3"},
		{"normal runs out first", "L L H H H H H N N", "H1 N1 H2 H3 N2 H4 H5 L1 L2"},
		{"normal and low 4:1", "L L N N N N N", "N1 N2 L1 N3 N4 N5 L2"},
		{"arrival order across classes is irrelevant", "H L H N", "H1 N1 H2 L1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r := newRig(t, 100, 1)
			r.submitRunning(ctx, "holder", Normal)
			count := map[string]int{}
			for _, initial := range strings.Fields(tt.waiters) {
				count[initial]++
				r.submitWaiting(ctx, fmt.Sprintf("%s%d", initial, count[initial]), classOf(t, initial))
			}
			if err := r.finish("holder"); err != nil {
				t.Fatal(err)
			}
			var got []string
			for range strings.Fields(tt.waiters) {
				name := r.next()
				got = append(got, name)
				if err := r.finish(name); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Fatalf("dispatch order\n got %s\nwant %s", g, tt.want)
			}
		})
	}
}

func classOf(t testing.TB, initial string) Class {
	t.Helper()
	switch initial {
	case "H":
		return High
	case "N":
		return Normal
	case "L":
		return Low
	}
	t.Fatalf("unknown class initial %q", initial)
	return 0
}

// TestLowNotStarvedUnderSustainedLoad: depth 1, higher classes always have
// waiters; a low step that starts waiting after some dispatches still runs
// within the bound (9 with high only, 13 with high and normal).
func TestLowNotStarvedUnderSustainedLoad(t *testing.T) {
	tests := []struct {
		name      string
		load      []Class
		arriveAt  int // dispatches before the low step arrives
		maxWithin int
	}{
		{"high, low at once", []Class{High}, 0, 9},
		{"high, low after 3", []Class{High}, 3, 9},
		{"high, low after 10", []Class{High}, 10, 9},
		{"high and normal, low at once", []Class{High, Normal}, 0, 13},
		{"high and normal, low after 1", []Class{High, Normal}, 1, 13},
		{"high and normal, low after 5", []Class{High, Normal}, 5, 13},
		{"high and normal, low after 11", []Class{High, Normal}, 11, 13},
	}
	const perClass = 40 // more than arriveAt+maxWithin: the load never runs dry
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r := newRig(t, 1000, 1)
			r.submitRunning(ctx, "holder", High)
			for i := range perClass {
				for _, c := range tt.load {
					r.submitWaiting(ctx, fmt.Sprintf("%s-%d", c, i), c)
				}
			}
			running := "holder"
			for range tt.arriveAt {
				if err := r.finish(running); err != nil {
					t.Fatal(err)
				}
				running = r.next()
			}
			r.submitWaiting(ctx, "the-low", Low)
			for n := 1; ; n++ {
				if err := r.finish(running); err != nil {
					t.Fatal(err)
				}
				running = r.next()
				if running == "the-low" {
					if st := r.q.Stats(); st.Waiting[High] == 0 {
						t.Fatalf("high load ran dry (stats %+v): the test did not keep it sustained", st)
					}
					break
				}
				if n >= tt.maxWithin {
					t.Fatalf("low step not dispatched within %d dispatches under sustained %v load", tt.maxWithin, tt.load)
				}
			}
		})
	}
}

// TestCreditReset: a class that runs out of waiters loses its banked
// current weight, whether its last waiter was dispatched or left.
func TestCreditReset(t *testing.T) {
	q := New(100, 1)
	waiter := func(c Class) *Op {
		o := &Op{q: q, class: c}
		q.waiters[c].pushBack(o)
		o.waiting = true
		return o
	}
	for range 3 {
		waiter(High)
	}
	low := waiter(Low)
	if got, _ := q.pickLocked(false); got != High {
		t.Fatalf("first pick %v, want high", got)
	}
	if q.current[Low] != 1 {
		t.Fatalf("low current weight %d after one pick, want 1 (banked)", q.current[Low])
	}
	q.removeLocked(low) // a cancelled wait
	if q.current[Low] != 0 {
		t.Fatalf("low current weight %d after its last waiter left, want 0", q.current[Low])
	}

	q.current[Normal] = 5 // stale credit of a class without waiters
	q.pickLocked(false)
	if q.current[Normal] != 0 {
		t.Fatalf("normal current weight %d after a pick without normal waiters, want 0", q.current[Normal])
	}
}
