package engine

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
)

// richTree builds a source with every kind of entry a round trip must keep.
func richTree(t testing.TB, dir string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "empty.txt"), nil, 0o644)
	writeFile(t, filepath.Join(dir, "small.txt"), []byte("hello\n"), 0o640)
	writeFile(t, filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	writeFile(t, filepath.Join(dir, "setuid"), []byte("s"), 0o4755)
	writeFile(t, filepath.Join(dir, "big.bin"), randBytes(1, 20*mib), 0o600)
	writeFile(t, filepath.Join(dir, "text.log"), textBytes(2, 3*mib+17), 0o644)
	writeFile(t, filepath.Join(dir, "a", "b", "c", "deep.txt"), []byte("deep"), 0o644)
	writeFile(t, filepath.Join(dir, "a", "b", "sibling"), randBytes(3, 700<<10), 0o644)
	writeFile(t, filepath.Join(dir, "ünï cödé.txt"), []byte("unicode"), 0o644)
	writeFile(t, filepath.Join(dir, "new\nline"), []byte("newline"), 0o644)
	writeFile(t, filepath.Join(dir, "bad\xffname"), []byte("not utf-8"), 0o644)
	mkdir(t, filepath.Join(dir, "emptydir"), 0o750)
	mkdir(t, filepath.Join(dir, "e1", "e2"), 0o700)
	mkdir(t, filepath.Join(dir, "setgid"), 0o2775)
	mkdir(t, filepath.Join(dir, "sticky"), 0o1777)
	writeFile(t, filepath.Join(dir, "readonly", "inside.txt"), []byte("ro"), 0o444)
	mkdir(t, filepath.Join(dir, "readonly"), 0o555)
	symlink(t, "a/b/c/deep.txt", filepath.Join(dir, "rel-link"))
	symlink(t, "/etc/hostname", filepath.Join(dir, "abs-link"))
	symlink(t, "does/not/exist", filepath.Join(dir, "dangling"))
	symlink(t, "a", filepath.Join(dir, "dir-link"))
	symlink(t, "../../outside\xfe", filepath.Join(dir, "a", "up-link"))
	stampTimes(t, dir, time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC).UnixNano())
}

func TestRoundTripFull(t *testing.T) {
	src := t.TempDir()
	richTree(t, src)
	want := scanTree(t, src)
	r := newRepo(t)
	res := mustBackup(t, r, src, runOpts{})

	var files, dirs, links, size int64
	for _, e := range want {
		switch {
		case e.typ.IsDir():
			dirs++
		case e.typ&fs.ModeSymlink != 0:
			links++
		default:
			files++
			size += e.size
		}
	}
	s := res.snap
	if s.Files != files || s.Dirs != dirs || s.Symlinks != links || s.Bytes != size {
		t.Errorf("snapshot counts files %d dirs %d symlinks %d bytes %d, want %d %d %d %d", s.Files, s.Dirs, s.Symlinks, s.Bytes, files, dirs, links, size)
	}
	if s.Path != src || s.CompletedAt.IsZero() || s.StartedAt.After(s.CompletedAt) || s.AddedBytes <= 0 {
		t.Errorf("snapshot %+v: want path %s, times set, added bytes > 0", s, src)
	}
	if p := res.last; p.FilesDone != files || p.BytesDone != size || p.BytesRead != size || p.FilesTotal != files || p.BytesTotal != size || !p.TotalsKnown {
		t.Errorf("final progress %+v, want %d files and %d bytes done, read and total", p, files, size)
	}
	if len(res.warnings) != 0 {
		t.Errorf("warnings: %v", res.warnings)
	}
	listed, err := r.Snapshots()
	if err != nil || len(listed) != 1 || listed[0].ID != s.ID {
		t.Fatalf("Snapshots() = %v, %v; want the one snapshot", listed, err)
	}
	compareScans(t, want, scanTree(t, mustRestore(t, r, s.ID)))

	// An unchanged full backup reads everything again and stores nothing new
	// but the manifest; its root tree is the same.
	again := mustBackup(t, r, src, runOpts{})
	if again.snap.Tree != s.Tree || again.snap.AddedBytes != 0 || again.last.BytesRead != size {
		t.Errorf("second full: tree %s (first %s), added %d, read %d; want the same tree, 0 added, %d read",
			again.snap.Tree, s.Tree, again.snap.AddedBytes, again.last.BytesRead, size)
	}
}

