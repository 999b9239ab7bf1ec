package retention

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"
)

// treeRepo builds the Usage of a source backed up nSnaps times, with
// nDirs folders of nFiles one-chunk files each; every backup changes one
// file, so it adds one data blob, one folder tree and one root tree, and
// shares everything else with the backup before it.
func treeRepo(nSnaps, nDirs, nFiles int) ([]Snapshot, *Usage) {
	id := func(kind byte, a, b int) BlobID {
		var x BlobID
		x[0] = kind
		binary.LittleEndian.PutUint64(x[1:], uint64(a))
		binary.LittleEndian.PutUint64(x[9:], uint64(b))
		return x
	}
	u := NewUsage()
	version := make([]int, nDirs) // each folder's current version
	content := func(d, v, f int) BlobID { return id('d', d, v*nFiles+f) }
	dirTree := func(d int) BlobID {
		v := version[d]
		t := id('t', d, v)
		children := make([]BlobID, nFiles)
		for f := range children {
			// Version v changed file v-1; the others keep their first chunk.
			if v > 0 && f == (v-1)%nFiles {
				children[f] = content(d, v, f)
			} else {
				children[f] = content(d, 0, f)
			}
			u.Blob(children[f], 1<<20, nil)
		}
		u.Blob(t, 4096, children)
		return t
	}
	dirs := make([]BlobID, nDirs)
	for d := range dirs {
		dirs[d] = dirTree(d)
	}
	snaps := make([]Snapshot, nSnaps)
	for s := range snaps {
		if s > 0 {
			d := s % nDirs
			version[d]++
			dirs[d] = dirTree(d)
		}
		root := id('r', s, 0)
		u.Blob(root, 8192, append([]BlobID(nil), dirs...))
		snaps[s] = Snapshot{ID: fmt.Sprint("s", s), Source: "files", Kind: "incremental",
			CompletedAt: day0.Add(time.Duration(s) * time.Hour)}
		u.Uses(snaps[s].ID, root)
	}
	return snaps, u
}

// BenchmarkDecideSize runs size-bounded retention over 1000 snapshots of
// 10,000 files each (10 million snapshot-blob references, about 11,000
// distinct blobs plus trees).
func BenchmarkDecideSize(b *testing.B) {
	snaps, u := treeRepo(1000, 100, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		plan, err := Decide(snaps, Policy{KeepLast: 200, MaxTotalBytes: 10_300 << 20}, day0, u)
		if err != nil || len(plan.Forget) == 0 {
			b.Fatalf("plan %d forgotten, %v", len(plan.Forget), err)
		}
	}
	b.ReportMetric(float64(u.Blobs()), "blobs")
}
