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
	"github.com/datawarehouse/dw/internal/hosttest"
	"github.com/datawarehouse/dw/sdk/v6"
)

// gone reports whether no process has the pid (reaped, not a zombie).
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// TestProbe: a probed plugin answers GetInfo with its schema and
// ValidateLimits with its struct's rules, is never configured, and is gone
// after Stop.
func TestProbe(t *testing.T) {
	dir := t.TempDir()
	testplugins.Install(t, dir, "good")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Probe(ctx, filepath.Join(dir, "dw-plugin-good"), ProbeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if p.Info.Name != "good" || p.Info.Schema == nil || len(p.Info.Schema.Limits) != 2 {
		t.Fatalf("info = %+v, want good with a schema of 2 limits", p.Info)
	}
	if probs := p.Info.Schema.CheckLimits(map[string]any{"max_items": 0}); len(probs) != 1 || probs[0].Path != "limits.max_items" {
		t.Errorf("schema check of max_items 0 = %v", probs)
	}
	if _, err := p.Client.ValidateLimits(ctx, map[string]any{"max_items": 0}); !errors.Is(err, sdk.ErrInvalidLimits) {
		t.Errorf("ValidateLimits(max_items 0) = %v, want ErrInvalidLimits", err)
	}
	h, err := p.Client.Health(ctx)
	if err != nil || h.Status != sdk.HealthNotServing || !strings.Contains(h.Message, "Configure") {
		t.Errorf("health of a probed plugin = %+v, %v; want not serving, waiting for Configure", h, err)
	}
	pid := p.PID
	p.Stop()
	p.Stop()
	if !gone(pid) {
		t.Errorf("pid %d still exists after Stop", pid)
	}
}

func TestProbeLegacy(t *testing.T) {
	dir := t.TempDir()
	hosttest.InstallLegacyPlugin(t, dir)
	p, err := Probe(context.Background(), filepath.Join(dir, "dw-plugin-kvcache"), ProbeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if p.Info.SDKVersion != "6.0.0" || p.Info.Schema != nil {
		t.Errorf("sdk 6.0 plugin: sdk %s, schema %+v; want 6.0.0 and none", p.Info.SDKVersion, p.Info.Schema)
	}
}

// TestProbeFailures: a start that fails is explained, and leaves nothing
// running.
func TestProbeFailures(t *testing.T) {
	dir := t.TempDir()
	testplugins.Install(t, dir, "crashstart", "good")
	notExec := filepath.Join(dir, "dw-plugin-text")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		opts       ProbeOptions
		want       string
	}{
		{"missing", filepath.Join(dir, "dw-plugin-none"), ProbeOptions{}, "cannot stat it"},
		{"not executable", notExec, ProbeOptions{}, "not executable"},
		{"crash", filepath.Join(dir, "dw-plugin-crashstart"), ProbeOptions{}, "exited during start"},
		{"checksum", filepath.Join(dir, "dw-plugin-good"), ProbeOptions{SHA256: strings.Repeat("0", 64)}, "checksum mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Probe(context.Background(), tc.path, tc.opts)
			if err == nil {
				p.Stop()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestBinaryPath(t *testing.T) {
	dir := t.TempDir()
	testplugins.Install(t, dir, "good")
	if p, err := BinaryPath(dir, "good"); err != nil || p != filepath.Join(dir, "dw-plugin-good") {
		t.Errorf("BinaryPath(good) = %q, %v", p, err)
	}
	if _, err := BinaryPath(dir, "dbstorage"); err == nil || !strings.Contains(err.Error(), "no dw-plugin-dbstorage in plugins.dir") {
		t.Errorf("BinaryPath(dbstorage) = %v", err)
	}
	bins, skipped, err := Binaries(dir)
	if err != nil || len(bins) != 1 || bins["good"] == "" || len(skipped) != 0 {
		t.Errorf("Binaries = %v, %v, %v", bins, skipped, err)
	}
	if bins, _, err := Binaries(filepath.Join(dir, "nope")); err != nil || len(bins) != 0 {
		t.Errorf("Binaries of a missing folder = %v, %v", bins, err)
	}
	// A file the host would skip is named with the reason, not left out
	// in silence.
	notExec := filepath.Join(dir, "dw-plugin-notexec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bins, skipped, err = Binaries(dir)
	if err != nil || len(bins) != 1 || skipped[notExec] == "" {
		t.Errorf("Binaries with a file that is not executable = %v, %v, %v", bins, skipped, err)
	}
}

// TestProbeHidesTokensAndRunsThePinnedCopy: a probed plugin does not
// inherit the API tokens' variables, and with a pinned checksum it runs the
// copy that was hashed, not the file in plugins.dir.
func TestProbeHidesTokensAndRunsThePinnedCopy(t *testing.T) {
	dir := t.TempDir()
	testplugins.Install(t, dir, "good")
	path := filepath.Join(dir, "dw-plugin-good")
	t.Setenv("DW_PROBE_TEST_TOKEN", "s3cret-token-0123456")
	sum, _, err := hashFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Probe(context.Background(), path, ProbeOptions{SHA256: sum, HiddenEnv: []string{"DW_PROBE_TEST_TOKEN"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	environ, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "environ"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(environ), "s3cret-token-0123456") {
		t.Error("the probed plugin inherited an API token's variable")
	}
	if !strings.Contains(string(environ), "DW_HOST_PID=") {
		t.Error("the probed plugin's environment lacks DW_HOST_PID: the test reads the wrong process")
	}
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(p.PID), "exe"))
	if err != nil {
		t.Fatal(err)
	}
	if exe == path {
		t.Errorf("the pinned plugin ran from plugins.dir (%s), not from the copy that was hashed", exe)
	}
	if _, err := Probe(context.Background(), path, ProbeOptions{SHA256: strings.Repeat("0", 64)}); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("a wrong pin: %v", err)
	}
}
