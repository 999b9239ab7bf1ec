package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
)

// Config is what Open needs to know.
type Config struct {
	// Name is the strategy's name, used in errors and logs.
	Name string
	// Path is the absolute path of the database file; its folder is
	// created (0o700) if missing.
	Path string
	// ChunkSize is the size of the chunks new objects are cut into, from
	// 1 KiB to store.MaxChunkSize; 0 means store.DefaultChunkSize (1 MiB).
	ChunkSize int
	// MaxReaders caps the reader connections (open Readers, Stat, List,
	// Count, Ping); a call waits for a free one under its context. 0 means
	// DefaultMaxReaders.
	MaxReaders int
	// Logger receives the strategy's logs; nil discards them.
	Logger hclog.Logger
}

// DefaultMaxReaders is the reader connection cap when Config.MaxReaders is 0.
const DefaultMaxReaders = 64

// minChunkSize is the smallest chunk size Open accepts.
const minChunkSize = 1 << 10

// pageSize is the page size of new database files (see the package doc).
const pageSize = 65536

// busyTimeoutMillis is how long a connection waits for a lock.
const busyTimeoutMillis = 10000

// schemaVersion is the PRAGMA user_version of the schema below.
const schemaVersion = 1

// schema creates the tables. Keys are BLOBs so that they compare bytewise
// (memcmp), which is the byte order of their UTF-8; times are unix
// nanoseconds.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS dw_objects (
		key          BLOB PRIMARY KEY NOT NULL,
		version      TEXT NOT NULL,
		size         INTEGER NOT NULL,
		sha256       TEXT NOT NULL,
		content_type TEXT NOT NULL,
		metadata     TEXT NOT NULL,
		chunk_size   INTEGER NOT NULL,
		created_at   INTEGER NOT NULL,
		modified_at  INTEGER NOT NULL
	) WITHOUT ROWID`,
	// Chunks keep a rowid table: their rows are large, and the primary key
	// index finds a version's chunks in order.
	`CREATE TABLE IF NOT EXISTS dw_chunks (
		version TEXT NOT NULL,
		seq     INTEGER NOT NULL,
		data    BLOB NOT NULL,
		PRIMARY KEY (version, seq)
	)`,
	`CREATE TABLE IF NOT EXISTS dw_uploads (
		version    TEXT PRIMARY KEY NOT NULL,
		key        BLOB NOT NULL,
		started_at INTEGER NOT NULL,
		touched_at INTEGER NOT NULL
	) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS dw_garbage (
		version TEXT PRIMARY KEY NOT NULL,
		since   INTEGER NOT NULL
	) WITHOUT ROWID`,
}

// Store is a SQLite strategy. It is safe for concurrent use.
type Store struct {
	name      string
	path      string
	chunkSize int
	pageBytes int64 // the file's page size, read once at open
	log       hclog.Logger
	lock      *os.File // the flock on path+".lock"

	wdb *sql.DB // the one writer connection
	rdb *sql.DB // reader connections (query_only)

	closed  atomic.Bool
	mu      sync.Mutex // guards readers
	readers map[*reader]struct{}

	gc      *collector
	commits *committer // group commit of the durable writes

	space spaceState // for Space
	// leftovers are the uploads of a dead process that Open could not
	// hand to garbage collection (a full disk); the collector retries.
	leftovers []string
	// noSpaceCheck turns checkSpace off (tests of SQLite's own SQLITE_FULL).
	noSpaceCheck bool
}

var _ store.Strategy = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path, removes the
// chunks of uploads a previous process left unfinished, and starts garbage
// collection.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Name == "" {
		cfg.Name = "sqlite"
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = store.DefaultChunkSize
	}
	if cfg.MaxReaders == 0 {
		cfg.MaxReaders = DefaultMaxReaders
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	switch {
	case !filepath.IsAbs(cfg.Path):
		return nil, fmt.Errorf("open sqlite strategy %q: path %q is not absolute: %w", cfg.Name, cfg.Path, sdk.ErrInvalidSettings)
	case strings.ContainsAny(cfg.Path, "?#"):
		return nil, fmt.Errorf("open sqlite strategy %q: path %q contains '?' or '#', which SQLite file names may not: %w", cfg.Name, cfg.Path, sdk.ErrInvalidSettings)
	case cfg.ChunkSize < minChunkSize || cfg.ChunkSize > store.MaxChunkSize:
		return nil, fmt.Errorf("open sqlite strategy %q: chunk size %d is outside %d to %d bytes: %w", cfg.Name, cfg.ChunkSize, minChunkSize, store.MaxChunkSize, sdk.ErrInvalidSettings)
	case cfg.MaxReaders < 1:
		return nil, fmt.Errorf("open sqlite strategy %q: max readers %d is below 1: %w", cfg.Name, cfg.MaxReaders, sdk.ErrInvalidSettings)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("open sqlite strategy %q: create folder: %w", cfg.Name, err)
	}
	lock, err := lockFile(cfg.Path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("open sqlite strategy %q: %w", cfg.Name, err)
	}
	s := &Store{
		name:      cfg.Name,
		path:      cfg.Path,
		chunkSize: cfg.ChunkSize,
		log:       cfg.Logger.Named("sqlite").With("strategy", cfg.Name),
		lock:      lock,
		readers:   map[*reader]struct{}{},
	}
	if err := s.open(ctx, cfg.MaxReaders); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("open sqlite strategy %q at %s: %w", cfg.Name, cfg.Path, err)
	}
	// The collector first: the committer's writes note failures to it.
	startCollector(s)
	s.commits = startCommitter(s)
	return s, nil
}

// dsn builds the database/sql name of the file with the given parameters.
func dsn(path string, params url.Values) string {
	return path + "?" + params.Encode()
}

// openWriter opens the writer pool (one connection) with the WAL
// checkpointed every walCap bytes of pages of pageBytes.
func (s *Store) openWriter(pageBytes int) error {
	// The writer: IMMEDIATE transactions take the write lock at BEGIN, so a
	// transaction never fails half-way for want of it. synchronous=NORMAL
	// is the connection's default; durable commits switch to FULL (see
	// write).
	w := url.Values{}
	w.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis))
	// page_size is in the _pragma list, which runs before _journal_mode:
	// it can only change before the file is in WAL mode.
	w.Add("_pragma", fmt.Sprintf("page_size(%d)", pageSize))
	w.Add("_journal_mode", "WAL")
	w.Add("_pragma", "synchronous(NORMAL)")
	// The WAL cap (see the package doc, Full disk).
	w.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", max(1, walCap/pageBytes)))
	w.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", walCap))
	// The savepoints of a group commit keep their undo records (the
	// statement journal) in memory: on disk, a 64 KiB page spills at once.
	w.Add("_pragma", "temp_store(MEMORY)")
	w.Add("_txlock", "immediate")
	wdb, err := sql.Open("sqlite", dsn(s.path, w))
	if err != nil {
		return err
	}
	s.wdb = wdb
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxIdleTime(0)
	wdb.SetConnMaxLifetime(0)
	return nil
}

func (s *Store) open(ctx context.Context, maxReaders int) error {
	if err := s.openWriter(pageSize); err != nil {
		return err
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	// An existing file keeps its page size: the WAL cap is counted in its
	// pages.
	var pageBytes int
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageBytes); err != nil {
		return fmt.Errorf("read page size: %w", err)
	}
	s.pageBytes = int64(pageBytes)
	if pageBytes != pageSize {
		if err := s.wdb.Close(); err != nil {
			return err
		}
		if err := s.openWriter(pageBytes); err != nil {
			return err
		}
	}

	r := url.Values{}
	r.Add("_pragma", "busy_timeout(10000)")
	r.Add("_pragma", "query_only(1)")
	rdb, err := sql.Open("sqlite", dsn(s.path, r))
	if err != nil {
		return err
	}
	s.rdb = rdb
	rdb.SetMaxOpenConns(maxReaders)
	rdb.SetMaxIdleConns(min(maxReaders, 8))
	rdb.SetConnMaxIdleTime(5 * time.Minute)
	if err := rdb.PingContext(ctx); err != nil {
		return fmt.Errorf("open reader: %w", err)
	}
	return s.dropLeftoverUploads(ctx)
}

// migrate creates the schema, or checks that the file's is ours. A file
// of the current schema is only read: opening it writes nothing, so that
// a full volume does not keep the objects from being read.
func (s *Store) migrate(ctx context.Context) error {
	var mode string
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q; WAL could not be enabled", mode)
	}
	var current int
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if current == schemaVersion {
		return nil
	}
	return s.write(ctx, true, func(tx *sql.Tx) error {
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if v > schemaVersion {
			return fmt.Errorf("schema version %d is newer than this dw's %d: %w", v, schemaVersion, sdk.ErrFailedPrecondition)
		}
		for _, q := range schema {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("create schema: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
		return nil
	})
}

// dropLeftoverUploads hands the versions of unfinished uploads to garbage
// collection. Only this process uses the file (see the flock), so every
// uploads row at Open is from a process that died. When the volume is too
// full to write it, Open goes on (reads work) and the collector retries
// with the versions found here.
func (s *Store) dropLeftoverUploads(ctx context.Context) error {
	var versions []string
	rows, err := s.wdb.QueryContext(ctx, `SELECT version FROM dw_uploads`)
	if err != nil {
		return fmt.Errorf("drop unfinished uploads: %w", err)
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("drop unfinished uploads: %w", err)
		}
		versions = append(versions, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("drop unfinished uploads: %w", err)
	}
	if len(versions) == 0 {
		return nil
	}
	err = s.adoptUploads(ctx, versions)
	switch {
	case isFull(err):
		s.log.Warn("the volume is full: the chunks of uploads left unfinished by a previous process are dropped once it has room", "uploads", len(versions), "error", err)
		s.leftovers = versions
	case err != nil:
		return fmt.Errorf("drop unfinished uploads: %w", err)
	default:
		s.log.Info("dropping uploads left unfinished by a previous process", "uploads", len(versions))
	}
	return nil
}

// adoptUploads hands the given upload versions to garbage collection.
func (s *Store) adoptUploads(ctx context.Context, versions []string) error {
	return s.write(ctx, false, func(tx *sql.Tx) error {
		now := time.Now().UnixNano()
		for _, v := range versions {
			res, err := tx.ExecContext(ctx, `DELETE FROM dw_uploads WHERE version = ?`, v)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				if err != nil {
					return err
				}
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO dw_garbage (version, since) VALUES (?, ?)`, v, now); err != nil {
				return err
			}
		}
		return nil
	})
}

