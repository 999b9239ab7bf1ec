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
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
)

var _ store.Strategy = (*Store)(nil)

// Config is what Open needs to know.
type Config struct {
	// Name is the strategy's name, used in errors and logs.
	Name string
	// DSN is a PostgreSQL connection string (URL or key=value), as
	// pgxpool parses it. pool_max_conns=N in it caps the connections
	// (default DefaultMaxConns, at least 2); pgxpool's other pool_*
	// parameters apply too. connect_timeout defaults to 10 s and
	// pool_max_conn_idle_time to 5 minutes.
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

// defaultConnectTimeout bounds a connection attempt unless the DSN sets
// connect_timeout. pgxpool finishes an attempt in the background when the
// call that started it gives up, so this bounds that too.
const defaultConnectTimeout = 10 * time.Second

// defaultMaxIdleTime: idle connections older than this are closed, unless
// the DSN sets pool_max_conn_idle_time.
const defaultMaxIdleTime = 5 * time.Minute

// Backpressure: a call that finds every connection in use waits at most
// AcquireWait for one, then fails with sdk.ErrBackpressure carrying
// RetryAfter as its retry hint.
const (
	AcquireWait = 2 * time.Second
	RetryAfter  = time.Second
)

// closeWait bounds how long Close waits for the calls in progress to give
// their connections back.
const closeWait = 5 * time.Second

// errPoolExhausted: every connection stayed in use for the whole wait.
var errPoolExhausted = errors.New("all database connections are in use")

// tuning holds the timings tests shorten.
type tuning struct {
	staleUploadAge time.Duration // uploads untouched this long are removed
	sweepInterval  time.Duration // GC's periodic sweep
	acquireWait    time.Duration // wait for a connection of a full pool
}

var defaultTuning = tuning{staleUploadAge: StaleUploadAge, sweepInterval: time.Minute, acquireWait: AcquireWait}

// Store is a strategy keeping objects in a PostgreSQL database. See the
// package documentation for its design.
type Store struct {
	name      string
	chunkSize int
	log       hclog.Logger
	tune      tuning
	pool      *pgxpool.Pool

	schemaReady atomic.Bool
	schemaSem   chan struct{} // one schema attempt at a time

	closed    atomic.Bool
	closeOnce sync.Once
	mu        sync.Mutex
	readers   map[*reader]struct{} // open readers, closed by Close

	life   context.Context // ended by Close: ends the calls in progress
	end    context.CancelFunc
	gcWake chan struct{} // buffered 1: wakes the collector
	gcDone chan struct{}
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
	// pgx keeps the pool_* parameters it does not know as runtime
	// parameters: a first parse shows which ones the DSN sets.
	connCfg, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx's message may quote the DSN, password included; say less.
		return nil, fmt.Errorf("open postgres strategy %q: dsn is not a valid PostgreSQL connection string (URL or key=value pairs): %w", cfg.Name, sdk.ErrInvalidSettings)
	}
	maxConns := DefaultMaxConns
	if v, ok := connCfg.RuntimeParams["pool_max_conns"]; ok {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 2 {
			return nil, fmt.Errorf("open postgres strategy %q: dsn pool_max_conns %q is not a number >= 2: %w", cfg.Name, v, sdk.ErrInvalidSettings)
		}
		maxConns = int(n)
	}
	poolCfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("open postgres strategy %q: dsn has a malformed pool_* parameter (pool_min_conns, pool_max_conn_lifetime, pool_max_conn_idle_time, pool_health_check_period take a number or a duration such as 5m): %w", cfg.Name, sdk.ErrInvalidSettings)
	}
	poolCfg.MaxConns = int32(maxConns)
	if _, ok := connCfg.RuntimeParams["pool_max_conn_idle_time"]; !ok {
		poolCfg.MaxConnIdleTime = defaultMaxIdleTime
	}
	if poolCfg.ConnConfig.ConnectTimeout == 0 {
		poolCfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	// With MinConns 0 (unless the DSN sets pool_min_conns) the pool makes
	// no connection before the first Acquire; it never blocks here.
	pool, err := pgxpool.NewWithConfig(context.Background(), poolCfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres strategy %q: %w: %w", cfg.Name, sdk.ErrInvalidSettings, err)
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	life, end := context.WithCancel(context.Background())
	s := &Store{
		name:      cfg.Name,
		chunkSize: cfg.ChunkSize,
		log:       log.Named("postgres").With("strategy", cfg.Name),
		tune:      tune,
		pool:      pool,
		schemaSem: make(chan struct{}, 1),
		readers:   map[*reader]struct{}{},
		life:      life,
		end:       end,
		gcWake:    make(chan struct{}, 1),
		gcDone:    make(chan struct{}),
	}
	go s.runGC(life)
	return s, nil
}

// ChunkSize returns the chunk size new objects are written with.
func (s *Store) ChunkSize() int { return s.chunkSize }

// Close stops garbage collection, ends the open readers and the calls in
// progress, and closes the connections. Calls after Close fail with
// sdk.ErrUnavailable. Idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.end()
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
		// pgxpool's Close waits for the connections still out, which the
		// calls holding them give back now that their context has ended;
		// a Put blocked reading its data does so when the read returns,
		// so the wait is bounded.
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			s.pool.Close()
		}()
		t := time.NewTimer(closeWait)
		defer t.Stop()
		select {
		case <-closed:
		case <-t.C:
			s.log.Warn("connections still in use after close; they are closed when given back", "waited", closeWait)
		}
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
	return s.withConn(ctx, "ping", func(ctx context.Context, conn *pgx.Conn) error {
		var one int
		return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	})
}

