package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/internal/pgtest"
	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store/storetest"
	"github.com/datawarehouse/dw/sdk/v6"
)

var _ storetest.Inspector = (*Store)(nil)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.TestingM(m))
}

// testChunkSize keeps multi-chunk objects small in tests.
const testChunkSize = 16 << 10

// openTest opens a store on a fresh database of the shared server.
func openTest(tb testing.TB, chunkSize int, tune tuning) (*Store, string) {
	tb.Helper()
	dsn := pgtest.Shared(tb).CreateDatabase(tb, "")
	s, err := open(context.Background(), Config{Name: "test", DSN: dsn, ChunkSize: chunkSize}, tune)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s, dsn
}

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	for _, cs := range []int{testChunkSize, store.DefaultChunkSize} {
		t.Run(fmt.Sprintf("chunk=%dKiB", cs>>10), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Strategy {
				s, _ := openTest(t, cs, defaultTuning)
				return s
			})
		})
	}
}

func TestOpenRejectsBadSettings(t *testing.T) {
	cases := map[string]Config{
		"empty dsn":            {Name: "x"},
		"malformed dsn":        {Name: "x", DSN: "postgres://host:notaport/db"},
		"chunk size too small": {Name: "x", DSN: "postgres://localhost/db", ChunkSize: 512},
		"chunk size too large": {Name: "x", DSN: "postgres://localhost/db", ChunkSize: store.MaxChunkSize + 1},
		"pool_max_conns word":  {Name: "x", DSN: "postgres://localhost/db?pool_max_conns=many"},
		"pool_max_conns 1":     {Name: "x", DSN: "postgres://localhost/db?pool_max_conns=1"},
		"pool idle time word":  {Name: "x", DSN: "postgres://localhost/db?pool_max_conn_idle_time=long"},
	}
	for name, cfg := range cases {
		s, err := Open(context.Background(), cfg)
		if err == nil {
			_ = s.Close()
		}
		if !errors.Is(err, sdk.ErrInvalidSettings) {
			t.Errorf("%s: Open error %v; want one wrapping sdk.ErrInvalidSettings", name, err)
		}
	}
}

// TestOpenPoolSettings: the pool's cap, connect timeout and idle time
// default to ours and follow the DSN.
func TestOpenPoolSettings(t *testing.T) {
	cases := []struct {
		dsn      string
		maxConns int32
		connect  time.Duration
		idle     time.Duration
	}{
		{"postgres://localhost/db", DefaultMaxConns, defaultConnectTimeout, defaultMaxIdleTime},
		{"postgres://localhost/db?pool_max_conns=3&connect_timeout=3&pool_max_conn_idle_time=1m", 3, 3 * time.Second, time.Minute},
		{"host=localhost dbname=db pool_max_conns=40", 40, defaultConnectTimeout, defaultMaxIdleTime},
	}
	for _, c := range cases {
		s, err := Open(context.Background(), Config{Name: "x", DSN: c.dsn})
		if err != nil {
			t.Fatalf("Open %s: %v", c.dsn, err)
		}
		cfg := s.pool.Config()
		_ = s.Close()
		if cfg.MaxConns != c.maxConns || cfg.ConnConfig.ConnectTimeout != c.connect || cfg.MaxConnIdleTime != c.idle || cfg.MinConns != 0 {
			t.Errorf("%s: max conns %d, connect timeout %v, idle time %v, min conns %d; want %d, %v, %v, 0",
				c.dsn, cfg.MaxConns, cfg.ConnConfig.ConnectTimeout, cfg.MaxConnIdleTime, cfg.MinConns, c.maxConns, c.connect, c.idle)
		}
		if _, ok := cfg.ConnConfig.RuntimeParams["pool_max_conns"]; ok {
			t.Errorf("%s: pool_max_conns would be sent to the server", c.dsn)
		}
	}
}

// freePort returns a port on 127.0.0.1 nothing listens on (a moment ago).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("%s: error %v; want one wrapping sdk.ErrUnavailable", what, err)
	}
}

