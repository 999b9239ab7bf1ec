package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Garbage collection tuning.
const (
	gcVersionsPerQuery = 32               // garbage versions fetched at once
	gcChunksPerDelete  = 64               // chunk rows deleted per statement
	gcStatementTimeout = 1 * time.Minute  // bound of one collector statement
	gcAcquireTimeout   = 10 * time.Second // wait for a connection
)

// runGC is the collector goroutine, owned by the Store: started by Open,
// ended and waited for by Close. Woken after a replace, a delete or a failed
// upload, and every sweep interval, it removes the chunks of garbage
// versions; the periodic pass also turns stale uploads into garbage. It does
// nothing until a call has found the schema, so an unreachable database
// costs it nothing.
func (s *Store) runGC(ctx context.Context) {
	defer close(s.gcDone)
	ticker := time.NewTicker(s.tune.sweepInterval)
	defer ticker.Stop()
	for {
		sweep := false
		select {
		case <-ctx.Done():
			return
		case <-s.gcWake:
		case <-ticker.C:
			sweep = true
		}
		if !s.schemaReady.Load() {
			continue
		}
		if err := s.collect(ctx, sweep); err != nil && ctx.Err() == nil {
			s.log.Warn("garbage collection failed; retrying later", "error", err)
		}
	}
}

// collect runs one pass.
func (s *Store) collect(ctx context.Context, sweep bool) error {
	actx, cancel := context.WithTimeout(ctx, gcAcquireTimeout)
	pc, err := s.pool.Acquire(actx)
	cancel()
	if err != nil {
		return fmt.Errorf("get a connection: %w", err)
	}
	defer pc.Release()
	conn := pc.Conn()
	if sweep {
		if err := s.sweepUploads(ctx, conn); err != nil {
			return err
		}
	}
	for {
		versions, err := s.garbage(ctx, conn)
		if err != nil || len(versions) == 0 {
			return err
		}
		for _, v := range versions {
			if err := s.deleteVersion(ctx, conn, v); err != nil {
				return err
			}
		}
	}
}

// sweepUploads turns uploads untouched for the stale upload age into
// garbage. Several nodes may share the database, so only the age tells an
// upload that its node abandoned (crashed, lost the database) from a live
// one.
func (s *Store) sweepUploads(ctx context.Context, conn *pgx.Conn) error {
	qctx, cancel := context.WithTimeout(ctx, gcStatementTimeout)
	defer cancel()
	now := time.Now()
	tag, err := conn.Exec(qctx, `WITH gone AS (DELETE FROM dw_uploads WHERE touched_at < $1 RETURNING version)
		INSERT INTO dw_garbage (version, queued_at) SELECT version, $2 FROM gone ON CONFLICT DO NOTHING`,
		now.Add(-s.tune.staleUploadAge).UnixNano(), now.UnixNano())
	if err != nil {
		return fmt.Errorf("sweep stale uploads: %w", err)
	}
	if n := tag.RowsAffected(); n > 0 {
		s.log.Info("removing stale uploads", "count", n, "idle_longer_than", s.tune.staleUploadAge)
	}
	return nil
}

// garbage returns the oldest garbage versions.
func (s *Store) garbage(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	qctx, cancel := context.WithTimeout(ctx, gcStatementTimeout)
	defer cancel()
	rows, err := conn.Query(qctx, `SELECT version FROM dw_garbage ORDER BY queued_at LIMIT $1`, gcVersionsPerQuery)
	if err != nil {
		return nil, fmt.Errorf("list garbage: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list garbage: %w", err)
	}
	return versions, nil
}

// deleteVersion deletes the chunks of a garbage version, a batch per
// transaction so that no transaction grows with the object, and its garbage
// row in the transaction that deletes its last chunks: the garbage of a
// small object goes in one transaction. Each is one round trip (a pipeline)
// and commits with synchronous_commit off: the collector waits for no WAL
// flush, and a crash can only lose deletions that the next pass redoes
// (WAL replay keeps a prefix of the commits, so a garbage row is never
// gone while chunks it covered remain). Open readers keep reading the
// deleted rows from their snapshots.
func (s *Store) deleteVersion(ctx context.Context, conn *pgx.Conn, version string) error {
	for {
		qctx, cancel := context.WithTimeout(ctx, gcStatementTimeout)
		done, err := deleteGarbageBatch(qctx, conn, version)
		cancel()
		if err != nil {
			return fmt.Errorf("delete chunks of garbage version %s: %w", version, err)
		}
		if done {
			return nil
		}
	}
}

// deleteGarbageBatch deletes up to gcChunksPerDelete chunks of version and,
// if none are left then, its garbage row, in one transaction. done is true
// once the version has no chunks left (its garbage row is gone, by this
// call or by another node's collector).
func deleteGarbageBatch(ctx context.Context, conn *pgx.Conn, version string) (done bool, err error) {
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SET LOCAL synchronous_commit TO OFF`)
	b.Queue(`DELETE FROM dw_chunks WHERE version = $1 AND seq IN
		(SELECT seq FROM dw_chunks WHERE version = $1 ORDER BY seq LIMIT $2)`, version, gcChunksPerDelete)
	b.Queue(`DELETE FROM dw_garbage WHERE version = $1 AND NOT EXISTS (SELECT FROM dw_chunks WHERE version = $1)`, version)
	b.Queue(`COMMIT`)
	br := conn.SendBatch(ctx, b)
	var tags [5]int64
	for i := range tags {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return false, err
		}
		tags[i] = tag.RowsAffected()
	}
	if err := br.Close(); err != nil {
		return false, err
	}
	return tags[2] < gcChunksPerDelete || tags[3] == 1, nil
}

// ChunkRows returns how many chunk rows the database holds, of every
// version (storetest.Inspector).
func (s *Store) ChunkRows(ctx context.Context) (int64, error) {
	var n int64
	err := s.withConn(ctx, "count chunk rows", func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT count(*) FROM dw_chunks`).Scan(&n)
	})
	return n, err
}

// WaitIdle wakes the collector and returns once no garbage is left, or when
// ctx ends (storetest.Inspector).
func (s *Store) WaitIdle(ctx context.Context) error {
	for {
		s.wake()
		var n int64
		err := s.withConn(ctx, "count garbage", func(ctx context.Context, conn *pgx.Conn) error {
			return conn.QueryRow(ctx, `SELECT count(*) FROM dw_garbage`).Scan(&n)
		})
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for garbage collection: %d versions left: %w", n, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
