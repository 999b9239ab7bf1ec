package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
)

// Bounds of one group commit: it takes at most maxGroupItems waiting writes
// and, past the first, no more than maxGroupBytes of their data, so that the
// write lock is held briefly and the transaction stays small.
const (
	maxGroupItems = 128
	maxGroupBytes = 16 << 20
)

// durableWrite is one write waiting for the committer: a Put's publishing
// transaction or a Delete.
type durableWrite struct {
	ctx   context.Context // the caller's: checked before fn runs
	bytes int             // data fn writes, for maxGroupBytes
	// fn runs inside the group's transaction, in a savepoint of its own,
	// under the committer's context (not the caller's: an interrupted
	// statement may roll back the whole transaction). An error rolls back
	// to the savepoint and fails this write alone.
	fn    func(ctx context.Context, tx *sql.Tx) error
	state atomic.Int32 // writeQueued, writeTaken or writeWithdrawn
	done  chan error   // buffered 1: the result, after the commit
}

// States of a durableWrite: the committer takes a queued write, or its
// caller withdraws it when its context ends first; never both.
const (
	writeQueued int32 = iota
	writeTaken
	writeWithdrawn
)

// committer is the Store's group committer: a goroutine (started by Open,
// stopped and waited for by Close) that runs the durable writes waiting at
// one moment in one IMMEDIATE transaction committed with
// synchronous=FULL, so that they share one sync of the WAL. It never waits
// for company: it takes what is queued when it holds the writer connection
// and commits at once.
type committer struct {
	s      *Store
	wakeC  chan struct{} // buffered 1: writes are queued
	stopC  chan struct{}
	done   chan struct{}
	mu     sync.Mutex      // guards queue and closed
	queue  []*durableWrite // in arrival order
	closed bool            // no more writes are queued

	// Counters for tests and diagnostics.
	groups atomic.Int64 // transactions committed or tried
	items  atomic.Int64 // writes run in them

	// beforeCommit, when set (tests), runs after the group's writes and
	// before its COMMIT; an error fails the group instead of committing.
	beforeCommit func() error
}

// startCommitter starts the group committer of s.
func startCommitter(s *Store) *committer {
	c := &committer{
		s:     s,
		wakeC: make(chan struct{}, 1),
		stopC: make(chan struct{}),
		done:  make(chan struct{}),
	}
	go c.run()
	return c
}

// do queues fn, waits for the group holding it to commit and returns fn's
// error, or the group's. If ctx ends while the write is still queued, it
// is withdrawn and do returns ctx's error; once taken, do waits for the
// outcome (one transaction), so that a write never commits after its
// caller was told it failed.
func (c *committer) do(ctx context.Context, bytes int, fn func(ctx context.Context, tx *sql.Tx) error) error {
	w := &durableWrite{ctx: ctx, bytes: bytes, fn: fn, done: make(chan error, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.s.errClosed()
	}
	c.queue = append(c.queue, w)
	c.mu.Unlock()
	select {
	case c.wakeC <- struct{}{}:
	default:
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		if w.state.CompareAndSwap(writeQueued, writeWithdrawn) {
			return ctx.Err()
		}
		return <-w.done
	}
}

// stop fails the writes still queued, lets a group in progress finish, and
// ends the goroutine. Writes queued later fail at once.
func (c *committer) stop() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	close(c.stopC)
	<-c.done
}

// pending returns how many writes are queued, withdrawn ones included.
func (c *committer) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

func (c *committer) run() {
	defer close(c.done)
	for {
		select {
		case <-c.stopC:
			c.failAll(c.s.errClosed())
			return
		case <-c.wakeC:
		}
		for c.commitGroup() {
		}
	}
}

// take removes the writes the next group commits from the queue and marks
// them taken; withdrawn ones are dropped.
func (c *committer) take() []*durableWrite {
	c.mu.Lock()
	defer c.mu.Unlock()
	var group []*durableWrite
	bytes, n := 0, 0
	for _, w := range c.queue {
		if len(group) > 0 && (len(group) == maxGroupItems || bytes+w.bytes > maxGroupBytes) {
			break
		}
		n++
		if w.state.CompareAndSwap(writeQueued, writeTaken) {
			group = append(group, w)
			bytes += w.bytes
		}
	}
	// Keep the array, without pointers to the writes taken.
	left := copy(c.queue, c.queue[n:])
	clear(c.queue[left:])
	c.queue = c.queue[:left]
	return group
}

// commitGroup runs the writes queued once the writer connection is free in
// one transaction. It reports whether it found any.
func (c *committer) commitGroup() bool {
	if c.pending() == 0 {
		return false
	}
	ctx := context.Background()
	s := c.s
	// The connection first: writes queued while it is busy join the group.
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		c.failAll(fmt.Errorf("get the writer connection: %w", err))
		return false
	}
	defer conn.Close()
	group := c.take()
	if len(group) == 0 {
		return false
	}
	c.groups.Add(1)
	c.items.Add(int64(len(group)))
	results := make([]error, len(group))
	err = c.runGroup(ctx, conn, group, results)
	for i, w := range group {
		if err != nil && results[i] == nil {
			results[i] = err
		}
		c.s.noteWrite(results[i])
		w.done <- results[i]
	}
	return true
}

// runGroup runs group in one transaction with synchronous=FULL, each write
// in a savepoint, filling results with each write's own error; it returns
// the error that fails the whole group (then nothing was committed).
func (c *committer) runGroup(ctx context.Context, conn *sql.Conn, group []*durableWrite, results []error) error {
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = FULL"); err != nil {
		return fmt.Errorf("enable synchronous commit: %w", err)
	}
	defer func() {
		// Back to the default; should this fail, later commits are only
		// slower.
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
			c.s.log.Warn("restore synchronous=NORMAL", "error", err)
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	for i, w := range group {
		if err := w.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT dw_write"); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("savepoint: %w", err)
		}
		if err := w.fn(ctx, tx); err != nil {
			results[i] = err
			// Some errors (a full disk, I/O) roll the whole transaction
			// back; then the savepoint is gone and the group fails.
			if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO dw_write"); rerr != nil {
				_ = tx.Rollback()
				return fmt.Errorf("roll back a failed write: %w (it failed with: %w)", rerr, err)
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE dw_write"); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("release savepoint: %w", err)
		}
	}
	if c.beforeCommit != nil {
		if err := c.beforeCommit(); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// failAll fails every queued write with err.
func (c *committer) failAll(err error) {
	c.mu.Lock()
	rest := c.queue
	c.queue = nil
	c.mu.Unlock()
	for _, w := range rest {
		if w.state.CompareAndSwap(writeQueued, writeTaken) {
			w.done <- err
		}
	}
}
