package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/internal/syncbuf"
)

// waitFor is how long a test waits for something it expects.
const waitFor = 10 * time.Second

// watchHarness runs a Watcher on a real file and collects its deliveries.
type watchHarness struct {
	tb      testing.TB
	path    string
	w       *Watcher
	changes chan Change
}

// harnessConfig adjusts a harness before its watcher runs.
type harnessConfig struct {
	opts WatchOptions
	// setup, when set, adjusts the watcher (test hooks) before Run.
	setup func(*Watcher)
	// onChange, when set, runs in the watcher's onChange before the change
	// is collected.
	onChange func(Change)
}

// testLogWriter writes a test's log output.
type testLogWriter struct{ tb testing.TB }

// Write logs p.
func (w testLogWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testLogger returns a logger writing to the test's log.
func testLogger(tb testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "watch", Level: hclog.Debug, Output: testLogWriter{tb}})
}

// startWatch starts a watcher of path and waits until it has done its first
// read. The test's cleanup stops it and checks that Run returned
// context.Canceled and left no goroutine behind.
func startWatch(tb testing.TB, path string, hc harnessConfig) *watchHarness {
	tb.Helper()
	leaks := goleak.IgnoreCurrent()
	hc.opts.Path = path
	if hc.opts.Logger == nil {
		hc.opts.Logger = testLogger(tb)
	}
	w, err := NewWatcher(hc.opts)
	if err != nil {
		tb.Fatalf("NewWatcher: %v", err)
	}
	started := make(chan struct{})
	w.started = func() { close(started) }
	if hc.setup != nil {
		hc.setup(w)
	}
	h := &watchHarness{tb: tb, path: path, w: w, changes: make(chan Change, 10000)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.Run(ctx, func(c Change) {
			if len(c.Content) == 0 {
				tb.Errorf("empty content delivered (cause %s)", c.Cause)
			}
			if c.Hash != HashContent(c.Content) {
				tb.Errorf("hash %s is not the hash of the content", c.Hash)
			}
			if hc.onChange != nil {
				hc.onChange(c)
			}
			h.changes <- c
		})
	}()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				tb.Errorf("Run returned %v, want context.Canceled", err)
			}
		case <-time.After(waitFor):
			tb.Fatalf("Run did not return within %s of the cancel", waitFor)
		}
		goleak.VerifyNone(tb, leaks)
	})
	select {
	case <-started:
	case err := <-done:
		tb.Fatalf("Run returned at start: %v", err)
	case <-time.After(waitFor):
		tb.Fatalf("watcher not started within %s", waitFor)
	}
	return h
}

// next returns the next delivery, failing the test after waitFor.
func (h *watchHarness) next() Change {
	h.tb.Helper()
	select {
	case c := <-h.changes:
		return c
	case <-time.After(waitFor):
		h.tb.Fatalf("no delivery within %s", waitFor)
		return Change{}
	}
}

// expect fails the test unless the next delivery has content content and,
// when cause is not empty, the cause cause.
func (h *watchHarness) expect(content, cause string) Change {
	h.tb.Helper()
	c := h.next()
	if string(c.Content) != content {
		h.tb.Fatalf("delivered %q (cause %s), want %q", short(c.Content), c.Cause, short([]byte(content)))
	}
	if cause != "" && c.Cause != cause {
		h.tb.Errorf("delivered %q with cause %q, want %q", short(c.Content), c.Cause, cause)
	}
	return c
}

// sentinel writes content, new to the watcher, in place and expects it to
// be the next delivery: nothing else was delivered since the last one.
func (h *watchHarness) sentinel(content string) {
	h.tb.Helper()
	writeFile(h.tb, h.path, content)
	h.expect(content, "")
}

// short abbreviates b for messages.
func short(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + fmt.Sprintf("…(%d bytes)", len(b))
	}
	return string(b)
}

// writeFile writes content to path in place (truncate, then write).
func writeFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// newConfigFile writes content to dw.yaml in a new folder and returns the
// path and the options of a watcher of it that knows the content, with
// polling off so that events alone are tested.
func newConfigFile(tb testing.TB, content string) (string, harnessConfig) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "dw.yaml")
	writeFile(tb, path, content)
	return path, harnessConfig{opts: WatchOptions{InitialHash: HashContent([]byte(content)), PollInterval: -1}}
}