func TestRoundTripWorkers(t *testing.T) {
	src := t.TempDir()
	for i := range 40 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%02d", i)), randBytes(uint64(i), i*37<<10), 0o644)
	}
	stampTimes(t, src, 1e18)
	want := scanTree(t, src)
	for _, w := range []int{1, 2, 7} {
		t.Run(fmt.Sprint(w), func(t *testing.T) {
			r := newRepo(t)
			res := mustBackup(t, r, src, runOpts{opt: Options{Workers: w}})
			target := filepath.Join(t.TempDir(), "x")
			if err := restoreInto(context.Background(), t, r, res.snap.ID, target, Options{Workers: w}); err != nil {
				t.Fatal(err)
			}
			compareScans(t, want, scanTree(t, target))
		})
	}
}

// editTree applies edits, deletions, renames and new files to a richTree
// and returns the bytes of the files the next incremental must read.
func editTree(t testing.TB, src string) int64 {
	t.Helper()
	base := time.Date(2022, 1, 1, 0, 0, 0, 987654321, time.UTC).UnixNano()
	var read int64
	// Edited in place, same size, new mtime.
	writeFile(t, filepath.Join(src, "small.txt"), []byte("HELLO\n"), 0o640)
	setMTime(t, filepath.Join(src, "small.txt"), base+1)
	read += 6
	// Grown.
	text := append(textBytes(2, 3*mib+17), "appended"...)
	writeFile(t, filepath.Join(src, "text.log"), text, 0o644)
	setMTime(t, filepath.Join(src, "text.log"), base+2)
	read += int64(len(text))
	// Deleted.
	if err := os.Remove(filepath.Join(src, "run.sh")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(src, "e1")); err != nil {
		t.Fatal(err)
	}
	// Renamed: same inode, size and mtime, but another path: read again.
	if err := os.Rename(filepath.Join(src, "a", "b", "sibling"), filepath.Join(src, "a", "renamed")); err != nil {
		t.Fatal(err)
	}
	read += 700 << 10
	// New.
	writeFile(t, filepath.Join(src, "new", "file.bin"), randBytes(9, 2*mib), 0o600)
	setMTime(t, filepath.Join(src, "new", "file.bin"), base+3)
	read += 2 * mib
	symlink(t, "new/file.bin", filepath.Join(src, "new-link"))
	// Mode change only: not read (size, mtime, inode unchanged), but the
	// new mode is in the snapshot.
	if err := os.Chmod(filepath.Join(src, "setuid"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"", "a", "a/b", "new"} {
		setMTime(t, filepath.Join(src, d), base+100)
	}
	return read
}

func TestIncrementalAfterChanges(t *testing.T) {
	src := t.TempDir()
	richTree(t, src)
	r := newRepo(t)
	full := mustBackup(t, r, src, runOpts{})
	before := scanTree(t, src)

	// Unchanged incremental: reads nothing, adds nothing, same tree.
	inc0 := mustBackup(t, r, src, runOpts{kind: KindIncremental, parent: &full.snap})
	if inc0.last.BytesRead != 0 || inc0.snap.AddedBytes != 0 || inc0.snap.Tree != full.snap.Tree {
		t.Errorf("unchanged incremental read %d, added %d, tree %s (full %s); want 0, 0, same tree",
			inc0.last.BytesRead, inc0.snap.AddedBytes, inc0.snap.Tree, full.snap.Tree)
	}
	if inc0.last.BytesDone != full.snap.Bytes || inc0.snap.Bytes != full.snap.Bytes || inc0.snap.Files != full.snap.Files {
		t.Errorf("unchanged incremental: done %d bytes, snapshot %d bytes %d files; want %d bytes %d files",
			inc0.last.BytesDone, inc0.snap.Bytes, inc0.snap.Files, full.snap.Bytes, full.snap.Files)
	}

	wantRead := editTree(t, src)
	after := scanTree(t, src)
	inc := mustBackup(t, r, src, runOpts{kind: KindIncremental, parent: &inc0.snap})
	if inc.last.BytesRead != wantRead {
		t.Errorf("incremental read %d bytes, want %d (only edited, renamed and new files)", inc.last.BytesRead, wantRead)
	}
	compareScans(t, after, scanTree(t, mustRestore(t, r, inc.snap.ID)))
	// Every snapshot stays complete on its own.
	compareScans(t, before, scanTree(t, mustRestore(t, r, full.snap.ID)))
	compareScans(t, before, scanTree(t, mustRestore(t, r, inc0.snap.ID)))

	// A full after the edits reads everything and restores the same.
	full2 := mustBackup(t, r, src, runOpts{})
	if full2.snap.Tree != inc.snap.Tree {
		t.Errorf("full after edits has tree %s, incremental %s: want the same", full2.snap.Tree, inc.snap.Tree)
	}
	// "full" with a parent does not skip.
	f3 := mustBackup(t, r, src, runOpts{kind: "full", parent: &inc.snap})
	if f3.last.BytesRead != f3.snap.Bytes {
		t.Errorf("full with a parent read %d of %d bytes", f3.last.BytesRead, f3.snap.Bytes)
	}
}

func TestManySmallFiles(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 2000
	}
	src := t.TempDir()
	for d := range 100 {
		mkdir(t, filepath.Join(src, fmt.Sprintf("d%03d", d)), 0o755)
	}
	for i := range n {
		p := filepath.Join(src, fmt.Sprintf("d%03d", i%100), fmt.Sprintf("f%05d.txt", i))
		if err := os.WriteFile(p, fmt.Appendf(nil, "file %d\n%s", i, strings.Repeat("x", i%300)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stampTimes(t, src, 1.6e18)
	want := scanTree(t, src)
	r := newRepo(t)
	full := mustBackup(t, r, src, runOpts{})
	if full.snap.Files != int64(n) || full.snap.Dirs != 100 {
		t.Errorf("snapshot has %d files, %d dirs; want %d, 100", full.snap.Files, full.snap.Dirs, n)
	}
	compareScans(t, want, scanTree(t, mustRestore(t, r, full.snap.ID)))

	// Edit 1%, delete some, add some.
	var wantRead int64
	for i := 0; i < n; i += 100 {
		p := filepath.Join(src, fmt.Sprintf("d%03d", i%100), fmt.Sprintf("f%05d.txt", i))
		data := fmt.Appendf(nil, "edited %d", i)
		writeFile(t, p, data, 0o644)
		setMTime(t, p, 1.7e18+int64(i))
		wantRead += int64(len(data))
	}
	for i := 1; i < n; i += 1000 {
		if err := os.Remove(filepath.Join(src, fmt.Sprintf("d%03d", i%100), fmt.Sprintf("f%05d.txt", i))); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(src, "d000", "zz-new"), []byte("new file"), 0o600)
	wantRead += 8
	inc := mustBackup(t, r, src, runOpts{kind: KindIncremental, parent: &full.snap})
	if inc.last.BytesRead != wantRead {
		t.Errorf("incremental read %d bytes, want %d", inc.last.BytesRead, wantRead)
	}
	compareTrees(t, src, mustRestore(t, r, inc.snap.ID))
}

func TestBackupErrors(t *testing.T) {
	r := newRepo(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a", "secret"), []byte("x"), 0o644)
	writeFile(t, filepath.Join(src, "b"), []byte("y"), 0o644)

	t.Run("unreadable file fails the job naming it", func(t *testing.T) {
		res := doBackup(t, context.Background(), r, src, runOpts{opt: Options{failOpen: func(p string) error {
			if p == "a/secret" {
				return &fs.PathError{Op: "open", Path: p, Err: syscall.EACCES}
			}
			return nil
		}}})
		if res.err == nil || !errIs(res.err, fs.ErrPermission) || !strings.Contains(res.err.Error(), filepath.Join(src, "a", "secret")) {
			t.Fatalf("backup error %v: want permission denied naming %s", res.err, filepath.Join(src, "a", "secret"))
		}
	})
	t.Run("permission denied for real", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads every file; the failOpen case covers the logic")
		}
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "locked"), []byte("x"), 0o000)
		res := doBackup(t, context.Background(), r, dir, runOpts{})
		if !errIs(res.err, fs.ErrPermission) || !strings.Contains(res.err.Error(), "locked") {
			t.Fatalf("backup error %v: want permission denied naming the file", res.err)
		}
	})
	t.Run("source missing", func(t *testing.T) {
		res := doBackup(t, context.Background(), r, filepath.Join(src, "nope"), runOpts{})
		if !errIs(res.err, fs.ErrNotExist) {
			t.Fatalf("backup error %v: want not exist", res.err)
		}
	})
	t.Run("source is a file", func(t *testing.T) {
		res := doBackup(t, context.Background(), r, filepath.Join(src, "b"), runOpts{})
		if res.err == nil {
			t.Fatal("backup of a file succeeded")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res := doBackup(t, ctx, r, src, runOpts{})
		if !errIs(res.err, context.Canceled) {
			t.Fatalf("backup error %v: want context.Canceled", res.err)
		}
	})
	t.Run("checkpoint error fails the job", func(t *testing.T) {
		opt := everyEvent()
		opt.Checkpoint = func([]byte) error { return fmt.Errorf("kv store down") }
		res := doBackup(t, context.Background(), r, src, runOpts{opt: opt})
		if res.err == nil || !strings.Contains(res.err.Error(), "kv store down") {
			t.Fatalf("backup error %v: want the checkpoint's", res.err)
		}
	})
	snaps, err := r.Snapshots()
	if err != nil || len(snaps) != 0 {
		t.Fatalf("failed backups left snapshots %v (%v)", snaps, err)
	}
}

func TestSpecialFilesSkipped(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "file"), []byte("x"), 0o644)
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	r := newRepo(t)
	res := mustBackup(t, r, src, runOpts{})
	if len(res.warnings) != 1 || res.warnings[0].Kind != WarnSkipped || res.warnings[0].Path != "fifo" {
		t.Errorf("warnings %v: want one skipped fifo", res.warnings)
	}
	if res.snap.Files != 1 {
		t.Errorf("snapshot has %d files, want 1", res.snap.Files)
	}
	target := mustRestore(t, r, res.snap.ID)
	if _, err := os.Lstat(filepath.Join(target, "fifo")); !os.IsNotExist(err) {
		t.Errorf("fifo restored: %v", err)
	}
}

