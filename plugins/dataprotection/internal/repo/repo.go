package repo

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/hashicorp/go-hclog"
	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"
)

// Errors. Each is wrapped with where it happened (pack, blob, file).
var (
	// ErrCorrupt: stored bytes do not decode or do not hash to their ID.
	ErrCorrupt = errors.New("repository data is corrupt")
	// ErrNotFound: no such blob or snapshot. It wraps sdk.ErrNotFound.
	ErrNotFound = fmt.Errorf("repository object %w", sdk.ErrNotFound)
	// ErrLocked: another Open holds the repository.
	ErrLocked = errors.New("repository is locked")
	// ErrClosed: the Repo was closed.
	ErrClosed = errors.New("repository is closed")
)

const (
	// FormatVersion is the repository format this package reads and writes.
	FormatVersion = 1
	// DefaultPackSize is the size at which a pack is finished.
	DefaultPackSize = 16 << 20
	// DefaultRewriteThreshold is the share of unused bytes above which
	// Prune rewrites a pack that also holds used blobs.
	DefaultRewriteThreshold = 0.2

	configFile   = "config"
	lockFile     = "lock"
	packsDir     = "packs"
	indexDir     = "index"
	snapshotsDir = "snapshots"
	tmpDir       = "tmp"
	// quarantineDir holds packs Open took out of use but may not delete.
	quarantineDir = "quarantine"
)

// Options tune a Repo; the zero value gives the defaults.
type Options struct {
	// PackSize is the target pack size: a pack is finished once it holds
	// this many bytes (default DefaultPackSize).
	PackSize int64
	// RewriteThreshold: Prune rewrites a pack holding used blobs when more
	// than this share of its blob bytes is unused (default 0.2).
	RewriteThreshold float64
	// Logger receives the repairs Open makes and the snapshots Snapshots
	// skips (default: discard).
	Logger hclog.Logger
}

// OpenReport lists what Open repaired.
type OpenReport struct {
	// TempFilesRemoved counts the files cleared from tmp/.
	TempFilesRemoved int
	// AdoptedPacks are orphan packs (no index file) whose trailer was
	// valid: their index was written and their blobs are available.
	AdoptedPacks []string
	// RemovedPacks are orphan packs that were unreadable and were deleted:
	// packs that never had an index (a crash before the index was
	// written), which no snapshot can use.
	RemovedPacks []Problem
	// QuarantinedPacks are packs whose index file was damaged and whose
	// trailer is unreadable too. Snapshots may use them, so they are moved
	// to quarantine/, not deleted: their blobs are unavailable (verify and
	// restore name what they break), and the bytes are kept for salvage.
	QuarantinedPacks []Problem
	// RemovedIndexes are index files that were deleted: unreadable, naming
	// a missing pack, or disagreeing with their pack's size.
	RemovedIndexes []Problem
	// Ignored are files in the repository that Open does not know; it
	// leaves them alone.
	Ignored []string
}

// Problem names a file and what was wrong with it.
type Problem struct {
	Name   string
	Reason string
}

// Stats counts what the repository holds.
type Stats struct {
	Packs       int   // pack files
	PackBytes   int64 // bytes of all pack files
	Blobs       int64 // distinct blobs in the index
	StoredBytes int64 // compressed bytes of the distinct blobs
	RawBytes    int64 // plaintext bytes of the distinct blobs
	// ReadBytes counts the bytes read from pack files since Open (by
	// Load, VerifyPacks, Prune and the adoption of orphan packs).
	ReadBytes int64
}

type config struct {
	Version           int         `json:"version"`
	ID                string      `json:"id"`
	ChunkerPolynomial chunker.Pol `json:"chunker_polynomial"`
}

// location is where a blob lives; kept small because there is one per blob
// (with its 32-byte ID, 52 bytes in a blobIndex).
type location struct {
	pack   uint32 // index into Repo.packs
	offset uint32
	length uint32
	rawLen uint32
	typ    BlobType
}

type packInfo struct {
	id   ID
	size int64
	gone bool // removed by Prune
}

