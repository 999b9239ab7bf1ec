package sdktest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// binDir holds the plugins built by TestMain.
var binDir string

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if binDir != "" {
			_ = os.RemoveAll(binDir)
		}
		os.Exit(code)
	}))
}

// buildOnce builds the test plugins and kvcache into binDir.
var buildOnce = sync.OnceValue(func() error {
	dir, err := os.MkdirTemp("", "sdktest-bin-")
	if err != nil {
		return err
	}
	binDir = dir
	builds := [][]string{
		{"build", "-o", dir + "/", "./testdata/dw-plugin-chatty", "./testdata/dw-plugin-immortal", "./testdata/dw-plugin-lenient", "./testdata/dw-plugin-crashy", "./testdata/dw-plugin-panicky"},
		{"build", "-ldflags", "-X github.com/datawarehouse/dw/sdk/v6.reportedSDKVersion=5.0.0", "-o", dir + "/", "./testdata/dw-plugin-sloppy"},
		// kvcache is a module of its own: built from its folder.
		{"-C", "../../examples/kvcache", "build", "-o", filepath.Join(dir, "dw-plugin-kvcache"), "."},
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, args := range builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command("go", args...).CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
})

// testPlugin returns the path of a built test plugin.
func testPlugin(t *testing.T, name string) string {
	t.Helper()
	if err := buildOnce(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(binDir, "dw-plugin-"+name)
}

// check runs Check, logs the report and verifies that no process of the
// plugin outlives it.
func check(t *testing.T, path string, opts Options) Report {
	t.Helper()
	rep, err := Check(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", b.String())
	if left := runningFrom(path); len(left) > 0 {
		t.Errorf("processes of %s still running after Check: %v", path, left)
	}
	return rep
}

// runningFrom lists live processes whose executable is path (Linux only).
func runningFrom(path string) []int {
	if runtime.GOOS != "linux" {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == path {
			pids = append(pids, pid)
		}
	}
	return pids
}

// result finds a check in the report.
func result(t *testing.T, rep Report, name string) CheckResult {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in the report", name)
	return CheckResult{}
}

type want struct {
	state  string   // pass, fail or skip
	detail []string // substrings of the detail
}

func expect(t *testing.T, rep Report, wants map[string]want) {
	t.Helper()
	for name, w := range wants {
		c := result(t, rep, name)
		state := "fail"
		switch {
		case c.Skipped:
			state = "skip"
		case c.Passed:
			state = "pass"
		}
		if state != w.state {
			t.Errorf("%s: %s, want %s; detail:\n%s", name, state, w.state, c.Detail)
			continue
		}
		for _, s := range w.detail {
			if !strings.Contains(c.Detail, s) {
				t.Errorf("%s: detail does not contain %q:\n%s", name, s, c.Detail)
			}
		}
	}
}

func hostDeathState() string {
	if runtime.GOOS == "linux" {
		return "pass"
	}
	return "skip"
}

func TestKVCachePassesEverything(t *testing.T) {
	rep := check(t, testPlugin(t, "kvcache"), Options{
		ValidLimits: []map[string]any{{}, {"max_entries": 5, "max_bytes": "1KiB"}, {"max_bytes": 4096}},
		InvalidLimits: []map[string]any{
			{"max_entries": 0}, {"max_entries": -5}, {"max_bytes": "1000B"}, {"max_bytes": "lots"},
		},
	})
	if !rep.Passed() {
		t.Fatal("kvcache did not pass every check")
	}
	if len(rep.Checks) != 9 {
		t.Errorf("%d checks ran, want 9", len(rep.Checks))
	}
	if rep.Plugin != "kvcache" || rep.Info.Name != "kvcache" || rep.ProtocolVersion != 1 {
		t.Errorf("report names plugin %q, info %q, protocol %d", rep.Plugin, rep.Info.Name, rep.ProtocolVersion)
	}
	expect(t, rep, map[string]want{
		CheckGetInfo:        {"pass", []string{"kvcache 0.1.0 built with sdk 6.1.0", "dw.kvcache.v1.Cache"}},
		CheckValidateLimits: {"pass", []string{"accepted 4 valid candidates", "rejected 12 invalid ones"}},
		CheckApplyLimits:    {"pass", []string{"applied 3 candidates twice"}},
		CheckMetrics:        {"pass", []string{"backpressure none", "bytes, entries, evictions, hits, misses"}},
		CheckHealth:         {"pass", []string{"serving"}},
		CheckShutdown:       {"pass", []string{"exited with status 0"}},
		CheckHostDeath:      {hostDeathState(), nil},
	})
}

func TestChattyPluginFailsTheHandshake(t *testing.T) {
	rep := check(t, testPlugin(t, "chatty"), Options{})
	if rep.Passed() {
		t.Error("report passed")
	}
	hostDeath := want{state: hostDeathState()}
	if runtime.GOOS == "linux" {
		hostDeath.detail = []string{"it wrote a line to stdout before the handshake, which was skipped"}
	}
	expect(t, rep, map[string]want{
		CheckHandshake:      {"fail", []string{`wrote to stdout before the handshake: "starting the chatty plugin"`, "before sdk.Serve"}},
		CheckGetInfo:        {"skip", []string{"no connection to the plugin"}},
		CheckConfigure:      {"skip", nil},
		CheckValidateLimits: {"skip", nil},
		CheckApplyLimits:    {"skip", nil},
		CheckMetrics:        {"skip", nil},
		CheckHealth:         {"skip", nil},
		CheckShutdown:       {"skip", nil},
		CheckHostDeath:      hostDeath,
	})
}

func TestSloppyPluginFailsTheContractChecks(t *testing.T) {
	rep := check(t, testPlugin(t, "sloppy"), Options{
		InvalidLimits: []map[string]any{{"workers": -1}, {"workers": 1000}},
	})
	expect(t, rep, map[string]want{
		CheckHandshake: {"pass", nil},
		CheckGetInfo: {"fail", []string{
			"version is empty",
			"plugin sdk 5.0.0 has major version 5",
			`warning: the binary dw-plugin-sloppy is loaded as subsystem "sloppy", but the plugin says its name is "sloppy-plugin"`,
			`warning: name "sloppy-plugin" is not snake_case`,
		}},
		CheckConfigure: {"pass", nil},
		CheckValidateLimits: {"fail", []string{
			`accepted invalid limits {"workers":-1} (Options.InvalidLimits[0])`,
			`rejected {"workers":1000} (Options.InvalidLimits[1]), but the error does not name the key path "limits.": validate limits: invalid limits: too many workers`,
		}},
		CheckApplyLimits: {"fail", []string{
			"worker pool already started (these limits were already in force: ApplyLimits must be idempotent)",
			`ApplyLimits refused {"workers":-1} (Options.InvalidLimits[0]), but not with sdk.ErrInvalidLimits`,
		}},
		CheckMetrics: {"fail", []string{
			`metric "QueueDepth": name must be snake_case`,
			`metric jobs{kind="x"} appears more than once with the same labels`,
		}},
		// The SDK itself refuses to send an unknown status.
		CheckHealth:    {"fail", []string{"plugin bug: health status 9 is not serving, degraded or not_serving"}},
		CheckShutdown:  {"pass", nil},
		CheckHostDeath: {hostDeathState(), nil},
	})
	// The generated candidates are rejected by the SDK's decoding even
	// here: no failure names them.
	if d := result(t, rep, CheckValidateLimits).Detail; strings.Contains(d, unknownKey) {
		t.Errorf("the SDK should have rejected the unknown key with its path:\n%s", d)
	}
}

func TestImmortalPluginFailsShutdownAndHostDeath(t *testing.T) {
	start := time.Now()
	rep := check(t, testPlugin(t, "immortal"), Options{})
	hostDeath := want{state: "skip"}
	if runtime.GOOS == "linux" {
		hostDeath = want{"fail", []string{"still running 2s after its host", "must exit when its host dies", "the harness killed it"}}
	}
	expect(t, rep, map[string]want{
		CheckHandshake: {"pass", nil},
		CheckGetInfo:   {"fail", []string{"GetInfo: get info: unknown service dw.sdk.v1.ScalableSubsystem"}},
		CheckConfigure: {"fail", []string{"unknown service"}},
		CheckShutdown:  {"fail", []string{"go-plugin killed it with SIGKILL"}},
		CheckHostDeath: hostDeath,
	})
	t.Logf("took %v", time.Since(start))
}

func TestCheckRefusesWhatCannotRun(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "dw-plugin-x")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{"", "no plugin path given"},
		{filepath.Join(dir, "missing"), "no such file or directory"},
		{dir, "not a regular file"},
	}
	if runtime.GOOS != "windows" {
		tests = append(tests, struct{ path, want string }{notExec, "not executable (mode -rw-r--r--); chmod +x it"})
	}
	for _, tt := range tests {
		_, err := Check(context.Background(), tt.path, Options{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Check(%q) = %v, want an error containing %q", tt.path, err, tt.want)
		}
	}
}

func TestStartServesTheDomainService(t *testing.T) {
	c := Start(t, testPlugin(t, "kvcache"), Options{})
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Services) != 1 || info.Services[0] != "dw.kvcache.v1.Cache" {
		t.Errorf("services %v, want [dw.kvcache.v1.Cache]", info.Services)
	}
	l, gen, err := c.Limits(context.Background())
	if err != nil || gen != 0 || l["max_entries"] != int64(10000) {
		t.Errorf("Limits = %v, %d, %v; want the defaults at generation 0", l, gen, err)
	}
}

// TestImportsStayLean keeps sdktest within what a plugin author's module
// pulls in through sdk anyway.
func TestImportsStayLean(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := []string{
		"github.com/datawarehouse/dw/sdk/v6",
		"github.com/hashicorp/", "github.com/oklog/run", "github.com/golang/protobuf/",
		"github.com/fatih/color", "github.com/mattn/",
		"google.golang.org/grpc", "google.golang.org/protobuf", "google.golang.org/genproto/googleapis/rpc/",
		"golang.org/x/net/", "golang.org/x/sys/", "golang.org/x/text/",
	}
	for _, dep := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowed {
			ok = ok || strings.HasPrefix(dep, a)
		}
		if !ok || strings.HasPrefix(dep, "github.com/hashicorp/golang-lru") {
			t.Errorf("sdktest depends on %s, which is none of sdk, go-plugin, hclog, grpc, protobuf and theirs", dep)
		}
	}
}

