package repo

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// pruneFixture is a repository with four packs:
//
//	A: 3 unused blobs                 -> removed
//	B: 2 used, 2 unused (50% unused)  -> rewritten
//	C: 3 used                         -> kept
//	D: 9 used, 1 unused (10% unused)  -> kept (below the threshold)
type pruneFixture struct {
	dir          string
	packs        map[string]ID // "A".."D"
	used, unused map[ID][]byte
}

func newPruneFixture(t *testing.T) (*Repo, *pruneFixture) {
	t.Helper()
	dir := t.TempDir()
	r := openTest(t, dir, Options{PackSize: 1 << 20})
	f := &pruneFixture{dir: dir, packs: map[string]ID{}, used: map[ID][]byte{}, unused: map[ID][]byte{}}
	seed := uint64(1000)
	group := func(name string, used, unused int) {
		var blobs [][]byte
		for i := range used + unused {
			seed++
			b := randomBytes(seed, 10<<10)
			if i < used {
				f.used[Hash(b)] = b
			} else {
				f.unused[Hash(b)] = b
			}
			blobs = append(blobs, b)
		}
		before := r.Stats().Packs
		addFlush(t, r, blobs...)
		if r.Stats().Packs != before+1 {
			t.Fatalf("group %s made %d packs, want 1", name, r.Stats().Packs-before)
		}
		f.packs[name] = r.packs[len(r.packs)-1].id
	}
	group("A", 0, 3)
	group("B", 2, 2)
	group("C", 3, 0)
	group("D", 9, 1)
	return r, f
}

func (f *pruneFixture) usedFunc(extra ...ID) func(yield func(ID) bool) error {
	return func(yield func(ID) bool) error {
		ids := append(slices.Collect(maps.Keys(f.used)), extra...)
		for _, id := range append(ids, ids...) { // duplicates are allowed
			if !yield(id) {
				return nil
			}
		}
		return nil
	}
}

// check asserts that every used blob loads, no unused blob is indexed,
// and every pack verifies.
func (f *pruneFixture) check(t *testing.T, r *Repo) {
	t.Helper()
	for id, b := range f.used {
		mustLoad(t, r, id, b)
	}
	for id := range f.unused {
		if r.Has(id) {
			t.Errorf("unused blob %s is still indexed", id)
		}
	}
	if rep, err := r.VerifyPacks(t.Context(), func(p string, err error) {
		if err != nil {
			t.Errorf("verify pack %s: %v", p, err)
		}
	}); err != nil || len(rep.Damaged) != 0 {
		t.Fatalf("verify packs: %v, damaged blobs %v", err, rep.Damaged)
	}
	packs := packFiles(t, f.dir)
	indexes, _ := filepath.Glob(filepath.Join(f.dir, indexDir, "*"))
	if len(packs) != r.Stats().Packs || len(indexes) != len(packs) {
		t.Errorf("%d pack files, %d index files, %d packs in Stats", len(packs), len(indexes), r.Stats().Packs)
	}
}

