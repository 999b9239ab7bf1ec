package repo

import (
	"errors"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// verifyFixture is a repository of several packs with blobs of every
// shape: empty, small, compressible (several zstd blocks), incompressible.
type verifyFixture struct {
	r    *Repo
	dir  string
	ids  []ID
	size map[ID]int // plaintext bytes
}

func newVerifyFixture(t *testing.T) *verifyFixture {
	t.Helper()
	dir := t.TempDir()
	r := openTest(t, dir, Options{PackSize: 64 << 10})
	blobs := [][]byte{
		{}, []byte("small"), randomBytes(1, 100<<10),
		compressibleBytes(2, 600<<10), randomBytes(3, 70<<10), []byte("tail"),
		randomBytes(4, 90<<10),
	}
	f := &verifyFixture{r: r, dir: dir, ids: addFlush(t, r, blobs...), size: map[ID]int{}}
	for i, b := range blobs {
		f.size[f.ids[i]] = len(b)
	}
	if n := r.Stats().Packs; n < 3 {
		t.Fatalf("fixture has %d packs, want at least 3", n)
	}
	return f
}

// where returns the pack holding id and id's location.
func (f *verifyFixture) where(id ID) (ID, location) {
	f.r.mu.RLock()
	defer f.r.mu.RUnlock()
	loc, _ := f.r.index.get(id)
	return f.r.packs[loc.pack].id, loc
}

// blobsOf returns the blobs the index places in pack.
func (f *verifyFixture) blobsOf(pack ID) []ID {
	var out []ID
	for _, id := range f.ids {
		if p, _ := f.where(id); p == pack {
			out = append(out, id)
		}
	}
	return out
}

// verify runs VerifyPacks and returns the report and each pack's problem.
func (f *verifyFixture) verify(t *testing.T) (PackReport, map[ID]error) {
	t.Helper()
	problems := map[ID]error{}
	rep, err := f.r.VerifyPacks(t.Context(), func(p string, err error) {
		id, perr := ParseID(p)
		if perr != nil {
			t.Errorf("fn got pack name %q: %v", p, perr)
		}
		if _, dup := problems[id]; dup {
			t.Errorf("fn called twice for pack %s", p)
		}
		problems[id] = err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep, problems
}

func truncateFile(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// writeRawPack writes a pack of already compressed blobs, bypassing the
// Writer: for frames the Writer never makes, and for duplicate copies
// (the index keeps the first location of a blob).
func writeRawPack(t *testing.T, r *Repo, blobs ...rawBlob) ID {
	t.Helper()
	pb, err := r.newPackBuilder()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		off := pb.size
		if err := pb.write(b.comp); err != nil {
			t.Fatal(err)
		}
		pb.entries = append(pb.entries, packEntry{id: b.id, typ: DataBlob, offset: uint32(off), length: uint32(len(b.comp)), rawLen: uint32(b.rawLen)})
	}
	id, err := r.finishPack(pb, false)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type rawBlob struct {
	id     ID
	comp   []byte
	rawLen int
}

func compress(t *testing.T, enc *zstd.Encoder, plain []byte) rawBlob {
	t.Helper()
	return rawBlob{id: Hash(plain), comp: enc.EncodeAll(plain, nil), rawLen: len(plain)}
}

// TestVerifyPacksDamage: each kind of damage is reported once, either as
// a problem of the pack (fn) or as damaged blobs (PackReport.Damaged),
// never both.
func TestVerifyPacksDamage(t *testing.T) {
	const victim = 2 // a 100 KiB random blob, so offsets inside it are data
	tests := []struct {
		name string
		// damage breaks the repository and returns the pack at fault.
		damage func(t *testing.T, f *verifyFixture) ID
		// problem: substring of the pack's problem ("" = none).
		problem string
		// damaged returns the blobs that must be in Damaged.
		damaged        func(f *verifyFixture, pack ID) []ID
		packUnreadable bool
		reason         string // substring of every BlobDamage.Err
	}{
		{
			name: "sound",
			damage: func(t *testing.T, f *verifyFixture) ID {
				p, _ := f.where(f.ids[victim])
				return p
			},
		},
		{
			name: "byte in a blob",
			damage: func(t *testing.T, f *verifyFixture) ID {
				p, loc := f.where(f.ids[victim])
				flipByte(t, f.r.packPath(p), int64(loc.offset)+int64(loc.length)/2)
				return p
			},
			damaged: func(f *verifyFixture, _ ID) []ID { return f.ids[victim : victim+1] },
			reason:  "repository data is corrupt",
		},
		{
			name: "zstd magic of a blob",
			damage: func(t *testing.T, f *verifyFixture) ID {
				p, loc := f.where(f.ids[victim])
				flipByte(t, f.r.packPath(p), int64(loc.offset))
				return p
			},
			damaged: func(f *verifyFixture, _ ID) []ID { return f.ids[victim : victim+1] },
			reason:  "decompress",
		},
		{
			name: "header magic",
			damage: func(t *testing.T, f *verifyFixture) ID {
				p, _ := f.where(f.ids[victim])
				flipByte(t, f.r.packPath(p), 0)
				return p
			},
			problem: "bad header magic",
		},
		{
			name: "trailer",
			damage: func(t *testing.T, f *verifyFixture) ID {
				p, _ := f.where(f.ids[victim])
				info, _ := os.Stat(f.r.packPath(p))
				flipByte(t, f.r.packPath(p), info.Size()-int64(packFooterSize)-3)
				return p
			},
			problem: "trailer checksum mismatch",
		},
		{
			name: "index file",
			damage: func(t *testing.T, f *verifyFixture) ID {
				p, _ := f.where(f.ids[victim])
				flipByte(t, f.r.indexPath(p), int64(indexHeadSize)+5)
				return p
			},
			problem: "index checksum mismatch",
		},
		{
			name: "index file and trailer",
			damage: func(t *testing.T, f *verifyFixture) ID {
				p, _ := f.where(f.ids[victim])
				flipByte(t, f.r.indexPath(p), int64(indexHeadSize)+5)
				info, _ := os.Stat(f.r.packPath(p))
				flipByte(t, f.r.packPath(p), info.Size()-1)
				return p
			},
			problem:        "bad footer magic",
			damaged:        func(f *verifyFixture, p ID) []ID { return f.blobsOf(p) },
			packUnreadable: true,
			reason:         "both unreadable",
		},
		{
			name: "pack file missing",
			damage: func(t *testing.T, f *verifyFixture) ID {
				p, _ := f.where(f.ids[victim])
				if err := os.Remove(f.r.packPath(p)); err != nil {
					t.Fatal(err)
				}
				return p
			},
			problem:        "cannot be read",
			damaged:        func(f *verifyFixture, p ID) []ID { return f.blobsOf(p) },
			packUnreadable: true,
			reason:         "no such file",
		},
		{
			name: "pack truncated in a blob",
			damage: func(t *testing.T, f *verifyFixture) ID {
				p, loc := f.where(f.ids[victim])
				truncateFile(t, f.r.packPath(p), int64(loc.offset)+10)
				return p
			},
			problem: "its index says",
			damaged: func(f *verifyFixture, p ID) []ID {
				// the victim and every blob after it in its pack
				_, v := f.where(f.ids[victim])
				var out []ID
				for _, id := range f.blobsOf(p) {
					if _, loc := f.where(id); loc.offset >= v.offset {
						out = append(out, id)
					}
				}
				return out
			},
			reason: "the pack ends before the blob",
		},
		{
			name: "damaged copy the index does not use",
			damage: func(t *testing.T, f *verifyFixture) ID {
				enc, err := zstd.NewWriter(nil)
				if err != nil {
					t.Fatal(err)
				}
				defer enc.Close()
				dup := writeRawPack(t, f.r, compress(t, enc, randomBytes(1, 100<<10)))
				if p, _ := f.where(f.ids[victim]); p == dup {
					t.Fatal("the index uses the new copy")
				}
				flipByte(t, f.r.packPath(dup), int64(packHeaderSize)+50)
				return dup
			},
			problem: "a copy the index does not use",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newVerifyFixture(t)
			pack := tc.damage(t, f)
			rep, problems := f.verify(t)
			if len(problems) != f.r.Stats().Packs {
				t.Errorf("fn saw %d packs, want %d", len(problems), f.r.Stats().Packs)
			}
			for p, err := range problems {
				switch {
				case p != pack || tc.problem == "":
					if err != nil {
						t.Errorf("pack %s: %v; want no problem", p, err)
					}
				case err == nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.problem):
					t.Errorf("pack %s: %v; want ErrCorrupt saying %q", p, err, tc.problem)
				default:
					for line := range strings.Lines(err.Error()) {
						if !strings.Contains(line, p.String()) {
							t.Errorf("problem line %q does not name pack %s", line, p)
						}
					}
				}
			}
			var want []ID
			if tc.damaged != nil {
				want = tc.damaged(f, pack)
			}
			got := make([]ID, 0, len(rep.Damaged))
			for id, d := range rep.Damaged {
				got = append(got, id)
				if d.Pack != pack || d.PackUnreadable != tc.packUnreadable || !strings.Contains(d.Err.Error(), tc.reason) {
					t.Errorf("blob %s: %+v; want pack %s, PackUnreadable %v, a reason saying %q", id, d, pack, tc.packUnreadable, tc.reason)
				}
			}
			slices.SortFunc(got, compareID)
			slices.SortFunc(want, compareID)
			if !slices.Equal(got, want) {
				t.Errorf("damaged blobs %v, want %v", got, want)
			}
		})
	}
}

// TestVerifyPacksReadsOnce: a verify reads every byte of every pack
// exactly once (the header, each blob, then the trailer, front to back),
// and hashes every blob.
func TestVerifyPacksReadsOnce(t *testing.T) {
	f := newVerifyFixture(t)
	before := f.r.Stats()
	rep, problems := f.verify(t)
	after := f.r.Stats()
	for p, err := range problems {
		if err != nil {
			t.Errorf("pack %s: %v", p, err)
		}
	}
	if got := after.ReadBytes - before.ReadBytes; got != before.PackBytes || rep.PackBytes != before.PackBytes {
		t.Errorf("read %d bytes of packs holding %d (report: %d); want each byte read once", got, before.PackBytes, rep.PackBytes)
	}
	if rep.Packs != int64(before.Packs) || rep.Blobs != before.Blobs || rep.RawBytes != before.RawBytes || len(rep.Damaged) != 0 {
		t.Errorf("report %+v; want %d packs, %d blobs, %d plaintext bytes, nothing damaged", rep, before.Packs, before.Blobs, before.RawBytes)
	}
}

// TestVerifyPacksBoundedMemory: a blob is checked as a stream, never
// held whole: verifying a pack with a 24 MiB incompressible blob
// allocates far less than the blob.
func TestVerifyPacksBoundedMemory(t *testing.T) {
	const blob = 24 << 20
	r := openTest(t, t.TempDir(), Options{})
	addFlush(t, r, randomBytes(7, blob))
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	rep, err := r.VerifyPacks(t.Context(), nil)
	runtime.ReadMemStats(&m1)
	if err != nil || rep.Blobs != 1 || len(rep.Damaged) != 0 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > blob/2 {
		t.Errorf("verify allocated %d bytes for a blob of %d; want it streamed", alloc, blob)
	}
}

// TestVerifyPacksLargeWindow: frames whose zstd window exceeds what the
// stream decoder takes (the Writer never makes them) are checked in
// memory, as Load reads them: verify and Load agree.
func TestVerifyPacksLargeWindow(t *testing.T) {
	r := openTest(t, t.TempDir(), Options{})
	enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(16<<20), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	single := compress(t, enc, randomBytes(8, 10<<20))         // one segment: window = 10 MiB
	windowed := compress(t, enc, compressibleBytes(9, 20<<20)) // a 16 MiB window
	normal := compress(t, enc, []byte("small"))
	pack := writeRawPack(t, r, single, windowed, normal)
	for _, b := range []rawBlob{single, windowed, normal} {
		if _, err := r.Load(DataBlob, b.id, nil); err != nil {
			t.Fatalf("load: %v", err)
		}
	}
	rep, err := r.VerifyPacks(t.Context(), func(p string, err error) {
		if err != nil {
			t.Errorf("pack %s: %v", p, err)
		}
	})
	if err != nil || rep.Blobs != 3 || len(rep.Damaged) != 0 {
		t.Fatalf("verify: %+v, %v; want 3 sound blobs", rep, err)
	}
	flipByte(t, r.packPath(pack), int64(packHeaderSize)+int64(len(single.comp))/2)
	rep, err = r.VerifyPacks(t.Context(), nil)
	if d, ok := rep.Damaged[single.id]; err != nil || len(rep.Damaged) != 1 || !ok || !errors.Is(d.Err, ErrCorrupt) {
		t.Fatalf("verify after damage: %+v, %v; want blob %s damaged", rep, err, single.id)
	}
	if _, err := r.Load(DataBlob, single.id, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("load of the damaged blob: %v, want ErrCorrupt", err)
	}
}
