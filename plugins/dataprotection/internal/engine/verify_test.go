package engine

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
)

func TestVerifyAndUsed(t *testing.T) {
	src := t.TempDir()
	richTree(t, src)
	r := newRepo(t)
	full := mustBackup(t, r, src, runOpts{})
	editTree(t, src)
	inc := mustBackup(t, r, src, runOpts{kind: KindIncremental, parent: &full.snap})
	ctx := context.Background()

	var problems []string
	rep, err := Verify(ctx, r, func(p string) { problems = append(problems, p) })
	if err != nil || len(problems) != 0 || rep.Problems != 0 {
		t.Fatalf("verify of a sound repository: %+v, %v, problems %v", rep, err, problems)
	}
	used := map[repo.ID]int{}
	if err := Used(ctx, r, []repo.Snapshot{full.snap, inc.snap}, func(id repo.ID) bool { used[id]++; return true }); err != nil {
		t.Fatal(err)
	}
	for id, n := range used {
		if n != 1 {
			t.Errorf("Used yielded %s %d times", id, n)
		}
	}
	if rep.Snapshots != 2 || int(rep.Trees+rep.DataBlobs) != len(used) {
		t.Errorf("verify report %+v; Used found %d blobs", rep, len(used))
	}
	// Every used blob is in the repository, and nothing else but the
	// manifests is needed: prune with Used, then everything restores and
	// verifies.
	if _, err := r.Prune(ctx, func(yield func(repo.ID) bool) error {
		return Used(ctx, r, []repo.Snapshot{inc.snap}, yield)
	}, false); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveSnapshot(full.snap.ID); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, mustRestore(t, r, inc.snap.ID))
	if rep, err := Verify(ctx, r, func(p string) { t.Errorf("problem after prune: %s", p) }); err != nil || rep.Snapshots != 1 {
		t.Fatalf("verify after prune: %+v, %v", rep, err)
	}
	// yield false stops.
	n := 0
	if err := Used(ctx, r, []repo.Snapshot{inc.snap}, func(repo.ID) bool { n++; return n < 3 }); err != nil || n != 3 {
		t.Errorf("Used after stop: %d yields, %v; want 3, nil", n, err)
	}
}

// largestPack returns the path of the largest pack file.
func largestPack(t testing.TB, r *repo.Repo) string {
	t.Helper()
	var best string
	var size int64
	err := filepath.WalkDir(filepath.Join(r.Dir(), "packs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil && fi.Size() > size {
			best, size = p, fi.Size()
		}
		return err
	})
	if err != nil || best == "" {
		t.Fatalf("no pack found: %v", err)
	}
	return best
}

func TestCorruptPack(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "big.bin"), randBytes(11, 12*mib), 0o644)
	writeFile(t, filepath.Join(src, "small.txt"), []byte("fine"), 0o644)
	r := newRepo(t)
	snap := mustBackup(t, r, src, runOpts{}).snap
	pack := largestPack(t, r)
	f, err := os.OpenFile(pack, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	var b [1]byte
	off := fi.Size() / 2 // inside a data blob: the pack is nearly all random chunks
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x55
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	packName := filepath.Base(pack)

	var problems []string
	rep, err := Verify(context.Background(), r, func(p string) { problems = append(problems, p) })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Problems != 1 || len(problems) != 1 || !strings.Contains(problems[0], packName) ||
		!strings.Contains(problems[0], "/big.bin") || !strings.Contains(problems[0], snap.ID) {
		t.Fatalf("verify found %v (%+v); want one problem naming the snapshot, /big.bin and pack %s", problems, rep, packName)
	}
	err = restoreInto(context.Background(), t, r, snap.ID, filepath.Join(t.TempDir(), "t"), Options{})
	if !errIs(err, repo.ErrCorrupt) || !strings.Contains(err.Error(), packName) || !strings.Contains(err.Error(), "/big.bin") {
		t.Fatalf("restore of a corrupt pack: %v; want ErrCorrupt naming the pack and the file", err)
	}
}

func TestVerifyMissingTree(t *testing.T) {
	r := newRepo(t)
	id := rawSnapshot(t, r, `{"nodes":[{"name":"d","type":"dir","mode":493,"mtime":0,"subtree":"`+repo.Hash([]byte("gone")).String()+`"}]}`)
	var problems []string
	rep, err := Verify(context.Background(), r, func(p string) { problems = append(problems, p) })
	if err != nil || rep.Problems != 1 || !strings.Contains(problems[0], "snapshot "+id+": /d/") {
		t.Fatalf("verify: %+v, %v, %v; want one problem at /d/", rep, err, problems)
	}
	snap, _ := r.LoadSnapshot(id)
	err = Used(context.Background(), r, []repo.Snapshot{snap}, func(repo.ID) bool { return true })
	if !errIs(err, repo.ErrNotFound) {
		t.Fatalf("Used over a missing tree: %v; want an error (a prune must not go on)", err)
	}
}