func TestPrune(t *testing.T) {
	r, f := newPruneFixture(t)
	missing := Hash([]byte("referenced but never stored"))

	before := files(t, f.dir)
	dry, err := r.Prune(t.Context(), f.usedFunc(missing), true)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(before, files(t, f.dir)) {
		t.Fatal("a dry run changed files")
	}
	for id := range f.unused {
		if !r.Has(id) {
			t.Fatal("a dry run dropped a blob from the index")
		}
	}
	wantRemoved, wantRewritten := []string{f.packs["A"].String()}, []string{f.packs["B"].String()}
	if !slices.Equal(dry.PacksRemoved, wantRemoved) || !slices.Equal(dry.PacksRewritten, wantRewritten) || dry.BlobsRemoved != 5 || !dry.DryRun {
		t.Errorf("dry run report %+v, want A removed, B rewritten, 5 blobs", dry)
	}
	if dry.MissingBlobs != 1 || len(dry.Missing) != 1 || dry.Missing[0] != missing || dry.UsedBlobs != int64(len(f.used)+1) {
		t.Errorf("dry run: used %d, missing %d %v; want %d used, 1 missing", dry.UsedBlobs, dry.MissingBlobs, dry.Missing, len(f.used)+1)
	}

	statsBefore := r.Stats()
	rep, err := r.Prune(t.Context(), f.usedFunc(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.PacksRemoved, wantRemoved) || !slices.Equal(rep.PacksRewritten, wantRewritten) || len(rep.PacksWritten) != 1 {
		t.Errorf("report %+v, want A removed, B rewritten, 1 pack written", rep)
	}
	if rep.BlobsRemoved != 5 || rep.BlobsRepacked != 2 || rep.BytesFreed <= 0 || len(rep.Problems) != 0 {
		t.Errorf("report %+v: want 5 blobs removed, 2 repacked, bytes freed, no problems", rep)
	}
	if got := statsBefore.PackBytes - r.Stats().PackBytes; got != rep.BytesFreed {
		t.Errorf("pack bytes went down by %d, report says %d", got, rep.BytesFreed)
	}
	for _, name := range []string{"A", "B"} {
		if _, err := os.Stat(r.packPath(f.packs[name])); !os.IsNotExist(err) {
			t.Errorf("pack %s still exists", name)
		}
	}
	// D keeps its one unused blob (below the threshold): drop it from the
	// expectation, then check everything.
	for id := range f.unused {
		if r.Has(id) {
			if indexPack(r, id) != r.packByID[f.packs["D"]] {
				t.Errorf("unused blob %s survives outside pack D", id)
			}
			delete(f.unused, id)
		}
	}
	f.check(t, r)
	_ = r.Close()
	r2 := openTest(t, f.dir, Options{})
	f.check(t, r2)
	if rep := r2.OpenReport(); len(rep.AdoptedPacks)+len(rep.RemovedPacks)+len(rep.RemovedIndexes) != 0 {
		t.Errorf("reopen after prune repaired something: %+v", rep)
	}

	// Nothing used: everything goes.
	rep, err = r2.Prune(t.Context(), func(func(ID) bool) error { return nil }, false)
	if err != nil {
		t.Fatal(err)
	}
	if st := r2.Stats(); st.Packs != 0 || st.Blobs != 0 || len(packFiles(t, f.dir)) != 0 {
		t.Errorf("after pruning everything: %+v, %d pack files (report %+v)", st, len(packFiles(t, f.dir)), rep)
	}
}

var errCrash = errors.New("simulated crash")

func TestPruneCrash(t *testing.T) {
	tests := []struct {
		name       string
		step       string
		oldWins    bool // after reopen, point the used blobs of B at the old pack B
		wantAdopts int
	}{
		{"after new packs, new copies indexed", "packs-written", false, 0},
		{"after new packs, old copies indexed", "packs-written", true, 0},
		{"after old indexes removed", "indexes-removed", false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, f := newPruneFixture(t)
			r.pruneHook = func(step string) error {
				if step == tc.step {
					return errCrash
				}
				return nil
			}
			if _, err := r.Prune(t.Context(), f.usedFunc(), false); !errors.Is(err, errCrash) {
				t.Fatalf("prune: %v, want the simulated crash", err)
			}
			_ = r.Close()

			r2 := openTest(t, f.dir, Options{})
			if got := len(r2.OpenReport().AdoptedPacks); got != tc.wantAdopts {
				t.Errorf("reopen adopted %d packs, want %d", got, tc.wantAdopts)
			}
			for id, b := range f.used {
				mustLoad(t, r2, id, b)
			}
			if tc.oldWins {
				pointAt(t, r2, f.packs["B"])
			}
			if _, err := r2.Prune(t.Context(), f.usedFunc(), false); err != nil {
				t.Fatalf("prune after the crash: %v", err)
			}
			for id := range f.unused {
				if r2.Has(id) && indexPack(r2, id) == r2.packByID[f.packs["D"]] {
					delete(f.unused, id)
				}
			}
			f.check(t, r2)
			_ = r2.Close()
			r3 := openTest(t, f.dir, Options{})
			f.check(t, r3)
		})
	}
}

// pointAt makes the in-memory index place every blob of pack p in p (as
// if p's index file had been loaded first).
func pointAt(t *testing.T, r *Repo, p ID) {
	t.Helper()
	size, entries, err := r.readIndexFile(p)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.addPackLocked(p, size, entries, true)
	r.mu.Unlock()
}

