package scheduler

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// patience bounds every wait for something the test expects to happen; it
// only decides how long a broken test hangs, never whether a test passes.
const patience = 10 * time.Second

// fakeClock is an injected clock for exact wait and service times, with
// timers that fire when Advance passes them.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

// AfterFunc is Queue.afterFunc over the fake clock.
func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := &fakeTimer{at: c.t.Add(d), f: f}
	c.timers = append(c.timers, ft)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !ft.stopped
		ft.stopped = true
		return was
	}
}

// pending counts timers not yet fired or stopped.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ft := range c.timers {
		if !ft.stopped {
			n++
		}
	}
	return n
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// install makes q read this clock; call it before q is shared.
func (c *fakeClock) install(q *Queue) {
	q.now = c.Now
	q.since = func(t time.Time) time.Duration { return c.Now().Sub(t) }
	q.afterFunc = c.AfterFunc
}

// Advance moves the clock and runs, in this goroutine, the timers it
// passes.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	var due []func()
	for _, ft := range c.timers {
		if !ft.stopped && !ft.at.After(c.t) {
			ft.stopped = true
			due = append(due, ft.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

// rig runs named steps on a Queue; each step's fn reports its start on
// started and then holds its slot until the test releases it.
type rig struct {
	t       testing.TB
	q       *Queue
	started chan string
	steps   map[string]*step
	wg      sync.WaitGroup
}

type step struct {
	name        string
	class       Class
	op          *Op
	releaseOnce sync.Once
	release     chan struct{}
	result      chan error // Run's error
}

func newRig(t testing.TB, maxQueued, depth int) *rig {
	t.Helper()
	r := &rig{t: t, q: New(maxQueued, depth), started: make(chan string, 1024), steps: map[string]*step{}}
	t.Cleanup(func() {
		for _, s := range r.steps {
			s.op.Done()
			s.releaseOnce.Do(func() { close(s.release) })
		}
		r.wg.Wait()
	})
	return r
}

// submit admits a step and starts its Run in a goroutine.
func (r *rig) submit(ctx context.Context, name string, c Class) *step {
	r.t.Helper()
	op, err := r.q.Admit(c)
	if err != nil {
		r.t.Fatalf("admit %s: %v", name, err)
	}
	s := &step{name: name, class: c, op: op, release: make(chan struct{}), result: make(chan error, 1)}
	r.steps[name] = s
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		s.result <- op.Run(ctx, func() error {
			r.started <- name
			<-s.release
			return nil
		})
	}()
	return s
}

// submitWaiting submits a step and returns once it waits for a slot, so
// that steps submitted one after another wait in that order.
func (r *rig) submitWaiting(ctx context.Context, name string, c Class) *step {
	r.t.Helper()
	before := r.q.Stats().Waiting[c]
	s := r.submit(ctx, name, c)
	r.waitFor(name+" waiting", func(st Stats) bool { return st.Waiting[c] == before+1 })
	return s
}

// submitRunning submits a step and returns once its fn runs.
func (r *rig) submitRunning(ctx context.Context, name string, c Class) *step {
	r.t.Helper()
	s := r.submit(ctx, name, c)
	if got := r.next(); got != name {
		r.t.Fatalf("started %s, want %s", got, name)
	}
	return s
}

// next returns the name of the next step whose fn started.
func (r *rig) next() string {
	r.t.Helper()
	select {
	case name := <-r.started:
		return name
	case <-time.After(patience):
		r.t.Fatalf("no step started within %v; stats %+v", patience, r.q.Stats())
		return ""
	}
}

// noneStarted fails if a step's fn started and was not yet taken by next.
func (r *rig) noneStarted() {
	r.t.Helper()
	select {
	case name := <-r.started:
		r.t.Fatalf("step %s started, want none", name)
	default:
	}
}

// finish releases a running step and returns Run's error.
func (r *rig) finish(name string) error {
	r.t.Helper()
	s := r.steps[name]
	s.releaseOnce.Do(func() { close(s.release) })
	return r.result(name)
}

// result waits for a step's Run to return.
func (r *rig) result(name string) error {
	r.t.Helper()
	select {
	case err := <-r.steps[name].result:
		return err
	case <-time.After(patience):
		r.t.Fatalf("%s: Run did not return within %v", name, patience)
		return nil
	}
}

// waitFor polls Stats until cond holds.
func (r *rig) waitFor(what string, cond func(Stats) bool) {
	r.t.Helper()
	deadline := time.Now().Add(patience)
	for {
		st := r.q.Stats()
		if cond(st) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: not reached within %v; stats %+v", what, patience, st)
		}
		time.Sleep(time.Millisecond)
	}
}
