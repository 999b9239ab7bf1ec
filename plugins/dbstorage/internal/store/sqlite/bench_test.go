package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
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
