package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
)

const bigSize = 20 * mib

// resumeTree builds small files, a large file, a subfolder, more small
// files: walk order a*, m-big.bin, sub/..., z*.
func resumeTree(t testing.TB, src string) int64 { return resumeTreeSized(t, src, bigSize) }

func resumeTreeSized(t testing.TB, src string, big int) int64 {
	t.Helper()
	var total int64
	add := func(rel string, data []byte) {
		writeFile(t, filepath.Join(src, rel), data, 0o644)
		total += int64(len(data))
	}
	for i := range 20 {
		add(fmt.Sprintf("a%02d", i), randBytes(uint64(100+i), 10<<10))
	}
	add("m-big.bin", randBytes(7, big))
	for i := range 10 {
		add(fmt.Sprintf("sub/s%02d", i), randBytes(uint64(200+i), 50<<10))
	}
	add("sub/deeper/x", textBytes(5, 1<<10))
	for i := range 20 {
		add(fmt.Sprintf("z%02d", i), randBytes(uint64(300+i), 10<<10))
	}
	stampTimes(t, src, 1.5e18)
	return total
}

type stopAt struct {
	cp       func(cp *cpState) bool // stop after this checkpoint
	progress func(p Progress) bool  // stop at this progress report
}

// interrupt runs a backup that is cancelled when stop says so, and returns
// its last checkpoint (nil if none) and the largest one's size.
func interrupt(t testing.TB, r *repo.Repo, src string, meta *repo.Snapshot, resume []byte, stop stopAt) ([]byte, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last []byte
	maxLen := 0
	opt := everyEvent()
	if stop.cp == nil {
		opt.CheckpointEvery = 1 << 62 // never
	}
	opt.Checkpoint = func(b []byte) error {
		cp, err := decodeCheckpoint(b)
		if err != nil {
			t.Errorf("checkpoint does not decode: %v", err)
		}
		last, maxLen = b, max(maxLen, len(b))
		if stop.cp != nil && stop.cp(cp) {
			cancel()
		}
		return nil
	}
	o := runOpts{meta: meta, resume: resume, opt: opt}
	if stop.progress != nil {
		o.onProgress = func(p Progress) {
			if stop.progress(p) {
				cancel()
			}
		}
	}
	res := doBackup(t, ctx, r, src, o)
	if !errIs(res.err, context.Canceled) {
		t.Fatalf("interrupted backup returned %v, want context.Canceled", res.err)
	}
	return last, maxLen
}

// reopen closes r as a crash would leave it (blobs added since the last
// Flush are lost) and opens it again.
func reopen(t testing.TB, r *repo.Repo) *repo.Repo {
	t.Helper()
	dir := r.Dir()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return openRepo(t, dir)
}

func midBig(min int64) func(cp *cpState) bool {
	return func(cp *cpState) bool {
		return cp.File != nil && string(cp.File.Name) == "m-big.bin" && cp.File.Offset >= min
	}
}