// write runs fn in one IMMEDIATE transaction on the writer connection.
// When durable, the commit runs with synchronous=FULL so that it, and every
// commit before it, is on disk when write returns. A failure for space is
// noted (noteWrite).
func (s *Store) write(ctx context.Context, durable bool, fn func(tx *sql.Tx) error) error {
	err := s.writeTx(ctx, durable, fn)
	s.noteWrite(err)
	return err
}

func (s *Store) writeTx(ctx context.Context, durable bool, fn func(tx *sql.Tx) error) error {
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if durable {
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = FULL"); err != nil {
			return fmt.Errorf("enable synchronous commit: %w", err)
		}
		defer func() {
			// Back to the default; should this fail, later commits are
			// only slower.
			if _, err := conn.ExecContext(context.Background(), "PRAGMA synchronous = NORMAL"); err != nil {
				s.log.Warn("restore synchronous=NORMAL", "error", err)
			}
		}()
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// errClosed is the error of calls after Close.
func (s *Store) errClosed() error {
	return fmt.Errorf("sqlite strategy %q is closed: %w", s.name, sdk.ErrUnavailable)
}

// dbError wraps an error of the database for op: the context's error if
// ctx ended, else sdk.ErrUnavailable along with err.
func (s *Store) dbError(ctx context.Context, op string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("sqlite strategy %q: %s: %w", s.name, op, s.errClosed())
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("sqlite strategy %q: %s: %w", s.name, op, cerr)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sdk.ErrUnavailable) {
		return fmt.Errorf("sqlite strategy %q: %s: %w", s.name, op, err)
	}
	return fmt.Errorf("sqlite strategy %q: %s: %w: %w", s.name, op, sdk.ErrUnavailable, err)
}

