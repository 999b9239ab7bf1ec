package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
)

// drainBytes: a reader closed early with at most this much left to read
// drains it; with more, it first asks the server to cancel the query (a
// cancel request, on a connection of its own) and drains what was in
// flight. Either way it keeps its connection.
const drainBytes = 4 << 20

// drainTimeout bounds that drain.
const drainTimeout = 5 * time.Second

// objectColumns are the columns scanObject reads, in its order.
const objectColumns = `key, version, size, sha256, content_type, metadata, chunk_size, created_at, modified_at`

// row is one object row.
type row struct {
	obj       store.Object
	version   string
	chunkSize int64
}

// scanObject scans the objectColumns of one row.
func scanObject(r pgx.Row) (row, error) {
	var (
		out          row
		key          []byte
		meta         string
		chunkSize    int32
		cr, modified int64
	)
	if err := r.Scan(&key, &out.version, &out.obj.Size, &out.obj.SHA256, &out.obj.ContentType, &meta, &chunkSize, &cr, &modified); err != nil {
		return row{}, err
	}
	m, err := store.DecodeMetadata(meta)
	if err != nil {
		return row{}, err
	}
	out.obj.Key = string(key)
	out.obj.Metadata = m
	out.obj.CreatedAt = fromNanos(cr)
	out.obj.ModifiedAt = fromNanos(modified)
	out.chunkSize = int64(chunkSize)
	return out, nil
}

// Stat implements store.Strategy.
func (s *Store) Stat(ctx context.Context, key string) (store.Object, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.Object{}, err
	}
	op := fmt.Sprintf("stat %q", key)
	var r row
	found := true
	err := s.withConn(ctx, op, func(ctx context.Context, conn *pgx.Conn) error {
		var err error
		r, err = scanObject(conn.QueryRow(ctx, `SELECT `+objectColumns+` FROM dw_objects WHERE key = $1`, []byte(key)))
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		return err
	})
	switch {
	case err != nil:
		return store.Object{}, err
	case !found:
		return store.Object{}, fmt.Errorf("%s: %w", op, sdk.ErrNotFound)
	}
	return r.obj, nil
}

// Get implements store.Strategy. The reader holds a connection with a
// REPEATABLE READ READ ONLY transaction until it is closed (or has read
// its last piece), and streams the chunks of the range with one query, one
// row at a time.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (store.Object, int64, int64, store.Reader, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.Object{}, 0, 0, nil, err
	}
	op := fmt.Sprintf("get %q", key)
	// Until the reader is tracked (and so ended by Close), Close ends Get.
	ctx, unbind := s.bind(ctx)
	defer unbind()
	conn, err := s.acquire(ctx, op)
	if err != nil {
		return store.Object{}, 0, 0, nil, err
	}
	fail := func(err error) (store.Object, int64, int64, store.Reader, error) {
		conn.Release() // the pool closes it if the transaction is still open
		return store.Object{}, 0, 0, nil, err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fail(s.dbError(ctx, op, err))
	}
	obj, err := scanObject(tx.QueryRow(ctx, `SELECT `+objectColumns+` FROM dw_objects WHERE key = $1`, []byte(key)))
	if err != nil {
		_ = tx.Rollback(ctx)
		if errors.Is(err, pgx.ErrNoRows) {
			return fail(fmt.Errorf("%s: %w", op, sdk.ErrNotFound))
		}
		return fail(s.dbError(ctx, op, err))
	}
	off, n, err := store.ValidateRange(obj.obj.Size, offset, length)
	if err != nil {
		_ = tx.Rollback(ctx)
		return fail(fmt.Errorf("%s: %w", op, err))
	}
	r := &reader{s: s, op: op, remaining: n, chunkSize: obj.chunkSize, size: obj.obj.Size}
	if n == 0 {
		_ = tx.Rollback(ctx)
		conn.Release()
		r.done = true
		return obj.obj, off, n, r, nil
	}
	first, last := store.ChunkSpan(off, n, obj.chunkSize)
	r.seq, r.skip = first, off-first*obj.chunkSize
	// The query outlives Get's context: it runs under the reader's own,
	// which Next ties to its caller's and Close (of the reader or the
	// Store) cancels.
	r.qctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, r.cancel)
	rows, err := tx.Query(r.qctx, `SELECT seq, data FROM dw_chunks WHERE version = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq`,
		obj.version, first, last)
	if !stop() && err == nil {
		err = ctx.Err() // ended while the query was sent
		rows.Close()
	}
	if err != nil {
		r.cancel()
		_ = tx.Rollback(ctx)
		return fail(s.dbError(ctx, op, err))
	}
	r.conn, r.tx, r.rows = conn, tx, rows
	if !s.track(r) {
		r.abort(s.errClosed())
		return store.Object{}, 0, 0, nil, fmt.Errorf("%s: %w", op, s.errClosed())
	}
	return obj.obj, off, n, r, nil
}

