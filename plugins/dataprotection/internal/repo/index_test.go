package repo

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"testing"
)

func testID(n uint64) ID {
	var id ID
	binary.LittleEndian.PutUint64(id[:], n*0x9E3779B97F4A7C15) // spread over the key space
	binary.LittleEndian.PutUint64(id[8:], n)
	return id
}

// TestBlobIndexMatchesMap runs random operations on a blobIndex and a Go
// map and compares them, through several merges and tombstone compactions.
func TestBlobIndexMatchesMap(t *testing.T) {
	x := newBlobIndex()
	ref := make(map[ID]location)
	rng := rand.New(rand.NewPCG(1, 2))
	const keys = 40000
	for op := range 200000 {
		id := testID(uint64(rng.IntN(keys)))
		switch k := rng.IntN(10); {
		case k < 6:
			loc := location{pack: uint32(op), offset: uint32(rng.IntN(1000)), length: 7, rawLen: 9, typ: DataBlob}
			x.set(id, loc)
			ref[id] = loc
		case k < 8:
			x.del(id)
			delete(ref, id)
		default:
			got, ok := x.get(id)
			want, wok := ref[id]
			if ok != wok || got != want {
				t.Fatalf("op %d: get %s = %v, %v; want %v, %v", op, id, got, ok, want, wok)
			}
		}
		if x.len() != len(ref) {
			t.Fatalf("op %d: len %d, want %d", op, x.len(), len(ref))
		}
	}
	for n := range uint64(keys) {
		got, ok := x.get(testID(n))
		want, wok := ref[testID(n)]
		if ok != wok || got != want {
			t.Fatalf("final: get %d = %v, %v; want %v, %v", n, got, ok, want, wok)
		}
	}
	if len(x.sorted) == 0 {
		t.Error("no merge happened: the test does not cover the sorted part")
	}
}

// BenchmarkBlobIndex reports the memory per blob of an index of 1M blobs
// and the cost of a lookup.
func BenchmarkBlobIndex(b *testing.B) {
	const n = 1_000_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := newBlobIndex()
	for i := range uint64(n) {
		x.set(testID(i), location{pack: 1})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perBlob := float64(after.HeapAlloc-before.HeapAlloc) / n
	b.ResetTimer()
	i := uint64(0)
	for b.Loop() {
		if _, ok := x.get(testID(i % n)); !ok {
			b.Fatal("missing")
		}
		i++
	}
	b.ReportMetric(perBlob, "bytes/blob")
	runtime.KeepAlive(x)
}
