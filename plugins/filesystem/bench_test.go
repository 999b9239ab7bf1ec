package main_test

// Benchmarks behind the filesystem figures (make bench), through the real
// host's HTTP API with the real plugin process:
//
//	go test -run '^$' -bench . -benchtime 1x ./plugins/filesystem/
//
// BenchmarkLargeFile reports MB/s of a 1 GiB PUT and GET through the host
// and of reading the same file straight from disk, with the peak RSS of
// the host and the plugin above their idle size. BenchmarkHighPriorityLatency
// reports the p50 and p99 of high-priority 4 KiB reads, alone and under a
// low-priority flood, and their ratio. BenchmarkFileGETvsFileServer
// compares a warm 1 GiB GET through the host with net/http's FileServer.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/datawarehouse/dw/internal/hosttest"
)

// repeating reads block over and over, n bytes in all.
type repeating struct {
	block []byte
	left  int64
}

func (r *repeating) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.left > 0 {
		k := copy(p[n:min(len(p), n+int(r.left))], r.block)
		n += k
		r.left -= int64(k)
	}
	return n, nil
}

// processMiB reads a /proc figure of pid in MiB.
func processMiB(b *testing.B, read func(int) (int64, error), pid int) float64 {
	b.Helper()
	n, err := read(pid)
	if err != nil {
		b.Fatal(err)
	}
	return float64(n) / (1 << 20)
}

// putLarge stores size bytes of a repeated random MiB at p through the
// host.
func putLarge(b *testing.B, h *hosttest.Host, p string, size int64) {
	req, _ := http.NewRequest("PUT", fileURL(h, p), &repeating{block: randomData(1<<20, 9), left: size})
	req.ContentLength = size
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("PUT: %d", resp.StatusCode)
	}
}

func BenchmarkLargeFile(b *testing.B) {
	const size = 1 << 30
	h := startFS(b, "")
	plugin := h.Plugin(b, "filesystem").PID
	idleH, idleP := processMiB(b, hosttest.RSS, h.PID()), processMiB(b, hosttest.RSS, plugin)
	measure := func(b *testing.B, op func(b *testing.B)) {
		b.SetBytes(size)
		for _, pid := range []int{h.PID(), plugin} {
			if err := hosttest.ResetPeakRSS(pid); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			op(b)
		}
		b.StopTimer()
		b.ReportMetric(processMiB(b, hosttest.PeakRSS, h.PID())-idleH, "host-peak-MiB")
		b.ReportMetric(processMiB(b, hosttest.PeakRSS, plugin)-idleP, "plugin-peak-MiB")
	}
	b.Run("put", func(b *testing.B) {
		measure(b, func(b *testing.B) { putLarge(b, h, "bench/large", size) })
	})
	b.Run("get", func(b *testing.B) {
		measure(b, func(b *testing.B) {
			resp, err := http.Get(fileURL(h, "bench/large"))
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != size || resp.StatusCode != 200 {
				b.Fatalf("GET: %d, %d bytes, %v", resp.StatusCode, n, err)
			}
		})
	})
	// The same file read straight from disk by this process, 1 MiB at a
	// time: what the plugin and the host add is the difference.
	b.Run("direct-read", func(b *testing.B) {
		b.SetBytes(size)
		buf := make([]byte, 1<<20)
		for i := 0; i < b.N; i++ {
			f, err := os.Open(filepath.Join(h.DataDir, "files", "bench", "large"))
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
			f.Close()
			if err != nil || n != size {
				b.Fatalf("read: %d bytes, %v", n, err)
			}
		}
	})
}