// track registers an open reader for Close; false if the store is closed.
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

// reader streams the chunks of one range from its snapshot.
type reader struct {
	s         *Store
	op        string
	chunkSize int64
	size      int64

	qctx   context.Context // the query's
	cancel context.CancelFunc

	mu        sync.Mutex
	conn      *pgxpool.Conn // nil once given back
	tx        pgx.Tx
	rows      pgx.Rows
	seq       int64 // next chunk expected
	skip      int64 // bytes to skip at the start of the next chunk
	remaining int64 // bytes of the range still to return
	done      bool  // every byte returned: Next says io.EOF
	err       error // set when the reader failed or was closed
}

// Next implements store.Reader.
func (r *reader) Next(ctx context.Context) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.err != nil:
		return nil, r.err
	case r.done:
		return nil, io.EOF
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: read: %w", r.op, err)
	}
	if r.remaining == 0 {
		// Not right after the last piece: ending the query reads into
		// the buffer that piece points into.
		r.finish()
		return nil, io.EOF
	}
	stop := context.AfterFunc(ctx, r.cancel)
	p, err := r.next()
	stop()
	if err != nil {
		err = r.s.dbError(ctx, r.op+": read", err)
		r.fail(err)
		return nil, err
	}
	return p, nil
}

// next reads the next chunk row and cuts it to the range.
func (r *reader) next() ([]byte, error) {
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("chunk %d of %d bytes is missing", r.seq, r.size)
	}
	var seq int64
	var data pgtype.DriverBytes // the row's bytes, valid until the next row
	if err := r.rows.Scan(&seq, &data); err != nil {
		return nil, err
	}
	want := min(r.chunkSize, r.size-seq*r.chunkSize)
	if seq != r.seq || int64(len(data)) != want {
		return nil, fmt.Errorf("found chunk %d of %d bytes where chunk %d of %d bytes belongs: the data is damaged", seq, len(data), r.seq, want)
	}
	p := []byte(data)[r.skip:]
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	r.seq++
	r.skip = 0
	r.remaining -= int64(len(p))
	return p, nil
}

// finish ends the query and the transaction after the last byte was
// returned and gives the connection back; Next says io.EOF from then on.
func (r *reader) finish() {
	r.done = true
	r.rows.Close()
	err := r.rows.Err()
	if err == nil {
		err = r.tx.Commit(r.qctx)
	}
	if err != nil {
		r.s.log.Debug("end a read transaction", "op", r.op, "error", err)
	}
	r.release()
}

// fail ends the reader after an error: Next returns err from now on. The
// connection, in a state no one can trust, is closed by release.
func (r *reader) fail(err error) {
	r.err = err
	r.cancel()
	if r.rows != nil {
		r.rows.Close()
	}
	r.release()
}

// release gives the connection back and forgets it.
func (r *reader) release() {
	if r.conn == nil {
		return
	}
	r.cancel()
	r.conn.Release() // the pool closes it unless it is idle
	r.conn, r.tx, r.rows = nil, nil, nil
	r.s.untrack(r)
}

// Close implements store.Reader. With little left to read it drains the
// rows and keeps the connection; otherwise it cancels the query, and the
// connection is closed.
func (r *reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = fmt.Errorf("%s: read: reader is closed", r.op)
	}
	if r.conn == nil {
		return nil
	}
	// Past drainTimeout, give up on the connection.
	t := time.AfterFunc(drainTimeout, r.cancel)
	defer t.Stop()
	if r.remaining > drainBytes {
		// Ask the server to stop sending; what is in flight is drained.
		if err := r.conn.Conn().PgConn().CancelRequest(r.qctx); err != nil {
			r.cancel()
		}
	}
	r.rows.Close() // an error here is the cancellation
	_ = r.tx.Rollback(r.qctx)
	r.release()
	return nil
}

// abort ends the reader from Store.Close: a Next in progress is cancelled,
// and later calls fail with err.
func (r *reader) abort(err error) {
	if r.cancel != nil {
		r.cancel()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
	if r.rows != nil {
		r.rows.Close()
	}
	r.release()
}
