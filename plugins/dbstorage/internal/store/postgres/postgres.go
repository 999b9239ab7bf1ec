package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk"
)

var _ store.Strategy = (*Store)(nil)

// Config is what Open needs to know.
type Config struct {
	// Name is the strategy's name, used in errors and logs.
	Name string
	// DSN is a PostgreSQL connection string (URL or key=value), as pgx
	// parses it. pool_max_conns=N in it caps the connections (default
	// DefaultMaxConns); connect_timeout defaults to 10 s.
	DSN string
	// ChunkSize is the size of the chunks new objects are cut into, from
	// 1 KiB to store.MaxChunkSize; 0 means store.DefaultChunkSize (1 MiB).
	ChunkSize int
	// Logger receives the strategy's logs; nil discards them.
	Logger hclog.Logger
}

// DefaultMaxConns caps the connections of a strategy unless the DSN sets
// pool_max_conns. Every open Reader and every Put in progress holds one.
const DefaultMaxConns = 16

// StaleUploadAge is how long an upload may go without writing a chunk
// before garbage collection removes it. A database may be shared by several
// dw nodes, so an upload cannot be told from another node's live one except
// by its age; an upload that stalls this long fails when it resumes.
const StaleUploadAge = 15 * time.Minute

// minChunkSize is the smallest chunk size Open accepts.
const minChunkSize = 1 << 10

// defaultConnectTimeout bounds a connection attempt when neither the DSN
// nor the caller's context does.
const defaultConnectTimeout = 10 * time.Second

// tuning holds the timings tests shorten.
type tuning struct {
	staleUploadAge time.Duration // uploads untouched this long are removed
	sweepInterval  time.Duration // GC's periodic sweep
}

var defaultTuning = tuning{staleUploadAge: StaleUploadAge, sweepInterval: time.Minute}

// Store is a strategy keeping objects in a PostgreSQL database. See the
// package documentation for its design.
type Store struct {
	name      string
	chunkSize int
	log       hclog.Logger
	tune      tuning
	pool      *pool

	schemaReady atomic.Bool
	schemaSem   chan struct{} // one schema attempt at a time

	closed    atomic.Bool
	closeOnce sync.Once
	mu        sync.Mutex
	readers   map[*reader]struct{} // open readers, closed by Close

	gcWake   chan struct{} // buffered 1: wakes the collector
	gcCancel context.CancelFunc
	gcDone   chan struct{}
}

// Open checks cfg and returns a strategy on cfg.DSN. It does not connect:
// the first call that needs the database connects and creates the schema,
// under that call's context, and later calls retry until it succeeds. Until
// then calls fail with an error wrapping sdk.ErrUnavailable. A malformed
// DSN or chunk size is sdk.ErrInvalidSettings.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	return open(ctx, cfg, defaultTuning)
}

func open(_ context.Context, cfg Config, tune tuning) (*Store, error) {
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = store.DefaultChunkSize
	}
	if cfg.ChunkSize < minChunkSize || cfg.ChunkSize > store.MaxChunkSize {
		return nil, fmt.Errorf("open postgres strategy %q: chunk size %d is outside %d to %d bytes: %w", cfg.Name, cfg.ChunkSize, minChunkSize, store.MaxChunkSize, sdk.ErrInvalidSettings)
	}
	if cfg.DSN == "" {
		return nil, fmt.Errorf("open postgres strategy %q: dsn is empty; it is a PostgreSQL connection string such as postgres://user@host:5432/db: %w", cfg.Name, sdk.ErrInvalidSettings)
	}
	connCfg, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx's message may quote the DSN, password included; say less.
		return nil, fmt.Errorf("open postgres strategy %q: dsn is not a valid PostgreSQL connection string (URL or key=value pairs): %w", cfg.Name, sdk.ErrInvalidSettings)
	}
	maxConns := DefaultMaxConns
	if v, ok := connCfg.RuntimeParams["pool_max_conns"]; ok {
		delete(connCfg.RuntimeParams, "pool_max_conns")
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			return nil, fmt.Errorf("open postgres strategy %q: dsn pool_max_conns %q is not a number >= 2: %w", cfg.Name, v, sdk.ErrInvalidSettings)
		}
		maxConns = n
	}
	if connCfg.ConnectTimeout == 0 {
		connCfg.ConnectTimeout = defaultConnectTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	gcCtx, gcCancel := context.WithCancel(context.Background())
	s := &Store{
		name:      cfg.Name,
		chunkSize: cfg.ChunkSize,
		log:       log.Named("postgres").With("strategy", cfg.Name),
		tune:      tune,
		pool:      newPool(connCfg, maxConns),
		schemaSem: make(chan struct{}, 1),
		readers:   map[*reader]struct{}{},
		gcWake:    make(chan struct{}, 1),
		gcCancel:  gcCancel,
		gcDone:    make(chan struct{}),
	}
	go s.runGC(gcCtx)
	return s, nil
}