// TestLazyOpen: Open succeeds against a dead address, calls fail with
// sdk.ErrUnavailable, and once the server comes up the same Store works;
// when it stops, calls fail with sdk.ErrUnavailable again.
func TestLazyOpen(t *testing.T) {
	port := freePort(t)
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	s, err := Open(context.Background(), Config{Name: "lazy", DSN: dsn, ChunkSize: testChunkSize})
	if err != nil {
		t.Fatalf("Open against a dead address: %v", err)
	}
	defer s.Close()
	ctx := testContext(t)
	wantUnavailable(t, "ping", s.Ping(ctx))
	_, err = s.Put(ctx, store.PutRequest{Key: "k", Size: -1}, strings.NewReader("data"))
	wantUnavailable(t, "put", err)
	_, err = s.Stat(ctx, "k")
	wantUnavailable(t, "stat", err)
	_, _, _, _, err = s.Get(ctx, "k", 0, -1)
	wantUnavailable(t, "get", err)
	_, err = s.List(ctx, store.ListQuery{Limit: 10})
	wantUnavailable(t, "list", err)
	_, err = s.Count(ctx, "")
	wantUnavailable(t, "count", err)
	_, err = s.Delete(ctx, "k")
	wantUnavailable(t, "delete", err)

	srv := pgtest.Start(t, pgtest.WithPort(port))
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping once the server is up: %v", err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 3*testChunkSize/16+1)
	if _, err := s.Put(ctx, store.PutRequest{Key: "k", Size: int64(len(data))}, bytes.NewReader(data)); err != nil {
		t.Fatalf("put once the server is up: %v", err)
	}
	if got := readAll(t, s, "k"); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes; want the %d put", len(got), len(data))
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	wantUnavailable(t, "ping after the server stopped", s.Ping(ctx))
	_, err = s.Stat(ctx, "k")
	wantUnavailable(t, "stat after the server stopped", err)
}

// readAll reads key whole.
func readAll(t *testing.T, s *Store, key string) []byte {
	t.Helper()
	ctx := testContext(t)
	_, _, _, r, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	defer r.Close()
	var out []byte
	for {
		p, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read %q: %v", key, err)
		}
		out = append(out, p...)
	}
}

// hungListener accepts TCP connections and never answers.
func hungListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