func TestWatchInPlaceWrite(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	h := startWatch(t, path, hc)
	for i := 2; i <= 4; i++ {
		content := fmt.Sprintf("v: %d\n", i)
		writeFile(t, path, content)
		h.expect(content, "write")
	}
	// Appending is an in-place write too.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("w: 5\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	h.expect("v: 4\nw: 5\n", "write")
}

func TestWatchTruncateThenWrite(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	h := startWatch(t, path, hc)
	for i := 2; i <= 3; i++ {
		// Two syscalls with a pause longer than the settle window between
		// them: the watcher reads the empty file and must not deliver it.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * DefaultSettle)
		content := fmt.Sprintf("v: %d\nlong: %s\n", i, strings.Repeat("x", 1000))
		if _, err := f.WriteString(content); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		h.expect(content, "write") // the first delivery after the truncate: never empty
	}
	// An empty file alone is not delivered either.
	writeFile(t, path, "")
	time.Sleep(5 * DefaultSettle)
	h.sentinel("v: 9\n")
}

func TestWatchRenameOver(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	h := startWatch(t, path, hc)
	for i := 2; i <= 4; i++ {
		content := fmt.Sprintf("v: %d\n", i)
		tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".dw.yaml.%d.tmp", i))
		writeFile(t, tmp, content)
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		h.expect(content, "rename")
	}
	// The watch survives: an in-place write after the renames.
	h.sentinel("v: 5\n")
}

func TestWatchVimStyleSave(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	h := startWatch(t, path, hc)
	for i := 2; i <= 3; i++ {
		// vim (backupcopy=no): rename the file to a backup, write a new
		// file, delete the backup.
		backup := path + "~"
		if err := os.Rename(path, backup); err != nil {
			t.Fatal(err)
		}
		content := fmt.Sprintf("v: %d\n", i)
		writeFile(t, path, content)
		if err := os.Remove(backup); err != nil {
			t.Fatal(err)
		}
		h.expect(content, "create")
	}
	h.sentinel("v: 4\n")
}

func TestWatchDeleteThenRecreate(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	h := startWatch(t, path, hc)
	for i := 2; i <= 3; i++ {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // a while: the watcher sees the file missing
		content := fmt.Sprintf("v: %d\n", i)
		writeFile(t, path, content)
		h.expect(content, "create")
	}
	// Deleted and created again with the same content: nothing to deliver.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	writeFile(t, path, "v: 3\n")
	time.Sleep(5 * DefaultSettle)
	h.sentinel("v: 4\n")
}

// k8sPublish publishes content as Kubernetes' atomic writer does for a
// ConfigMap volume: a new timestamped folder with the file, a ..data_tmp
// link to it renamed over ..data, then the old folder removed. The first
// publication also creates the user-visible link dw.yaml -> ..data/dw.yaml.
func k8sPublish(tb testing.TB, dir, version, content string) {
	tb.Helper()
	ts := "..2026_11_27_" + version
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	must(os.Mkdir(filepath.Join(dir, ts), 0o755))
	writeFile(tb, filepath.Join(dir, ts, "dw.yaml"), content)
	must(os.Symlink(ts, filepath.Join(dir, "..data_tmp")))
	must(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	if _, err := os.Lstat(filepath.Join(dir, "dw.yaml")); errors.Is(err, os.ErrNotExist) {
		must(os.Symlink("..data/dw.yaml", filepath.Join(dir, "dw.yaml")))
	}
	if old != "" {
		must(os.RemoveAll(filepath.Join(dir, old)))
	}
}

func TestWatchKubernetesSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	k8sPublish(t, dir, "1", "v: 1\n")
	path := filepath.Join(dir, "dw.yaml")
	h := startWatch(t, path, harnessConfig{opts: WatchOptions{InitialHash: HashContent([]byte("v: 1\n")), PollInterval: -1}})
	for i := 2; i <= 3; i++ {
		content := fmt.Sprintf("v: %d\n", i)
		k8sPublish(t, dir, fmt.Sprint(i), content)
		h.expect(content, "symlink swap")
	}
	// The watch moved to the new data folder: a write there is seen (the
	// kubelet never does this, but it shows which folder is watched).
	target := filepath.Join(dir, "..2026_11_27_3", "dw.yaml")
	writeFile(t, target, "v: 4\n")
	h.expect("v: 4\n", "write")
	// A swap to the same content delivers nothing.
	k8sPublish(t, dir, "5", "v: 4\n")
	time.Sleep(5 * DefaultSettle)
	writeFile(t, filepath.Join(dir, "..2026_11_27_5", "dw.yaml"), "v: 6\n")
	h.expect("v: 6\n", "write")
}

