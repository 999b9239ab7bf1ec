// Package storetest is the conformance suite of the dbstorage storage
// strategies: every driver runs the same subtests with Run against a real
// database, so all drivers keep the same contract (store.Strategy).
//
// A driver also implements Inspector, in its own package, so that the suite
// can wait for garbage collection and count chunk rows: that is how it
// proves that failed, aborted and replaced uploads leave no orphan chunks.
// Without Inspector those checks are skipped and the chunk size is assumed
// to be store.DefaultChunkSize.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
)

// Inspector is implemented by drivers so that the suite can look inside.
type Inspector interface {
	// ChunkSize is the chunk size the driver writes new objects with.
	ChunkSize() int
	// ChunkRows returns how many chunk rows the database holds, of every
	// version: live objects, uploads in progress and garbage.
	ChunkRows(ctx context.Context) (int64, error)
	// WaitIdle returns once garbage collection has removed every chunk of
	// the versions that were garbage when it was called (and the ones that
	// became garbage meanwhile), or when ctx ends.
	WaitIdle(ctx context.Context) error
}

// Open returns a new, empty strategy for one subtest. The suite closes it at
// the end of the subtest; anything else the driver needs to release, open
// registers with t.Cleanup.
type Open func(t *testing.T) store.Strategy

// Run runs the conformance suite against the strategies open returns. Each
// subtest opens its own strategy; subtests run one after the other.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"PutChecks", testPutChecks},
		{"PutFailingReader", testPutFailingReader},
		{"PutCancelled", testPutCancelled},
		{"Ranges", testRanges},
		{"SnapshotAcrossReplace", testSnapshotAcrossReplace},
		{"SnapshotAcrossDelete", testSnapshotAcrossDelete},
		{"NotFoundAndDelete", testNotFoundAndDelete},
		{"Times", testTimes},
		{"List", testList},
		{"ListArguments", testListArguments},
		{"InvalidKeys", testInvalidKeys},
		{"ReaderClose", testReaderClose},
		{"CloseWithOpenReader", testCloseWithOpenReader},
		{"Ping", testPing},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			h := &harness{s: s, cs: store.DefaultChunkSize}
			if in, ok := s.(Inspector); ok {
				h.in = in
				h.cs = in.ChunkSize()
			}
			t.Cleanup(func() {
				if !h.closed {
					if err := s.Close(); err != nil {
						t.Errorf("close strategy: %v", err)
					}
				}
			})
			tc.fn(t, h)
		})
	}
}

// harness is one subtest's strategy with what the suite knows of it.
type harness struct {
	s      store.Strategy
	in     Inspector
	cs     int // chunk size
	closed bool
}

// ctx returns a context for one subtest's calls, ended at its cleanup.
func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// content returns n pseudo-random bytes from seed.
func content(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// put stores data under key, announcing its size and digest, and checks the
// returned metadata.
func (h *harness) put(t testing.TB, ctx context.Context, key string, data []byte) store.Object {
	t.Helper()
	obj, err := h.s.Put(ctx, store.PutRequest{Key: key, Size: int64(len(data)), SHA256: sum(data), ContentType: "application/octet-stream"}, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("put %q (%d bytes): %v", key, len(data), err)
	}
	if obj.Key != key || obj.Size != int64(len(data)) || obj.SHA256 != sum(data) {
		t.Fatalf("put %q returned key %q size %d sha256 %s; want size %d sha256 %s", key, obj.Key, obj.Size, obj.SHA256, len(data), sum(data))
	}
	return obj
}

// get reads [offset, offset+length) of key whole, checking that no piece is
// longer than a chunk.
func (h *harness) get(t testing.TB, ctx context.Context, key string, offset, length int64) (store.Object, int64, int64, []byte) {
	t.Helper()
	obj, off, n, r, err := h.s.Get(ctx, key, offset, length)
	if err != nil {
		t.Fatalf("get %q [%d,+%d): %v", key, offset, length, err)
	}
	data := h.readAll(t, ctx, r)
	if int64(len(data)) != n {
		t.Fatalf("get %q [%d,+%d): served length %d but read %d bytes", key, offset, length, n, len(data))
	}
	return obj, off, n, data
}

// readAll reads r to io.EOF and closes it.
func (h *harness) readAll(t testing.TB, ctx context.Context, r store.Reader) []byte {
	t.Helper()
	defer func() {
		if err := r.Close(); err != nil {
			t.Errorf("close reader: %v", err)
		}
	}()
	var out []byte
	for {
		p, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(out), err)
		}
		if len(p) > h.cs {
			t.Fatalf("reader returned a piece of %d bytes, more than the chunk size %d", len(p), h.cs)
		}
		out = append(out, p...)
	}
}

// wantErr fails t unless err wraps target.
func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v; want one wrapping %v", what, err, target)
	}
}

