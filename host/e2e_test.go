package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/datawarehouse/dw/host/internal/testplugins"
	"github.com/datawarehouse/dw/internal/hosttest"
)

// These tests run the real `dw` binary with real plugin processes.

// binaries builds bin/dw and the kvcache example once per test process.
func binaries(t testing.TB) (dw, kvcache string) {
	t.Helper()
	return hosttest.Binary(t, "cmd/dw", "dw"), hosttest.Binary(t, "examples/kvcache", "dw-plugin-kvcache")
}

func TestMain(m *testing.M) {
	code := m.Run()
	hosttest.Cleanup()
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

// runningHost is a `dw serve` child process (see internal/hosttest).
type runningHost struct {
	*hosttest.Host
	addr       string
	cfgPath    string // the config file dw serve watches
	pluginsDir string // its plugins.dir
	cfgBase    string // its host part; configWith appends subsystem sections
}

// configWith is the host's config file content with extra YAML appended.
func (h *runningHost) configWith(extra string) []byte {
	return []byte(h.cfgBase + extra)
}

func (h *runningHost) logs() string { return h.Logs() }

// startHost writes a config with the given plugins dir and starts dw serve,
// returning once the API address is logged.
func startHost(t testing.TB, pluginsDir string, extraYAML string, env ...string) *runningHost {
	t.Helper()
	// These tests bring their own plugins; hosttest disables the
	// first-party ones, which are not in their plugins folder.
	hh := hosttest.Start(t, pluginsDir, extraYAML, env...)
	return &runningHost{Host: hh, addr: hh.Addr, cfgPath: hh.ConfigPath, pluginsDir: hh.PluginsDir, cfgBase: hh.Base}
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

// TestHostKill9LeavesNoPlugins: after kill -9 of the host every plugin
// exits within two seconds, and through its graceful path: the good
// plugin's Shutdown runs although its stderr pipe has no reader any more.
func TestHostKill9LeavesNoPlugins(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "good-shutdown")
	h := startHost(t, setupPlugins(t), fmt.Sprintf("subsystems:\n  good:\n    shutdown_file: %q\n", marker))
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
	if err := h.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-h.Done()
	for _, pid := range pids {
		waitFor(t, 2*time.Second, fmt.Sprintf("plugin pid %d to exit after kill -9 of the host", pid), func() bool { return processGone(pid) })
	}
	t.Logf("all plugins gone %v after kill -9 of the host", time.Since(killed).Round(time.Millisecond))
	if b, err := os.ReadFile(marker); err != nil || string(b) != "shutdown\n" {
		t.Errorf("the good plugin's Shutdown did not run after kill -9 of the host: %q, %v", b, err)
	}
}

func TestHostSIGTERMIsGraceful(t *testing.T) {
	h := startHost(t, setupPlugins(t), "")
	ps := h.plugins(t)
	if err := h.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Done():
		if err := h.Err(); err != nil {
			t.Fatalf("dw serve exited with %v after SIGTERM\n%s", err, h.logs())
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

// dwCLI runs the dw client against h with the given environment.
func dwCLI(t testing.TB, h *runningHost, env []string, args ...string) (string, int) {
	t.Helper()
	dw, _ := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dw, args...)
	cmd.Env = append(os.Environ(), env...)
	if h != nil {
		cmd.Env = append(cmd.Env, "DW_ADDR="+h.addr)
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("dw %v: %v\n%s", args, err, out)
	return "", -1
}

func TestCLIAgainstHostWithAuth(t *testing.T) {
	const token = "s3cret-token-for-tests"
	h := startHost(t, setupPlugins(t), "subsystems:\n  kvcache:\n    limits: {max_entries: 42}\n",
		"DW_TEST_ADMIN_TOKEN="+token,
		"DW_SERVER__AUTH__TOKENS=[{name: admin, token_env: DW_TEST_ADMIN_TOKEN}]")
	auth := []string{"DW_TOKEN=" + token}

	// Without the token the API refuses, and the CLI says what to do.
	if code := h.get(t, "/v1/plugins", nil); code != http.StatusUnauthorized {
		t.Fatalf("GET /v1/plugins without a token: %d", code)
	}
	if code := h.get(t, "/healthz", nil); code != http.StatusOK {
		t.Fatalf("healthz needs no token: %d", code)
	}
	out, code := dwCLI(t, h, []string{"DW_TOKEN="}, "plugins")
	if code == 0 || !strings.Contains(out, "set DW_TOKEN") {
		t.Fatalf("dw plugins without a token: exit %d\n%s", code, out)
	}
	if strings.Contains(h.logs(), token) {
		t.Fatal("the token appears in the host log")
	}
	// Plugins do not inherit the token's variable.
	for name, p := range h.pluginsWithToken(t, token) {
		environ, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(environ), token) {
			t.Errorf("plugin %s sees the API token in its environment", name)
		}
		if !strings.Contains(string(environ), "DW_HOST_PID=") {
			t.Errorf("plugin %s environment lacks DW_HOST_PID: the check reads the wrong process", name)
		}
	}

	out, code = dwCLI(t, h, auth, "status")
	if code != 0 || !strings.Contains(out, "ready") || !regexpMatch(`kvcache\s+serving\s+0\.1\.0\s+6\.1\.0`, out) {
		t.Fatalf("dw status: exit %d\n%s", code, out)
	}
	out, code = dwCLI(t, h, auth, "plugins", "-o", "json")
	var pl struct {
		Plugins []struct {
			Name, State, SHA256 string
			ProtocolVersion     int `json:"protocol_version"`
		} `json:"plugins"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &pl) != nil || len(pl.Plugins) < 2 {
		t.Fatalf("dw plugins -o json: exit %d\n%s", code, out)
	}
	for _, p := range pl.Plugins {
		if (p.Name == "kvcache" || p.Name == "good") && (len(p.SHA256) != 64 || p.ProtocolVersion != 1) {
			t.Errorf("plugin %s: sha256 %q protocol %d", p.Name, p.SHA256, p.ProtocolVersion)
		}
	}
	out, code = dwCLI(t, h, auth, "limits", "kvcache")
	if code != 0 || !regexpMatch(`max_entries\s+42`, out) || !regexpMatch(`max_bytes\s+"64MiB"`, out) {
		t.Fatalf("dw limits kvcache: exit %d\n%s", code, out)
	}
	out, code = dwCLI(t, h, auth, "metrics", "kvcache", "-o", "json")
	if code != 0 || !strings.Contains(out, `"backpressure": "none"`) || !strings.Contains(out, `"entries"`) {
		t.Fatalf("dw metrics kvcache -o json: exit %d\n%s", code, out)
	}
	out, code = dwCLI(t, h, auth, "limits", "nosuch")
	if code == 0 || !strings.Contains(out, "404") {
		t.Fatalf("dw limits nosuch: exit %d\n%s", code, out)
	}
	out, code = dwCLI(t, h, auth, "limits", "kvcache", "-o", "yaml")
	if code == 0 || !strings.Contains(out, "must be table or json") {
		t.Fatalf("bad -o: exit %d\n%s", code, out)
	}
	out, code = dwCLI(t, nil, nil, "version")
	if code != 0 || !strings.Contains(out, "sdk 6.1.0") {
		t.Fatalf("dw version: exit %d\n%s", code, out)
	}
}

func TestCLIPluginCheck(t *testing.T) {
	_, kvcache := binaries(t)
	out, code := dwCLI(t, nil, nil, "plugin", "check", kvcache)
	if code != 0 || strings.Count(out, "✓") < 9 {
		t.Fatalf("dw plugin check kvcache: exit %d\n%s", code, out)
	}
	dir := t.TempDir()
	copyExec(t, filepath.Join(testplugins.Build(t), "dw-plugin-stdout"), dir, "dw-plugin-stdout")
	out, code = dwCLI(t, nil, nil, "plugin", "check", filepath.Join(dir, "dw-plugin-stdout"))
	if code != 2 || !strings.Contains(out, "wrote to stdout before the handshake") {
		t.Fatalf("dw plugin check on a chatty plugin: exit %d\n%s", code, out)
	}
	out, code = dwCLI(t, nil, nil, "plugin", "check", filepath.Join(dir, "nope"))
	if code != 1 || !strings.Contains(out, "nope") {
		t.Fatalf("dw plugin check on a missing file: exit %d\n%s", code, out)
	}
}

// pluginsWithToken is plugins() for a host that requires a token.
func (h *runningHost) pluginsWithToken(t testing.TB, token string) map[string]pluginStatus {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+h.addr+"/v1/plugins", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Plugins []pluginStatus `json:"plugins"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	out := map[string]pluginStatus{}
	for _, p := range v.Plugins {
		if p.PID > 0 {
			out[p.Name] = p
		}
	}
	if len(out) < 2 {
		t.Fatalf("want 2 running plugins, got %v", v.Plugins)
	}
	return out
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

// SIGHUP rescans plugins.dir: a dropped-in binary starts, a removed one
// stops, and the host keeps serving throughout.
func TestSIGHUPRescansPluginsDir(t *testing.T) {
	_, kvcache := binaries(t)
	dir := t.TempDir()
	copyExec(t, filepath.Join(testplugins.Build(t), "dw-plugin-good"), dir, "dw-plugin-good")
	h := startHost(t, dir, "")
	if _, ok := h.plugins(t)["kvcache"]; ok {
		t.Fatal("kvcache loaded before it was dropped in")
	}
	// Drop in the way installers do: write elsewhere, rename into place.
	copyExec(t, kvcache, dir, ".dw-plugin-kvcache.partial")
	if err := os.Rename(filepath.Join(dir, ".dw-plugin-kvcache.partial"), filepath.Join(dir, "dw-plugin-kvcache")); err != nil {
		t.Fatal(err)
	}
	if err := h.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "kvcache to serve after SIGHUP", func() bool {
		return h.plugins(t)["kvcache"].State == "serving"
	})
	pid := h.plugins(t)["kvcache"].PID
	if err := os.Remove(filepath.Join(dir, "dw-plugin-kvcache")); err != nil {
		t.Fatal(err)
	}
	if err := h.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "kvcache to stop after its binary was removed", func() bool {
		_, listed := h.plugins(t)["kvcache"]
		return !listed && processGone(pid)
	})
	if p := h.plugins(t)["good"]; p.State != "serving" || p.Restarts != 0 {
		t.Fatalf("the other plugin was disturbed: %+v", p)
	}
}

// dw config validate / diff / reload / show against a running host.
func TestCLIConfigCommands(t *testing.T) {
	h := startLiveHost(t, 10)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	// good0's limits change (live); good1's settings change (a restart).
	writeFile(t, good, h.configWith("subsystems:\n  good0:\n    limits: {max_items: 90}\n  good1:\n    limits: {max_items: 90}\n    note: changed\n"))
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, h.configWith(strings.Replace(limitsYAML(90), "max_items: 90", "max_items: 0", 1)))
	typo := filepath.Join(dir, "typo.yaml")
	writeFile(t, typo, []byte("server: {lisen: 127.0.0.1:1}\n"))

	out, code := dwCLI(t, nil, nil, "config", "validate", typo)
	if code != 2 || !strings.Contains(out, `server.lisen: unknown key (did you mean "listen"?)`) {
		t.Fatalf("offline validate of a typo: exit %d\n%s", code, out)
	}
	out, code = dwCLI(t, nil, nil, "config", "validate", bad)
	if code != 0 || !strings.Contains(out, "valid (offline check") {
		t.Fatalf("offline validate cannot judge plugin limits: exit %d\n%s", code, out)
	}
	out, code = dwCLI(t, h, nil, "config", "validate", "--live", bad)
	if code != 2 || !strings.Contains(out, "REJECTED") || !strings.Contains(out, "limits.max_items") {
		t.Fatalf("live validate of bad limits: exit %d\n%s", code, out)
	}
	pidsBefore := h.plugins(t)
	out, code = dwCLI(t, h, nil, "config", "diff", good)
	if code != 0 || !regexpMatch(`subsystems\.good0\.limits\.max_items\s+live`, out) || !strings.Contains(out, "restarts good1") {
		t.Fatalf("config diff: exit %d\n%s", code, out)
	}
	// Dry runs changed nothing.
	if !appliedEverywhere(t, h, 10) {
		t.Fatal("a dry run changed limits")
	}
	for name, p := range h.plugins(t) {
		if p.PID != pidsBefore[name].PID {
			t.Fatalf("a dry run restarted %s", name)
		}
	}
	// The good file is now the config; an explicit reload applies it.
	data, _ := os.ReadFile(good)
	writeFile(t, h.cfgPath, data)
	out, code = dwCLI(t, h, nil, "config", "reload")
	if code != 0 {
		t.Fatalf("config reload: exit %d\n%s", code, out)
	}
	waitApplied(t, h, 90)
	out, code = dwCLI(t, h, nil, "config", "show")
	if code != 0 || !strings.Contains(out, `"generation"`) || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("config show: exit %d\n%s", code, out)
	}
}
