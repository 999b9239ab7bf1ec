package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/datawarehouse/dw/host/internal/testplugins"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

func TestGoodPlugin(t *testing.T) {
	h := newHarness(t, []string{"good"}, func(o *Options) {
		o.Specs = map[string]Spec{"good": {Enabled: true, Limits: map[string]any{"max_items": 7, "mode": "safe"}}}
		o.Generation = 4
	})
	h.start()
	st := h.status("good")
	if st.State != StateServing || st.PID == 0 || st.Version != "0.0.1-test" || st.SDKVersion != sdk.Version ||
		st.ProtocolVersion != pluginhost.ProtocolVersion || st.Generation != 4 || st.StartedAt.IsZero() || st.Restarts != 0 || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
	sum, _, err := hashFile(filepath.Join(h.dir, "dw-plugin-good"))
	if err != nil {
		t.Fatal(err)
	}
	if st.SHA256 != sum || st.Path != filepath.Join(h.dir, "dw-plugin-good") {
		t.Fatalf("path %s sha256 %s, want %s", st.Path, st.SHA256, sum)
	}

	c := h.client("good")
	ctx := context.Background()
	limits, gen, err := c.Limits(ctx)
	if err != nil || limits["max_items"] != int64(7) || limits["mode"] != "safe" || gen != 4 {
		t.Fatalf("limits %v gen %d err %v", limits, gen, err)
	}
	if _, err := c.ValidateLimits(ctx, map[string]any{"max_items": 0}); !errors.Is(err, sdk.ErrInvalidLimits) || !strings.Contains(err.Error(), "limits.max_items") {
		t.Fatalf("validate max_items 0: %v", err)
	}
	if h, err := c.Health(ctx); err != nil || h.Status != sdk.HealthServing {
		t.Fatalf("health %+v %v", h, err)
	}
	if n := metric(t, c, "starts"); n != 1 {
		t.Fatalf("starts counted in the host KV = %v", n)
	}
	if pid := metric(t, c, "pid"); int(pid) != st.PID {
		t.Fatalf("plugin says pid %v, status %d", pid, st.PID)
	}
	// The plugin runs in its own process group, and with the host's pid.
	if pgid, err := syscall.Getpgid(st.PID); err != nil || pgid != st.PID {
		t.Fatalf("pgid of %d = %d, %v; want its own group", st.PID, pgid, err)
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(st.PID) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	wantContains(t, "plugin environment", string(env), pluginhost.EnvHostPID+"="+strconv.Itoa(os.Getpid())+"\x00", pluginhost.EnvLogLevel+"=debug\x00")

	// Manager.ApplyLimits applies live and is what a restart gets.
	applied, err := h.m.ApplyLimits(ctx, "good", map[string]any{"max_items": 9}, 5)
	if err != nil || applied["max_items"] != int64(9) || applied["mode"] != "fast" {
		t.Fatalf("apply: %v %v", applied, err)
	}
	if st := h.status("good"); st.Generation != 5 {
		t.Fatalf("generation after apply = %d", st.Generation)
	}
	if _, err := h.m.ApplyLimits(ctx, "good", map[string]any{"mode": "slow"}, 6); !errors.Is(err, sdk.ErrInvalidLimits) {
		t.Fatalf("apply bad limits: %v", err)
	}
	if err := h.m.Restart(ctx, "good"); err != nil {
		t.Fatal(err)
	}
	st2 := h.status("good")
	if st2.PID == st.PID || st2.State != StateServing || st2.Generation != 5 {
		t.Fatalf("after restart: %+v (old pid %d)", st2, st.PID)
	}
	h.notePID(st2.PID)
	limits, gen, err = h.client("good").Limits(ctx)
	if err != nil || limits["max_items"] != int64(9) || gen != 5 {
		t.Fatalf("limits after restart %v gen %d err %v", limits, gen, err)
	}
	// The old client fails. (Today a closed connection reads as
	// context.Canceled, as grpc reports it with codes.Canceled; the sdk
	// should map it to ErrPluginShutdown.)
	if _, _, err := c.Limits(ctx); !errors.Is(err, sdk.ErrPluginShutdown) && !errors.Is(err, context.Canceled) {
		t.Fatalf("old client after restart: %v, want ErrPluginShutdown", err)
	}
}

func TestRefusals(t *testing.T) {
	buildTestPlugins(t)
	h := newHarness(t, []string{"good", "crashstart", "stdout", "badproto", "sdk7", "sdk699"}, func(o *Options) {
		o.StartTimeout = 30 * time.Second
		o.Specs = map[string]Spec{
			"badsettings": {Enabled: true, Settings: map[string]any{"reject": "no such strategy"}},
			"badlimits":   {Enabled: true, Limits: map[string]any{"max_items": 0}},
			"applyfail":   {Enabled: true, Limits: map[string]any{"mode": "safe"}},
			"good":        {Enabled: true},
		}
	})
	good := filepath.Join(buildTestPlugins(t), "dw-plugin-good")
	testplugins.InstallAs(t, good, filepath.Join(h.dir, "dw-plugin-badsettings"))
	testplugins.InstallAs(t, good, filepath.Join(h.dir, "dw-plugin-badlimits"))
	testplugins.Install(t, h.dir, "applyfail")
	h.start()

	want := map[string][]string{
		"crashstart": {"dw-plugin-crashstart exited during start (exit status 1)", "cannot open /nonexistent/frobnicator.db: permission denied"},
		"stdout":     {`dw-plugin-stdout wrote to stdout before the handshake ("hello from plugin"): plugins must log to stderr`},
		"badproto":   {"dw-plugin-badproto speaks plugin protocol 2, this host speaks 1: rebuild the plugin with a dw sdk for this host"},
		"sdk7":       {"dw-plugin-sdk7", "7.0.0", pluginhost.AcceptedRange(sdk.Version), "rebuild the plugin against sdk 6 (in its module: go get github.com/datawarehouse/dw/sdk/v6@v6.1.0"},
		"sdk699":     {"dw-plugin-sdk699", "6.99.0", pluginhost.AcceptedRange(sdk.Version), "upgrade dw"},
		"badsettings": {"dw-plugin-badsettings failed while configuring it (its settings are subsystems.badsettings)",
			"subsystems.badsettings.reject: no such strategy"},
		"badlimits": {"dw-plugin-badlimits failed while configuring it with its limits (subsystems.badlimits.limits)", "limits.max_items"},
		"applyfail": {"dw-plugin-applyfail failed while configuring it", "apply limits: applyfail: cannot switch to safe mode: device busy"},
	}
	for name, subs := range want {
		st := h.status(name)
		if st.State != StateRefused {
			t.Errorf("%s: state %s, want refused (last error %q)", name, st.State, st.LastError)
			continue
		}
		wantContains(t, name+" last error", st.LastError, subs...)
		if st.PID != 0 {
			t.Errorf("%s: refused with pid %d", name, st.PID)
		}
		_, err := h.m.Client(name)
		if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), subs[0]) {
			t.Errorf("client of refused %s: %v", name, err)
		}
	}
	if st := h.status("good"); st.State != StateServing {
		t.Fatalf("good: %+v", st)
	}
	if _, err := h.client("good").Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Refused plugins stay down: no automatic retry.
	time.Sleep(100 * time.Millisecond)
	if st := h.status("crashstart"); st.State != StateRefused || st.Restarts != 0 {
		t.Fatalf("crashstart after a while: %+v", st)
	}
	// An operator restart tries again (and fails the same way).
	err := h.m.Restart(context.Background(), "stdout")
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "wrote to stdout") {
		t.Fatalf("restart of stdout: %v", err)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	h := newHarness(t, []string{"hang"}, func(o *Options) { o.StartTimeout = time.Second })
	h.start()
	st := h.status("hang")
	if st.State != StateRefused || st.PID != 0 {
		t.Fatalf("hang: %+v", st)
	}
	wantContains(t, "last error", st.LastError, "dw-plugin-hang did not complete the handshake within 1s (plugins.start_timeout)")
}

