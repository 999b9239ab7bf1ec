package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/datawarehouse/dw/sdk/v6"
)

func TestBlobRoundTrip(t *testing.T) {
	tests := []struct {
		name         string
		data         []byte
		compressible bool
	}{
		{"empty", []byte{}, false},
		{"one byte", []byte{42}, false},
		{"8 MiB incompressible", randomBytes(1, 8<<20), false},
		{"4 MiB compressible", compressibleBytes(2, 4<<20), true},
	}
	dir := t.TempDir()
	r := openTest(t, dir, Options{})
	w := r.NewWriter()
	for _, tc := range tests {
		id := Hash(tc.data)
		n, err := w.Add(DataBlob, id, tc.data)
		if err != nil {
			t.Fatalf("%s: add: %v", tc.name, err)
		}
		if n <= 0 {
			t.Errorf("%s: add stored %d bytes, want > 0", tc.name, n)
		}
		if tc.compressible && n > int64(len(tc.data))/10 {
			t.Errorf("%s: stored %d bytes for %d compressible bytes", tc.name, n, len(tc.data))
		}
		if !r.Has(id) {
			t.Errorf("%s: Has is false for a pending blob", tc.name)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		mustLoad(t, r, Hash(tc.data), tc.data)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2 := openTest(t, dir, Options{})
	buf := make([]byte, 0, 16)
	for _, tc := range tests {
		got, err := r2.Load(DataBlob, Hash(tc.data), buf)
		if err != nil {
			t.Fatalf("%s after reopen: %v", tc.name, err)
		}
		if !bytes.Equal(got, tc.data) {
			t.Fatalf("%s after reopen: content differs", tc.name)
		}
		buf = got
	}
	st := r2.Stats()
	if st.Blobs != int64(len(tests)) || st.Packs != 1 {
		t.Errorf("stats %+v, want %d blobs in 1 pack", st, len(tests))
	}
}

func TestLoadErrors(t *testing.T) {
	r := openTest(t, t.TempDir(), Options{})
	ids := addFlush(t, r, []byte("some data"))
	if _, err := r.Load(DataBlob, Hash([]byte("never added")), nil); !errors.Is(err, ErrNotFound) || !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("load unknown blob: %v, want ErrNotFound wrapping sdk.ErrNotFound", err)
	}
	// The type is advisory: the bytes are the ID.
	if _, err := r.Load(TreeBlob, ids[0], nil); err != nil {
		t.Errorf("load with the other type: %v", err)
	}
	w := r.NewWriter()
	if _, err := w.Add(BlobType(9), Hash(nil), nil); err == nil {
		t.Error("add with unknown type: no error")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Load(DataBlob, ids[0], nil); !errors.Is(err, ErrClosed) {
		t.Errorf("load after close: %v, want ErrClosed", err)
	}
	if _, err := w.Add(DataBlob, Hash([]byte("x")), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("add after close: %v, want ErrClosed", err)
	}
}

func TestAddDedup(t *testing.T) {
	r := openTest(t, t.TempDir(), Options{})
	data := randomBytes(3, 1<<20)
	id := Hash(data)
	const adders = 16
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		stored []int64
	)
	shared := r.NewWriter()
	for i := range adders {
		w := shared // half the adders share a Writer, half have their own
		if i%2 == 0 {
			w = r.NewWriter()
		}
		wg.Go(func() {
			n, err := w.Add(DataBlob, id, data)
			if err != nil {
				t.Errorf("add: %v", err)
			}
			mu.Lock()
			stored = append(stored, n)
			mu.Unlock()
		})
	}
	wg.Wait()
	nonZero := 0
	for _, n := range stored {
		if n > 0 {
			nonZero++
		}
	}
	if nonZero != 1 {
		t.Fatalf("%d of %d concurrent adds stored the blob (%v), want exactly 1", nonZero, adders, stored)
	}
	if err := r.NewWriter().Flush(); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Blobs != 1 {
		t.Errorf("stats %+v, want 1 blob", st)
	}
	_, entries, err := r.readIndexFile(r.packs[0].id)
	if err != nil || len(entries) != 1 {
		t.Fatalf("index of the pack: %d entries, %v; want 1", len(entries), err)
	}
	// Once durable, a further Add is deduplicated against the index.
	if n, err := r.NewWriter().Add(DataBlob, id, data); n != 0 || err != nil {
		t.Errorf("add of a durable blob: %d, %v; want 0, nil", n, err)
	}
}

func TestFlushDurability(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{PackSize: 256 << 10})
	var blobs [][]byte
	for i := range 40 {
		blobs = append(blobs, randomBytes(uint64(100+i), 20<<10))
	}
	// Several goroutines add through one Writer, as the engine's workers do.
	w := r.NewWriter()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < len(blobs); i += 4 {
				if _, err := w.Add(DataBlob, Hash(blobs[i]), blobs[i]); err != nil {
					t.Errorf("add: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// Blobs added after the last Flush are not durable: Close drops them.
	late := []byte("added after the flush")
	if _, err := w.Add(DataBlob, Hash(late), late); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(files(t, filepath.Join(dir, tmpDir))); n != 0 {
		t.Errorf("Close left %d temp files", n)
	}
	r2 := openTest(t, dir, Options{})
	for _, b := range blobs {
		mustLoad(t, r2, Hash(b), b)
	}
	if r2.Has(Hash(late)) {
		t.Error("a blob added after the last Flush survived Close")
	}
	if rep := r2.OpenReport(); len(rep.AdoptedPacks)+len(rep.RemovedPacks)+len(rep.RemovedIndexes) != 0 {
		t.Errorf("clean reopen repaired something: %+v", rep)
	}
}

func TestPackRollover(t *testing.T) {
	dir := t.TempDir()
	const packSize = 64 << 10
	r := openTest(t, dir, Options{PackSize: packSize})
	w := r.NewWriter()
	const blobs, blobSize = 30, 10 << 10
	for i := range blobs {
		b := randomBytes(uint64(200+i), blobSize)
		if _, err := w.Add(DataBlob, Hash(b), b); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.Stats().Packs; got < blobs*blobSize/packSize-1 {
		t.Errorf("before Flush %d packs are finished, want at least %d (packs finish at the target size)", got, blobs*blobSize/packSize-1)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	packs := packFiles(t, dir)
	indexes, _ := filepath.Glob(filepath.Join(dir, indexDir, "*"))
	if len(packs) != r.Stats().Packs || len(indexes) != len(packs) {
		t.Fatalf("%d pack files, %d index files, Stats says %d packs", len(packs), len(indexes), r.Stats().Packs)
	}
	small := 0
	for _, p := range packs {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() < packSize {
			small++
		}
		if info.Size() > packSize+blobSize+4096 {
			t.Errorf("pack %s is %d bytes, more than target + one blob", filepath.Base(p), info.Size())
		}
	}
	if small > 1 {
		t.Errorf("%d packs are below the target size; only the one Flush finished may be", small)
	}
	if st := r.Stats(); st.Blobs != blobs {
		t.Errorf("%d blobs indexed, want %d", st.Blobs, blobs)
	}
}

// orphanRepo makes a repository with one flushed pack whose index file is
// then removed (the state after a crash between pack and index write).
// It returns the pack path, the blobs and the repository dir (closed).
func orphanRepo(t *testing.T) (string, [][]byte, string) {
	t.Helper()
	dir := t.TempDir()
	r := openTest(t, dir, Options{})
	blobs := [][]byte{randomBytes(7, 100<<10), compressibleBytes(8, 300<<10), []byte("tiny")}
	addFlush(t, r, blobs...)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	packs := packFiles(t, dir)
	if len(packs) != 1 {
		t.Fatalf("%d packs, want 1", len(packs))
	}
	if err := os.Remove(filepath.Join(dir, indexDir, filepath.Base(packs[0]))); err != nil {
		t.Fatal(err)
	}
	return packs[0], blobs, dir
}

func TestOrphanPackAdopted(t *testing.T) {
	pack, blobs, dir := orphanRepo(t)
	r := openTest(t, dir, Options{})
	rep := r.OpenReport()
	if len(rep.AdoptedPacks) != 1 || rep.AdoptedPacks[0] != filepath.Base(pack) {
		t.Fatalf("adopted %v, want [%s]", rep.AdoptedPacks, filepath.Base(pack))
	}
	for _, b := range blobs {
		mustLoad(t, r, Hash(b), b)
	}
	if _, err := os.Stat(filepath.Join(dir, indexDir, filepath.Base(pack))); err != nil {
		t.Errorf("index of the adopted pack was not written: %v", err)
	}
}

// An orphan's blob bytes are not read at adoption (a pack is fsynced
// before it gets its name); a damaged blob is found like in any pack.
func TestOrphanPackDamagedBlob(t *testing.T) {
	pack, blobs, dir := orphanRepo(t)
	flipByte(t, pack, int64(packHeaderSize)+100)
	r := openTest(t, dir, Options{})
	if len(r.OpenReport().AdoptedPacks) != 1 {
		t.Fatalf("report %+v, want the pack adopted", r.OpenReport())
	}
	if _, err := r.Load(DataBlob, Hash(blobs[0]), nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("load of the damaged blob: %v, want ErrCorrupt", err)
	}
	mustLoad(t, r, Hash(blobs[2]), blobs[2])
	rep, err := r.VerifyPacks(t.Context(), func(p string, err error) {
		if err != nil {
			t.Errorf("pack %s: %v; want no problem of the pack itself", p, err)
		}
	})
	if d, ok := rep.Damaged[Hash(blobs[0])]; err != nil || len(rep.Damaged) != 1 || !ok || d.Pack.String() != filepath.Base(pack) || !errors.Is(d.Err, ErrCorrupt) {
		t.Errorf("verify: %v, damaged %v; want blob %s damaged in pack %s", err, rep.Damaged, Hash(blobs[0]), filepath.Base(pack))
	}
}

func TestOrphanPackRemoved(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		reason string
	}{
		{"truncated", func(t *testing.T, path string) {
			info, _ := os.Stat(path)
			if err := os.Truncate(path, info.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, "footer"},
		{"name is not the trailer's hash", func(t *testing.T, path string) {
			other := Hash([]byte("another name")).String()
			dst := filepath.Join(filepath.Dir(filepath.Dir(path)), other[:2], other)
			_ = os.MkdirAll(filepath.Dir(dst), 0o700)
			if err := os.Rename(path, dst); err != nil {
				t.Fatal(err)
			}
		}, "hashes to"},
		{"trailer checksum", func(t *testing.T, path string) {
			info, _ := os.Stat(path)
			flipByte(t, path, info.Size()-int64(packFooterSize)-3)
		}, "checksum"},
		{"not a pack", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("hello, this is not a pack at all"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "magic"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pack, blobs, dir := orphanRepo(t)
			tc.damage(t, pack)
			r := openTest(t, dir, Options{})
			rep := r.OpenReport()
			if len(rep.RemovedPacks) != 1 || !strings.Contains(rep.RemovedPacks[0].Reason, tc.reason) {
				t.Fatalf("removed %+v, want one pack with a reason containing %q", rep.RemovedPacks, tc.reason)
			}
			if n := len(packFiles(t, dir)); n != 0 {
				t.Errorf("%d pack files left, want the damaged orphan removed", n)
			}
			for _, b := range blobs {
				if r.Has(Hash(b)) {
					t.Errorf("blob of the removed pack is still indexed")
				}
			}
		})
	}
}

func TestIndexRepairs(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir, pack string)
		reason  string
		adopted bool // the pack is re-indexed from its trailer
	}{
		{"pack missing", func(t *testing.T, dir, pack string) {
			if err := os.Remove(pack); err != nil {
				t.Fatal(err)
			}
		}, "missing", false},
		{"index unreadable", func(t *testing.T, dir, pack string) {
			flipByte(t, filepath.Join(dir, indexDir, filepath.Base(pack)), 20)
		}, "unreadable", true},
		{"pack size differs", func(t *testing.T, dir, pack string) {
			f, err := os.OpenFile(pack, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.Write([]byte("junk"))
			_ = f.Close()
		}, "bytes", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := openTest(t, dir, Options{})
			blob := randomBytes(9, 4096)
			addFlush(t, r, blob)
			_ = r.Close()
			pack := packFiles(t, dir)[0]
			tc.damage(t, dir, pack)
			r2 := openTest(t, dir, Options{})
			rep := r2.OpenReport()
			if len(rep.RemovedIndexes) != 1 || !strings.Contains(rep.RemovedIndexes[0].Reason, tc.reason) {
				t.Fatalf("removed indexes %+v, want one with %q", rep.RemovedIndexes, tc.reason)
			}
			if got := len(rep.AdoptedPacks) == 1; got != tc.adopted {
				t.Errorf("adopted %v, want adopted=%v", rep.AdoptedPacks, tc.adopted)
			}
			if r2.Has(Hash(blob)) != tc.adopted {
				t.Errorf("Has = %v, want %v", r2.Has(Hash(blob)), tc.adopted)
			}
		})
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptBlob(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{})
	good := randomBytes(10, 64<<10)
	bad := randomBytes(11, 64<<10)
	ids := addFlush(t, r, good, bad)
	pack := r.packs[0].id
	loc, _ := r.index.get(ids[1])
	flipByte(t, r.packPath(pack), int64(loc.offset)+int64(loc.length)/2)

	_, err := r.Load(DataBlob, ids[1], nil)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), pack.String()) || !strings.Contains(err.Error(), ids[1].String()) {
		t.Fatalf("load of the damaged blob: %v; want ErrCorrupt naming pack %s and blob %s", err, pack, ids[1])
	}
	mustLoad(t, r, ids[0], good)

	// The damaged blob is reported once, as a damaged blob, not as a
	// problem of its pack.
	rep, err := r.VerifyPacks(t.Context(), func(p string, err error) {
		if err != nil {
			t.Errorf("pack %s: %v; want no problem of the pack itself", p, err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	d, ok := rep.Damaged[ids[1]]
	if len(rep.Damaged) != 1 || !ok || d.Pack != pack || !errors.Is(d.Err, ErrCorrupt) || d.PackUnreadable {
		t.Errorf("damaged %v; want only blob %s, in pack %s, wrapping ErrCorrupt", rep.Damaged, ids[1], pack)
	}
	if rep.Packs != 1 || rep.Blobs != 2 || rep.RawBytes != int64(len(good)) {
		t.Errorf("report %+v; want 1 pack, 2 blobs, %d good bytes", rep, len(good))
	}
}

func TestVerifyPacks(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{PackSize: 32 << 10})
	for i := range 10 {
		addFlush(t, r, randomBytes(uint64(300+i), 20<<10), compressibleBytes(uint64(i), 50<<10))
	}
	// A damaged trailer (the blobs themselves intact) is found through the
	// pack hash and the index comparison.
	victim := r.packs[3]
	flipByte(t, r.packPath(victim.id), victim.size-int64(packFooterSize)-10)
	seen := map[string]error{}
	if rep, err := r.VerifyPacks(t.Context(), func(p string, err error) { seen[p] = err }); err != nil || len(rep.Damaged) != 0 {
		t.Fatalf("verify packs: %v, damaged blobs %v; want none (the blobs are intact)", err, rep.Damaged)
	}
	if len(seen) != r.Stats().Packs {
		t.Fatalf("verify saw %d packs, want %d", len(seen), r.Stats().Packs)
	}
	for p, err := range seen {
		if (p == victim.id.String()) != (err != nil) {
			t.Errorf("pack %s: %v", p, err)
		}
	}
	if err := seen[victim.id.String()]; !errors.Is(err, ErrCorrupt) {
		t.Errorf("damaged pack: %v, want ErrCorrupt", err)
	}
}

func TestTempFilesCleared(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{})
	_ = r.Close()
	for _, name := range []string{"pack-123.tmp", "snapshot.json.456.tmp"} {
		if err := os.WriteFile(filepath.Join(dir, tmpDir, name), []byte("half written"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r2 := openTest(t, dir, Options{})
	if got := r2.OpenReport().TempFilesRemoved; got != 2 {
		t.Errorf("TempFilesRemoved = %d, want 2", got)
	}
	if n := len(files(t, filepath.Join(dir, tmpDir))); n != 0 {
		t.Errorf("%d temp files left", n)
	}
}

func TestOpenConfig(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string // "" = opens
	}{
		{"new folder", func(t *testing.T, dir string) {}, ""},
		{"foreign folder", func(t *testing.T, dir string) {
			_ = os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600)
		}, "not a repository"},
		{"newer version", func(t *testing.T, dir string) {
			writeConfig(t, dir, map[string]any{"version": 2, "id": "x", "chunker_polynomial": "3DA3358B4DC173"})
		}, "format version 2"},
		{"bad polynomial", func(t *testing.T, dir string) {
			writeConfig(t, dir, map[string]any{"version": 1, "id": "x", "chunker_polynomial": "4"})
		}, "irreducible"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			r, err := Open(dir)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				pol := r.Polynomial()
				_ = r.Close()
				r2 := openTest(t, dir, Options{})
				if r2.Polynomial() != pol || !pol.Irreducible() {
					t.Errorf("polynomial %s after reopen, was %s", r2.Polynomial(), pol)
				}
				return
			}
			if err == nil {
				_ = r.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func writeConfig(t *testing.T, dir string, c map[string]any) {
	t.Helper()
	b, _ := json.Marshal(c)
	if err := os.WriteFile(filepath.Join(dir, configFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFlockExclusive(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{})
	if r2, err := Open(dir); err == nil {
		_ = r2.Close()
		t.Fatal("second Open in the same process succeeded")
	} else if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open: %v, want ErrLocked saying the repository is in use", err)
	}

	// Another process is locked out too, and gets in once we close.
	run := func() int {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), lockHelperEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("run helper: %v: %s", err, out)
		}
		return 0
	}
	if code := run(); code != 0 {
		t.Fatalf("other process while locked: exit %d, want 0 (locked out)", code)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if code := run(); code != 1 {
		t.Fatalf("other process after Close: exit %d, want 1 (opened)", code)
	}
}

// TestDamagedCommittedPackQuarantined: a pack whose index file is damaged
// and whose trailer is unreadable too may be used by snapshots, so Open
// moves it to quarantine/ instead of deleting it; a second Open leaves it
// there.
func TestDamagedCommittedPackQuarantined(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{})
	blobs := [][]byte{randomBytes(9, 100<<10), []byte("small")}
	addFlush(t, r, blobs...)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	packs := packFiles(t, dir)
	if len(packs) != 1 {
		t.Fatalf("%d packs, want 1", len(packs))
	}
	pack := packs[0]
	name := filepath.Base(pack)
	idx := filepath.Join(dir, indexDir, name)
	info, _ := os.Stat(idx)
	flipByte(t, idx, info.Size()-2) // the index's CRC no longer matches
	info, _ = os.Stat(pack)
	flipByte(t, pack, info.Size()-int64(packFooterSize)-3) // nor the trailer's

	r = openTest(t, dir, Options{})
	rep := r.OpenReport()
	if len(rep.QuarantinedPacks) != 1 || rep.QuarantinedPacks[0].Name != name || len(rep.RemovedPacks) != 0 {
		t.Fatalf("quarantined %+v, removed %+v; want pack %s quarantined, none removed", rep.QuarantinedPacks, rep.RemovedPacks, name)
	}
	kept, err := os.ReadFile(filepath.Join(dir, quarantineDir, name))
	if err != nil || int64(len(kept)) != info.Size() {
		t.Fatalf("quarantine/%s: %d bytes, %v; want the pack's %d bytes", name, len(kept), err, info.Size())
	}
	if n := len(packFiles(t, dir)); n != 0 {
		t.Errorf("%d pack files left in packs/, want the damaged pack moved out", n)
	}
	for _, b := range blobs {
		if r.Has(Hash(b)) {
			t.Errorf("a blob of the quarantined pack is still indexed")
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = openTest(t, dir, Options{})
	if rep := r.OpenReport(); len(rep.QuarantinedPacks)+len(rep.RemovedPacks)+len(rep.Ignored) != 0 {
		t.Errorf("second open: %+v; want nothing to repair", rep)
	}
	if _, err := os.Stat(filepath.Join(dir, quarantineDir, name)); err != nil {
		t.Errorf("the quarantined pack is gone after a second open: %v", err)
	}
}