func TestResume(t *testing.T) {
	src := t.TempDir()
	total := resumeTree(t, src)
	want := scanTree(t, src)

	betweenFiles := func(cp *cpState) bool { return cp.File == nil && len(cp.Stack) == 1 && cp.Counts.Files >= 35 }
	inSub := func(cp *cpState) bool { return len(cp.Stack) == 2 && cp.Counts.Files >= 24 }
	cases := []struct {
		name  string
		stops []stopAt
		// the resumed run reads at most this much
		maxRead int64
	}{
		{"before any checkpoint", []stopAt{{progress: func(p Progress) bool { return p.BytesDone > 5*mib }}}, total},
		{"mid large file", []stopAt{{cp: midBig(8 * mib)}}, total - 8*mib},
		{"between files", []stopAt{{cp: betweenFiles}}, 20 * 10 << 10},
		{"inside a subfolder", []stopAt{{cp: inSub}}, total - bigSize},
		{"twice", []stopAt{{cp: midBig(4 * mib)}, {cp: betweenFiles}}, 20 * 10 << 10},
		{"twice in the large file", []stopAt{{cp: midBig(2 * mib)}, {cp: midBig(12 * mib)}}, total - 12*mib},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRepo(t)
			meta := repo.Snapshot{ID: repo.NewSnapshotID(), Source: "test", Kind: "full"}
			var cp []byte
			var firstStart time.Time
			for _, stop := range c.stops {
				var n int
				cp, n = interrupt(t, r, src, &meta, cp, stop)
				if n > 2048 {
					t.Errorf("a checkpoint has %d bytes; want it small", n)
				}
				if snaps, _ := r.Snapshots(); len(snaps) != 0 {
					t.Fatalf("an interrupted backup is listed: %v", snaps)
				}
				r = reopen(t, r)
				if cp != nil && firstStart.IsZero() {
					st, _ := decodeCheckpoint(cp)
					firstStart = st.StartedAt
				}
			}
			if c.name != "before any checkpoint" && cp == nil {
				t.Fatal("no checkpoint was taken")
			}
			res := mustBackup(t, r, src, runOpts{meta: &meta, resume: cp})
			if hasWarning(res.warnings, WarnResumeRestarted) {
				t.Fatalf("resume restarted: %v", res.warnings)
			}
			if res.last.BytesRead > c.maxRead {
				t.Errorf("resumed run read %d bytes, want at most %d (a full run reads %d)", res.last.BytesRead, c.maxRead, total)
			}
			if res.last.BytesDone != total || res.snap.Bytes != total || res.snap.Files != 52 || res.snap.Dirs != 2 {
				t.Errorf("resumed snapshot: done %d, bytes %d, files %d, dirs %d; want %d, %d, 52, 2",
					res.last.BytesDone, res.snap.Bytes, res.snap.Files, res.snap.Dirs, total, total)
			}
			if !firstStart.IsZero() && !res.snap.StartedAt.Equal(firstStart) {
				t.Errorf("resumed snapshot started at %v, want the first run's %v", res.snap.StartedAt, firstStart)
			}
			compareScans(t, want, scanTree(t, mustRestore(t, r, res.snap.ID)))
			// The same tree as an uninterrupted backup: same chunks, same order.
			clean := mustBackup(t, r, src, runOpts{})
			if clean.snap.Tree != res.snap.Tree {
				t.Errorf("resumed tree %s, uninterrupted %s", res.snap.Tree, clean.snap.Tree)
			}
		})
	}
}

func TestResumeUnusable(t *testing.T) {
	src := t.TempDir()
	resumeTreeSized(t, src, 2*mib)
	inSub := func(cp *cpState) bool { return len(cp.Stack) == 2 && cp.File == nil && cp.Counts.Files >= 24 }
	mutate := func(f func(*cpState)) func(t *testing.T, cp []byte, r *repo.Repo, src string) ([]byte, *repo.Repo) {
		return func(t *testing.T, cp []byte, r *repo.Repo, src string) ([]byte, *repo.Repo) {
			st, err := decodeCheckpoint(cp)
			if err != nil {
				t.Fatal(err)
			}
			f(st)
			b, _ := json.Marshal(st)
			return b, r
		}
	}
	cases := []struct {
		name  string
		spoil func(t *testing.T, cp []byte, r *repo.Repo, src string) ([]byte, *repo.Repo)
	}{
		{"garbage", func(t *testing.T, cp []byte, r *repo.Repo, src string) ([]byte, *repo.Repo) {
			return []byte("{not json"), r
		}},
		{"other version", mutate(func(s *cpState) { s.Version = 99 })},
		{"other source", mutate(func(s *cpState) { s.Source = []byte("/elsewhere") })},
		{"other snapshot", mutate(func(s *cpState) { s.Snapshot = "0123" })},
		{"invalid folder name", mutate(func(s *cpState) { s.Stack[1].Name = []byte("..") })},
		{"unknown segment", mutate(func(s *cpState) { id := repo.Hash([]byte("nothing")); s.Stack[0].Seg = &id })},
		{"blobs missing (another repository)", func(t *testing.T, cp []byte, r *repo.Repo, src string) ([]byte, *repo.Repo) {
			return cp, newRepo(t)
		}},
		{"open folder gone from the source", func(t *testing.T, cp []byte, r *repo.Repo, src string) ([]byte, *repo.Repo) {
			if err := os.RemoveAll(filepath.Join(src, "sub")); err != nil {
				t.Fatal(err)
			}
			return cp, r
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := copyTree(t, src)
			r := newRepo(t)
			meta := repo.Snapshot{ID: repo.NewSnapshotID(), Source: "test", Kind: "full"}
			cp, _ := interrupt(t, r, src, &meta, nil, stopAt{cp: inSub})
			cp, r = c.spoil(t, cp, r, src)
			res := mustBackup(t, r, src, runOpts{meta: &meta, resume: cp})
			if !hasWarning(res.warnings, WarnResumeRestarted) {
				t.Errorf("warnings %v: want resume-restarted", res.warnings)
			}
			compareTrees(t, src, mustRestore(t, r, res.snap.ID))
		})
	}
}