// Repo is an open repository. Its methods are safe for concurrent use.
type Repo struct {
	dir              string
	packSize         int64
	rewriteThreshold float64
	log              hclog.Logger
	lock             *os.File
	cfg              config
	enc              *zstd.Encoder
	dec              *zstd.Decoder
	report           OpenReport

	// life: every public operation holds it for reading; Close takes it
	// for writing, so it waits for them and later calls see closed.
	life   sync.RWMutex
	closed bool

	// mu guards the in-memory index, the pack table, pending blobs and the
	// failure sequence.
	mu          sync.RWMutex
	index       *blobIndex
	packs       []packInfo
	packByID    map[ID]uint32
	pending     map[ID]*pendingBlob
	failSeq     uint64
	failErr     error
	livePacks   int
	packBytes   int64
	storedBytes int64
	rawBytes    int64

	// packMu guards the open pack and the set of packs being finished.
	// Lock order: packMu before mu.
	packMu    sync.Mutex
	cur       *packBuilder
	finishing map[*packBuilder]struct{}

	// maintMu serialises Prune and VerifyPacks.
	maintMu sync.Mutex
	// readBytes counts the bytes read from pack files (Stats.ReadBytes).
	readBytes atomic.Int64
	// pruneHook, when set (tests), runs after each Prune step and stops
	// Prune when it returns an error: a simulated crash.
	pruneHook func(step string) error
}

// Open opens the repository in dir with default options, creating it if
// dir is missing or empty. See OpenWith.
func Open(dir string) (*Repo, error) { return OpenWith(dir, Options{}) }

// OpenWith opens (or creates) the repository in dir: it takes the
// repository lock, reads the config (creating it with a random chunker
// polynomial if dir is new), clears tmp/, loads every index file, and
// repairs what a crash can leave: orphan packs are adopted from their
// trailer or removed, index files without a valid pack are removed.
// OpenReport tells what was repaired.
func OpenWith(dir string, opt Options) (_ *Repo, err error) {
	if opt.PackSize <= 0 {
		opt.PackSize = DefaultPackSize
	}
	if opt.RewriteThreshold <= 0 || opt.RewriteThreshold >= 1 {
		opt.RewriteThreshold = DefaultRewriteThreshold
	}
	if opt.Logger == nil {
		opt.Logger = hclog.NewNullLogger()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("open repository %s: %w", abs, err)
	}
	if err := checkNewDir(abs); err != nil {
		return nil, err
	}
	lock, err := lockRepo(filepath.Join(abs, lockFile))
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", abs, err)
	}
	r := &Repo{
		dir:              abs,
		packSize:         opt.PackSize,
		rewriteThreshold: opt.RewriteThreshold,
		log:              opt.Logger,
		lock:             lock,
		index:            newBlobIndex(),
		packByID:         make(map[ID]uint32),
		pending:          make(map[ID]*pendingBlob),
		finishing:        make(map[*packBuilder]struct{}),
	}
	defer func() {
		if err != nil {
			r.closeCodecs()
			_ = lock.Close()
		}
	}()
	if err := r.openConfig(); err != nil {
		return nil, fmt.Errorf("open repository %s: %w", abs, err)
	}
	for _, d := range []string{packsDir, indexDir, snapshotsDir} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return nil, fmt.Errorf("open repository %s: %w", abs, err)
		}
	}
	if err := r.clearTmp(); err != nil {
		return nil, fmt.Errorf("open repository %s: %w", abs, err)
	}
	r.enc, err = zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		// A 1 MiB window (the average chunk) and the lower-memory
		// encoder: measured, peak memory of encoding 1–8 MiB chunks on
		// 4 goroutines fell from 103 to 63 MiB.
		zstd.WithWindowSize(1<<20),
		zstd.WithLowerEncoderMem(true),
		zstd.WithZeroFrames(true))
	if err != nil {
		return nil, fmt.Errorf("open repository %s: zstd encoder: %w", abs, err)
	}
	r.dec, err = zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(MaxBlobSize))
	if err != nil {
		return nil, fmt.Errorf("open repository %s: zstd decoder: %w", abs, err)
	}
	if err := r.loadIndex(); err != nil {
		return nil, fmt.Errorf("open repository %s: %w", abs, err)
	}
	r.logReport()
	return r, nil
}

