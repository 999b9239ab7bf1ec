package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/datawarehouse/dw/sdk/v6"
)

// schemaVersion is the version recorded in dw_schema by the statements
// below.
const schemaVersion = 1

// schemaLockID is the advisory lock that serializes schema creation among
// the dw nodes sharing a database ("dw" and the schema's generation).
const schemaLockID int64 = 0x64770001

// schema creates the tables. Keys are bytea so that they sort bytewise
// whatever the database's collation. Times are Unix nanoseconds. Chunk data
// is stored out of line without compression (STORAGE EXTERNAL): objects are
// mostly compressed already, and pglz on every write costs more than it
// saves.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS dw_schema (
		version integer NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS dw_objects (
		key          bytea   PRIMARY KEY,
		version      text    NOT NULL,
		size         bigint  NOT NULL,
		sha256       text    NOT NULL,
		content_type text    NOT NULL,
		metadata     text    NOT NULL,
		chunk_size   integer NOT NULL,
		created_at   bigint  NOT NULL,
		modified_at  bigint  NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS dw_chunks (
		version text   NOT NULL,
		seq     bigint NOT NULL,
		data    bytea  NOT NULL,
		PRIMARY KEY (version, seq)
	)`,
	`ALTER TABLE dw_chunks ALTER COLUMN data SET STORAGE EXTERNAL`,
	`CREATE TABLE IF NOT EXISTS dw_uploads (
		version    text   PRIMARY KEY,
		started_at bigint NOT NULL,
		touched_at bigint NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS dw_garbage (
		version   text   PRIMARY KEY,
		queued_at bigint NOT NULL
	)`,
	fmt.Sprintf(`INSERT INTO dw_schema (version) VALUES (%d)`, schemaVersion),
}

// ensureSchema creates the schema unless this Store already knows it is
// there. One attempt runs at a time; a failed one is retried by the next
// call. Among nodes, an advisory lock makes one create it and the others
// wait and find it.
func (s *Store) ensureSchema(ctx context.Context) error {
	if s.schemaReady.Load() {
		return nil
	}
	select {
	case s.schemaSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.schemaSem }()
	if s.schemaReady.Load() {
		return nil
	}
	conn, err := s.conn(ctx)
	if err != nil {
		return fmt.Errorf("prepare schema: %w", err)
	}
	defer conn.Release()
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLockID); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass('dw_schema') IS NOT NULL`).Scan(&exists); err != nil {
			return err
		}
		version := 0
		if exists {
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM dw_schema`).Scan(&version); err != nil {
				return err
			}
		}
		switch {
		case version == schemaVersion:
			return nil
		case version > schemaVersion:
			return fmt.Errorf("the database holds dw schema version %d; this dw knows versions up to %d: %w", version, schemaVersion, sdk.ErrFailedPrecondition)
		}
		for _, stmt := range schema {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("prepare schema: %w", err)
	}
	s.schemaReady.Store(true)
	s.log.Debug("schema ready")
	s.wake() // collect what earlier runs left
	return nil
}