// checkChunks waits for garbage collection and checks that the database
// holds exactly the chunks of the stored objects: no orphans of failed
// uploads, no leftovers of replaced or deleted versions.
func (h *harness) checkChunks(t testing.TB, ctx context.Context) {
	t.Helper()
	if h.in == nil {
		t.Log("driver does not implement storetest.Inspector; orphan chunks not checked")
		return
	}
	if err := h.in.WaitIdle(ctx); err != nil {
		t.Fatalf("wait for garbage collection: %v", err)
	}
	var want int64
	after := ""
	for {
		objs, err := h.s.List(ctx, store.ListQuery{After: after, Limit: 100})
		if err != nil {
			t.Fatalf("list all: %v", err)
		}
		for _, o := range objs {
			want += store.ChunkCount(o.Size, int64(h.cs))
		}
		if len(objs) < 100 {
			break
		}
		after = objs[len(objs)-1].Key
	}
	got, err := h.in.ChunkRows(ctx)
	if err != nil {
		t.Fatalf("count chunk rows: %v", err)
	}
	if got != want {
		t.Fatalf("database holds %d chunk rows; the stored objects have %d", got, want)
	}
}

func testRoundTrip(t *testing.T, h *harness) {
	ctx := testContext(t)
	cs := h.cs
	sizes := []int{0, 1, cs - 1, cs, cs + 1, 3*cs + 17}
	for i, n := range sizes {
		key := fmt.Sprintf("round/%d", n)
		data := content(uint64(i+1), n)
		req := store.PutRequest{
			Key:         key,
			ContentType: "text/plain; charset=utf-8",
			Metadata:    map[string]string{"owner": "zoë", "n": fmt.Sprint(n), "empty": ""},
			Size:        -1,
		}
		// Alternate unknown and announced sizes, with and without a digest.
		if i%2 == 1 {
			req.Size = int64(n)
			req.SHA256 = sum(data)
		}
		before := time.Now()
		obj, err := h.s.Put(ctx, req, bytes.NewReader(data))
		if err != nil {
			t.Fatalf("put %d bytes: %v", n, err)
		}
		if obj.Key != key || obj.Size != int64(n) || obj.SHA256 != sum(data) || obj.ContentType != req.ContentType {
			t.Fatalf("put %d bytes returned %+v", n, obj)
		}
		if !maps(obj.Metadata, req.Metadata) {
			t.Fatalf("put %d bytes returned metadata %v; want %v", n, obj.Metadata, req.Metadata)
		}
		if obj.CreatedAt.IsZero() || !obj.CreatedAt.Equal(obj.ModifiedAt) {
			t.Fatalf("put %d bytes: created %v modified %v; want equal and set", n, obj.CreatedAt, obj.ModifiedAt)
		}
		if obj.CreatedAt.Before(before.Add(-time.Minute)) || obj.CreatedAt.After(time.Now().Add(time.Minute)) {
			t.Fatalf("put %d bytes: created %v is not about now (%v)", n, obj.CreatedAt, before)
		}
		st, err := h.s.Stat(ctx, key)
		if err != nil {
			t.Fatalf("stat %d bytes: %v", n, err)
		}
		sameObject(t, "stat after put", st, obj)

		got, off, length, back := h.get(t, ctx, key, 0, -1)
		sameObject(t, "get after put", got, obj)
		if off != 0 || length != int64(n) {
			t.Fatalf("get %d bytes served [%d,+%d)", n, off, length)
		}
		if sum(back) != sum(data) {
			t.Fatalf("get %d bytes: read back %d bytes with sha256 %s; want %s", n, len(back), sum(back), sum(data))
		}
	}
	// Metadata of none round trips as none.
	obj, err := h.s.Put(ctx, store.PutRequest{Key: "round/nometa", Size: -1}, strings.NewReader("x"))
	if err != nil {
		t.Fatalf("put without metadata: %v", err)
	}
	if len(obj.Metadata) != 0 || obj.ContentType != "" {
		t.Fatalf("put without metadata returned metadata %v content type %q", obj.Metadata, obj.ContentType)
	}
	h.checkChunks(t, ctx)
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sameObject fails t unless got and want describe the same object version.
func sameObject(t testing.TB, what string, got, want store.Object) {
	t.Helper()
	if got.Key != want.Key || got.Size != want.Size || got.SHA256 != want.SHA256 || got.ContentType != want.ContentType ||
		!maps(got.Metadata, want.Metadata) || !got.CreatedAt.Equal(want.CreatedAt) || !got.ModifiedAt.Equal(want.ModifiedAt) {
		t.Fatalf("%s: got %+v; want %+v", what, got, want)
	}
}

func testPutChecks(t *testing.T, h *harness) {
	ctx := testContext(t)
	cs := h.cs
	old := content(1, 2*cs+5)
	oldObj := h.put(t, ctx, "k", old)
	data := content(2, 2*cs+100)

	cases := []struct {
		name string
		req  store.PutRequest
	}{
		{"announced size too small", store.PutRequest{Key: "k", Size: int64(len(data) - 1)}},
		{"announced size too small by a chunk", store.PutRequest{Key: "k", Size: int64(len(data) - cs)}},
		{"announced size zero", store.PutRequest{Key: "k", Size: 0}},
		{"announced size too large", store.PutRequest{Key: "k", Size: int64(len(data) + 1)}},
		{"sha256 mismatch", store.PutRequest{Key: "k", Size: -1, SHA256: sum(old)}},
		{"sha256 mismatch with size", store.PutRequest{Key: "k", Size: int64(len(data)), SHA256: sum(old)}},
		{"sha256 malformed", store.PutRequest{Key: "k", Size: -1, SHA256: "abc"}},
		{"sha256 upper case", store.PutRequest{Key: "k", Size: -1, SHA256: strings.ToUpper(sum(data))}},
		{"size below -1", store.PutRequest{Key: "k", Size: -2}},
	}
	for _, c := range cases {
		_, err := h.s.Put(ctx, c.req, bytes.NewReader(data))
		wantErr(t, c.name, err, sdk.ErrInvalidArgument)
		got, err := h.s.Stat(ctx, "k")
		if err != nil {
			t.Fatalf("%s: stat after the failed put: %v", c.name, err)
		}
		sameObject(t, c.name+": stat after the failed put", got, oldObj)
	}
	_, _, _, back := h.get(t, ctx, "k", 0, -1)
	if !bytes.Equal(back, old) {
		t.Fatalf("after failed puts the object reads %d bytes (sha256 %s); want the old %d bytes", len(back), sum(back), len(old))
	}
	// A failed put of a new key stores nothing.
	_, err := h.s.Put(ctx, store.PutRequest{Key: "new", Size: 3}, bytes.NewReader(data))
	wantErr(t, "put of a new key with a wrong size", err, sdk.ErrInvalidArgument)
	_, err = h.s.Stat(ctx, "new")
	wantErr(t, "stat of the failed new key", err, sdk.ErrNotFound)
	h.checkChunks(t, ctx)
}

// failingReader returns n bytes of data and then err.
type failingReader struct {
	data []byte
	n    int
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := min(len(p), r.n, 1000)
	copy(p, r.data[:k])
	r.data, r.n = r.data[k:], r.n-k
	return k, nil
}

func testPutFailingReader(t *testing.T, h *harness) {
	ctx := testContext(t)
	cs := h.cs
	old := content(1, cs+3)
	oldObj := h.put(t, ctx, "k", old)
	errBoom := errors.New("client went away")
	for _, n := range []int{0, cs / 2, cs, 2*cs + cs/2} {
		for _, key := range []string{"k", "fresh"} {
			data := content(9, 4*cs)
			_, err := h.s.Put(ctx, store.PutRequest{Key: key, Size: -1}, &failingReader{data: data, n: n, err: errBoom})
			wantErr(t, fmt.Sprintf("put %q failing after %d bytes", key, n), err, errBoom)
		}
		got, err := h.s.Stat(ctx, "k")
		if err != nil {
			t.Fatalf("stat after failing put: %v", err)
		}
		sameObject(t, "stat after failing put", got, oldObj)
		_, err = h.s.Stat(ctx, "fresh")
		wantErr(t, "stat of a new key whose put failed", err, sdk.ErrNotFound)
	}
	_, _, _, back := h.get(t, ctx, "k", 0, -1)
	if !bytes.Equal(back, old) {
		t.Fatalf("after failing puts the object reads %d bytes; want the old %d", len(back), len(old))
	}
	h.checkChunks(t, ctx)
}

// cancellingReader cancels its context after n bytes and then either
// keeps returning data (a source unaware of the context) or blocks until the
// context ends and returns its error (like a network stream).
type cancellingReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	n      int
	block  bool
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		r.cancel()
		if r.block {
			<-r.ctx.Done()
			return 0, r.ctx.Err()
		}
	}
	k := min(len(p), 4096)
	for i := range p[:k] {
		p[i] = byte(i)
	}
	r.n -= k
	return k, nil
}

