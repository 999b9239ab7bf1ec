package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
)

// restoreDir is an open folder of the target: a Root for creating entries
// (nothing can land outside it) and the folder's descriptor for the
// operations that must not follow symlinks (utimensat with
// AT_SYMLINK_NOFOLLOW on one validated name, fchmod).
type restoreDir struct {
	root *os.Root
	fd   *os.File
	fdn  int // fd.Fd(), read once
}

func newRestoreDir(root *os.Root) (restoreDir, error) {
	fd, err := root.Open(".")
	if err != nil {
		return restoreDir{}, err
	}
	return restoreDir{root: root, fd: fd, fdn: int(fd.Fd())}, nil
}

func (d restoreDir) close() {
	d.fd.Close()
	d.root.Close()
}

// setMTime sets the mtime (and atime) of the entry name of d without
// following a symlink.
func (d restoreDir) setMTime(name string, mtime int64) error {
	ts := unix.NsecToTimespec(mtime)
	return unix.UtimesNanoAt(d.fdn, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

type fileJob struct {
	dir  restoreDir
	rel  string
	node *repo.Node
	wg   *sync.WaitGroup // the folder's pending files
}

type restorer struct {
	r      *repo.Repo
	rep    *reporter
	jobs   chan fileJob
	cancel context.CancelFunc

	files, bytes, total, totalBytes atomic.Int64

	mu  sync.Mutex
	err error // first error
}

func (rs *restorer) fail(err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.err == nil {
		rs.err = err
		rs.cancel()
	}
}

func (rs *restorer) firstErr() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.err
}

func (rs *restorer) progress() Progress {
	b := rs.bytes.Load()
	return Progress{FilesDone: rs.files.Load(), FilesTotal: rs.total.Load(), BytesDone: b, BytesTotal: rs.totalBytes.Load(),
		BytesRead: b, TotalsKnown: true}
}

// Restore writes snapshot id's tree into the folder target, which must be
// empty (ErrTargetNotEmpty otherwise). target is an open os.Root (see
// OpenTarget), not a path: the folder is the one that was checked, and
// every write goes through it or through Roots opened from it, so a path
// component swapped for a symlink after the caller's checks cannot lead
// the restore anywhere else. Restore does not close target.
//
// Files are written to a temporary name, given their mode, renamed and
// given their mtime; folders get mode and mtime after their content;
// symlinks are created as stored and never followed; empty folders are
// restored. Every name is checked first: a tree naming "", ".", "..", or a
// name with '/' or NUL, or naming an entry twice, is corrupt
// (repo.ErrCorrupt) and nothing is written for it. Options.Workers files
// (default: DefaultRestoreWorkers or GOMAXPROCS, the larger) are written at
// once, each streamed chunk by chunk. On error the files written so far
// stay.
func Restore(ctx context.Context, r *repo.Repo, id string, target *os.Root, opt Options) error {
	if opt.Workers <= 0 {
		// Creating files waits on the file system more than on the CPU.
		opt.Workers = max(DefaultRestoreWorkers, runtime.GOMAXPROCS(0))
	}
	opt = opt.normalized()
	snap, err := r.LoadSnapshot(id)
	if err != nil {
		return fmt.Errorf("restore snapshot %s: %w", id, err)
	}
	// A Root of its own on the same folder: closing it leaves the
	// caller's open.
	root, err := target.OpenRoot(".")
	if err != nil {
		return fmt.Errorf("restore snapshot %s into %s: %w", id, target.Name(), err)
	}
	dir, err := newRestoreDir(root)
	if err != nil {
		root.Close()
		return fmt.Errorf("restore snapshot %s into %s: %w", id, target.Name(), err)
	}
	defer dir.close()
	if err := checkEmpty(root); err != nil {
		return fmt.Errorf("restore snapshot %s into %s: %w", id, target.Name(), err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs := &restorer{r: r, rep: newReporter(opt), jobs: make(chan fileJob, opt.Workers), cancel: cancel}
	rs.total.Store(snap.Files)
	rs.totalBytes.Store(snap.Bytes)
	var wg sync.WaitGroup
	for range opt.Workers {
		wg.Go(func() { rs.work(ctx) })
	}
	if err := rs.dir(ctx, dir, snap.Tree, ""); err != nil {
		rs.fail(err)
	}
	close(rs.jobs)
	wg.Wait()
	if err := rs.firstErr(); err != nil {
		return fmt.Errorf("restore snapshot %s into %s: %w", id, target.Name(), err)
	}
	// Files are renamed into place without an fsync each; one syncfs of
	// the target's file system makes the whole restore durable before the
	// job reports success.
	if err := syncFS(root); err != nil {
		return fmt.Errorf("restore snapshot %s into %s: sync: %w", id, target.Name(), err)
	}
	rs.rep.final(rs.progress())
	return nil
}

// OpenTarget opens the restore target name, a path inside parent, as an
// os.Root for Restore. A missing target is created (mode 0700: the
// snapshot does not hold the source folder's own metadata) with its
// missing parents (mode 0755), all through parent, so no symlink leads
// them out of it. The target must be a folder, not a symlink to one
// (ErrTargetNotEmpty otherwise), and the folder opened must be the one
// checked: a swap between the check and the open is refused. A name that
// leads outside parent fails. The caller closes the Root.
func OpenTarget(parent *os.Root, name string) (*os.Root, error) {
	shown := filepath.Join(parent.Name(), name)
	if !filepath.IsLocal(name) || filepath.Clean(name) == "." {
		return nil, fmt.Errorf("restore target %s: %q is not a path inside %s", shown, name, parent.Name())
	}
	fi, err := parent.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		if dir := filepath.Dir(name); dir != "." {
			if err := parent.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("restore target %s: create its parents: %w", shown, err)
			}
		}
		if err := parent.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("restore target %s: %w", shown, err)
		}
		fi, err = parent.Lstat(name)
	}
	if err != nil {
		return nil, fmt.Errorf("restore target %s: %w", shown, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("restore target %s is a symlink; restore needs a new or empty folder: %w", shown, ErrTargetNotEmpty)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("restore target %s is not a folder (%v); restore needs a new or empty folder: %w", shown, fi.Mode().Type(), ErrTargetNotEmpty)
	}
	root, err := parent.OpenRoot(name)
	if err != nil {
		return nil, fmt.Errorf("restore target %s: %w", shown, err)
	}
	opened, err := root.Stat(".")
	if err == nil && !os.SameFile(opened, fi) {
		err = errTargetChanged
	}
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("restore target %s: %w", shown, err)
	}
	return root, nil
}