func TestKill9Restarts(t *testing.T) {
	h := newHarness(t, []string{"good"}, func(o *Options) {
		o.Specs = map[string]Spec{"good": {Enabled: true, Limits: map[string]any{"max_items": 3, "mode": "safe"}}}
		o.Generation = 2
	})
	h.start()
	st := h.status("good")
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st2 := h.waitFor("good", "serving with a new pid", func(s Status) bool { return s.State == StateServing && s.PID != st.PID })
	if st2.Restarts != 1 {
		t.Fatalf("restarts = %d", st2.Restarts)
	}
	if processAlive(st.PID) { // reaped before the restart
		t.Fatalf("old pid %d alive", st.PID)
	}
	c := h.client("good")
	limits, gen, err := c.Limits(context.Background())
	if err != nil || limits["max_items"] != int64(3) || limits["mode"] != "safe" || gen != 2 {
		t.Fatalf("limits after restart: %v gen %d %v", limits, gen, err)
	}
	if n := metric(t, c, "starts"); n != 2 {
		t.Fatalf("starts in the host KV = %v, want 2", n)
	}
	wantContains(t, "log", h.logs.String(), "plugin crashed; restarting after backoff", "killed by")
}

func TestCrashLoopQuarantine(t *testing.T) {
	crashFile := filepath.Join(t.TempDir(), "crash")
	h := newHarness(t, []string{"crashlater", "good"}, func(o *Options) {
		o.Backoff = Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond, QuarantineAfter: 3, Window: time.Minute}
		o.Specs = map[string]Spec{"crashlater": {Enabled: true, Settings: map[string]any{"crash_file": crashFile}}}
	})
	h.start()
	if st := h.status("crashlater"); st.State != StateServing {
		t.Fatalf("crashlater: %+v", st)
	}
	if err := os.WriteFile(crashFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	st := h.waitState("crashlater", StateQuarantined)
	wantContains(t, "last error", st.LastError, "quarantined after 3 crashes within 1m0s", "exit status 2", "crash file")
	if st.Restarts != 2 || st.PID != 0 {
		t.Fatalf("quarantined: %+v", st)
	}
	wantContains(t, "log", h.logs.String(), "plugin quarantined")
	if _, err := h.m.Client("crashlater"); !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "quarantined") {
		t.Fatalf("client of quarantined plugin: %v", err)
	}
	// It stays quarantined.
	time.Sleep(100 * time.Millisecond)
	if st := h.status("crashlater"); st.State != StateQuarantined {
		t.Fatalf("after a while: %+v", st)
	}
	if st := h.status("good"); st.State != StateServing {
		t.Fatalf("good: %+v", st)
	}
	// Fixed, and restarted by hand.
	if err := os.Remove(crashFile); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Restart(context.Background(), "crashlater"); err != nil {
		t.Fatal(err)
	}
	h.notePIDs()
	if st := h.status("crashlater"); st.State != StateServing || st.LastError != "" {
		t.Fatalf("after restart: %+v", st)
	}
}

