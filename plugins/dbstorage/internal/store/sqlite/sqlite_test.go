package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store/storetest"
	"github.com/datawarehouse/dw/plugins/internal/tmpfstest"
	"github.com/datawarehouse/dw/sdk/v6"
)

var _ storetest.Inspector = (*Store)(nil)

// helperEnv names the database file a re-run of the test binary writes to
// as the process killed in TestKillDuringPut.
const helperEnv = "DW_SQLITE_TEST_HELPER_PATH"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(killHelper(path))
	}
	if path := os.Getenv(concurrentHelperEnv); path != "" {
		os.Exit(concurrentKillHelper(path))
	}
	goleak.VerifyTestMain(m)
}

// testChunkSize keeps multi-chunk objects small in tests.
const testChunkSize = 16 << 10

// openTest opens a store on a new file in a temporary folder.
func openTest(tb testing.TB, chunkSize int) (*Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "db", "objects.sqlite")
	return openAt(tb, path, chunkSize), path
}

// openAt opens the store at path; the caller closes it.
func openAt(tb testing.TB, path string, chunkSize int) *Store {
	tb.Helper()
	s, err := Open(context.Background(), Config{Name: "test", Path: path, ChunkSize: chunkSize})
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	return s
}

func closeStore(tb testing.TB, s *Store) {
	tb.Helper()
	if err := s.Close(); err != nil {
		tb.Fatalf("close: %v", err)
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Strategy {
		s, _ := openTest(t, testChunkSize)
		return s
	})
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mustPut(tb testing.TB, s *Store, key string, data []byte) store.Object {
	tb.Helper()
	obj, err := s.Put(context.Background(), store.PutRequest{Key: key, Size: int64(len(data))}, bytes.NewReader(data))
	if err != nil {
		tb.Fatalf("put %q: %v", key, err)
	}
	return obj
}

// readRange reads [offset, offset+length) of key whole.
func readRange(tb testing.TB, s *Store, key string, offset, length int64) ([]byte, error) {
	tb.Helper()
	ctx := context.Background()
	_, _, _, r, err := s.Get(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []byte
	for {
		p, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, p...)
	}
}

func TestOpenConfig(t *testing.T) {
	dir := t.TempDir()
	bad := []Config{
		{Path: "relative/objects.sqlite"},
		{Path: filepath.Join(dir, "a?b.sqlite")},
		{Path: filepath.Join(dir, "x.sqlite"), ChunkSize: 100},
		{Path: filepath.Join(dir, "x.sqlite"), ChunkSize: store.MaxChunkSize + 1},
		{Path: filepath.Join(dir, "x.sqlite"), ChunkSize: -1},
		{Path: filepath.Join(dir, "x.sqlite"), MaxReaders: -1},
	}
	for _, cfg := range bad {
		s, err := Open(context.Background(), cfg)
		if err == nil {
			_ = s.Close()
		}
		if !errors.Is(err, sdk.ErrInvalidSettings) {
			t.Errorf("Open(%+v): %v; want ErrInvalidSettings", cfg, err)
		}
	}
}

func TestOpenCreatesPrivateFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "objects.sqlite")
	s := openAt(t, path, 0)
	defer closeStore(t, s)
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Fatalf("folder mode %o; want 700", perm)
	}
	if s.ChunkSize() != store.DefaultChunkSize {
		t.Fatalf("default chunk size %d; want %d", s.ChunkSize(), store.DefaultChunkSize)
	}
}

func TestSecondOpenFails(t *testing.T) {
	s, path := openTest(t, testChunkSize)
	s2, err := Open(context.Background(), Config{Path: path})
	if err == nil {
		_ = s2.Close()
		t.Fatal("second open of the same file succeeded")
	}
	if !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open: %v; want it to say the file is in use", err)
	}
	closeStore(t, s)
	// Once closed, the file can be opened again.
	closeStore(t, openAt(t, path, testChunkSize))
}

func TestReopenKeepsObjects(t *testing.T) {
	s, path := openTest(t, testChunkSize)
	data := pattern(3*testChunkSize + 5)
	obj := mustPut(t, s, "k", data)
	mustPut(t, s, "empty", nil)
	closeStore(t, s)

	s = openAt(t, path, testChunkSize)
	defer closeStore(t, s)
	got, err := s.Stat(context.Background(), "k")
	if err != nil {
		t.Fatalf("stat after reopen: %v", err)
	}
	if got.SHA256 != obj.SHA256 || !got.CreatedAt.Equal(obj.CreatedAt) {
		t.Fatalf("after reopen: %+v; want %+v", got, obj)
	}
	back, err := readRange(t, s, "k", 0, -1)
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("read after reopen: %d bytes, %v", len(back), err)
	}
	if back, err := readRange(t, s, "empty", 0, -1); err != nil || len(back) != 0 {
		t.Fatalf("read of the empty object after reopen: %d bytes, %v", len(back), err)
	}
}

