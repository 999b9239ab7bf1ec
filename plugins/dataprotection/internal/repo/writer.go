package repo

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Writer adds blobs to the repository. It is safe for concurrent use by
// many goroutines, and several Writers may work at once: they share the
// repository's open pack, so a blob is stored once however many Writers
// add it. After an error from Add or Flush the Writer stays failed (its
// earlier blobs may be lost): make a new one.
type Writer struct {
	r   *Repo
	seq uint64 // r.failSeq when the Writer was made
}

// pendingBlob is a blob reserved by an Add: being compressed, or appended
// to a pack that is not yet durable.
type pendingBlob struct {
	ready  chan struct{} // closed once the blob is appended (or abandoned)
	stored bool          // set before ready is closed: appended to a pack
}

// NewWriter returns a Writer.
func (r *Repo) NewWriter() *Writer {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return &Writer{r: r, seq: r.failSeq}
}

// failedLocked returns an error when a pack failed since the Writer was
// made; r.mu is held.
func (w *Writer) failedLocked() error {
	if w.r.failSeq != w.seq {
		return fmt.Errorf("repository %s: a pack write failed, so blobs added by this writer may be lost: %w", w.r.dir, w.r.failErr)
	}
	return nil
}

func (w *Writer) failed() error {
	w.r.mu.RLock()
	defer w.r.mu.RUnlock()
	return w.failedLocked()
}

// Add stores plain as blob id of type t unless the repository has it
// (durable or pending): it compresses the blob and appends it to the open
// pack, finishing the pack when it reaches the target size. It returns the
// compressed bytes added, 0 when the blob was deduplicated. The caller
// computes id = Hash(plain); Add does not hash again. If another Add of the
// same id is in flight, Add waits for it to reach its pack. The blob is
// durable after the next Flush.
func (w *Writer) Add(t BlobType, id ID, plain []byte) (int64, error) {
	r := w.r
	if !t.valid() {
		return 0, fmt.Errorf("add blob %s: unknown blob type %d (want data or tree)", id, uint8(t))
	}
	if len(plain) > MaxBlobSize {
		return 0, fmt.Errorf("add %s blob %s: %d bytes exceed the maximum blob size %d", t, id, len(plain), MaxBlobSize)
	}
	if err := r.enter(); err != nil {
		return 0, err
	}
	defer r.life.RUnlock()
	for {
		r.mu.Lock()
		if err := w.failedLocked(); err != nil {
			r.mu.Unlock()
			return 0, err
		}
		if _, ok := r.index.get(id); ok {
			r.mu.Unlock()
			return 0, nil
		}
		if p, ok := r.pending[id]; ok {
			r.mu.Unlock()
			<-p.ready
			if p.stored {
				return 0, nil
			}
			continue // the other Add failed before appending: try ourselves
		}
		p := &pendingBlob{ready: make(chan struct{})}
		r.pending[id] = p
		r.mu.Unlock()
		return r.storeBlob(t, id, plain, p)
	}
}

// storeBlob compresses and appends a reserved blob.
func (r *Repo) storeBlob(t BlobType, id ID, plain []byte, p *pendingBlob) (int64, error) {
	cb := getBuf(0)
	comp := r.enc.EncodeAll(plain, (*cb)[:0])
	n := int64(len(comp))

	r.packMu.Lock()
	var full []*packBuilder
	if pb := r.cur; pb != nil && (pb.size+n+int64((len(pb.entries)+1)*entrySize+packFooterSize) > maxPackBytes) {
		full = append(full, r.detachLocked())
	}
	if r.cur == nil {
		pb, err := r.newPackBuilder()
		if err != nil {
			r.packMu.Unlock()
			*cb = comp
			putBuf(cb)
			r.abandon(id, p)
			return 0, errors.Join(err, r.finishAll(full))
		}
		r.cur = pb
	}
	pb := r.cur
	off := pb.size
	err := pb.write(comp)
	*cb = comp
	putBuf(cb)
	if err != nil {
		r.cur = nil
		r.packMu.Unlock()
		r.failPack(pb, err, id, p)
		return 0, errors.Join(err, r.finishAll(full))
	}
	pb.entries = append(pb.entries, packEntry{id: id, typ: t, offset: uint32(off), length: uint32(n), rawLen: uint32(len(plain))})
	p.stored = true
	close(p.ready)
	if pb.size >= r.packSize || len(pb.entries) >= maxPackEntries {
		full = append(full, r.detachLocked())
	}
	r.packMu.Unlock()
	if err := r.finishAll(full); err != nil {
		return 0, err
	}
	return n, nil
}

// abandon releases the reservation of a blob that was not appended.
func (r *Repo) abandon(id ID, p *pendingBlob) {
	r.mu.Lock()
	if r.pending[id] == p {
		delete(r.pending, id)
	}
	r.mu.Unlock()
	close(p.ready)
}

// detachLocked takes the open pack out of r.cur into the finishing set;
// r.packMu is held. It returns nil when no pack is open.
func (r *Repo) detachLocked() *packBuilder {
	pb := r.cur
	if pb == nil {
		return nil
	}
	r.cur = nil
	r.finishing[pb] = struct{}{}
	return pb
}