var errTargetChanged = errors.New("it changed while it was opened (the folder opened is not the one checked)")

// syncFS flushes the file system that holds root's folder (syncfs(2)).
func syncFS(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	rc, err := d.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// checkEmpty checks that the folder of root holds nothing.
func checkEmpty(root *os.Root) error {
	f, err := root.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && err != io.EOF {
		return err
	}
	if len(names) > 0 {
		return fmt.Errorf("target holds %q; restore needs a new or empty folder: %w", names[0], ErrTargetNotEmpty)
	}
	return nil
}

// dir restores the tree id into the folder d (rel is its path in the
// snapshot). It returns after every file of d is written (also on error:
// the workers use d).
func (rs *restorer) dir(ctx context.Context, d restoreDir, id repo.ID, rel string) error {
	t, err := loadTree(rs.r, id)
	if err != nil {
		return fmt.Errorf("folder /%s: %w", rel, err)
	}
	var pending sync.WaitGroup
	defer pending.Wait()
	for i := range t.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := &t.Nodes[i]
		p := path.Join(rel, n.Name)
		switch n.Type {
		case typeFile:
			pending.Add(1)
			select {
			case rs.jobs <- fileJob{dir: d, rel: p, node: n, wg: &pending}:
			case <-ctx.Done():
				pending.Done()
				return ctx.Err()
			}
		case typeDir:
			if err := rs.subdir(ctx, d, n, p); err != nil {
				return err
			}
		case typeSymlink:
			if err := d.root.Symlink(n.Target, n.Name); err != nil {
				return fmt.Errorf("create symlink /%s: %w", p, err)
			}
			if err := d.setMTime(n.Name, n.MTime); err != nil {
				return fmt.Errorf("set mtime of symlink /%s: %w", p, err)
			}
		}
	}
	return nil
}

