package probe

import (
	"sync/atomic"
	"testing"
	"time"
)

// waitTimeout bounds every wait for an event; events come within
// milliseconds, so reaching it means the event never came.
const waitTimeout = 10 * time.Second

// fakeProbes answers as its fields say, changeable while a Detector runs.
type fakeProbes struct {
	ioURing, oDirect atomic.Bool
	rounds           atomic.Int64
	dir              atomic.Pointer[string]
}

func (f *fakeProbes) funcs() Funcs {
	return Funcs{
		IOURing: func() Capability {
			f.rounds.Add(1)
			return Capability{Available: f.ioURing.Load(), Detail: "fake io_uring"}
		},
		ODirect: func(dir string) Capability {
			f.dir.Store(&dir)
			return Capability{Available: f.oDirect.Load(), Detail: "fake O_DIRECT"}
		},
	}
}

type change struct{ old, cur Result }

// recorder returns an onChange that sends each change to the channel.
func recorder() (func(old, cur Result), chan change) {
	ch := make(chan change, 64)
	return func(old, cur Result) { ch <- change{old, cur} }, ch
}

func nextChange(tb testing.TB, ch chan change) change {
	tb.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(waitTimeout):
		tb.Fatal("no change reported")
		return change{}
	}
}

func TestDetectorStart(t *testing.T) {
	f := &fakeProbes{}
	f.ioURing.Store(true)
	onChange, changes := recorder()
	d := NewDetector("/root/dir", time.Hour, f.funcs(), onChange)
	defer d.Stop()
	if f.rounds.Load() != 0 || !d.Current().At.IsZero() {
		t.Fatal("NewDetector probed")
	}
	d.Start()
	cur := d.Current()
	if f.rounds.Load() != 1 || cur.At.IsZero() || !cur.IOURing.Available || cur.ODirect.Available ||
		cur.IOURing.Detail != "fake io_uring" || *f.dir.Load() != "/root/dir" {
		t.Fatalf("after Start: %d rounds, Current %+v, dir %q; want one round of the fake answers for /root/dir",
			f.rounds.Load(), cur, *f.dir.Load())
	}
	if len(changes) != 0 {
		t.Fatal("the first result was reported as a change")
	}
	d.Start() // again: nothing
	if f.rounds.Load() != 1 {
		t.Fatalf("a second Start probed: %d rounds", f.rounds.Load())
	}
}

// TestDetectorPathSwitch: the probes' answers change at runtime; the
// change is reported with the old and new results, Current follows, and
// SetInterval shortens the period live (with the hour-long interval the
// change would not be seen within waitTimeout).
func TestDetectorPathSwitch(t *testing.T) {
	f := &fakeProbes{}
	f.ioURing.Store(true)
	f.oDirect.Store(true)
	onChange, changes := recorder()
	d := NewDetector(t.TempDir(), time.Hour, f.funcs(), onChange)
	d.Start()
	defer d.Stop()

	f.oDirect.Store(false)
	d.SetInterval(10 * time.Millisecond)
	c := nextChange(t, changes)
	if !c.old.ODirect.Available || c.cur.ODirect.Available || !c.cur.IOURing.Available || !c.cur.At.After(c.old.At) {
		t.Fatalf("change %+v; want O_DIRECT from available to not, io_uring still available, a later probe", c)
	}
	if d.Current().ODirect.Available {
		t.Fatal("Current still has O_DIRECT available")
	}

	f.ioURing.Store(false)
	f.oDirect.Store(true)
	c = nextChange(t, changes)
	if !c.old.IOURing.Available || c.cur.IOURing.Available || c.old.ODirect.Available || !c.cur.ODirect.Available {
		t.Fatalf("change %+v; want io_uring lost and O_DIRECT back in one change", c)
	}
	if cur := d.Current(); cur.IOURing.Available || !cur.ODirect.Available {
		t.Fatalf("Current %+v; want io_uring unavailable, O_DIRECT available", cur)
	}
}

// TestDetectorRedetect: Redetect probes in the caller's goroutine and
// reports a change before it returns; no change, no report.
func TestDetectorRedetect(t *testing.T) {
	f := &fakeProbes{}
	var calls atomic.Int64
	var last change
	d := NewDetector(t.TempDir(), 0, f.funcs(), func(old, cur Result) {
		calls.Add(1)
		last = change{old, cur} // same goroutine as Redetect: read after it returns
	})
	d.Start()
	defer d.Stop()

	r := d.Redetect()
	if calls.Load() != 0 || r.IOURing.Available || f.rounds.Load() != 2 {
		t.Fatalf("Redetect without a change: %d reports, %d rounds, result %+v", calls.Load(), f.rounds.Load(), r)
	}
	f.ioURing.Store(true)
	r = d.Redetect()
	if calls.Load() != 1 || last.old.IOURing.Available || !last.cur.IOURing.Available || last.cur != r || d.Current() != r {
		t.Fatalf("Redetect with a change: %d reports, last %+v, result %+v", calls.Load(), last, r)
	}
}

// TestDetectorOnChangeReentrant: onChange may call back into the Detector
// without deadlocking.
func TestDetectorOnChangeReentrant(t *testing.T) {
	f := &fakeProbes{}
	var d *Detector
	done := make(chan Result, 8)
	d = NewDetector(t.TempDir(), time.Hour, f.funcs(), func(old, cur Result) {
		d.SetInterval(time.Hour)
		done <- d.Redetect() // no change this time: no further report
	})
	d.Start()
	defer d.Stop()
	f.oDirect.Store(true)
	d.SetInterval(time.Millisecond)
	select {
	case r := <-done:
		if !r.ODirect.Available {
			t.Fatalf("Redetect from onChange = %+v; want O_DIRECT available", r)
		}
	case <-time.After(waitTimeout):
		t.Fatal("onChange did not complete")
	}
}

func TestDetectorStop(t *testing.T) {
	f := &fakeProbes{}
	d := NewDetector(t.TempDir(), time.Millisecond, f.funcs(), nil)
	d.Stop() // before Start
	d.Start()
	if f.rounds.Load() != 0 {
		t.Fatalf("Start after Stop probed %d times", f.rounds.Load())
	}
	d.Stop()

	d = NewDetector(t.TempDir(), time.Millisecond, f.funcs(), nil)
	d.Start()
	d.Stop()
	d.Stop()
	n := f.rounds.Load()
	r := d.Redetect() // still allowed: probes in the caller's goroutine
	if f.rounds.Load() != n+1 || r.At.IsZero() {
		t.Fatalf("Redetect after Stop: %d rounds (was %d), %+v", f.rounds.Load(), n, r)
	}
}

// TestDetectorReal runs the real probes through a Detector.
func TestDetectorReal(t *testing.T) {
	dir := t.TempDir()
	d := NewDetector(dir, 0, Funcs{}, nil)
	d.Start()
	defer d.Stop()
	r := d.Current()
	if r.IOURing.Detail == "" || r.ODirect.Detail == "" || r.At.IsZero() {
		t.Fatalf("Current %+v; want both capabilities explained", r)
	}
	t.Logf("io_uring: %+v; O_DIRECT: %+v; took %v", r.IOURing, r.ODirect, r.Took)
	checkDir(t, dir)
}