// checkNewDir refuses to create a repository in a folder that holds
// something else: without a config, only the lock file and tmp/ (left by
// an interrupted creation) may be there.
func checkNewDir(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, configFile)); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("open repository %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("open repository %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.Name() != lockFile && e.Name() != tmpDir {
			return fmt.Errorf("open repository %s: the folder has no %s file, so it is not a repository, and it is not empty (it holds %q): use a new or empty folder", dir, configFile, e.Name())
		}
	}
	return nil
}

// openConfig reads the config file, or writes a new one.
func (r *Repo) openConfig() error {
	path := filepath.Join(r.dir, configFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r.createConfig(path)
	}
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("config %s is not valid JSON: %w", path, err)
	}
	if c.Version != FormatVersion {
		return fmt.Errorf("config %s: format version %d is not supported (this build reads version %d)", path, c.Version, FormatVersion)
	}
	if c.ChunkerPolynomial.Deg() != 53 || !c.ChunkerPolynomial.Irreducible() {
		return fmt.Errorf("config %s: chunker_polynomial %s is not an irreducible polynomial of degree 53", path, c.ChunkerPolynomial)
	}
	r.cfg = c
	return nil
}

func (r *Repo) createConfig(path string) error {
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return fmt.Errorf("create config: chunker polynomial: %w", err)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return fmt.Errorf("create config: %w", err)
	}
	c := config{Version: FormatVersion, ID: hex.EncodeToString(id[:]), ChunkerPolynomial: pol}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("create config: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(r.dir, tmpDir), 0o700); err != nil {
		return fmt.Errorf("create config: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(r.dir, tmpDir), path, append(b, '\n')); err != nil {
		return fmt.Errorf("create config: %w", err)
	}
	r.cfg = c
	return nil
}

// clearTmp removes everything in tmp/: temp files of writes a crash
// interrupted. Nothing outside tmp/ refers to them.
func (r *Repo) clearTmp() error {
	dir := filepath.Join(r.dir, tmpDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("clear %s: %w", dir, err)
		}
		r.report.TempFilesRemoved++
	}
	return nil
}

func (r *Repo) logReport() {
	rp := &r.report
	if rp.TempFilesRemoved > 0 {
		r.log.Info("removed temp files of interrupted writes", "repository", r.dir, "count", rp.TempFilesRemoved)
	}
	for _, p := range rp.AdoptedPacks {
		r.log.Warn("adopted orphan pack: wrote its missing index", "repository", r.dir, "pack", p)
	}
	for _, p := range rp.RemovedPacks {
		r.log.Warn("removed unreadable orphan pack", "repository", r.dir, "pack", p.Name, "reason", p.Reason)
	}
	for _, p := range rp.QuarantinedPacks {
		r.log.Error("moved a damaged pack to quarantine/: snapshots using it cannot be fully restored", "repository", r.dir, "pack", p.Name, "reason", p.Reason)
	}
	for _, p := range rp.RemovedIndexes {
		r.log.Warn("removed index file", "repository", r.dir, "index", p.Name, "reason", p.Reason)
	}
	for _, name := range rp.Ignored {
		r.log.Warn("ignored unknown file in repository", "repository", r.dir, "file", name)
	}
}

// OpenReport returns what Open repaired.
func (r *Repo) OpenReport() OpenReport { return r.report }

// Dir returns the repository folder (absolute).
func (r *Repo) Dir() string { return r.dir }

// Polynomial returns the repository's chunker polynomial. Every backup
// into the repository must chunk with it, or identical content would not
// deduplicate.
func (r *Repo) Polynomial() chunker.Pol { return r.cfg.ChunkerPolynomial }

// Close releases the repository. It waits for running operations (cancel
// a Prune or VerifyPacks through its context first). Blobs added since the
// last Flush are discarded: Flush before Close. Close is idempotent.
func (r *Repo) Close() error {
	r.life.Lock()
	defer r.life.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.packMu.Lock()
	pb := r.cur
	r.cur = nil
	r.packMu.Unlock()
	if pb != nil {
		pb.discard(r)
		r.mu.Lock()
		for _, e := range pb.entries {
			delete(r.pending, e.id)
		}
		r.mu.Unlock()
	}
	r.closeCodecs()
	if err := r.lock.Close(); err != nil {
		return fmt.Errorf("close repository %s: release lock: %w", r.dir, err)
	}
	return nil
}