func TestFileChangedWhileRead(t *testing.T) {
	src := t.TempDir()
	p := filepath.Join(src, "growing.log")
	writeFile(t, p, []byte("first line\n"), 0o644)
	setMTime(t, p, 1e18)
	r := newRepo(t)
	grew := false
	res := mustBackup(t, r, src, runOpts{opt: Options{failOpen: func(rel string) error {
		// Runs after the entry was listed and stat'ed, before it is read.
		if !grew {
			grew = true
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("second line\n")
			return err
		}
		return nil
	}}})
	if !hasWarning(res.warnings, WarnFileChanged) {
		t.Fatalf("warnings %v: want file-changed", res.warnings)
	}
	// The snapshot holds what was read (both lines) with the mtime from
	// before the read.
	target := mustRestore(t, r, res.snap.ID)
	got, err := os.ReadFile(filepath.Join(target, "growing.log"))
	if err != nil || string(got) != "first line\nsecond line\n" {
		t.Errorf("restored %q (%v), want both lines", got, err)
	}
	fi, err := os.Lstat(filepath.Join(target, "growing.log"))
	if err != nil || fi.ModTime().UnixNano() != 1e18 {
		t.Errorf("restored mtime %v (%v), want the one before the read", fi.ModTime(), err)
	}
	// The next incremental reads it again.
	inc := mustBackup(t, r, src, runOpts{kind: KindIncremental, parent: &res.snap})
	if inc.last.BytesRead != 23 {
		t.Errorf("incremental after a changed file read %d bytes, want 23", inc.last.BytesRead)
	}
}

