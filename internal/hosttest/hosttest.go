// Package hosttest runs the real dw host for end-to-end tests and
// benchmarks of plugins: it builds bin/dw and plugin binaries once per test
// process (without -race: they are the product, measured as shipped),
// starts `dw serve` on a config of the test's making with a free port, and
// gives access to its API, logs and process ids.
//
// Call Cleanup from TestMain after m.Run to remove the build folder; every
// host started is killed at the end of its test.
package hosttest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/datawarehouse/dw/config"
)

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{} // package → binary path
)

// moduleRoot finds the folder holding go.mod, walking up from this file.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the module root")
	}
	return filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary builds the package (a path relative to the module root, such as
// "cmd/dw" or "plugins/dbstorage") once per test process and returns the
// path of the binary, named name.
func Binary(tb testing.TB, pkg, name string) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	root, err := moduleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	if buildDir == "" {
		if buildDir, err = os.MkdirTemp("", "dw-hosttest-"); err != nil {
			tb.Fatal(err)
		}
	}
	out := filepath.Join(buildDir, name)
	// pkg may lie in a module of its own (examples/<name>, sdk/...): build
	// it from the folder of the nearest go.mod.
	modDir, rel := root, "./"+pkg
	for d := pkg; d != "." && d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(root, d, "go.mod")); err == nil {
			r, _ := filepath.Rel(d, pkg)
			modDir, rel = filepath.Join(root, d), "./"+r
			break
		}
	}
	cmd := exec.Command("go", "build", "-o", out, rel)
	cmd.Dir = modDir
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./%s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

// Main runs a package's tests and removes the binaries they built: call
// it from TestMain when nothing else needs cleaning up.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// Cleanup removes the binaries built by Binary.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
		buildDir = ""
		built = map[string]string{}
	}
}

// Plugin builds plugins/<name> and installs it into dir as
// dw-plugin-<name>.
func Plugin(tb testing.TB, dir, name string) {
	tb.Helper()
	src := Binary(tb, "plugins/"+name, "dw-plugin-"+name)
	dst := filepath.Join(dir, "dw-plugin-"+name)
	if err := os.Link(src, dst); err == nil {
		return
	}
	data, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		tb.Fatal(err)
	}
}

// Host is a running `dw serve`.
type Host struct {
	// Addr is the API's host:port.
	Addr string
	// URL is "http://" + Addr, or "https://" + Addr for a host serving
	// TLS.
	URL string
	// DataDir is the host's data_dir; ConfigPath its config file;
	// PluginsDir its plugins.dir.
	DataDir, ConfigPath, PluginsDir string
	// Base is the host part of the config; Subsystems the rest.
	Base string
	// Token is sent as the bearer token by JSON (and so by Plugin and
	// WaitServing); StartWithTokens sets it to one of its tokens.
	Token string
	// Client makes the requests of Call and JSON; nil means
	// http.DefaultClient (set one that trusts the CA of a TLS host).
	Client *http.Client

	env  []string
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	err  error
}

// Start writes a config (the host part, then subsystemsYAML, which starts
// with "subsystems:") and starts dw serve with the plugins found in
// pluginsDir, returning when the API serves. env adds to the environment.
//
// A test brings the plugins it runs: a subsystem that the embedded
// defaults enable (the first-party plugins) but whose dw-plugin-<name> is
// not in pluginsDir is disabled through the environment
// (DW_SUBSYSTEMS__<NAME>__ENABLED=false), unless env sets that variable.
func Start(tb testing.TB, pluginsDir, subsystemsYAML string, env ...string) *Host {
	tb.Helper()
	return start(tb, pluginsDir, "", subsystemsYAML, env)
}

// StartServer is Start with serverYAML added under the config's server:
// key (indented by two spaces, e.g. "  tls:\n    cert_file: …\n"). A
// host serving TLS gets an https:// URL; Call and JSON then need Client.
func StartServer(tb testing.TB, pluginsDir, serverYAML, subsystemsYAML string, env ...string) *Host {
	tb.Helper()
	return start(tb, pluginsDir, serverYAML, subsystemsYAML, env)
}

// StartWithTokens is Start with bearer authentication: tokens maps each
// caller name to its token, passed to the host in environment variables.
func StartWithTokens(tb testing.TB, pluginsDir, subsystemsYAML string, tokens map[string]string, env ...string) *Host {
	tb.Helper()
	var auth strings.Builder
	auth.WriteString("  auth:\n    tokens:\n")
	for _, name := range slices.Sorted(maps.Keys(tokens)) {
		v := "DW_TEST_TOKEN_" + strings.ToUpper(name)
		fmt.Fprintf(&auth, "      - {name: %s, token_env: %s}\n", name, v)
		env = append(env, v+"="+tokens[name])
	}
	h := start(tb, pluginsDir, auth.String(), subsystemsYAML, env)
	if len(tokens) > 0 {
		h.Token = tokens[slices.Sorted(maps.Keys(tokens))[0]]
	}
	return h
}

