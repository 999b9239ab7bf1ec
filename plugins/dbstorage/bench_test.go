package main_test

// Benchmarks behind the dbstorage figures (make bench), all through the
// real host's HTTP API with the real plugin process:
//
//	go test -run '^$' -bench . -benchtime 1x ./plugins/dbstorage/
//
// BenchmarkLargeObject reports MB/s (b.SetBytes) and the peak RSS of the
// host and the plugin during the transfer, above the fresh processes' idle
// size; BenchmarkSmallObjects
// ops/s at concurrency 1 and 16; BenchmarkPaging the time to page through
// 100,000 keys by token and by offset.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datawarehouse/dw/internal/hosttest"
)

func benchStrategies(b *testing.B) (*hosttest.Host, map[string]string) {
	b.Helper()
	h := startDB(b, true, "{max_page_size: 1000}")
	return h, map[string]string{"sqlite": "", "postgres": "strategy=pg"}
}

func BenchmarkLargeObject(b *testing.B) {
	const size = 1 << 30
	h, strategies := benchStrategies(b)
	// Idle sizes of the fresh processes: peaks are reported above them.
	plugin := h.Plugin(b, "dbstorage").PID
	idleH, idleP := rss(b, h.PID()), rss(b, plugin)
	for _, name := range []string{"sqlite", "postgres"} {
		query := strategies[name]
		b.Run(name+"/put", func(b *testing.B) {
			b.SetBytes(size)
			resetPeak(b, h.PID())
			resetPeak(b, plugin)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if code, _, e := put(b, h, "bench/large", query, newPattern(size), size, nil); code != 200 {
					b.Fatalf("PUT: %d %+v", code, e)
				}
			}
			b.StopTimer()
			b.ReportMetric(mib(peak(b, h.PID())-idleH), "host-peak-MiB")
			b.ReportMetric(mib(peak(b, plugin)-idleP), "plugin-peak-MiB")
		})
		b.Run(name+"/get", func(b *testing.B) {
			b.SetBytes(size)
			resetPeak(b, h.PID())
			resetPeak(b, plugin)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := http.Get(objectURL(h, "bench/large", query))
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != size || resp.StatusCode != 200 {
					b.Fatalf("GET: %d, %d bytes, %v", resp.StatusCode, n, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(mib(peak(b, h.PID())-idleH), "host-peak-MiB")
			b.ReportMetric(mib(peak(b, plugin)-idleP), "plugin-peak-MiB")
		})
	}
}

// BenchmarkSmallObjects: 4 KiB PUT and GET at concurrency 1 and 16.
func BenchmarkSmallObjects(b *testing.B) {
	const size = 4 << 10
	h, strategies := benchStrategies(b)
	body := strings.Repeat("x", size)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, name := range []string{"sqlite", "postgres"} {
		query := strategies[name]
		for _, conc := range []int{1, 16} {
			var seq atomic.Int64
			run := func(b *testing.B, op func(i int64) error) {
				b.SetBytes(size)
				var wg sync.WaitGroup
				var failed atomic.Value
				next := atomic.Int64{}
				start := time.Now()
				for w := 0; w < conc; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							if err := op(i); err != nil {
								failed.Store(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
				if err, ok := failed.Load().(error); ok {
					b.Fatal(err)
				}
			}
			b.Run(fmt.Sprintf("%s/put/c%d", name, conc), func(b *testing.B) {
				run(b, func(int64) error {
					i := seq.Add(1)
					req, _ := http.NewRequest(http.MethodPut, objectURL(h, fmt.Sprintf("small/%d", i%10000), query), strings.NewReader(body))
					resp, err := client.Do(req)
					if err != nil {
						return err
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						return fmt.Errorf("PUT: %d", resp.StatusCode)
					}
					return nil
				})
			})
			b.Run(fmt.Sprintf("%s/get/c%d", name, conc), func(b *testing.B) {
				stored := min(seq.Load(), 10000)
				run(b, func(i int64) error {
					resp, err := client.Get(objectURL(h, fmt.Sprintf("small/%d", 1+i%stored), query))
					if err != nil {
						return err
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || n != size {
						return fmt.Errorf("GET: %d, %d bytes", resp.StatusCode, n)
					}
					return nil
				})
			})
		}
	}
}

// BenchmarkPaging pages through 100,000 keys of one prefix, 1000 per page,
// by page token and by offset.
func BenchmarkPaging(b *testing.B) {
	const keys = 100_000
	h, strategies := benchStrategies(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for _, name := range []string{"sqlite", "postgres"} {
		query := strategies[name]
		fill(b, h, client, query, keys)
		b.Run(name+"/token", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				token, n := "", 0
				for {
					q := "prefix=p/&limit=1000"
					if query != "" {
						q += "&" + query
					}
					if token != "" {
						q += "&page_token=" + url.QueryEscape(token)
					}
					code, l, e := list(b, h, q)
					if code != 200 {
						b.Fatalf("%d %+v", code, e)
					}
					n += len(l.Items)
					if !l.HasMore {
						break
					}
					token = l.NextPageToken
				}
				if n != keys {
					b.Fatalf("%d keys paged, want %d", n, keys)
				}
			}
		})
		b.Run(name+"/offset", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				n := 0
				for off := 0; ; off += 1000 {
					q := fmt.Sprintf("prefix=p/&limit=1000&offset=%d", off)
					if query != "" {
						q += "&" + query
					}
					code, l, e := list(b, h, q)
					if code != 200 {
						b.Fatalf("%d %+v", code, e)
					}
					n += len(l.Items)
					if !l.HasMore {
						break
					}
				}
				if n != keys {
					b.Fatalf("%d keys paged, want %d", n, keys)
				}
			}
		})
	}
}

// fill stores n tiny objects p/000000… with 16 concurrent clients.
func fill(b *testing.B, h *hosttest.Host, client *http.Client, query string, n int) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPut, objectURL(h, fmt.Sprintf("p/%06d", i), query), strings.NewReader("x"))
				resp, err := client.Do(req)
				if err != nil {
					failed.Store(err)
					cancel()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Store(fmt.Errorf("PUT p/%06d: %d", i, resp.StatusCode))
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
}
