package host_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/datawarehouse/dw/host/internal/testplugins"
)

// benchPlugins are the five plugins of the reload latency benchmarks.
var benchPlugins = []string{"good0", "good1", "good2", "good3", "good4"}

func benchLimitsYAML(maxItems int) string {
	var b strings.Builder
	b.WriteString("subsystems:\n")
	for _, name := range benchPlugins {
		fmt.Fprintf(&b, "  %s:\n    limits: {max_items: %d}\n", name, maxItems)
	}
	return b.String()
}

// allAtGeneration reports whether every bench plugin has acknowledged gen.
func allAtGeneration(h *runningHost, client *http.Client, gen uint64) bool {
	resp, err := client.Get("http://" + h.addr + "/v1/plugins")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var v struct {
		Plugins []struct {
			Name       string `json:"name"`
			Generation uint64 `json:"generation"`
		} `json:"plugins"`
	}
	if json.NewDecoder(resp.Body).Decode(&v) != nil {
		return false
	}
	n := 0
	for _, p := range v.Plugins {
		if slices.Contains(benchPlugins, p.Name) && p.Generation >= gen {
			n++
		}
	}
	return n == len(benchPlugins)
}

// reloadLatency edits the config b.N times (at least 100) with trigger
// run after each write, and reports p50/p99 from the write to every plugin
// having applied it (polled every 0.5 ms through /v1/plugins, so the
// figures include up to that much polling delay).
func reloadLatency(b *testing.B, trigger func(h *runningHost)) {
	dir := b.TempDir()
	good := filepath.Join(testplugins.Build(b), "dw-plugin-good")
	for _, name := range benchPlugins {
		copyExec(b, good, dir, "dw-plugin-"+name)
	}
	h := startHost(b, dir, benchLimitsYAML(1))
	client := &http.Client{Timeout: 5 * time.Second}
	waitFor(b, 30*time.Second, "five plugins at generation 1", func() bool { return allAtGeneration(h, client, 1) })
	gen := h.configInfo(b).Generation
	edits := max(b.N, 100)
	lat := make([]time.Duration, 0, edits)
	b.ResetTimer()
	for i := range edits {
		content := h.configWith(benchLimitsYAML(i + 2))
		start := time.Now()
		writeFile(b, h.cfgPath, content)
		trigger(h)
		gen++
		deadline := start.Add(10 * time.Second)
		for !allAtGeneration(h, client, gen) {
			if time.Now().After(deadline) {
				b.Fatalf("edit %d not applied everywhere within 10s: %+v\n%s", i, h.configInfo(b), h.logs())
			}
			time.Sleep(500 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(lat)), "edits")
}

// BenchmarkReloadOnWrite: an in-place write of the config file to all five
// plugins having applied the new limits; the watcher's settle window is
// included.
func BenchmarkReloadOnWrite(b *testing.B) {
	reloadLatency(b, func(*runningHost) {})
}

// BenchmarkReloadOnSIGHUP: the same, triggered by SIGHUP right after the
// write (the file watcher may get there first; either way it is one
// reload of that content).
func BenchmarkReloadOnSIGHUP(b *testing.B) {
	reloadLatency(b, func(h *runningHost) {
		if err := h.Signal(syscall.SIGHUP); err != nil {
			b.Fatal(err)
		}
	})
}