func TestCrashAfterServingWithDefaultSettings(t *testing.T) {
	// crashlater without settings exits 300ms after Configure; with a large
	// QuarantineAfter it keeps being restarted.
	h := newHarness(t, []string{"crashlater"}, func(o *Options) {
		o.Backoff = Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond, QuarantineAfter: 100, Window: time.Minute}
	})
	h.start()
	st := h.waitFor("crashlater", "two restarts", func(s Status) bool { return s.Restarts >= 2 })
	if st.State == StateRefused || st.State == StateQuarantined {
		t.Fatalf("%+v", st)
	}
}

func TestChecksumPinning(t *testing.T) {
	src := filepath.Join(buildTestPlugins(t), "dw-plugin-good")
	sum, _, err := hashFile(src)
	if err != nil {
		t.Fatal(err)
	}
	wrong := strings.Repeat("ab", 32)
	h := newHarness(t, []string{"good"}, func(o *Options) {
		o.Checksums = map[string]string{"dw-plugin-good": strings.ToUpper(sum), "dw-plugin-other": wrong}
	})
	testplugins.InstallAs(t, src, filepath.Join(h.dir, "dw-plugin-other"))
	h.start()
	st := h.status("good")
	if st.State != StateServing || st.SHA256 != sum {
		t.Fatalf("pinned good: %+v", st)
	}
	// What runs is a private copy, not the file in plugins.dir.
	exe, err := os.Readlink("/proc/" + strconv.Itoa(st.PID) + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(exe, filepath.Join(h.data, "host", "plugin-exec-")) {
		t.Fatalf("pinned plugin runs %s, want a private copy under %s", exe, h.data)
	}
	other := h.status("other")
	if other.State != StateRefused {
		t.Fatalf("other: %+v", other)
	}
	wantContains(t, "last error", other.LastError,
		"checksum mismatch for dw-plugin-other: file has sha256 "+sum+", plugins.checksums pins "+wrong)
	if other.SHA256 != sum {
		t.Fatalf("refused status sha256 %s", other.SHA256)
	}
	// The private copies are gone once started.
	entries, _ := filepath.Glob(filepath.Join(h.data, "host", "plugin-exec-*", "*"))
	if len(entries) != 0 {
		t.Fatalf("private copies left: %v", entries)
	}
}

func TestStopKillsProcessGroup(t *testing.T) {
	h := newHarness(t, []string{"forker"}, nil)
	h.start()
	child := int(metric(t, h.client("forker"), "child_pid"))
	if child == 0 || !processAlive(child) {
		t.Fatalf("child %d not running", child)
	}
	if pgid, _ := syscall.Getpgid(child); pgid != h.status("forker").PID {
		t.Fatalf("child's group %d, plugin pid %d", pgid, h.status("forker").PID)
	}
	h.notePID(child)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// The group was sent SIGKILL before Stop returned; the kernel
	// finishes the child a moment later.
	if !waitGone(child, 10*time.Second) {
		t.Fatalf("child %d of the plugin survived Stop", child)
	}
	if err := h.m.Stop(ctx); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if st := h.status("forker"); st.State != StateStopped {
		t.Fatalf("after stop: %+v", st)
	}
	if err := h.m.Restart(ctx, "forker"); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Fatalf("restart after stop: %v", err)
	}
}

