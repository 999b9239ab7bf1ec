package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
)

// batchBytes is about how much chunk data one write transaction carries.
const batchBytes = 8 << 20

// cleanupTimeout bounds the cleanup of a failed upload, which runs on a
// fresh context because the caller's may have ended.
const cleanupTimeout = 10 * time.Second

// errUploadExpired: garbage collection took the upload for abandoned.
var errUploadExpired = errors.New("the upload was idle for longer than the stale upload age and was removed")

// Put implements store.Strategy. It reads the first chunk before it takes
// a connection. An object of one chunk is then written in one statement
// (putSmall). A larger one goes into chunk rows of a new version registered
// as an upload, a few chunks per transaction; then one transaction makes the
// version the object's content and queues the old one as garbage.
func (s *Store) Put(ctx context.Context, req store.PutRequest, data io.Reader) (store.Object, error) {
	if err := store.ValidatePutRequest(req); err != nil {
		return store.Object{}, err
	}
	meta, err := store.EncodeMetadata(req.Metadata)
	if err != nil {
		return store.Object{}, fmt.Errorf("put %q: %w: %w", req.Key, sdk.ErrInvalidArgument, err)
	}
	op := fmt.Sprintf("put %q", req.Key)
	if err := ctx.Err(); err != nil {
		return store.Object{}, fmt.Errorf("%s: %w", op, err)
	}
	if s.closed.Load() {
		return store.Object{}, fmt.Errorf("%s: %w", op, s.errClosed())
	}
	ctx, unbind := s.bind(ctx)
	defer unbind()
	chunker := newChunker(req, data, s.chunkSize)
	_, first, err := chunker.Next()
	switch {
	case errors.Is(err, io.EOF):
		first = nil // an empty object: no chunks
	case err != nil:
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			return store.Object{}, fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return store.Object{}, err
	}
	if ctx.Err() != nil {
		// The caller's context error, or the Store's if it was closed.
		return store.Object{}, fmt.Errorf("%s: %w", op, context.Cause(ctx))
	}
	if chunker.Done() {
		return s.putSmall(ctx, op, req, chunker, meta, first)
	}
	return s.putLarge(ctx, op, req, chunker, meta, first)
}

// newChunker returns the Chunker of a Put. An object announced to fit in
// one chunk gets a buffer of its size and one byte rather than a whole
// chunk: it yields the same one chunk, and Done is true right after it, so
// that it takes putSmall (an object of exactly one chunk included).
func newChunker(req store.PutRequest, data io.Reader, chunkSize int) *store.Chunker {
	if req.Size >= 0 && req.Size <= int64(chunkSize) {
		return store.NewChunker(req, data, int(req.Size)+1)
	}
	return store.NewChunker(req, data, chunkSize)
}

// putSmall stores an object whose data has ended within its first chunk
// (chunk, nil for an empty object): it checks the data and then, in one
// statement and so one transaction and one round trip, writes the chunk,
// inserts or updates the object row and queues the replaced version as
// garbage. Nothing is left behind if it fails, so no uploads row is needed.
func (s *Store) putSmall(ctx context.Context, op string, req store.PutRequest, chunker *store.Chunker, meta string, chunk []byte) (store.Object, error) {
	size, sum, err := chunker.Finish()
	if err != nil {
		return store.Object{}, err
	}
	obj := store.Object{
		Key:         req.Key,
		Size:        size,
		SHA256:      sum,
		ContentType: req.ContentType,
		Metadata:    req.Metadata,
	}
	if len(obj.Metadata) == 0 {
		obj.Metadata = nil
	}
	pc, err := s.acquire(ctx, op)
	if err != nil {
		return store.Object{}, err
	}
	defer pc.Release()
	replaced, err := s.publishSmall(ctx, pc.Conn(), store.NewVersion(), meta, chunk, &obj)
	if err != nil {
		return store.Object{}, s.dbError(ctx, op, err)
	}
	if replaced {
		s.wake()
	}
	return obj, nil
}