// Put implements store.Strategy.
func (s *Store) Put(ctx context.Context, req store.PutRequest, data io.Reader) (store.Object, error) {
	if err := store.ValidatePutRequest(req); err != nil {
		return store.Object{}, err
	}
	if s.closed.Load() {
		return store.Object{}, s.errClosed()
	}
	if err := ctx.Err(); err != nil {
		return store.Object{}, fmt.Errorf("put %q: %w", req.Key, err)
	}
	meta, err := store.EncodeMetadata(req.Metadata)
	if err != nil {
		return store.Object{}, fmt.Errorf("put %q: %w: %w", req.Key, sdk.ErrInvalidArgument, err)
	}
	version := store.NewVersion()
	ch := newChunker(req, data, s.chunkSize)
	seq, chunk, err := nextChunk(ctx, req.Key, ch)
	if errors.Is(err, io.EOF) {
		// An empty object: no chunks.
		return s.publish(ctx, req, ch, version, meta, nil, false)
	}
	if err != nil {
		return store.Object{}, err
	}
	if ch.Done() {
		// An object of one chunk: written with its object row in one
		// transaction, with no uploads row to clean up.
		return s.publish(ctx, req, ch, version, meta, chunk, false)
	}
	err = s.write(ctx, false, func(tx *sql.Tx) error {
		// An announced size that cannot fit is refused before anything is
		// written; the chunks are checked again one by one.
		size := int64(s.chunkSize)
		if req.Size >= 0 {
			size = req.Size
		}
		if err := s.checkSpace(ctx, tx, size, min(size, walCap+int64(s.chunkSize))); err != nil {
			return err
		}
		now := time.Now().UnixNano()
		_, err := tx.ExecContext(ctx, `INSERT INTO dw_uploads (version, key, started_at, touched_at) VALUES (?, ?, ?, ?)`, version, []byte(req.Key), now, now)
		return err
	})
	if err != nil {
		return store.Object{}, s.dbError(ctx, fmt.Sprintf("put %q: register upload", req.Key), err)
	}
	obj, err := s.putChunks(ctx, req, ch, version, meta, seq, chunk)
	if err != nil {
		s.abandon(ctx, version)
		return store.Object{}, err
	}
	return obj, nil
}

