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

// flipBlob flips one byte in the middle of blob id's stored bytes.
func flipBlob(t testing.TB, r *repo.Repo, id repo.ID) {
	t.Helper()
	info, ok := r.Locate(id)
	if !ok {
		t.Fatalf("blob %s is not indexed", id)
	}
	s := info.Pack.String()
	path := filepath.Join(r.Dir(), "packs", s[:2], s)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	off := info.Offset + info.Length/2
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x55
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// node returns the node at path (slash-separated, from the root) of a
// snapshot's tree.
func node(t testing.TB, r *repo.Repo, root repo.ID, path string) repo.Node {
	t.Helper()
	tree := root
	parts := strings.Split(path, "/")
	for i, name := range parts {
		tr, err := loadTree(r, tree)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range tr.Nodes {
			if n.Name != name {
				continue
			}
			if i == len(parts)-1 {
				return n
			}
			tree = *n.Subtree
		}
	}
	t.Fatalf("no node %s", path)
	return repo.Node{}
}

// TestVerifyReportsOnce: each kind of damage gives one problem line, by
// the path that reaches it when a snapshot uses it, else by pack.
func TestVerifyReportsOnce(t *testing.T) {
	tests := []struct {
		name string
		// damage breaks the repository and returns what the problem lines
		// must say, one entry a line, in order.
		damage func(t *testing.T, r *repo.Repo, snap repo.Snapshot) []string
	}{
		{"sound", func(t *testing.T, r *repo.Repo, snap repo.Snapshot) []string { return nil }},
		{"chunk of two files", func(t *testing.T, r *repo.Repo, snap repo.Snapshot) []string {
			id := node(t, r, snap.Tree, "docs/a.txt").Content[0]
			flipBlob(t, r, id)
			return []string{
				"snapshot " + snap.ID + ": /copy.txt: data blob " + id.String() + " damaged in pack ",
				"snapshot " + snap.ID + ": /docs/a.txt: data blob " + id.String() + " damaged in pack ",
			}
		}},
		{"two chunks of one file", func(t *testing.T, r *repo.Repo, snap repo.Snapshot) []string {
			content := node(t, r, snap.Tree, "big.bin").Content
			if len(content) < 2 {
				t.Fatalf("big.bin has %d chunks, want 2 or more", len(content))
			}
			flipBlob(t, r, content[1])
			flipBlob(t, r, content[0])
			return []string{"snapshot " + snap.ID + ": /big.bin: data blob " + content[0].String() + " damaged in pack "}
		}},
		{"tree", func(t *testing.T, r *repo.Repo, snap repo.Snapshot) []string {
			id := *node(t, r, snap.Tree, "docs").Subtree
			flipBlob(t, r, id)
			return []string{"snapshot " + snap.ID + ": /docs/: tree blob " + id.String() + " damaged in pack "}
		}},
		{"blob no snapshot uses", func(t *testing.T, r *repo.Repo, snap repo.Snapshot) []string {
			data := randBytes(99, 64<<10)
			id := repo.Hash(data)
			w := r.NewWriter()
			if _, err := w.Add(repo.DataBlob, id, data); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			flipBlob(t, r, id)
			info, _ := r.Locate(id)
			return []string{"pack " + info.Pack.String() + ": data blob " + id.String() + ", used by no snapshot: "}
		}},
		{"pack file missing", func(t *testing.T, r *repo.Repo, snap repo.Snapshot) []string {
			info, _ := r.Locate(snap.Tree)
			s := info.Pack.String()
			if err := os.Remove(filepath.Join(r.Dir(), "packs", s[:2], s)); err != nil {
				t.Fatal(err)
			}
			return []string{
				"pack " + s + ": the pack file cannot be read",
				"snapshot " + snap.ID + ": /: tree blob " + snap.Tree.String() + " damaged in pack " + s,
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			shared := randBytes(5, 100<<10)
			// Past the chunker's 8 MiB maximum, so at least two chunks
			// whatever the repository's random polynomial (4 MiB made one
			// chunk in about 3% of repositories).
			writeFile(t, filepath.Join(src, "big.bin"), randBytes(6, 9*mib), 0o644)
			writeFile(t, filepath.Join(src, "copy.txt"), shared, 0o644)
			writeFile(t, filepath.Join(src, "docs", "a.txt"), shared, 0o644)
			writeFile(t, filepath.Join(src, "docs", "b.txt"), []byte("fine"), 0o644)
			r := newRepo(t)
			snap := mustBackup(t, r, src, runOpts{}).snap
			want := tc.damage(t, r, snap)
			var problems []string
			rep, err := Verify(context.Background(), r, func(p string) { problems = append(problems, p) })
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) != len(want) || rep.Problems != int64(len(want)) {
				t.Fatalf("problems %q (report %+v); want %d lines: %q", problems, rep, len(want), want)
			}
			for i, w := range want {
				if !strings.Contains(problems[i], w) || strings.Contains(problems[i], "\n") {
					t.Errorf("problem %q; want one line containing %q", problems[i], w)
				}
			}
		})
	}
}

// TestVerifyMissingChunk: a file whose chunk is in no pack is reported
// once, by its path.
func TestVerifyMissingChunk(t *testing.T) {
	r := newRepo(t)
	gone := repo.Hash([]byte("never stored"))
	id := rawSnapshot(t, r, `{"nodes":[{"name":"f","type":"file","mode":420,"mtime":0,"size":12,"content":["`+gone.String()+`","`+gone.String()+`"]}]}`)
	var problems []string
	rep, err := Verify(context.Background(), r, func(p string) { problems = append(problems, p) })
	want := "snapshot " + id + ": /f: data blob " + gone.String() + " is missing (in no pack) (and 1 more bad chunk)"
	if err != nil || rep.Problems != 1 || len(problems) != 1 || problems[0] != want {
		t.Fatalf("verify: %+v, %v, %q; want one problem %q", rep, err, problems, want)
	}
}

// TestVerifyReadsPacksOnce: a verify reads every pack byte once and, on
// top, only the tree blobs it walks: no data blob is read twice.
func TestVerifyReadsPacksOnce(t *testing.T) {
	src := t.TempDir()
	richTree(t, src)
	r := newRepo(t)
	full := mustBackup(t, r, src, runOpts{})
	editTree(t, src)
	inc := mustBackup(t, r, src, runOpts{kind: KindIncremental, parent: &full.snap})
	var treeBytes int64
	if err := Used(context.Background(), r, []repo.Snapshot{full.snap, inc.snap}, func(id repo.ID) bool {
		if info, ok := r.Locate(id); ok && info.Type == repo.TreeBlob {
			treeBytes += info.Length
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	before := r.Stats()
	rep, err := Verify(context.Background(), r, func(p string) { t.Errorf("problem: %s", p) })
	if err != nil {
		t.Fatal(err)
	}
	read := r.Stats().ReadBytes - before.ReadBytes
	if read != before.PackBytes+treeBytes || rep.PackBytes != before.PackBytes || rep.Packs != int64(before.Packs) {
		t.Errorf("verify read %d bytes; want the %d bytes of the packs once plus %d of tree blobs (report %+v)", read, before.PackBytes, treeBytes, rep)
	}
}
