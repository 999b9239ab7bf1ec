package engine

import (
	"fmt"
	"io/fs"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
	"github.com/datawarehouse/dw/sdk/v6"
)

// Node types as stored in trees.
const (
	typeFile    = repo.NodeFile
	typeDir     = repo.NodeDir
	typeSymlink = repo.NodeSymlink
)

// Defaults for Options.
const (
	DefaultCheckpointEvery = 10 * time.Second
	// DefaultCheckpointBytes: a checkpoint also comes after this many
	// source bytes, so that a fast backup does not lose a whole interval
	// of work to a crash. 16 MiB, one pack's worth: a crash costs at most
	// about 0.07 s of work at 250 MB/s, so that a backup killed half way
	// finishes in little more than the half left (64 MiB could cost
	// 0.27 s, 13% of a 2-second backup). The price is in pack sizes:
	// the flush a checkpoint makes seals the open pack, so packs of
	// incompressible data average about half of repo.DefaultPackSize and
	// those of compressible data less; prune merges packs under a quarter
	// of it. Each checkpoint also writes one small record to the host KV.
	DefaultCheckpointBytes = 16 << 20
	DefaultProgressEvery   = 250 * time.Millisecond
	DefaultRestoreWorkers  = 8
)

// modeBits are the mode bits a node keeps: permissions plus setuid, setgid
// and sticky, in their Unix (st_mode) positions.
const modeBits = 0o7777

// ErrTargetNotEmpty is returned by Restore when the target folder already
// holds something.
var ErrTargetNotEmpty = fmt.Errorf("restore target is not empty: %w", sdk.ErrAlreadyExists)

// Progress is a job's progress. FilesTotal and BytesTotal come from a
// pre-walk of the source that runs beside the backup: they are 0 until it
// has finished (TotalsKnown). FilesDone and BytesDone include what a resumed
// checkpoint had already done; BytesRead and BytesAdded count this run only:
// BytesRead is what was read from source files (files skipped by an
// incremental backup and the part of a file done before a checkpoint are not
// read), BytesAdded the compressed bytes this run added to the repository.
// For a restore, FilesTotal and BytesTotal come from the snapshot and
// BytesRead counts the content loaded from the repository.
type Progress struct {
	FilesDone, FilesTotal, BytesDone, BytesTotal, BytesRead, BytesAdded int64
	TotalsKnown                                                         bool
}

// WarningKind says what a Warning is about.
type WarningKind string

// Warning kinds.
const (
	// WarnResumeRestarted: the resume checkpoint could not be used (corrupt,
	// another job's, a blob it names is missing, or the source changed so
	// that its position is gone); the backup started from scratch.
	WarnResumeRestarted WarningKind = "resume-restarted"
	// WarnFileChanged: a file's size or mtime changed while it was read. The
	// snapshot holds what was read; its node keeps the mtime from before the
	// read, so the next incremental backup reads the file again.
	WarnFileChanged WarningKind = "file-changed"
	// WarnSkipped: an entry was not backed up: a special file (device, FIFO,
	// socket), or an entry that vanished or was replaced between listing
	// its folder and opening it.
	WarnSkipped WarningKind = "skipped"
	// WarnParentUnreadable: a tree of the parent snapshot could not be
	// loaded; the files below it were read instead of being skipped.
	WarnParentUnreadable WarningKind = "parent-unreadable"
)

// Warning is something a backup wants its user to know that does not fail
// it. Path is relative to the source folder, with '/' separators ("" for
// the job as a whole).
type Warning struct {
	Kind   WarningKind
	Path   string
	Reason string
}

func (w Warning) String() string {
	if w.Path == "" {
		return fmt.Sprintf("%s: %s", w.Kind, w.Reason)
	}
	return fmt.Sprintf("%s: %s: %s", w.Kind, w.Path, w.Reason)
}