// publishSmallSQL writes a small object in one statement. $1 key, $2
// version, $3 size, $4 sha256, $5 content type, $6 metadata, $7 chunk size,
// $8 now, $9 the one chunk (NULL for none).
//
// old locks the current row, if any (under READ COMMITTED, FOR UPDATE waits
// for a concurrent writer and returns the row it left); upd points it at
// the new version, returning the version it replaced and created_at; ins
// inserts the row when there was none. The chunk and the garbage row are
// written only if one of them did. No row comes back when a concurrent Put
// inserted the key after this statement's snapshot was taken (the INSERT
// found it and did nothing): then nothing was written, and the caller runs
// the statement again.
const publishSmallSQL = `WITH old AS (
		SELECT version, created_at FROM dw_objects WHERE key = $1 FOR UPDATE
	), upd AS (
		UPDATE dw_objects o SET version = $2, size = $3, sha256 = $4, content_type = $5,
			metadata = $6, chunk_size = $7, modified_at = $8
		FROM old WHERE o.key = $1
		RETURNING old.version AS old_version, old.created_at
	), ins AS (
		INSERT INTO dw_objects (key, version, size, sha256, content_type, metadata, chunk_size, created_at, modified_at)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $8 WHERE NOT EXISTS (SELECT FROM old)
		ON CONFLICT (key) DO NOTHING
		RETURNING NULL::text AS old_version, created_at
	), done AS (
		SELECT old_version, created_at FROM upd UNION ALL SELECT old_version, created_at FROM ins
	), chunk AS (
		INSERT INTO dw_chunks (version, seq, data) SELECT $2, 0, $9::bytea FROM done WHERE $9::bytea IS NOT NULL
	), garbage AS (
		INSERT INTO dw_garbage (version, queued_at) SELECT old_version, $8 FROM done WHERE old_version IS NOT NULL
		ON CONFLICT DO NOTHING
	)
	SELECT old_version, created_at FROM done`

// publishSmall runs publishSmallSQL until it writes (see there). It fills
// obj's times and reports whether an old version was replaced.
func (s *Store) publishSmall(ctx context.Context, conn *pgx.Conn, version, meta string, chunk []byte, obj *store.Object) (replaced bool, err error) {
	key := []byte(obj.Key)
	for attempt := 0; attempt < 10; attempt++ {
		now := time.Now().UnixNano()
		var oldVersion *string
		var created int64
		err := conn.QueryRow(ctx, publishSmallSQL, key, version, obj.Size, obj.SHA256, obj.ContentType, meta, s.chunkSize, now, chunk).
			Scan(&oldVersion, &created)
		switch {
		case err == nil:
			obj.CreatedAt, obj.ModifiedAt = fromNanos(created), fromNanos(now)
			return oldVersion != nil, nil
		case !errors.Is(err, pgx.ErrNoRows):
			return false, err
		}
	}
	return false, fmt.Errorf("key kept changing under concurrent puts and deletes; try again")
}

// putLarge stores an object of more than one chunk, first being the chunk
// read already: it registers the upload, writes the chunks and commits.
func (s *Store) putLarge(ctx context.Context, op string, req store.PutRequest, chunker *store.Chunker, meta string, first []byte) (store.Object, error) {
	pc, err := s.acquire(ctx, op)
	if err != nil {
		return store.Object{}, err
	}
	conn := pc.Conn()
	version := store.NewVersion()
	if _, err := conn.Exec(ctx, `INSERT INTO dw_uploads (version, started_at, touched_at) VALUES ($1, $2, $2)`,
		version, time.Now().UnixNano()); err != nil {
		pc.Release()
		return store.Object{}, s.dbError(ctx, op, err)
	}
	committed := false
	defer func() {
		if committed {
			pc.Release()
		} else {
			s.abandon(pc, version)
		}
	}()

	if dataErr, dbErr := s.writeChunks(ctx, op, conn, version, chunker, first); dataErr != nil {
		return store.Object{}, dataErr
	} else if dbErr != nil {
		return store.Object{}, s.dbError(ctx, op, dbErr)
	}
	size, sum, err := chunker.Finish()
	if err != nil {
		return store.Object{}, err
	}
	obj := store.Object{
		Key:         req.Key,
		Size:        size,
		SHA256:      sum,
		ContentType: req.ContentType,
		Metadata:    req.Metadata,
	}
	if len(obj.Metadata) == 0 {
		obj.Metadata = nil
	}
	replaced, err := s.commit(ctx, conn, version, meta, &obj)
	if err != nil {
		return store.Object{}, s.dbError(ctx, op, err)
	}
	committed = true
	if replaced {
		s.wake()
	}
	return obj, nil
}

