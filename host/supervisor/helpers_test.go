package supervisor

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/host/internal/testplugins"
	"github.com/datawarehouse/dw/host/kvstore"
	"github.com/datawarehouse/dw/internal/syncbuf"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

func TestMain(m *testing.M) {
	code := func() int {
		defer testplugins.Cleanup()
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// buildTestPlugins builds the test plugin variants once per test process
// and returns the folder holding them.
func buildTestPlugins(t testing.TB) string {
	t.Helper()
	return testplugins.Build(t)
}

// harness is a plugins folder, a KV store and a manager over them; its
// cleanup stops the manager and checks that every process it saw is gone.
type harness struct {
	t    testing.TB
	dir  string
	data string
	logs *syncbuf.Buffer
	kv   *kvstore.Store
	opts Options
	m    *Manager

	mu   sync.Mutex
	pids map[int]bool
}

// newHarness installs variants into a fresh plugins folder and makes a
// manager with fast backoff; edit may change the options.
func newHarness(t testing.TB, variants []string, edit func(*Options)) *harness {
	t.Helper()
	buildTestPlugins(t)
	root := t.TempDir()
	h := &harness{t: t, dir: filepath.Join(root, "plugins"), data: filepath.Join(root, "data"), logs: &syncbuf.Buffer{}, pids: map[int]bool{}}
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testplugins.Install(t, h.dir, variants...)
	kv, err := kvstore.Open(filepath.Join(h.data, "host", "kv.db"))
	if err != nil {
		t.Fatal(err)
	}
	h.kv = kv
	h.opts = Options{
		Dir:          h.dir,
		StartTimeout: 10 * time.Second,
		DataDir:      h.data,
		HostVersion:  "0.0.0-test",
		Logger:       hclog.New(&hclog.LoggerOptions{Name: "dw", Level: hclog.Debug, Output: h.logs}),
		KV:           kv.ForPlugin,
		Backoff:      Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, QuarantineAfter: 5, Window: time.Minute},
	}
	if edit != nil {
		edit(&h.opts)
	}
	m, err := NewManager(h.opts)
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h.notePIDs()
	if err := h.m.Stop(ctx); err != nil {
		h.t.Errorf("stop: %v", err)
	}
	for _, st := range h.m.Statuses() {
		if st.PID != 0 {
			h.t.Errorf("%s still has pid %d after Stop (state %s)", st.Name, st.PID, st.State)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for pid := range h.pids {
		// A plugin is reaped before Stop returns; its children were sent
		// SIGKILL, which the kernel completes a moment later.
		if !waitGone(pid, 10*time.Second) {
			h.t.Errorf("process %d is still alive after Stop", pid)
			// Leave nothing behind, even when failing: kill it if it
			// still is one of ours.
			if cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); bytes.Contains(cmd, []byte("dw-plugin-")) || bytes.HasPrefix(cmd, []byte("sleep\x0060")) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if err := h.kv.Close(); err != nil {
		h.t.Error(err)
	}
	if h.t.Failed() {
		h.t.Logf("host log:\n%s", h.logs.String())
	}
}

// notePIDs records the pids of the plugins now running, for the check at
// cleanup.
func (h *harness) notePIDs() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, st := range h.m.Statuses() {
		if st.PID != 0 {
			h.pids[st.PID] = true
		}
	}
}

func (h *harness) notePID(pid int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pids[pid] = true
}

func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := h.m.Start(ctx); err != nil {
		h.t.Fatalf("start: %v", err)
	}
	h.notePIDs()
}

// waitFor polls the status of name until cond holds, for up to 30s.
func (h *harness) waitFor(name string, what string, cond func(Status) bool) Status {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, ok := h.m.Status(name)
		if ok && st.PID != 0 {
			h.notePID(st.PID)
		}
		if ok && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: waited 30s for %s; status %+v", name, what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) waitState(name string, state State) Status {
	h.t.Helper()
	return h.waitFor(name, "state "+string(state), func(st Status) bool { return st.State == state })
}

func (h *harness) status(name string) Status {
	h.t.Helper()
	st, ok := h.m.Status(name)
	if !ok {
		h.t.Fatalf("no status for %s", name)
	}
	return st
}

func (h *harness) client(name string) *pluginhost.Client {
	h.t.Helper()
	c, err := h.m.Client(name)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// metric returns a plugin metric's value.
func metric(t testing.TB, c *pluginhost.Client, name string) float64 {
	t.Helper()
	m, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range m.Values {
		if v.Name == name {
			return v.Value
		}
	}
	t.Fatalf("no metric %q in %+v", name, m.Values)
	return 0
}

// waitGone waits up to d for pid to be gone (or a zombie).
func waitGone(pid int, d time.Duration) bool {
	end := time.Now().Add(d)
	for processAlive(pid) {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return true
	}
	return s[i+2] != 'Z'
}

func wantContains(t testing.TB, what, got string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(got, s) {
			t.Errorf("%s = %q\nwant it to contain %q", what, got, s)
		}
	}
}

// processesWhere lists, sorted, the pids in /proc for which keep is true.
func processesWhere(t testing.TB, keep func(pid int) bool) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && keep(pid) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}
