package filestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/plugins/filesystem/internal/probe"
	"github.com/datawarehouse/dw/plugins/filesystem/internal/scheduler"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
	"github.com/datawarehouse/dw/sdk/v6/sdktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeProbes are capability probes whose answers a test changes.
type fakeProbes struct {
	direct atomic.Bool
	calls  atomic.Int64
}

func (f *fakeProbes) funcs() probe.Funcs {
	return probe.Funcs{
		IOURing: func() probe.Capability { return probe.Capability{Available: false, Detail: "fake: off"} },
		ODirect: func(string) probe.Capability {
			f.calls.Add(1)
			if f.direct.Load() {
				return probe.Capability{Available: true, Detail: "fake: on"}
			}
			return probe.Capability{Available: false, Detail: "fake: EINVAL"}
		},
	}
}

// env is a configured Service behind a real gRPC server (on a unix socket,
// with the SDK's interceptors: sdktest.ServeInProcess), as the host calls it.
type env struct {
	s       *Service
	c       dwv1.FileStoreClient
	root    string // the root folder
	outside string // a folder beside the root, which must never change
	probes  *fakeProbes
}

// start configures a Service on a fresh root with limits l (nil: the
// defaults) and device class ssd, and serves it.
func start(t testing.TB, l *Limits, direct bool) *env {
	t.Helper()
	base := t.TempDir()
	e := &env{root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside"), probes: &fakeProbes{}}
	e.probes.direct.Store(direct)
	if err := os.MkdirAll(e.outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.s = New(WithProbes(e.probes.funcs()))
	ctx := context.Background()
	cfg := sdk.Config{Subsystem: "filesystem", DataDir: base, Logger: hclog.NewNullLogger(),
		Settings: map[string]any{"root": "root", "device_class": "ssd"}}
	if err := e.s.Configure(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	lim := DefaultLimits()
	if l != nil {
		lim = *l
	}
	if err := e.s.ApplyLimits(ctx, lim); err != nil {
		t.Fatal(err)
	}
	// Registered first, so that it runs after the server has stopped.
	t.Cleanup(func() {
		if err := e.s.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	e.c = dwv1.NewFileStoreClient(sdktest.ServeInProcess(t, e.s.RegisterGRPC))
	return e
}

func (e *env) put(t testing.TB, p string, data []byte, prio dwv1.Priority) (*dwv1.PutFileResponse, error) {
	t.Helper()
	return e.putHeader(t, &dwv1.PutFileHeader{Path: p, Size: int64(len(data)), Priority: prio}, data)
}

func (e *env) putHeader(t testing.TB, hdr *dwv1.PutFileHeader, data []byte) (*dwv1.PutFileResponse, error) {
	t.Helper()
	st, err := e.c.Put(context.Background())
	if err != nil {
		return nil, err
	}
	if err := st.Send(&dwv1.PutFileRequest{Part: &dwv1.PutFileRequest_Header{Header: hdr}}); err != nil {
		return nil, err
	}
	for len(data) > 0 {
		n := min(len(data), 300_000) // not a multiple of the alignment
		if err := st.Send(&dwv1.PutFileRequest{Part: &dwv1.PutFileRequest_Data{Data: data[:n]}}); err != nil {
			break // the server ended the call; CloseAndRecv has its error
		}
		data = data[n:]
	}
	resp, err := st.CloseAndRecv()
	return resp, err
}

// get reads p's range; length < 0 means to the end.
func (e *env) get(ctx context.Context, p string, offset, length int64, prio dwv1.Priority) ([]byte, *dwv1.GetFileHeader, error) {
	req := &dwv1.GetFileRequest{Path: p, Offset: offset, Priority: prio}
	if length >= 0 {
		req.Length = &length
	}
	st, err := e.c.Get(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var hdr *dwv1.GetFileHeader
	var buf bytes.Buffer
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return buf.Bytes(), hdr, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if h := m.GetHeader(); h != nil {
			hdr = h
		} else {
			buf.Write(m.GetData())
		}
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// stagingEmpty fails the test if an upload left something behind.
func (e *env) stagingEmpty(t *testing.T) {
	t.Helper()
	names, err := os.ReadDir(filepath.Join(e.root, stagingDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) > 0 {
		t.Errorf("staging folder holds %d entries after the uploads ended, e.g. %s", len(names), names[0].Name())
	}
}

func TestRoundTripBothPaths(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			e := start(t, nil, direct)
			sizes := []int{0, 1, 4095, 4096, 4097, chunkSize - 1, chunkSize + 1, directThreshold + 12345, 2*directThreshold + 4096}
			for i, n := range sizes {
				p := fmt.Sprintf("d/sub/f%d.bin", i)
				data := randomBytes(n, uint64(n))
				resp, err := e.put(t, p, data, dwv1.Priority_PRIORITY_NORMAL)
				if err != nil {
					t.Fatalf("put %d bytes: %v", n, err)
				}
				if resp.GetInfo().GetSize() != int64(n) || resp.GetInfo().GetPath() != p {
					t.Errorf("put %d bytes: info %v", n, resp.GetInfo())
				}
				onDisk, err := os.ReadFile(filepath.Join(e.root, filepath.FromSlash(p)))
				if err != nil || !bytes.Equal(onDisk, data) {
					t.Fatalf("file on disk after put of %d bytes: %d bytes, err %v", n, len(onDisk), err)
				}
				got, hdr, err := e.get(context.Background(), p, 0, -1, dwv1.Priority_PRIORITY_NORMAL)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("get %d bytes: %d bytes back, err %v", n, len(got), err)
				}
				if hdr.GetLength() != int64(n) || hdr.GetInfo().GetEtag() == "" {
					t.Errorf("get header %v", hdr)
				}
				// Ranges, aligned and not, inside and cut at the end.
				for _, r := range [][2]int64{{1, 10}, {4095, 4098}, {int64(n) / 3, int64(n) / 2}, {int64(n) - 1, 100}, {5000, int64(directThreshold) + 10}} {
					off, length := r[0], r[1]
					if off < 0 || off >= int64(n) {
						continue
					}
					got, hdr, err := e.get(context.Background(), p, off, length, dwv1.Priority_PRIORITY_LOW)
					want := data[off:min(off+length, int64(n))]
					if err != nil || !bytes.Equal(got, want) || hdr.GetOffset() != off || hdr.GetLength() != int64(len(want)) {
						t.Fatalf("get %d bytes [%d,+%d): %d bytes (want %d), header %v, err %v", n, off, length, len(got), len(want), hdr, err)
					}
				}
			}
			if _, _, err := e.get(context.Background(), "d/sub/f1.bin", 1, -1, 0); !errors.Is(err, sdk.ErrOutOfRange) {
				t.Errorf("range past the end: %v, want ErrOutOfRange", err)
			}
			m, _ := e.s.Metrics(context.Background())
			if got := metric(m, "transfers_total", "path", "direct"); (got > 0) != direct {
				t.Errorf("direct transfers = %v with O_DIRECT available=%v", got, direct)
			}
			e.stagingEmpty(t)
		})
	}
}

// metric returns the value of the metric with the label, or -1.
func metric(m sdk.Metrics, name, label, value string) float64 {
	for _, v := range m.Values {
		if v.Name == name && (label == "" || v.Labels[label] == value) {
			return v.Value
		}
	}
	return -1
}

func TestPutReplacesAndVerifies(t *testing.T) {
	e := start(t, nil, false)
	if _, err := e.put(t, "a.txt", []byte("old"), 0); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("new content"))
	good := hex.EncodeToString(sum[:])
	resp, err := e.putHeader(t, &dwv1.PutFileHeader{Path: "a.txt", Size: -1, Sha256: good}, []byte("new content"))
	if err != nil || resp.GetSha256() != good {
		t.Fatalf("put with checksum: %v %v", resp, err)
	}
	for _, tc := range []struct {
		name string
		hdr  *dwv1.PutFileHeader
		body string
	}{
		{"short body", &dwv1.PutFileHeader{Path: "a.txt", Size: 100}, "xyz"},
		{"long body", &dwv1.PutFileHeader{Path: "a.txt", Size: 2}, "xyz"},
		{"wrong checksum", &dwv1.PutFileHeader{Path: "a.txt", Size: -1, Sha256: strings.Repeat("0", 64)}, "xyz"},
		{"bad checksum form", &dwv1.PutFileHeader{Path: "a.txt", Size: -1, Sha256: "ABC"}, "xyz"},
		{"bad size", &dwv1.PutFileHeader{Path: "a.txt", Size: -2}, "xyz"},
		{"folder target", &dwv1.PutFileHeader{Path: "dir", Size: -1}, "xyz"},
		{"parent is a file", &dwv1.PutFileHeader{Path: "a.txt/child", Size: -1}, "xyz"},
	} {
		if tc.name == "folder target" {
			os.MkdirAll(filepath.Join(e.root, "dir"), 0o755)
		}
		if _, err := e.putHeader(t, tc.hdr, []byte(tc.body)); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", tc.name, err)
		}
	}
	got, err := os.ReadFile(filepath.Join(e.root, "a.txt"))
	if err != nil || string(got) != "new content" {
		t.Errorf("after refused puts the file holds %q (%v), want the last good content", got, err)
	}
	e.stagingEmpty(t)
}

func TestPutAbortedLeavesNothing(t *testing.T) {
	e := start(t, nil, false)
	if _, err := e.put(t, "keep.bin", []byte("previous"), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := e.c.Put(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&dwv1.PutFileRequest{Part: &dwv1.PutFileRequest_Header{Header: &dwv1.PutFileHeader{Path: "keep.bin", Size: 10 << 20}}})
	st.Send(&dwv1.PutFileRequest{Part: &dwv1.PutFileRequest_Data{Data: make([]byte, 1<<20)}})
	// Wait until the plugin has the upload in staging, then abort.
	waitFor(t, "the staging file", func() bool {
		n, _ := os.ReadDir(filepath.Join(e.root, stagingDir))
		return len(n) == 1
	})
	cancel()
	waitFor(t, "the staging file to go", func() bool {
		n, _ := os.ReadDir(filepath.Join(e.root, stagingDir))
		return len(n) == 0
	})
	got, _ := os.ReadFile(filepath.Join(e.root, "keep.bin"))
	if string(got) != "previous" {
		t.Errorf("after an aborted put the file holds %d bytes, want the previous content", len(got))
	}
}

// waitFor polls cond for up to 30 s: a bound for progress, not a timing
// assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCrashDebrisRemovedAtStart(t *testing.T) {
	base := t.TempDir()
	staging := filepath.Join(base, "root", stagingDir)
	os.MkdirAll(filepath.Join(staging, "sub"), 0o700)
	os.WriteFile(filepath.Join(staging, "123-4.part"), []byte("half"), 0o644)
	s := New(WithProbes((&fakeProbes{}).funcs()))
	cfg := sdk.Config{Subsystem: "filesystem", DataDir: base, Settings: map[string]any{"root": "root", "device_class": "hdd"}}
	if err := s.Configure(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if n, _ := os.ReadDir(staging); len(n) != 0 {
		t.Errorf("staging holds %d entries after start", len(n))
	}
	if d := s.sched.Stats().Depth; d != DefaultLimits().QueueDepth.HDD {
		t.Errorf("dispatch depth on an hdd = %d", d)
	}
}

func TestTraversalBattery(t *testing.T) {
	e := start(t, nil, false)
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(e.root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(e.root, name)); err != nil {
			t.Fatal(err)
		}
	}
	mk("in")
	os.WriteFile(filepath.Join(e.root, "in", "ok.txt"), []byte("inside"), 0o644)
	link(e.outside, "abs-out")                                           // absolute, out
	link("../outside", "rel-out")                                        // relative, out
	link("../outside/secret", "file-out")                                // to a file outside
	link("in/../../outside", "dotdot-out")                               // climbing through a folder inside
	link("/etc/passwd", "passwd")                                        // a system file
	link("in", "in-link")                                                // stays inside: allowed
	link("loop-b", "loop-a")                                             // a loop
	link("loop-a", "loop-b")                                             //
	os.Symlink("../../outside", filepath.Join(e.root, "in", "deep-out")) // nested, out

	hostile := []string{
		"../outside/secret", "..", "/etc/passwd", "in/../../outside/secret", "./in/ok.txt",
		"in//ok.txt", "in/./ok.txt", `..\outside\secret`, "in/\x00", "in/ok.txt/", "",
		"abs-out/secret", "rel-out/secret", "file-out", "dotdot-out/secret", "passwd",
		"in/deep-out/secret", "in-link/deep-out/secret", "loop-a", stagingDir, stagingDir + "/x",
		strings.Repeat("a/", 3000) + "x",
	}
	// A Put to a name that is itself a symlink replaces the link (the
	// rename of the staging file); it never writes through it.
	replaces := map[string]bool{"file-out": true, "passwd": true, "loop-a": true}
	ctx := context.Background()
	for _, p := range hostile {
		if _, _, err := e.get(ctx, p, 0, -1, 0); err == nil {
			t.Errorf("get %.60q succeeded", p)
		} else if !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("get %.60q: %v, want ErrInvalidArgument", p, err)
		}
		if _, err := e.c.Stat(ctx, &dwv1.StatFileRequest{Path: p}); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("stat %.60q: %v, want ErrInvalidArgument", p, err)
		}
		if _, err := e.put(t, p, []byte("pwned"), 0); replaces[p] {
			if err != nil {
				t.Errorf("put over the symlink %q: %v", p, err)
			} else if fi, err := os.Lstat(filepath.Join(e.root, p)); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("put over the symlink %q left %v (%v), want a regular file", p, fi, err)
			}
		} else if !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("put %.60q: %v, want ErrInvalidArgument", p, err)
		}
		if _, err := e.c.Delete(ctx, &dwv1.DeleteFileRequest{Path: p}); p != "" && !errors.Is(err, sdk.ErrInvalidArgument) {
			// Deleting a symlink itself is inside the root and allowed;
			// deleting through one that points out is not.
			if !strings.Contains(p, "/") && err == nil {
				continue
			}
			t.Errorf("delete %.60q: %v, want ErrInvalidArgument", p, err)
		}
	}
	for _, p := range []string{"abs-out", "rel-out/", "in/deep-out", "../outside"} {
		if _, err := e.c.List(ctx, &dwv1.ListFilesRequest{Path: strings.TrimSuffix(p, "/")}); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("list %q: %v, want ErrInvalidArgument", p, err)
		}
	}
	// Inside links work.
	if got, _, err := e.get(ctx, "in-link/ok.txt", 0, -1, 0); err != nil || string(got) != "inside" {
		t.Errorf("get through a symlink inside the root: %q %v", got, err)
	}
	// Outside is untouched.
	names, _ := os.ReadDir(e.outside)
	if len(names) != 1 {
		t.Errorf("the folder outside the root now holds %d entries", len(names))
	}
	if b, _ := os.ReadFile(filepath.Join(e.outside, "secret")); string(b) != "secret" {
		t.Errorf("the file outside the root changed: %q", b)
	}
	m, _ := e.s.Metrics(ctx)
	if metric(m, "refused_paths_total", "", "") < float64(len(hostile)) {
		t.Errorf("refused_paths_total = %v, want at least %d", metric(m, "refused_paths_total", "", ""), len(hostile))
	}
	e.stagingEmpty(t)
}

