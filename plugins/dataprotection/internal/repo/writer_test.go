package repo

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

func TestPackWriteFailure(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{})
	x := randomBytes(20, 50<<10)
	wA, wB := r.NewWriter(), r.NewWriter()
	if n, err := wA.Add(DataBlob, Hash(x), x); n == 0 || err != nil {
		t.Fatalf("add: %d, %v", n, err)
	}
	if n, err := wB.Add(DataBlob, Hash(x), x); n != 0 || err != nil {
		t.Fatalf("add of a pending blob by another writer: %d, %v; want 0, nil", n, err)
	}
	// The index folder becomes a file: writing the pack's index fails.
	index := filepath.Join(dir, indexDir)
	if err := os.Remove(index); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(index, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := wA.Flush(); err == nil {
		t.Fatal("flush succeeded although the index could not be written")
	}
	if err := wB.Flush(); err == nil {
		t.Fatal("flush of a writer that deduplicated against the lost blob succeeded")
	}
	if r.Has(Hash(x)) {
		t.Error("the lost blob is still reported as present")
	}
	if n := len(packFiles(t, dir)); n != 0 {
		t.Errorf("%d pack files left without index", n)
	}
	if _, err := wA.Add(DataBlob, Hash([]byte("y")), []byte("y")); err == nil {
		t.Error("a failed writer accepted a blob")
	}

	// Repaired: a new Writer stores the blob again.
	if err := os.Remove(index); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(index, 0o700); err != nil {
		t.Fatal(err)
	}
	w := r.NewWriter()
	if n, err := w.Add(DataBlob, Hash(x), x); n == 0 || err != nil {
		t.Fatalf("add after repair: %d, %v", n, err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	mustLoad(t, r, Hash(x), x)
}

func TestAddWithoutTempFolder(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{})
	if err := os.RemoveAll(filepath.Join(dir, tmpDir)); err != nil {
		t.Fatal(err)
	}
	w := r.NewWriter()
	x := []byte("cannot be stored yet")
	if _, err := w.Add(DataBlob, Hash(x), x); err == nil {
		t.Fatal("add succeeded without a temp folder")
	}
	if r.Has(Hash(x)) {
		t.Error("a blob that was not appended is reported as present")
	}
	if err := os.Mkdir(filepath.Join(dir, tmpDir), 0o700); err != nil {
		t.Fatal(err)
	}
	// No pack failed, so the same Writer goes on.
	if n, err := w.Add(DataBlob, Hash(x), x); n == 0 || err != nil {
		t.Fatalf("add after the folder is back: %d, %v", n, err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	mustLoad(t, r, Hash(x), x)
}

// TestConcurrentWriters has several Writers add overlapping blob sets with
// small packs (many rollovers) while others load flushed blobs, then checks
// that every blob is stored exactly once and survives a reopen.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{PackSize: 48 << 10})
	var blobs [][]byte
	for i := range 60 {
		blobs = append(blobs, randomBytes(uint64(500+i), 4<<10+i*97))
	}
	flushed := addFlush(t, r, blobs[:10]...)
	var stored atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			w := r.NewWriter()
			for k := range len(blobs) {
				b := blobs[(k+g*15)%len(blobs)] // each Writer starts elsewhere
				n, err := w.Add(DataBlob, Hash(b), b)
				if err != nil {
					t.Errorf("add: %v", err)
					return
				}
				if n > 0 {
					stored.Add(1)
				}
			}
			if err := w.Flush(); err != nil {
				t.Errorf("flush: %v", err)
			}
		})
		wg.Go(func() {
			var buf []byte
			for k := range 50 {
				var err error
				if buf, err = r.Load(DataBlob, flushed[(k+g)%len(flushed)], buf); err != nil {
					t.Errorf("load: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := stored.Load(); got != int64(len(blobs)-10) {
		t.Errorf("%d Adds stored a blob, want %d (each new blob once)", got, len(blobs)-10)
	}
	if st := r.Stats(); st.Blobs != int64(len(blobs)) {
		t.Errorf("%d blobs indexed, want %d", st.Blobs, len(blobs))
	}
	_ = r.Close()
	r2 := openTest(t, dir, Options{})
	for _, b := range blobs {
		mustLoad(t, r2, Hash(b), b)
	}
}

// TestLoadDuringPrune loads used blobs while Prune moves them to new packs.
func TestLoadDuringPrune(t *testing.T) {
	r, f := newPruneFixture(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for id, b := range f.used {
					got, err := r.Load(DataBlob, id, nil)
					if err != nil || string(got) != string(b) {
						t.Errorf("load during prune: %v", err)
						return
					}
				}
			}
		})
	}
	_, err := r.Prune(t.Context(), f.usedFunc(), false)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
}
