package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datawarehouse/dw/internal/pgtest"
	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
)

// benchObjectBytes is the object size of BenchmarkPutGet: 128 MiB, or
// DW_BENCH_OBJECT_MIB MiB.
func benchObjectBytes(b *testing.B) int64 {
	b.Helper()
	mib := 128
	if v := os.Getenv("DW_BENCH_OBJECT_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("DW_BENCH_OBJECT_MIB=%q is not a positive number", v)
		}
		mib = n
	}
	return int64(mib) << 20
}

// patternReader returns n bytes cycling through a random block, so that a
// large object needs no memory of its size.
type patternReader struct {
	block []byte
	off   int
	n     int64
}

func newPatternReader(n int64) *patternReader {
	block := make([]byte, 1<<20+13) // not a multiple of any chunk size
	r := rand.New(rand.NewPCG(1, 2))
	for i := range block {
		block[i] = byte(r.Uint32())
	}
	return &patternReader{block: block, n: n}
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	k := copy(p, r.block[r.off:])
	r.off = (r.off + k) % len(r.block)
	r.n -= int64(k)
	return k, nil
}

// BenchmarkPutGet measures PUT and GET throughput of one large object with
// 256 KiB and 1 MiB chunks, against a server with PostgreSQL's default
// settings (fsync on).
func BenchmarkPutGet(b *testing.B) {
	size := benchObjectBytes(b)
	for _, cs := range []int{256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("chunk=%dKiB", cs>>10), func(b *testing.B) {
			dsn := pgtest.Shared(b).CreateDatabase(b, "")
			s, err := Open(context.Background(), Config{Name: "bench", DSN: dsn, ChunkSize: cs})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			key := "bench/object"
			put := func() {
				if _, err := s.Put(ctx, store.PutRequest{Key: key, Size: size}, newPatternReader(size)); err != nil {
					b.Fatalf("put: %v", err)
				}
			}
			b.Run("put", func(b *testing.B) {
				b.SetBytes(size)
				for b.Loop() {
					put()
				}
				b.StopTimer()
				if err := s.WaitIdle(ctx); err != nil { // not the next one's cost
					b.Fatal(err)
				}
			})
			b.Run("get", func(b *testing.B) {
				if _, err := s.Stat(ctx, key); err != nil {
					put() // "put" did not run; b.Loop starts the timer afresh
				}
				b.SetBytes(size)
				for b.Loop() {
					_, _, n, r, err := s.Get(ctx, key, 0, -1)
					if err != nil {
						b.Fatalf("get: %v", err)
					}
					var read int64
					for {
						p, err := r.Next(ctx)
						if errors.Is(err, io.EOF) {
							break
						}
						if err != nil {
							b.Fatalf("read: %v", err)
						}
						read += int64(len(p))
					}
					_ = r.Close()
					if read != n {
						b.Fatalf("read %d bytes of %d", read, n)
					}
				}
			})
		})
	}
}

// BenchmarkSmallPut puts 4 KiB objects (size announced) from 1 and 16
// goroutines and reports ops/s: new keys only, and replacements of 100 keys
// (which also gives garbage collection work). The server runs with
// PostgreSQL's default settings (fsync on, synchronous_commit on).
//
//	go test -run '^$' -bench SmallPut -benchtime 2000x ./plugins/dbstorage/internal/store/postgres/
func BenchmarkSmallPut(b *testing.B) {
	for _, keys := range []string{"new", "replace"} {
		for _, conc := range []int{1, 16} {
			b.Run(fmt.Sprintf("keys=%s/c=%d", keys, conc), func(b *testing.B) {
				dsn := pgtest.Shared(b).CreateDatabase(b, "")
				s, err := Open(context.Background(), Config{Name: "bench", DSN: dsn})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				if err := s.Ping(context.Background()); err != nil { // the schema, outside the timing
					b.Fatal(err)
				}
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
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*31 + 7)
	}
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
				if _, err := s.Put(ctx, store.PutRequest{Key: key, Size: size}, bytes.NewReader(data)); err != nil {
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