// bind returns ctx, ended also by Close (with an error of Close as its
// cause), so that Close need not wait for the calls in progress. The
// caller calls unbind when done.
func (s *Store) bind(ctx context.Context) (_ context.Context, unbind func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.life, func() { cancel(s.errClosed()) })
	return ctx, func() {
		stop()
		cancel(context.Canceled)
	}
}

// withConn runs fn on a connection once the schema is there, under ctx
// bound to the Store's life, and wraps its error for op.
func (s *Store) withConn(ctx context.Context, op string, fn func(ctx context.Context, conn *pgx.Conn) error) error {
	ctx, unbind := s.bind(ctx)
	defer unbind()
	conn, err := s.acquire(ctx, op)
	if err != nil {
		return err
	}
	defer conn.Release()
	if err := fn(ctx, conn.Conn()); err != nil {
		return s.dbError(ctx, op, err)
	}
	return nil
}

// acquire makes sure the schema exists and returns a connection.
func (s *Store) acquire(ctx context.Context, op string) (*pgxpool.Conn, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("%s: %w", op, s.errClosed())
	}
	if err := s.ensureSchema(ctx); err != nil {
		if !hasSentinel(err) && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%w: %w", sdk.ErrUnavailable, err)
		}
		return nil, s.dbError(ctx, op, err)
	}
	conn, err := s.conn(ctx)
	if err != nil {
		return nil, s.dbError(ctx, op, err)
	}
	return conn, nil
}

// conn returns a connection of the pool. While some are free or can be
// made it waits under ctx alone (a connection attempt is bounded by ctx
// and connect_timeout). When every connection is in use it waits at most
// the acquire wait; if every one is still in use when the wait or ctx
// ends, the error wraps errPoolExhausted.
func (s *Store) conn(ctx context.Context) (*pgxpool.Conn, error) {
	wctx := ctx
	if s.saturated() {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, s.tune.acquireWait)
		defer cancel()
	}
	conn, err := s.pool.Acquire(wctx)
	switch {
	case err == nil:
		return conn, nil
	case wctx.Err() != nil && ctx.Err() == nil:
		// The wait ran out: the pool was full from start to end.
		return nil, errPoolExhausted
	case ctx.Err() != nil && s.saturated():
		return nil, errors.Join(errPoolExhausted, err)
	}
	return nil, err
}

// saturated reports whether every connection is handed out.
func (s *Store) saturated() bool {
	st := s.pool.Stat()
	return st.AcquiredConns() >= st.MaxConns()
}

// dbError wraps an error of the database for op: with the context's error
// if ctx ended; with sdk.ErrBackpressure and a retry hint if no connection
// was free in time;
// as it is if it already carries an sdk sentinel (a bad argument, say);
// with sdk.ErrUnavailable if the server could not be reached or did not
// answer in time, or the strategy is closed. Other errors (the server
// refusing a statement) are wrapped as they are.
func (s *Store) dbError(ctx context.Context, op string, err error) error {
	prefix := fmt.Sprintf("postgres strategy %q: %s", s.name, op)
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, s.errClosed())
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w: %w", ctxErr, err)
	}
	switch {
	case errors.Is(err, context.Canceled) || hasSentinel(err):
		return fmt.Errorf("%s: %w", prefix, err)
	case errors.Is(err, errPoolExhausted):
		return sdk.WithRetryAfter(fmt.Errorf("%s: %w: %w", prefix, sdk.ErrBackpressure, err), RetryAfter)
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
