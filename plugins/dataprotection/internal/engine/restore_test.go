package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
	"github.com/datawarehouse/dw/sdk/v6"
)

func TestRestoreTarget(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("x"), 0o644)
	r := newRepo(t)
	snap := mustBackup(t, r, src, runOpts{}).snap

	cases := []struct {
		name    string
		prepare func(t *testing.T) string
		ok      bool
	}{
		{"missing, parents too", func(t *testing.T) string { return filepath.Join(t.TempDir(), "x", "y", "z") }, true},
		{"empty folder", func(t *testing.T) string { return t.TempDir() }, true},
		{"folder with a file", func(t *testing.T) string {
			d := t.TempDir()
			writeFile(t, filepath.Join(d, "keep.txt"), []byte("mine"), 0o644)
			return d
		}, false},
		{"folder with a hidden file", func(t *testing.T) string {
			d := t.TempDir()
			writeFile(t, filepath.Join(d, ".hidden"), nil, 0o644)
			return d
		}, false},
		{"a file", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "file")
			writeFile(t, p, []byte("x"), 0o644)
			return p
		}, false},
		{"a symlink to an empty folder", func(t *testing.T) string {
			d := t.TempDir()
			mkdir(t, filepath.Join(d, "empty"), 0o755)
			symlink(t, "empty", filepath.Join(d, "link"))
			return filepath.Join(d, "link")
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			target := c.prepare(t)
			err := restoreInto(context.Background(), t, r, snap.ID, target, Options{})
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				compareTrees(t, src, target)
				return
			}
			if !errIs(err, ErrTargetNotEmpty) || !errIs(err, sdk.ErrAlreadyExists) || !strings.Contains(err.Error(), target) {
				t.Fatalf("restore into %s: %v; want ErrTargetNotEmpty naming the target", target, err)
			}
		})
	}
	t.Run("unknown snapshot", func(t *testing.T) {
		err := restoreInto(context.Background(), t, r, "00112233445566778899aabbccddeeff", filepath.Join(t.TempDir(), "x"), Options{})
		if !errIs(err, sdk.ErrNotFound) {
			t.Fatalf("restore of an unknown snapshot: %v; want not found", err)
		}
	})
}

