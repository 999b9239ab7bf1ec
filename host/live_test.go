package host_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/datawarehouse/dw/host/internal/testplugins"
)

// Live reconfiguration against a running `dw serve` with real plugin
// processes: every way people and tools change a file, each its own test,
// checking after every step that what the plugins report matches the file.

// livePlugins are the subsystems each live test runs.
var livePlugins = []string{"good0", "good1"}

func startLiveHost(t testing.TB, maxItems int) *runningHost {
	t.Helper()
	dir := t.TempDir()
	good := filepath.Join(testplugins.Build(t), "dw-plugin-good")
	for _, name := range livePlugins {
		copyExec(t, good, dir, "dw-plugin-"+name)
	}
	h := startHost(t, dir, limitsYAML(maxItems))
	waitApplied(t, h, maxItems)
	return h
}

// limitsYAML sets max_items of every live plugin.
func limitsYAML(maxItems int) string {
	var b strings.Builder
	b.WriteString("subsystems:\n")
	for _, name := range livePlugins {
		fmt.Fprintf(&b, "  %s:\n    limits: {max_items: %d}\n", name, maxItems)
	}
	return b.String()
}

type configInfo struct {
	Generation uint64 `json:"generation"`
	LastReload struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	} `json:"last_reload"`
}

func (h *runningHost) configInfo(t testing.TB) configInfo {
	t.Helper()
	var ci configInfo
	if code := h.get(t, "/v1/config", &ci); code != 200 {
		t.Fatalf("GET /v1/config: %d", code)
	}
	return ci
}

// appliedEverywhere reports whether every live plugin reports max_items.
func appliedEverywhere(t testing.TB, h *runningHost, maxItems int) bool {
	t.Helper()
	for _, name := range livePlugins {
		var v struct {
			Limits map[string]any `json:"limits"`
		}
		if code := h.get(t, "/v1/subsystems/"+name+"/limits", &v); code != 200 || v.Limits["max_items"] != float64(maxItems) {
			return false
		}
	}
	return true
}

