package concurrency

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// patience bounds every wait for something that must happen; it is never
// reached when the code is right.
const patience = 10 * time.Second

// job is a goroutine holding or waiting for a slot.
type job struct {
	id      string
	started chan struct{}
	err     chan error
	release func()
}

// startJob queues job id on l and waits until it holds a slot or waits in
// the queue (l counts one more waiting), so that jobs started one after
// another queue in that order. Only the caller may start or release jobs
// of l, or change its limit, meanwhile.
func startJob(t testing.TB, ctx context.Context, l *Limiter, id string, wg *sync.WaitGroup) *job {
	t.Helper()
	_, before := l.Stats()
	j := &job{id: id, started: make(chan struct{}), err: make(chan error, 1)}
	wg.Add(1)
	go func() {
		defer wg.Done()
		release, err := l.Acquire(ctx, id)
		if err != nil {
			j.err <- err
			return
		}
		j.release = release
		close(j.started)
	}()
	waitFor(t, fmt.Sprintf("job %s running or queued", id), func() bool {
		select {
		case <-j.started:
			return true
		default:
		}
		_, queued := l.Stats()
		return queued > before
	})
	return j
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (j *job) running() bool {
	select {
	case <-j.started:
		return true
	default:
		return false
	}
}

func (j *job) waitStarted(t testing.TB) {
	t.Helper()
	select {
	case <-j.started:
	case err := <-j.err:
		t.Fatalf("job %s: %v", j.id, err)
	case <-time.After(patience):
		t.Fatalf("job %s never started", j.id)
	}
}

func stats(t testing.TB, l *Limiter, running, queued int) {
	t.Helper()
	if r, q := l.Stats(); r != running || q != queued {
		t.Fatalf("stats = %d running, %d queued; want %d, %d", r, q, running, queued)
	}
}

func TestLimiterFIFO(t *testing.T) {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx := context.Background()
	l := NewLimiter(1)
	a := startJob(t, ctx, l, "a", &wg)
	a.waitStarted(t)
	jobs := []*job{a}
	for _, id := range []string{"b", "c", "d"} {
		jobs = append(jobs, startJob(t, ctx, l, id, &wg))
	}
	stats(t, l, 1, 3)
	// FIFO: each release starts the next job in the order they queued.
	for i := 1; i < len(jobs); i++ {
		for _, later := range jobs[i:] {
			if later.running() {
				t.Fatalf("job %s started before job %s released", later.id, jobs[i-1].id)
			}
		}
		jobs[i-1].release()
		jobs[i].waitStarted(t)
	}
	stats(t, l, 1, 0)
	jobs[3].release()
	stats(t, l, 0, 0)
}

func TestLimiterRaiseWakesAtOnce(t *testing.T) {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx := context.Background()
	l := NewLimiter(1)
	a := startJob(t, ctx, l, "a", &wg)
	b := startJob(t, ctx, l, "b", &wg)
	c := startJob(t, ctx, l, "c", &wg)
	d := startJob(t, ctx, l, "d", &wg)
	l.SetLimit(3)
	b.waitStarted(t)
	c.waitStarted(t)
	stats(t, l, 3, 1)
	if d.running() {
		t.Fatal("d started beyond the raised limit of 3")
	}
	for _, j := range []*job{a, b, c} {
		j.release()
	}
	d.waitStarted(t)
	d.release()
}

func TestLimiterLowerLetsRunningFinish(t *testing.T) {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx := context.Background()
	l := NewLimiter(3)
	var js []*job
	for _, id := range []string{"a", "b", "c"} {
		j := startJob(t, ctx, l, id, &wg)
		j.waitStarted(t)
		js = append(js, j)
	}
	l.SetLimit(0) // means 1: checked below, d waits until one job runs
	stats(t, l, 3, 0)
	d := startJob(t, ctx, l, "d", &wg)
	js[0].release()
	js[1].release()
	stats(t, l, 1, 1)
	if d.running() {
		t.Fatal("d started while the running jobs were still at the lowered limit")
	}
	js[2].release()
	d.waitStarted(t)
	d.release()
	d.release() // a second release is a no-op
	stats(t, l, 0, 0)
}

func TestLimiterCancel(t *testing.T) {
	var wg sync.WaitGroup
	defer wg.Wait()
	l := NewLimiter(1)
	a := startJob(t, context.Background(), l, "a", &wg)
	ctx, cancel := context.WithCancel(context.Background())
	b := startJob(t, ctx, l, "b", &wg)
	c := startJob(t, context.Background(), l, "c", &wg)
	cancel()
	select {
	case err := <-b.err:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled wait: %v, want context.Canceled", err)
		}
	case <-time.After(patience):
		t.Fatal("cancelled job still waiting")
	}
	stats(t, l, 1, 1) // a runs, c waits: b left the queue
	a.release()
	c.waitStarted(t)
	c.release()

	if _, err := l.Acquire(ctx, "late"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a done context: %v, want context.Canceled", err)
	}
	stats(t, l, 0, 0)
}

func TestLimiterJobTime(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLimiter(4)
	l.now, l.since = func() time.Time { return now }, now
	ctx := context.Background()
	r1, _ := l.Acquire(ctx, "a")
	r2, _ := l.Acquire(ctx, "b")
	now = now.Add(3 * time.Second) // 2 jobs × 3 s
	r1()
	now = now.Add(2 * time.Second) // 1 job × 2 s
	if got := l.JobTime(); got != 8*time.Second {
		t.Fatalf("job time %v, want 8s", got)
	}
	r2()
	now = now.Add(time.Hour)
	if got := l.JobTime(); got != 8*time.Second {
		t.Fatalf("job time %v after all released, want 8s", got)
	}
}

// TestLimiterStress acquires and releases from many goroutines while the
// limit moves, and checks that no more jobs run than the highest limit
// set, and that all finish.
func TestLimiterStress(t *testing.T) {
	const workers, rounds, maxLimit = 16, 200, 5
	l := NewLimiter(2)
	var inside, peak atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				// Some waits are cancelled on the way.
				actx, acancel := context.WithCancel(ctx)
				if (w+i)%7 == 0 {
					acancel()
				}
				release, err := l.Acquire(actx, fmt.Sprintf("w%d-%d", w, i))
				acancel()
				if err != nil {
					continue
				}
				n := inside.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				inside.Add(-1)
				release()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 500 {
			l.SetLimit(1 + i%maxLimit)
		}
	}()
	wg.Wait()
	if p := peak.Load(); p > maxLimit || p < 1 {
		t.Fatalf("peak %d jobs at once, want 1 to %d", p, maxLimit)
	}
	stats(t, l, 0, 0)
}
