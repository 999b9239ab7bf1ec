package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

// ErrDone is returned by Run on an op that is Done.
var ErrDone = errors.New("operation is done")

// Retry hint bounds and the saturation window after a refusal.
const (
	minRetryAfter  = time.Second
	maxRetryAfter  = 60 * time.Second
	refusalWindow  = time.Second
	serviceEWMAWgt = 1.0 / 8 // weight of a new sample in the mean service time
)

// Queue is a priority I/O queue: a bounded admission queue in front of a
// bounded number of dispatch slots. It is safe for concurrent use; the zero
// value is not usable, call New.
type Queue struct {
	now   func() time.Time              // injected by tests
	since func(time.Time) time.Duration // time.Since reads only the monotonic clock

	mu        sync.Mutex
	maxQueued int
	depth     int
	inFlight  int
	queued    [numClasses]int // admitted, not Done, not running
	waiters   [numClasses]waitList
	current   [numClasses]int // smooth weighted round robin current weights

	admitted, refused, dispatched [numClasses]uint64
	waitSeconds, serviceSeconds   [numClasses]float64

	meanService float64 // seconds, EWMA of fn's run time; 0 before the first sample
	lastRefusal time.Time

	// Background restraint (SetBackground); zero values disable it.
	afterFunc    func(time.Duration, func()) func() bool // injected by tests; returns a stop func
	anticipation time.Duration
	trickle      time.Duration
	live         [numClasses]int // admitted, not Done
	lastHighDone time.Time
	lastLow      time.Time // the last dispatch of a low step
	wakeAt       time.Time // when the armed wake-up fires; zero: none
	stopWake     func() bool
	restrained   uint64 // dispatch decisions that held low work back
}

// New returns a Queue that admits at most maxQueued queued operations and
// runs at most depth at once. Values below 1 are raised to 1.
func New(maxQueued, depth int) *Queue {
	return &Queue{now: time.Now, since: time.Since, maxQueued: max(maxQueued, 1), depth: max(depth, 1),
		afterFunc: func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }}
}

// SetBackground makes low priority background work while high-priority
// work is present: while a high operation is admitted, and for
// anticipation after the last one is Done, low steps are dispatched at
// most one per trickle, whatever slots are free. Low work keeps moving (so
// it never starves), but it leaves the machine to high-priority work. Zero
// for either turns the restraint off (the default). See the package doc.
func (q *Queue) SetBackground(anticipation, trickle time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.anticipation, q.trickle = max(anticipation, 0), max(trickle, 0)
	q.dispatchLocked()
}

// lowHeldLocked reports whether a low step must wait at now for the
// restraint, and until when.
func (q *Queue) lowHeldLocked(now time.Time) (held bool, until time.Time) {
	if q.anticipation <= 0 || q.trickle <= 0 {
		return false, time.Time{}
	}
	highActive := q.live[High] > 0
	if !highActive && (q.lastHighDone.IsZero() || now.Sub(q.lastHighDone) >= q.anticipation) {
		return false, time.Time{}
	}
	next := q.lastLow.Add(q.trickle)
	if q.lastLow.IsZero() || !now.Before(next) {
		return false, time.Time{}
	}
	if !highActive {
		if end := q.lastHighDone.Add(q.anticipation); end.Before(next) {
			next = end
		}
	}
	return true, next
}

// wakeLocked arms one wake-up at t to dispatch held low work.
func (q *Queue) wakeLocked(now, t time.Time) {
	if !q.wakeAt.IsZero() && !q.wakeAt.After(t) {
		return // an earlier wake-up is armed
	}
	if q.stopWake != nil {
		q.stopWake()
	}
	q.wakeAt = t
	q.stopWake = q.afterFunc(t.Sub(now), func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.wakeAt, q.stopWake = time.Time{}, nil
		q.dispatchLocked()
	})
}

// SetLimits changes both limits live; values below 1 are raised to 1. A
// larger depth dispatches waiting operations at once; a smaller one lets
// running work finish and dispatches nothing until fewer than depth run. A
// smaller maxQueued only refuses new admissions: queued work is never
// dropped.
func (q *Queue) SetLimits(maxQueued, depth int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.maxQueued, q.depth = max(maxQueued, 1), max(depth, 1)
	q.dispatchLocked()
}