func TestOpenTarget(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(t *testing.T, parent, outside string) // lays out parent
		target  string
		notDir  bool // fails with ErrTargetNotEmpty
		fails   bool // fails otherwise
	}{
		{name: "missing, parents too", target: "x/y/z"},
		{name: "empty folder", target: "e", prepare: func(t *testing.T, parent, _ string) { mkdir(t, filepath.Join(parent, "e"), 0o755) }},
		{name: "through a symlink inside the parent", target: "in/t", prepare: func(t *testing.T, parent, _ string) {
			mkdir(t, filepath.Join(parent, "real"), 0o755)
			symlink(t, "real", filepath.Join(parent, "in"))
		}},
		{name: "a file", target: "f", notDir: true, prepare: func(t *testing.T, parent, _ string) {
			writeFile(t, filepath.Join(parent, "f"), []byte("x"), 0o644)
		}},
		{name: "a symlink to an empty folder", target: "link", notDir: true, prepare: func(t *testing.T, parent, _ string) {
			mkdir(t, filepath.Join(parent, "empty"), 0o755)
			symlink(t, "empty", filepath.Join(parent, "link"))
		}},
		{name: "dot dot", target: "../x", fails: true},
		{name: "absolute", target: "/x", fails: true},
		{name: "dot", target: ".", fails: true},
		{name: "through a symlink leading outside", target: "out/t", fails: true, prepare: func(t *testing.T, parent, outside string) {
			symlink(t, outside, filepath.Join(parent, "out"))
		}},
		{name: "through a relative symlink leading outside", target: "up/t", fails: true, prepare: func(t *testing.T, parent, _ string) {
			symlink(t, "..", filepath.Join(parent, "up"))
		}},
		{name: "a symlink leading outside", target: "out", notDir: true, prepare: func(t *testing.T, parent, outside string) {
			symlink(t, outside, filepath.Join(parent, "out"))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			parentDir, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
			mkdir(t, parentDir, 0o755)
			mkdir(t, outside, 0o755)
			if c.prepare != nil {
				c.prepare(t, parentDir, outside)
			}
			parent, err := os.OpenRoot(parentDir)
			if err != nil {
				t.Fatal(err)
			}
			defer parent.Close()
			root, err := OpenTarget(parent, c.target)
			if entries, _ := os.ReadDir(outside); len(entries) > 0 {
				t.Errorf("OpenTarget(%q) created %s outside the parent", c.target, entries[0].Name())
			}
			switch {
			case c.notDir:
				if !errIs(err, ErrTargetNotEmpty) || !strings.Contains(err.Error(), c.target) {
					t.Fatalf("OpenTarget(%q): %v; want ErrTargetNotEmpty naming the target", c.target, err)
				}
				return
			case c.fails:
				if err == nil || errIs(err, ErrTargetNotEmpty) || !strings.Contains(err.Error(), c.target) {
					t.Fatalf("OpenTarget(%q): %v; want an error naming the target", c.target, err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			defer root.Close()
			if err := root.WriteFile("probe", nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := parent.Stat(filepath.Join(c.target, "probe")); err != nil {
				t.Errorf("the Root opened for %q is not that folder: %v", c.target, err)
			}
		})
	}
}

// TestRestoreTargetSwapped: a component of the target swapped for a
// symlink leading outside the restore root after the checks cannot make
// the restore write outside it. Swapped before OpenTarget, the open fails;
// swapped after it, the restore writes into the folder that was checked
// and opened (now moved aside), never through the new symlink.
func TestRestoreTargetSwapped(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("x"), 0o644)
	mkdir(t, filepath.Join(src, "d"), 0o755)
	writeFile(t, filepath.Join(src, "d", "g"), []byte("y"), 0o644)
	r := newRepo(t)
	snap := mustBackup(t, r, src, runOpts{}).snap

	for _, swapped := range []string{"a", "a/t"} {
		setup := func(t *testing.T) (parent *os.Root, rootDir, outside string) {
			base := t.TempDir()
			rootDir, outside = filepath.Join(base, "restores"), filepath.Join(base, "outside")
			mkdir(t, filepath.Join(rootDir, "a", "t"), 0o755) // the checked target, an empty folder
			mkdir(t, outside, 0o755)
			parent, err := os.OpenRoot(rootDir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { parent.Close() })
			return parent, rootDir, outside
		}
		swap := func(t *testing.T, rootDir, outside string) {
			p := filepath.Join(rootDir, filepath.FromSlash(swapped))
			if err := os.Rename(p, p+".moved"); err != nil {
				t.Fatal(err)
			}
			symlink(t, outside, p)
		}
		t.Run("before open/"+swapped, func(t *testing.T) {
			parent, rootDir, outside := setup(t)
			swap(t, rootDir, outside)
			root, err := OpenTarget(parent, "a/t")
			if err == nil {
				err = Restore(context.Background(), r, snap.ID, root, Options{})
				root.Close()
				t.Errorf("OpenTarget through a swapped %s succeeded (restore: %v)", swapped, err)
			}
			if entries, _ := os.ReadDir(outside); len(entries) > 0 {
				t.Fatalf("the restore wrote %s outside the restore root", entries[0].Name())
			}
		})
		t.Run("after open/"+swapped, func(t *testing.T) {
			parent, rootDir, outside := setup(t)
			root, err := OpenTarget(parent, "a/t")
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			swap(t, rootDir, outside)
			if err := Restore(context.Background(), r, snap.ID, root, Options{}); err != nil {
				t.Fatal(err)
			}
			if entries, _ := os.ReadDir(outside); len(entries) > 0 {
				t.Fatalf("the restore wrote %s outside the restore root", entries[0].Name())
			}
			opened := filepath.Join(rootDir, "a.moved", "t")
			if swapped == "a/t" {
				opened = filepath.Join(rootDir, "a", "t.moved")
			}
			compareTrees(t, src, opened)
		})
	}
}

// rawSnapshot stores tree blobs as given (bypassing EncodeTree, as a
// hostile or damaged repository would hold them) and a snapshot whose root
// is the first.
func rawSnapshot(t testing.TB, r *repo.Repo, trees ...string) string {
	t.Helper()
	w := r.NewWriter()
	var root repo.ID
	for i, tr := range trees {
		id := repo.Hash([]byte(tr))
		if _, err := w.Add(repo.TreeBlob, id, []byte(tr)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			root = id
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	s := repo.Snapshot{ID: repo.NewSnapshotID(), Source: "test", Path: "/x", Kind: "full", Tree: root,
		StartedAt: time.Now(), CompletedAt: time.Now()}
	if err := r.SaveSnapshot(&s); err != nil {
		t.Fatal(err)
	}
	return s.ID
}

func TestRestoreHostileTrees(t *testing.T) {
	r := newRepo(t)
	// A real data blob, for files.
	w := r.NewWriter()
	data := []byte("payload")
	dataID := repo.Hash(data)
	if _, err := w.Add(repo.DataBlob, dataID, data); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	file := func(name string) string {
		return fmt.Sprintf(`{"name":%q,"type":"file","mode":420,"mtime":0,"size":7,"content":[%q]}`, name, dataID)
	}
	emptyTree := `{"nodes":[]}`
	emptyID := repo.Hash([]byte(emptyTree))
	dir := func(name string) string {
		return fmt.Sprintf(`{"name":%q,"type":"dir","mode":493,"mtime":0,"subtree":%q}`, name, emptyID)
	}
	cases := []struct {
		name  string
		trees []string
	}{
		{"dotdot file", []string{`{"nodes":[` + file("..") + `]}`}},
		{"dot", []string{`{"nodes":[` + file(".") + `]}`}},
		{"empty name", []string{`{"nodes":[` + file("") + `]}`}},
		{"slash escape", []string{`{"nodes":[` + file("../../escaped") + `]}`}},
		{"absolute", []string{`{"nodes":[` + file("/tmp/escaped") + `]}`}},
		{"nul", []string{`{"nodes":[` + file("a\x00b") + `]}`}},
		{"dotdot dir", []string{`{"nodes":[` + dir("..") + `]}`, emptyTree}},
		{"symlink then dir of the same name", []string{`{"nodes":[` +
			`{"name":"a","type":"symlink","mode":511,"mtime":0,"target":"/tmp"},` + dir("a") + `]}`, emptyTree}},
		{"unsorted", []string{`{"nodes":[` + file("b") + `,` + file("a") + `]}`}},
		{"deeper", []string{`{"nodes":[` + fmt.Sprintf(`{"name":"ok","type":"dir","mode":493,"mtime":0,"subtree":%q}`,
			repo.Hash([]byte(`{"nodes":[`+file("..")+`]}`))) + `]}`, `{"nodes":[` + file("..") + `]}`}},
		{"size does not match the content", []string{`{"nodes":[` + strings.Replace(file("f"), `"size":7`, `"size":9`, 1) + `]}`}},
		{"not json", []string{`{"nodes":[`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := rawSnapshot(t, r, c.trees...)
			parent := t.TempDir()
			target := filepath.Join(parent, "a", "target")
			err := restoreInto(context.Background(), t, r, id, target, Options{})
			if !errIs(err, repo.ErrCorrupt) {
				t.Fatalf("restore of a hostile tree: %v; want ErrCorrupt", err)
			}
			// Nothing outside the target.
			entries, _ := os.ReadDir(parent)
			if len(entries) != 1 || entries[0].Name() != "a" {
				t.Errorf("restore wrote beside the target: %v", entries)
			}
			inA, _ := os.ReadDir(filepath.Join(parent, "a"))
			if len(inA) != 1 || inA[0].Name() != "target" {
				t.Errorf("restore wrote beside the target: %v", inA)
			}
		})
	}
	t.Run("a symlink pointing out is created, never followed", func(t *testing.T) {
		id := rawSnapshot(t, r, `{"nodes":[{"name":"up","type":"symlink","mode":511,"mtime":5,"target":"../.."}]}`)
		target := filepath.Join(t.TempDir(), "target")
		if err := restoreInto(context.Background(), t, r, id, target, Options{}); err != nil {
			t.Fatal(err)
		}
		got, err := os.Readlink(filepath.Join(target, "up"))
		if err != nil || got != "../.." {
			t.Fatalf("symlink restored as %q (%v)", got, err)
		}
		fi, _ := os.Lstat(filepath.Join(target, "up"))
		if fi.ModTime().UnixNano() != 5 {
			t.Errorf("symlink mtime %d, want 5 (set on the link itself)", fi.ModTime().UnixNano())
		}
	})
}

func TestRestoreCancelled(t *testing.T) {
	src := t.TempDir()
	for i := range 50 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%02d", i)), randBytes(uint64(i), 100<<10), 0o644)
	}
	r := newRepo(t)
	snap := mustBackup(t, r, src, runOpts{}).snap
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opt := everyEvent()
	opt.OnProgress = func(p Progress) {
		if p.FilesDone >= 5 {
			cancel()
		}
	}
	err := restoreInto(ctx, t, r, snap.ID, filepath.Join(t.TempDir(), "t"), opt)
	if !errIs(err, context.Canceled) {
		t.Fatalf("cancelled restore: %v", err)
	}
}

func TestRestoreProgress(t *testing.T) {
	src := t.TempDir()
	richTree(t, src)
	r := newRepo(t)
	snap := mustBackup(t, r, src, runOpts{}).snap
	var last Progress
	calls := 0
	opt := everyEvent()
	opt.OnProgress = func(p Progress) {
		if p.BytesDone < last.BytesDone || p.FilesDone < last.FilesDone {
			t.Errorf("progress went back: %+v after %+v", p, last)
		}
		last = p
		calls++
	}
	if err := restoreInto(context.Background(), t, r, snap.ID, filepath.Join(t.TempDir(), "t"), opt); err != nil {
		t.Fatal(err)
	}
	if last.FilesDone != snap.Files || last.BytesDone != snap.Bytes || last.FilesTotal != snap.Files || last.BytesTotal != snap.Bytes || calls < 10 {
		t.Errorf("final progress %+v after %d calls; want %d files, %d bytes", last, calls, snap.Files, snap.Bytes)
	}
}
