package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
)

// benchObjectSize is the object BenchmarkPutGet writes and reads; override
// with DW_BENCH_OBJECT_MIB.
func benchObjectSize(b *testing.B) int64 {
	b.Helper()
	if v := os.Getenv("DW_BENCH_OBJECT_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("DW_BENCH_OBJECT_MIB=%q is not a positive number", v)
		}
		return int64(n) << 20
	}
	return 128 << 20
}

// patternReader yields n bytes of a repeating pattern without holding them.
type patternReader struct {
	n    int64
	unit [4096]byte
}

func newPatternReader(n int64) *patternReader {
	r := &patternReader{n: n}
	for i := range r.unit {
		r.unit[i] = byte(i*31 + 7)
	}
	return r
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n)]
	for i := 0; i < len(p); {
		i += copy(p[i:], r.unit[:])
	}
	r.n -= int64(len(p))
	return len(p), nil
}

// BenchmarkPutGet writes and reads one large object per iteration at
// several chunk sizes and reports the write and read rates separately.
func BenchmarkPutGet(b *testing.B) {
	size := benchObjectSize(b)
	for _, cs := range []int{256 << 10, 1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("chunk=%dKiB", cs>>10), func(b *testing.B) {
			s, err := Open(context.Background(), Config{Path: filepath.Join(b.TempDir(), "bench.sqlite"), ChunkSize: cs})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			var putTime, getTime time.Duration
			b.SetBytes(2 * size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := s.Put(ctx, store.PutRequest{Key: "big", Size: size}, newPatternReader(size)); err != nil {
					b.Fatal(err)
				}
				putTime += time.Since(start)

				start = time.Now()
				_, _, _, r, err := s.Get(ctx, "big", 0, -1)
				if err != nil {
					b.Fatal(err)
				}
				var n int64
				for {
					p, err := r.Next(ctx)
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					n += int64(len(p))
				}
				_ = r.Close()
				getTime += time.Since(start)
				if n != size {
					b.Fatalf("read %d bytes; want %d", n, size)
				}
				// Leave the replaced version's garbage out of the next
				// round's timing.
				b.StopTimer()
				if err := s.WaitIdle(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			mb := float64(size) / 1e6 * float64(b.N)
			b.ReportMetric(mb/putTime.Seconds(), "put-MB/s")
			b.ReportMetric(mb/getTime.Seconds(), "get-MB/s")
		})
	}
}

// BenchmarkSmallObjects puts and gets 4 KiB objects one at a time.
func BenchmarkSmallObjects(b *testing.B) {
	s, err := Open(context.Background(), Config{Path: filepath.Join(b.TempDir(), "bench.sqlite")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	b.Run("put", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := s.Put(ctx, store.PutRequest{Key: fmt.Sprintf("small/%d", i%1000), Size: 4096}, newPatternReader(4096)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("get", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_, _, _, r, err := s.Get(ctx, fmt.Sprintf("small/%d", i%1000), 0, -1)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := r.Next(ctx); err != nil {
				b.Fatal(err)
			}
			_ = r.Close()
		}
	})
}

// BenchmarkGet reads one large object written before the timing starts, at
// several chunk sizes: the read rate alone, once the data is checkpointed
// into the database file.
func BenchmarkGet(b *testing.B) {
	size := benchObjectSize(b)
	for _, cs := range []int{256 << 10, 1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("chunk=%dKiB", cs>>10), func(b *testing.B) {
			s, err := Open(context.Background(), Config{Path: filepath.Join(b.TempDir(), "bench.sqlite"), ChunkSize: cs})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			if _, err := s.Put(ctx, store.PutRequest{Key: "big", Size: size}, newPatternReader(size)); err != nil {
				b.Fatal(err)
			}
			if _, err := s.wdb.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, _, _, r, err := s.Get(ctx, "big", 0, -1)
				if err != nil {
					b.Fatal(err)
				}
				for {
					_, err := r.Next(ctx)
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				_ = r.Close()
			}
		})
	}
}

// BenchmarkSmallPut puts 4 KiB objects (size announced) from 1 and 16
// goroutines and reports ops/s: new keys only, and replacements of 100 keys
// (which also gives garbage collection work).
//
//	go test -run '^$' -bench SmallPut -benchtime 2000x ./plugins/dbstorage/internal/store/sqlite/
func BenchmarkSmallPut(b *testing.B) {
	for _, keys := range []string{"new", "replace"} {
		for _, conc := range []int{1, 16} {
			b.Run(fmt.Sprintf("keys=%s/c=%d", keys, conc), func(b *testing.B) {
				s, err := Open(context.Background(), Config{Path: filepath.Join(b.TempDir(), "bench.sqlite")})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				benchSmallPuts(b, s, keys == "replace", conc)
			})
		}
	}
}

// benchSmallPuts runs b.N Puts of 4 KiB from conc goroutines and reports
// ops/s.
func benchSmallPuts(b *testing.B, s store.Strategy, replace bool, conc int) {
	b.Helper()
	const size = 4 << 10
	ctx := context.Background()
	var next atomic.Int64
	errs := make(chan error, conc)
	b.SetBytes(size)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				key := fmt.Sprintf("small/%d", i)
				if replace {
					key = fmt.Sprintf("small/%d", i%100)
				}
				if _, err := s.Put(ctx, store.PutRequest{Key: key, Size: size}, newPatternReader(size)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
}