// Op is one admitted operation. Its methods are safe for concurrent use,
// but an op runs at most one Run at a time.
type Op struct {
	q     *Queue
	class Class

	// Guarded by q.mu.
	done       bool
	running    bool // holds a slot (from dispatch until fn returns)
	waiting    bool // in q.waiters[class]
	granted    bool // the last wake-up handed over a slot (else: Done)
	prev, next *Op  // wait list links
	waitStart  time.Time
	waited     float64       // seconds of the last wait, to undo a cancelled grant
	ready      chan struct{} // capacity 1; made on the first wait
}

// Class returns the op's priority class.
func (o *Op) Class() Class { return o.class }

// Admit admits a new operation of class c without blocking. When
// maxQueued operations are queued already it refuses at once with an error
// wrapping sdk.ErrBackpressure that carries a retry hint (sdk.RetryAfter).
// An unknown class is an error wrapping sdk.ErrInvalidArgument.
func (q *Queue) Admit(c Class) (*Op, error) {
	if !c.valid() {
		return nil, fmt.Errorf("admit operation: unknown priority class %d: must be high, normal or low: %w", int(c), sdk.ErrInvalidArgument)
	}
	q.mu.Lock()
	n := q.queuedLocked()
	if limit := admissionLimit(q.maxQueued, c); n >= limit {
		q.refused[c]++
		q.lastRefusal = q.now()
		maxQueued := q.maxQueued
		after := retryAfter(n, q.depth, q.meanService)
		q.mu.Unlock()
		full := "queue full"
		if limit < maxQueued {
			full = fmt.Sprintf("queue full for %s priority (the last %d places are kept for higher priorities)", c, maxQueued-limit)
		}
		err := fmt.Errorf("admit %s-priority operation: %s: %d operations queued, limits.max_queue_depth is %d: %w",
			c, full, n, maxQueued, sdk.ErrBackpressure)
		return nil, sdk.WithRetryAfter(err, after)
	}
	q.queued[c]++
	q.admitted[c]++
	q.live[c]++
	q.mu.Unlock()
	return &Op{q: q, class: c}, nil
}

// Run waits for a dispatch slot, runs fn holding it, releases it and
// returns fn's error. While fn runs the op does not count as queued. If ctx
// ends while Run waits, Run returns an error wrapping ctx.Err() without
// running fn (unless the slot was handed over at that very moment), and the
// op stays admitted until Done. A free slot is taken without looking at ctx. Run after Done returns
// an error wrapping ErrDone; Run while the same op is in Run returns an
// error. A panic in fn releases the slot and propagates.
func (o *Op) Run(ctx context.Context, fn func() error) error {
	q := o.q
	q.mu.Lock()
	switch {
	case o.done:
		q.mu.Unlock()
		return fmt.Errorf("run %s-priority operation: %w", o.class, ErrDone)
	case o.running || o.waiting:
		q.mu.Unlock()
		return fmt.Errorf("run %s-priority operation: already running: an op runs one step at a time", o.class)
	}
	if q.inFlight < q.depth && q.waitingLocked() == 0 && !q.heldLocked(o.class) {
		q.startLocked(o)
		q.mu.Unlock()
	} else if err := o.wait(ctx); err != nil {
		return err
	}
	start := q.now()
	defer q.finish(o, start)
	return fn()
}