func TestPruneLeavesDamagedPack(t *testing.T) {
	r, f := newPruneFixture(t)
	b := f.packs["B"]
	_, entries, err := r.readIndexFile(b)
	if err != nil {
		t.Fatal(err)
	}
	var victim packEntry
	for _, e := range entries {
		if _, ok := f.used[e.id]; ok {
			victim = e
			break
		}
	}
	flipByte(t, r.packPath(b), int64(victim.offset)+10)
	rep, err := r.Prune(t.Context(), f.usedFunc(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Name != b.String() || len(rep.PacksRewritten) != 0 {
		t.Fatalf("report %+v, want pack B left alone with a problem", rep)
	}
	if _, err := os.Stat(r.packPath(b)); err != nil {
		t.Errorf("damaged pack B was removed: %v", err)
	}
	if _, err := r.Load(DataBlob, victim.id, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("load of the damaged blob: %v, want ErrCorrupt", err)
	}
}

func TestPruneCancelled(t *testing.T) {
	r, f := newPruneFixture(t)
	ctx, cancel := contextCancelled(t)
	cancel()
	before := files(t, f.dir)
	if _, err := r.Prune(ctx, f.usedFunc(), false); err == nil {
		t.Fatal("prune with a cancelled context succeeded")
	}
	if !maps.Equal(before, files(t, f.dir)) {
		t.Error("a cancelled prune changed files")
	}
	if _, err := r.VerifyPacks(ctx, func(string, error) {}); err == nil {
		t.Error("verify with a cancelled context succeeded")
	}
}

func indexPack(r *Repo, id ID) uint32 {
	loc, _ := r.index.get(id)
	return loc.pack
}

// TestPruneMergesSmallPacks: flushes that each finish a nearly empty pack
// (as checkpoints do) leave small packs; Prune merges them once there are
// minSmallPacks, keeps every blob, and leaves a lone small pack alone.
func TestPruneMergesSmallPacks(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{PackSize: 1 << 20})
	var ids []ID
	var want [][]byte
	for i := range minSmallPacks + 2 {
		b := randomBytes(uint64(500+i), 10<<10)
		ids = append(ids, addFlush(t, r, b)...)
		want = append(want, b)
	}
	if n := r.Stats().Packs; n != minSmallPacks+2 {
		t.Fatalf("%d packs after %d flushes", n, minSmallPacks+2)
	}
	used := func(yield func(ID) bool) error {
		for _, id := range ids {
			if !yield(id) {
				break
			}
		}
		return nil
	}
	dry, err := r.Prune(t.Context(), used, true)
	if err != nil || len(dry.PacksRewritten) != minSmallPacks+2 || dry.BlobsRemoved != 0 {
		t.Fatalf("dry run: %v, %+v; want every small pack to be merged, nothing removed", err, dry)
	}
	rep, err := r.Prune(t.Context(), used, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.PacksRewritten) != minSmallPacks+2 || len(rep.PacksWritten) != 1 || rep.BlobsRepacked != int64(len(ids)) || rep.BlobsRemoved != 0 {
		t.Fatalf("report %+v; want %d packs merged into 1, every blob repacked", rep, minSmallPacks+2)
	}
	check := func(r *Repo) {
		t.Helper()
		if n := r.Stats().Packs; n != 1 {
			t.Errorf("%d packs after the merge, want 1", n)
		}
		for i, id := range ids {
			got, err := r.Load(DataBlob, id, nil)
			if err != nil || !bytes.Equal(got, want[i]) {
				t.Errorf("blob %d after the merge: %v", i, err)
			}
		}
	}
	check(r)
	_ = r.Close()
	r = openTest(t, dir, Options{PackSize: 1 << 20})
	check(r)
	// One small pack is below minSmallPacks: left as it is.
	again, err := r.Prune(t.Context(), used, false)
	if err != nil || len(again.PacksRewritten) != 0 || len(again.PacksWritten) != 0 {
		t.Errorf("a second prune: %v, %+v; want nothing rewritten", err, again)
	}
}
