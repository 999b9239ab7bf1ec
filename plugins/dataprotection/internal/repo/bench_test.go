package repo

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
)

// BenchmarkAddFlush measures Add throughput of 1 MiB chunks (the chunker's
// average) from parallel goroutines, including the Flush that makes them
// durable and the SHA-256 the engine computes for each chunk.
func BenchmarkAddFlush(b *testing.B) {
	const chunk = 1 << 20
	for _, bc := range []struct {
		name string
		data []byte
	}{
		{"incompressible", randomBytes(1, chunk)},
		{"compressible", compressibleBytes(1, chunk)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := openTest(b, b.TempDir(), Options{})
			w := r.NewWriter()
			var seq atomic.Uint64
			b.SetBytes(chunk)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				buf := append([]byte(nil), bc.data...)
				for pb.Next() {
					binary.LittleEndian.PutUint64(buf, seq.Add(1)) // distinct content
					if _, err := w.Add(DataBlob, Hash(buf), buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			st := r.Stats()
			b.ReportMetric(float64(st.StoredBytes)/float64(st.RawBytes), "stored/raw")
		})
	}
}

// blobKinds are the contents of the read benchmarks.
var blobKinds = []struct {
	name string
	gen  func(seed uint64, n int) []byte
}{
	{"incompressible", randomBytes},
	{"compressible", compressibleBytes},
}

// benchRepo returns a repository holding n durable blobs of size bytes
// made by gen, and their IDs.
func benchRepo(b *testing.B, gen func(seed uint64, n int) []byte, size, n int) (*Repo, []ID) {
	b.Helper()
	r := openTest(b, b.TempDir(), Options{})
	var all [][]byte
	for i := range n {
		all = append(all, gen(uint64(i), size))
	}
	return r, addFlush(b, r, all...)
}

// BenchmarkLoad measures Load of 1 MiB blobs (read, decompress, verify).
func BenchmarkLoad(b *testing.B) {
	const chunk, blobs = 1 << 20, 64
	for _, bc := range blobKinds {
		b.Run(bc.name, func(b *testing.B) {
			r, ids := benchRepo(b, bc.gen, chunk, blobs)
			b.SetBytes(chunk)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var buf []byte
				i := 0
				for pb.Next() {
					var err error
					if buf, err = r.Load(DataBlob, ids[i%blobs], buf); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkVerifyPacks measures VerifyPacks over 64 MiB of 1 MiB blobs
// (read, stream-decompress, hash) and reports the pack bytes read per
// pack byte, which must be 1.
func BenchmarkVerifyPacks(b *testing.B) {
	const chunk, blobs = 1 << 20, 64
	for _, bc := range blobKinds {
		b.Run(bc.name, func(b *testing.B) {
			r, _ := benchRepo(b, bc.gen, chunk, blobs)
			before := r.Stats()
			b.SetBytes(chunk * blobs)
			b.ResetTimer()
			for b.Loop() {
				rep, err := r.VerifyPacks(b.Context(), nil)
				if err != nil || len(rep.Damaged) != 0 {
					b.Fatalf("verify: %v, %d damaged", err, len(rep.Damaged))
				}
			}
			b.StopTimer()
			read := r.Stats().ReadBytes - before.ReadBytes
			b.ReportMetric(float64(read)/float64(before.PackBytes)/float64(b.N), "reads/packbyte")
		})
	}
}
