package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"

	"github.com/datawarehouse/dw/host/internal/testplugins"
	"github.com/datawarehouse/dw/internal/syncbuf"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// watch runs WatchDir on h's manager until the test ends, and checks that
// it returns as it should.
func (h *harness) watch(opts DirWatchOptions) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.m.WatchDir(ctx, opts) }()
	defer func() {
		if !opts.noEvents {
			h.waitLog("watching plugins.dir") // armed: later changes are events
		}
	}()
	h.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				h.t.Errorf("WatchDir returned %v, want context.Canceled", err)
			}
		case <-time.After(30 * time.Second):
			h.t.Errorf("WatchDir did not return within 30s of its context ending")
		}
	})
}

// waitLog waits up to 30s for the host log to contain every one of subs
// in one line, and returns that line.
func (h *harness) waitLog(subs ...string) string {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, line := range strings.Split(h.logs.String(), "\n") {
			ok := true
			for _, s := range subs {
				if !strings.Contains(line, s) {
					ok = false
					break
				}
			}
			if ok {
				return line
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("waited 30s for a log line with %q", subs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// variant copies the test plugin build src into a fresh folder with a tag
// appended, which changes its sha256 but not what it does (the ELF loader
// ignores trailing bytes), and returns its path and sha256.
func variant(t testing.TB, src, tag string) (string, string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, "\ndw-test-variant:"+tag+"\n"...)
	path := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sum, _, err := hashFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, sum
}

// renameIn hard-links (or copies) src to a hidden temporary name beside
// dst and renames it over dst, as installers do.
func renameIn(t testing.TB, src, dst string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	testplugins.InstallAs(t, src, tmp)
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func sumOf(t testing.TB, path string) string {
	t.Helper()
	sum, _, err := hashFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// pluginProcesses returns the pids of the live processes started from
// path (argv[0] is the binary's path in plugins.dir).
func pluginProcesses(t testing.TB, path string) []int {
	t.Helper()
	return processesWhere(t, func(pid int) bool {
		cmd, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			return false
		}
		arg0, _, _ := bytes.Cut(cmd, []byte{0})
		return string(arg0) == path && processAlive(pid)
	})
}

func TestWatchDirDropInByCopyThenRename(t *testing.T) {
	built := buildTestPlugins(t)
	h := newHarness(t, nil, func(o *Options) {
		o.Specs = map[string]Spec{"configured": {Enabled: true, Limits: map[string]any{"max_items": 7}}}
	})
	h.start()
	if st := h.status("configured"); st.State != StateMissing {
		t.Fatalf("before the drop: %+v", st)
	}
	h.watch(DirWatchOptions{})

	// With a config section: its limits. Without: the plugin's defaults.
	renameIn(t, filepath.Join(built, "dw-plugin-good"), filepath.Join(h.dir, "dw-plugin-configured"))
	renameIn(t, filepath.Join(built, "dw-plugin-good"), filepath.Join(h.dir, "dw-plugin-extra"))
	h.waitState("configured", StateServing)
	h.waitState("extra", StateServing)
	ctx := context.Background()
	if limits, _, err := h.client("configured").Limits(ctx); err != nil || limits["max_items"] != int64(7) {
		t.Fatalf("configured limits %v %v", limits, err)
	}
	if limits, _, err := h.client("extra").Limits(ctx); err != nil || limits["max_items"] != int64(100) {
		t.Fatalf("default limits %v %v", limits, err)
	}
	h.waitLog("plugin loaded from plugins.dir", "plugin=extra", "took=")
	if strings.Contains(h.logs.String(), "/.dw-plugin-") {
		t.Errorf("the hidden temporary name was mentioned:\n%s", h.logs.String())
	}
}

func TestWatchDirSlowInPlaceCopyIsNotLaunched(t *testing.T) {
	built := buildTestPlugins(t)
	h := newHarness(t, nil, nil)
	probe := filepath.Join(h.dir, "probe")
	w, err := os.Create(probe)
	if err != nil {
		t.Fatal(err)
	}
	leases := pathOpenForWriting(probe)
	w.Close()
	os.Remove(probe)
	if !leases {
		t.Skip("this file system does not tell files open for writing (no leases); see TestWatchDirExecBusyIsRetried")
	}
	h.start()
	h.watch(DirWatchOptions{})

	content, err := os.ReadFile(filepath.Join(built, "dw-plugin-good"))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(h.dir, "dw-plugin-slow")
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	notStarted := func(when string) {
		t.Helper()
		if st, ok := h.m.Status("slow"); ok {
			t.Fatalf("%s: a half-written binary was taken up: %+v", when, st)
		}
		if pids := pluginProcesses(t, dst); len(pids) != 0 {
			t.Fatalf("%s: a half-written binary runs: %v", when, pids)
		}
	}
	// Written in chunks with pauses shorter than the settle window: the
	// watcher sees the file change and waits.
	half := len(content) / 2
	chunk := len(content) / 16
	off := 0
	for off < half {
		n := min(chunk, half-off)
		if _, err := f.Write(content[off : off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
		if off == n {
			h.waitLog("plugin binary changed; waiting for it to settle", "plugin=slow")
		}
		time.Sleep(DefaultSettle / 3)
		notStarted("while written in chunks")
	}
	// Then a pause longer than the window, the file still open: settled,
	// but deferred as open for writing.
	h.waitLog("plugin binary not ready; deferring", "plugin=slow", "open for writing")
	notStarted("after a long pause")
	// A rescan from elsewhere (SIGHUP) does not launch it either.
	if err := h.m.Rescan(context.Background()); err != nil {
		t.Fatal(err)
	}
	notStarted("after a rescan")

	if _, err := f.Write(content[off:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st := h.waitState("slow", StateServing)
	if st.SHA256 != sumOf(t, filepath.Join(built, "dw-plugin-good")) {
		t.Fatalf("serving sha256 %s, want the whole file's", st.SHA256)
	}
	if n := strings.Count(h.logs.String(), "plugin serving: plugin=slow"); n != 1 {
		t.Errorf("slow was started %d times, want 1", n)
	}
}

func TestWatchDirExecBusyIsRetried(t *testing.T) {
	// Without the open-for-writing check (file systems without leases), a
	// binary written in full but still open is launched, exec fails with
	// ETXTBSY and the plugin is refused; it must be retried once the
	// writer closes it, although closing changes nothing the watcher sees.
	writersCheck.Store(false)
	t.Cleanup(func() { writersCheck.Store(true) })
	built := buildTestPlugins(t)
	h := newHarness(t, nil, nil)
	h.start()
	h.watch(DirWatchOptions{})

	content, err := os.ReadFile(filepath.Join(built, "dw-plugin-good"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(h.dir, "dw-plugin-busy"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	st := h.waitState("busy", StateRefused)
	wantContains(t, "last_error", st.LastError, "cannot start dw-plugin-busy", "text file busy")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	h.waitState("busy", StateServing)
	wantContains(t, "log", h.logs.String(), "plugin binary was busy (open for writing) when executed; retrying")
}

func TestWatchDirPicksUpWhatStartDeferred(t *testing.T) {
	// A binary written in full but still open when the host starts is
	// deferred by discovery; its writer closing it sends no event the
	// watcher listens to, so the poll must notice it.
	built := buildTestPlugins(t)
	h := newHarness(t, nil, nil)
	content, err := os.ReadFile(filepath.Join(built, "dw-plugin-good"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(h.dir, "dw-plugin-late"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	if !pathOpenForWriting(f.Name()) {
		t.Skip("this file system does not tell files open for writing (no leases)")
	}
	h.start()
	if st, ok := h.m.Status("late"); ok {
		t.Fatalf("a binary open for writing was taken up at start: %+v", st)
	}
	wantContains(t, "log", h.logs.String(), "open for writing by another process")
	h.watch(DirWatchOptions{PollInterval: 200 * time.Millisecond})
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	h.waitState("late", StateServing)
}

func TestWatchDirReplaceByRename(t *testing.T) {
	built := buildTestPlugins(t)
	h := newHarness(t, []string{"good"}, func(o *Options) {
		o.Specs = map[string]Spec{"good": {Enabled: true, Limits: map[string]any{"max_items": 5}}}
	})
	h.start()
	h.watch(DirWatchOptions{})
	ctx := context.Background()
	// Limits applied live since the start are what the new binary gets.
	if _, err := h.m.ApplyLimits(ctx, "good", map[string]any{"max_items": 9}, 2); err != nil {
		t.Fatal(err)
	}
	old := h.status("good")

	v2, sum2 := variant(t, filepath.Join(built, "dw-plugin-good"), "v2")
	renameIn(t, v2, filepath.Join(h.dir, "dw-plugin-good"))
	st := h.waitFor("good", "the new binary serving", func(s Status) bool {
		return s.State == StateServing && s.PID != old.PID && s.SHA256 == sum2
	})
	if !waitGone(old.PID, 10*time.Second) {
		t.Fatalf("old process %d still runs", old.PID)
	}
	if st.Restarts != 0 || st.Generation != 2 || st.LastError != "" {
		t.Fatalf("after the swap: %+v", st)
	}
	limits, gen, err := h.client("good").Limits(ctx)
	if err != nil || limits["max_items"] != int64(9) || gen != 2 {
		t.Fatalf("limits after the swap %v gen %d err %v", limits, gen, err)
	}
	line := h.waitLog("plugin swapped", "plugin=good", "took=", "previous_pid="+strconv.Itoa(old.PID))
	t.Logf("%s", line)
}

func TestWatchDirReplaceWithIncompatibleBuild(t *testing.T) {
	built := buildTestPlugins(t)
	h := newHarness(t, []string{"good"}, func(o *Options) {
		o.Specs = map[string]Spec{"good": {Enabled: true}}
	})
	h.start()
	h.watch(DirWatchOptions{})
	old := h.status("good")

	// A build with SDK 7 under the same name: refused, and the old
	// process is not brought back.
	renameIn(t, filepath.Join(built, "dw-plugin-sdk7"), filepath.Join(h.dir, "dw-plugin-good"))
	st := h.waitState("good", StateRefused)
	wantContains(t, "last_error", st.LastError, "dw-plugin-good was built with dw sdk 7.0.0", pluginhost.AcceptedRange(sdk.Version), pluginhost.GetCommand(sdk.Version))
	if st.PID != 0 {
		t.Fatalf("refused plugin has pid %d", st.PID)
	}
	if !waitGone(old.PID, 10*time.Second) {
		t.Fatalf("old process %d still runs", old.PID)
	}
	if _, err := h.m.Client("good"); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("client of the refused plugin: %v", err)
	}
	h.waitLog("replaced plugin binary refused", "plugin=good", "7.0.0")

	// The refusal does not stick: a good binary brings it back.
	v2, sum2 := variant(t, filepath.Join(built, "dw-plugin-good"), "v2")
	renameIn(t, v2, filepath.Join(h.dir, "dw-plugin-good"))
	st = h.waitFor("good", "the good binary serving", func(s Status) bool { return s.State == StateServing && s.SHA256 == sum2 })
	if st.LastError != "" {
		t.Fatalf("after recovery: %+v", st)
	}
}

func TestWatchDirTouchRetriesARefusedPlugin(t *testing.T) {
	h := newHarness(t, []string{"sdk7"}, nil)
	h.start()
	if st := h.status("sdk7"); st.State != StateRefused {
		t.Fatalf("sdk7: %+v", st)
	}
	h.watch(DirWatchOptions{})
	refusals := strings.Count(h.logs.String(), "plugin refused: plugin=sdk7")
	now := time.Now()
	if err := os.Chtimes(filepath.Join(h.dir, "dw-plugin-sdk7"), now, now); err != nil {
		t.Fatal(err)
	}
	h.waitLog("retrying a plugin left down, as its binary changed on disk", "plugin=sdk7")
	h.waitFor("sdk7", "a second refusal", func(s Status) bool {
		return s.State == StateRefused && strings.Count(h.logs.String(), "plugin refused: plugin=sdk7") > refusals
	})
}

func TestWatchDirRemove(t *testing.T) {
	h := newHarness(t, []string{"good"}, func(o *Options) {
		o.Specs = map[string]Spec{"good": {Enabled: true}}
	})
	testplugins.InstallAs(t, filepath.Join(buildTestPlugins(t), "dw-plugin-good"), filepath.Join(h.dir, "dw-plugin-loose"))
	h.start()
	h.watch(DirWatchOptions{})
	good, loose := h.status("good"), h.status("loose")

	for _, f := range []string{"dw-plugin-good", "dw-plugin-loose"} {
		if err := os.Remove(filepath.Join(h.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	st := h.waitState("good", StateMissing)
	wantContains(t, "last_error", st.LastError, "subsystems.good is enabled but plugins.dir "+h.dir+" has no dw-plugin-good")
	deadline := time.Now().Add(30 * time.Second)
	for _, ok := h.m.Status("loose"); ok; _, ok = h.m.Status("loose") {
		if time.Now().After(deadline) {
			t.Fatal("the removed plugin without a config section is still listed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, pid := range []int{good.PID, loose.PID} {
		if !waitGone(pid, 10*time.Second) {
			t.Fatalf("process %d of a removed binary still runs", pid)
		}
	}
	h.waitLog("plugin binary removed from plugins.dir; plugin stopped, its subsystem is missing", "plugin=good")
}

func TestWatchDirChecksumPinnedReplaced(t *testing.T) {
	built := buildTestPlugins(t)
	goodSum := sumOf(t, filepath.Join(built, "dw-plugin-good"))
	h := newHarness(t, []string{"good"}, func(o *Options) {
		o.Checksums = map[string]string{"dw-plugin-good": goodSum}
	})
	h.start()
	old := h.status("good")
	if old.State != StateServing {
		t.Fatalf("pinned plugin: %+v", old)
	}
	h.watch(DirWatchOptions{})

	v2, sum2 := variant(t, filepath.Join(built, "dw-plugin-good"), "v2")
	renameIn(t, v2, filepath.Join(h.dir, "dw-plugin-good"))
	st := h.waitState("good", StateRefused)
	wantContains(t, "last_error", st.LastError,
		"checksum mismatch for dw-plugin-good: file has sha256 "+sum2+", plugins.checksums pins "+goodSum)
	if !waitGone(old.PID, 10*time.Second) {
		t.Fatalf("old process %d still runs", old.PID)
	}
	h.waitLog("replaced plugin binary refused", "plugin=good", "checksum mismatch")
}

func TestWatchDirNonExecutableIgnoredUntilChmod(t *testing.T) {
	built := buildTestPlugins(t)
	h := newHarness(t, nil, nil)
	h.start()
	h.watch(DirWatchOptions{})

	content, err := os.ReadFile(filepath.Join(built, "dw-plugin-good"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(h.dir, ".incoming")
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(h.dir, "dw-plugin-noexec")
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
	h.waitLog("skipping file in plugins.dir", dst, "not executable")
	if st, ok := h.m.Status("noexec"); ok {
		t.Fatalf("a non-executable file was taken up: %+v", st)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	h.waitState("noexec", StateServing)
}

func TestWatchDirBurstOfReplacements(t *testing.T) {
	built := buildTestPlugins(t)
	h := newHarness(t, nil, nil)
	dst := filepath.Join(h.dir, "dw-plugin-burst")
	testplugins.InstallAs(t, filepath.Join(built, "dw-plugin-good"), dst)
	h.start()
	h.watch(DirWatchOptions{})
	first := h.status("burst")

	var srcs []string
	for i := range 4 {
		p, _ := variant(t, filepath.Join(built, "dw-plugin-good"), "burst"+strconv.Itoa(i))
		srcs = append(srcs, p)
	}
	last, lastSum := variant(t, filepath.Join(built, "dw-plugin-good"), "last")
	for i := range 19 {
		renameIn(t, srcs[i%len(srcs)], dst)
	}
	renameIn(t, last, dst)

	st := h.waitFor("burst", "the last binary serving", func(s Status) bool { return s.State == StateServing && s.SHA256 == lastSum })
	if !waitGone(first.PID, 10*time.Second) {
		t.Fatalf("first process %d still runs", first.PID)
	}
	// Only the current process runs from that path; every other that was
	// started during the burst is gone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := pluginProcesses(t, dst)
		if slices.Equal(pids, []int{st.PID}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of %s: %v, want only %d", dst, pids, st.PID)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("20 replacements started the plugin %d time(s) after the first start", strings.Count(h.logs.String(), "plugin serving: plugin=burst")-1)
}

func TestWatchDirFolderRemovedAndRecreated(t *testing.T) {
	built := buildTestPlugins(t)
	h := newHarness(t, []string{"good"}, nil)
	h.start()
	// No polling: everything below is seen by the watch (and the listing
	// that follows re-arming it), not by a poll that would hide a watch
	// never re-armed.
	h.watch(DirWatchOptions{PollInterval: -1})
	old := h.status("good")

	if err := os.RemoveAll(h.dir); err != nil {
		t.Fatal(err)
	}
	h.waitLog("watch on plugins.dir lost; re-arming")
	deadline := time.Now().Add(30 * time.Second)
	for _, ok := h.m.Status("good"); ok; _, ok = h.m.Status("good") {
		if time.Now().After(deadline) {
			t.Fatal("the plugin of a removed folder is still listed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !waitGone(old.PID, 10*time.Second) {
		t.Fatalf("process %d still runs", old.PID)
	}

	// The folder comes back: the watch re-arms and loads what it holds.
	if err := os.Mkdir(h.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	renameIn(t, filepath.Join(built, "dw-plugin-good"), filepath.Join(h.dir, "dw-plugin-back"))
	h.waitState("back", StateServing)
	h.waitLog("watching plugins.dir again")
	// And it watches again: a later drop is noticed too.
	renameIn(t, filepath.Join(built, "dw-plugin-good"), filepath.Join(h.dir, "dw-plugin-later"))
	h.waitState("later", StateServing)
}

func TestWatchDirSymlinkedFolderSwapped(t *testing.T) {
	// plugins.dir is a symlink whose target is swapped atomically, as
	// Kubernetes does with ..data: the watch follows the new folder.
	built := buildTestPlugins(t)
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	link := filepath.Join(root, "plugins")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(built, "dw-plugin-good")
	testplugins.InstallAs(t, good, filepath.Join(a, "dw-plugin-good"))
	testplugins.InstallAs(t, good, filepath.Join(b, "dw-plugin-good"))
	testplugins.InstallAs(t, good, filepath.Join(b, "dw-plugin-other"))
	h := newHarness(t, nil, func(o *Options) { o.Dir = link })
	h.start()
	h.watch(DirWatchOptions{PollInterval: 200 * time.Millisecond})
	goodPID := h.status("good").PID

	tmp := filepath.Join(root, ".plugins.tmp")
	if err := os.Symlink(b, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	h.waitLog("watch on plugins.dir lost; re-arming", "another folder")
	h.waitState("other", StateServing)
	if st := h.status("good"); st.PID != goodPID {
		t.Fatalf("good, the same file in both folders, was restarted: %+v", st)
	}
	// The watch is on the new folder now: later polls find nothing amiss.
	time.Sleep(5 * 200 * time.Millisecond)
	if n := strings.Count(h.logs.String(), "watch on plugins.dir lost"); n != 1 {
		t.Fatalf("the watch was re-armed %d times, want once", n)
	}
	if err := os.Remove(filepath.Join(b, "dw-plugin-other")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, ok := h.m.Status("other"); ok; _, ok = h.m.Status("other") {
		if time.Now().After(deadline) {
			t.Fatal("a removed binary is still listed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatchDirPollingAlone(t *testing.T) {
	built := buildTestPlugins(t)
	h := newHarness(t, nil, nil)
	h.start()
	h.watch(DirWatchOptions{PollInterval: 100 * time.Millisecond, noEvents: true})
	renameIn(t, filepath.Join(built, "dw-plugin-good"), filepath.Join(h.dir, "dw-plugin-polled"))
	h.waitState("polled", StateServing)
	if err := os.Remove(filepath.Join(h.dir, "dw-plugin-polled")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, ok := h.m.Status("polled"); ok; _, ok = h.m.Status("polled") {
		if time.Now().After(deadline) {
			t.Fatal("a removed binary is still listed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWatchDirBinaryGoneDuringCatchUp: a binary that appears after the
// watcher's baseline is loaded by its catch-up Rescan; removed before the
// first poll, it is in no listing the watcher compares, yet the plugin is
// still loaded. The poll finds the plugin whose binary vanished and
// removes it. (TestWatchDirPollingAlone raced into this case once.)
func TestWatchDirBinaryGoneDuringCatchUp(t *testing.T) {
	built := buildTestPlugins(t)
	h := newHarness(t, nil, nil)
	h.start()
	path := filepath.Join(h.dir, "dw-plugin-raced")
	h.watch(DirWatchOptions{PollInterval: 100 * time.Millisecond, noEvents: true,
		beforeCatchUp: func() { renameIn(t, filepath.Join(built, "dw-plugin-good"), path) },
		afterCatchUp: func() {
			if err := os.Remove(path); err != nil {
				t.Error(err)
			}
		}})
	h.waitLog("plugin binary appeared", "raced")
	deadline := time.Now().Add(30 * time.Second)
	for _, ok := h.m.Status("raced"); ok; _, ok = h.m.Status("raced") {
		if time.Now().After(deadline) {
			t.Fatal("a binary removed right after the catch-up Rescan is still listed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.waitLog("plugin binary removed", "raced")
}

func TestWatchDirOptionsAndLifecycle(t *testing.T) {
	h := newHarness(t, nil, nil)
	ctx := context.Background()
	if err := h.m.WatchDir(ctx, DirWatchOptions{}); err == nil || !strings.Contains(err.Error(), "call Start first") {
		t.Fatalf("before Start: %v", err)
	}
	h.start()
	if err := h.m.WatchDir(ctx, DirWatchOptions{Settle: -time.Second}); err == nil || !strings.Contains(err.Error(), "settle -1s: must not be negative") {
		t.Fatalf("negative settle: %v", err)
	}
	// Stopping the manager ends the watcher, with nil.
	done := make(chan error, 1)
	go func() { done <- h.m.WatchDir(ctx, DirWatchOptions{}) }()
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := h.m.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WatchDir after Stop: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WatchDir did not return after Stop")
	}
}

// Unit tests of the pure parts.

func TestDirWatcherRecoversFromWatcherErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("dw-plugin-same", "same")
	write("dw-plugin-changed", "v1")
	write("dw-plugin-gone", "x")
	logs := &syncbuf.Buffer{}
	d := &dirWatcher{dir: dir, opts: DirWatchOptions{Settle: DefaultSettle, PollInterval: time.Minute},
		log: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}), files: newSettler(DefaultSettle)}
	defer d.disarm()
	if !d.arm(time.Now()) {
		t.Fatalf("arm: %s", logs)
	}
	d.baseline()

	// Changes the events of which were lost.
	write("dw-plugin-changed", "v2 longer")
	write("dw-plugin-new", "n")
	write(".dw-plugin-tmp", "ignored")
	if err := os.Remove(filepath.Join(dir, "dw-plugin-gone")); err != nil {
		t.Fatal(err)
	}
	d.watchError(fsnotify.ErrEventOverflow, time.Now())
	wantContains(t, "log", logs.String(), "plugins.dir watcher overflowed")
	if d.w == nil {
		t.Fatal("an overflow dropped the watch")
	}
	got := slices.Sorted(maps.Keys(d.files.pending))
	if want := []string{"changed", "gone", "new"}; !slices.Equal(got, want) {
		t.Fatalf("pending after overflow %v, want %v", got, want)
	}

	// Any other error re-arms the watch.
	old := d.w
	d.watchError(errors.New("boom"), time.Now())
	if d.w == nil || d.w == old {
		t.Fatalf("not re-armed: %s", logs)
	}
	wantContains(t, "log", logs.String(), "watch on plugins.dir lost; re-arming", "reason=boom")
	wantContains(t, "log", logs.String(), "watching plugins.dir again")
}

func TestDirWatcherFolderBackBeforeTheRemovalIsHandled(t *testing.T) {
	// The folder is removed (here: renamed) and recreated before the loop
	// handles the removal (a loaded machine): lost re-arms at once, on the new folder,
	// and says so — the log must not end on "lost; re-arming".
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	d := &dirWatcher{dir: dir, opts: DirWatchOptions{Settle: DefaultSettle, PollInterval: time.Minute},
		log: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}), files: newSettler(DefaultSettle)}
	defer d.disarm()
	if !d.arm(time.Now()) {
		t.Fatalf("arm: %s", logs)
	}
	oldID := d.dirID
	// Renamed away rather than removed, so that the new folder cannot
	// reuse its inode.
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dw-plugin-back"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if dirIdentity(fi) == oldID {
		t.Fatal("the new folder has the old one's inode")
	}

	d.lost(time.Now(), "plugins.dir itself was removed or renamed")
	if d.w == nil {
		t.Fatalf("not re-armed: %s", logs)
	}
	if d.dirID != dirIdentity(fi) {
		t.Fatalf("re-armed on %+v, want the new folder %+v", d.dirID, dirIdentity(fi))
	}
	wantContains(t, "log", logs.String(), "watching plugins.dir again")
	if d.files.pending["back"] == nil {
		t.Fatalf("the new folder's binary is not pending: %v", slices.Sorted(maps.Keys(d.files.pending)))
	}
	// And the new watch works: a change is an event.
	if err := os.WriteFile(filepath.Join(dir, "dw-plugin-later"), []byte("y"), 0o755); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-d.w.Events:
		if filepath.Base(ev.Name) != "dw-plugin-later" {
			t.Fatalf("event %v, want one on dw-plugin-later", ev)
		}
	case err := <-d.w.Errors:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("no event from the re-armed watch within 30s")
	}
}

func TestPluginFileName(t *testing.T) {
	cases := []struct {
		base, name string
		invalid    bool
	}{
		{"dw-plugin-kvcache", "kvcache", false},
		{"dw-plugin-a_b-9", "a_b-9", false},
		{"dw-plugin-x.tmp", "", true},
		{"dw-plugin-x.partial", "", true},
		{"dw-plugin-x~", "", true},
		{"dw-plugin-Bad", "", true},
		{"dw-plugin-", "", true},
		{".dw-plugin-x.tmp", "", false},
		{"README", "", false},
	}
	for _, c := range cases {
		name, ok, invalid := pluginFileName(c.base)
		if name != c.name || ok != (c.name != "") || (invalid != "") != c.invalid {
			t.Errorf("%s: name %q ok %v invalid %q", c.base, name, ok, invalid)
		}
	}
}

func TestSettlerCoalescesABurst(t *testing.T) {
	s := newSettler(250 * time.Millisecond)
	t0 := time.Unix(1000, 0)
	st := func(size int64) fileState {
		return fileState{exists: true, id: fileID{ino: 1, size: size}, mode: 0o755}
	}
	// Twenty events 10ms apart, as a copy makes.
	for i := range 20 {
		s.touch("x", st(int64(i)), t0.Add(time.Duration(i)*10*time.Millisecond))
	}
	lastEvent := t0.Add(190 * time.Millisecond)
	if due := s.due(lastEvent.Add(249 * time.Millisecond)); len(due) != 0 {
		t.Fatalf("due before the window ended: %v", due)
	}
	next, ok := s.next()
	if !ok || !next.Equal(lastEvent.Add(250*time.Millisecond)) {
		t.Fatalf("next %v %v", next, ok)
	}
	if due := s.due(next); !slices.Equal(due, []string{"x"}) {
		t.Fatalf("due %v", due)
	}
	p, settled := s.confirm("x", st(19), next)
	if !settled || !p.first.Equal(t0) || !p.restart {
		t.Fatalf("confirm: %+v %v", p, settled)
	}
	if _, ok := s.next(); ok {
		t.Fatal("still pending after it settled")
	}
}

func TestSettlerRestartsTheWindowOnAChangeSeenLate(t *testing.T) {
	// Without events (polling), a change is only seen when the window
	// ends: the window starts again from then.
	s := newSettler(time.Second)
	t0 := time.Unix(1000, 0)
	a := fileState{exists: true, id: fileID{ino: 1, size: 10}}
	b := fileState{exists: true, id: fileID{ino: 1, size: 20}}
	if !s.observe("x", a, t0) {
		t.Fatal("a new file is a change")
	}
	if s.observe("x", a, t0.Add(500*time.Millisecond)) {
		t.Fatal("the same state is no change")
	}
	if _, settled := s.confirm("x", b, t0.Add(time.Second)); settled {
		t.Fatal("settled although it changed")
	}
	if next, _ := s.next(); !next.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("next %v", next)
	}
	p, settled := s.confirm("x", b, t0.Add(2*time.Second))
	if !settled || !p.first.Equal(t0) {
		t.Fatalf("confirm: %+v %v", p, settled)
	}
	// Removal settles too, and is then forgotten.
	if !s.observe("x", fileState{}, t0.Add(3*time.Second)) {
		t.Fatal("removal is a change")
	}
	if _, settled := s.confirm("x", fileState{}, t0.Add(4*time.Second)); !settled {
		t.Fatal("removal did not settle")
	}
	if _, ok := s.known["x"]; ok {
		t.Fatal("a removed file is still known")
	}
	if s.observe("x", fileState{}, t0.Add(5*time.Second)) {
		t.Fatal("an absent unknown file is no change")
	}
}

func TestSettlerPostponeAndRetry(t *testing.T) {
	s := newSettler(250 * time.Millisecond)
	t0 := time.Unix(1000, 0)
	a := fileState{exists: true, id: fileID{ino: 1, size: 10}}
	s.touch("x", a, t0)
	p, settled := s.confirm("x", a, t0.Add(250*time.Millisecond))
	if !settled {
		t.Fatal("not settled")
	}
	s.postpone("x", p, t0.Add(250*time.Millisecond), time.Second)
	if due := s.due(t0.Add(time.Second)); len(due) != 0 {
		t.Fatalf("due while postponed: %v", due)
	}
	if due := s.due(t0.Add(1250 * time.Millisecond)); !slices.Equal(due, []string{"x"}) {
		t.Fatalf("due %v", due)
	}
	if p.deferrals != 1 {
		t.Fatalf("deferrals %d", p.deferrals)
	}
	s.pending = map[string]*pendingFile{}
	s.retry("y", a, t0, 2*time.Second, false)
	if next, _ := s.next(); !next.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("retry due at %v", next)
	}
}

func TestDiscoverWaitsForYoungFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dw-plugin-a")
	if err := os.WriteFile(path, []byte("a"), 0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	changed := idOf(fi).changedAt()
	rules := func(now time.Time, slept *time.Duration, during func()) scanRules {
		return scanRules{settle: 250 * time.Millisecond, now: func() time.Time { return now }, sleep: func(d time.Duration) {
			*slept += d
			if during != nil {
				during()
			}
		}}
	}

	// Changed 50ms ago and unchanged while waiting: loaded after 200ms.
	var slept time.Duration
	found, skips, err := rules(changed.Add(50*time.Millisecond), &slept, nil).discover(dir, nil)
	if err != nil || found["a"] == nil || len(skips) != 0 || slept != 200*time.Millisecond {
		t.Fatalf("settled: found %v skips %v err %v slept %s", found, skips, err, slept)
	}
	known := found

	// Old enough: no wait.
	slept = 0
	if found, _, _ := rules(changed.Add(time.Second), &slept, nil).discover(dir, nil); found["a"] == nil || slept != 0 {
		t.Fatalf("old: found %v slept %s", found, slept)
	}

	// A time stamp in the future counts as "just now".
	slept = 0
	if found, _, _ := rules(changed.Add(-time.Hour), &slept, nil).discover(dir, nil); found["a"] == nil || slept != 250*time.Millisecond {
		t.Fatalf("future: found %v slept %s", found, slept)
	}

	// Written to while waiting: pending; a known binary of that name is
	// kept, a new one left out.
	grow := func() {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("more"))
		f.Close()
	}
	slept = 0
	found, skips, _ = rules(changed, &slept, grow).discover(dir, nil)
	if len(found) != 0 || len(skips) != 1 || !skips[0].pending || !strings.Contains(skips[0].reason, "still being written") {
		t.Fatalf("growing: found %v skips %+v", found, skips)
	}
	fi, _ = os.Stat(path)
	found, skips, _ = rules(idOf(fi).changedAt(), &slept, grow).discover(dir, known)
	if found["a"] != known["a"] || len(skips) != 1 || !strings.Contains(skips[0].reason, "keeps its current binary until then") {
		t.Fatalf("growing, known: found %v skips %+v", found, skips)
	}

	// The file prev knows, unchanged, is not waited for.
	fi, _ = os.Stat(path)
	sum, id, _ := hashFile(path)
	prev := map[string]*binary{"a": {path: path, sha256: sum, id: id}}
	slept = 0
	if found, _, _ := rules(idOf(fi).changedAt(), &slept, nil).discover(dir, prev); found["a"] != prev["a"] || slept != 0 {
		t.Fatalf("known and unchanged: found %v slept %s", found, slept)
	}
}

func TestDiscoverSkipsEmptyAndOpenFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dw-plugin-empty"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "dw-plugin-open")
	f, err := os.OpenFile(open, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.WriteString(f, "content"); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(time.Hour) // both are "old" for the settle rule
	rules := scanRules{settle: DefaultSettle, now: func() time.Time { return old }, sleep: func(time.Duration) { t.Fatal("slept") }}
	found, skips, err := rules.discover(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 0 {
		t.Fatalf("found %v", found)
	}
	var got []string
	for _, s := range skips {
		got = append(got, fmt.Sprintf("%s pending=%v %s", filepath.Base(s.path), s.pending, s.reason))
	}
	want := []string{"dw-plugin-empty pending=false empty file", "dw-plugin-open pending=true open for writing by another process"}
	if len(got) != 2 || !strings.HasPrefix(got[0], want[0]) || (pathOpenForWriting(open) && !strings.HasPrefix(got[1], want[1])) {
		t.Fatalf("skips %q\nwant %q", got, want)
	}
	f.Close()
	if found, _, _ := rules.discover(dir, nil); found["open"] == nil {
		t.Fatalf("closed file not found: %v", found)
	}
}

// BenchmarkSwapBinary measures the time from the rename of a new binary
// over a serving plugin's to the new process serving: the settle window,
// hashing, the graceful stop of the old process, spawn, handshake,
// GetInfo, Configure and ApplyLimits. settle=default is what an operator
// gets; settle=50ms shows the cost of the rest.
func BenchmarkSwapBinary(b *testing.B) {
	for _, c := range []struct {
		name   string
		settle time.Duration
	}{{"settle=default", 0}, {"settle=50ms", 50 * time.Millisecond}} {
		b.Run(c.name, func(b *testing.B) { benchmarkSwap(b, c.settle) })
	}
}

func benchmarkSwap(b *testing.B, settle time.Duration) {
	built := buildTestPlugins(b)
	h := newHarness(b, []string{"good"}, func(o *Options) {
		o.Specs = map[string]Spec{"good": {Enabled: true, Limits: map[string]any{"max_items": 5}}}
	})
	h.start()
	h.watch(DirWatchOptions{Settle: settle})
	v1, sum1 := variant(b, filepath.Join(built, "dw-plugin-good"), "a")
	v2, sum2 := variant(b, filepath.Join(built, "dw-plugin-good"), "b")
	dst := filepath.Join(h.dir, "dw-plugin-good")
	srcs, sums := []string{v1, v2}, []string{sum1, sum2}
	var total time.Duration
	n := 0
	for b.Loop() {
		i := n % 2
		old := h.status("good").PID
		tmp := filepath.Join(h.dir, ".dw-plugin-good.tmp")
		testplugins.InstallAs(b, srcs[i], tmp)
		t0 := time.Now()
		if err := os.Rename(tmp, dst); err != nil {
			b.Fatal(err)
		}
		for {
			st, _ := h.m.Status("good")
			if st.State == StateServing && st.PID != old && st.SHA256 == sums[i] {
				h.notePID(st.PID)
				break
			}
			if st.State == StateRefused {
				b.Fatalf("refused: %s", st.LastError)
			}
			time.Sleep(100 * time.Microsecond)
		}
		total += time.Since(t0)
		n++
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(n), "ms/op")
}