func (rs *restorer) subdir(ctx context.Context, d restoreDir, n *repo.Node, p string) error {
	if err := d.root.Mkdir(n.Name, 0o700); err != nil {
		return fmt.Errorf("create folder /%s: %w", p, err)
	}
	sub, err := d.root.OpenRoot(n.Name)
	if err != nil {
		return fmt.Errorf("open folder /%s: %w", p, err)
	}
	sd, err := newRestoreDir(sub)
	if err != nil {
		sub.Close()
		return fmt.Errorf("open folder /%s: %w", p, err)
	}
	defer sd.close()
	if err := rs.dir(ctx, sd, *n.Subtree, p); err != nil {
		return err
	}
	if err := sd.fd.Chmod(fileMode(n.Mode)); err != nil {
		return fmt.Errorf("set mode of folder /%s: %w", p, err)
	}
	if err := d.setMTime(n.Name, n.MTime); err != nil {
		return fmt.Errorf("set mtime of folder /%s: %w", p, err)
	}
	return nil
}

func (rs *restorer) work(ctx context.Context) {
	var buf []byte
	for j := range rs.jobs {
		if ctx.Err() == nil {
			var err error
			if buf, err = rs.file(ctx, j, buf); err != nil {
				rs.fail(err)
			}
		}
		j.wg.Done()
	}
}

// file writes one file: temporary name, content chunk by chunk, mode,
// rename, mtime. It returns the buffer for reuse.
func (rs *restorer) file(ctx context.Context, j fileJob, buf []byte) ([]byte, error) {
	n, d := j.node, j.dir
	var f *os.File
	var tmp string
	for range 10 {
		tmp = fmt.Sprintf(".dw-restore-%016x.tmp", rand.Uint64())
		var err error
		f, err = d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return buf, fmt.Errorf("create file /%s: %w", j.rel, err)
		}
	}
	if f == nil {
		return buf, fmt.Errorf("create file /%s: no free temporary name", j.rel)
	}
	fail := func(err error) ([]byte, error) {
		f.Close()
		d.root.Remove(tmp)
		return buf, err
	}
	var written int64
	for _, id := range n.Content {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		data, err := rs.r.Load(repo.DataBlob, id, buf)
		if err != nil {
			return fail(fmt.Errorf("file /%s: chunk %s: %w", j.rel, id, err))
		}
		buf = data[:0]
		if _, err := f.Write(data); err != nil {
			return fail(fmt.Errorf("write file /%s: %w", j.rel, err))
		}
		written += int64(len(data))
		rs.bytes.Add(int64(len(data)))
		rs.rep.maybe(rs.progress)
	}
	if written != n.Size {
		return fail(fmt.Errorf("file /%s: its chunks hold %d bytes, its size is %d: %w", j.rel, written, n.Size, repo.ErrCorrupt))
	}
	if err := f.Chmod(fileMode(n.Mode)); err != nil {
		return fail(fmt.Errorf("set mode of file /%s: %w", j.rel, err))
	}
	if err := f.Close(); err != nil {
		d.root.Remove(tmp)
		return buf, fmt.Errorf("write file /%s: %w", j.rel, err)
	}
	if err := d.root.Rename(tmp, n.Name); err != nil {
		d.root.Remove(tmp)
		return buf, fmt.Errorf("rename file /%s: %w", j.rel, err)
	}
	if err := d.setMTime(n.Name, n.MTime); err != nil {
		return buf, fmt.Errorf("set mtime of file /%s: %w", j.rel, err)
	}
	rs.files.Add(1)
	rs.rep.maybe(rs.progress)
	return buf, nil
}