// copyTree copies a tree of regular files and folders (with mtimes).
func copyTree(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			writeFile(t, filepath.Join(dst, rel), b, fi.Mode().Perm())
			setMTime(t, filepath.Join(dst, rel), fi.ModTime().UnixNano())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestResumeFileChangedSinceCheckpoint(t *testing.T) {
	src := t.TempDir()
	total := resumeTree(t, src)
	r := newRepo(t)
	meta := repo.Snapshot{ID: repo.NewSnapshotID(), Source: "test", Kind: "full"}
	cp, _ := interrupt(t, r, src, &meta, nil, stopAt{cp: midBig(8 * mib)})
	// The half-read file changes: it must be read again from its start.
	big := filepath.Join(src, "m-big.bin")
	data := randBytes(8, bigSize)
	writeFile(t, big, data, 0o644)
	setMTime(t, big, 1.9e18)
	res := mustBackup(t, r, src, runOpts{meta: &meta, resume: cp})
	if hasWarning(res.warnings, WarnResumeRestarted) {
		t.Fatalf("warnings %v: the checkpoint is usable", res.warnings)
	}
	if res.last.BytesRead < bigSize || res.last.BytesRead >= total {
		t.Errorf("resumed run read %d bytes, want the whole large file (%d) and less than everything (%d)", res.last.BytesRead, bigSize, total)
	}
	compareTrees(t, src, mustRestore(t, r, res.snap.ID))
}

func TestCheckpointStaysSmall(t *testing.T) {
	src := t.TempDir()
	for i := range 600 {
		writeFile(t, filepath.Join(src, "flat", fmt.Sprintf("file-with-a-long-name-%05d", i)), []byte{byte(i)}, 0o644)
	}
	r := newRepo(t)
	res := mustBackup(t, r, src, runOpts{opt: everyEvent()})
	if len(res.cps) < 600 {
		t.Fatalf("%d checkpoints, want one per event", len(res.cps))
	}
	maxLen := 0
	for _, cp := range res.cps {
		maxLen = max(maxLen, len(cp))
	}
	if maxLen > 1024 {
		t.Errorf("largest checkpoint %d bytes for a folder of 600 files; want it bounded by depth", maxLen)
	}
	// Resuming from the last checkpoint taken in the folder reads nothing
	// again.
	var last []byte
	for _, b := range res.cps {
		if cp, _ := decodeCheckpoint(b); len(cp.Stack) == 2 {
			last = b
		}
	}
	meta := res.snap
	meta.Tree, meta.CompletedAt = repo.ID{}, time.Time{}
	again := mustBackup(t, r, src, runOpts{meta: &meta, resume: last})
	if again.last.BytesRead != 0 || again.snap.Tree != res.snap.Tree || len(again.warnings) != 0 {
		t.Errorf("resume after the last file: read %d, tree %s (want %s), warnings %v", again.last.BytesRead, again.snap.Tree, res.snap.Tree, again.warnings)
	}
}

func TestUsedByCheckpointKeepsResumable(t *testing.T) {
	src := t.TempDir()
	total := resumeTree(t, src)
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			r := newRepo(t)
			meta := repo.Snapshot{ID: repo.NewSnapshotID(), Source: "test", Kind: "full"}
			cp, _ := interrupt(t, r, src, &meta, nil, stopAt{cp: midBig(8 * mib)})
			r = reopen(t, r)
			ctx := context.Background()
			rep, err := r.Prune(ctx, func(yield func(repo.ID) bool) error {
				if err := Used(ctx, r, nil, yield); err != nil {
					return err
				}
				if keep {
					return UsedByCheckpoint(ctx, r, cp, yield)
				}
				return nil
			}, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.PacksRemoved)+len(rep.PacksRewritten) == 0 && !keep {
				t.Fatalf("prune removed nothing: %+v", rep)
			}
			res := mustBackup(t, r, src, runOpts{meta: &meta, resume: cp})
			if restarted := hasWarning(res.warnings, WarnResumeRestarted); restarted == keep {
				t.Errorf("restarted %v with keep %v: warnings %v", restarted, keep, res.warnings)
			}
			if keep && res.last.BytesRead > total-8*mib {
				t.Errorf("resumed run read %d bytes, want at most %d", res.last.BytesRead, total-8*mib)
			}
			compareTrees(t, src, mustRestore(t, r, res.snap.ID))
		})
	}
}