func TestListPages(t *testing.T) {
	e := start(t, nil, false)
	const n = 250
	dir := filepath.Join(e.root, "many")
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	for i := range n - 1 {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), []byte{byte(i)}, 0o644)
	}
	ctx := context.Background()
	var seen []string
	tok := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("too many pages")
		}
		resp, err := e.c.List(ctx, &dwv1.ListFilesRequest{Path: "many", Limit: 100, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range resp.GetItems() {
			seen = append(seen, it.GetPath())
		}
		if !resp.GetHasMore() {
			if resp.GetNextPageToken() != "" {
				t.Error("last page has a token")
			}
			break
		}
		tok = resp.GetNextPageToken()
	}
	if len(seen) != n {
		t.Fatalf("listed %d entries, want %d", len(seen), n)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i-1] >= seen[i] {
			t.Fatalf("not in order: %q then %q", seen[i-1], seen[i])
		}
	}
	root, err := e.c.List(ctx, &dwv1.ListFilesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range root.GetItems() {
		if it.GetPath() == stagingDir {
			t.Error("the root listing shows the staging folder")
		}
	}
	for _, tc := range []struct {
		req  *dwv1.ListFilesRequest
		want error
	}{
		{&dwv1.ListFilesRequest{Path: "many", Limit: -1}, sdk.ErrInvalidArgument},
		{&dwv1.ListFilesRequest{Path: "many", PageToken: "!!"}, sdk.ErrInvalidArgument},
		{&dwv1.ListFilesRequest{Path: "many", PageToken: pageToken("other", "f001")}, sdk.ErrInvalidArgument},
		{&dwv1.ListFilesRequest{Path: "many/f001"}, sdk.ErrInvalidArgument},
		{&dwv1.ListFilesRequest{Path: "missing"}, sdk.ErrNotFound},
	} {
		if _, err := e.c.List(ctx, tc.req); !errors.Is(err, tc.want) {
			t.Errorf("list %v: %v, want %v", tc.req, err, tc.want)
		}
	}
}

