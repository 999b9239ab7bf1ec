// Package buffer bounds the bytes the dbstorage plugin holds in flight.
//
// Every piece of object data the plugin holds between the database and the
// gRPC stream (read-ahead of a GET, the chunk being filled by a PUT) is
// reserved from one Budget of max_buffer_bytes first. When the budget is
// spent, the producer waits — a GET stops reading the database, a PUT stops
// accepting data, and gRPC flow control carries the pressure back to the
// client — instead of memory growing. Waiters are served first in, first
// out, so a large reservation is not starved by small ones. The budget can
// be resized live; shrinking it never takes back what is reserved, it only
// makes new reservations wait until enough is returned.
package buffer

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"
)

// Budget is a resizable, FIFO-fair byte semaphore. It is safe for
// concurrent use.
type Budget struct {
	mu       sync.Mutex
	capacity int64
	inUse    int64
	waiters  list.List // of *waiter, in arrival order

	waits    uint64        // reservations that had to wait
	waitTime time.Duration // total time spent waiting
}

type waiter struct {
	n     int64
	ready chan struct{} // closed when granted
}

// NewBudget returns a Budget of capacity bytes.
func NewBudget(capacity int64) *Budget {
	return &Budget{capacity: capacity}
}

// Acquire reserves n bytes, waiting while they do not fit. A reservation
// larger than the whole capacity is granted when nothing else is reserved,
// so it cannot wait forever. It returns ctx's error if ctx ends first, and
// then nothing is reserved.
func (b *Budget) Acquire(ctx context.Context, n int64) error {
	if n <= 0 {
		return nil
	}
	b.mu.Lock()
	if b.waiters.Len() == 0 && b.fits(n) {
		b.inUse += n
		b.mu.Unlock()
		return nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	elem := b.waiters.PushBack(w)
	b.waits++
	b.mu.Unlock()

	start := time.Now()
	select {
	case <-w.ready:
		b.mu.Lock()
		b.waitTime += time.Since(start)
		b.mu.Unlock()
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		b.waitTime += time.Since(start)
		select {
		case <-w.ready:
			// Granted while ctx ended: give it back.
			b.inUse -= n
		default:
			b.waiters.Remove(elem)
		}
		b.grant()
		return fmt.Errorf("wait for %d bytes of buffer: %w", n, ctx.Err())
	}
}

// fits says whether n more bytes may be reserved now. b.mu is held.
func (b *Budget) fits(n int64) bool {
	return b.inUse+n <= b.capacity || b.inUse == 0
}

// grant wakes the waiters at the front that fit now. b.mu is held.
func (b *Budget) grant() {
	for {
		front := b.waiters.Front()
		if front == nil {
			return
		}
		w := front.Value.(*waiter)
		if !b.fits(w.n) {
			return
		}
		b.inUse += w.n
		b.waiters.Remove(front)
		close(w.ready)
	}
}

// Release returns n bytes reserved by Acquire.
func (b *Budget) Release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.inUse -= n
	if b.inUse < 0 {
		b.mu.Unlock()
		panic("buffer: Release of more bytes than were acquired")
	}
	b.grant()
	b.mu.Unlock()
}

// SetCapacity changes the capacity. Growing it wakes waiters that now fit;
// shrinking it never revokes reservations.
func (b *Budget) SetCapacity(capacity int64) {
	b.mu.Lock()
	b.capacity = capacity
	b.grant()
	b.mu.Unlock()
}

// Stats is a snapshot of a Budget.
type Stats struct {
	Capacity int64
	InUse    int64
	// Waiting is how many reservations wait now.
	Waiting int
	// Waits counts reservations that had to wait, since the start.
	Waits uint64
	// WaitTime is the total time reservations spent waiting.
	WaitTime time.Duration
}

// Stats returns the current state.
func (b *Budget) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{Capacity: b.capacity, InUse: b.inUse, Waiting: b.waiters.Len(), Waits: b.waits, WaitTime: b.waitTime}
}