func TestResumeIncremental(t *testing.T) {
	src := t.TempDir()
	total := resumeTree(t, src)
	r := newRepo(t)
	full := mustBackup(t, r, src, runOpts{})
	// The large file and a few small ones change; the rest is skipped.
	big := filepath.Join(src, "m-big.bin")
	writeFile(t, big, randBytes(77, bigSize), 0o644)
	setMTime(t, big, 1.95e18)
	for _, f := range []string{"a03", "z07"} {
		writeFile(t, filepath.Join(src, f), randBytes(78, 10<<10), 0o644)
		setMTime(t, filepath.Join(src, f), 1.95e18)
	}
	for _, newParent := range []bool{false, true} {
		t.Run(fmt.Sprintf("new parent %v", newParent), func(t *testing.T) {
			meta := repo.Snapshot{ID: repo.NewSnapshotID(), Source: "test", Kind: KindIncremental, Parent: full.snap.ID}
			cp, _ := interrupt(t, r, src, &meta, nil, stopAt{cp: midBig(8 * mib)})
			parent := full.snap
			if newParent {
				// Another backup completed while this job was interrupted.
				parent = mustBackup(t, r, src, runOpts{}).snap
				meta.Parent = parent.ID
			}
			res := mustBackup(t, r, src, runOpts{meta: &meta, parent: &parent, resume: cp})
			if hasWarning(res.warnings, WarnResumeRestarted) {
				t.Fatalf("resume restarted: %v", res.warnings)
			}
			if limit := int64(bigSize - 8*mib + 20<<10); res.last.BytesRead > limit {
				t.Errorf("resumed incremental read %d bytes, want at most %d (the rest of the large file and z07)", res.last.BytesRead, limit)
			}
			if res.snap.Bytes != total || res.snap.Parent != parent.ID {
				t.Errorf("snapshot bytes %d parent %s; want %d, %s", res.snap.Bytes, res.snap.Parent, total, parent.ID)
			}
			compareTrees(t, src, mustRestore(t, r, res.snap.ID))
		})
	}
}