// Options tune Backup and Restore. The zero value is usable.
type Options struct {
	// Workers is the number of goroutines that hash and compress chunks
	// (Backup; 0: runtime.GOMAXPROCS(0)) or write files (Restore; 0: the
	// larger of DefaultRestoreWorkers and GOMAXPROCS).
	Workers int
	// OnProgress, if set, is called from one goroutine at most every
	// ProgressEvery and once at the end.
	OnProgress    func(Progress)
	ProgressEvery time.Duration // 0: DefaultProgressEvery
	// Checkpoint, if set, receives the backup's resume state at least every
	// CheckpointEvery while the backup makes progress, and after every
	// CheckpointBytes of source bytes, whichever comes first; everything
	// the state names is durable in the repository when it is called. An
	// error from Checkpoint fails the backup.
	Checkpoint      func(cp []byte) error
	CheckpointEvery time.Duration // 0: DefaultCheckpointEvery
	CheckpointBytes int64         // 0: DefaultCheckpointBytes
	// OnWarning, if set, is called (from one goroutine) for each Warning.
	OnWarning func(Warning)

	clock    func() time.Time   // tests: time source (default time.Now)
	failOpen func(string) error // tests: an error to return instead of opening this source file
}

func (o Options) normalized() Options {
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = DefaultProgressEvery
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = DefaultCheckpointEvery
	}
	if o.CheckpointBytes <= 0 {
		o.CheckpointBytes = DefaultCheckpointBytes
	}
	if o.clock == nil {
		o.clock = time.Now
	}
	return o
}

func (o Options) warn(w Warning) {
	if o.OnWarning != nil {
		o.OnWarning(w)
	}
}

// reporter calls OnProgress at most every ProgressEvery. Safe for
// concurrent use (Restore reports from its workers).
type reporter struct {
	mu    sync.Mutex
	fn    func(Progress)
	every time.Duration
	clock func() time.Time
	last  time.Time
	begun bool
}

func newReporter(o Options) *reporter {
	return &reporter{fn: o.OnProgress, every: o.ProgressEvery, clock: o.clock}
}

func (r *reporter) maybe(p func() Progress) {
	if r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock()
	if r.begun && now.Sub(r.last) < r.every {
		return
	}
	r.begun, r.last = true, now
	r.fn(p())
}

func (r *reporter) final(p Progress) {
	if r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fn(p)
}

// validName reports whether name can be one entry of a folder: not empty,
// not "." or "..", without '/' or NUL. A tree naming anything else is
// corrupt (or hostile: it could make a restore write outside its target).
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// loadTree loads, decodes and checks one tree blob.
func loadTree(r *repo.Repo, id repo.ID) (*repo.Tree, error) {
	b, err := r.Load(repo.TreeBlob, id, nil)
	if err != nil {
		return nil, fmt.Errorf("load tree %s: %w", id, err)
	}
	// DecodeTree checks what Restore, Verify and resume rely on (names
	// that are one path element, strict name order, known types, a
	// subtree for every folder); its errors wrap repo.ErrCorrupt.
	t, err := repo.DecodeTree(b)
	if err != nil {
		return nil, fmt.Errorf("decode tree %s: %w", id, err)
	}
	return t, nil
}

// nodeFromInfo fills the metadata of a node from lstat information.
func nodeFromInfo(name string, fi fs.FileInfo) repo.Node {
	n := repo.Node{Name: name, MTime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		n.Mode = st.Mode & modeBits
		n.Inode = st.Ino
		n.Dev = uint64(st.Dev) //nolint:unconvert // narrower than uint64 on some platforms
	} else {
		n.Mode = uint32(fi.Mode().Perm())
	}
	switch {
	case fi.Mode().IsDir():
		n.Type = typeDir
	case fi.Mode()&fs.ModeSymlink != 0:
		n.Type = typeSymlink
	default:
		n.Type = typeFile
		n.Size = fi.Size()
	}
	return n
}

// fileMode turns stored Unix mode bits into an fs.FileMode for chmod.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&syscall.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}
