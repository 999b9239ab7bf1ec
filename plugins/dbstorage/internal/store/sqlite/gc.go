package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// gcBatch is how many chunks, and of how many garbage versions, one
// garbage collection transaction deletes, so that it holds the write lock
// only briefly.
const gcBatch = 16

// gcRetry is how long garbage collection waits after an error.
const gcRetry = time.Second

// collector is the Store's garbage collection goroutine: it deletes the
// chunks of the versions in dw_garbage, a few per transaction, then their
// garbage rows. Readers are unaffected: they read from their snapshot.
//
// It also owns the recovery from a full volume (see the package doc, Full
// disk): it hands to garbage collection the uploads of a dead process
// that Open could not, and runs a TRUNCATE checkpoint at start, after a
// write failed for space, and after each pass while writes fail for
// space; a checkpoint that fails or finds readers in the way is retried
// every gcRetry until it succeeds.
type collector struct {
	s     *Store
	wakeC chan struct{} // buffered 1: a pending wake-up
	stopC chan struct{}
	done  chan struct{}

	ckpt      atomic.Bool // a checkpoint is wanted
	leftovers []string    // owned by run: uploads still to adopt
	ckptFails int         // owned by run: checkpoints failed in a row

	mu      sync.Mutex
	waiters []chan error // WaitIdle calls waiting for the next full pass
}

// startCollector starts garbage collection with a pass, for garbage left
// by the previous process, as s.gc (set before the goroutine starts: its
// own writes reach s.gc through noteWrite).
func startCollector(s *Store) {
	c := &collector{
		s:         s,
		wakeC:     make(chan struct{}, 1),
		stopC:     make(chan struct{}),
		done:      make(chan struct{}),
		leftovers: s.leftovers,
	}
	c.ckpt.Store(true)
	c.wake()
	s.gc = c
	go c.run()
}

// wake asks for a pass; it never blocks.
func (c *collector) wake() {
	select {
	case c.wakeC <- struct{}{}:
	default:
	}
}

// wantCheckpoint asks for a TRUNCATE checkpoint after the next pass.
func (c *collector) wantCheckpoint() {
	c.ckpt.Store(true)
	c.wake()
}

// stop ends the goroutine and waits for it; waiters get an error.
func (c *collector) stop() {
	close(c.stopC)
	<-c.done
}

// waitIdle waits for a pass that starts after the call to finish with no
// garbage left.
func (c *collector) waitIdle(ctx context.Context) error {
	ch := make(chan error, 1)
	c.mu.Lock()
	c.waiters = append(c.waiters, ch)
	c.mu.Unlock()
	c.wake()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("wait for garbage collection: %w", ctx.Err())
	case <-c.done:
		return c.s.errClosed()
	}
}

func (c *collector) run() {
	defer close(c.done)
	var retry <-chan time.Time
	for {
		select {
		case <-c.stopC:
			c.release(c.takeWaiters(), c.s.errClosed())
			return
		case <-c.wakeC:
		case <-retry:
		}
		retry = nil
		waiters := c.takeWaiters()
		err := c.adoptLeftovers()
		if err == nil {
			err = c.pass()
		}
		if errors.Is(err, errStopped) {
			c.release(waiters, c.s.errClosed())
			return
		}
		if err != nil {
			c.s.log.Warn("garbage collection failed; retrying", "error", err, "in", gcRetry)
			retry = time.After(gcRetry)
		}
		c.release(waiters, err)
		if !c.checkpoint() {
			retry = time.After(gcRetry)
		}
	}
}

// adoptLeftovers hands to garbage collection the uploads of a dead
// process that Open could not (the volume was full).
func (c *collector) adoptLeftovers() error {
	if len(c.leftovers) == 0 {
		return nil
	}
	if err := c.s.adoptUploads(context.Background(), c.leftovers); err != nil {
		return fmt.Errorf("drop the uploads left unfinished by a previous process: %w", err)
	}
	c.s.log.Info("dropping uploads left unfinished by a previous process", "uploads", len(c.leftovers))
	c.leftovers = nil
	return nil
}

// checkpoint runs the TRUNCATE checkpoint when one is wanted or writes
// fail for space; it reports false when it should be tried again.
func (c *collector) checkpoint() bool {
	if !c.ckpt.Swap(false) && !c.s.volumeFull() {
		return true
	}
	busy, err := c.s.checkpoint(context.Background())
	if err == nil && !busy {
		if c.ckptFails > 0 {
			c.s.log.Info("write-ahead log checkpointed again", "after_failures", c.ckptFails)
		}
		c.ckptFails = 0
		return true
	}
	c.ckpt.Store(true)
	c.ckptFails++
	if err != nil && c.ckptFails == 1 {
		// Once per streak: a full volume fails it every second.
		c.s.log.Warn("checkpoint of the write-ahead log failed; retrying every second", "error", err)
	}
	return false
}

func (c *collector) takeWaiters() []chan error {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.waiters
	c.waiters = nil
	return w
}

func (c *collector) release(waiters []chan error, err error) {
	for _, w := range waiters {
		w <- err
	}
}

// errStopped ends a pass when the store closes.
var errStopped = errors.New("garbage collection stopped")

// pass deletes garbage until there is none.
func (c *collector) pass() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stopC:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-c.stopC:
			return errStopped
		default:
		}
		more, err := c.step(ctx)
		if err != nil {
			select {
			case <-c.stopC:
				return errStopped
			default:
			}
			return fmt.Errorf("garbage collection: %w", err)
		}
		if !more {
			return nil
		}
	}
}

// step deletes, in one short transaction, up to gcBatch chunks of up to
// gcBatch garbage versions, and the garbage rows of the versions it leaves
// without chunks: the garbage of a replaced small object goes in one
// transaction. more is false when no garbage is left.
func (c *collector) step(ctx context.Context) (more bool, err error) {
	err = c.s.write(ctx, false, func(tx *sql.Tx) error {
		more = false
		versions, err := garbageVersions(ctx, tx)
		if err != nil {
			return err
		}
		budget := int64(gcBatch)
		for _, version := range versions {
			res, err := tx.ExecContext(ctx, `DELETE FROM dw_chunks WHERE rowid IN
				(SELECT rowid FROM dw_chunks WHERE version = ? ORDER BY seq DESC LIMIT ?)`, version, budget)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == budget {
				// Chunks may be left: the next step goes on.
				more = true
				return nil
			}
			budget -= n
			if _, err := tx.ExecContext(ctx, `DELETE FROM dw_garbage WHERE version = ?`, version); err != nil {
				return err
			}
		}
		// A full list may leave garbage rows behind.
		more = len(versions) == gcBatch
		return nil
	})
	return more, err
}

// garbageVersions returns up to gcBatch garbage versions.
func garbageVersions(ctx context.Context, tx *sql.Tx) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT version FROM dw_garbage LIMIT ?`, gcBatch)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var versions []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		versions = append(versions, v)
	}
	return versions, rows.Err()
}