func (r *Repo) closeCodecs() {
	if r.enc != nil {
		_ = r.enc.Close()
	}
	if r.dec != nil {
		r.dec.Close()
	}
}

// enter starts a public operation: it holds life for reading. The caller
// must call r.life.RUnlock when done.
func (r *Repo) enter() error {
	r.life.RLock()
	if r.closed {
		r.life.RUnlock()
		return fmt.Errorf("repository %s: %w", r.dir, ErrClosed)
	}
	return nil
}

func (r *Repo) packPath(id ID) string {
	s := id.String()
	return filepath.Join(r.dir, packsDir, s[:2], s)
}

func (r *Repo) indexPath(id ID) string {
	return filepath.Join(r.dir, indexDir, id.String())
}

// Has reports whether the blob is in the index (durable) or pending in a
// pack a Writer is filling.
func (r *Repo) Has(id ID) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.index.get(id); ok {
		return true
	}
	_, ok := r.pending[id]
	return ok
}

// Stats counts what the repository holds (durable blobs only).
func (r *Repo) Stats() Stats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return Stats{
		Packs:       r.livePacks,
		PackBytes:   r.packBytes,
		Blobs:       int64(r.index.len()),
		StoredBytes: r.storedBytes,
		RawBytes:    r.rawBytes,
		ReadBytes:   r.readBytes.Load(),
	}
}

// addPackLocked records a durable pack and its blobs; r.mu is held. A
// blob already indexed keeps its location unless replace is set (Prune
// moving it to a new pack).
func (r *Repo) addPackLocked(id ID, size int64, entries []packEntry, replace bool) {
	pi, ok := r.packByID[id]
	if !ok {
		pi = uint32(len(r.packs))
		r.packs = append(r.packs, packInfo{id: id, size: size})
		r.packByID[id] = pi
		r.livePacks++
		r.packBytes += size
	}
	for _, e := range entries {
		if old, ok := r.index.get(e.id); ok {
			if !replace || old.pack == pi {
				continue
			}
			r.storedBytes -= int64(old.length)
			r.rawBytes -= int64(old.rawLen)
		}
		r.index.set(e.id, location{pack: pi, offset: e.offset, length: e.length, rawLen: e.rawLen, typ: e.typ})
		r.storedBytes += int64(e.length)
		r.rawBytes += int64(e.rawLen)
	}
}

// dropPackLocked forgets a pack and the blobs the index places in it; r.mu
// is held.
func (r *Repo) dropPackLocked(id ID, entries []packEntry) {
	pi, ok := r.packByID[id]
	if !ok {
		return
	}
	for _, e := range entries {
		if loc, ok := r.index.get(e.id); ok && loc.pack == pi {
			r.index.del(e.id)
			r.storedBytes -= int64(loc.length)
			r.rawBytes -= int64(loc.rawLen)
		}
	}
	delete(r.packByID, id)
	r.packs[pi].gone = true
	r.livePacks--
	r.packBytes -= r.packs[pi].size
}

// loadIndex reads every index file and reconciles them with the packs on
// disk (see OpenWith).
func (r *Repo) loadIndex() error {
	onDisk, err := r.listPacks()
	if err != nil {
		return err
	}
	dir := filepath.Join(r.dir, indexDir)
	names, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	indexed := make(map[ID]bool, len(names))
	hadIndex := map[ID]bool{} // damaged index files of packs still on disk
	removedIndex := false
	for _, de := range names {
		id, perr := ParseID(de.Name())
		if perr != nil || !de.Type().IsRegular() {
			r.report.Ignored = append(r.report.Ignored, filepath.Join(indexDir, de.Name()))
			continue
		}
		path := filepath.Join(dir, de.Name())
		reason := ""
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read index %s: %w", path, err)
		}
		size, entries, derr := decodeIndex(b)
		packSize, exists := onDisk[id]
		switch {
		case derr != nil:
			reason = "unreadable: " + derr.Error()
		case !exists:
			reason = "its pack is missing"
		case packSize != size:
			reason = fmt.Sprintf("its pack is %d bytes but the index says %d", packSize, size)
		}
		if reason != "" {
			hadIndex[id] = exists
			if err := removeFile(path); err != nil {
				return err
			}
			removedIndex = true
			r.report.RemovedIndexes = append(r.report.RemovedIndexes, Problem{Name: id.String(), Reason: reason})
			continue
		}
		indexed[id] = true
		r.addPackLocked(id, size, entries, false)
	}
	if removedIndex {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	orphans := make([]ID, 0)
	for id := range onDisk {
		if !indexed[id] {
			orphans = append(orphans, id)
		}
	}
	slices.SortFunc(orphans, func(a, b ID) int { return compareID(a, b) })
	for _, id := range orphans {
		if err := r.adoptPack(id, onDisk[id], hadIndex[id]); err != nil {
			return err
		}
	}
	return nil
}

