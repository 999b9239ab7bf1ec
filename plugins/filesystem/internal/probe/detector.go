package probe

import (
	"sync"
	"sync/atomic"
	"time"
)

// Result is one round of probes.
type Result struct {
	IOURing, ODirect Capability
	// At is when the round started; Took how long it ran.
	At   time.Time
	Took time.Duration
}

// changed reports whether the availability of either capability differs.
func changed(a, b Result) bool {
	return a.IOURing.Available != b.IOURing.Available || a.ODirect.Available != b.ODirect.Available
}

// Funcs are the probes a Detector runs; a nil field is the real probe.
type Funcs struct {
	IOURing func() Capability
	ODirect func(dir string) Capability
}

// Detector re-runs the probes for a folder every interval and keeps the
// latest Result.
type Detector struct {
	dir      string
	f        Funcs
	onChange func(old, cur Result)

	cur      atomic.Pointer[Result]
	interval atomic.Int64  // time.Duration; <= 0: no periodic probes
	probing  sync.Mutex    // one round of probes at a time
	wake     chan struct{} // cap 1: re-arm the timer (interval changed, or probed out of turn)
	stop     chan struct{} // closed by the first Stop
	done     chan struct{} // closed when the goroutine ends
	mu       sync.Mutex    // guards started and stopped
	started  bool
	stopped  bool
}

// NewDetector returns a Detector for dir that probes every interval once
// started (interval <= 0: only at Start and on Redetect). It does not
// probe. onChange, if not nil, is called whenever the Available of either
// capability differs from the previous result (not for the first result,
// which has no previous one: read Current after Start). It is called outside
// any lock from the goroutine that probed — the Detector's own, or a
// Redetect caller's — so it may call Current, Redetect and SetInterval, and
// two calls may overlap when Redetect runs while a periodic probe does:
// order them by cur.At. It must not call Stop, which waits for the
// goroutine that would be running it.
func NewDetector(dir string, interval time.Duration, f Funcs, onChange func(old, cur Result)) *Detector {
	if f.IOURing == nil {
		f.IOURing = IOURing
	}
	if f.ODirect == nil {
		f.ODirect = ODirect
	}
	d := &Detector{
		dir:      dir,
		f:        f,
		onChange: onChange,
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	d.interval.Store(int64(interval))
	return d
}

// Start probes once, so that Current is valid when it returns, then starts
// the goroutine that probes every interval until Stop. Calling it again, or
// after Stop, does nothing.
func (d *Detector) Start() {
	d.mu.Lock()
	if d.started || d.stopped {
		d.mu.Unlock()
		return
	}
	d.started = true
	d.mu.Unlock()
	// A Stop from here on waits for the goroutine, which sees stop closed.
	d.probe()
	// The timer is armed before Start returns, so a SetInterval after
	// Start always re-arms it.
	t := time.NewTimer(time.Hour)
	d.arm(t)
	go d.run(t)
}

// Current returns the latest Result (the zero Result before the first
// probe). It takes no lock.
func (d *Detector) Current() Result {
	if r := d.cur.Load(); r != nil {
		return *r
	}
	return Result{}
}

// SetInterval changes the interval live: the next probe comes interval
// after the end of the last one, or at once if that time has passed.
// interval <= 0 stops periodic probing.
func (d *Detector) SetInterval(interval time.Duration) {
	d.interval.Store(int64(interval))
	d.poke()
}

// Redetect probes now, in the caller's goroutine, and returns the result;
// the next periodic probe comes an interval after it.
func (d *Detector) Redetect() Result {
	r := d.probe()
	d.poke()
	return r
}

// Stop ends periodic probing and waits for the goroutine (at most the probe
// in progress). It may be called more than once, and before Start.
func (d *Detector) Stop() {
	d.mu.Lock()
	first := !d.stopped
	d.stopped = true
	started := d.started
	d.mu.Unlock()
	if first {
		close(d.stop)
	}
	if started {
		<-d.done
	}
}

// poke asks the goroutine to re-arm its timer.
func (d *Detector) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// probe runs one round, stores it and reports a change to onChange.
func (d *Detector) probe() Result {
	d.probing.Lock()
	start := time.Now()
	r := &Result{IOURing: d.f.IOURing(), ODirect: d.f.ODirect(d.dir), At: start}
	r.Took = time.Since(start)
	old := d.cur.Swap(r)
	d.probing.Unlock()
	if old != nil && d.onChange != nil && changed(*old, *r) {
		d.onChange(*old, *r)
	}
	return *r
}

func (d *Detector) run(t *time.Timer) {
	defer close(d.done)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-d.wake:
		case <-t.C:
			d.probe()
		}
		d.arm(t)
	}
}

// arm sets t to fire an interval after the end of the last probe (at once
// if that has passed), or stops it when the interval is <= 0.
func (d *Detector) arm(t *time.Timer) {
	iv := time.Duration(d.interval.Load())
	if iv <= 0 {
		t.Stop()
		return
	}
	last := d.Current()
	t.Reset(max(0, time.Until(last.At.Add(last.Took+iv))))
}