func (r *Repo) finishAll(pbs []*packBuilder) error {
	var errs []error
	for _, pb := range pbs {
		if pb != nil {
			if _, err := r.finishPack(pb, false); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Flush finishes the open pack and waits for packs being finished by
// other calls: afterwards every blob added so far (by any Writer, including
// blobs this Writer deduplicated against another's pending ones) is
// durable and indexed. It returns an error if any pack failed since the
// Writer was made.
func (w *Writer) Flush() error {
	r := w.r
	if err := r.enter(); err != nil {
		return err
	}
	defer r.life.RUnlock()
	r.packMu.Lock()
	pb := r.detachLocked()
	waits := make([]chan struct{}, 0, len(r.finishing))
	for other := range r.finishing {
		if other != pb {
			waits = append(waits, other.done)
		}
	}
	r.packMu.Unlock()
	var err error
	if pb != nil {
		_, err = r.finishPack(pb, false)
	}
	for _, ch := range waits {
		<-ch
	}
	if ferr := w.failed(); ferr != nil {
		return ferr
	}
	return err
}

// packBuilder is a pack being written to a temp file in tmp/.
type packBuilder struct {
	f       *os.File
	w       *bufio.Writer
	size    int64
	entries []packEntry
	done    chan struct{} // closed when finished (or failed)
}

func (r *Repo) newPackBuilder() (*packBuilder, error) {
	f, err := os.CreateTemp(filepath.Join(r.dir, tmpDir), "pack-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("repository %s: create pack: %w", r.dir, err)
	}
	pb := &packBuilder{f: f, w: bufio.NewWriterSize(f, 256<<10), done: make(chan struct{})}
	if err := pb.write([]byte(packHeaderMagic)); err != nil {
		pb.discard(r)
		return nil, err
	}
	return pb, nil
}

func (pb *packBuilder) write(b []byte) error {
	var err error
	if len(b) >= pb.w.Size()/4 {
		// Large blobs skip the buffer: one copy less.
		if err = pb.w.Flush(); err == nil {
			_, err = pb.f.Write(b)
		}
	} else {
		_, err = pb.w.Write(b)
	}
	if err != nil {
		return fmt.Errorf("write pack %s: %w", pb.f.Name(), err)
	}
	pb.size += int64(len(b))
	return nil
}

// discard closes and removes the temp file.
func (pb *packBuilder) discard(r *Repo) {
	_ = pb.f.Close()
	if err := removeFile(pb.f.Name()); err != nil {
		r.log.Warn("remove temp pack", "error", err)
	}
}

// finishPack writes the trailer, makes the pack durable under its name
// (the SHA-256 of its trailer), writes its index file, and then puts its blobs in the
// in-memory index (replacing earlier locations when replace is set). On
// failure the blobs are dropped and every Writer made before sees the
// error. It returns the pack ID.
func (r *Repo) finishPack(pb *packBuilder, replace bool) (ID, error) {
	defer func() {
		r.packMu.Lock()
		delete(r.finishing, pb)
		r.packMu.Unlock()
		close(pb.done)
	}()
	id, err := r.writePack(pb)
	if err != nil {
		if replace {
			pb.discard(r) // Prune's copies: the originals stay indexed
		} else {
			r.failPack(pb, err, ID{}, nil)
		}
		return ID{}, err
	}
	r.mu.Lock()
	r.addPackLocked(id, pb.size, pb.entries, replace)
	for _, e := range pb.entries {
		delete(r.pending, e.id)
	}
	r.mu.Unlock()
	return id, nil
}

// writePack does the file work of finishPack: temp file -> fsync ->
// rename into packs/ -> fsync folder, then the index file the same way.
func (r *Repo) writePack(pb *packBuilder) (ID, error) {
	tmp := pb.f.Name()
	trailer := encodeTrailer(pb.entries)
	if err := pb.write(trailer); err != nil {
		pb.discard(r)
		return ID{}, err
	}
	if err := pb.w.Flush(); err != nil {
		pb.discard(r)
		return ID{}, fmt.Errorf("write pack %s: %w", tmp, err)
	}
	if err := pb.f.Sync(); err != nil {
		pb.discard(r)
		return ID{}, fmt.Errorf("write pack %s: sync: %w", tmp, err)
	}
	if err := pb.f.Close(); err != nil {
		_ = removeFile(tmp)
		return ID{}, fmt.Errorf("write pack %s: close: %w", tmp, err)
	}
	id := packID(trailer)
	r.mu.RLock()
	_, exists := r.packByID[id]
	r.mu.RUnlock()
	if exists {
		// The same bytes are stored already (Prune rewriting what a crashed
		// Prune wrote): keep that file and its index.
		return id, removeFile(tmp)
	}
	dst := r.packPath(id)
	if err := r.mkdirPackDir(filepath.Dir(dst)); err != nil {
		_ = removeFile(tmp)
		return ID{}, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = removeFile(tmp)
		return ID{}, fmt.Errorf("write pack %s: %w", id, err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return ID{}, fmt.Errorf("write pack %s: %w", id, err)
	}
	if err := writeFileAtomic(filepath.Join(r.dir, tmpDir), r.indexPath(id), encodeIndex(pb.size, pb.entries)); err != nil {
		// Without its index the pack is an orphan that the next Open
		// adopts; this run forgets its blobs, so remove it.
		_ = removeFile(dst)
		return ID{}, fmt.Errorf("write index of pack %s: %w", id, err)
	}
	return id, nil
}

// mkdirPackDir creates packs/<xx>/ durably.
func (r *Repo) mkdirPackDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return syncDir(filepath.Dir(dir))
}

// failPack drops the blobs of a pack that could not be written, plus the
// reserved blob id (if p is set), and records the failure for the Writers.
func (r *Repo) failPack(pb *packBuilder, err error, id ID, p *pendingBlob) {
	pb.discard(r)
	r.mu.Lock()
	for _, e := range pb.entries {
		delete(r.pending, e.id)
	}
	if p != nil && r.pending[id] == p {
		delete(r.pending, id)
	}
	r.failSeq++
	r.failErr = err
	r.mu.Unlock()
	if p != nil {
		close(p.ready)
	}
	r.log.Error("pack write failed; blobs of the pack are dropped", "repository", r.dir, "error", err)
}