func TestWatchSymlinkRetarget(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cfg", "a", "b"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	a, b := filepath.Join(root, "a", "one.yaml"), filepath.Join(root, "b", "two.yaml")
	writeFile(t, a, "v: a\n")
	writeFile(t, b, "v: b\n")
	path := filepath.Join(root, "cfg", "dw.yaml")
	if err := os.Symlink("../a/one.yaml", path); err != nil {
		t.Fatal(err)
	}
	h := startWatch(t, path, harnessConfig{opts: WatchOptions{InitialHash: HashContent([]byte("v: a\n")), PollInterval: -1}})

	// Retarget atomically (ln -sfn into a temporary name, then rename).
	tmp := filepath.Join(root, "cfg", ".dw.yaml.tmp")
	if err := os.Symlink(b, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	h.expect("v: b\n", "symlink swap")

	// The new target's folder is watched, the old one's no longer matters.
	writeFile(t, a, "v: a2\n")
	writeFile(t, b, "v: b2\n")
	h.expect("v: b2\n", "write")

	// Retarget as ln -sf does: remove, then create the link.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../a/one.yaml", path); err != nil {
		t.Fatal(err)
	}
	h.expect("v: a2\n", "symlink swap")
	writeFile(t, b, "v: b3\n")
	h.sentinel("v: a3\n") // writes a, the target again; b's write delivered nothing
}

func TestWatchBurstOfWrites(t *testing.T) {
	path, hc := newConfigFile(t, "n: start\n")
	h := startWatch(t, path, hc)
	const writes = 200
	for i := range writes {
		writeFile(t, path, fmt.Sprintf("n: %d\n", i))
	}
	final := fmt.Sprintf("n: %d\n", writes-1)
	var got []string
	for {
		c := h.next()
		got = append(got, string(c.Content))
		if string(c.Content) == final {
			break
		}
	}
	t.Logf("%d writes, %d deliveries", writes, len(got))
	if len(got) >= writes/4 {
		t.Errorf("%d deliveries for %d writes: not coalesced", len(got), writes)
	}
	h.sentinel("n: after\n")
}