// TestCheckpointEveryBytes: with the interval never reached, checkpoints
// still come after every CheckpointBytes of source, also inside a file.
// The check runs after each event, so a checkpoint comes at the first
// event at or past CheckpointBytes since the previous one: gaps are at
// least CheckpointBytes and less than CheckpointBytes plus the largest
// event (a chunk of at most maxChunk; chunk boundaries depend on the
// repository's random polynomial).
func TestCheckpointEveryBytes(t *testing.T) {
	src := t.TempDir()
	total := resumeTree(t, src)
	r := newRepo(t)
	const every = 2 * mib
	opt := everyEvent()
	opt.CheckpointEvery = 1 << 62 // never by time
	opt.CheckpointBytes = every
	var at []int64
	opt.Checkpoint = func(b []byte) error {
		cp, err := decodeCheckpoint(b)
		if err != nil {
			t.Fatalf("checkpoint does not decode: %v", err)
		}
		done := cp.Counts.Bytes
		if cp.File != nil {
			done += cp.File.Offset
		}
		at = append(at, done)
		return nil
	}
	res := doBackup(t, context.Background(), r, src, runOpts{opt: opt})
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(at) == 0 {
		t.Fatalf("no checkpoint over %d bytes at every %d", total, every)
	}
	prev := int64(0)
	inFile := false
	for i, a := range append(at, total) {
		gap := a - prev
		if i < len(at) && gap < every {
			t.Errorf("checkpoint %d at %d bytes, %d after the previous: want at least %d", i, a, gap, every)
		}
		if gap >= every+maxChunk {
			t.Errorf("%d bytes between checkpoints (or the last one and the end, %d): want less than %d + %d", gap, a, every, maxChunk)
		}
		if i < len(at) && a > 20*10<<10 && a < 20*10<<10+bigSize {
			inFile = true
		}
		prev = a
	}
	if !inFile {
		t.Errorf("no checkpoint inside the large file (at %v)", at)
	}
}

// TestLoadSegmentsOrder: repo.DecodeTree checks each segment (see the
// repo tests); loadSegments adds the order across segments, so that the
// nodes of a folder resumed from a checkpoint are one valid tree.
func TestLoadSegmentsOrder(t *testing.T) {
	sub := repo.Hash([]byte("x"))
	file := func(name string) repo.Node { return repo.Node{Name: name, Type: typeFile} }
	cases := []struct {
		name     string
		segments [][]repo.Node // oldest first
		ok       bool
	}{
		{"one segment", [][]repo.Node{{file("a"), {Name: "b", Type: typeDir, Subtree: &sub}}}, true},
		{"increasing across segments", [][]repo.Node{{file("a")}, {file("b"), file("c")}, {file("d")}}, true},
		{"empty segment in between", [][]repo.Node{{file("a")}, nil, {file("b")}}, true},
		{"duplicate across segments", [][]repo.Node{{{Name: "a", Type: typeSymlink, Target: "/etc"}}, {{Name: "a", Type: typeDir, Subtree: &sub}}}, false},
		{"out of order across segments", [][]repo.Node{{file("b")}, {file("a")}}, false},
		{"out of order after an empty segment", [][]repo.Node{{file("b")}, nil, {file("a")}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRepo(t)
			w := r.NewWriter()
			var last *repo.ID
			for _, nodes := range c.segments {
				seg := segment{Magic: segMagic, Prev: last}
				if nodes != nil {
					tree, _, err := repo.EncodeTree(&repo.Tree{Nodes: nodes})
					if err != nil {
						t.Fatal(err)
					}
					seg.Tree = tree
				}
				data, err := json.Marshal(&seg)
				if err != nil {
					t.Fatal(err)
				}
				id := repo.Hash(data)
				if _, err := w.Add(repo.TreeBlob, id, data); err != nil {
					t.Fatal(err)
				}
				last = &id
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			nodes, _, segs, err := loadSegments(r, last)
			if (err == nil) != c.ok || (err != nil && !errIs(err, repo.ErrCorrupt)) {
				t.Fatalf("loadSegments = %v, want ok %v (errors wrap ErrCorrupt)", err, c.ok)
			}
			if err == nil && (len(segs) != len(c.segments) || len(nodes) != len(slices.Concat(c.segments...))) {
				t.Fatalf("loadSegments = %d nodes from %d segments, want %d from %d", len(nodes), len(segs), len(slices.Concat(c.segments...)), len(c.segments))
			}
		})
	}
}