func compareID(a, b ID) int { return bytes.Compare(a[:], b[:]) }

// listPacks returns the pack files under packs/ with their sizes. Files
// that cannot be packs are reported as ignored.
func (r *Repo) listPacks() (map[ID]int64, error) {
	root := filepath.Join(r.dir, packsDir)
	subs, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", root, err)
	}
	packs := make(map[ID]int64)
	for _, sub := range subs {
		if !sub.IsDir() || len(sub.Name()) != 2 || !isLowerHex(sub.Name()) {
			r.report.Ignored = append(r.report.Ignored, filepath.Join(packsDir, sub.Name()))
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, sub.Name()))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", filepath.Join(root, sub.Name()), err)
		}
		for _, f := range files {
			name := f.Name()
			id, perr := ParseID(name)
			if perr != nil || !f.Type().IsRegular() || name[:2] != sub.Name() || id.String() != name {
				r.report.Ignored = append(r.report.Ignored, filepath.Join(packsDir, sub.Name(), name))
				continue
			}
			info, err := f.Info()
			if err != nil {
				return nil, fmt.Errorf("stat pack %s: %w", name, err)
			}
			packs[id] = info.Size()
		}
	}
	return packs, nil
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// adoptPack handles a pack without a valid index: if its trailer is valid
// and hashes to its name, its index is written. Otherwise a pack that
// never had an index is removed (nothing durable refers to it: snapshots
// are written only after their packs are indexed), and one whose index
// was damaged (hadIndex) is moved to quarantine/, since snapshots may use
// it.
func (r *Repo) adoptPack(id ID, size int64, hadIndex bool) error {
	path := r.packPath(id)
	entries, verr := r.validatePack(path, id, size)
	if verr != nil && hadIndex {
		return r.quarantinePack(id, verr)
	}
	if verr != nil {
		if err := removeFile(path); err != nil {
			return err
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			return err
		}
		r.report.RemovedPacks = append(r.report.RemovedPacks, Problem{Name: id.String(), Reason: verr.Error()})
		return nil
	}
	if err := writeFileAtomic(filepath.Join(r.dir, tmpDir), r.indexPath(id), encodeIndex(size, entries)); err != nil {
		return fmt.Errorf("adopt pack %s: %w", id, err)
	}
	r.addPackLocked(id, size, entries, false)
	r.report.AdoptedPacks = append(r.report.AdoptedPacks, id.String())
	return nil
}

// quarantinePack moves a committed pack that cannot be read to
// quarantine/, durably, and reports it.
func (r *Repo) quarantinePack(id ID, why error) error {
	path := r.packPath(id)
	qdir := filepath.Join(r.dir, quarantineDir)
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return fmt.Errorf("quarantine pack %s: %w", id, err)
	}
	if err := os.Rename(path, filepath.Join(qdir, id.String())); err != nil {
		return fmt.Errorf("quarantine pack %s: %w", id, err)
	}
	if err := syncDir(qdir); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	r.report.QuarantinedPacks = append(r.report.QuarantinedPacks, Problem{Name: id.String(), Reason: why.Error()})
	return nil
}

// validatePack reads a pack's header and trailer and checks that the
// trailer hashes to the pack's name. The blob bytes are not read: like
// those of any pack, Load and VerifyPacks check them against their IDs.
func (r *Repo) validatePack(path string, id ID, size int64) ([]packEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	entries, got, err := readTrailer(r.counted(f), size)
	if err != nil {
		return nil, err
	}
	if got != id {
		return nil, fmt.Errorf("trailer hashes to %s, not to the pack's name", got)
	}
	return entries, nil
}

