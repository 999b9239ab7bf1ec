package concurrency

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Limiter runs at most limit jobs at once; the others wait in a FIFO queue.
// The limit changes live. Safe for concurrent use; it starts no goroutine.
type Limiter struct {
	mu      sync.Mutex
	limit   int
	running int
	queue   []*waiter
	now     func() time.Time
	// jobTime is the running time of all jobs summed up to since.
	jobTime time.Duration
	since   time.Time
}

// waiter is a job in the queue. ready is closed when it gets its slot.
type waiter struct {
	id    string
	ready chan struct{}
}

// NewLimiter returns a limiter running at most limit jobs (at least 1).
func NewLimiter(limit int) *Limiter {
	return &Limiter{limit: max(limit, 1), now: time.Now, since: time.Now()}
}

// Acquire waits for a slot for job id, in FIFO order with the other jobs
// waiting, and returns the function that gives the slot back (it may be
// called more than once; the first call counts). It fails only when ctx
// ends first, and then holds no slot.
func (l *Limiter) Acquire(ctx context.Context, id string) (release func(), err error) {
	l.mu.Lock()
	if err := ctx.Err(); err != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("wait for a job slot for %s: %w", id, err)
	}
	if len(l.queue) == 0 && l.running < l.limit {
		l.start()
		l.mu.Unlock()
		return l.releaser(), nil
	}
	w := &waiter{id: id, ready: make(chan struct{})}
	l.queue = append(l.queue, w)
	l.mu.Unlock()

	select {
	case <-w.ready:
		return l.releaser(), nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	select {
	case <-w.ready:
		// The slot came as ctx ended: give it to the next job.
		l.account()
		l.running--
		l.grant()
	default:
		if i := slices.Index(l.queue, w); i >= 0 {
			l.queue = slices.Delete(l.queue, i, i+1)
		}
	}
	l.mu.Unlock()
	return nil, fmt.Errorf("wait for a job slot for %s: %w", id, ctx.Err())
}

// releaser returns the release function of one slot.
func (l *Limiter) releaser() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.account()
			l.running--
			l.grant()
			l.mu.Unlock()
		})
	}
}

// start counts one more running job. l.mu must be held.
func (l *Limiter) start() {
	l.account()
	l.running++
}

// account adds the running time since the last change. l.mu must be held.
func (l *Limiter) account() {
	now := l.now()
	if d := now.Sub(l.since); d > 0 {
		l.jobTime += time.Duration(l.running) * d
	}
	l.since = now
}

// grant hands free slots to the waiting jobs, oldest first. l.mu must be
// held.
func (l *Limiter) grant() {
	for l.running < l.limit && len(l.queue) > 0 {
		w := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		l.start()
		close(w.ready)
	}
	if len(l.queue) == 0 {
		l.queue = nil // let a long queue's array go
	}
}

// SetLimit changes the limit (at least 1). Raising it starts waiting jobs
// at once; lowering it lets running jobs finish and starts none until the
// running count is under the new limit.
func (l *Limiter) SetLimit(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limit = max(n, 1)
	l.grant()
}

// Stats returns the jobs holding a slot and the jobs waiting for one.
func (l *Limiter) Stats() (running, queued int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running, len(l.queue)
}

// JobTime is the running time of all jobs summed since the limiter was
// made: its growth over an interval, divided by the interval, is the mean
// number of jobs running.
func (l *Limiter) JobTime() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.account()
	return l.jobTime
}