// writeChunks copies first (chunk 0, already read) and the chunks after it
// of chunker into version, batchBytes per transaction, each also marking
// the upload as alive. A failure of the data
// or the end of ctx is dataErr, ready to return; one of the database is
// dbErr.
func (s *Store) writeChunks(ctx context.Context, op string, conn *pgx.Conn, version string, chunker *store.Chunker, first []byte) (dataErr, dbErr error) {
	src := &chunkSource{ctx: ctx, op: op, chunker: chunker, version: version, max: max(1, batchBytes/s.chunkSize), first: first}
	for !src.eof {
		src.n = 0
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"dw_chunks"}, []string{"version", "seq", "data"}, src); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `UPDATE dw_uploads SET touched_at = $2 WHERE version = $1`, version, time.Now().UnixNano())
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return errUploadExpired
			}
			return nil
		})
		if src.err != nil {
			return src.err, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// chunkSource feeds the chunks of a Chunker to COPY, at most max per batch.
type chunkSource struct {
	ctx     context.Context
	op      string
	chunker *store.Chunker
	version string
	max     int    // chunks per batch
	n       int    // chunks in this batch
	first   []byte // chunk 0, read before the upload began; nil once sent
	seq     int64
	chunk   []byte
	eof     bool
	err     error // of the data or ctx, ready to return
}

func (c *chunkSource) Next() bool {
	if c.n >= c.max || c.eof || c.err != nil {
		return false
	}
	if c.first != nil {
		c.seq, c.chunk, c.first = 0, c.first, nil
		c.n++
		return true
	}
	if c.ctx.Err() != nil {
		// The caller's context error, or the Store's if it was closed.
		c.err = fmt.Errorf("%s: %w", c.op, context.Cause(c.ctx))
		return false
	}
	seq, chunk, err := c.chunker.Next()
	switch {
	case errors.Is(err, io.EOF):
		c.eof = true
		return false
	case err != nil:
		c.err = err
		return false
	}
	c.seq, c.chunk = seq, chunk
	c.n++
	return true
}

func (c *chunkSource) Values() ([]any, error) { return []any{c.version, c.seq, c.chunk}, nil }

func (c *chunkSource) Err() error { return c.err }

// commit makes version the content of obj.Key in one transaction: it ends
// the upload (failing if garbage collection took it), inserts or updates the
// object row (keeping created_at of a replaced one) and queues the replaced
// version as garbage. It fills obj's times and reports whether an old
// version was replaced.
func (s *Store) commit(ctx context.Context, conn *pgx.Conn, version, meta string, obj *store.Object) (replaced bool, err error) {
	key := []byte(obj.Key)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		replaced = false
		tag, err := tx.Exec(ctx, `DELETE FROM dw_uploads WHERE version = $1`, version)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errUploadExpired
		}
		now := time.Now().UnixNano()
		// Under READ COMMITTED each statement sees the latest commits: a
		// row inserted by a concurrent Put after the SELECT makes the
		// INSERT do nothing, and the next round locks and replaces it.
		for attempt := 0; attempt < 10; attempt++ {
			var oldVersion string
			var created int64
			err := tx.QueryRow(ctx, `SELECT version, created_at FROM dw_objects WHERE key = $1 FOR UPDATE`, key).Scan(&oldVersion, &created)
			switch {
			case err == nil:
				if _, err := tx.Exec(ctx, `UPDATE dw_objects SET version = $2, size = $3, sha256 = $4, content_type = $5,
					metadata = $6, chunk_size = $7, modified_at = $8 WHERE key = $1`,
					key, version, obj.Size, obj.SHA256, obj.ContentType, meta, s.chunkSize, now); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO dw_garbage (version, queued_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
					oldVersion, now); err != nil {
					return err
				}
				replaced = true
				obj.CreatedAt, obj.ModifiedAt = fromNanos(created), fromNanos(now)
				return nil
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
			tag, err := tx.Exec(ctx, `INSERT INTO dw_objects (key, version, size, sha256, content_type, metadata, chunk_size, created_at, modified_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (key) DO NOTHING`,
				key, version, obj.Size, obj.SHA256, obj.ContentType, meta, s.chunkSize, now)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 {
				obj.CreatedAt, obj.ModifiedAt = fromNanos(now), fromNanos(now)
				return nil
			}
		}
		return fmt.Errorf("key kept changing under concurrent puts and deletes; try again")
	})
	return replaced, err
}

// abandon queues the chunks of a failed upload as garbage and wakes the
// collector, on a fresh context, and releases conn (used for it if it is
// still idle and healthy). The upload row is the proof that the version was
// never committed (commit deletes it in the same transaction), so a commit
// whose outcome was lost with the connection is never undone. If the
// database cannot be reached now, the stale-upload sweep does it later.
func (s *Store) abandon(conn *pgxpool.Conn, version string) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if c := conn.Conn(); c.IsClosed() || c.PgConn().IsBusy() || c.PgConn().TxStatus() != 'I' {
		conn.Release() // the pool closes it
		var err error
		if conn, err = s.pool.Acquire(ctx); err != nil {
			s.log.Warn("clean up a failed upload later", "version", version, "error", err)
			return
		}
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, abandonSQL, version, time.Now().UnixNano()); err != nil {
		s.log.Warn("clean up a failed upload later", "version", version, "error", err)
		return
	}
	s.wake()
}

// abandonSQL moves an upload that was not committed to the garbage.
const abandonSQL = `WITH gone AS (DELETE FROM dw_uploads WHERE version = $1 RETURNING version)
	INSERT INTO dw_garbage (version, queued_at) SELECT version, $2 FROM gone ON CONFLICT DO NOTHING`

// fromNanos converts a stored time.
func fromNanos(ns int64) time.Time { return time.Unix(0, ns) }