func TestWatchUnchangedContent(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	h := startWatch(t, path, hc)
	// touch
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	// chmod
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	// the same bytes, in place and renamed over
	writeFile(t, path, "v: 1\n")
	tmp := path + ".tmp"
	writeFile(t, tmp, "v: 1\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	// events for other files in the folder
	writeFile(t, filepath.Join(filepath.Dir(path), "other.yaml"), "x: 1\n")
	time.Sleep(5 * DefaultSettle)
	h.sentinel("v: 2\n")
	// Back to an earlier content: delivered, it differs from the last.
	writeFile(t, path, "v: 1\n")
	h.expect("v: 1\n", "write")
}

// Each delivery carries the bytes the watcher read and the hash of exactly
// those bytes: the receiver acts on them, not on the file, which may
// already hold the next save (of the same length, here) while it handles
// the change. The delivered bytes are the receiver's: a later read does not
// reuse them.
func TestWatchDeliversTheBytesItHashed(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	first := true
	hc.onChange = func(c Change) {
		if first {
			first = false
			writeFile(t, path, "v: 3\n") // the next save, during the handling
		}
	}
	h := startWatch(t, path, hc)
	writeFile(t, path, "v: 2\n")
	c2 := h.expect("v: 2\n", "")
	sum := sha256.Sum256([]byte("v: 2\n"))
	if want := hex.EncodeToString(sum[:]); c2.Hash != want {
		t.Errorf("hash %s of the delivery of %q, want its SHA-256 %s", c2.Hash, c2.Content, want)
	}
	c3 := h.expect("v: 3\n", "")
	if c3.Hash != HashContent([]byte("v: 3\n")) || c3.Hash == c2.Hash {
		t.Errorf("hash %s of the delivery of %q", c3.Hash, c3.Content)
	}
	if string(c2.Content) != "v: 2\n" {
		t.Errorf("the first delivery's content became %q after the next read", c2.Content)
	}
	// The delivered hash is the one compared: the same bytes again are not
	// delivered, other bytes are.
	writeFile(t, path, "v: 3\n")
	h.sentinel("v: 4\n")
}

func TestWatchInitialContent(t *testing.T) {
	t.Run("no initial hash", func(t *testing.T) {
		path, hc := newConfigFile(t, "v: 1\n")
		hc.opts.InitialHash = ""
		h := startWatch(t, path, hc)
		h.expect("v: 1\n", "start")
		h.sentinel("v: 2\n")
	})
	t.Run("initial hash of another content", func(t *testing.T) {
		path, hc := newConfigFile(t, "v: 1\n")
		hc.opts.InitialHash = HashContent([]byte("v: 0\n"))
		h := startWatch(t, path, hc)
		h.expect("v: 1\n", "start")
	})
	t.Run("initial hash of the content", func(t *testing.T) {
		path, hc := newConfigFile(t, "v: 1\n")
		h := startWatch(t, path, hc)
		h.sentinel("v: 2\n")
	})
}

func TestWatchWatcherErrorRearms(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	inject := make(chan error, 1)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	hc.setup = func(w *Watcher) { w.injectErr = inject }
	hc.onChange = func(c Change) {
		if string(c.Content) == "v: 2\n" {
			entered <- struct{}{}
			<-release
		}
	}
	h := startWatch(t, path, hc)

	// An error while the loop is busy in onChange, with a write since: the
	// watcher is re-created and the write delivered, whether its event got
	// through before the error or the read after the re-arm found it.
	writeFile(t, path, "v: 2\n")
	<-entered
	writeFile(t, path, "v: 3\n")
	inject <- errors.New("injected watcher error")
	close(release)
	h.expect("v: 2\n", "write")
	if c := h.expect("v: 3\n", ""); c.Cause != "write" && c.Cause != "rearm" {
		t.Errorf("cause %q, want write or rearm", c.Cause)
	}
	waitUntil(t, "a new fsnotify watcher", func() bool { return h.w.rearms.Load() == 1 })

	// The new watcher works, and errors in a row re-arm every time.
	h.sentinel("v: 4\n")
	for i := range 3 {
		inject <- fmt.Errorf("injected error %d", i)
		want := int64(2 + i)
		waitUntil(t, "a new fsnotify watcher", func() bool { return h.w.rearms.Load() == want })
	}
	h.sentinel("v: 5\n")
}

func TestWatchOverflowInjected(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	inject := make(chan error, 1)
	hc.setup = func(w *Watcher) { w.injectErr = inject }
	h := startWatch(t, path, hc)
	inject <- fsnotify.ErrEventOverflow
	waitUntil(t, "a new fsnotify watcher", func() bool { return h.w.rearms.Load() == 1 })
	h.sentinel("v: 2\n")
}

func TestWatchRearmBackoff(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	var calls atomic.Int32
	hc.setup = func(w *Watcher) {
		w.newNotifier = func() (*fsnotify.Watcher, error) {
			if calls.Add(1) <= 3 {
				return nil, errors.New("injected: too many open files")
			}
			return fsnotify.NewWatcher()
		}
	}
	h := startWatch(t, path, hc)
	// No fsnotify watcher and no polling yet: the change is found by the
	// read after the re-arm, three backoff steps later.
	writeFile(t, path, "v: 2\n")
	h.expect("v: 2\n", "rearm")
	if n := calls.Load(); n != 4 {
		t.Errorf("%d attempts to create the fsnotify watcher, want 4", n)
	}
	h.sentinel("v: 3\n")
}

func TestWatchPollOnly(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	hc.opts.PollInterval = 20 * time.Millisecond
	hc.setup = func(w *Watcher) { w.noNotify = true }
	h := startWatch(t, path, hc)
	writeFile(t, path, "v: 2\n")
	h.expect("v: 2\n", "poll")

	// A change that keeps the size, mtime and inode: found by the poll that
	// hashes anyway (every pollHashEvery-th).
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "v: 3\n")
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	h.expect("v: 3\n", "poll")

	// Rename over, delete and recreate.
	tmp := path + ".tmp"
	writeFile(t, tmp, "v: 4\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	h.expect("v: 4\n", "poll")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * hc.opts.PollInterval)
	writeFile(t, path, "v: 5\n")
	h.expect("v: 5\n", "poll")
}

func TestWatchPollFindsMissedEvents(t *testing.T) {
	// fsnotify on, and a change it cannot see: a write through a hard link
	// in a folder nobody watches (inotify reports an event to the folder of
	// the path written through).
	root := t.TempDir()
	for _, d := range []string{"cfg", "elsewhere"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(root, "cfg", "dw.yaml")
	writeFile(t, path, "v: 1\n")
	link := filepath.Join(root, "elsewhere", "link.yaml")
	if err := os.Link(path, link); err != nil {
		t.Fatal(err)
	}
	hc := harnessConfig{opts: WatchOptions{InitialHash: HashContent([]byte("v: 1\n")), PollInterval: 50 * time.Millisecond}}
	h := startWatch(t, path, hc)
	writeFile(t, link, "v: 2, through the link\n")
	h.expect("v: 2, through the link\n", "poll")
	h.sentinel("v: 3\n")
}

func TestWatchFolderDeletedAndRecreated(t *testing.T) {
	t.Run("folder", func(t *testing.T) {
		root := t.TempDir()
		dir := filepath.Join(root, "cfg")
		path := filepath.Join(dir, "dw.yaml")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, "v: 1\n")
		h := startWatch(t, path, harnessConfig{opts: WatchOptions{InitialHash: HashContent([]byte("v: 1\n")), PollInterval: -1}})
		for i := 2; i <= 3; i++ {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			content := fmt.Sprintf("v: %d\n", i)
			writeFile(t, path, content)
			h.expect(content, "")
		}
		// Deleted and re-created at once, renamed away and re-created.
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, "v: 4\n")
		h.expect("v: 4\n", "")
		if err := os.Rename(dir, dir+".old"); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir+".old", "dw.yaml"), "v: old\n")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, "v: 5\n")
		h.expect("v: 5\n", "")
		h.sentinel("v: 6\n")
	})
	t.Run("parent folders", func(t *testing.T) {
		root := t.TempDir()
		dir := filepath.Join(root, "a", "b", "cfg")
		path := filepath.Join(dir, "dw.yaml")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, "v: 1\n")
		h := startWatch(t, path, harnessConfig{opts: WatchOptions{InitialHash: HashContent([]byte("v: 1\n")), PollInterval: -1}})
		for i := 2; i <= 3; i++ {
			if err := os.RemoveAll(filepath.Join(root, "a")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			content := fmt.Sprintf("v: %d\n", i)
			writeFile(t, path, content)
			h.expect(content, "")
		}
		h.sentinel("v: 4\n")
	})
}