func TestCrashKillsChildren(t *testing.T) {
	h := newHarness(t, []string{"forker"}, nil)
	h.start()
	st := h.status("forker")
	child := int(metric(t, h.client("forker"), "child_pid"))
	h.notePID(child)
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitFor("forker", "serving again", func(s Status) bool { return s.State == StateServing && s.PID != st.PID })
	if !waitGone(child, 10*time.Second) {
		t.Fatalf("child %d of the crashed plugin survived", child)
	}
}

func TestDiscovery(t *testing.T) {
	h := newHarness(t, []string{"good"}, func(o *Options) {
		o.Specs = map[string]Spec{
			"off":     {Enabled: false},
			"absent":  {Enabled: true},
			"dormant": {Enabled: false},
		}
	})
	good := filepath.Join(buildTestPlugins(t), "dw-plugin-good")
	if err := os.WriteFile(filepath.Join(h.dir, "dw-plugin-noexec"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(h.dir, "dw-plugin-folder"), 0o755); err != nil {
		t.Fatal(err)
	}
	testplugins.InstallAs(t, good, filepath.Join(h.dir, "dw-plugin-Bad"))
	testplugins.InstallAs(t, good, filepath.Join(h.dir, "dw-plugin-x.tmp"))
	testplugins.InstallAs(t, good, filepath.Join(h.dir, "dw-plugin-off"))
	testplugins.InstallAs(t, good, filepath.Join(h.dir, "not-a-plugin"))
	if err := os.Symlink(filepath.Join(h.dir, "dw-plugin-good"), filepath.Join(h.dir, "dw-plugin-linked")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(h.dir, "nowhere"), filepath.Join(h.dir, "dw-plugin-dangling")); err != nil {
		t.Fatal(err)
	}
	h.start()

	var names []string
	for _, st := range h.m.Statuses() {
		names = append(names, st.Name+"="+string(st.State))
	}
	if got := strings.Join(names, " "); got != "absent=missing dormant=disabled good=serving linked=serving off=disabled" {
		t.Fatalf("statuses: %s", got)
	}
	logs := h.logs.String()
	for _, f := range []string{"dw-plugin-noexec", "dw-plugin-folder", "dw-plugin-Bad", "dw-plugin-x.tmp", "dw-plugin-dangling"} {
		wantContains(t, "log", logs, filepath.Join(h.dir, f))
	}
	wantContains(t, "log", logs, "not executable (mode -rw-r--r--)", "not a regular file", `is not a valid plugin name`, "cannot stat it")
	if strings.Contains(logs, "not-a-plugin") {
		t.Errorf("a file without the dw-plugin- prefix was mentioned:\n%s", logs)
	}
	absent := h.status("absent")
	wantContains(t, "absent", absent.LastError, "subsystems.absent is enabled but plugins.dir "+h.dir+" has no dw-plugin-absent")
	off := h.status("off")
	if off.Path == "" || off.SHA256 == "" || off.PID != 0 {
		t.Fatalf("disabled with a binary: %+v", off)
	}
	// Without a config section a plugin runs with its default limits.
	limits, _, err := h.client("good").Limits(context.Background())
	if err != nil || limits["max_items"] != int64(100) {
		t.Fatalf("default limits %v %v", limits, err)
	}
	if _, err := h.m.Client("nope"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("client of unknown: %v", err)
	}
	if _, err := h.m.Client("absent"); !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("client of missing: %v", err)
	}
	if err := h.m.Restart(context.Background(), "off"); !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "subsystems.off.enabled is false") {
		t.Fatalf("restart disabled: %v", err)
	}
	if err := h.m.Restart(context.Background(), "nope"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("restart unknown: %v", err)
	}
	// Warnings are not repeated by a rescan that finds the same files.
	if err := h.m.Rescan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(h.logs.String(), "dw-plugin-noexec"); n != 1 {
		t.Fatalf("noexec warned %d times", n)
	}
}