// TestLenientPluginFailsTheLimitEdges: a plugin whose schema says rate >= 1
// but which accepts rate 0 fails, with the limit and the value named.
func TestLenientPluginFailsTheLimitEdges(t *testing.T) {
	rep := check(t, testPlugin(t, "lenient"), Options{})
	if rep.Passed() {
		t.Fatal("a plugin accepting limits outside its schema passed")
	}
	expect(t, rep, map[string]want{
		CheckHandshake: {"pass", nil},
		CheckGetInfo:   {"pass", nil},
		CheckValidateLimits: {"fail", []string{
			"accepted invalid limits limits.rate = 0 (below its minimum 1)",
			`accepted invalid limits limits.rate = "1" (a string instead of a number)`,
			"accepted invalid limits limits.sdktest_no_such_limit = 1 (an unknown key)",
		}},
		CheckApplyLimits: {"fail", []string{"ApplyLimits accepted invalid limits limits.sdktest_no_such_limit = 1 (an unknown key)"}},
	})
}

// TestCrashyPluginIsReportedAsACrash: a panic no handler can recover (in a
// goroutine of the plugin's) kills the process during Configure, which runs
// ApplyLimits: the check says so with the panic and its source line, and
// the checks after it on that process are skipped, not failed.
func TestCrashyPluginIsReportedAsACrash(t *testing.T) {
	rep := check(t, testPlugin(t, "crashy"), Options{})
	if rep.Passed() {
		t.Fatal("a crashing plugin passed")
	}
	expect(t, rep, map[string]want{
		CheckHandshake:      {"pass", nil},
		CheckGetInfo:        {"pass", nil},
		CheckConfigure:      {"fail", []string{"the plugin crashed: panic: assignment to entry in nil map (main.go:", "in main.startWorker)"}},
		CheckValidateLimits: {"skip", []string{"the plugin crashed in configure: panic: assignment to entry in nil map"}},
		CheckApplyLimits:    {"skip", nil},
		CheckMetrics:        {"skip", nil},
		CheckHealth:         {"skip", nil},
		CheckShutdown:       {"skip", nil},
		CheckHostDeath:      {hostDeathState(), nil},
	})
}

// TestPanickyPluginIsReportedWithItsPanic: a panic in ApplyLimits is
// recovered by the SDK; the check fails quoting it, with the source line,
// and the plugin keeps serving the checks after it.
func TestPanickyPluginIsReportedWithItsPanic(t *testing.T) {
	rep := check(t, testPlugin(t, "panicky"), Options{
		ValidLimits: []map[string]any{{}, {"workers": 500}},
	})
	if rep.Passed() {
		t.Fatal("a plugin that panics in ApplyLimits passed")
	}
	expect(t, rep, map[string]want{
		CheckConfigure:      {"pass", nil},
		CheckValidateLimits: {"pass", nil},
		CheckApplyLimits:    {"fail", []string{"panicked in ApplyLimits: pool of 500 workers does not fit (dw-plugin-panicky/main.go:"}},
		CheckMetrics:        {"pass", nil},
		CheckHealth:         {"pass", nil},
		CheckShutdown:       {"pass", nil},
	})
}
