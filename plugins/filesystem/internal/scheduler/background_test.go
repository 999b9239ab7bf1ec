package scheduler

import (
	"context"
	"testing"
	"time"
)

// newBackgroundRig is a rig on a fake clock whose queue holds low work back
// for high work: 100 ms anticipation, one low step per 20 ms.
func newBackgroundRig(t *testing.T, depth int) (*rig, *fakeClock) {
	t.Helper()
	r := newRig(t, 100, depth)
	clock := newFakeClock()
	clock.install(r.q)
	r.q.SetBackground(100*time.Millisecond, 20*time.Millisecond)
	return r, clock
}

// TestBackgroundTrickle: while a high operation is admitted, low steps go
// one per trickle even with free slots; other classes are not held.
func TestBackgroundTrickle(t *testing.T) {
	r, clock := newBackgroundRig(t, 8)
	ctx := context.Background()
	high, err := r.q.Admit(High) // admitted, not running: high work is present
	if err != nil {
		t.Fatal(err)
	}
	r.submitRunning(ctx, "low1", Low) // no low ran yet: the first goes
	r.submitWaiting(ctx, "low2", Low)
	r.submitWaiting(ctx, "low3", Low)
	r.noneStarted()
	r.submitRunning(ctx, "normal", Normal) // free slots serve other classes at once
	if st := r.q.Stats(); st.InFlight != 2 || st.Waiting[Low] != 2 || st.Restrained == 0 {
		t.Fatalf("stats %+v, want 2 running, 2 low held", st)
	}
	if clock.pending() == 0 {
		t.Fatal("no wake-up armed for the held low work")
	}
	clock.Advance(19 * time.Millisecond)
	r.noneStarted()
	clock.Advance(time.Millisecond) // 20 ms after low1
	if got := r.next(); got != "low2" {
		t.Fatalf("started %s, want low2", got)
	}
	r.noneStarted()
	clock.Advance(20 * time.Millisecond)
	if got := r.next(); got != "low3" {
		t.Fatalf("started %s, want low3", got)
	}
	high.Done()
}

// TestBackgroundAnticipation: after the last high operation is Done, low
// work stays held for the anticipation window, then goes at full speed.
func TestBackgroundAnticipation(t *testing.T) {
	r, clock := newBackgroundRig(t, 8)
	ctx := context.Background()
	r.submitRunning(ctx, "low0", Low)
	h := r.submitRunning(ctx, "high", High)
	if err := r.finish("high"); err != nil {
		t.Fatal(err)
	}
	h.op.Done() // high done at t0
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		r.submitWaiting(ctx, name, Low)
	}
	r.noneStarted()
	clock.Advance(20 * time.Millisecond) // one trickle after low0
	if got := r.next(); got != "a" {
		t.Fatalf("started %s, want a", got)
	}
	r.noneStarted()
	clock.Advance(80 * time.Millisecond) // t0+100ms: the window closes
	// All four go at once (free slots), in any order of their goroutines.
	got := map[string]bool{}
	for range 4 {
		got[r.next()] = true
	}
	if !got["b"] || !got["c"] || !got["d"] || !got["e"] {
		t.Fatalf("started %v after the window closed, want b, c, d and e", got)
	}
}

// TestBackgroundNeverStarves: under a sustained high load (a high op always
// admitted), a low step still runs once a trickle has passed.
func TestBackgroundNeverStarves(t *testing.T) {
	r, clock := newBackgroundRig(t, 1)
	ctx := context.Background()
	r.submitRunning(ctx, "low0", Low)
	if err := r.finish("low0"); err != nil {
		t.Fatal(err)
	}
	r.submitRunning(ctx, "h0", High)
	r.submitWaiting(ctx, "low", Low)
	prev := "h0"
	for i := 1; i <= 5; i++ {
		name := "h" + string(rune('0'+i))
		r.submitWaiting(ctx, name, High)
		if err := r.finish(prev); err != nil {
			t.Fatal(err)
		}
		if got := r.next(); got != name {
			t.Fatalf("started %s, want %s (low is held for 20 ms)", got, name)
		}
		prev = name
	}
	clock.Advance(20 * time.Millisecond)
	r.submitWaiting(ctx, "h6", High)
	if err := r.finish(prev); err != nil {
		t.Fatal(err)
	}
	// Both wait; the trickle has passed, so weighted round robin decides
	// and low is due within 9 dispatches.
	seen := false
	for i := 0; i < 9 && !seen; i++ {
		got := r.next()
		seen = got == "low"
		if !seen {
			r.submitWaiting(ctx, got+"x", High)
			if err := r.finish(got); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !seen {
		t.Fatal("low did not run within 9 dispatches once its trickle had passed")
	}
}

// TestBackgroundOff: without SetBackground (or with zeros) nothing is held.
func TestBackgroundOff(t *testing.T) {
	r := newRig(t, 100, 4)
	clock := newFakeClock()
	clock.install(r.q)
	ctx := context.Background()
	if _, err := r.q.Admit(High); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		r.submitRunning(ctx, name, Low)
	}
	r.q.SetBackground(time.Second, 0)
	r.submitRunning(ctx, "d", Low)
	if clock.pending() != 0 {
		t.Fatal("a wake-up was armed with the restraint off")
	}
}