func testPutCancelled(t *testing.T, h *harness) {
	ctx := testContext(t)
	cs := h.cs
	old := content(1, 2*cs)
	oldObj := h.put(t, ctx, "k", old)
	for _, block := range []bool{false, true} {
		for _, n := range []int{0, cs / 2, 3 * cs} {
			for _, key := range []string{"k", "fresh"} {
				what := fmt.Sprintf("put %q cancelled after %d bytes (blocking source %v)", key, n, block)
				pctx, cancel := context.WithCancel(ctx)
				_, err := h.s.Put(pctx, store.PutRequest{Key: key, Size: -1}, &cancellingReader{ctx: pctx, cancel: cancel, n: n, block: block})
				cancel()
				wantErr(t, what, err, context.Canceled)
			}
		}
	}
	// A context ended before the put starts.
	pctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := h.s.Put(pctx, store.PutRequest{Key: "fresh", Size: 1}, strings.NewReader("x"))
	wantErr(t, "put with an ended context", err, context.Canceled)

	got, err := h.s.Stat(ctx, "k")
	if err != nil {
		t.Fatalf("stat after cancelled puts: %v", err)
	}
	sameObject(t, "stat after cancelled puts", got, oldObj)
	_, err = h.s.Stat(ctx, "fresh")
	wantErr(t, "stat of a new key whose put was cancelled", err, sdk.ErrNotFound)
	h.checkChunks(t, ctx)
}