// BenchmarkHighPriorityLatency measures high-priority 4 KiB reads alone,
// then while low-priority readers flood the queue (more readers than the
// device's queue depth, so low work always waits), and reports the ratio
// of the p99s. The first 100 reads under the flood are its onset, reported
// apart (onset-p99): they meet the data the flood had in flight before the
// queue held it back.
func BenchmarkHighPriorityLatency(b *testing.B) {
	const samples = 300
	h := startFS(b, "")
	for _, f := range []struct {
		name string
		size int
	}{{"small", 4 << 10}, {"flood-small", 4 << 10}, {"flood-large", 4 << 20}} {
		req, _ := http.NewRequest("PUT", fileURL(h, "lat/"+f.name), &repeating{block: randomData(1<<20, 5), left: int64(f.size)})
		req.ContentLength = int64(f.size)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusCreated {
			b.Fatalf("PUT %s: %v", f.name, err)
		}
		resp.Body.Close()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	read := func(name, prio string) error {
		req, _ := http.NewRequest("GET", fileURL(h, "lat/"+name), nil)
		req.Header.Set("X-DW-Priority", prio)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 && resp.StatusCode != http.StatusTooManyRequests {
			return fmt.Errorf("GET %s: %d", name, resp.StatusCode)
		}
		return err
	}
	percentiles := func(b *testing.B, samples int) (p50, p99 time.Duration) {
		d := make([]time.Duration, samples)
		for i := range d {
			start := time.Now()
			if err := read("small", "high"); err != nil {
				b.Fatal(err)
			}
			d[i] = time.Since(start)
		}
		slices.Sort(d)
		return d[samples/2], d[samples*99/100]
	}
	for i := 0; i < b.N; i++ {
		base50, base99 := percentiles(b, samples)
		b.ReportMetric(float64(base50.Microseconds()), "unloaded-p50-µs")
		b.ReportMetric(float64(base99.Microseconds()), "unloaded-p99-µs")
		for _, flood := range []string{"flood-small", "flood-large"} {
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						_ = read(flood, "low")
					}
				}()
			}
			hosttest.WaitFor(b, 30*time.Second, "the flood to fill the queue", func() bool {
				m, _ := metrics(b, h)
				return m["queue_length{class=low}"] > 0
			})
			// The onset: the first high reads meet the data the flood had
			// in flight before the queue held it back (read already, in
			// the streams' flow-control windows and the host's buffers).
			_, onset := percentiles(b, 100)
			before, _ := metrics(b, h)
			p50, p99 := percentiles(b, samples)
			m, _ := metrics(b, h)
			// The queue's part: how long high-priority dispatches waited
			// for a slot, on average, during the sampling.
			if d := m["dispatched_total{class=high}"] - before["dispatched_total{class=high}"]; d > 0 {
				b.ReportMetric((m["wait_seconds_total{class=high}"]-before["wait_seconds_total{class=high}"])/d*1e6, flood+"-high-queue-wait-µs")
				b.ReportMetric((m["request_seconds_total{op=get}"]-before["request_seconds_total{op=get}"])/(m["requests_total{op=get}"]-before["requests_total{op=get}"])*1e6, flood+"-plugin-get-µs")
			}
			cancel()
			wg.Wait()
			b.ReportMetric(float64(p50.Microseconds()), flood+"-p50-µs")
			b.ReportMetric(float64(p99.Microseconds()), flood+"-p99-µs")
			b.ReportMetric(float64(p99)/float64(base99), flood+"-p99-ratio")
			b.ReportMetric(float64(onset.Microseconds()), flood+"-onset-p99-µs")
			b.ReportMetric(m["dispatched_total{class=low}"], flood+"-low-dispatches")
		}
	}
}

// BenchmarkFileGETvsFileServer is issue #15's yardstick: a 1 GiB file with
// a warm page cache, read through the host (GET /v1/files/…) and by
// net/http's FileServer (sendfile) from the same folder, alternately in
// each iteration. It reports both throughputs and their ratio, measured in
// one run on the same machine state:
//
//	go test -run '^$' -bench FileGETvsFileServer -benchtime 3x ./plugins/filesystem/
func BenchmarkFileGETvsFileServer(b *testing.B) {
	const size = 1 << 30
	h := startFS(b, "")
	putLarge(b, h, "bench/large", size)
	fs := &http.Server{Handler: http.FileServer(http.Dir(filepath.Join(h.DataDir, "files")))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go fs.Serve(ln)
	b.Cleanup(func() { fs.Close() })

	get := func(url string) time.Duration {
		start := time.Now()
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size || resp.StatusCode != 200 {
			b.Fatalf("GET %s: %d, %d bytes, %v", url, resp.StatusCode, n, err)
		}
		return time.Since(start)
	}
	dwURL, fsURL := fileURL(h, "bench/large"), "http://"+ln.Addr().String()+"/bench/large"
	get(fsURL) // warm the page cache
	b.SetBytes(2 * size)
	b.ResetTimer()
	var dw, fileServer time.Duration
	for i := 0; i < b.N; i++ {
		dw += get(dwURL)
		fileServer += get(fsURL)
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(b.N) * size / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(dw), "dw-MB/s")
	b.ReportMetric(mbps(fileServer), "fileserver-MB/s")
	b.ReportMetric(mbps(dw)/mbps(fileServer), "ratio")
}