// ChunkSize returns the chunk size new objects are written with.
func (s *Store) ChunkSize() int { return s.chunkSize }

// Close stops garbage collection, ends the open readers and closes the
// connections. Calls after Close fail with sdk.ErrUnavailable. Idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.gcCancel()
		<-s.gcDone
		s.mu.Lock()
		readers := make([]*reader, 0, len(s.readers))
		for r := range s.readers {
			readers = append(readers, r)
		}
		s.readers = map[*reader]struct{}{}
		s.mu.Unlock()
		for _, r := range readers {
			r.abort(s.errClosed())
		}
		s.pool.close()
	})
	return nil
}

// errClosed is the error of calls after Close.
func (s *Store) errClosed() error {
	return fmt.Errorf("postgres strategy %q is closed: %w", s.name, sdk.ErrUnavailable)
}

// Ping implements store.Strategy: it prepares the schema if that is still
// to do and runs a query, under ctx.
func (s *Store) Ping(ctx context.Context) error {
	return s.withConn(ctx, "ping", func(conn *pgx.Conn) error {
		var one int
		return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	})
}

// withConn runs fn on a connection once the schema is there, and wraps its
// error for op.
func (s *Store) withConn(ctx context.Context, op string, fn func(conn *pgx.Conn) error) error {
	conn, err := s.acquire(ctx, op)
	if err != nil {
		return err
	}
	defer s.pool.release(conn)
	if err := fn(conn); err != nil {
		return s.dbError(ctx, op, err)
	}
	return nil
}

// acquire makes sure the schema exists and returns a connection.
func (s *Store) acquire(ctx context.Context, op string) (*pgx.Conn, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("%s: %w", op, s.errClosed())
	}
	if err := s.ensureSchema(ctx); err != nil {
		if !hasSentinel(err) && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%w: %w", sdk.ErrUnavailable, err)
		}
		return nil, s.dbError(ctx, op, err)
	}
	conn, err := s.pool.acquire(ctx)
	if err != nil {
		return nil, s.dbError(ctx, op, err)
	}
	return conn, nil
}

// dbError wraps an error of the database for op: with the context's error
// if ctx ended; with sdk.ErrBackpressure if no connection was free in time;
// as it is if it already carries an sdk sentinel (a bad argument, say);
// with sdk.ErrUnavailable if the server could not be reached or did not
// answer in time, or the strategy is closed. Other errors (the server
// refusing a statement) are wrapped as they are.
func (s *Store) dbError(ctx context.Context, op string, err error) error {
	prefix := fmt.Sprintf("postgres strategy %q: %s", s.name, op)
	if s.closed.Load() || errors.Is(err, errPoolClosed) {
		return fmt.Errorf("%s: %w", op, s.errClosed())
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w: %w", ctxErr, err)
	}
	switch {
	case errors.Is(err, context.Canceled) || hasSentinel(err):
		return fmt.Errorf("%s: %w", prefix, err)
	case errors.Is(err, errPoolExhausted):
		return fmt.Errorf("%s: %w: %w", prefix, sdk.ErrBackpressure, err)
	case unreachable(err):
		return fmt.Errorf("%s: %w: %w", prefix, sdk.ErrUnavailable, err)
	default:
		return fmt.Errorf("%s: %w", prefix, err)
	}
}

// hasSentinel reports whether err already carries one of the sdk errors a
// strategy returns.
func hasSentinel(err error) bool {
	for _, target := range []error{sdk.ErrUnavailable, sdk.ErrInvalidArgument, sdk.ErrNotFound, sdk.ErrOutOfRange, sdk.ErrBackpressure, sdk.ErrFailedPrecondition} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// unreachable reports whether err says that the server could not be
// reached or stopped answering, as opposed to refusing a statement.
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case len(pgErr.Code) >= 2 && (pgErr.Code[:2] == "08" || pgErr.Code[:2] == "53" || pgErr.Code[:2] == "58"):
			return true // connection exception, insufficient resources, system error
		case pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03":
			return true // shutting down, crash, starting up
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// wake asks the collector for a pass.
func (s *Store) wake() {
	select {
	case s.gcWake <- struct{}{}:
	default:
	}
}
