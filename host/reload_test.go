package host_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host"
	"github.com/datawarehouse/dw/host/internal/testplugins"
	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/internal/syncbuf"
)

// These tests run a Host in process with real plugin processes, change its
// config file and reload it.

// reloadHost is a running Host over a config file in a temporary folder.
type reloadHost struct {
	t          testing.TB
	dir        string
	pluginsDir string
	cfgPath    string
	head       string // the host part of every config written
	logs       *syncbuf.Buffer
	logger     hclog.Logger
	h          *host.Host
	client     *http.Client
}

// newReloadHost installs the test plugin as each of names (dw-plugin-<name>;
// a name that is a variant, e.g. applyfail, gets that variant), writes a
// config with the subsystems section subsystemsYAML and starts a host on it.
// Cleanup shuts it down and checks for leaked goroutines.
func newReloadHost(t testing.TB, names []string, subsystemsYAML string) *reloadHost {
	t.Helper()
	build := testplugins.Build(t)
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })

	dir := t.TempDir()
	r := &reloadHost{t: t, dir: dir, pluginsDir: filepath.Join(dir, "plugins"), cfgPath: filepath.Join(dir, "dw.yaml"), logs: &syncbuf.Buffer{}}
	if err := os.MkdirAll(r.pluginsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		src := filepath.Join(build, "dw-plugin-"+n)
		if _, err := os.Stat(src); err != nil {
			src = filepath.Join(build, "dw-plugin-good")
		}
		testplugins.InstallAs(t, src, filepath.Join(r.pluginsDir, "dw-plugin-"+n))
	}
	r.head = fmt.Sprintf("server: {listen: 127.0.0.1:0}\nlog: {level: info, format: text}\ndata_dir: %s\nplugins: {dir: %s, start_timeout: 20s}\n",
		filepath.Join(dir, "data"), r.pluginsDir)
	r.write(subsystemsYAML)
	content, err := config.ReadFile(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(content, r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	r.logger = hclog.New(&hclog.LoggerOptions{Name: "dw", Level: hclog.Info, Output: r.logs})
	r.h, err = host.New(cfg, host.Options{ConfigPath: r.cfgPath, ConfigFileHash: config.HashContent(content), Logger: r.logger,
		Backoff: supervisor.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, QuarantineAfter: 5, Window: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	r.client = &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		r.client.CloseIdleConnections()
		pids := r.pids()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.h.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for name, pid := range pids {
			if !processGone(pid) {
				t.Errorf("plugin %s (pid %d) still runs after Shutdown", name, pid)
			}
		}
		if t.Failed() {
			t.Logf("host log:\n%s", r.logs.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// write writes the config file: the host part and subsystemsYAML.
func (r *reloadHost) write(subsystemsYAML string) {
	r.t.Helper()
	if err := os.WriteFile(r.cfgPath, []byte(r.head+subsystemsYAML), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// reload writes the config file and reloads it.
func (r *reloadHost) reload(subsystemsYAML string) host.ReloadResult {
	r.t.Helper()
	r.write(subsystemsYAML)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return r.h.ReloadFile(ctx, "test")
}

// candidate parses the host part with subsystemsYAML.
func (r *reloadHost) candidate(subsystemsYAML string) *config.Config {
	r.t.Helper()
	c, err := config.Parse([]byte(r.head+subsystemsYAML), "test")
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

func (r *reloadHost) mustOK(res host.ReloadResult) host.ReloadResult {
	r.t.Helper()
	if !res.OK {
		r.t.Fatalf("reload failed: %s\nresult: %+v", res.Error, res)
	}
	return res
}

func (r *reloadHost) mustFail(res host.ReloadResult) host.ReloadResult {
	r.t.Helper()
	if res.OK {
		r.t.Fatalf("reload succeeded, want it rejected: %+v", res)
	}
	return res
}

func (r *reloadHost) status(name string) supervisor.Status {
	r.t.Helper()
	st, ok := r.h.Plugins().Status(name)
	if !ok {
		r.t.Fatalf("no status for %s", name)
	}
	return st
}

// pids returns the pid of every running plugin.
func (r *reloadHost) pids() map[string]int {
	out := map[string]int{}
	for _, st := range r.h.Plugins().Statuses() {
		if st.PID != 0 {
			out[st.Name] = st.PID
		}
	}
	return out
}

// get GETs path from the API and decodes the JSON answer into out.
func (r *reloadHost) get(path string, out any) int {
	r.t.Helper()
	return r.do("GET", path, "", nil, out)
}

// do sends a request to the API and decodes the JSON answer into out.
func (r *reloadHost) do(method, path, body string, header http.Header, out any) int {
	r.t.Helper()
	req, err := http.NewRequest(method, "http://"+r.h.Addr()+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := r.client.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			r.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// limits returns a plugin's limits and generation as it reports them (GET
// /v1/subsystems/{name}/limits).
func (r *reloadHost) limits(name string) (map[string]any, uint64) {
	r.t.Helper()
	var body struct {
		Generation uint64         `json:"generation"`
		Limits     map[string]any `json:"limits"`
	}
	if code := r.get("/v1/subsystems/"+name+"/limits", &body); code != http.StatusOK {
		r.t.Fatalf("GET limits of %s: status %d", name, code)
	}
	return body.Limits, body.Generation
}

// wantLimits checks a plugin's max_items, mode and generation as it
// reports them.
func (r *reloadHost) wantLimits(name string, maxItems float64, mode string, gen uint64) {
	r.t.Helper()
	l, g := r.limits(name)
	if l["max_items"] != maxItems || l["mode"] != mode || g != gen {
		r.t.Errorf("%s reports limits %v generation %d, want max_items %v mode %s generation %d", name, l, g, maxItems, mode, gen)
	}
}

func (r *reloadHost) metric(name string) string {
	r.t.Helper()
	resp, err := r.client.Get("http://" + r.h.Addr() + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	r.t.Fatalf("no metric %s in /metrics", name)
	return ""
}

func wantProblem(t *testing.T, res host.ReloadResult, path, plugin string, msgParts ...string) {
	t.Helper()
	for _, p := range res.Problems {
		if p.Path == path && p.Plugin == plugin {
			for _, s := range msgParts {
				if !strings.Contains(p.Message, s) {
					t.Errorf("problem %q: want it to contain %q", p, s)
				}
			}
			if !strings.Contains(res.Error, path) {
				t.Errorf("error %q does not name %s", res.Error, path)
			}
			return
		}
	}
	t.Errorf("no problem at %s from plugin %q in %+v", path, plugin, res.Problems)
}

const fourPlugins = `subsystems:
  alpha: {limits: {max_items: 10}}
  beta: {limits: {max_items: 20}}
  gamma: {limits: {max_items: 30}}
  delta: {limits: {max_items: 40}}
`

// A limits change reaches every plugin at once, live: same processes, the
// new limits and generation as the plugins report them, the generation
// acknowledged by all (also the untouched one), and the metrics.
func TestReloadLimitsLive(t *testing.T) {
	r := newReloadHost(t, []string{"alpha", "beta", "gamma", "delta"}, fourPlugins)
	before := r.pids()
	r.wantLimits("alpha", 10, "fast", 1)

	res := r.mustOK(r.reload(`subsystems:
  alpha: {limits: {max_items: 11, mode: safe}}
  beta: {limits: {max_items: 21}}
  gamma: {limits: {max_items: 31.0}}
  delta: {limits: {max_items: 40.0}}
`))
	if res.Generation != 2 || len(res.Restarted) != 0 {
		t.Errorf("result %+v: want generation 2, nothing restarted", res)
	}
	want := []string{"subsystems.alpha.limits.max_items", "subsystems.alpha.limits.mode", "subsystems.beta.limits.max_items", "subsystems.gamma.limits.max_items"}
	if !slices.Equal(res.ChangedKeys, want) {
		t.Errorf("changed keys %q, want %q", res.ChangedKeys, want)
	}
	r.wantLimits("alpha", 11, "safe", 2)
	r.wantLimits("beta", 21, "fast", 2)
	r.wantLimits("gamma", 31, "fast", 2)
	// delta's limits did not change (40.0 is 40): it was not called, so it
	// reports the generation that applied them, but it runs generation 2.
	r.wantLimits("delta", 40, "fast", 1)
	if after := r.pids(); !maps.Equal(before, after) {
		t.Errorf("pids changed by a limits-only reload: %v → %v", before, after)
	}
	for _, st := range r.h.Plugins().Statuses() {
		if st.State == supervisor.StateServing && st.Generation != 2 {
			t.Errorf("%s acknowledges generation %d, want 2", st.Name, st.Generation)
		}
	}
	info := r.h.ConfigInfo()
	if info.Generation != 2 || info.LastReload == nil || !info.LastReload.OK || info.Hash != res.Hash || info.File != r.cfgPath {
		t.Errorf("config info %+v", info)
	}
	if g := r.metric("dw_config_generation"); g != "2" {
		t.Errorf("dw_config_generation = %s", g)
	}
	if v := r.metric("dw_config_last_reload_successful"); v != "1" {
		t.Errorf("dw_config_last_reload_successful = %s", v)
	}
	if v := r.metric(`dw_config_reloads_total{result="success"}`); v != "1" {
		t.Errorf("reloads_total success = %s", v)
	}
	if !strings.Contains(r.logs.String(), "config reloaded") {
		t.Errorf("no info log of the reload")
	}

	// The same content again: nothing to do, the generation stays.
	res = r.mustOK(r.h.ReloadFile(context.Background(), "test"))
	if res.Generation != 2 || len(res.ChangedKeys) != 0 {
		t.Errorf("no-op reload: %+v", res)
	}
}

// One plugin refusing its new limits in ValidateLimits rejects the whole
// reload: nothing is applied anywhere, the generation stays, and the error
// names the plugin and the key path: one problem per key, from the
// structured field problems the plugin sends.
func TestReloadValidateLimitsRefusal(t *testing.T) {
	r := newReloadHost(t, []string{"alpha", "beta", "gamma", "delta"}, fourPlugins)
	res := r.mustFail(r.reload(`subsystems:
  alpha: {limits: {max_items: 11}}
  beta: {limits: {max_items: 0, mode: ring}}
  gamma: {limits: {max_items: 31, bogus: 1}}
  delta: {limits: {max_items: 40}}
`))
	wantProblem(t, res, "subsystems.beta.limits.max_items", "beta", "plugin beta refused the new limits: must be >= 1, got 0")
	wantProblem(t, res, "subsystems.beta.limits.mode", "beta", `plugin beta refused the new limits: must be one of fast, safe, got "ring"`)
	wantProblem(t, res, "subsystems.gamma.limits.bogus", "gamma", "plugin gamma refused the new limits: unknown key; allowed: max_items, mode")
	if len(res.Problems) != 3 {
		t.Errorf("problems %+v, want 3", res.Problems)
	}
	if res.Generation != 1 {
		t.Errorf("generation %d after a rejected reload", res.Generation)
	}
	r.wantLimits("alpha", 10, "fast", 1)
	r.wantLimits("beta", 20, "fast", 1)
	r.wantLimits("gamma", 30, "fast", 1)
	info := r.h.ConfigInfo()
	if info.Generation != 1 || info.LastReload == nil || info.LastReload.OK || !strings.Contains(info.LastReload.Error, "subsystems.beta.limits.max_items") {
		t.Errorf("config info %+v", info)
	}
	if v := r.metric("dw_config_last_reload_successful"); v != "0" {
		t.Errorf("dw_config_last_reload_successful = %s", v)
	}
	if v := r.metric(`dw_config_reloads_total{result="failure"}`); v != "1" {
		t.Errorf("reloads_total failure = %s", v)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "config reload rejected") || !strings.Contains(logs, "subsystems.beta.limits.max_items") {
		t.Errorf("the error log does not name the key path:\n%s", logs)
	}
	// The running config is still the old one: a later valid reload diffs
	// against it.
	res = r.mustOK(r.reload(strings.Replace(fourPlugins, "max_items: 10", "max_items: 12", 1)))
	if res.Generation != 2 || !slices.Equal(res.ChangedKeys, []string{"subsystems.alpha.limits.max_items"}) {
		t.Errorf("reload after a rejected one: %+v", res)
	}
}

// A plugin that accepts ValidateLimits but fails ApplyLimits: the plugins
// that had applied their new limits get the previous ones back, and the
// generation stays.
func TestReloadApplyFailureRollsBack(t *testing.T) {
	r := newReloadHost(t, []string{"alpha", "beta", "applyfail"}, `subsystems:
  alpha: {limits: {max_items: 10}}
  beta: {limits: {max_items: 20}}
  applyfail: {limits: {max_items: 5}}
`)
	res := r.mustFail(r.reload(`subsystems:
  alpha: {limits: {max_items: 11}}
  beta: {limits: {max_items: 21, mode: safe}}
  applyfail: {limits: {max_items: 6, mode: safe}}
`))
	wantProblem(t, res, "subsystems.applyfail.limits.max_items", "applyfail", "plugin applyfail failed to apply the new limits", "device busy",
		"got their previous ones back")
	if res.Generation != 1 {
		t.Errorf("generation %d", res.Generation)
	}
	r.wantLimits("alpha", 10, "fast", 1)
	r.wantLimits("beta", 20, "fast", 1)
	r.wantLimits("applyfail", 5, "fast", 1)
	for _, name := range []string{"alpha", "beta", "applyfail"} {
		if st := r.status(name); st.State != supervisor.StateServing || st.Generation != 1 {
			t.Errorf("%s: %s generation %d", name, st.State, st.Generation)
		}
	}
	// A plugin restarted later gets the previous limits, not the refused
	// ones.
	if err := r.h.Plugins().Restart(context.Background(), "beta"); err != nil {
		t.Fatal(err)
	}
	r.wantLimits("beta", 20, "fast", 1)
}

// A settings change restarts only that plugin, with the new settings and
// limits; the others keep their process.
func TestReloadSettingsRestartOnlyThatPlugin(t *testing.T) {
	r := newReloadHost(t, []string{"alpha", "beta"}, `subsystems:
  alpha: {color: red, limits: {max_items: 10}}
  beta: {limits: {max_items: 20}}
`)
	before := r.pids()
	res := r.mustOK(r.reload(`subsystems:
  alpha: {color: blue, limits: {max_items: 12}}
  beta: {limits: {max_items: 21}}
`))
	if !slices.Equal(res.Restarted, []string{"alpha"}) || res.Generation != 2 {
		t.Errorf("result %+v: want alpha restarted, generation 2", res)
	}
	after := r.pids()
	if after["alpha"] == 0 || after["alpha"] == before["alpha"] {
		t.Errorf("alpha pid %d → %d: want a new process", before["alpha"], after["alpha"])
	}
	if after["beta"] != before["beta"] {
		t.Errorf("beta pid %d → %d: want the same process", before["beta"], after["beta"])
	}
	r.wantLimits("alpha", 12, "fast", 2)
	r.wantLimits("beta", 21, "fast", 2)
}

// Settings the plugin rejects at its restart: the previous settings are
// restored and the plugin serves again with them; the reload fails and the
// limits another plugin had applied are rolled back.
func TestReloadSettingsRejectedRestoresPrevious(t *testing.T) {
	r := newReloadHost(t, []string{"alpha", "beta"}, `subsystems:
  alpha: {color: red, limits: {max_items: 10}}
  beta: {limits: {max_items: 20}}
`)
	before := r.pids()
	res := r.mustFail(r.reload(`subsystems:
  alpha: {color: red, reject: "not today", limits: {max_items: 11}}
  beta: {limits: {max_items: 21}}
`))
	wantProblem(t, res, "subsystems.alpha.reject", "alpha", "did not start with the new settings", "not today", "previous section was restored")
	if !slices.Contains(res.Restarted, "alpha") {
		t.Errorf("restarted %q: want alpha", res.Restarted)
	}
	st := r.status("alpha")
	if st.State != supervisor.StateServing || st.PID == before["alpha"] || st.Generation != 1 {
		t.Errorf("alpha after the rollback: %+v", st)
	}
	r.wantLimits("alpha", 10, "fast", 1)
	r.wantLimits("beta", 20, "fast", 1)
	if r.h.ConfigInfo().Generation != 1 {
		t.Errorf("generation changed")
	}
	// The previous settings are in force: reloading them changes nothing
	// and restarts nothing.
	pid := st.PID
	res = r.mustOK(r.reload(`subsystems:
  alpha: {color: red, limits: {max_items: 10}}
  beta: {limits: {max_items: 20}}
`))
	if len(res.ChangedKeys) != 0 || r.status("alpha").PID != pid {
		t.Errorf("reloading the running config: %+v", res)
	}
}

// Enabling, disabling, adding and removing subsystems.
func TestReloadEnableDisableAddRemove(t *testing.T) {
	r := newReloadHost(t, []string{"alpha", "beta", "gamma", "crashstart"}, `subsystems:
  alpha: {limits: {max_items: 10}}
  beta: {enabled: false, limits: {max_items: 20}}
  crashstart: {enabled: false}
`)
	if st := r.status("beta"); st.State != supervisor.StateDisabled {
		t.Fatalf("beta: %s", st.State)
	}
	// gamma has no section: it runs as a drop-in with its default limits.
	r.wantLimits("gamma", 100, "fast", 1)
	alphaPID, gammaPID := r.status("alpha").PID, r.status("gamma").PID

	// Enable beta, disable alpha, give gamma a section with limits (live),
	// add ghost (no binary).
	res := r.mustOK(r.reload(`subsystems:
  alpha: {enabled: false, limits: {max_items: 10}}
  beta: {limits: {max_items: 20}}
  gamma: {limits: {max_items: 5}}
  ghost: {}
  crashstart: {enabled: false}
`))
	if !slices.Equal(res.Restarted, []string{"alpha", "beta"}) {
		t.Errorf("restarted %q, want alpha and beta", res.Restarted)
	}
	if st := r.status("alpha"); st.State != supervisor.StateDisabled || st.PID != 0 {
		t.Errorf("alpha: %+v", st)
	}
	waitFor(t, 10*time.Second, "alpha's process to be gone", func() bool { return processGone(alphaPID) })
	if st := r.status("beta"); st.State != supervisor.StateServing || st.Generation != 2 {
		t.Errorf("beta: %+v", st)
	}
	r.wantLimits("beta", 20, "fast", 2)
	r.wantLimits("gamma", 5, "fast", 2)
	if r.status("gamma").PID != gammaPID {
		t.Errorf("gamma restarted for a limits-only section")
	}
	if st := r.status("ghost"); st.State != supervisor.StateMissing {
		t.Errorf("ghost: %+v", st)
	}

	// Remove the sections of gamma (back to its defaults, live) and ghost
	// (forgotten); enable alpha again.
	res = r.mustOK(r.reload(`subsystems:
  alpha: {limits: {max_items: 10}}
  beta: {limits: {max_items: 20}}
  crashstart: {enabled: false}
`))
	if !slices.Equal(res.ChangedKeys, []string{"subsystems.alpha.enabled", "subsystems.gamma", "subsystems.ghost"}) {
		t.Errorf("changed keys %q", res.ChangedKeys)
	}
	r.wantLimits("gamma", 100, "fast", 3)
	if r.status("gamma").PID != gammaPID {
		t.Errorf("gamma restarted when its limits-only section went away")
	}
	if _, ok := r.h.Plugins().Status("ghost"); ok {
		t.Errorf("ghost is still listed after its section was removed")
	}
	if st := r.status("alpha"); st.State != supervisor.StateServing || st.Generation != 3 {
		t.Errorf("alpha: %+v", st)
	}

	// Enabling a subsystem whose plugin cannot start fails the reload; it
	// stays disabled.
	res = r.mustFail(r.reload(`subsystems:
  alpha: {limits: {max_items: 10}}
  beta: {limits: {max_items: 20}}
  crashstart: {}
`))
	wantProblem(t, res, "subsystems.crashstart.enabled", "crashstart", "could not be started", "frobnicator")
	if st := r.status("crashstart"); st.State != supervisor.StateDisabled {
		t.Errorf("crashstart after the rollback: %+v", st)
	}
	if r.h.ConfigInfo().Generation != 3 {
		t.Errorf("generation %d, want 3", r.h.ConfigInfo().Generation)
	}
}

// A plugin that was down before the reload (refused) is tried again when
// its section changes; if it stays down, that is a warning, not a failed
// reload.
func TestReloadRetriesRefusedPlugin(t *testing.T) {
	r := newReloadHost(t, []string{"alpha", "beta"}, `subsystems:
  alpha: {reject: "bad disk", limits: {max_items: 10}}
  beta: {limits: {max_items: 20}}
`)
	if st := r.status("alpha"); st.State != supervisor.StateRefused {
		t.Fatalf("alpha: %+v", st)
	}
	res := r.mustOK(r.reload(`subsystems:
  alpha: {reject: "still bad", limits: {max_items: 10}}
  beta: {limits: {max_items: 21}}
`))
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "still bad") || res.Generation != 2 {
		t.Errorf("result %+v: want a warning about alpha", res)
	}
	if st := r.status("alpha"); st.State != supervisor.StateRefused || !strings.Contains(st.LastError, "still bad") {
		t.Errorf("alpha: %+v", st)
	}
	r.wantLimits("beta", 21, "fast", 2)
	res = r.mustOK(r.reload(`subsystems:
  alpha: {limits: {max_items: 11}}
  beta: {limits: {max_items: 21}}
`))
	if !slices.Equal(res.Restarted, []string{"alpha"}) || len(res.Warnings) != 0 {
		t.Errorf("result %+v", res)
	}
	r.wantLimits("alpha", 11, "fast", 3)
}

// Keys that cannot change live reject the reload as a whole; log.level
// applies live.
func TestReloadHostKeys(t *testing.T) {
	r := newReloadHost(t, []string{"alpha"}, "subsystems:\n  alpha: {limits: {max_items: 10}}\n")
	head := r.head
	r.head = strings.Replace(head, "listen: 127.0.0.1:0", "listen: 127.0.0.1:7999", 1)
	r.head = strings.Replace(r.head, "format: text", "format: json", 1)
	res := r.mustFail(r.reload("subsystems:\n  alpha: {limits: {max_items: 11}}\n"))
	wantProblem(t, res, "server.listen", "", "cannot change while dw runs (127.0.0.1:0 → 127.0.0.1:7999); restart dw to apply")
	wantProblem(t, res, "log.format", "", "cannot change while dw runs (text → json)")
	r.wantLimits("alpha", 10, "fast", 1)

	r.head = strings.Replace(head, "data_dir: ", "data_dir: /elsewhere", 1)
	res = r.mustFail(r.reload("subsystems:\n  alpha: {limits: {max_items: 10}}\n"))
	wantProblem(t, res, "data_dir", "", "cannot change while dw runs")

	r.head = strings.Replace(head, "level: info", "level: debug", 1)
	r.head = strings.Replace(r.head, "start_timeout: 20s", "start_timeout: 15s", 1)
	r.mustOK(r.reload("subsystems:\n  alpha: {limits: {max_items: 10}}\n"))
	if r.logger.GetLevel() != hclog.Debug {
		t.Errorf("log level %s after reloading log.level: debug", r.logger.GetLevel())
	}
	if o := r.h.Plugins().LiveOptions(); o.StartTimeout != 15*time.Second || o.LogLevel != "debug" {
		t.Errorf("plugin start options %+v", o)
	}
}

// server.auth.tokens applies live: a token added is required at once, and
// removing it opens the (loopback) API again.
func TestReloadTokens(t *testing.T) {
	t.Setenv("DW_TEST_RELOAD_TOKEN", "s3cret-token-value")
	r := newReloadHost(t, []string{"alpha"}, "subsystems:\n  alpha: {}\n")
	if code := r.get("/v1/plugins", nil); code != http.StatusOK {
		t.Fatalf("GET /v1/plugins without tokens: %d", code)
	}
	head := r.head
	r.head = strings.Replace(head, "listen: 127.0.0.1:0}", "listen: 127.0.0.1:0, auth: {tokens: [{name: ops, token_env: DW_TEST_RELOAD_TOKEN}]}}", 1)
	r.mustOK(r.reload("subsystems:\n  alpha: {}\n"))
	if code := r.get("/v1/plugins", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/plugins without a token after adding one: %d", code)
	}
	if code := r.do("GET", "/v1/plugins", "", http.Header{"Authorization": {"Bearer s3cret-token-value"}}, nil); code != http.StatusOK {
		t.Errorf("GET /v1/plugins with the token: %d", code)
	}
	// The token variable is hidden from plugins started from now on.
	if o := r.h.Plugins().LiveOptions(); !slices.Contains(o.HiddenEnv, "DW_TEST_RELOAD_TOKEN") {
		t.Errorf("hidden env %q", o.HiddenEnv)
	}
	// A token whose variable is not set rejects the reload.
	r.head = strings.Replace(head, "listen: 127.0.0.1:0}", "listen: 127.0.0.1:0, auth: {tokens: [{name: ops, token_env: DW_TEST_RELOAD_UNSET}]}}", 1)
	r.write("subsystems:\n  alpha: {}\n")
	if _, err := config.Load(r.cfgPath); err == nil {
		t.Fatal("config.Load accepted a token whose variable is unset")
	}
	r.head = head
	r.mustOK(r.reload("subsystems:\n  alpha: {}\n"))
	if code := r.get("/v1/plugins", nil); code != http.StatusOK {
		t.Errorf("GET /v1/plugins after removing the tokens: %d", code)
	}
}

// A new pin must match the running binary; a wrong one rejects the reload.
func TestReloadChecksumPins(t *testing.T) {
	r := newReloadHost(t, []string{"alpha"}, "subsystems:\n  alpha: {}\n")
	sum := r.status("alpha").SHA256
	head := r.head
	wrong := strings.Repeat("ab", 32)
	r.head = strings.Replace(head, "start_timeout: 20s}", "start_timeout: 20s, checksums: {dw-plugin-alpha: "+wrong+"}}", 1)
	res := r.mustFail(r.reload("subsystems:\n  alpha: {}\n"))
	wantProblem(t, res, "plugins.checksums.dw-plugin-alpha", "alpha", "pins sha256 "+wrong, sum)
	r.head = strings.Replace(head, "start_timeout: 20s}", "start_timeout: 20s, checksums: {dw-plugin-alpha: "+sum+"}}", 1)
	r.mustOK(r.reload("subsystems:\n  alpha: {}\n"))
	if o := r.h.Plugins().LiveOptions(); o.Checksums["dw-plugin-alpha"] != sum {
		t.Errorf("checksums in force %v", o.Checksums)
	}
	// The pin is used at the next start.
	if err := r.h.Plugins().Restart(context.Background(), "alpha"); err != nil {
		t.Fatalf("restart of a pinned plugin: %v", err)
	}
}

// A file that does not parse is a failed reload, recorded with its key
// path.
func TestReloadUnparsableFile(t *testing.T) {
	r := newReloadHost(t, []string{"alpha"}, "subsystems:\n  alpha: {}\n")
	res := r.mustFail(r.reload("subsystems:\n  alpha: {}\nplugins: {dri: x}\n"))
	if len(res.Problems) == 0 || !strings.Contains(res.Error, "plugins") {
		t.Errorf("result %+v", res)
	}
	info := r.h.ConfigInfo()
	if info.LastReload == nil || info.LastReload.OK || info.Generation != 1 {
		t.Errorf("config info %+v", info)
	}
}

// Concurrent reloads are serialised: each gets its own generation, none is
// lost, and the plugins end with the limits of the last one.
func TestReloadConcurrent(t *testing.T) {
	r := newReloadHost(t, []string{"alpha", "beta"}, "subsystems:\n  alpha: {limits: {max_items: 1}}\n  beta: {limits: {max_items: 1}}\n")
	const n = 8
	results := make([]host.ReloadResult, n)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() { // readers see whole snapshots
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			info := r.h.ConfigInfo()
			if info.LastReload != nil && info.LastReload.OK && info.LastReload.Generation != info.Generation {
				t.Errorf("half-applied state: generation %d, last reload ok with generation %d", info.Generation, info.LastReload.Generation)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for i := range n {
		cand := r.candidate(fmt.Sprintf("subsystems:\n  alpha: {limits: {max_items: %d}}\n  beta: {limits: {max_items: %d}}\n", 100+i, 200+i))
		wg.Go(func() {
			results[i] = r.h.Reload(context.Background(), cand, fmt.Sprintf("test %d", i))
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	var gens []uint64
	last := -1
	for i, res := range results {
		if !res.OK {
			t.Fatalf("reload %d: %s", i, res.Error)
		}
		gens = append(gens, res.Generation)
		if res.Generation == n+1 {
			last = i
		}
	}
	slices.Sort(gens)
	for i, g := range gens {
		if g != uint64(i+2) {
			t.Fatalf("generations %v: want 2..%d, each once", gens, n+1)
		}
	}
	r.wantLimits("alpha", float64(100+last), "fast", n+1)
	r.wantLimits("beta", float64(200+last), "fast", n+1)
}

// GET /v1/config, POST /v1/config/reload and POST /v1/config/validate.
func TestConfigEndpoints(t *testing.T) {
	r := newReloadHost(t, []string{"alpha", "beta"}, "subsystems:\n  alpha: {limits: {max_items: 10}}\n  beta: {color: red}\n")
	var info struct {
		Generation uint64           `json:"generation"`
		File       string           `json:"file"`
		Hash       string           `json:"hash"`
		LoadedAt   time.Time        `json:"loaded_at"`
		LastReload *json.RawMessage `json:"last_reload"`
	}
	if code := r.get("/v1/config", &info); code != http.StatusOK || info.Generation != 1 || info.File != r.cfgPath ||
		len(info.Hash) != 64 || info.LoadedAt.IsZero() || info.LastReload != nil {
		t.Fatalf("GET /v1/config: %d %+v", code, info)
	}
	hash1 := info.Hash

	// Dry runs change nothing.
	pids := r.pids()
	var v struct {
		OK       bool `json:"ok"`
		Problems []struct {
			Path, Plugin, Message string
		} `json:"problems"`
		ChangedKeys []string `json:"changed_keys"`
		Restarts    []string `json:"restarts"`
	}
	cand := r.head + "subsystems:\n  alpha: {limits: {max_items: 11}}\n  beta: {color: blue}\n"
	if code := r.do("POST", "/v1/config/validate", cand, http.Header{"Content-Type": {"application/yaml"}}, &v); code != http.StatusOK || !v.OK ||
		!slices.Equal(v.ChangedKeys, []string{"subsystems.alpha.limits.max_items", "subsystems.beta.color"}) || !slices.Equal(v.Restarts, []string{"beta"}) {
		t.Errorf("validate a good candidate: %d %+v", code, v)
	}
	v.Problems = nil
	bad := r.head + "subsystems:\n  alpha: {limits: {max_items: -1}}\n  beta: {color: blue}\n"
	if code := r.do("POST", "/v1/config/validate", bad, nil, &v); code != http.StatusOK || v.OK || len(v.Problems) != 1 ||
		v.Problems[0].Path != "subsystems.alpha.limits.max_items" || v.Problems[0].Plugin != "alpha" {
		t.Errorf("validate refused limits: %d %+v", code, v)
	}
	v.Problems = nil
	if code := r.do("POST", "/v1/config/validate", "server: {lisen: x}\n", nil, &v); code != http.StatusOK || v.OK ||
		len(v.Problems) == 0 || v.Problems[0].Path != "server.lisen" {
		t.Errorf("validate an unparsable candidate: %d %+v", code, v)
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if code := r.do("POST", "/v1/config/validate", "", nil, &e); code != http.StatusBadRequest || e.Error.Code != "invalid_argument" {
		t.Errorf("validate an empty body: %d %+v", code, e)
	}
	big := "# " + strings.Repeat("x", config.MaxFileSize) + "\n"
	if code := r.do("POST", "/v1/config/validate", big, nil, &e); code != http.StatusRequestEntityTooLarge || e.Error.Code != "payload_too_large" {
		t.Errorf("validate a body over the limit: %d %+v", code, e)
	}
	if after := r.pids(); !maps.Equal(pids, after) {
		t.Errorf("dry runs changed pids: %v → %v", pids, after)
	}
	r.wantLimits("alpha", 10, "fast", 1)
	if g := r.h.ConfigInfo().Generation; g != 1 {
		t.Errorf("dry runs changed the generation to %d", g)
	}

	// A reload through the API re-reads the file.
	r.write("subsystems:\n  alpha: {limits: {max_items: 12}}\n  beta: {color: red}\n")
	var res host.ReloadResult
	if code := r.do("POST", "/v1/config/reload", "", nil, &res); code != http.StatusOK || !res.OK || res.Generation != 2 ||
		!slices.Equal(res.ChangedKeys, []string{"subsystems.alpha.limits.max_items"}) || !strings.HasPrefix(res.Source, "api") {
		t.Errorf("POST /v1/config/reload: %d %+v", code, res)
	}
	r.wantLimits("alpha", 12, "fast", 2)

	// A rejected reload answers 422 with the error and the result.
	r.write("subsystems:\n  alpha: {limits: {max_items: 0}}\n  beta: {color: red}\n")
	var rej struct {
		Error  struct{ Code, Message string } `json:"error"`
		Result host.ReloadResult              `json:"result"`
	}
	if code := r.do("POST", "/v1/config/reload", "", nil, &rej); code != http.StatusUnprocessableEntity || rej.Error.Code != "reload_rejected" ||
		!strings.Contains(rej.Error.Message, "subsystems.alpha.limits.max_items") || rej.Result.OK || rej.Result.Generation != 2 {
		t.Errorf("POST /v1/config/reload of a refused file: %d %+v", code, rej)
	}
	var info2 struct {
		Generation uint64            `json:"generation"`
		Hash       string            `json:"hash"`
		LastReload host.ReloadResult `json:"last_reload"`
	}
	if code := r.get("/v1/config", &info2); code != http.StatusOK || info2.Generation != 2 || info2.Hash == hash1 ||
		info2.LastReload.OK || !strings.Contains(info2.LastReload.Error, "max_items") || info2.LastReload.At.IsZero() ||
		!slices.Equal(info2.LastReload.ChangedKeys, []string{"subsystems.alpha.limits.max_items"}) {
		t.Errorf("GET /v1/config after a rejected reload: %+v", info2)
	}
}

// BenchmarkReloadLimits measures a reload that changes the limits of five
// plugins, from the call to every plugin having applied them (no file
// watching: see the watcher's figures for the settle window).
func BenchmarkReloadLimits(b *testing.B) {
	names := []string{"p1", "p2", "p3", "p4", "p5"}
	section := func(n int) string {
		var sb strings.Builder
		sb.WriteString("subsystems:\n")
		for _, name := range names {
			fmt.Fprintf(&sb, "  %s: {limits: {max_items: %d}}\n", name, n)
		}
		return sb.String()
	}
	r := newReloadHost(b, names, section(1))
	cands := []*config.Config{r.candidate(section(2)), r.candidate(section(3))}
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		if res := r.h.Reload(ctx, cands[i%2], "bench"); !res.OK {
			b.Fatal(res.Error)
		}
	}
}

// server.audit reloads live: a path under a file, or a folder, rejects
// the reload and keeps the audit log in force; a good one switches to it,
// making its missing folders (0700).
func TestReloadAudit(t *testing.T) {
	r := newReloadHost(t, []string{"alpha"}, "subsystems:\n  alpha: {limits: {max_items: 10}}\n")
	head := r.head
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{filepath.Join(file, "audit.log"), filepath.Join(file, "sub", "audit.log"), dir} {
		r.head = strings.Replace(head, "server: {listen: 127.0.0.1:0}", "server: {listen: 127.0.0.1:0, audit: {path: "+bad+"}}", 1)
		res := r.mustFail(r.reload("subsystems:\n  alpha: {limits: {max_items: 10}}\n"))
		wantProblem(t, res, "server.audit.path", "", "")
	}
	good := filepath.Join(dir, "missing", "audit.log")
	r.head = strings.Replace(head, "server: {listen: 127.0.0.1:0}", "server: {listen: 127.0.0.1:0, audit: {path: "+good+"}}", 1)
	r.mustOK(r.reload("subsystems:\n  alpha: {limits: {max_items: 10}}\n"))
	if fi, err := os.Stat(good); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit file after the reload: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(good)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("audit folder made by the reload: %v %v", fi, err)
	}
}