func TestDelete(t *testing.T) {
	e := start(t, nil, false)
	ctx := context.Background()
	e.put(t, "d/f", []byte("x"), 0)
	if _, err := e.c.Delete(ctx, &dwv1.DeleteFileRequest{Path: "d"}); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("delete a folder that is not empty: %v", err)
	}
	if r, err := e.c.Delete(ctx, &dwv1.DeleteFileRequest{Path: "d/f"}); err != nil || !r.GetExisted() {
		t.Errorf("delete: %v %v", r, err)
	}
	if r, err := e.c.Delete(ctx, &dwv1.DeleteFileRequest{Path: "d/f"}); err != nil || r.GetExisted() {
		t.Errorf("delete again: %v %v", r, err)
	}
	if _, err := e.c.Stat(ctx, &dwv1.StatFileRequest{Path: "d/f"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("stat deleted: %v", err)
	}
	if r, err := e.c.Stat(ctx, &dwv1.StatFileRequest{Path: "d"}); err != nil || !r.GetInfo().GetIsDir() {
		t.Errorf("stat folder: %v %v", r, err)
	}
}

// holdSlots takes every dispatch slot with ops of class low and returns a
// func releasing them.
func holdSlots(t *testing.T, s *Service, n int) func() {
	t.Helper()
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		op, err := s.sched.Admit(scheduler.Low)
		if err != nil {
			t.Fatal(err)
		}
		running := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer op.Done()
			_ = op.Run(context.Background(), func() error { close(running); <-release; return nil })
		}()
		<-running
	}
	var once sync.Once
	stop := func() { once.Do(func() { close(release); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func TestHighPriorityReadGoesNext(t *testing.T) {
	l := DefaultLimits()
	l.QueueDepth.SSD = 1
	e := start(t, &l, false)
	e.put(t, "small", randomBytes(4096, 1), 0)
	release := holdSlots(t, e.s, 1)

	const flood = 20
	done := make(chan string, flood+1)
	var wg sync.WaitGroup
	read := func(name string, prio dwv1.Priority) {
		defer wg.Done()
		if _, _, err := e.get(context.Background(), "small", 0, -1, prio); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		done <- name
	}
	for i := range flood {
		wg.Add(1)
		go read(fmt.Sprintf("low%d", i), dwv1.Priority_PRIORITY_LOW)
	}
	waitFor(t, "the low flood to queue", func() bool { return e.s.sched.Stats().Waiting[scheduler.Low] == flood })
	wg.Add(1)
	go read("high", dwv1.Priority_PRIORITY_HIGH)
	waitFor(t, "the high read to queue", func() bool { return e.s.sched.Stats().Waiting[scheduler.High] == 1 })
	release()
	wg.Wait()
	if first := <-done; first != "high" {
		t.Errorf("first read to complete after the slot freed: %s, want the high-priority one", first)
	}
}

func TestQueueFullRefusesAtOnce(t *testing.T) {
	l := DefaultLimits()
	l.QueueDepth.SSD = 1
	l.MaxQueueDepth = 3
	e := start(t, &l, false)
	e.put(t, "f", []byte("x"), 0)
	release := holdSlots(t, e.s, 1)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.c.Stat(context.Background(), &dwv1.StatFileRequest{Path: "f"}); err != nil {
				t.Errorf("queued stat: %v", err)
			}
		}()
	}
	waitFor(t, "three queued stats", func() bool { return e.s.sched.Stats().Waiting[scheduler.Normal] == 3 })
	_, err := e.c.Stat(context.Background(), &dwv1.StatFileRequest{Path: "f"})
	if !errors.Is(err, sdk.ErrBackpressure) {
		t.Fatalf("stat over the queue bound: %v, want ErrBackpressure", err)
	}
	if d, ok := sdk.RetryAfter(err); !ok || d < time.Second {
		t.Errorf("retry hint %v %v, want at least 1s", d, ok)
	}
	if bp, _ := e.s.sched.Backpressure(); bp != sdk.BackpressureSaturated {
		t.Errorf("backpressure %v with a full queue", bp)
	}
	// Shrinking the queue keeps the queued work.
	l.MaxQueueDepth = 1
	if err := e.s.ApplyLimits(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	release()
	wg.Wait()
	if q := e.s.sched.Stats().MaxQueued; q != 1 {
		t.Errorf("max queued after ApplyLimits = %d", q)
	}
}

// On the direct path only low-priority bulk transfers bypass the page
// cache: normal and high priority read and write through it, so a hot file
// is served from memory.
func TestPageCacheByDefault(t *testing.T) {
	e := start(t, nil, true)
	ctx := context.Background()
	transfers := func(path string) float64 {
		m, _ := e.s.Metrics(ctx)
		return metric(m, "transfers_total", "path", path)
	}
	big := randomBytes(directThreshold+100, 9)
	for _, tc := range []struct {
		prio      dwv1.Priority
		length    int64
		putDirect bool // the whole file, 8 MiB + 100 bytes
		getDirect bool // length bytes of it
	}{
		{dwv1.Priority_PRIORITY_UNSPECIFIED, -1, false, false},
		{dwv1.Priority_PRIORITY_NORMAL, -1, false, false},
		{dwv1.Priority_PRIORITY_HIGH, -1, false, false},
		{dwv1.Priority_PRIORITY_LOW, -1, true, true},
		{dwv1.Priority_PRIORITY_LOW, directThreshold, true, true},
		{dwv1.Priority_PRIORITY_LOW, directThreshold - 1, true, false},
	} {
		name := fmt.Sprintf("p%d-%d", tc.prio, tc.length)
		d, b := transfers("direct"), transfers("buffered")
		if _, err := e.put(t, name, big, tc.prio); err != nil {
			t.Fatal(err)
		}
		got, _, err := e.get(ctx, name, 0, tc.length, tc.prio)
		want := big
		if tc.length >= 0 {
			want = big[:tc.length]
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: get: %v", name, err)
		}
		// The put and the get both count.
		wantD, wantB := d, b
		for _, direct := range []bool{tc.putDirect, tc.getDirect} {
			if direct {
				wantD++
			} else {
				wantB++
			}
		}
		if transfers("direct") != wantD || transfers("buffered") != wantB {
			t.Errorf("%s: direct %v buffered %v transfers, want %v and %v", name, transfers("direct"), transfers("buffered"), wantD, wantB)
		}
	}
}

func TestPathSwitchesLive(t *testing.T) {
	e := start(t, nil, false)
	big := randomBytes(directThreshold+100, 7)
	if _, err := e.put(t, "big", big, 0); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	transfers := func(path string) float64 {
		m, _ := e.s.Metrics(ctx)
		return metric(m, "transfers_total", "path", path)
	}
	if p := e.s.path.Load().name; p != "buffered" {
		t.Fatalf("path %s without O_DIRECT", p)
	}
	// The kernel starts offering O_DIRECT: the next probe switches.
	e.probes.direct.Store(true)
	e.s.detector.Redetect()
	if p := e.s.path.Load().name; p != "direct" {
		t.Fatalf("path %s after O_DIRECT appeared", p)
	}
	before := transfers("direct")
	got, _, err := e.get(ctx, "big", 0, -1, dwv1.Priority_PRIORITY_LOW)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("get on the direct path: %v", err)
	}
	if transfers("direct") != before+1 {
		t.Errorf("the large low-priority get did not take the direct path")
	}
	// And back.
	e.probes.direct.Store(false)
	e.s.detector.Redetect()
	before = transfers("buffered")
	if got, _, err := e.get(ctx, "big", 0, -1, dwv1.Priority_PRIORITY_LOW); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("get on the buffered path: %v", err)
	}
	if transfers("buffered") != before+1 || e.s.path.Load().name != "buffered" {
		t.Errorf("the get after O_DIRECT went away did not take the buffered path")
	}
	m, _ := e.s.Metrics(ctx)
	if metric(m, "io_path_switches_total", "", "") != 2 {
		t.Errorf("io_path_switches_total = %v, want 2", metric(m, "io_path_switches_total", "", ""))
	}
	h := e.s.Health(ctx)
	var names []string
	for _, c := range h.Components {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "root,device,io_uring,o_direct,io_path" {
		t.Errorf("health components %v", names)
	}
}

func TestLimitsApplyLive(t *testing.T) {
	e := start(t, nil, false)
	l := DefaultLimits()
	l.QueueDepth.SSD = 5
	l.MaxQueueDepth = 7
	l.RedetectInterval = time.Hour
	if err := e.s.ApplyLimits(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	if st := e.s.sched.Stats(); st.Depth != 5 || st.MaxQueued != 7 {
		t.Errorf("after ApplyLimits: depth %d, max queued %d", st.Depth, st.MaxQueued)
	}
	bad := l
	bad.Quota.Callers = map[string]Rate{"x.y": {BytesPerSecond: -1}}
	err := e.s.ApplyLimits(context.Background(), bad)
	if !errors.Is(err, sdk.ErrInvalidLimits) || !strings.Contains(err.Error(), `quota.callers["x.y"].bytes_per_second`) {
		t.Errorf("negative rate: %v", err)
	}
}

// TestLowCompletesUnderSustainedHighLoad: high-priority readers never let
// the queue go idle, yet a low-priority read completes (low work trickles
// while high work is present).
func TestLowCompletesUnderSustainedHighLoad(t *testing.T) {
	l := DefaultLimits()
	l.QueueDepth.SSD = 1
	e := start(t, &l, false)
	data := randomBytes(3*chunkSize, 2) // a low read of three chunks
	e.put(t, "f", data, 0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, _, _ = e.get(ctx, "f", 0, 4096, dwv1.Priority_PRIORITY_HIGH)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, "sustained high load", func() bool { return e.s.sched.Stats().Dispatched[scheduler.High] > 100 })
	got, _, err := e.get(context.Background(), "f", 0, -1, dwv1.Priority_PRIORITY_LOW)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("low read under high load: %d bytes, %v", len(got), err)
	}
	if st := e.s.sched.Stats(); st.Restrained == 0 {
		t.Errorf("the low read was never held back for the high load: %+v", st)
	}
}

// TestSmallReadsCostTheirSize: a caller with a byte quota pays for what it
// reads, not for a whole chunk, when the size was unknown at admission.
func TestSmallReadsCostTheirSize(t *testing.T) {
	l := DefaultLimits()
	l.MaxThrottleWait = 0
	l.Quota.Default = Rate{BytesPerSecond: 256 << 10} // burst: 256 KiB
	e := start(t, &l, false)
	e.put(t, "small", randomBytes(1000, 1), 0)
	// Three reads of a 1000-byte file fit in the burst; had each taken a
	// chunk (1 MiB) at admission, the second would be refused.
	for i := range 3 {
		if _, _, err := e.get(context.Background(), "small", 0, -1, 0); err != nil {
			t.Fatalf("read %d: %v", i+1, err)
		}
	}
}

func TestConfigureRefusesBadSettings(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "a-file")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, tc := range []struct {
		name     string
		settings map[string]any
		want     string
	}{
		{"bad class", map[string]any{"root": "r", "device_class": "fast"}, "device_class"},
		{"empty root", map[string]any{"root": ""}, "subsystems.filesystem.root"},
		{"unknown key", map[string]any{"root": "r", "roots": "x"}, "roots"},
		{"wrong type", map[string]any{"root": 7}, "root"},
		{"root is a file", map[string]any{"root": file}, "a-file"},
		{"root below a file", map[string]any{"root": filepath.Join(file, "sub")}, "a-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(WithProbes((&fakeProbes{}).funcs()))
			err := s.Configure(context.Background(), sdk.Config{Subsystem: "filesystem", DataDir: base, Settings: tc.settings})
			if err == nil {
				s.Shutdown(context.Background())
				t.Fatal("Configure succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
			if err := s.Shutdown(context.Background()); err != nil {
				t.Errorf("shutdown after a refused Configure: %v", err)
			}
		})
	}
}

// TestRequestDuration checks request_duration_seconds: one histogram per
// operation and priority class, each request timed from its start to its
// end (a wait in the I/O queue included), refusals included, and a
// priority that is no class counted with priority "".
func TestRequestDuration(t *testing.T) {
	l := DefaultLimits()
	l.QueueDepth.SSD = 1
	e := start(t, &l, false)
	ctx := context.Background()
	if _, err := e.put(t, "a", []byte("abc"), dwv1.Priority_PRIORITY_LOW); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.get(ctx, "a", 0, -1, dwv1.Priority_PRIORITY_HIGH); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Stat(ctx, &dwv1.StatFileRequest{Path: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Stat(ctx, &dwv1.StatFileRequest{Path: "a", Priority: 99}); !errors.Is(sdk.FromStatus(err), sdk.ErrInvalidArgument) {
		t.Fatalf("stat with priority 99: %v", err)
	}
	if _, err := e.c.List(ctx, &dwv1.ListFilesRequest{Path: ""}); err != nil {
		t.Fatal(err)
	}
	// A delete that waits 30 ms for the device is timed with its wait.
	release := holdSlots(t, e.s, 1)
	deleted := make(chan error, 1)
	go func() {
		_, err := e.c.Delete(ctx, &dwv1.DeleteFileRequest{Path: "a", Priority: dwv1.Priority_PRIORITY_NORMAL})
		deleted <- err
	}()
	waitFor(t, "the delete to queue", func() bool { return e.s.sched.Stats().Waiting[scheduler.Normal] == 1 })
	time.Sleep(30 * time.Millisecond)
	release()
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}

	m, err := e.s.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*sdk.HistogramSnapshot{}
	for _, v := range m.Values {
		if v.Name != "request_duration_seconds" {
			continue
		}
		if v.Kind != sdk.KindHistogram || v.Histogram == nil || len(v.Labels) != 2 || v.Help != requestDurationHelp {
			t.Fatalf("request_duration_seconds = %+v", v)
		}
		got[v.Labels["operation"]+"/"+v.Labels["priority"]] = v.Histogram
	}
	// Every operation in each class, and only the stat without one.
	if len(got) != numOps*len(scheduler.Classes)+1 {
		t.Errorf("%d histograms: %v", len(got), slices.Sorted(maps.Keys(got)))
	}
	for key, want := range map[string]uint64{
		"put/low": 1, "put/normal": 0, "get/high": 1, "stat/normal": 1, "stat/": 1, "list/normal": 1, "delete/normal": 1, "delete/high": 0,
	} {
		if h := got[key]; h == nil || h.Count != want {
			t.Errorf("%s: %+v, want count %d", key, h, want)
		}
	}
	if h := got["delete/normal"]; h != nil && h.Sum < 0.03 {
		t.Errorf("delete timed %v s, want at least its 30 ms in the queue", h.Sum)
	}
}
