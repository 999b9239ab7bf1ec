package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
)

// holdWriter takes the one writer connection, so that durable writes queue
// up behind it; the returned func gives it back.
func holdWriter(tb testing.TB, s *Store) (release func()) {
	tb.Helper()
	conn, err := s.wdb.Conn(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = conn.Close() }) }
	tb.Cleanup(release)
	return release
}

// waitPending waits until n durable writes are queued.
func waitPending(tb testing.TB, s *Store, n int) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for s.commits.pending() < n {
		if time.Now().After(deadline) {
			tb.Fatalf("%d durable writes queued; want %d", s.commits.pending(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// smallData is the content of key's small object number i.
func smallData(key string, i int) []byte {
	return []byte(strings.Repeat(fmt.Sprintf("%s#%d;", key, i), 1+i%7))
}

// TestGroupCommitIsolatesFailures: Puts of the same and of different keys
// and a Delete, queued together, commit in one transaction; the one Put
// whose data fails its SHA-256 check fails alone, leaving the object it
// would have replaced intact.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	s, _ := openTest(t, testChunkSize)
	defer closeStore(t, s)
	ctx := testContext(t)
	sameOld := mustPut(t, s, "same", smallData("same", 0))
	existing := mustPut(t, s, "existing", smallData("existing", 0))
	mustPut(t, s, "gone", smallData("gone", 0))

	release := holdWriter(t, s)
	groups, items := s.commits.groups.Load(), s.commits.items.Load()
	const sameKey, otherKeys = 8, 12
	type result struct {
		key  string
		data []byte
		obj  store.Object
		err  error
	}
	results := make(chan result, sameKey+otherKeys+1)
	put := func(key string, data []byte, req store.PutRequest) {
		obj, err := s.Put(ctx, req, bytes.NewReader(data))
		results <- result{key, data, obj, err}
	}
	for i := range sameKey {
		data := smallData("same", i+1)
		go put("same", data, store.PutRequest{Key: "same", Size: int64(len(data)), SHA256: hexSum(data)})
	}
	for i := range otherKeys {
		key := fmt.Sprintf("other/%d", i)
		data := smallData(key, 1)
		// Sizes unknown, announced and checked, to take every path.
		req := store.PutRequest{Key: key, Size: -1}
		if i%2 == 1 {
			req.Size, req.SHA256 = int64(len(data)), hexSum(data)
		}
		go put(key, data, req)
	}
	bad := smallData("existing", 1)
	go put("existing", bad, store.PutRequest{Key: "existing", Size: int64(len(bad)), SHA256: hexSum([]byte("something else"))})
	deleted := make(chan error, 1)
	go func() {
		_, err := s.Delete(ctx, "gone")
		deleted <- err
	}()
	waitPending(t, s, sameKey+otherKeys+2)
	release()

	var sameData [][]byte
	for range sameKey + otherKeys + 1 {
		r := <-results
		switch {
		case r.key == "existing":
			if !errors.Is(r.err, sdk.ErrInvalidArgument) || !strings.Contains(r.err.Error(), "sha256") {
				t.Errorf("put with a wrong sha256: %v; want an invalid argument naming the sha256", r.err)
			}
		case r.err != nil:
			t.Errorf("put %q: %v", r.key, r.err)
		case r.obj.SHA256 != hexSum(r.data) || r.obj.Size != int64(len(r.data)):
			t.Errorf("put %q returned %+v for %d bytes", r.key, r.obj, len(r.data))
		case r.key == "same":
			sameData = append(sameData, r.data)
			if !r.obj.CreatedAt.Equal(sameOld.CreatedAt) {
				t.Errorf("replacement of %q: created %v; want the first put's %v", r.key, r.obj.CreatedAt, sameOld.CreatedAt)
			}
		}
	}
	if err := <-deleted; err != nil {
		t.Fatalf("delete: %v", err)
	}
	if t.Failed() {
		t.FailNow()
	}
	if g, n := s.commits.groups.Load()-groups, s.commits.items.Load()-items; g != 1 || n != sameKey+otherKeys+2 {
		t.Fatalf("%d group commits of %d writes; want 1 of %d", g, n, sameKey+otherKeys+2)
	}

	got, err := s.Stat(ctx, "existing")
	if err != nil {
		t.Fatal(err)
	}
	if got.SHA256 != existing.SHA256 || !got.ModifiedAt.Equal(existing.ModifiedAt) {
		t.Fatalf("after the failed put: %+v; want %+v", got, existing)
	}
	back, err := readRange(t, s, "same", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range sameData {
		found = found || bytes.Equal(back, d)
	}
	if !found {
		t.Fatalf("%q reads %q: not one of its puts", "same", back)
	}
	for i := range otherKeys {
		key := fmt.Sprintf("other/%d", i)
		if back, err := readRange(t, s, key, 0, -1); err != nil || !bytes.Equal(back, smallData(key, 1)) {
			t.Fatalf("%q reads %q, %v", key, back, err)
		}
	}
	if _, err := s.Stat(ctx, "gone"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("stat of the deleted key: %v; want not found", err)
	}
	// Every replaced or deleted version was handed to garbage collection.
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ChunkRows(ctx); err != nil || n != 2+otherKeys {
		t.Fatalf("%d chunk rows, %v; want %d, one per object", n, err, 2+otherKeys)
	}
}

// TestGroupCommitSavepoints: a write that fails after changing rows, with
// a constraint error of the database, has its changes undone; the writes
// before and after it in the group are committed.
func TestGroupCommitSavepoints(t *testing.T) {
	s, _ := openTest(t, testChunkSize)
	defer closeStore(t, s)
	ctx := testContext(t)
	upload := func(version string) func(context.Context, *sql.Tx) error {
		return func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO dw_uploads (version, key, started_at, touched_at) VALUES (?, x'6b', 0, 0)`, version)
			return err
		}
	}
	release := holdWriter(t, s)
	fns := []func(context.Context, *sql.Tx) error{
		upload("a"),
		func(ctx context.Context, tx *sql.Tx) error {
			if err := upload("b")(ctx, tx); err != nil {
				return err
			}
			return upload("a")(ctx, tx) // a duplicate key
		},
		upload("c"),
	}
	errs := make([]chan error, len(fns))
	for i, fn := range fns {
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- s.commits.do(ctx, 0, fn) }()
		waitPending(t, s, i+1) // in this order
	}
	release()
	for i, want := range []bool{true, false, true} {
		if err := <-errs[i]; (err == nil) != want {
			t.Errorf("write %d: %v; want success %v", i, err, want)
		}
	}
	var versions []string
	rows, err := s.rdb.QueryContext(ctx, `SELECT version FROM dw_uploads ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(versions, ","); got != "a,c" {
		t.Fatalf("uploads rows %q; want a,c (b undone with its write)", got)
	}
}

// TestGroupCommitResultsAfterCommit: no Put of a group returns, and none of
// its objects is visible, before the group's COMMIT; when the commit fails,
// every Put of the group fails and nothing of them is stored.
func TestGroupCommitResultsAfterCommit(t *testing.T) {
	s, _ := openTest(t, testChunkSize)
	defer closeStore(t, s)
	ctx := testContext(t)
	mustPut(t, s, "k/0", smallData("k/0", 0)) // replaced in round 1
	const n = 10
	errBoom := errors.New("commit refused by the test")
	// Round 1 commits; round 2 replaces the same keys and its commit fails.
	for round := 1; round <= 2; round++ {
		var returned, hookRuns atomic.Int64
		s.commits.beforeCommit = func() error {
			hookRuns.Add(1)
			if r := returned.Load(); r != 0 {
				t.Errorf("round %d: %d puts returned before their commit", round, r)
			}
			for i := range n {
				key := fmt.Sprintf("k/%d", i)
				if obj, err := s.Stat(ctx, key); err == nil && obj.SHA256 == hexSum(smallData(key, round)) {
					t.Errorf("round %d: %q is visible before its commit", round, key)
				}
			}
			if round == 2 {
				return errBoom
			}
			return nil
		}
		release := holdWriter(t, s)
		errs := make(chan error, n)
		for i := range n {
			go func() {
				key := fmt.Sprintf("k/%d", i)
				data := smallData(key, round)
				_, err := s.Put(ctx, store.PutRequest{Key: key, Size: int64(len(data))}, bytes.NewReader(data))
				returned.Add(1)
				errs <- err
			}()
		}
		waitPending(t, s, n)
		release()
		for range n {
			err := <-errs
			if round == 2 && !errors.Is(err, errBoom) {
				t.Fatalf("put in a group whose commit failed: %v; want %v", err, errBoom)
			}
			if round == 1 && err != nil {
				t.Fatalf("put: %v", err)
			}
		}
		s.commits.beforeCommit = nil
		if hookRuns.Load() != 1 {
			t.Fatalf("round %d: %d group commits; want 1", round, hookRuns.Load())
		}
		for i := range n {
			key := fmt.Sprintf("k/%d", i)
			if back, err := readRange(t, s, key, 0, -1); err != nil || !bytes.Equal(back, smallData(key, 1)) {
				t.Fatalf("round %d: %q reads %q, %v; want round 1's data", round, key, back, err)
			}
		}
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if rows, err := s.ChunkRows(ctx); err != nil || rows != n {
		t.Fatalf("%d chunk rows, %v; want %d", rows, err, n)
	}
}

// TestGroupCommitWithdraw: a Put whose context ends while it waits for the
// writer returns at once with the context's error and is never committed.
func TestGroupCommitWithdraw(t *testing.T) {
	s, _ := openTest(t, testChunkSize)
	defer closeStore(t, s)
	ctx := testContext(t)
	release := holdWriter(t, s)
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := s.Put(pctx, store.PutRequest{Key: "k", Size: 1}, strings.NewReader("x"))
		done <- err
	}()
	waitPending(t, s, 1)
	cancel()
	// It returns while the writer is still held.
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("put withdrawn from the queue: %v; want context.Canceled", err)
	}
	release()
	mustPut(t, s, "after", []byte("y")) // the committer goes on
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("stat of the withdrawn put: %v; want not found", err)
	}
}

// A closed store fails durable writes at once.
func TestGroupCommitAfterClose(t *testing.T) {
	s, _ := openTest(t, testChunkSize)
	closeStore(t, s)
	err := s.commits.do(context.Background(), 0, func(context.Context, *sql.Tx) error { return nil })
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("durable write after close: %v; want sdk.ErrUnavailable", err)
	}
}

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

// concurrentHelperEnv names the database file a re-run of the test binary
// fills with concurrent small Puts as the process killed in
// TestKillDuringConcurrentPuts.
const concurrentHelperEnv = "DW_SQLITE_TEST_CONCURRENT_HELPER_PATH"

// concurrentKillHelper puts small objects from 16 goroutines until it is
// killed, writing "acked <key>" on stdout after each Put returns.
func concurrentKillHelper(path string) int {
	s, err := Open(context.Background(), Config{Path: path, ChunkSize: testChunkSize})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				key := fmt.Sprintf("c/%d/%d", g, i)
				data := smallData(key, i)
				if _, err := s.Put(context.Background(), store.PutRequest{Key: key, Size: int64(len(data))}, bytes.NewReader(data)); err != nil {
					fmt.Fprintln(os.Stderr, "put:", err)
					return
				}
				mu.Lock()
				fmt.Printf("acked %s %d\n", key, i)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return 3
}

// TestKillDuringConcurrentPuts: every small Put acknowledged before a
// kill -9 is there after reopening, with its data.
func TestKillDuringConcurrentPuts(t *testing.T) {
	s, path := openTest(t, testChunkSize)
	closeStore(t, s)
	ctx := testContext(t)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), concurrentHelperEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type ack struct {
		key string
		i   int
	}
	var acked []ack
	lines := bufio.NewReader(out)
	parse := func(line string) {
		var a ack
		if _, err := fmt.Sscanf(line, "acked %s %d\n", &a.key, &a.i); err != nil {
			t.Errorf("helper said %q: %v", line, err)
			return
		}
		acked = append(acked, a)
	}
	for len(acked) < 500 {
		line, err := lines.ReadString('\n')
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("helper output ended after %d acks: %v", len(acked), err)
		}
		parse(line)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL, mid-Puts
		t.Fatal(err)
	}
	// Acks already written count too; a line cut by the kill does not.
	for {
		line, err := lines.ReadString('\n')
		if err != nil {
			break
		}
		parse(line)
	}
	_ = cmd.Wait()

	s = openAt(t, path, testChunkSize)
	defer closeStore(t, s)
	for _, a := range acked {
		want := smallData(a.key, a.i)
		back, err := readRange(t, s, a.key, 0, -1)
		if err != nil || !bytes.Equal(back, want) {
			t.Fatalf("acknowledged %q after the kill: %q, %v; want %q", a.key, back, err, want)
		}
	}
	n, err := s.Count(ctx, "c/")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if rows, err := s.ChunkRows(ctx); err != nil || rows != n {
		t.Fatalf("%d chunk rows, %v; want one per object (%d)", rows, err, n)
	}
	t.Logf("%d puts acknowledged before the kill, %d objects after it", len(acked), n)
}

// Group commits run with synchronous=FULL, and the writer goes back to
// NORMAL after them.
func TestGroupCommitSynchronous(t *testing.T) {
	s, _ := openTest(t, testChunkSize)
	defer closeStore(t, s)
	ctx := testContext(t)
	for range 2 {
		var mode int
		err := s.commits.do(ctx, 0, func(ctx context.Context, tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&mode)
		})
		if err != nil || mode != 2 {
			t.Fatalf("synchronous in a group commit: %d, %v; want 2 (FULL)", mode, err)
		}
		err = s.write(ctx, false, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&mode)
		})
		if err != nil || mode != 1 {
			t.Fatalf("synchronous after a group commit: %d, %v; want 1 (NORMAL)", mode, err)
		}
	}
}