func TestIncrementalParentDamaged(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("data"), 0o644)
	r := newRepo(t)
	full := mustBackup(t, r, src, runOpts{})
	bogus := full.snap
	bogus.Tree = repo.Hash([]byte("no such tree"))
	inc := mustBackup(t, r, src, runOpts{kind: KindIncremental, parent: &bogus})
	if !hasWarning(inc.warnings, WarnParentUnreadable) || inc.last.BytesRead != 4 {
		t.Errorf("warnings %v, read %d: want parent-unreadable and the file read", inc.warnings, inc.last.BytesRead)
	}
	compareTrees(t, src, mustRestore(t, r, inc.snap.ID))
}

func TestDoneRule(t *testing.T) {
	nodes := []repo.Node{{Name: "b"}, {Name: "d"}}
	cases := []struct {
		res  *dirResume
		name string
		done bool
	}{
		{nil, "a", false},
		{&dirResume{nodes: nodes}, "a", true},
		{&dirResume{nodes: nodes}, "c", true}, // between done entries: listed after the checkpoint's walk passed it
		{&dirResume{nodes: nodes}, "d", true},
		{&dirResume{nodes: nodes}, "e", false},
		{&dirResume{nodes: nodes, next: "f"}, "e", true},
		{&dirResume{nodes: nodes, next: "f"}, "f", false},
		{&dirResume{nodes: nodes, next: "f"}, "g", false},
		{&dirResume{}, "a", false},
	}
	for _, c := range cases {
		if got := c.res.done(c.name); got != c.done {
			t.Errorf("%+v.done(%q) = %v, want %v", c.res, c.name, got, c.done)
		}
	}
}

func TestEmptySource(t *testing.T) {
	src := t.TempDir()
	r := newRepo(t)
	res := mustBackup(t, r, src, runOpts{})
	if s := res.snap; s.Files != 0 || s.Dirs != 0 || s.Bytes != 0 {
		t.Errorf("snapshot of an empty folder: %+v", s)
	}
	target := mustRestore(t, r, res.snap.ID)
	if entries, err := os.ReadDir(target); err != nil || len(entries) != 0 {
		t.Errorf("restore of an empty snapshot: %v, %v", entries, err)
	}
}