// wait queues o for a slot; it is called with q.mu held and returns with
// it released. It returns nil when o holds a slot.
func (o *Op) wait(ctx context.Context) error {
	q := o.q
	if err := ctx.Err(); err != nil {
		q.mu.Unlock()
		return fmt.Errorf("wait for %s-priority dispatch: %w", o.class, err)
	}
	if o.ready == nil {
		o.ready = make(chan struct{}, 1)
	}
	o.granted = false
	o.waitStart = q.now()
	q.waiters[o.class].pushBack(o)
	o.waiting = true
	q.dispatchLocked() // a held low step arms the wake-up; a free slot may go to it
	q.mu.Unlock()

	select {
	case <-o.ready:
		// granted was written before the send, under q.mu.
		if o.granted {
			return nil
		}
		return fmt.Errorf("wait for %s-priority dispatch: %w", o.class, ErrDone)
	case <-ctx.Done():
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if o.waiting {
		q.removeLocked(o)
	} else {
		// Dispatched or Done at the same moment: take the wake-up, and give
		// a slot back unused.
		<-o.ready
		if o.granted {
			q.inFlight--
			o.running = false
			if !o.done {
				q.queued[o.class]++
			}
			q.dispatched[o.class]--
			q.waitSeconds[o.class] -= o.waited
			q.dispatchLocked()
		}
	}
	return fmt.Errorf("wait for %s-priority dispatch: %w", o.class, ctx.Err())
}

// Done takes the op out of the queue. It is idempotent. A Run waiting for a
// slot returns ErrDone; a running step finishes normally.
func (o *Op) Done() {
	q := o.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if o.done {
		return
	}
	o.done = true
	q.live[o.class]--
	if o.class == High {
		q.lastHighDone = q.now()
	}
	if o.running {
		return // finish sees done and does not count it queued again
	}
	q.queued[o.class]--
	if o.waiting {
		q.removeLocked(o)
		o.granted = false
		o.ready <- struct{}{}
	}
}

// admissionLimit is how many queued operations class c is admitted
// against: high up to maxQueued, normal up to 7/8 of it and low up to 3/4,
// so that lower priorities filling the queue leave room for higher ones
// (the integer division keeps tiny queues at the plain bound).
func admissionLimit(maxQueued int, c Class) int {
	switch c {
	case Normal:
		return maxQueued - maxQueued/8
	case Low:
		return maxQueued - maxQueued/4
	}
	return maxQueued
}

// startLocked gives o a slot.
func (q *Queue) startLocked(o *Op) {
	if o.class == Low && q.trickle > 0 {
		q.lastLow = q.now()
	}
	q.inFlight++
	q.queued[o.class]--
	q.dispatched[o.class]++
	o.running = true
}

// finish releases o's slot after fn and hands it on.
func (q *Queue) finish(o *Op, start time.Time) {
	d := q.since(start).Seconds()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.serviceSeconds[o.class] += d
	if q.meanService == 0 {
		q.meanService = d
	} else {
		q.meanService += serviceEWMAWgt * (d - q.meanService)
	}
	q.inFlight--
	o.running = false
	if !o.done {
		q.queued[o.class]++
	}
	q.dispatchLocked()
}

// dispatchLocked hands free slots to waiters, chosen by pickLocked. Held
// low work (SetBackground) is skipped, and a wake-up is armed for when it
// may go.
func (q *Queue) dispatchLocked() {
	if q.inFlight >= q.depth || q.waitingLocked() == 0 {
		return
	}
	now := q.now()
	for q.inFlight < q.depth && q.waitingLocked() > 0 {
		skipLow := false
		if q.waiters[Low].n > 0 {
			if held, until := q.lowHeldLocked(now); held {
				skipLow = true
				q.restrained++
				q.wakeLocked(now, until)
			}
		}
		c, ok := q.pickLocked(skipLow)
		if !ok {
			return
		}
		o := q.waiters[c].head
		q.removeLocked(o)
		o.waited = now.Sub(o.waitStart).Seconds()
		q.waitSeconds[c] += o.waited
		q.startLocked(o)
		o.granted = true
		o.ready <- struct{}{} // capacity 1 and o waits for exactly this
	}
}

// heldLocked reports whether a step of class c may not take a free slot
// at once because of the background restraint.
func (q *Queue) heldLocked(c Class) bool {
	if c != Low || q.anticipation <= 0 || q.trickle <= 0 {
		return false
	}
	held, _ := q.lowHeldLocked(q.now())
	return held
}

// pickLocked chooses the class to dispatch from by smooth weighted round
// robin over the classes with waiters, leaving out low when skipLow; ok is
// false when no class is left.
func (q *Queue) pickLocked(skipLow bool) (c Class, ok bool) {
	total, best := 0, -1
	for c := range numClasses {
		if q.waiters[c].n == 0 {
			q.current[c] = 0
			continue
		}
		if skipLow && Class(c) == Low {
			continue // keeps its credit: it waits for the restraint, not by choice
		}
		q.current[c] += weights[c]
		total += weights[c]
		if best < 0 || q.current[c] > q.current[best] {
			best = c
		}
	}
	if best < 0 {
		return 0, false
	}
	q.current[best] -= total
	return Class(best), true
}

// removeLocked takes a waiting o off its wait list. A class left without
// waiters loses its credit.
func (q *Queue) removeLocked(o *Op) {
	l := &q.waiters[o.class]
	l.remove(o)
	o.waiting = false
	if l.n == 0 {
		q.current[o.class] = 0
	}
}

// waitingLocked is the number of ops blocked in Run for a slot, over all
// classes: the wait lists' lengths.
func (q *Queue) waitingLocked() int {
	n := 0
	for c := range q.waiters {
		n += q.waiters[c].n
	}
	return n
}

func (q *Queue) queuedLocked() int {
	n := 0
	for _, v := range q.queued {
		n += v
	}
	return n
}

// retryAfter estimates how long the queue takes to drain queued
// operations at depth parallel steps of meanService seconds each, rounded
// up to whole seconds within [minRetryAfter, maxRetryAfter].
func retryAfter(queued, depth int, meanService float64) time.Duration {
	secs := math.Ceil(float64(queued+1) * meanService / float64(max(depth, 1)))
	switch {
	case math.IsNaN(secs) || secs < minRetryAfter.Seconds():
		return minRetryAfter
	case secs > maxRetryAfter.Seconds():
		return maxRetryAfter
	}
	return time.Duration(secs) * time.Second
}

// Stats is a snapshot of a Queue. Arrays are indexed by Class.
type Stats struct {
	MaxQueued, Depth int
	// Queued: admitted, not Done, not running (waiting ones included).
	Queued [numClasses]int
	// Waiting: blocked in Run for a slot.
	Waiting [numClasses]int
	// InFlight: steps running now, over all classes.
	InFlight int
	// Admitted and Refused count Admit calls; Dispatched counts steps that
	// were given a slot and ran fn.
	Admitted, Refused, Dispatched [numClasses]uint64
	// WaitSeconds totals the time dispatched steps waited in Run for a slot
	// (steps that got a slot at once add 0; cancelled waits are not
	// counted); ServiceSeconds totals the time fn ran.
	WaitSeconds, ServiceSeconds [numClasses]float64
	// Restrained counts dispatch decisions that held low work back for
	// high-priority work (SetBackground).
	Restrained uint64
}

// Stats returns a snapshot of the queue.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := Stats{
		MaxQueued: q.maxQueued, Depth: q.depth, Queued: q.queued, InFlight: q.inFlight,
		Admitted: q.admitted, Refused: q.refused, Dispatched: q.dispatched,
		WaitSeconds: q.waitSeconds, ServiceSeconds: q.serviceSeconds, Restrained: q.restrained,
	}
	for c := range numClasses {
		s.Waiting[c] = q.waiters[c].n
	}
	return s
}