func testRanges(t *testing.T, h *harness) {
	ctx := testContext(t)
	cs := int64(h.cs)
	data := content(3, int(3*cs+100))
	size := int64(len(data))
	h.put(t, ctx, "r", data)
	cases := []struct {
		name           string
		offset, length int64
		wantOff        int64
		wantLen        int64
	}{
		{"start", 0, 10, 0, 10},
		{"whole", 0, -1, 0, size},
		{"whole exactly", 0, size, 0, size},
		{"first chunk", 0, cs, 0, cs},
		{"second chunk exactly", cs, cs, cs, cs},
		{"spanning a boundary", cs - 5, 10, cs - 5, 10},
		{"middle spanning chunks", 5, 2*cs + 50, 5, 2*cs + 50},
		{"to the end", cs + 7, -1, cs + 7, size - cs - 7},
		{"last byte", size - 1, -1, size - 1, 1},
		{"length past the end", size - 10, 100, size - 10, 10},
		{"huge length", 10, 1 << 62, 10, size - 10},
		{"empty length", 17, 0, 17, 0},
		{"last chunk start", 3 * cs, -1, 3 * cs, 100},
	}
	for _, c := range cases {
		_, off, n, back := h.get(t, ctx, "r", c.offset, c.length)
		if off != c.wantOff || n != c.wantLen {
			t.Fatalf("%s: served [%d,+%d); want [%d,+%d)", c.name, off, n, c.wantOff, c.wantLen)
		}
		if !bytes.Equal(back, data[off:off+n]) {
			t.Fatalf("%s: read %d bytes that differ from bytes [%d,+%d) of the object", c.name, len(back), off, n)
		}
	}
	bad := []struct {
		name           string
		offset, length int64
		want           error
	}{
		{"offset at size", size, -1, sdk.ErrOutOfRange},
		{"offset at size with length", size, 10, sdk.ErrOutOfRange},
		{"offset past size", size + 1, 0, sdk.ErrOutOfRange},
		{"negative offset", -1, 10, sdk.ErrInvalidArgument},
	}
	for _, c := range bad {
		_, _, _, r, err := h.s.Get(ctx, "r", c.offset, c.length)
		if r != nil {
			_ = r.Close()
		}
		wantErr(t, c.name, err, c.want)
	}

	// An empty object: offset 0 is served with length 0, anything else is
	// out of range.
	h.put(t, ctx, "empty", nil)
	for _, length := range []int64{-1, 0, 5} {
		_, off, n, back := h.get(t, ctx, "empty", 0, length)
		if off != 0 || n != 0 || len(back) != 0 {
			t.Fatalf("empty object, length %d: served [%d,+%d) and %d bytes", length, off, n, len(back))
		}
	}
	_, _, _, r, err := h.s.Get(ctx, "empty", 1, -1)
	if r != nil {
		_ = r.Close()
	}
	wantErr(t, "empty object at offset 1", err, sdk.ErrOutOfRange)
}

func testSnapshotAcrossReplace(t *testing.T, h *harness) {
	ctx := testContext(t)
	cs := h.cs
	v1 := content(1, 4*cs+1)
	v2 := content(2, 2*cs+7)
	obj1 := h.put(t, ctx, "k", v1)

	// Two readers: one that read a piece before the replacement, one that
	// read nothing yet; and one for a range starting mid-object.
	got, _, _, r1, err := h.s.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatalf("get v1: %v", err)
	}
	sameObject(t, "get v1", got, obj1)
	first, err := r1.Next(ctx)
	if err != nil {
		t.Fatalf("read v1: %v", err)
	}
	firstCopy := bytes.Clone(first)
	_, _, _, r2, err := h.s.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatalf("get v1 again: %v", err)
	}
	_, off3, n3, r3, err := h.s.Get(ctx, "k", int64(2*cs+3), -1)
	if err != nil {
		t.Fatalf("get v1 range: %v", err)
	}

	obj2 := h.put(t, ctx, "k", v2)
	if obj2.SHA256 == obj1.SHA256 {
		t.Fatal("test data of v1 and v2 are the same")
	}
	// Let garbage collection remove v1's chunks if it will.
	if h.in != nil {
		if err := h.in.WaitIdle(ctx); err != nil {
			t.Fatalf("wait for garbage collection: %v", err)
		}
	}
	rest := h.readAll(t, ctx, r1)
	if back := append(firstCopy, rest...); !bytes.Equal(back, v1) {
		t.Fatalf("reader opened before the replacement read %d bytes (sha256 %s); want v1's %d bytes", len(back), sum(back), len(v1))
	}
	if back := h.readAll(t, ctx, r2); !bytes.Equal(back, v1) {
		t.Fatalf("second reader opened before the replacement read %d bytes; want v1's %d bytes", len(back), len(v1))
	}
	if back := h.readAll(t, ctx, r3); !bytes.Equal(back, v1[off3:off3+n3]) {
		t.Fatalf("range reader opened before the replacement read %d bytes; want v1's [%d,+%d)", len(back), off3, n3)
	}
	got, _, _, back := h.get(t, ctx, "k", 0, -1)
	sameObject(t, "get after replacement", got, obj2)
	if !bytes.Equal(back, v2) {
		t.Fatalf("get after replacement read %d bytes; want v2's %d", len(back), len(v2))
	}
	h.checkChunks(t, ctx)
}