// Objects keep the chunk size they were written with when the configured
// one changes.
func TestChunkSizeChange(t *testing.T) {
	s, path := openTest(t, 4<<10)
	small := pattern(5*(4<<10) + 3)
	mustPut(t, s, "small-chunks", small)
	closeStore(t, s)

	s = openAt(t, path, 16<<10)
	defer closeStore(t, s)
	big := pattern(3*(16<<10) + 9)
	mustPut(t, s, "big-chunks", big)
	for _, c := range []struct {
		key  string
		data []byte
	}{{"small-chunks", small}, {"big-chunks", big}} {
		for _, off := range []int64{0, 4095, 4096, 9000, int64(len(c.data)) - 1} {
			back, err := readRange(t, s, c.key, off, -1)
			if err != nil || !bytes.Equal(back, c.data[off:]) {
				t.Fatalf("%s from %d: %d bytes, %v", c.key, off, len(back), err)
			}
		}
	}
	n, err := s.ChunkRows(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 6+4 {
		t.Fatalf("%d chunk rows; want 6 of 4 KiB and 4 of 16 KiB", n)
	}
}

// rawDB opens the file directly, to look at or damage rows.
func rawDB(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		tb.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

func exec1(tb testing.TB, db *sql.DB, q string, args ...any) {
	tb.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
}

// Get starts at the chunk holding the offset: a chunk before it may even be
// missing.
func TestGetReadsNothingBeforeOffset(t *testing.T) {
	s, path := openTest(t, testChunkSize)
	defer closeStore(t, s)
	data := pattern(4 * testChunkSize)
	mustPut(t, s, "k", data)
	db := rawDB(t, path)
	exec1(t, db, `DELETE FROM dw_chunks WHERE seq IN (0, 1)`)

	off := int64(2*testChunkSize + 10)
	back, err := readRange(t, s, "k", off, -1)
	if err != nil || !bytes.Equal(back, data[off:]) {
		t.Fatalf("read from chunk 2: %d bytes, %v", len(back), err)
	}
	// Reading from the start finds the damage instead of serving less.
	back, err = readRange(t, s, "k", 0, -1)
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("read over missing chunks: %d bytes, %v; want an error saying the database is damaged", len(back), err)
	}
}

func TestDamagedChunkDetected(t *testing.T) {
	s, path := openTest(t, testChunkSize)
	defer closeStore(t, s)
	mustPut(t, s, "k", pattern(3*testChunkSize))
	db := rawDB(t, path)
	exec1(t, db, `UPDATE dw_chunks SET data = substr(data, 1, 100) WHERE seq = 1`)
	if _, err := readRange(t, s, "k", 0, -1); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("read over a short chunk: %v; want an error saying the database is damaged", err)
	}
	exec1(t, db, `DELETE FROM dw_chunks WHERE seq = 2`)
	if _, err := readRange(t, s, "k", int64(2*testChunkSize), -1); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("read of a missing last chunk: %v; want an error saying the database is damaged", err)
	}
}

// Uploads left by a process that died are removed at Open, and the
// objects they were replacing are intact.
func TestOpenDropsLeftoverUploads(t *testing.T) {
	s, path := openTest(t, testChunkSize)
	data := pattern(2*testChunkSize + 1)
	mustPut(t, s, "k", data)
	closeStore(t, s)

	db := rawDB(t, path)
	exec1(t, db, `INSERT INTO dw_uploads (version, key, started_at, touched_at) VALUES ('dead', x'6b', 0, 0)`)
	for seq := range 5 {
		exec1(t, db, `INSERT INTO dw_chunks (version, seq, data) VALUES ('dead', ?, zeroblob(100))`, seq)
	}
	_ = db.Close()

	s = openAt(t, path, testChunkSize)
	defer closeStore(t, s)
	ctx := context.Background()
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ChunkRows(ctx); err != nil || n != 3 {
		t.Fatalf("chunk rows after open: %d, %v; want the object's 3", n, err)
	}
	if back, err := readRange(t, s, "k", 0, -1); err != nil || !bytes.Equal(back, data) {
		t.Fatalf("object after open: %d bytes, %v", len(back), err)
	}
}