// start writes the config, with serverYAML added under server:, and runs
// dw serve.
func start(tb testing.TB, pluginsDir, serverYAML, subsystemsYAML string, env []string) *Host {
	tb.Helper()
	dir := tb.TempDir()
	h := &Host{
		DataDir:    filepath.Join(dir, "data"),
		ConfigPath: filepath.Join(dir, "dw.yaml"),
		PluginsDir: pluginsDir,
		done:       make(chan struct{}),
	}
	h.Base = fmt.Sprintf("server:\n  listen: 127.0.0.1:0\n%slog: {level: debug, format: json}\ndata_dir: %s\nplugins:\n  dir: %s\n  start_timeout: 30s\n",
		serverYAML, h.DataDir, pluginsDir)
	if err := os.WriteFile(h.ConfigPath, []byte(h.Base+subsystemsYAML), 0o600); err != nil {
		tb.Fatal(err)
	}
	h.env = append(disableAbsent(tb, pluginsDir, env), env...)
	h.run(tb)
	return h
}

// disableAbsent returns the variables that disable each subsystem the
// embedded defaults enable whose plugin binary is not in pluginsDir and
// whose enabled variable env does not set.
func disableAbsent(tb testing.TB, pluginsDir string, env []string) []string {
	tb.Helper()
	def, err := config.Parse(config.DefaultYAML, "embedded defaults")
	if err != nil {
		tb.Fatalf("hosttest: parse the embedded defaults: %v", err)
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(def.Subsystems)) {
		if !def.Subsystems[name].Enabled {
			continue
		}
		if _, err := os.Stat(filepath.Join(pluginsDir, "dw-plugin-"+name)); err == nil {
			continue
		}
		v := "DW_SUBSYSTEMS__" + strings.ToUpper(name) + "__ENABLED"
		if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, v+"=") }) {
			out = append(out, v+"=false")
		}
	}
	return out
}

// Restart starts dw serve again on h's config file and data_dir, once h
// has exited (Kill it first): what an operator's restart after a crash
// does. The new Host listens on a new port; h's logs stay with h.
func (h *Host) Restart(tb testing.TB) *Host {
	tb.Helper()
	select {
	case <-h.done:
	default:
		tb.Fatal("hosttest: Restart of a host that is still running; Kill it first")
	}
	n := &Host{DataDir: h.DataDir, ConfigPath: h.ConfigPath, PluginsDir: h.PluginsDir, Base: h.Base, Token: h.Token, Client: h.Client,
		env: h.env, done: make(chan struct{})}
	n.run(tb)
	return n
}

// run starts dw serve on h.ConfigPath and returns once the API serves.
func (h *Host) run(tb testing.TB) {
	tb.Helper()
	dw := Binary(tb, "cmd/dw", "dw")
	h.cmd = exec.Command(dw, "serve", "--config", h.ConfigPath)
	h.cmd.Env = append(os.Environ(), h.env...)
	pr, pw := io.Pipe()
	h.cmd.Stderr = pw
	if err := h.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			h.mu.Lock()
			h.logs.WriteString(line + "\n")
			h.mu.Unlock()
			if !sent && strings.Contains(line, "dw host serving") {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) == nil {
					if a, ok := m["listen"].(string); ok {
						if m["tls"] == true {
							a = "https://" + a
						}
						addr <- a
						sent = true
					}
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		h.err = h.cmd.Wait()
		pw.Close()
		close(h.done)
	}()
	tb.Cleanup(h.Kill)
	select {
	case a := <-addr:
		if rest, ok := strings.CutPrefix(a, "https://"); ok {
			h.Addr, h.URL = rest, a
		} else {
			h.Addr, h.URL = a, "http://"+a
		}
	case <-h.done:
		tb.Fatalf("dw serve exited before serving: %v\n%s", h.err, h.Logs())
	case <-time.After(60 * time.Second):
		tb.Fatalf("dw serve did not start within 60s\n%s", h.Logs())
	}
}

// Logs returns what the host logged so far (JSON lines).
func (h *Host) Logs() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.logs.String()
}

// PID is the host's process id.
func (h *Host) PID() int { return h.cmd.Process.Pid }