func waitApplied(t testing.TB, h *runningHost, maxItems int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !appliedEverywhere(t, h, maxItems) {
		if time.Now().After(deadline) {
			t.Fatalf("max_items %d not applied to every plugin within 15s; config: %+v\n%s", maxItems, h.configInfo(t), h.logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitGeneration returns the config generation once it reaches want (or
// after 15 s): a reload applies the limits to the plugins before it
// publishes its generation, so a test that saw the limits applied may
// still read the previous generation for a moment.
func waitGeneration(t testing.TB, h *runningHost, want uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		g := h.configInfo(t).Generation
		if g >= want || time.Now().After(deadline) {
			return g
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLiveInPlaceWrite(t *testing.T) {
	h := startLiveHost(t, 10)
	g0 := h.configInfo(t).Generation
	for i, n := range []int{11, 12, 13} {
		writeFile(t, h.cfgPath, h.configWith(limitsYAML(n)))
		waitApplied(t, h, n)
		if g := waitGeneration(t, h, g0+uint64(i)+1); g != g0+uint64(i)+1 {
			t.Fatalf("generation %d after %d edits from %d", g, i+1, g0)
		}
	}
}

// A truncate, a pause, then the write: the empty file in between is never
// applied (it would mean "defaults"), only the final content.
func TestLiveTruncateThenWrite(t *testing.T) {
	h := startLiveHost(t, 10)
	g0 := h.configInfo(t).Generation
	for _, n := range []int{21, 22} {
		f, err := os.OpenFile(h.cfgPath, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // the watcher sees an empty file
		content := h.configWith(limitsYAML(n))
		half := len(content) / 2
		if _, err := f.Write(content[:half]); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		if _, err := f.Write(content[half:]); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		waitApplied(t, h, n)
	}
	// The empty file was never applied: that would have been a reload of
	// its own (to the defaults) on top of the two edits. (The watcher's
	// own tests pin down that an empty file is never delivered.)
	ci := h.configInfo(t)
	if !ci.LastReload.OK {
		t.Fatalf("last reload failed: %+v", ci)
	}
	if ci.Generation > g0+2 {
		t.Fatalf("generation went %d -> %d for two edits: an intermediate (empty or partial) file was applied", g0, ci.Generation)
	}
}

func TestLiveRenameOver(t *testing.T) {
	h := startLiveHost(t, 10)
	for _, n := range []int{31, 32, 33} {
		tmp := filepath.Join(filepath.Dir(h.cfgPath), ".dw.yaml.swp")
		writeFile(t, tmp, h.configWith(limitsYAML(n)))
		if err := os.Rename(tmp, h.cfgPath); err != nil {
			t.Fatal(err)
		}
		waitApplied(t, h, n)
	}
}

func TestLiveDeleteThenRecreate(t *testing.T) {
	h := startLiveHost(t, 10)
	prev := 10
	for _, n := range []int{41, 42} {
		g := h.configInfo(t).Generation
		if err := os.Remove(h.cfgPath); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		// Gone: the running configuration stays.
		if !appliedEverywhere(t, h, prev) {
			t.Fatalf("limits changed while the file was missing")
		}
		if ci := h.configInfo(t); ci.Generation != g {
			t.Fatalf("a missing file changed the generation: %+v", ci)
		}
		writeFile(t, h.cfgPath, h.configWith(limitsYAML(n)))
		waitApplied(t, h, n)
		prev = n
	}
}

// Kubernetes mounts a ConfigMap as dw.yaml -> ..data/dw.yaml with ..data a
// symlink to a timestamped folder, swapped atomically on every update.
func TestLiveKubernetesSymlinkSwap(t *testing.T) {
	h := startLiveHost(t, 10)
	dir := filepath.Dir(h.cfgPath)
	publish := func(version string, n int) {
		vdir := filepath.Join(dir, "..2026_11_27_"+version)
		if err := os.Mkdir(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(vdir, "dw.yaml"), h.configWith(limitsYAML(n)))
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(vdir), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("v1", 51)
	// Turn dw.yaml into the symlink, atomically.
	if err := os.Symlink(filepath.Join("..data", "dw.yaml"), filepath.Join(dir, "dw.yaml.link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "dw.yaml.link"), h.cfgPath); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, h, 51)
	publish("v2", 52)
	waitApplied(t, h, 52)
	publish("v3", 53)
	waitApplied(t, h, 53)
}

// A burst of writes is coalesced; the last content wins.
func TestLiveBurstOfWrites(t *testing.T) {
	h := startLiveHost(t, 10)
	g0 := h.configInfo(t).Generation
	const writes = 60
	for i := 1; i <= writes; i++ {
		writeFile(t, h.cfgPath, h.configWith(limitsYAML(100+i)))
	}
	waitApplied(t, h, 100+writes)
	if g := h.configInfo(t).Generation; g-g0 >= writes {
		t.Fatalf("%d writes made %d reloads: not coalesced", writes, g-g0)
	}
}

// Rewriting the same content, touching or chmod-ing the file reloads
// nothing: the next real change is exactly one generation later.
func TestLiveUnchangedContentDoesNotReload(t *testing.T) {
	h := startLiveHost(t, 10)
	g0 := h.configInfo(t).Generation
	same := h.configWith(limitsYAML(10))
	writeFile(t, h.cfgPath, same)
	now := time.Now()
	if err := os.Chtimes(h.cfgPath, now, now); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(h.cfgPath, 0o640); err != nil {
		t.Fatal(err)
	}
	writeFile(t, h.cfgPath, h.configWith(limitsYAML(61)))
	waitApplied(t, h, 61)
	if g := waitGeneration(t, h, g0+1); g != g0+1 {
		t.Fatalf("generation %d, want %d: unchanged content was reloaded", g, g0+1)
	}
}

// An edit that a plugin refuses keeps everything as it was, is reported,
// and the next good edit applies.
func TestLiveRejectedEditKeepsRunning(t *testing.T) {
	h := startLiveHost(t, 10)
	g0 := h.configInfo(t).Generation
	writeFile(t, h.cfgPath, h.configWith(strings.Replace(limitsYAML(70), "max_items: 70", "max_items: -5", 1)))
	waitFor(t, 15*time.Second, "the bad edit to be rejected", func() bool {
		ci := h.configInfo(t)
		return !ci.LastReload.OK && ci.LastReload.Error != ""
	})
	ci := h.configInfo(t)
	if ci.Generation != g0 || !strings.Contains(ci.LastReload.Error, "limits.max_items") || !strings.Contains(ci.LastReload.Error, "good0") {
		t.Fatalf("rejected reload: %+v", ci)
	}
	if !appliedEverywhere(t, h, 10) {
		t.Fatal("a rejected reload changed limits")
	}
	var metrics string
	waitFor(t, 5*time.Second, "reload metrics", func() bool {
		metrics = h.metricsText(t)
		return strings.Contains(metrics, "dw_config_last_reload_successful 0")
	})
	writeFile(t, h.cfgPath, h.configWith(limitsYAML(71)))
	waitApplied(t, h, 71)
	if ci := h.configInfo(t); !ci.LastReload.OK || ci.Generation != g0+1 {
		t.Fatalf("after the fix: %+v", ci)
	}
}

func (h *runningHost) metricsText(t testing.TB) string {
	t.Helper()
	resp, err := http.Get("http://" + h.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// SIGHUP and POST /v1/config/reload reload at once.
func TestLiveSIGHUPAndHTTPReload(t *testing.T) {
	h := startLiveHost(t, 10)
	writeFile(t, h.cfgPath, h.configWith(limitsYAML(81)))
	if err := h.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, h, 81)
	writeFile(t, h.cfgPath, h.configWith(limitsYAML(82)))
	code, body := h.post(t, "/v1/config/reload", "")
	if code != 200 {
		t.Fatalf("POST /v1/config/reload: %d %s", code, body)
	}
	// The answer is synchronous: applied when it returns.
	if !appliedEverywhere(t, h, 82) {
		t.Fatalf("reload answered before the limits were applied: %s", body)
	}
}

// A plugin binary dropped into plugins.dir is loaded with no signal.
func TestLiveDropInPlugin(t *testing.T) {
	h := startLiveHost(t, 10)
	_, kvcache := binaries(t)
	dir := h.pluginsDir
	copyExec(t, kvcache, dir, ".dw-plugin-kvcache.partial")
	if err := os.Rename(filepath.Join(dir, ".dw-plugin-kvcache.partial"), filepath.Join(dir, "dw-plugin-kvcache")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "kvcache to be loaded from the folder", func() bool {
		return h.plugins(t)["kvcache"].State == "serving"
	})
}