// killHelper is the process TestKillDuringPut kills: it replaces "k" with
// data that stops coming after a few chunks, says so on stdout and waits.
func killHelper(path string) int {
	s, err := Open(context.Background(), Config{Path: path, ChunkSize: testChunkSize})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r := &stallingReader{n: 5 * testChunkSize}
	_, err = s.Put(context.Background(), store.PutRequest{Key: "k", Size: -1}, r)
	fmt.Fprintln(os.Stderr, "put returned:", err)
	return 3
}

// stallingReader serves n bytes, then reports on stdout that it stalls and
// blocks forever. When it stalls, every chunk before has been written.
type stallingReader struct{ n int }

func (r *stallingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		fmt.Println("stalled")
		select {}
	}
	k := min(len(p), r.n)
	for i := range p[:k] {
		p[i] = 0xAB
	}
	r.n -= k
	return k, nil
}

func TestKillDuringPut(t *testing.T) {
	s, path := openTest(t, testChunkSize)
	data := pattern(2*testChunkSize + 7)
	obj := mustPut(t, s, "k", data)
	closeStore(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "stalled\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper said %q, %v; want stalled", line, err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// The dead upload left its chunks behind...
	db := rawDB(t, path)
	var rows int64
	if err := db.QueryRow(`SELECT count(*) FROM dw_chunks`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 3+5 {
		t.Fatalf("%d chunk rows after the kill; want the object's 3 and the dead upload's 5", rows)
	}
	_ = db.Close()

	// ...which the next Open removes, leaving the object intact.
	s = openAt(t, path, testChunkSize)
	defer closeStore(t, s)
	got, err := s.Stat(ctx, "k")
	if err != nil || got.SHA256 != obj.SHA256 || !got.ModifiedAt.Equal(obj.ModifiedAt) {
		t.Fatalf("stat after the kill: %+v, %v; want %+v", got, err, obj)
	}
	if back, err := readRange(t, s, "k", 0, -1); err != nil || !bytes.Equal(back, data) {
		t.Fatalf("read after the kill: %d bytes, %v", len(back), err)
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ChunkRows(ctx); err != nil || n != 3 {
		t.Fatalf("chunk rows after open: %d, %v; want 3", n, err)
	}
}

// Durable commits run with synchronous=FULL, others with NORMAL.
func TestWriteSynchronous(t *testing.T) {
	s, _ := openTest(t, testChunkSize)
	defer closeStore(t, s)
	ctx := context.Background()
	for _, durable := range []bool{true, false, true} {
		var mode int
		err := s.write(ctx, durable, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&mode)
		})
		if err != nil {
			t.Fatal(err)
		}
		want := 1 // NORMAL
		if durable {
			want = 2 // FULL
		}
		if mode != want {
			t.Fatalf("durable %v: synchronous = %d; want %d", durable, mode, want)
		}
	}
	var mode string
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q, %v; want wal", mode, err)
	}
	var ps int
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA page_size").Scan(&ps); err != nil || ps != pageSize {
		t.Fatalf("page size %d, %v; want %d", ps, err, pageSize)
	}
	// Readers cannot write.
	if _, err := s.rdb.ExecContext(ctx, "DELETE FROM dw_objects"); err == nil {
		t.Fatal("a reader connection could write")
	}
}

// gateReader serves one chunk, then waits for release before the rest.
type gateReader struct {
	first   int
	rest    int
	stalled chan struct{}
	release chan struct{}
}

func (r *gateReader) Read(p []byte) (int, error) {
	if r.first > 0 {
		k := min(len(p), r.first)
		r.first -= k
		return k, nil
	}
	if r.stalled != nil {
		close(r.stalled)
		r.stalled = nil
		<-r.release
	}
	if r.rest == 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.rest)
	r.rest -= k
	return k, nil
}

// A Put waiting for its data holds no lock: other writes go on meanwhile.
func TestSlowUploadDoesNotBlockWriters(t *testing.T) {
	s, _ := openTest(t, testChunkSize)
	defer closeStore(t, s)
	mustPut(t, s, "other", pattern(10))
	stalled := make(chan struct{})
	gate := &gateReader{first: 2 * testChunkSize, rest: 10, stalled: stalled, release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := s.Put(context.Background(), store.PutRequest{Key: "slow", Size: -1}, gate)
		done <- err
	}()
	<-stalled
	// A deadline only so that a lock held by the stalled upload fails the
	// test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Put(ctx, store.PutRequest{Key: "fast", Size: -1}, bytes.NewReader(pattern(3*testChunkSize))); err != nil {
		t.Fatalf("put while another upload stalls: %v", err)
	}
	if _, err := s.Delete(ctx, "other"); err != nil {
		t.Fatalf("delete while an upload stalls: %v", err)
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatalf("garbage collection while an upload stalls: %v", err)
	}
	close(gate.release)
	if err := <-done; err != nil {
		t.Fatalf("stalled put: %v", err)
	}
	obj, err := s.Stat(ctx, "slow")
	if err != nil || obj.Size != 2*testChunkSize+10 {
		t.Fatalf("stat of the slow upload: %+v, %v", obj, err)
	}
}

