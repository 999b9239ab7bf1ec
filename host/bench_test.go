package host_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host"
	"github.com/datawarehouse/dw/host/internal/testplugins"
)

// BenchmarkHostStart measures host start to every plugin serving, in
// process, with 1 and 5 real plugin processes (copies of the test plugin
// under different subsystem names).
func BenchmarkHostStart(b *testing.B) {
	good := filepath.Join(testplugins.Build(b), "dw-plugin-good")
	for _, n := range []int{1, 5} {
		b.Run(fmt.Sprintf("plugins=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			pluginsDir := filepath.Join(dir, "plugins")
			if err := os.MkdirAll(pluginsDir, 0o755); err != nil {
				b.Fatal(err)
			}
			for i := range n {
				copyExec(b, good, pluginsDir, fmt.Sprintf("dw-plugin-good%d", i))
			}
			cfg, err := config.Parse([]byte(fmt.Sprintf("server: {listen: 127.0.0.1:0}\ndata_dir: %s\nplugins: {dir: %s}\nlog: {level: error}\n"+firstPartyOff, filepath.Join(dir, "data"), pluginsDir)), "bench")
			if err != nil {
				b.Fatal(err)
			}
			var total time.Duration
			for b.Loop() {
				h, err := host.New(cfg, host.Options{Logger: hclog.NewNullLogger()})
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := h.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				for _, st := range h.Plugins().Statuses() {
					if st.State != "serving" && st.State != "disabled" {
						b.Fatalf("plugin %s is %s: %s", st.Name, st.State, st.LastError)
					}
				}
				b.StopTimer()
				if err := h.Shutdown(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/start")
		})
	}
}

// BenchmarkHostRSSAtRest runs `dw serve` with five plugins, lets it settle,
// and reports the host process's resident memory.
func BenchmarkHostRSSAtRest(b *testing.B) {
	dir := b.TempDir()
	good := filepath.Join(testplugins.Build(b), "dw-plugin-good")
	for i := range 5 {
		copyExec(b, good, dir, fmt.Sprintf("dw-plugin-good%d", i))
	}
	for b.Loop() {
		h := startHost(b, dir, "")
		waitFor(b, 30*time.Second, "five plugins serving", func() bool {
			ps := h.plugins(b)
			n := 0
			for _, p := range ps {
				if p.State == "serving" {
					n++
				}
			}
			return n == 5
		})
		time.Sleep(2 * time.Second)
		b.ReportMetric(float64(rssKiB(b, h.PID()))/1024, "host-RSS-MiB")
		h.Kill()
		<-h.Done()
	}
}

func rssKiB(tb testing.TB, pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

// firstPartyOff disables the subsystems the embedded defaults enable, so a
// benchmark's plugins folder holds only the plugins it measures.
const firstPartyOff = "subsystems: {dbstorage: {enabled: false}, filesystem: {enabled: false}, dataprotection: {enabled: false}, fabric: {enabled: false}}\n"