// Signal sends sig to the host process.
func (h *Host) Signal(sig os.Signal) error { return h.cmd.Process.Signal(sig) }

// Done is closed once the host process has exited and been waited for.
func (h *Host) Done() <-chan struct{} { return h.done }

// Err is the host's exit error; valid once Done is closed.
func (h *Host) Err() error {
	<-h.done
	return h.err
}

// Kill kills the host with SIGKILL (its plugins exit with it) and waits.
func (h *Host) Kill() {
	select {
	case <-h.done:
	default:
		_ = h.cmd.Process.Signal(syscall.SIGKILL)
		<-h.done
	}
}

// Stop stops the host with SIGTERM and waits for it.
func (h *Host) Stop(tb testing.TB) {
	tb.Helper()
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(60 * time.Second):
		h.Kill()
		tb.Fatalf("dw serve did not stop within 60s of SIGTERM")
	}
}

// WriteConfig replaces the subsystems part of the config file (the host
// watches it and reloads).
func (h *Host) WriteConfig(tb testing.TB, subsystemsYAML string) {
	tb.Helper()
	tmp := h.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(h.Base+subsystemsYAML), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, h.ConfigPath); err != nil {
		tb.Fatal(err)
	}
}

// PluginStatus is one entry of GET /v1/plugins.
type PluginStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	PID      int    `json:"pid"`
	Restarts int    `json:"restarts"`
	Error    string `json:"last_error"`
}

// Plugin returns the status of the named plugin.
func (h *Host) Plugin(tb testing.TB, name string) PluginStatus {
	tb.Helper()
	var v struct {
		Plugins []PluginStatus `json:"plugins"`
	}
	if code := h.JSON(tb, "GET", "/v1/plugins", nil, &v); code != 200 {
		tb.Fatalf("GET /v1/plugins: %d", code)
	}
	for _, p := range v.Plugins {
		if p.Name == name {
			return p
		}
	}
	tb.Fatalf("plugin %q not listed", name)
	return PluginStatus{}
}

// WaitServing waits until the named plugin serves, failing after within.
func (h *Host) WaitServing(tb testing.TB, name string, within time.Duration) PluginStatus {
	tb.Helper()
	var st PluginStatus
	WaitFor(tb, within, "plugin "+name+" serving", func() bool {
		st = h.Plugin(tb, name)
		return st.State == "serving"
	})
	return st
}

// Metrics returns GET /v1/subsystems/{name}/metrics as name → value; of
// a metric with several label sets, the first one listed.
func (h *Host) Metrics(tb testing.TB, name string) map[string]float64 {
	tb.Helper()
	var out struct {
		Metrics []struct {
			Name  string  `json:"name"`
			Value float64 `json:"value"`
		} `json:"metrics"`
	}
	if code := h.JSON(tb, "GET", "/v1/subsystems/"+name+"/metrics", nil, &out); code != 200 {
		tb.Fatalf("GET /v1/subsystems/%s/metrics: %d", name, code)
	}
	m := map[string]float64{}
	for _, v := range out.Metrics {
		if _, ok := m[v.Name]; !ok {
			m[v.Name] = v.Value
		}
	}
	return m
}

// Call makes a request with an optional body (a string is sent as
// written, anything else as JSON) and returns the status and the answer's
// body (at most 64 MiB).
func (h *Host) Call(tb testing.TB, method, path string, body any) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.URL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if h.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.Token)
	}
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, data
}

// JSON makes a request with an optional JSON body (see Call) and decodes
// a JSON answer into out (when not nil), returning the status.
func (h *Host) JSON(tb testing.TB, method, path string, body, out any) int {
	tb.Helper()
	code, data := h.Call(tb, method, path, body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			tb.Fatalf("%s %s: %v\n%s", method, path, err, data)
		}
	}
	return code
}

// WaitFor polls cond every 20 ms until it holds, failing after within.
func WaitFor(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PeakRSS returns the peak resident set size (VmHWM) of a process, in
// bytes.
func PeakRSS(pid int) (int64, error) {
	return statusField(pid, "VmHWM:")
}

// RSS returns the resident set size (VmRSS) of a process, in bytes.
func RSS(pid int) (int64, error) {
	return statusField(pid, "VmRSS:")
}

func statusField(pid int, field string) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s of pid %d: %w", field, pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// ResetPeakRSS resets the VmHWM of a process to its current RSS (Linux
// 4.0+: write "5" to /proc/<pid>/clear_refs), so that a later PeakRSS
// measures only what follows.
func ResetPeakRSS(pid int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}