func TestWatchOversizedFile(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	var logs syncbuf.Buffer
	hc.opts.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: io.MultiWriter(&logs, testLogWriter{t})})
	h := startWatch(t, path, hc)
	writeFile(t, path, "#"+strings.Repeat("x", MaxFileSize))
	waitUntil(t, "the refusal in the log", func() bool { return strings.Contains(logs.String(), "more than the limit") })
	h.sentinel("v: 2\n")
	// A file of exactly MaxFileSize bytes is delivered.
	exact := "#" + strings.Repeat("y", MaxFileSize-1)
	writeFile(t, path, exact)
	if c := h.next(); len(c.Content) != MaxFileSize {
		t.Errorf("delivered %d bytes, want %d", len(c.Content), MaxFileSize)
	}
}

func TestWatchNotRegularFile(t *testing.T) {
	path, hc := newConfigFile(t, "v: 1\n")
	var logs syncbuf.Buffer
	hc.opts.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: io.MultiWriter(&logs, testLogWriter{t})})
	h := startWatch(t, path, hc)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the refusal in the log", func() bool { return strings.Contains(logs.String(), "not a regular file") })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	h.sentinel("v: 2\n")
}

func TestWatchCancel(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	path, hc := newConfigFile(t, "v: 1\n")
	w, err := NewWatcher(WatchOptions{Path: path, InitialHash: hc.opts.InitialHash, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	delivered := make(chan struct{}, 1)
	go func() {
		done <- w.Run(ctx, func(Change) { delivered <- struct{}{} })
	}()
	writeFile(t, path, "v: 2\n")
	<-delivered
	writeFile(t, path, "v: 3\n") // a read may be pending at the cancel
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run did not return after the cancel")
	}
	goleak.VerifyNone(t, leaks)

	// A context ended before Run.
	if err := w.Run(ctx, func(Change) {}); !errors.Is(err, context.Canceled) {
		t.Errorf("Run on an ended context returned %v, want context.Canceled", err)
	}
}

func TestWatchSetupErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope", "dw.yaml")
	w, err := NewWatcher(WatchOptions{Path: missing})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Run(context.Background(), func(Change) {})
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Run with a missing folder: %v, want an error naming %s", err, missing)
	}
	notDir := filepath.Join(dir, "file")
	writeFile(t, notDir, "")
	w, err = NewWatcher(WatchOptions{Path: filepath.Join(notDir, "dw.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background(), func(Change) {}); err == nil {
		t.Error("Run with a file as folder: no error")
	}
	if err := w.Run(context.Background(), nil); err == nil {
		t.Error("Run with a nil onChange: no error")
	}

	for _, tc := range []struct {
		opts WatchOptions
		want string
	}{
		{WatchOptions{}, "path is empty"},
		{WatchOptions{Path: "dw.yaml", Settle: -1}, "settle must be 0"},
		{WatchOptions{Path: "dw.yaml", InitialHash: "abc"}, "initial hash must be a hex SHA-256"},
	} {
		if _, err := NewWatcher(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewWatcher(%+v): %v, want an error with %q", tc.opts, err, tc.want)
		}
	}
	w, err = NewWatcher(WatchOptions{Path: "dw.yaml", InitialHash: strings.ToUpper(HashContent(nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(w.path) || w.settle != DefaultSettle || w.pollInterval != DefaultPollInterval || w.initialHash != HashContent(nil) {
		t.Errorf("defaults: path %s, settle %s, poll %s, hash %s", w.path, w.settle, w.pollInterval, w.initialHash)
	}
}

func TestResolve(t *testing.T) {
	root := t.TempDir()
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	root = real
	k8sPublish(t, root, "1", "v: 1\n")
	data := filepath.Join(root, "..2026_11_27_1")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		path   string
		target string
		names  []string
	}{
		{"plain", filepath.Join(data, "dw.yaml"), filepath.Join(data, "dw.yaml"), []string{filepath.Join(data, "dw.yaml")}},
		{"kubernetes", filepath.Join(root, "dw.yaml"), filepath.Join(data, "dw.yaml"),
			[]string{filepath.Join(root, "..data"), filepath.Join(root, "dw.yaml"), filepath.Join(data, "dw.yaml")}},
		{"missing file", filepath.Join(root, "no.yaml"), filepath.Join(root, "no.yaml"), []string{filepath.Join(root, "no.yaml")}},
		{"missing folders", filepath.Join(root, "x", "y", "dw.yaml"), filepath.Join(root, "x", "y", "dw.yaml"), []string{filepath.Join(root, "x")}},
		{"dot dot", data + "/../..data/./dw.yaml", filepath.Join(data, "dw.yaml"),
			[]string{filepath.Join(root, "..data"), filepath.Join(data, "dw.yaml")}},
	} {
		c := resolve(tc.path)
		slices.Sort(tc.names)
		if c.target != tc.target || !slices.Equal(c.names, tc.names) {
			t.Errorf("%s: resolve(%s) = target %s names %v, want %s %v", tc.name, tc.path, c.target, c.names, tc.target, tc.names)
		}
		for _, n := range c.names {
			if !slices.Contains(c.dirs, filepath.Dir(n)) {
				t.Errorf("%s: folder of %s not watched: %v", tc.name, n, c.dirs)
			}
		}
	}

	// A loop ends the walk without hanging.
	must(os.Symlink("loop2", filepath.Join(root, "loop1")))
	must(os.Symlink("loop1", filepath.Join(root, "loop2")))
	c := resolve(filepath.Join(root, "loop1"))
	if !slices.Equal(c.names, []string{filepath.Join(root, "loop1"), filepath.Join(root, "loop2")}) {
		t.Errorf("loop: names %v", c.names)
	}
	// A file on the way.
	c = resolve(filepath.Join(data, "dw.yaml", "x"))
	if !slices.Equal(c.names, []string{filepath.Join(data, "dw.yaml")}) {
		t.Errorf("file on the way: names %v", c.names)
	}
}

// waitUntil polls cond until it holds, failing the test after waitFor.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("no %s within %s", what, waitFor)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkWatchLatency measures the time from the write of a new content
// (in place) to its delivery, settle window (DefaultSettle) included, and
// reports the p50 and p99 in µs.
func BenchmarkWatchLatency(b *testing.B) {
	path, hc := newConfigFile(b, "n: start\n")
	delivered := make(chan time.Time, 1)
	hc.onChange = func(Change) { delivered <- time.Now() }
	hc.opts.Logger = hclog.NewNullLogger()
	h := startWatch(b, path, hc)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		writeFile(b, path, fmt.Sprintf("n: %d\n", i))
		select {
		case at := <-delivered:
			lat = append(lat, at.Sub(start))
		case <-time.After(waitFor):
			b.Fatalf("write %d not delivered within %s", i, waitFor)
		}
		h.next()
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(0, "ns/op")
}
