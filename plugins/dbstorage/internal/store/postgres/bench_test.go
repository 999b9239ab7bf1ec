package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

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