// Load returns the plaintext of blob id, appended to buf[:0] (pass a
// reused buffer to save allocations). It reads only the blob's bytes from
// its pack, decompresses them and checks their SHA-256; a mismatch or a
// decoding error is an error wrapping ErrCorrupt naming pack and blob. An
// unknown blob is ErrNotFound. Only indexed blobs load: Flush a Writer
// before loading what it added. The type is checked against the index only
// for the message: a blob's bytes are its ID, whatever the type.
func (r *Repo) Load(t BlobType, id ID, buf []byte) ([]byte, error) {
	if err := r.enter(); err != nil {
		return nil, err
	}
	defer r.life.RUnlock()
	for attempt := 0; ; attempt++ {
		r.mu.RLock()
		loc, ok := r.index.get(id)
		var pack ID
		if ok {
			pack = r.packs[loc.pack].id
		}
		r.mu.RUnlock()
		if !ok {
			return nil, fmt.Errorf("load %s blob %s: %w", t, id, ErrNotFound)
		}
		out, err := r.readBlob(pack, id, loc, buf)
		if errors.Is(err, fs.ErrNotExist) && attempt == 0 {
			continue // Prune moved the blob between lookup and open: look again
		}
		return out, err
	}
}

func (r *Repo) readBlob(pack, id ID, loc location, buf []byte) ([]byte, error) {
	f, err := os.Open(r.packPath(pack))
	if err != nil {
		return nil, fmt.Errorf("load blob %s from pack %s: %w", id, pack, err)
	}
	defer func() { _ = f.Close() }()
	cb := getBuf(int(loc.length))
	defer putBuf(cb)
	n, err := r.counted(f).ReadAt(*cb, int64(loc.offset))
	if n < len(*cb) {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("pack %s: blob %s: pack ends before the blob's %d bytes at offset %d: %w", pack, id, loc.length, loc.offset, ErrCorrupt)
		}
		return nil, fmt.Errorf("load blob %s from pack %s: %w", id, pack, err)
	}
	return r.decodeBlob(pack, id, loc.rawLen, *cb, buf)
}

// decodeBlob decompresses comp and checks it against id and rawLen.
func (r *Repo) decodeBlob(pack, id ID, rawLen uint32, comp, buf []byte) ([]byte, error) {
	out, err := r.dec.DecodeAll(comp, buf[:0])
	if err != nil {
		return nil, fmt.Errorf("pack %s: blob %s: decompress: %w: %w", pack, id, err, ErrCorrupt)
	}
	if len(out) != int(rawLen) {
		return nil, fmt.Errorf("pack %s: blob %s: decompressed to %d bytes, the index says %d: %w", pack, id, len(out), rawLen, ErrCorrupt)
	}
	if Hash(out) != id {
		return nil, fmt.Errorf("pack %s: blob %s: content does not hash to the blob's id: %w", pack, id, ErrCorrupt)
	}
	return out, nil
}

// Buffers for compressed bytes. Buffers above maxPooledBuf are not kept.
const maxPooledBuf = 16 << 20

var bufPool = sync.Pool{New: func() any { return new([]byte) }}

func getBuf(n int) *[]byte {
	b := bufPool.Get().(*[]byte)
	if cap(*b) < n {
		*b = make([]byte, n)
	}
	*b = (*b)[:n]
	return b
}

func putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuf {
		bufPool.Put(b)
	}
}

// BlobInfo is where a blob is stored and how big it is.
type BlobInfo struct {
	Type      BlobType
	Pack      ID    // the pack that holds it
	Offset    int64 // of its stored bytes in the pack file
	Length    int64 // stored (compressed) bytes
	RawLength int64 // plaintext bytes
}

// Locate returns where blob id is stored, and whether it is indexed
// (blobs pending in an unflushed pack are not).
func (r *Repo) Locate(id ID) (BlobInfo, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	loc, ok := r.index.get(id)
	if !ok {
		return BlobInfo{}, false
	}
	return BlobInfo{Type: loc.typ, Pack: r.packs[loc.pack].id, Offset: int64(loc.offset), Length: int64(loc.length), RawLength: int64(loc.rawLen)}, true
}