// nextChunk is ch.Next, failing with ctx's error once ctx has ended.
func nextChunk(ctx context.Context, key string, ch *store.Chunker) (int64, []byte, error) {
	seq, chunk, err := ch.Next()
	if err != nil && !errors.Is(err, io.EOF) {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return 0, nil, fmt.Errorf("%w (%w)", err, cerr)
		}
		return 0, nil, err
	}
	if cerr := ctx.Err(); cerr != nil {
		return 0, nil, fmt.Errorf("put %q: %w", key, cerr)
	}
	return seq, chunk, err
}

// putChunks writes the chunks of a registered upload, starting with the
// one already read, each in a short transaction of its own so that the
// write lock is never held while waiting for data, then publishes it.
func (s *Store) putChunks(ctx context.Context, req store.PutRequest, ch *store.Chunker, version, meta string, seq int64, chunk []byte) (store.Object, error) {
	for {
		err := s.write(ctx, false, func(tx *sql.Tx) error {
			if err := s.checkSpace(ctx, tx, int64(len(chunk)), int64(len(chunk))); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO dw_chunks (version, seq, data) VALUES (?, ?, ?)`, version, seq, chunk); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `UPDATE dw_uploads SET touched_at = ? WHERE version = ?`, time.Now().UnixNano(), version)
			return err
		})
		if err != nil {
			return store.Object{}, s.dbError(ctx, fmt.Sprintf("put %q: write chunk %d", req.Key, seq), err)
		}
		seq, chunk, err = nextChunk(ctx, req.Key, ch)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return store.Object{}, err
		}
	}
	return s.publish(ctx, req, ch, version, meta, nil, true)
}

// newChunker returns the Chunker of a Put. An object announced to fit in
// one chunk gets a buffer of its size and one byte rather than a whole
// chunk: it yields the same one chunk, and Done is true right after it, so
// that the chunk is written with the object row (an object of exactly one
// chunk included).
func newChunker(req store.PutRequest, data io.Reader, chunkSize int) *store.Chunker {
	if req.Size >= 0 && req.Size <= int64(chunkSize) {
		return store.NewChunker(req, data, int(req.Size)+1)
	}
	return store.NewChunker(req, data, chunkSize)
}

// publish is the durable write that ends a Put, run by the group committer
// in a savepoint of a shared transaction: it checks the data against req
// (a mismatch fails this Put alone) and then writes inline as chunk 0 when
// not nil, makes version the content of the key (keeping created_at of the
// object it replaces), hands the replaced version to garbage collection and,
// when registered, drops the uploads row. It returns once the transaction is
// committed with synchronous=FULL.
func (s *Store) publish(ctx context.Context, req store.PutRequest, ch *store.Chunker, version, meta string, inline []byte, registered bool) (store.Object, error) {
	obj := store.Object{
		Key:         req.Key,
		ContentType: req.ContentType,
		Metadata:    maps.Clone(req.Metadata),
	}
	replaced := false
	var checkErr error
	err := s.commits.do(ctx, len(inline), func(ctx context.Context, tx *sql.Tx) error {
		size, sum, err := ch.Finish()
		if err != nil {
			checkErr = err
			return err
		}
		obj.Size, obj.SHA256 = size, sum
		now := time.Now()
		obj.CreatedAt, obj.ModifiedAt = now, now
		key := []byte(req.Key)
		if inline != nil {
			if err := s.checkSpace(ctx, tx, int64(len(inline)), int64(len(inline))); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO dw_chunks (version, seq, data) VALUES (?, 0, ?)`, version, inline); err != nil {
				return err
			}
		}
		var oldVersion string
		var created int64
		err = tx.QueryRowContext(ctx, `SELECT version, created_at FROM dw_objects WHERE key = ?`, key).Scan(&oldVersion, &created)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			replaced = true
			obj.CreatedAt = time.Unix(0, created)
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO dw_garbage (version, since) VALUES (?, ?)`, oldVersion, now.UnixNano()); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO dw_objects (key, version, size, sha256, content_type, metadata, chunk_size, created_at, modified_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET version = excluded.version, size = excluded.size, sha256 = excluded.sha256,
				content_type = excluded.content_type, metadata = excluded.metadata, chunk_size = excluded.chunk_size,
				modified_at = excluded.modified_at`,
			key, version, size, sum, req.ContentType, meta, s.chunkSize, obj.CreatedAt.UnixNano(), now.UnixNano())
		if err != nil || !registered {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM dw_uploads WHERE version = ?`, version)
		return err
	})
	if checkErr != nil {
		return store.Object{}, checkErr
	}
	if err != nil {
		return store.Object{}, s.dbError(ctx, fmt.Sprintf("put %q: publish", req.Key), err)
	}
	s.notePut()
	if replaced {
		s.gc.wake()
	}
	obj.CreatedAt, obj.ModifiedAt = obj.CreatedAt.UTC(), obj.ModifiedAt.UTC()
	if len(obj.Metadata) == 0 {
		obj.Metadata = nil
	}
	return obj, nil
}

// abandon hands the chunks of a failed upload to garbage collection. It
// runs under a fresh short context if ctx has ended; should it fail, the
// uploads row stays and the next Open removes the chunks.
func (s *Store) abandon(ctx context.Context, version string) {
	if s.closed.Load() {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := s.write(cctx, false, func(tx *sql.Tx) error {
		// Only a version still registered as an upload is garbage: should
		// the publishing commit have gone through after all, its uploads
		// row is gone and the version is the object's content.
		res, err := tx.ExecContext(cctx, `DELETE FROM dw_uploads WHERE version = ?`, version)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		_, err = tx.ExecContext(cctx, `INSERT OR IGNORE INTO dw_garbage (version, since) VALUES (?, ?)`, version, time.Now().UnixNano())
		return err
	})
	if err != nil {
		s.log.Warn("drop the chunks of a failed upload; the next open will", "version", version, "error", err)
		return
	}
	s.gc.wake()
}

// Delete implements store.Strategy.
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	if err := store.ValidateKey(key); err != nil {
		return false, err
	}
	if s.closed.Load() {
		return false, s.errClosed()
	}
	existed := false
	err := s.commits.do(ctx, 0, func(ctx context.Context, tx *sql.Tx) error {
		var version string
		err := tx.QueryRowContext(ctx, `DELETE FROM dw_objects WHERE key = ? RETURNING version`, []byte(key)).Scan(&version)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		existed = true
		_, err = tx.ExecContext(ctx, `INSERT OR IGNORE INTO dw_garbage (version, since) VALUES (?, ?)`, version, time.Now().UnixNano())
		return err
	})
	if err != nil {
		return false, s.dbError(ctx, fmt.Sprintf("delete %q", key), err)
	}
	if existed {
		s.gc.wake()
	}
	return existed, nil
}

// objectColumns are the columns scanObject reads, in its order.
const objectColumns = `key, version, size, sha256, content_type, metadata, chunk_size, created_at, modified_at`

// row is one dw_objects row.
type row struct {
	store.Object
	version   string
	chunkSize int64
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

func scanObject(sc scanner) (row, error) {
	var r row
	var key []byte
	var meta string
	var created, modified int64
	if err := sc.Scan(&key, &r.version, &r.Size, &r.SHA256, &r.ContentType, &meta, &r.chunkSize, &created, &modified); err != nil {
		return row{}, err
	}
	m, err := store.DecodeMetadata(meta)
	if err != nil {
		return row{}, fmt.Errorf("object %q: %w", key, err)
	}
	if r.chunkSize <= 0 {
		return row{}, fmt.Errorf("object %q: chunk size %d in the database", key, r.chunkSize)
	}
	r.Key = string(key)
	r.Metadata = m
	r.CreatedAt = time.Unix(0, created).UTC()
	r.ModifiedAt = time.Unix(0, modified).UTC()
	return r, nil
}

// Stat implements store.Strategy.
func (s *Store) Stat(ctx context.Context, key string) (store.Object, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.Object{}, err
	}
	if s.closed.Load() {
		return store.Object{}, s.errClosed()
	}
	r, err := scanObject(s.rdb.QueryRowContext(ctx, `SELECT `+objectColumns+` FROM dw_objects WHERE key = ?`, []byte(key)))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Object{}, fmt.Errorf("object %q: %w", key, sdk.ErrNotFound)
	}
	if err != nil {
		return store.Object{}, s.dbError(ctx, fmt.Sprintf("stat %q", key), err)
	}
	return r.Object, nil
}

// List implements store.Strategy.
func (s *Store) List(ctx context.Context, q store.ListQuery) ([]store.Object, error) {
	if q.Limit < 1 {
		return nil, fmt.Errorf("list: limit %d is below 1: %w", q.Limit, sdk.ErrInvalidArgument)
	}
	if q.Offset < 0 {
		return nil, fmt.Errorf("list: offset %d is negative: %w", q.Offset, sdk.ErrInvalidArgument)
	}
	if s.closed.Load() {
		return nil, s.errClosed()
	}
	where, args := keyRange(q.Prefix, q.After)
	args = append(args, q.Limit, q.Offset)
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+objectColumns+` FROM dw_objects`+where+` ORDER BY key LIMIT ? OFFSET ?`, args...)
	if err != nil {
		return nil, s.dbError(ctx, "list", err)
	}
	defer rows.Close()
	out := make([]store.Object, 0, min(q.Limit, 1000))
	for rows.Next() {
		r, err := scanObject(rows)
		if err != nil {
			return nil, s.dbError(ctx, "list", err)
		}
		out = append(out, r.Object)
	}
	if err := rows.Err(); err != nil {
		return nil, s.dbError(ctx, "list", err)
	}
	return out, nil
}

// keyRange returns the WHERE clause and its arguments selecting the keys
// with prefix that sort after after (when not empty), as bytes.
func keyRange(prefix, after string) (string, []any) {
	var conds []string
	var args []any
	// The lower bound is the greater of prefix (inclusive) and after
	// (exclusive), so that the index range starts at the right place.
	switch {
	case after != "" && after >= prefix:
		conds = append(conds, "key > ?")
		args = append(args, []byte(after))
	case prefix != "":
		conds = append(conds, "key >= ?")
		args = append(args, []byte(prefix))
	}
	if end, ok := store.PrefixEnd(prefix); ok {
		conds = append(conds, "key < ?")
		args = append(args, end)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// Count implements store.Strategy.
func (s *Store) Count(ctx context.Context, prefix string) (int64, error) {
	if s.closed.Load() {
		return 0, s.errClosed()
	}
	where, args := keyRange(prefix, "")
	var n int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM dw_objects`+where, args...).Scan(&n); err != nil {
		return 0, s.dbError(ctx, "count", err)
	}
	return n, nil
}

