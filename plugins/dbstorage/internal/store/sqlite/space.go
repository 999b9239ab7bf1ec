package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	msqlite "modernc.org/sqlite"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
)

// walCap bounds the write-ahead log (see the package doc, Full disk): the
// writer checkpoints once the WAL holds this much (wal_autocheckpoint, in
// pages of the file's size), and a checkpoint that resets the WAL
// truncates the file back to it (journal_size_limit).
const walCap = 16 << 20

// txOverhead is what a write transaction may add to the WAL and to the
// file besides its data: the b-tree pages it changes (a few pages of up
// to 64 KiB each).
const txOverhead = 8 * pageSize

// checkpointBusyMillis is how long a TRUNCATE checkpoint waits for
// readers on the newest snapshot before it gives up (SQLITE_BUSY, retried
// by the collector a second later): the writer connection is held
// meanwhile, so writes wait too.
const checkpointBusyMillis = 250

// errFull marks a write refused or failed because the volume is full; it
// wraps sdk.ErrUnavailable (HTTP 503, as the filesystem plugin answers
// ENOSPC): the store keeps serving reads and takes writes again once
// space is freed.
var errFull = fmt.Errorf("%w: volume full", sdk.ErrUnavailable)

// spaceState is what the Store knows about its volume, for Space.
type spaceState struct {
	// fullAt is the time (unix nanoseconds) of the last write refused or
	// failed for space, putAt that of the last Put that succeeded; the
	// volume counts as full while fullAt > putAt.
	fullAt, putAt atomic.Int64
	fullMsg       atomic.Pointer[string]
}

// isFull reports whether err is SQLite's SQLITE_FULL (a write or a
// checkpoint hit ENOSPC or EDQUOT) or the Store's own refusal.
func isFull(err error) bool {
	if errors.Is(err, errFull) {
		return true
	}
	var se *msqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == 13 // SQLITE_FULL
}

// freeBytes returns the bytes an unprivileged writer may still use on the
// volume of dir.
func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// fileSize returns the size of path, 0 when it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// checkSpace refuses, inside tx (the write lock held), a write of data
// bytes that could leave the volume without the room the next checkpoint
// needs. What the write may take: its WAL frames (walBytes: the data and
// the pages it changes, or for a whole object at most a WAL's worth, as
// checkpoints recycle the WAL meanwhile) and the growth of the database
// file when they are checkpointed (the data less the file's free pages).
// What must stay free on top: the growth the pending checkpoint already
// owes (the pages the WAL holds past the end of the file). Were that
// room ever taken, the WAL could not be checkpointed nor reset and every
// later write would fail (the fault this guards against); refused writes
// cost nothing.
func (s *Store) checkSpace(ctx context.Context, tx *sql.Tx, data, walBytes int64) error {
	if s.noSpaceCheck {
		return nil
	}
	var pages, freePages int64
	if err := tx.QueryRowContext(ctx, "SELECT * FROM pragma_page_count(), pragma_freelist_count()").Scan(&pages, &freePages); err != nil {
		return fmt.Errorf("read the database's page counts: %w", err)
	}
	pageBytes := s.pageBytes
	free, err := freeBytes(filepath.Dir(s.path))
	if err != nil {
		s.log.Warn("cannot tell the volume's free space; writing without the check", "error", err)
		return nil
	}
	owed := max(0, pages*pageBytes-fileSize(s.path))
	log := walBytes + txOverhead
	growth := max(0, data+txOverhead-freePages*pageBytes)
	need := owed + log + growth
	if free >= need {
		return nil
	}
	return fmt.Errorf("%w: the volume of %s has %d bytes free; a write of %d bytes needs %d (%d for the write-ahead log, %d for the database file to grow, %d kept free so that the log already written can be checkpointed); free space on the volume or delete objects",
		errFull, filepath.Dir(s.path), free, data, need, log, growth, owed)
}

// noteWrite records the outcome of a write for Space and, when it failed
// for space, asks the collector to checkpoint: the WAL goes back to zero
// as soon as the volume allows, instead of staying at the size the failed
// write left.
func (s *Store) noteWrite(err error) {
	if err == nil || !isFull(err) {
		return
	}
	s.space.fullAt.Store(time.Now().UnixNano())
	msg := err.Error()
	s.space.fullMsg.Store(&msg)
	if s.gc != nil { // nil while Open runs: the collector checkpoints at start
		s.gc.wantCheckpoint()
	}
}

// volumeFull reports whether writes fail for space: one was refused or
// failed since the last Put that succeeded.
func (s *Store) volumeFull() bool { return s.space.fullAt.Load() > s.space.putAt.Load() }

// notePut records a Put that succeeded: the volume takes writes again.
func (s *Store) notePut() { s.space.putAt.Store(time.Now().UnixNano()) }

// checkpoint runs a TRUNCATE checkpoint on the writer connection (never
// inside a transaction): every frame is copied into the database file and
// the WAL is truncated to zero bytes. It waits for readers at most
// checkpointBusyMillis; busy reports that a reader on an older snapshot
// kept it from finishing (try again later).
func (s *Store) checkpoint(ctx context.Context) (busy bool, err error) {
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", checkpointBusyMillis)); err != nil {
		return false, err
	}
	defer func() {
		if _, err := conn.ExecContext(context.Background(), fmt.Sprintf("PRAGMA busy_timeout = %d", busyTimeoutMillis)); err != nil {
			s.log.Warn("restore busy_timeout", "error", err)
		}
	}()
	var b, frames, done int
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&b, &frames, &done); err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	return b != 0, nil
}

// Space implements store.SpaceReporter: the volume's free bytes, the
// WAL's size, and whether writes fail for space.
func (s *Store) Space(context.Context) (store.Space, error) {
	if s.closed.Load() {
		return store.Space{}, s.errClosed()
	}
	free, err := freeBytes(filepath.Dir(s.path))
	if err != nil {
		return store.Space{}, err
	}
	sp := store.Space{FreeBytes: free, LogBytes: fileSize(s.path + "-wal")}
	if s.volumeFull() {
		if m := s.space.fullMsg.Load(); m != nil {
			sp.WritesFailing = *m
		}
	}
	return sp, nil
}
