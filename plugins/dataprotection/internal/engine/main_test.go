package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const mib = 1 << 20

func openRepo(t testing.TB, dir string) *repo.Repo {
	t.Helper()
	r, err := repo.Open(dir)
	if err != nil {
		t.Fatalf("open repository: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func newRepo(t testing.TB) *repo.Repo {
	t.Helper()
	return openRepo(t, filepath.Join(t.TempDir(), "repo"))
}

// randBytes returns n pseudo-random bytes from seed.
func randBytes(seed uint64, n int) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// textBytes returns n compressible bytes.
func textBytes(seed uint64, n int) []byte {
	words := []string{"backup ", "restore ", "chunk ", "pack ", "index ", "snapshot ", "tree\n", "blob "}
	rng := rand.New(rand.NewPCG(seed, 1))
	var buf bytes.Buffer
	for buf.Len() < n {
		buf.WriteString(words[rng.IntN(len(words))])
	}
	return buf.Bytes()[:n]
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t testing.TB, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func setMTime(t testing.TB, path string, ns int64) {
	t.Helper()
	ts := unix.NsecToTimespec(ns)
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

// stampTimes gives every entry below root a distinct mtime with
// nanoseconds, files and symlinks first, then folders deepest first (so
// that nothing changes a folder's mtime afterwards).
func stampTimes(t testing.TB, root string, base int64) {
	t.Helper()
	var dirs []string
	i := int64(0)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		i++
		setMTime(t, p, base+i*1_000_003_007)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for j := len(dirs) - 1; j >= 0; j-- {
		i++
		setMTime(t, dirs[j], base+i*1_000_003_007)
	}
}

// entry is what compareTrees compares of one path.
type entry struct {
	typ    fs.FileMode
	mode   uint32
	mtime  int64
	size   int64
	sum    [32]byte
	target string
}

func scanTree(t testing.TB, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{typ: fi.Mode().Type(), mode: st.Mode & 0o7777, mtime: fi.ModTime().UnixNano()}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.size, e.sum = int64(len(b)), sha256.Sum256(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareTrees fails unless got holds exactly want's entries with the same
// type, mode bits, mtime (ns), content and symlink targets.
func compareTrees(t testing.TB, want, got string) {
	t.Helper()
	compareScans(t, scanTree(t, want), scanTree(t, got))
}

func compareScans(t testing.TB, w, g map[string]entry) {
	t.Helper()
	bad := 0
	for p, we := range w {
		ge, ok := g[p]
		switch {
		case !ok:
			t.Errorf("%q: missing from the restore", p)
		case ge != we:
			t.Errorf("%q: restored %+v, want %+v", p, ge, we)
		default:
			continue
		}
		if bad++; bad > 20 {
			t.Fatal("too many differences")
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%q: restored but not in the source", p)
		}
	}
}

// run is one Backup with everything it reported.
type run struct {
	snap     repo.Snapshot
	last     Progress
	warnings []Warning
	cps      [][]byte
	err      error
}

type runOpts struct {
	kind       string
	parent     *repo.Snapshot
	resume     []byte
	meta       *repo.Snapshot // default: a new ID
	opt        Options
	onProgress func(Progress)
	onCP       func(cp []byte)
}

func doBackup(t testing.TB, ctx context.Context, r *repo.Repo, src string, o runOpts) *run {
	t.Helper()
	res := &run{}
	var mu sync.Mutex
	meta := repo.Snapshot{ID: repo.NewSnapshotID(), Source: "test", Kind: "full"}
	if o.meta != nil {
		meta = *o.meta
	} else {
		if o.kind != "" {
			meta.Kind = o.kind
		}
		if o.parent != nil {
			meta.Parent, meta.Chain = o.parent.ID, o.parent.ID
		}
	}
	opt := o.opt
	opt.OnProgress = func(p Progress) {
		mu.Lock()
		res.last = p
		mu.Unlock()
		if o.onProgress != nil {
			o.onProgress(p)
		}
	}
	opt.OnWarning = func(w Warning) {
		mu.Lock()
		res.warnings = append(res.warnings, w)
		mu.Unlock()
	}
	if opt.Checkpoint == nil {
		opt.Checkpoint = func(cp []byte) error {
			mu.Lock()
			res.cps = append(res.cps, cp)
			mu.Unlock()
			if o.onCP != nil {
				o.onCP(cp)
			}
			return nil
		}
	}
	res.snap, res.err = Backup(ctx, r, src, meta, o.parent, o.resume, opt)
	return res
}

func mustBackup(t testing.TB, r *repo.Repo, src string, o runOpts) *run {
	t.Helper()
	res := doBackup(t, context.Background(), r, src, o)
	if res.err != nil {
		t.Fatalf("backup: %v", res.err)
	}
	return res
}

// restoreInto restores snapshot id into the folder at path as the service
// does: its parent folder (created if missing) opened as an os.Root, the
// target opened from it by OpenTarget, Restore through that Root.
func restoreInto(ctx context.Context, tb testing.TB, r *repo.Repo, id, path string, opt Options) error {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	parent, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		tb.Fatal(err)
	}
	defer parent.Close()
	target, err := OpenTarget(parent, filepath.Base(path))
	if err != nil {
		return err
	}
	defer target.Close()
	return Restore(ctx, r, id, target, opt)
}

func mustRestore(t testing.TB, r *repo.Repo, id string) string {
	t.Helper()
	target := filepath.Join(t.TempDir(), "restore")
	if err := restoreInto(context.Background(), t, r, id, target, Options{}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	return target
}

// stepClock is an injected clock that advances by step at each reading,
// so that every interval check passes when step >= the interval.
type stepClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

// everyEvent returns Options that report progress and take a checkpoint
// after every event.
func everyEvent() Options {
	c := &stepClock{now: time.Unix(1e9, 0), step: time.Hour}
	return Options{clock: c.Now, CheckpointEvery: time.Second, ProgressEvery: time.Second}
}

func hasWarning(ws []Warning, kind WarningKind) bool {
	for _, w := range ws {
		if w.Kind == kind {
			return true
		}
	}
	return false
}

func errIs(err, target error) bool { return errors.Is(err, target) }