// Readers wait for a free connection under their context.
func TestMaxReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "objects.sqlite")
	s, err := Open(context.Background(), Config{Path: path, ChunkSize: testChunkSize, MaxReaders: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(t, s)
	mustPut(t, s, "k", pattern(100))
	ctx := context.Background()
	var readers []store.Reader
	for range 2 {
		_, _, _, r, err := s.Get(ctx, "k", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, r)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Stat(short, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stat with every reader connection taken: %v; want DeadlineExceeded", err)
	}
	// Writes do not need a reader connection.
	mustPut(t, s, "k2", pattern(10))
	_ = readers[0].Close()
	if _, err := s.Stat(ctx, "k"); err != nil {
		t.Fatalf("stat after a reader closed: %v", err)
	}
	// A reader at its end gives its connection back before Close.
	if _, err := io.Copy(io.Discard, readerOf(ctx, readers[1])); err != nil {
		t.Fatal(err)
	}
	short2, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	_, _, _, r, err := s.Get(short2, "k", 0, -1)
	if err != nil {
		t.Fatalf("get after a reader reached its end: %v", err)
	}
	_ = r.Close()
	_ = readers[1].Close()
}

// readerOf adapts a store.Reader to io.Reader.
func readerOf(ctx context.Context, r store.Reader) io.Reader {
	return &ioReader{ctx: ctx, r: r}
}

type ioReader struct {
	ctx  context.Context
	r    store.Reader
	rest []byte
}

func (a *ioReader) Read(p []byte) (int, error) {
	for len(a.rest) == 0 {
		b, err := a.r.Next(a.ctx)
		if err != nil {
			return 0, err
		}
		a.rest = b
	}
	n := copy(p, a.rest)
	a.rest = a.rest[n:]
	return n, nil
}

// A 1 MiB-chunk round trip at the default size, with an object that is not
// a whole number of chunks.
func TestDefaultChunkSizeRoundTrip(t *testing.T) {
	s, _ := openTest(t, 0)
	defer closeStore(t, s)
	data := pattern(3*store.DefaultChunkSize + 12345)
	obj := mustPut(t, s, "big", data)
	if obj.SHA256 != hexSum(data) {
		t.Fatalf("sha256 %s; want %s", obj.SHA256, hexSum(data))
	}
	back, err := readRange(t, s, "big", store.DefaultChunkSize-1, 2*store.DefaultChunkSize+2)
	if err != nil || !bytes.Equal(back, data[store.DefaultChunkSize-1:3*store.DefaultChunkSize+1]) {
		t.Fatalf("range read: %d bytes, %v", len(back), err)
	}
}

// volumeMiB is the size of the tmpfs the full-disk tests fill.
const volumeMiB = 64

// waitWAL waits until the WAL of the store at path is at most limit
// bytes (the collector checkpoints in the background).
func waitWAL(tb testing.TB, path string, limit int64) {
	tb.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for fileSize(path+"-wal") > limit {
		if time.Now().After(deadline) {
			tb.Fatalf("the WAL stays at %d bytes (db %d bytes), want at most %d", fileSize(path+"-wal"), fileSize(path), limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fillVolume stores keep objects of 4 MiB and a filler file of fillerMiB,
// and returns the objects' data by key.
func fillVolume(tb testing.TB, s *Store, dir string, fillerMiB int64) map[string][]byte {
	tb.Helper()
	kept := map[string][]byte{}
	for i := range 4 {
		key := fmt.Sprintf("keep/%d", i)
		kept[key] = pattern(4<<20 + i)
		mustPut(tb, s, key, kept[key])
	}
	tmpfstest.Fill(tb, filepath.Join(dir, "filler"), fillerMiB<<20)
	return kept
}

func checkKept(tb testing.TB, s *Store, kept map[string][]byte) {
	tb.Helper()
	for key, want := range kept {
		got, err := readRange(tb, s, key, 0, -1)
		if err != nil || !bytes.Equal(got, want) {
			tb.Fatalf("read %s after the full disk: %d bytes, %v; want %d bytes", key, len(got), err, len(want))
		}
	}
}

// TestFullVolumeCostsTheFailedWriteOnly: on a 64 MiB volume, an upload of
// unknown size larger than the free space fails with a clear error;
// then the WAL goes back to zero, small writes succeed, the earlier
// objects read whole, an announced size that cannot fit is refused before
// anything is written, and a reopen on the still-tight volume reads and
// writes.
func TestFullVolumeCostsTheFailedWriteOnly(t *testing.T) {
	dir := tmpfstest.Mount(t, volumeMiB)
	path := filepath.Join(dir, "db", "objects.sqlite")
	s := openAt(t, path, store.DefaultChunkSize)
	kept := fillVolume(t, s, dir, 16)
	ctx := context.Background()

	_, err := s.Put(ctx, store.PutRequest{Key: "big", Size: -1}, io.LimitReader(zeros{}, 100<<20))
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "volume of "+filepath.Dir(path)) || !strings.Contains(err.Error(), "bytes free") {
		t.Fatalf("PUT of 100 MiB on a %d MiB volume: %v; want ErrUnavailable saying the volume is full", volumeMiB, err)
	}
	t.Logf("refused: %v", err)
	if sp, err := s.Space(ctx); err != nil || sp.WritesFailing == "" {
		t.Fatalf("Space after the refusal: %+v, %v; want WritesFailing", sp, err)
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	waitWAL(t, path, 0)
	mustPut(t, s, "small", []byte("after the full disk"))
	if sp, err := s.Space(ctx); err != nil || sp.WritesFailing != "" || sp.FreeBytes <= 0 {
		t.Fatalf("Space after a Put succeeded: %+v, %v", sp, err)
	}
	checkKept(t, s, kept)

	rows, _ := s.ChunkRows(ctx)
	_, err = s.Put(ctx, store.PutRequest{Key: "announced", Size: 100 << 20}, io.LimitReader(zeros{}, 100<<20))
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "write of 104857600 bytes") {
		t.Fatalf("PUT announcing 100 MiB: %v; want a refusal naming the size", err)
	}
	if after, _ := s.ChunkRows(ctx); after != rows {
		t.Fatalf("the refused announced PUT wrote %d chunks", after-rows)
	}

	closeStore(t, s)
	s = openAt(t, path, store.DefaultChunkSize)
	defer closeStore(t, s)
	checkKept(t, s, kept)
	mustPut(t, s, "after/reopen", pattern(3<<20))
	waitWAL(t, path, walCap)
}

// zeros reads zero bytes forever.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestSQLiteFullRecovers: with the Store's own check off, SQLite itself
// runs into ENOSPC. The write fails with ErrUnavailable, reads go on, a
// reopen on the full volume reads (writing nothing at open), and once
// space is freed the collector's retried checkpoint brings the WAL back
// to zero and writes work again.
func TestSQLiteFullRecovers(t *testing.T) {
	dir := tmpfstest.Mount(t, volumeMiB)
	path := filepath.Join(dir, "db", "objects.sqlite")
	s := openAt(t, path, store.DefaultChunkSize)
	s.noSpaceCheck = true
	kept := fillVolume(t, s, dir, 16)
	ctx := context.Background()

	_, err := s.Put(ctx, store.PutRequest{Key: "big", Size: -1}, io.LimitReader(zeros{}, 100<<20))
	if !errors.Is(err, sdk.ErrUnavailable) || !isFull(err) {
		t.Fatalf("PUT of 100 MiB on a %d MiB volume: %v; want ErrUnavailable with SQLITE_FULL", volumeMiB, err)
	}
	t.Logf("failed: %v; wal %d bytes, db %d bytes", err, fileSize(path+"-wal"), fileSize(path))
	checkKept(t, s, kept)
	if sp, err := s.Space(ctx); err != nil || sp.WritesFailing == "" {
		t.Fatalf("Space: %+v, %v; want WritesFailing", sp, err)
	}
	closeStore(t, s)

	// Reopen on the volume still full: reads work.
	s = openAt(t, path, store.DefaultChunkSize)
	defer closeStore(t, s)
	checkKept(t, s, kept)
	t.Logf("reopened full: wal %d bytes, db %d bytes", fileSize(path+"-wal"), fileSize(path))

	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	s.gc.wantCheckpoint()
	waitWAL(t, path, 0)
	mustPut(t, s, "small", []byte("after space was freed"))
	checkKept(t, s, kept)
}
