package host_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/datawarehouse/dw/host/internal/testplugins"
)

// These tests run the real `dw` binary with real plugin processes.

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries builds bin/dw and the kvcache example once per test process.
func binaries(t testing.TB) (dw, kvcache string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "dw-e2e-bin-")
		if buildErr != nil {
			return
		}
		for out, pkg := range map[string]string{"dw": "../cmd/dw", "dw-plugin-kvcache": "../examples/kvcache"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, out), pkg)
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "dw"), filepath.Join(buildDir, "dw-plugin-kvcache")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	testplugins.Cleanup()
	os.Exit(code)
}

// copyExec copies an executable into dir under name.
func copyExec(t testing.TB, src, dir, name string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// runningHost is a `dw serve` child process.
type runningHost struct {
	cmd    *exec.Cmd
	addr   string
	stderr *bytes.Buffer
	mu     *sync.Mutex
	done   chan struct{} // closed once the process has been waited for
	err    error         // its exit error, valid after done
}

func (h *runningHost) logs() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stderr.String()
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// startHost writes a config with the given plugins dir and starts dw serve,
// returning once the API address is logged.
func startHost(t testing.TB, pluginsDir string, extraYAML string, env ...string) *runningHost {
	t.Helper()
	dw, _ := binaries(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`server:
  listen: 127.0.0.1:0
log: {level: debug, format: json}
data_dir: %s
plugins:
  dir: %s
  start_timeout: 20s
%s`, filepath.Join(dir, "data"), pluginsDir, extraYAML)
	cfgPath := filepath.Join(dir, "dw.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dw, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	h := &runningHost{cmd: cmd, stderr: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			syncWriter{h.mu, h.stderr}.Write([]byte(line + "\n"))
			if !sent && strings.Contains(line, "dw host serving") {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) == nil {
					if a, ok := m["listen"].(string); ok {
						addrCh <- a
						sent = true
					}
				}
			}
		}
	}()
	go func() {
		h.err = cmd.Wait()
		pw.Close()
		close(h.done)
	}()
	t.Cleanup(func() {
		select {
		case <-h.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-h.done
		}
	})
	select {
	case h.addr = <-addrCh:
	case <-h.done:
		t.Fatalf("dw serve exited before serving: %v\n%s", h.err, h.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("dw serve did not start within 60s\n%s", h.logs())
	}
	return h
}

func (h *runningHost) get(t testing.TB, path string, out any) int {
	t.Helper()
	resp, err := http.Get("http://" + h.addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	}
	return resp.StatusCode
}

func (h *runningHost) post(t testing.TB, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+h.addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type pluginStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
	Error    string `json:"last_error"`
}

func (h *runningHost) plugins(t testing.TB) map[string]pluginStatus {
	t.Helper()
	var v struct {
		Plugins []pluginStatus `json:"plugins"`
	}
	h.get(t, "/v1/plugins", &v)
	out := map[string]pluginStatus{}
	for _, p := range v.Plugins {
		out[p.Name] = p
	}
	return out
}

// processGone reports whether pid no longer runs (absent, or a zombie
// waiting for its new parent to reap it).
func processGone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func setupPlugins(t testing.TB) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("process checks use /proc")
	}
	_, kvcache := binaries(t)
	dir := t.TempDir()
	copyExec(t, kvcache, dir, "dw-plugin-kvcache")
	copyExec(t, filepath.Join(testplugins.Build(t), "dw-plugin-good"), dir, "dw-plugin-good")
	return dir
}

func TestHostKill9LeavesNoPlugins(t *testing.T) {
	h := startHost(t, setupPlugins(t), "")
	ps := h.plugins(t)
	var pids []int
	for _, name := range []string{"kvcache", "good"} {
		p, ok := ps[name]
		if !ok || p.State != "serving" || p.PID <= 0 {
			t.Fatalf("plugin %s: %+v\n%s", name, p, h.logs())
		}
		pids = append(pids, p.PID)
	}
	if code := h.get(t, "/readyz", nil); code != 200 {
		t.Fatalf("readyz = %d", code)
	}

	// Drop-in third-party plugin: its own API through the host.
	code, body := h.post(t, "/v1/subsystems/kvcache/rpc/dw.kvcache.v1.Cache/Put", `{"key":"greeting","value":"aGVsbG8="}`)
	if code != 200 {
		t.Fatalf("put through host: %d %s", code, body)
	}
	code, body = h.post(t, "/v1/subsystems/kvcache/rpc/dw.kvcache.v1.Cache/Get", `{"key":"greeting"}`)
	if code != 200 || !strings.Contains(body, "aGVsbG8=") {
		t.Fatalf("get through host: %d %s", code, body)
	}

	killed := time.Now()
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-h.done
	for _, pid := range pids {
		waitFor(t, 2*time.Second, fmt.Sprintf("plugin pid %d to exit after kill -9 of the host", pid), func() bool { return processGone(pid) })
	}
	t.Logf("all plugins gone %v after kill -9 of the host", time.Since(killed).Round(time.Millisecond))
}

func TestHostSIGTERMIsGraceful(t *testing.T) {
	h := startHost(t, setupPlugins(t), "")
	ps := h.plugins(t)
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.done:
		if h.err != nil {
			t.Fatalf("dw serve exited with %v after SIGTERM\n%s", h.err, h.logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("dw serve did not exit within 30s of SIGTERM\n%s", h.logs())
	}
	for _, p := range ps {
		if p.PID > 0 && !processGone(p.PID) {
			t.Errorf("plugin %s (pid %d) still running after the host stopped", p.Name, p.PID)
		}
	}
	if !strings.Contains(h.logs(), "dw host stopped") {
		t.Errorf("no clean stop in the log:\n%s", h.logs())
	}
}

func TestHostRecoversPluginKill9(t *testing.T) {
	h := startHost(t, setupPlugins(t), "subsystems:\n  kvcache:\n    limits: {max_entries: 77}\n")
	before := h.plugins(t)["kvcache"]
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "kvcache to serve again", func() bool {
		p := h.plugins(t)["kvcache"]
		return p.State == "serving" && p.PID != before.PID && p.Restarts == 1
	})
	var lim struct {
		Limits map[string]any `json:"limits"`
	}
	if code := h.get(t, "/v1/subsystems/kvcache/limits", &lim); code != 200 || lim.Limits["max_entries"] != float64(77) {
		t.Fatalf("limits after restart: %d %v", code, lim.Limits)
	}
	if p := h.plugins(t)["good"]; p.State != "serving" || p.Restarts != 0 {
		t.Fatalf("the other plugin was disturbed: %+v", p)
	}
}

func TestServeRefusesBadStart(t *testing.T) {
	dw, _ := binaries(t)
	tests := []struct {
		name, yaml string
		want       string
	}{
		{"non-loopback without tokens", "server: {listen: 0.0.0.0:7071}\n", "not a loopback address"},
		{"unknown key", "server: {lisen: 127.0.0.1:1}\n", `server.lisen: unknown key (did you mean "listen"?)`},
		{"bad level", "log: {level: loud}\n", "log.level: must be one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dw.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, dw, "serve", "--config", path).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("dw serve should fail, got %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}
