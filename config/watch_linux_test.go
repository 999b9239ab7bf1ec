package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestWatchOverflow overflows the kernel's inotify queue for real: while the
// watcher is busy in onChange, more events than the queue holds
// (fs.inotify.max_queued_events) arrive, then the config file is written.
// That write's event is lost with the overflow, so only the re-arm's read
// can deliver it.
func TestWatchOverflow(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Skipf("inotify queue size unknown: %v", err)
	}
	queue, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("max_queued_events %q: %v", b, err)
	}
	if queue > 1<<17 {
		t.Skipf("fs.inotify.max_queued_events is %d: too many files to create for an overflow", queue)
	}
	// fsnotify reads up to 64 KiB of events ahead of the channel, 2048
	// events of 32 bytes or so: create well over the queue and that.
	files := queue + 8192

	path, hc := newConfigFile(t, "v: 1\n")
	dir := filepath.Dir(path)
	entered := make(chan struct{})
	release := make(chan struct{})
	hc.onChange = func(c Change) {
		if string(c.Content) == "v: 2\n" {
			close(entered)
			<-release
		}
	}
	h := startWatch(t, path, hc)

	writeFile(t, path, "v: 2\n")
	<-entered
	for i := range files {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("f%06d", i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	writeFile(t, path, "v: 3\n")
	close(release)

	h.expect("v: 2\n", "write")
	h.expect("v: 3\n", "rearm")
	if n := h.w.rearms.Load(); n < 1 {
		t.Errorf("%d re-arms after an overflow, want at least 1", n)
	}
	h.sentinel("v: 4\n")
}