// Backpressure returns the queue's backpressure state and a short reason:
// saturated when queued/maxQueued is at least 0.9 or Admit refused an
// operation in the last second, elevated from 0.5, else none.
func (q *Queue) Backpressure() (sdk.Backpressure, string) {
	q.mu.Lock()
	n, limit, inFlight, depth := q.queuedLocked(), q.maxQueued, q.inFlight, q.depth
	sinceRefusal := time.Duration(math.MaxInt64)
	if !q.lastRefusal.IsZero() {
		sinceRefusal = q.now().Sub(q.lastRefusal)
	}
	q.mu.Unlock()
	return backpressure(n, limit, inFlight, depth, sinceRefusal)
}

// backpressure classifies a queue fill; sinceRefusal is the time since the
// last refused admission.
func backpressure(queued, maxQueued, inFlight, depth int, sinceRefusal time.Duration) (sdk.Backpressure, string) {
	fill := float64(queued) / float64(max(maxQueued, 1))
	state := sdk.BackpressureNone
	switch {
	case fill >= 0.9:
		state = sdk.BackpressureSaturated
	case fill >= 0.5:
		state = sdk.BackpressureElevated
	}
	detail := fmt.Sprintf("%d%% full (%d of %d queued, %d of %d running)",
		int(fill*100), queued, maxQueued, inFlight, depth)
	if sinceRefusal >= 0 && sinceRefusal < refusalWindow {
		return sdk.BackpressureSaturated, "I/O queue refused work in the last second, " + detail
	}
	return state, "I/O queue " + detail
}

// waitList is an intrusive FIFO of waiting ops, linked through Op.prev and
// Op.next, so queueing allocates nothing and a cancelled waiter leaves in
// O(1).
type waitList struct {
	head, tail *Op
	n          int
}

func (l *waitList) pushBack(o *Op) {
	o.prev, o.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = o
	} else {
		l.head = o
	}
	l.tail = o
	l.n++
}

func (l *waitList) remove(o *Op) {
	if o.prev != nil {
		o.prev.next = o.next
	} else {
		l.head = o.next
	}
	if o.next != nil {
		o.next.prev = o.prev
	} else {
		l.tail = o.prev
	}
	o.prev, o.next = nil, nil
	l.n--
}
