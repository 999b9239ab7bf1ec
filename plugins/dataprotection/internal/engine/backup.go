package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/restic/chunker"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
)

// Chunk sizes: restic's (512 KiB min, 8 MiB max, 1 MiB average).
const (
	minChunk = chunker.MinSize
	maxChunk = chunker.MaxSize
)

// KindIncremental is the snapshot kind that skips unchanged files.
const KindIncremental = "incremental"

// errWalkStopped: the walker closed its events before the root folder was
// done; its own error says why.
var errWalkStopped = errors.New("walker stopped")

// chunkJob is one chunk on its way from the walker through a worker to the
// assembler. The worker fills id, stored and err, returns data to the pool
// and closes done.
type chunkJob struct {
	data   []byte
	id     repo.ID
	stored int64
	err    error
	done   chan struct{}
}

// bufPool bounds the chunk buffers in flight. Buffers are allocated lazily
// at the size needed (at most maxChunk) and reused.
type bufPool struct{ ch chan []byte }

func newBufPool(n int) *bufPool {
	p := &bufPool{ch: make(chan []byte, n)}
	for range n {
		p.ch <- nil
	}
	return p
}

func (p *bufPool) get(ctx context.Context, want int) ([]byte, error) {
	select {
	case b := <-p.ch:
		if cap(b) < want {
			if want > minChunk {
				want = maxChunk // a large file: chunks may reach the maximum
			}
			b = make([]byte, 0, want)
		}
		return b[:0], nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put never blocks: at most n buffers exist.
func (p *bufPool) put(b []byte) { p.ch <- b[:0] }

type evKind uint8

const (
	evDirStart  evKind = iota // a folder is entered (dir: its resume state)
	evDirEnd                  // a folder is done (node: its metadata)
	evFileStart               // a file is being read (node: its metadata, file: resume state)
	evChunk                   // a chunk of the current file (job, size)
	evFileEnd                 // the current file is done (node: final metadata, warn if it changed)
	evNode                    // a complete node: a symlink, or a file taken from the parent
	evWarn                    // a warning
)

// event is what the walker tells the assembler, in walk order.
type event struct {
	kind evKind
	path string // relative to the source, '/'-separated ("" for the root)
	node repo.Node
	job  *chunkJob
	size int64
	dir  *dirResume
	file *fileResume
	warn *Warning
}

// counters are the snapshot's totals; a checkpoint carries them over.
type counters struct {
	Files    int64 `json:"files"`
	Dirs     int64 `json:"dirs"`
	Symlinks int64 `json:"symlinks"`
	Bytes    int64 `json:"bytes"`
	Added    int64 `json:"added"`
}

type backup struct {
	r      *repo.Repo
	w      *repo.Writer
	src    string
	root   *os.Root
	opt    Options
	meta   *repo.Snapshot
	pol    chunker.Pol
	incr   bool
	ptree  *repo.Tree // the parent's root tree (incremental only)
	resume *dirResume
	pool   *bufPool
	jobs   chan *chunkJob
	events chan event
	ch     *chunker.Chunker

	totalFiles, totalBytes atomic.Int64
	totalsKnown            atomic.Bool
}

// Backup walks src (a folder) in sorted order, depth first, and stores a
// snapshot: meta (ID, Source, Kind, Parent, Chain, JobID filled by the
// caller) completed with Path (src if empty), StartedAt (if zero: the
// checkpoint's, or now), CompletedAt, Tree and the totals. parent (may be
// nil) enables skipping unchanged files when meta.Kind is "incremental".
// resume (nil: fresh) is the last checkpoint of an interrupted run of the
// same job; an unusable one is reported as WarnResumeRestarted and the
// backup starts from scratch. The manifest is saved only when everything
// it names is durable.
func Backup(ctx context.Context, r *repo.Repo, src string, meta repo.Snapshot, parent *repo.Snapshot, resume []byte, opt Options) (repo.Snapshot, error) {
	opt = opt.normalized()
	root, err := os.OpenRoot(src)
	if err != nil {
		return repo.Snapshot{}, fmt.Errorf("backup %s: open the source folder: %w", src, err)
	}
	defer root.Close()
	if meta.Path == "" {
		meta.Path = src
	}
	nbuf := 2*opt.Workers + 2
	b := &backup{
		r: r, w: r.NewWriter(), src: src, root: root, opt: opt, meta: &meta,
		pol:    r.Polynomial(),
		pool:   newBufPool(nbuf),
		jobs:   make(chan *chunkJob, nbuf),
		events: make(chan event, 1024),
		ch:     chunker.NewWithBoundaries(nil, r.Polynomial(), minChunk, maxChunk),
	}
	if meta.Kind == KindIncremental && parent != nil {
		t, err := loadTree(r, parent.Tree)
		if err != nil {
			opt.warn(Warning{Kind: WarnParentUnreadable, Reason: fmt.Sprintf("parent snapshot %s: %v; every file is read", parent.ID, err)})
		} else {
			b.incr, b.ptree = true, t
		}
	}
	var start counters
	if resume != nil {
		res, cp, err := b.decodeResume(resume)
		if err != nil {
			opt.warn(Warning{Kind: WarnResumeRestarted, Reason: fmt.Sprintf("checkpoint not usable, starting from scratch: %v", err)})
		} else {
			b.resume, start = res, cp.Counts
			if meta.StartedAt.IsZero() {
				meta.StartedAt = cp.StartedAt
			}
		}
	}
	if meta.StartedAt.IsZero() {
		meta.StartedAt = time.Now().UTC()
	}
	tree, c, err := b.run(ctx, start)
	if err != nil {
		return repo.Snapshot{}, fmt.Errorf("backup %s: %w", src, err)
	}
	if err := b.w.Flush(); err != nil {
		return repo.Snapshot{}, fmt.Errorf("backup %s: flush the repository: %w", src, err)
	}
	meta.Tree = tree
	meta.Files, meta.Dirs, meta.Symlinks, meta.Bytes, meta.AddedBytes = c.Files, c.Dirs, c.Symlinks, c.Bytes, c.Added
	meta.CompletedAt = time.Now().UTC()
	if err := r.SaveSnapshot(&meta); err != nil {
		return repo.Snapshot{}, fmt.Errorf("backup %s: save snapshot: %w", src, err)
	}
	return meta, nil
}

// run starts the walker, the workers and the pre-walk, assembles in the
// calling goroutine, and returns when all of them have exited.
func (b *backup) run(ctx context.Context, start counters) (repo.ID, counters, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var walkErr error
	wg.Go(func() { walkErr = b.walk(ctx) })
	for range b.opt.Workers {
		wg.Go(func() { b.work(ctx) })
	}
	pctx, pcancel := context.WithCancel(ctx) // the pre-walk is of no use once the walk is done
	wg.Go(func() { b.prewalk(pctx) })

	a := &assembler{b: b, counts: start, rep: newReporter(b.opt), lastCP: b.opt.clock(), cpAt: start.Bytes}
	tree, err := a.run(ctx)
	pcancel()
	if err != nil {
		cancel()
	}
	for range b.events { // the walker exits on cancel; let it close
	}
	wg.Wait()
	if errors.Is(err, errWalkStopped) {
		err = walkErr
		if err == nil {
			err = errors.New("walker stopped early") // cannot happen: the walker ends with the root
		}
	}
	return tree, a.counts, err
}

func (b *backup) full(rel string) string { return filepath.Join(b.src, filepath.FromSlash(rel)) }

func (b *backup) emit(ctx context.Context, ev event) error {
	select {
	case b.events <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *backup) emitWarn(ctx context.Context, kind WarningKind, p, reason string) error {
	return b.emit(ctx, event{kind: evWarn, warn: &Warning{Kind: kind, Path: p, Reason: reason}})
}

// work hashes and stores chunks until the walker closes jobs.
func (b *backup) work(ctx context.Context) {
	for j := range b.jobs {
		if err := ctx.Err(); err != nil {
			j.err = err
		} else {
			j.id = repo.Hash(j.data)
			j.stored, j.err = b.w.Add(repo.DataBlob, j.id, j.data)
		}
		b.pool.put(j.data)
		j.data = nil
		close(j.done)
	}
}

// prewalk counts the regular files and their bytes for progress totals.
// Errors are ignored: the real walk reports them.
func (b *backup) prewalk(ctx context.Context) {
	var files, bytes int64
	var walk func(dir *os.Root) bool
	walk = func(dir *os.Root) bool {
		names, err := readNames(dir)
		if err != nil {
			return true
		}
		for _, name := range names {
			if ctx.Err() != nil {
				return false
			}
			fi, err := dir.Lstat(name)
			if err != nil {
				continue
			}
			switch {
			case fi.Mode().IsRegular():
				files++
				bytes += fi.Size()
			case fi.IsDir():
				sub, err := dir.OpenRoot(name)
				if err != nil {
					continue
				}
				ok := walk(sub)
				sub.Close()
				if !ok {
					return false
				}
			}
		}
		return true
	}
	if walk(b.root) {
		b.totalFiles.Store(files)
		b.totalBytes.Store(bytes)
		b.totalsKnown.Store(true)
	}
}

func readNames(dir *os.Root) ([]string, error) {
	f, err := dir.Open(".")
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// walk is the walker goroutine: it lists folders, stats entries, reads
// files and cuts them into chunks, in sorted depth-first order.
func (b *backup) walk(ctx context.Context) error {
	defer close(b.events)
	defer close(b.jobs)
	if err := b.emit(ctx, event{kind: evDirStart, dir: b.resume}); err != nil {
		return err
	}
	if err := b.walkDir(ctx, b.root, "", b.ptree, b.resume); err != nil {
		return err
	}
	return b.emit(ctx, event{kind: evDirEnd})
}

func (b *backup) walkDir(ctx context.Context, dir *os.Root, rel string, ptree *repo.Tree, res *dirResume) error {
	names, err := readNames(dir)
	if err != nil {
		return fmt.Errorf("list folder %s: %w", b.full(rel), err)
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if res.done(name) {
			continue
		}
		p := path.Join(rel, name)
		fi, err := dir.Lstat(name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if err := b.emitWarn(ctx, WarnSkipped, p, "vanished while the backup ran"); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("stat %s: %w", b.full(p), err)
		}
		var cdir *dirResume
		var cfile *fileResume
		if res != nil && name == res.next {
			cdir, cfile = res.child, res.file
		}
		switch mode := fi.Mode(); {
		case mode.IsDir():
			err = b.walkSub(ctx, dir, p, name, fi, ptree, cdir)
		case mode.IsRegular():
			err = b.file(ctx, dir, p, name, fi, ptree, cfile)
		case mode&fs.ModeSymlink != 0:
			err = b.symlink(ctx, dir, p, name, fi)
		default:
			err = b.emitWarn(ctx, WarnSkipped, p, fmt.Sprintf("special file (%v) not backed up", mode.Type()))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *backup) walkSub(ctx context.Context, dir *os.Root, p, name string, fi fs.FileInfo, ptree *repo.Tree, res *dirResume) error {
	sub, err := dir.OpenRoot(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return b.emitWarn(ctx, WarnSkipped, p, "vanished or replaced while the backup ran")
		}
		return fmt.Errorf("open folder %s: %w", b.full(p), err)
	}
	defer sub.Close()
	if st, err := sub.Stat("."); err != nil || !os.SameFile(st, fi) {
		return b.emitWarn(ctx, WarnSkipped, p, "replaced while the backup ran")
	}
	var pt *repo.Tree
	if b.incr {
		if pt, err = b.parentSubtree(ctx, ptree, name, p); err != nil {
			return err
		}
	}
	if err := b.emit(ctx, event{kind: evDirStart, path: p, node: repo.Node{Name: name}, dir: res}); err != nil {
		return err
	}
	if err := b.walkDir(ctx, sub, p, pt, res); err != nil {
		return err
	}
	return b.emit(ctx, event{kind: evDirEnd, path: p, node: nodeFromInfo(name, fi)})
}

func (b *backup) symlink(ctx context.Context, dir *os.Root, p, name string, fi fs.FileInfo) error {
	target, err := dir.Readlink(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EINVAL) {
			return b.emitWarn(ctx, WarnSkipped, p, "vanished or replaced while the backup ran")
		}
		return fmt.Errorf("read symlink %s: %w", b.full(p), err)
	}
	n := nodeFromInfo(name, fi)
	n.Target = target
	return b.emit(ctx, event{kind: evNode, path: p, node: n})
}

// findNode finds name in a sorted tree.
func findNode(t *repo.Tree, name string) *repo.Node {
	if t == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(t.Nodes, name, func(n repo.Node, name string) int { return strings.Compare(n.Name, name) })
	if !ok {
		return nil
	}
	return &t.Nodes[i]
}

func (b *backup) parentSubtree(ctx context.Context, ptree *repo.Tree, name, p string) (*repo.Tree, error) {
	pn := findNode(ptree, name)
	if pn == nil || pn.Type != typeDir || pn.Subtree == nil {
		return nil, nil
	}
	t, err := loadTree(b.r, *pn.Subtree)
	if err != nil {
		return nil, b.emitWarn(ctx, WarnParentUnreadable, p, fmt.Sprintf("%v; the files below are read", err))
	}
	return t, nil
}

func (b *backup) hasAll(ids []repo.ID) bool {
	for _, id := range ids {
		if !b.r.Has(id) {
			return false
		}
	}
	return true
}

// file backs up one regular file: taken from the parent if unchanged,
// resumed at its checkpointed chunk boundary, or read from the start.
func (b *backup) file(ctx context.Context, dir *os.Root, p, name string, fi fs.FileInfo, ptree *repo.Tree, rf *fileResume) error {
	n := nodeFromInfo(name, fi)
	if rf != nil && (rf.size != n.Size || rf.mtime != n.MTime || rf.inode != n.Inode || rf.offset > n.Size) {
		rf = nil // changed since the checkpoint: back it up afresh
	}
	if rf == nil {
		if pn := findNode(ptree, name); pn != nil && pn.Type == typeFile && pn.Size == n.Size &&
			pn.MTime == n.MTime && pn.Inode == n.Inode && b.hasAll(pn.Content) {
			n.Content = pn.Content
			return b.emit(ctx, event{kind: evNode, path: p, node: n})
		}
	}
	if b.opt.failOpen != nil {
		if err := b.opt.failOpen(p); err != nil {
			return fmt.Errorf("open %s: %w", b.full(p), err)
		}
	}
	f, err := dir.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return b.emitWarn(ctx, WarnSkipped, p, "vanished while the backup ran")
		}
		return fmt.Errorf("open %s: %w", b.full(p), err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return fmt.Errorf("stat %s: %w", b.full(p), err)
	} else if !os.SameFile(st, fi) || !st.Mode().IsRegular() {
		return b.emitWarn(ctx, WarnSkipped, p, "replaced while the backup ran")
	}
	var offset int64
	if rf != nil {
		if _, err := f.Seek(rf.offset, io.SeekStart); err != nil {
			return fmt.Errorf("seek %s: %w", b.full(p), err)
		}
		offset = rf.offset
	}
	if err := b.emit(ctx, event{kind: evFileStart, path: p, node: n, file: rf}); err != nil {
		return err
	}
	// A chunker started at a chunk boundary cuts the same chunks as one
	// that ran from the start: it resets its state at every boundary.
	b.ch.ResetWithBoundaries(f, b.pol, minChunk, maxChunk)
	read := offset
	for {
		want := int(min(max(n.Size-read, 0), maxChunk))
		buf, err := b.pool.get(ctx, want)
		if err != nil {
			return err
		}
		c, err := b.ch.Next(buf)
		if err == io.EOF {
			b.pool.put(buf)
			break
		}
		if err != nil {
			b.pool.put(buf)
			return fmt.Errorf("read %s: %w", b.full(p), err)
		}
		size := int64(len(c.Data))
		job := &chunkJob{data: c.Data, done: make(chan struct{})}
		select {
		case b.jobs <- job:
		case <-ctx.Done():
			b.pool.put(c.Data)
			return ctx.Err()
		}
		if err := b.emit(ctx, event{kind: evChunk, path: p, job: job, size: size}); err != nil {
			return err
		}
		read += size
	}
	ev := event{kind: evFileEnd, path: p, node: n}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", b.full(p), err)
	}
	if read != n.Size || st.Size() != fi.Size() || !st.ModTime().Equal(fi.ModTime()) {
		ev.warn = &Warning{Kind: WarnFileChanged, Path: p, Reason: fmt.Sprintf(
			"changed while it was read (%d bytes before, %d read, %d after); the snapshot holds what was read", n.Size, read, st.Size())}
	}
	ev.node.Size = read
	return b.emit(ctx, ev)
}

// frame is a folder the assembler has open: the nodes done so far, of
// which nodes[:saved] are in the checkpoint segment chain ending at seg.
type frame struct {
	name  string
	nodes []repo.Node
	saved int
	seg   *repo.ID
}

// openFile is the file the assembler is receiving chunks for.
type openFile struct {
	path    string
	node    repo.Node
	content []repo.ID
	saved   int
	seg     *repo.ID
	offset  int64
}

// assembler receives the walker's events in order, waits for each chunk's
// worker, builds nodes and trees bottom-up, and takes checkpoints.
type assembler struct {
	b      *backup
	stack  []*frame
	cur    *openFile
	counts counters
	read   int64 // this run
	added  int64 // this run
	rootID repo.ID
	rep    *reporter
	lastCP time.Time
	cpAt   int64 // bytes done at the last checkpoint
}

func (a *assembler) run(ctx context.Context) (repo.ID, error) {
	for {
		var ev event
		var ok bool
		select {
		case ev, ok = <-a.b.events:
		case <-ctx.Done():
			return repo.ID{}, ctx.Err()
		}
		if !ok {
			return repo.ID{}, errWalkStopped
		}
		done, err := a.handle(ctx, ev)
		if err != nil {
			return repo.ID{}, err
		}
		if done {
			p := a.progress() // at the end, the totals are what was done
			p.FilesTotal, p.BytesTotal, p.TotalsKnown = p.FilesDone, p.BytesDone, true
			a.rep.final(p)
			return a.rootID, nil
		}
		a.rep.maybe(a.progress)
		if err := a.maybeCheckpoint(ctx); err != nil {
			return repo.ID{}, err
		}
	}
}

func (a *assembler) progress() Progress {
	p := Progress{
		FilesDone: a.counts.Files, BytesDone: a.counts.Bytes,
		BytesRead: a.read, BytesAdded: a.added,
		TotalsKnown: a.b.totalsKnown.Load(),
	}
	if a.cur != nil {
		p.BytesDone += a.cur.offset
	}
	if p.TotalsKnown {
		p.FilesTotal, p.BytesTotal = a.b.totalFiles.Load(), a.b.totalBytes.Load()
	}
	return p
}

func (a *assembler) top() *frame { return a.stack[len(a.stack)-1] }

// handle applies one event; it reports true when the root folder is done.
func (a *assembler) handle(ctx context.Context, ev event) (bool, error) {
	switch ev.kind {
	case evDirStart:
		f := &frame{name: ev.node.Name}
		if ev.dir != nil {
			f.nodes, f.saved, f.seg = slices.Clip(ev.dir.nodes), len(ev.dir.nodes), ev.dir.seg
		}
		a.stack = append(a.stack, f)
	case evDirEnd:
		f := a.top()
		a.stack = a.stack[:len(a.stack)-1]
		data, id, err := repo.EncodeTree(&repo.Tree{Nodes: f.nodes})
		if err != nil {
			return false, fmt.Errorf("encode tree of %s: %w", a.b.full(ev.path), err)
		}
		stored, err := a.b.w.Add(repo.TreeBlob, id, data)
		if err != nil {
			return false, fmt.Errorf("store tree of %s: %w", a.b.full(ev.path), err)
		}
		a.counts.Added += stored
		a.added += stored
		if len(a.stack) == 0 {
			a.rootID = id
			return true, nil
		}
		a.counts.Dirs++
		n := ev.node
		n.Subtree = &id
		a.top().nodes = append(a.top().nodes, n)
	case evFileStart:
		a.cur = &openFile{path: ev.path, node: ev.node}
		if ev.file != nil {
			a.cur.content = slices.Clip(ev.file.content)
			a.cur.saved, a.cur.seg, a.cur.offset = len(ev.file.content), ev.file.seg, ev.file.offset
		}
	case evChunk:
		select {
		case <-ev.job.done:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		if ev.job.err != nil {
			return false, fmt.Errorf("store a chunk of %s: %w", a.b.full(ev.path), ev.job.err)
		}
		a.cur.content = append(a.cur.content, ev.job.id)
		a.cur.offset += ev.size
		a.read += ev.size
		a.counts.Added += ev.job.stored
		a.added += ev.job.stored
	case evFileEnd:
		n := ev.node
		n.Content = a.cur.content
		a.top().nodes = append(a.top().nodes, n)
		a.counts.Files++
		a.counts.Bytes += n.Size
		a.cur = nil
		if ev.warn != nil {
			a.b.opt.warn(*ev.warn)
		}
	case evNode:
		a.top().nodes = append(a.top().nodes, ev.node)
		if ev.node.Type == typeSymlink {
			a.counts.Symlinks++
		} else {
			a.counts.Files++
			a.counts.Bytes += ev.node.Size
		}
	case evWarn:
		a.b.opt.warn(*ev.warn)
	}
	return false, nil
}

func (a *assembler) maybeCheckpoint(ctx context.Context) error {
	if a.b.opt.Checkpoint == nil || len(a.stack) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := a.b.opt.clock()
	done := a.counts.Bytes
	if a.cur != nil {
		done += a.cur.offset
	}
	if now.Sub(a.lastCP) < a.b.opt.CheckpointEvery && done-a.cpAt < a.b.opt.CheckpointBytes {
		return nil
	}
	a.lastCP, a.cpAt = now, done
	return a.checkpoint()
}
