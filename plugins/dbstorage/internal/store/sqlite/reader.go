package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
)

// Get implements store.Strategy. The Reader holds a read transaction, and
// with it a snapshot and a reader connection, until it reaches the end of
// the range or is closed.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (store.Object, int64, int64, store.Reader, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.Object{}, 0, 0, nil, err
	}
	if s.closed.Load() {
		return store.Object{}, 0, 0, nil, s.errClosed()
	}
	// The connection is taken under the caller's ctx (waiting for a free
	// one honours it); the transaction lives under the Reader's own
	// context, since database/sql rolls a transaction back when the context
	// it began with ends.
	conn, err := s.rdb.Conn(ctx)
	if err != nil {
		return store.Object{}, 0, 0, nil, s.dbError(ctx, fmt.Sprintf("get %q", key), err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &reader{s: s, conn: conn, cancel: cancel}
	obj, off, n, err := r.open(ctx, rctx, key, offset, length)
	if err != nil {
		r.release()
		return store.Object{}, 0, 0, nil, err
	}
	if !s.track(r) {
		r.release()
		return store.Object{}, 0, 0, nil, s.errClosed()
	}
	return obj, off, n, r, nil
}

// track registers an open Reader so that Close can fail it; false if the
// store is closed.
func (s *Store) track(r *reader) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.readers[r] = struct{}{}
	return true
}

func (s *Store) untrack(r *reader) {
	s.mu.Lock()
	delete(s.readers, r)
	s.mu.Unlock()
}

// reader is a store.Reader over the chunks of one version.
type reader struct {
	s      *Store
	key    string
	cancel context.CancelFunc

	mu        sync.Mutex
	conn      *sql.Conn
	tx        *sql.Tx
	rows      *sql.Rows
	err       error // sticky: io.EOF at the end, or why the reader failed
	version   string
	size      int64 // of the object
	chunkSize int64
	nextSeq   int64 // the chunk Next reads next
	skip      int64 // bytes to drop from the next chunk
	remaining int64 // bytes of the range still to return
}

var _ store.Reader = (*reader)(nil)

// open starts the snapshot, reads the object row, checks the range and
// starts the query of its chunks.
func (r *reader) open(ctx, rctx context.Context, key string, offset, length int64) (store.Object, int64, int64, error) {
	s := r.s
	r.key = key
	tx, err := r.conn.BeginTx(rctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.Object{}, 0, 0, s.dbError(ctx, fmt.Sprintf("get %q: begin", key), err)
	}
	r.tx = tx
	row, err := scanObject(tx.QueryRowContext(ctx, `SELECT `+objectColumns+` FROM dw_objects WHERE key = ?`, []byte(key)))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Object{}, 0, 0, fmt.Errorf("object %q: %w", key, sdk.ErrNotFound)
	}
	if err != nil {
		return store.Object{}, 0, 0, s.dbError(ctx, fmt.Sprintf("get %q", key), err)
	}
	off, n, err := store.ValidateRange(row.Size, offset, length)
	if err != nil {
		return store.Object{}, 0, 0, fmt.Errorf("get %q: %w", key, err)
	}
	r.version, r.size, r.chunkSize = row.version, row.Size, row.chunkSize
	r.remaining = n
	if n == 0 {
		return row.Object, off, n, nil
	}
	first, last := store.ChunkSpan(off, n, row.chunkSize)
	r.nextSeq = first
	r.skip = off - first*row.chunkSize
	rows, err := tx.QueryContext(rctx, `SELECT seq, data FROM dw_chunks WHERE version = ? AND seq BETWEEN ? AND ? ORDER BY seq`, row.version, first, last)
	if err != nil {
		return store.Object{}, 0, 0, s.dbError(ctx, fmt.Sprintf("get %q: read chunks", key), err)
	}
	r.rows = rows
	return row.Object, off, n, nil
}

// Next implements store.Reader.
func (r *reader) Next(ctx context.Context) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	if r.remaining == 0 {
		r.finish(io.EOF)
		return nil, io.EOF
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read %q: %w", r.key, err)
	}
	if !r.rows.Next() {
		err := r.rows.Err()
		if err == nil {
			err = fmt.Errorf("read %q: version %s has no chunk %d: the database is damaged", r.key, r.version, r.nextSeq)
		} else {
			err = r.s.dbError(ctx, fmt.Sprintf("read %q chunk %d", r.key, r.nextSeq), err)
		}
		r.finish(err)
		return nil, err
	}
	var seq int64
	var data sql.RawBytes
	if err := r.rows.Scan(&seq, &data); err != nil {
		err = r.s.dbError(ctx, fmt.Sprintf("read %q chunk %d", r.key, r.nextSeq), err)
		r.finish(err)
		return nil, err
	}
	want := min(r.chunkSize, r.size-seq*r.chunkSize)
	if seq != r.nextSeq || int64(len(data)) != want {
		err := fmt.Errorf("read %q: version %s has chunk %d of %d bytes where chunk %d of %d bytes belongs: the database is damaged",
			r.key, r.version, seq, len(data), r.nextSeq, want)
		r.finish(err)
		return nil, err
	}
	piece := []byte(data)[r.skip:]
	r.skip = 0
	if int64(len(piece)) > r.remaining {
		piece = piece[:r.remaining]
	}
	r.remaining -= int64(len(piece))
	r.nextSeq++
	return piece, nil
}

// finish releases the snapshot and makes err sticky. Called with mu held.
func (r *reader) finish(err error) {
	r.err = err
	r.releaseLocked()
	r.s.untrack(r)
}

// fail is finish for Close of the store.
func (r *reader) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
	r.releaseLocked()
}

// Close implements store.Reader.
func (r *reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = fmt.Errorf("read %q: reader is closed", r.key)
	}
	r.releaseLocked()
	r.s.untrack(r)
	return nil
}

// release is releaseLocked for a reader not yet shared.
func (r *reader) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.releaseLocked()
}

// releaseLocked ends the query and the transaction and gives the connection
// back. Idempotent; called with mu held.
func (r *reader) releaseLocked() {
	if r.rows != nil {
		_ = r.rows.Close()
		r.rows = nil
	}
	if r.tx != nil {
		_ = r.tx.Rollback()
		r.tx = nil
	}
	if r.conn != nil {
		_ = r.conn.Close()
		r.conn = nil
	}
	if r.cancel != nil {
		r.cancel()
		r.cancel = nil
	}
}