func TestRescan(t *testing.T) {
	built := buildTestPlugins(t)
	h := newHarness(t, []string{"good"}, func(o *Options) {
		o.Specs = map[string]Spec{"swap": {Enabled: true, Limits: map[string]any{"max_items": 5}}}
	})
	replace(t, filepath.Join(built, "dw-plugin-sdk7"), filepath.Join(h.dir, "dw-plugin-swap"))
	h.start()
	if st := h.status("swap"); st.State != StateRefused {
		t.Fatalf("swap: %+v", st)
	}
	goodPID := h.status("good").PID
	ctx := context.Background()

	// A new binary appears; a refused one (built with another SDK) is
	// replaced by a good build (a new file renamed over it, as installers
	// do); good is untouched.
	testplugins.Install(t, h.dir, "applyfail")
	replace(t, filepath.Join(built, "dw-plugin-good"), filepath.Join(h.dir, "dw-plugin-swap"))
	if err := h.m.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	h.notePIDs()
	if st := h.status("applyfail"); st.State != StateServing {
		t.Fatalf("new plugin: %+v", st)
	}
	st := h.status("swap")
	if st.State != StateServing {
		t.Fatalf("replaced plugin: %+v", st)
	}
	if limits, _, err := h.client("swap").Limits(ctx); err != nil || limits["max_items"] != int64(5) {
		t.Fatalf("replaced plugin limits %v %v", limits, err)
	}
	if h.status("good").PID != goodPID {
		t.Fatal("an unchanged plugin was restarted by a rescan")
	}

	// Binaries removed: one without a config section disappears, one with
	// becomes missing.
	for _, f := range []string{"dw-plugin-applyfail", "dw-plugin-swap"} {
		if err := os.Remove(filepath.Join(h.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.m.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.m.Status("applyfail"); ok {
		t.Fatal("removed plugin without config still listed")
	}
	if st := h.status("swap"); st.State != StateMissing || st.PID != 0 {
		t.Fatalf("removed configured plugin: %+v", st)
	}
	wantContains(t, "log", h.logs.String(), "plugin binary appeared", "plugin binary changed", "plugin binary removed")
}

func TestStopWhileStarting(t *testing.T) {
	h := newHarness(t, []string{"hang", "good"}, func(o *Options) { o.StartTimeout = time.Minute })
	started := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		started <- h.m.Start(ctx)
	}()
	h.waitFor("hang", "a process", func(s Status) bool {
		h.m.mu.Lock()
		defer h.m.mu.Unlock()
		p := h.m.plugins["hang"]
		if p != nil && p.run != nil && p.run.PID() != 0 {
			h.notePID(p.run.PID())
			return true
		}
		return false
	})
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		stopped <- h.m.Stop(ctx)
	}()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Stop waited for the handshake timeout of a hanging plugin")
	}
	if err := <-started; err != nil {
		t.Fatalf("start: %v", err)
	}
}