// TestHungServer: against a listener that accepts and never answers, calls
// return at their deadline with sdk.ErrUnavailable instead of hanging.
func TestHungServer(t *testing.T) {
	addr := hungListener(t)
	// No sslmode: the default (prefer) first waits for the TLS answer.
	s, err := Open(context.Background(), Config{Name: "hung", DSN: "postgres://postgres@" + addr + "/postgres"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := s.Ping(ctx)
		cancel()
		if err == nil {
			t.Fatalf("ping %d of a hung server succeeded", i)
		}
		wantUnavailable(t, "ping of a hung server", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = s.Put(ctx, store.PutRequest{Key: "k", Size: -1}, strings.NewReader("x"))
	wantUnavailable(t, "put to a hung server", err)
}

// TestServerDiesDuringRead: a reader whose server is killed fails with
// sdk.ErrUnavailable and can be closed.
func TestServerDiesDuringRead(t *testing.T) {
	srv := pgtest.Start(t)
	const chunkSize = 256 << 10
	s, err := Open(context.Background(), Config{Name: "dies", DSN: srv.DSN("postgres"), ChunkSize: chunkSize})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := testContext(t)
	data := bytes.Repeat([]byte{7}, 128*chunkSize) // far more than socket buffers hold
	if _, err := s.Put(ctx, store.PutRequest{Key: "k", Size: -1}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	_, _, _, r, err := s.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	for read := chunkSize; ; {
		p, err := r.Next(ctx)
		if err == nil {
			read += len(p) // pieces already on their way
			continue
		}
		if errors.Is(err, io.EOF) {
			t.Fatalf("read all %d bytes (of %d) from a killed server", read, len(data))
		}
		wantUnavailable(t, "read from a killed server", err)
		break
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	wantUnavailable(t, "ping of a killed server", s.Ping(ctx))
}

// TestConcurrentFirstPuts: Puts racing to create the same key all succeed,
// one wins, and the others' versions become garbage.
func TestConcurrentFirstPuts(t *testing.T) {
	s, _ := openTest(t, testChunkSize, defaultTuning)
	ctx := testContext(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := bytes.Repeat([]byte{byte(i)}, (i+1)*testChunkSize/2)
			_, errs[i] = s.Put(ctx, store.PutRequest{Key: "race", Size: int64(len(data))}, bytes.NewReader(data))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	obj, err := s.Stat(ctx, "race")
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, s, "race")
	if int64(len(got)) != obj.Size || !bytes.Equal(got, bytes.Repeat(got[:1], len(got))) {
		t.Fatalf("read %d bytes, stat says %d: not one put's data", len(got), obj.Size)
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := s.ChunkRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := store.ChunkCount(obj.Size, testChunkSize); rows != want {
		t.Fatalf("%d chunk rows; the object has %d", rows, want)
	}
}

// execSQL runs statements on dsn as another node would.
func execSQL(t *testing.T, dsn string, sql string, args ...any) {
	t.Helper()
	ctx := testContext(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestStaleUploads: uploads untouched for the stale age (another node
// crashed mid-upload) are removed with their chunks; recent ones are not.
func TestStaleUploads(t *testing.T) {
	s, dsn := openTest(t, testChunkSize, tuning{staleUploadAge: time.Hour, sweepInterval: 20 * time.Millisecond})
	ctx := testContext(t)
	if err := s.Ping(ctx); err != nil { // creates the schema
		t.Fatal(err)
	}
	now := time.Now()
	old, fresh := store.NewVersion(), store.NewVersion()
	// The chunks first: the sweep may run between the statements.
	execSQL(t, dsn, `INSERT INTO dw_chunks (version, seq, data) SELECT v, g, '\x00'::bytea FROM unnest($1::text[]) v, generate_series(0, 9) g`,
		[]string{old, fresh})
	execSQL(t, dsn, `INSERT INTO dw_uploads (version, started_at, touched_at) VALUES ($1, $2, $2), ($3, $4, $4)`,
		old, now.Add(-2*time.Hour).UnixNano(), fresh, now.UnixNano())

	count := func(version string) int64 {
		var n int64
		if err := s.withConn(ctx, "count", func(ctx context.Context, conn *pgx.Conn) error {
			return conn.QueryRow(ctx, `SELECT count(*) FROM dw_chunks WHERE version = $1`, version).Scan(&n)
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for count(old) != 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the stale upload's chunks were not removed")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(fresh); n != 10 {
		t.Fatalf("the recent upload has %d chunks left; want its 10", n)
	}
}

// sweepingReader moves its Put's upload to the garbage, as the collector of
// another node would after the stale age, when the data ends.
type sweepingReader struct {
	r     io.Reader
	sweep func()
}

func (r *sweepingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if errors.Is(err, io.EOF) && r.sweep != nil {
		r.sweep()
		r.sweep = nil
	}
	return n, err
}

// TestSweptUploadFails: a Put whose upload was taken for stale fails and
// leaves nothing.
func TestSweptUploadFails(t *testing.T) {
	s, dsn := openTest(t, testChunkSize, defaultTuning)
	ctx := testContext(t)
	data := bytes.Repeat([]byte("x"), 3*testChunkSize)
	src := &sweepingReader{r: bytes.NewReader(data), sweep: func() {
		execSQL(t, dsn, `WITH gone AS (DELETE FROM dw_uploads RETURNING version)
			INSERT INTO dw_garbage (version, queued_at) SELECT version, 0 FROM gone`)
	}}
	_, err := s.Put(ctx, store.PutRequest{Key: "k", Size: -1}, src)
	if !errors.Is(err, errUploadExpired) {
		t.Fatalf("put whose upload was swept: %v; want %v", err, errUploadExpired)
	}
	_, err = s.Stat(ctx, "k")
	if !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("stat after the failed put: %v; want not found", err)
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ChunkRows(ctx); err != nil || n != 0 {
		t.Fatalf("%d chunk rows left (%v); want 0", n, err)
	}
}

// TestSchemaSharedByNodes: stores opening the same empty database at once
// all get a working schema.
func TestSchemaSharedByNodes(t *testing.T) {
	dsn := pgtest.Shared(t).CreateDatabase(t, "")
	ctx := testContext(t)
	const nodes = 4
	stores := make([]*Store, nodes)
	for i := range stores {
		s, err := Open(ctx, Config{Name: fmt.Sprint("node", i), DSN: dsn, ChunkSize: testChunkSize})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Put(ctx, store.PutRequest{Key: fmt.Sprint("k", i), Size: -1}, strings.NewReader("v"))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	if n, err := stores[0].Count(ctx, "k"); err != nil || n != nodes {
		t.Fatalf("count: %d, %v; want %d", n, err, nodes)
	}
}

// TestReaderCloseEarly: readers closed with much left to read cancel their
// query instead of reading it all, and leak no connection; one whose Next
// context has ended fails with context.Canceled and stays usable.
func TestReaderCloseEarly(t *testing.T) {
	const chunkSize = 64 << 10
	s, dsn := openTest(t, chunkSize, defaultTuning)
	ctx := testContext(t)
	data := bytes.Repeat([]byte("abcdefgh"), 3*drainBytes/8) // well past drainBytes
	if _, err := s.Put(ctx, store.PutRequest{Key: "big", Size: -1}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 * DefaultMaxConns {
		_, _, _, r, err := s.Get(ctx, "big", int64(i), -1)
		if err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		if p, err := r.Next(ctx); err != nil || !bytes.Equal(p, data[i:chunkSize]) {
			t.Fatalf("read %d: %d bytes, %v", i, len(p), err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
	var backends int
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&backends); err != nil {
		t.Fatal(err)
	}
	if backends > DefaultMaxConns {
		t.Fatalf("%d backends serve the store; its pool holds at most %d", backends, DefaultMaxConns)
	}
	// The cancelled connections went back to the pool healthy: one Get at
	// a time needs one connection (the collector may have taken another).
	if n := s.pool.Stat().NewConnsCount(); n > 3 {
		t.Fatalf("the pool made %d connections for %d readers closed one after another; early closes lose their connection", n, 3*DefaultMaxConns)
	}

	// A Next whose context has ended.
	_, _, _, r, err := s.Get(ctx, "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = r.Next(rctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("next with an ended context: %v; want context.Canceled", err)
	}
	if got := readAllReader(t, r); !bytes.Equal(got, data) {
		t.Fatalf("after a cancelled Next the reader read %d bytes; want %d", len(got), len(data))
	}
	if _, err := s.Stat(ctx, "big"); err != nil {
		t.Fatalf("stat after early closes: %v", err)
	}
}

// readAllReader reads r to io.EOF and closes it.
func readAllReader(t *testing.T, r store.Reader) []byte {
	t.Helper()
	defer r.Close()
	ctx := testContext(t)
	var out []byte
	for {
		p, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(out), err)
		}
		out = append(out, p...)
	}
}

// TestPoolExhausted: with every connection held by open readers, a call
// fails with sdk.ErrBackpressure and a retry hint after the acquire wait,
// or at its deadline if that comes first; once a reader closes, calls work
// again.
func TestPoolExhausted(t *testing.T) {
	dsn := pgtest.Shared(t).CreateDatabase(t, "")
	tune := defaultTuning
	tune.acquireWait = 300 * time.Millisecond
	s, err := open(context.Background(), Config{Name: "small", DSN: dsn + "&pool_max_conns=2", ChunkSize: testChunkSize}, tune)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := testContext(t)
	data := bytes.Repeat([]byte("z"), 2*testChunkSize)
	if _, err := s.Put(ctx, store.PutRequest{Key: "k", Size: -1}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	var readers []store.Reader
	for range 2 {
		_, _, _, r, err := s.Get(ctx, "k", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, r)
	}
	wantBackpressure := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, sdk.ErrBackpressure) {
			t.Fatalf("%s with every connection taken: %v; want sdk.ErrBackpressure", what, err)
		}
		if d, ok := sdk.RetryAfter(err); !ok || d != RetryAfter {
			t.Fatalf("%s: retry hint %v, %v; want %v", what, d, ok, RetryAfter)
		}
	}
	// Under a context without an end soon: the acquire wait ends it.
	_, err = s.Stat(ctx, "k")
	wantBackpressure("stat", err)
	_, _, _, _, err = s.Get(ctx, "k", 0, -1)
	wantBackpressure("get", err)
	// Under a deadline shorter than the wait.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = s.Stat(short, "k")
	cancel()
	wantBackpressure("stat with a short deadline", err)

	if got := readAllReader(t, readers[0]); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes; want %d", len(got), len(data))
	}
	if _, err := s.Stat(ctx, "k"); err != nil {
		t.Fatalf("stat after a reader finished: %v", err)
	}
	_ = readers[1].Close()
}

// slowReader returns bytes forever, a little at a time, as a client
// uploading slowly.
type slowReader struct{}

func (slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	n := min(len(p), 4<<10)
	clear(p[:n])
	return n, nil
}

// TestCloseEndsCallsInProgress: Close does not wait for an upload in
// progress to end on its own: the upload fails with sdk.ErrUnavailable,
// and every connection is closed.
func TestCloseEndsCallsInProgress(t *testing.T) {
	s, dsn := openTest(t, testChunkSize, defaultTuning)
	ctx := testContext(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	putErr := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, store.PutRequest{Key: "endless", Size: -1}, slowReader{})
		putErr <- err
	}()
	// Wait until the upload is under way.
	for {
		var n int64
		if err := s.withConn(ctx, "count uploads", func(ctx context.Context, conn *pgx.Conn) error {
			return conn.QueryRow(ctx, `SELECT count(*) FROM dw_uploads`).Scan(&n)
		}); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-putErr:
		wantUnavailable(t, "put in progress at close", err)
	case <-ctx.Done():
		t.Fatal("the upload in progress went on after Close")
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for { // the server notices closed connections a moment later
		var backends int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&backends); err != nil {
			t.Fatal(err)
		}
		if backends == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d backends still serve the closed store", backends)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