// Ping implements store.Strategy: one query on a reader connection.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return s.errClosed()
	}
	var n int
	if err := s.rdb.QueryRowContext(ctx, `SELECT 1`).Scan(&n); err != nil {
		return s.dbError(ctx, "ping", err)
	}
	return nil
}

// Close stops garbage collection, fails the Readers still open and closes
// the database. It is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.commits.stop()
	s.gc.stop()
	s.mu.Lock()
	open := make([]*reader, 0, len(s.readers))
	for r := range s.readers {
		open = append(open, r)
	}
	s.readers = map[*reader]struct{}{}
	s.mu.Unlock()
	for _, r := range open {
		r.fail(s.errClosed())
	}
	return s.closeDBs()
}

// closeDBs closes the databases and releases the file lock.
func (s *Store) closeDBs() error {
	var errs []error
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close sqlite strategy %q: %w", s.name, err)
	}
	return nil
}

// ChunkSize returns the chunk size new objects are written with.
func (s *Store) ChunkSize() int { return s.chunkSize }

// ChunkRows returns how many chunk rows the database holds, of every
// version (for tests and diagnostics).
func (s *Store) ChunkRows(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, s.errClosed()
	}
	var n int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM dw_chunks`).Scan(&n); err != nil {
		return 0, s.dbError(ctx, "count chunks", err)
	}
	return n, nil
}

// WaitIdle returns once garbage collection has removed every version that
// was garbage when it was called, or when ctx ends.
func (s *Store) WaitIdle(ctx context.Context) error {
	if s.closed.Load() {
		return s.errClosed()
	}
	return s.gc.waitIdle(ctx)
}