func TestRescanDuringHangingStart(t *testing.T) {
	h := newHarness(t, []string{"hang", "good"}, func(o *Options) { o.StartTimeout = time.Minute })
	started := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		started <- h.m.Start(ctx)
	}()
	h.waitFor("hang", "a process", func(Status) bool {
		h.m.mu.Lock()
		defer h.m.mu.Unlock()
		p := h.m.plugins["hang"]
		if p != nil && p.run != nil && p.run.PID() != 0 {
			h.notePID(p.run.PID())
			return true
		}
		return false
	})
	if err := os.Remove(filepath.Join(h.dir, "dw-plugin-hang")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.m.Rescan(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Rescan waited for the handshake timeout of a removed plugin")
	}
	if err := <-started; err != nil {
		t.Fatalf("start: %v", err)
	}
	if _, ok := h.m.Status("hang"); ok {
		t.Fatal("removed plugin still listed")
	}
	if st := h.status("good"); st.State != StateServing {
		t.Fatalf("good: %+v", st)
	}
}

func TestNewManagerValidation(t *testing.T) {
	cases := map[string]struct {
		opts Options
		want string
	}{
		"relative dir": {Options{Dir: "bin/plugins"}, `plugins.dir "bin/plugins": must be an absolute path`},
		"checksum key": {Options{Dir: "/x", Checksums: map[string]string{"good": strings.Repeat("a", 64)}}, `plugins.checksums: key "good"`},
		"checksum hex": {Options{Dir: "/x", Checksums: map[string]string{"dw-plugin-good": "abc"}}, `plugins.checksums.dw-plugin-good: "abc" is not a sha256`},
		"spec name":    {Options{Dir: "/x", Specs: map[string]Spec{"Bad": {}}}, `subsystems.Bad: invalid plugin name "Bad"`},
		"neg. timeout": {Options{Dir: "/x", StartTimeout: -time.Second}, "plugins.start_timeout -1s: must not be negative"},
	}
	for name, c := range cases {
		_, err := NewManager(c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	m, err := NewManager(Options{Dir: "/nonexistent/plugins"})
	if err != nil {
		t.Fatal(err)
	}
	// A plugins.dir that does not exist holds no plugins.
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(m.Statuses()) != 0 {
		t.Fatal(m.Statuses())
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// replace copies src to a temporary file beside dst and renames it over
// dst, as installers do.
func replace(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(dst), ".tmp-"+filepath.Base(dst))
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}