func testSnapshotAcrossDelete(t *testing.T, h *harness) {
	ctx := testContext(t)
	cs := h.cs
	v1 := content(1, 3*cs+1)
	h.put(t, ctx, "k", v1)
	_, _, _, r, err := h.s.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	first, err := r.Next(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	firstCopy := bytes.Clone(first)
	existed, err := h.s.Delete(ctx, "k")
	if err != nil || !existed {
		t.Fatalf("delete: existed %v, %v", existed, err)
	}
	if h.in != nil {
		if err := h.in.WaitIdle(ctx); err != nil {
			t.Fatalf("wait for garbage collection: %v", err)
		}
	}
	rest := h.readAll(t, ctx, r)
	if back := append(firstCopy, rest...); !bytes.Equal(back, v1) {
		t.Fatalf("reader opened before the delete read %d bytes; want %d", len(back), len(v1))
	}
	_, err = h.s.Stat(ctx, "k")
	wantErr(t, "stat after delete", err, sdk.ErrNotFound)
	h.checkChunks(t, ctx)
}

func testNotFoundAndDelete(t *testing.T, h *harness) {
	ctx := testContext(t)
	_, err := h.s.Stat(ctx, "missing")
	wantErr(t, "stat of a missing key", err, sdk.ErrNotFound)
	_, _, _, r, err := h.s.Get(ctx, "missing", 0, -1)
	if r != nil {
		_ = r.Close()
	}
	wantErr(t, "get of a missing key", err, sdk.ErrNotFound)
	_, _, _, r, err = h.s.Get(ctx, "missing", 5, 1)
	if r != nil {
		_ = r.Close()
	}
	wantErr(t, "get of a range of a missing key", err, sdk.ErrNotFound)
	existed, err := h.s.Delete(ctx, "missing")
	if err != nil || existed {
		t.Fatalf("delete of a missing key: existed %v, %v; want false, nil", existed, err)
	}

	h.put(t, ctx, "k", content(1, 2*h.cs+1))
	h.put(t, ctx, "k2", []byte("other"))
	existed, err = h.s.Delete(ctx, "k")
	if err != nil || !existed {
		t.Fatalf("delete: existed %v, %v; want true, nil", existed, err)
	}
	existed, err = h.s.Delete(ctx, "k")
	if err != nil || existed {
		t.Fatalf("second delete: existed %v, %v; want false, nil", existed, err)
	}
	_, err = h.s.Stat(ctx, "k")
	wantErr(t, "stat after delete", err, sdk.ErrNotFound)
	_, _, _, r, err = h.s.Get(ctx, "k", 0, -1)
	if r != nil {
		_ = r.Close()
	}
	wantErr(t, "get after delete", err, sdk.ErrNotFound)
	if _, err := h.s.Stat(ctx, "k2"); err != nil {
		t.Fatalf("stat of the other key after delete: %v", err)
	}
	// A deleted key can be stored again.
	h.put(t, ctx, "k", []byte("again"))
	if _, _, _, back := h.get(t, ctx, "k", 0, -1); string(back) != "again" {
		t.Fatalf("get after re-put: %q", back)
	}
	h.checkChunks(t, ctx)
}

func testTimes(t *testing.T, h *harness) {
	ctx := testContext(t)
	first := h.put(t, ctx, "k", []byte("one"))
	// Sleep so that the clock moves on even where it is coarse.
	time.Sleep(20 * time.Millisecond)
	second := h.put(t, ctx, "k", []byte("two!"))
	if !second.CreatedAt.Equal(first.CreatedAt) {
		t.Fatalf("replacement changed created_at from %v to %v", first.CreatedAt, second.CreatedAt)
	}
	if !second.ModifiedAt.After(first.ModifiedAt) {
		t.Fatalf("replacement left modified_at at %v (first put %v)", second.ModifiedAt, first.ModifiedAt)
	}
	st, err := h.s.Stat(ctx, "k")
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	sameObject(t, "stat after replacement", st, second)

	// A failed replacement changes no time.
	time.Sleep(20 * time.Millisecond)
	_, err = h.s.Put(ctx, store.PutRequest{Key: "k", Size: 99}, strings.NewReader("short"))
	wantErr(t, "put with a wrong size", err, sdk.ErrInvalidArgument)
	st, err = h.s.Stat(ctx, "k")
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	sameObject(t, "stat after failed replacement", st, second)

	// After a delete the key starts over.
	if _, err := h.s.Delete(ctx, "k"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	third := h.put(t, ctx, "k", []byte("three"))
	if !third.CreatedAt.After(second.ModifiedAt) || !third.CreatedAt.Equal(third.ModifiedAt) {
		t.Fatalf("put after delete: created %v modified %v; want a new created_at equal to modified_at", third.CreatedAt, third.ModifiedAt)
	}
}

// listKeys are the keys of the List test: ASCII, punctuation that LIKE
// would treat specially, and multi-byte UTF-8 up to U+10FFFF.
var listKeys = []string{
	"A", "a", "a%", "a/", "a/b", "a/c", "a/c/d", "a_", "ab", "b", "e",
	"é", "éa", "ê", "ÿ", "€", "日本", "日本語", "\U0010FFFE",
	"\U0010FFFF", "\U0010FFFF/x", "\U0010FFFF\U0010FFFF", "z\U0010FFFF", "~",
}

func testList(t *testing.T, h *harness) {
	ctx := testContext(t)
	// Store in a shuffled order so that insertion order cannot pass for
	// key order.
	keys := slices.Clone(listKeys)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	objs := map[string]store.Object{}
	for i, k := range keys {
		objs[k] = h.put(t, ctx, k, content(uint64(i), i))
	}
	sorted := slices.Clone(listKeys)
	slices.Sort(sorted) // Go compares strings bytewise.

	matching := func(prefix string) []string {
		var out []string
		for _, k := range sorted {
			if strings.HasPrefix(k, prefix) {
				out = append(out, k)
			}
		}
		return out
	}
	list := func(q store.ListQuery) []string {
		t.Helper()
		got, err := h.s.List(ctx, q)
		if err != nil {
			t.Fatalf("list %+v: %v", q, err)
		}
		keys := make([]string, 0, len(got))
		for _, o := range got {
			sameObject(t, fmt.Sprintf("list %+v item %q", q, o.Key), o, objs[o.Key])
			keys = append(keys, o.Key)
		}
		return keys
	}
	prefixes := []string{"", "a", "a/", "a/c", "a%", "a_", "é", "e", "日本", "\U0010FFFF", "\U0010FFFF/", "z", "~", "nothing", "a/c/d/e"}
	for _, p := range prefixes {
		want := matching(p)
		got := list(store.ListQuery{Prefix: p, Limit: 1000})
		if !slices.Equal(got, want) {
			t.Fatalf("list prefix %q:\n got %q\nwant %q", p, got, want)
		}
		n, err := h.s.Count(ctx, p)
		if err != nil {
			t.Fatalf("count prefix %q: %v", p, err)
		}
		if n != int64(len(want)) {
			t.Fatalf("count prefix %q: %d; want %d", p, n, len(want))
		}
		// Keyset pages of 3 give the same keys, each once.
		var paged []string
		after := ""
		for page := 0; ; page++ {
			if page > len(want)+1 {
				t.Fatalf("list prefix %q: paging does not end", p)
			}
			keys := list(store.ListQuery{Prefix: p, After: after, Limit: 3})
			if len(keys) > 3 {
				t.Fatalf("list prefix %q limit 3 returned %d items", p, len(keys))
			}
			paged = append(paged, keys...)
			if len(keys) < 3 {
				break
			}
			after = keys[len(keys)-1]
		}
		if !slices.Equal(paged, want) {
			t.Fatalf("list prefix %q by pages of 3:\n got %q\nwant %q", p, paged, want)
		}
		// Offset pages give the same.
		for off := 0; off <= len(want)+1; off += 2 {
			got := list(store.ListQuery{Prefix: p, Offset: int64(off), Limit: 2})
			var w []string
			if off < len(want) {
				w = want[off:min(off+2, len(want))]
			}
			if !slices.Equal(got, w) {
				t.Fatalf("list prefix %q offset %d limit 2: got %q; want %q", p, off, got, w)
			}
		}
	}
	// After and Offset together; After need not be a stored key nor carry
	// the prefix.
	all := sorted
	afterCases := []struct {
		prefix, after string
		offset        int64
	}{
		{"", "a/", 0},
		{"", "a/", 2},
		{"", "a/bb", 0},
		{"a", "0", 0},
		{"a", "a/c", 1},
		{"a", "zzz", 0},
		{"", "é", 0},
		{"\U0010FFFF", "\U0010FFFF", 0},
		{"", "\U0010FFFF/x", 0},
		{"", "~", 0},
	}
	for _, c := range afterCases {
		var want []string
		for _, k := range all {
			if strings.HasPrefix(k, c.prefix) && k > c.after {
				want = append(want, k)
			}
		}
		if int(c.offset) < len(want) {
			want = want[c.offset:]
		} else {
			want = nil
		}
		got := list(store.ListQuery{Prefix: c.prefix, After: c.after, Offset: c.offset, Limit: 1000})
		if !slices.Equal(got, want) {
			t.Fatalf("list prefix %q after %q offset %d:\n got %q\nwant %q", c.prefix, c.after, c.offset, got, want)
		}
	}
	// A deleted key leaves listings and counts.
	if _, err := h.s.Delete(ctx, "a/b"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := list(store.ListQuery{Prefix: "a/", Limit: 10}); !slices.Equal(got, []string{"a/", "a/c", "a/c/d"}) {
		t.Fatalf("list after delete: %q", got)
	}
	if n, err := h.s.Count(ctx, "a/"); err != nil || n != 3 {
		t.Fatalf("count after delete: %d, %v; want 3", n, err)
	}
}

func testListArguments(t *testing.T, h *harness) {
	ctx := testContext(t)
	h.put(t, ctx, "k", []byte("x"))
	for _, q := range []store.ListQuery{{Limit: 0}, {Limit: -1}, {Limit: 1, Offset: -1}} {
		_, err := h.s.List(ctx, q)
		wantErr(t, fmt.Sprintf("list %+v", q), err, sdk.ErrInvalidArgument)
	}
	// A 1024-byte key is valid and listed.
	long := strings.Repeat("é", 512)
	h.put(t, ctx, long, []byte("long"))
	got, err := h.s.List(ctx, store.ListQuery{Prefix: "é", Limit: 5})
	if err != nil || len(got) != 1 || got[0].Key != long {
		t.Fatalf("list of the 1024-byte key: %d items, %v", len(got), err)
	}
}

func testInvalidKeys(t *testing.T, h *harness) {
	ctx := testContext(t)
	bad := map[string]string{
		"empty":           "",
		"1025 bytes":      strings.Repeat("k", 1025),
		"NUL":             "a\x00b",
		"invalid UTF-8":   "a\xffb",
		"truncated UTF-8": "\xe2\x82",
		"surrogate":       "\xed\xa0\x80",
	}
	for name, key := range bad {
		_, err := h.s.Put(ctx, store.PutRequest{Key: key, Size: -1}, strings.NewReader("data"))
		wantErr(t, "put with key "+name, err, sdk.ErrInvalidArgument)
		_, err = h.s.Stat(ctx, key)
		wantErr(t, "stat with key "+name, err, sdk.ErrInvalidArgument)
		_, _, _, r, err := h.s.Get(ctx, key, 0, -1)
		if r != nil {
			_ = r.Close()
		}
		wantErr(t, "get with key "+name, err, sdk.ErrInvalidArgument)
		_, err = h.s.Delete(ctx, key)
		wantErr(t, "delete with key "+name, err, sdk.ErrInvalidArgument)
	}
	h.put(t, ctx, strings.Repeat("k", 1024), []byte("ok"))
	h.checkChunks(t, ctx)
}

func testReaderClose(t *testing.T, h *harness) {
	ctx := testContext(t)
	h.put(t, ctx, "k", content(1, 3*h.cs))
	// Closing a reader part-way, twice, then reading from it.
	_, _, _, r, err := h.s.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if _, err := r.Next(ctx); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close reader: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close reader twice: %v", err)
	}
	if _, err := r.Next(ctx); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("read after close: %v; want an error", err)
	}
	// After EOF, Next keeps returning io.EOF.
	_, _, _, r, err = h.s.Get(ctx, "k", 0, 10)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if p, err := r.Next(ctx); err != nil || len(p) != 10 {
		t.Fatalf("read 10 bytes: %d bytes, %v", len(p), err)
	}
	for range 2 {
		if _, err := r.Next(ctx); !errors.Is(err, io.EOF) {
			t.Fatalf("read past the end: %v; want io.EOF", err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// A reader with an ended context fails and can still be closed; other
	// calls keep working (its connection went back).
	_, _, _, r, err = h.s.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Next(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("read with an ended context: %v; want context.Canceled", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close after a cancelled read: %v", err)
	}
	// Many readers opened and closed do not exhaust connections.
	for i := range 50 {
		_, _, _, r, err := h.s.Get(ctx, "k", int64(i), 1)
		if err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
	h.put(t, ctx, "k", []byte("still writable"))
}

func testCloseWithOpenReader(t *testing.T, h *harness) {
	ctx := testContext(t)
	h.put(t, ctx, "k", content(1, 3*h.cs))
	_, _, _, r, err := h.s.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if _, err := r.Next(ctx); err != nil {
		t.Fatalf("read: %v", err)
	}
	_, _, _, unread, err := h.s.Get(ctx, "k", 0, -1)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("close with open readers: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("close with open readers did not return")
	}
	h.closed = true
	for _, r := range []store.Reader{r, unread} {
		if _, err := r.Next(ctx); err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("read after the strategy closed: %v; want an error", err)
		}
		if err := r.Close(); err != nil {
			t.Logf("close reader after the strategy closed: %v", err)
		}
	}
	if _, err := h.s.Stat(ctx, "k"); err == nil {
		t.Fatal("stat after close succeeded")
	}
	if _, err := h.s.Put(ctx, store.PutRequest{Key: "k", Size: -1}, strings.NewReader("x")); err == nil {
		t.Fatal("put after close succeeded")
	}
	if err := h.s.Ping(ctx); err == nil {
		t.Fatal("ping after close succeeded")
	}
}

func testPing(t *testing.T, h *harness) {
	ctx := testContext(t)
	if err := h.s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := h.s.Ping(cctx); err == nil {
		t.Fatal("ping with an ended context succeeded")
	}
	if err := h.s.Ping(ctx); err != nil {
		t.Fatalf("ping after a cancelled ping: %v", err)
	}
}

func testConcurrent(t *testing.T, h *harness) {
	ctx := testContext(t)
	cs := h.cs
	// The versions any key may hold, by SHA-256.
	versions := [][]byte{nil, []byte("v"), content(1, cs/2), content(2, 2*cs+3), content(3, 3*cs)}
	known := map[string]bool{}
	for _, v := range versions {
		known[sum(v)] = true
	}
	const workers, rounds = 8, 16
	shared := []string{"shared/0", "shared/1"}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- worker(ctx, h, w, rounds, shared, versions, known)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	n, err := h.s.Count(ctx, "")
	if err != nil {
		t.Fatalf("count: %v", err)
	}
	objs, err := h.s.List(ctx, store.ListQuery{Limit: 1000})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if int64(len(objs)) != n {
		t.Fatalf("list returned %d items; count says %d", len(objs), n)
	}
	for _, o := range objs {
		_, _, _, back := h.get(t, ctx, o.Key, 0, -1)
		if sum(back) != o.SHA256 || !known[o.SHA256] {
			t.Fatalf("%q reads sha256 %s; its metadata says %s", o.Key, sum(back), o.SHA256)
		}
	}
	h.checkChunks(t, ctx)
}

// worker puts, gets and deletes a shared and its own keys, checking that
// every Get reads one complete written version.
func worker(ctx context.Context, h *harness, w, rounds int, shared []string, versions [][]byte, known map[string]bool) error {
	r := rand.New(rand.NewPCG(uint64(w), 7))
	own := fmt.Sprintf("own/%d", w)
	for i := range rounds {
		key := own
		if r.IntN(2) == 0 {
			key = shared[r.IntN(len(shared))]
		}
		switch op := r.IntN(6); {
		case op < 3:
			v := versions[r.IntN(len(versions))]
			obj, err := h.s.Put(ctx, store.PutRequest{Key: key, Size: int64(len(v))}, bytes.NewReader(v))
			if err != nil {
				return fmt.Errorf("worker %d round %d: put %q: %w", w, i, key, err)
			}
			if obj.SHA256 != sum(v) {
				return fmt.Errorf("worker %d round %d: put %q returned sha256 %s; want %s", w, i, key, obj.SHA256, sum(v))
			}
		case op < 5:
			obj, _, n, rd, err := h.s.Get(ctx, key, 0, -1)
			if errors.Is(err, sdk.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("worker %d round %d: get %q: %w", w, i, key, err)
			}
			hash := sha256.New()
			var read int64
			for {
				p, err := rd.Next(ctx)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					_ = rd.Close()
					return fmt.Errorf("worker %d round %d: read %q: %w", w, i, key, err)
				}
				hash.Write(p)
				read += int64(len(p))
				// Let other goroutines write in the middle of the read.
				if r.IntN(3) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			if err := rd.Close(); err != nil {
				return fmt.Errorf("worker %d round %d: close reader of %q: %w", w, i, key, err)
			}
			got := hex.EncodeToString(hash.Sum(nil))
			if read != n || got != obj.SHA256 || !known[got] {
				return fmt.Errorf("worker %d round %d: get %q read %d bytes with sha256 %s; metadata says %d bytes with %s", w, i, key, read, got, n, obj.SHA256)
			}
		default:
			if _, err := h.s.Delete(ctx, key); err != nil {
				return fmt.Errorf("worker %d round %d: delete %q: %w", w, i, key, err)
			}
		}
	}
	return nil
}
