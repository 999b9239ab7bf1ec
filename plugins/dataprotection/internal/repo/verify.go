package repo

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

const (
	// verifyBufSize is the read buffer of each pack VerifyPacks reads.
	verifyBufSize = 1 << 20
	// maxVerifyWorkers bounds the packs VerifyPacks reads at once.
	maxVerifyWorkers = 4
	// maxStreamWindow bounds the zstd window of the streaming decoder
	// VerifyPacks uses. Frames this package writes use 1 MiB. A frame
	// that asks for more is decoded in memory, as Load does, so that
	// VerifyPacks and Load agree on what is readable.
	maxStreamWindow = 8 << 20
)

// BlobDamage says why an indexed blob cannot be loaded.
type BlobDamage struct {
	// Pack is the pack the index places the blob in.
	Pack ID
	// Err says what is wrong, without naming pack or blob. It wraps
	// ErrCorrupt when the stored bytes are bad, or the error reading the
	// pack file returned.
	Err error
	// PackUnreadable: nothing of the pack could be checked (its file cannot
	// be opened, or neither its index file nor its trailer can be read).
	// The pack's problem, passed to fn, speaks for all its blobs.
	PackUnreadable bool
}

// PackReport sums up a VerifyPacks.
type PackReport struct {
	Packs     int64 // pack files read
	PackBytes int64 // their bytes
	Blobs     int64 // blobs read, decompressed and hashed
	RawBytes  int64 // plaintext bytes of the blobs that checked out
	// Damaged maps every indexed blob that cannot be loaded to why; it is
	// never nil. It holds only blobs whose index location is in the pack
	// at fault: a damaged copy that the index does not use is a problem
	// of its pack. Its size grows with the damage, not the repository.
	Damaged map[ID]BlobDamage
}

// VerifyPacks reads every pack file once, front to back, through a 1 MiB
// buffer, at most four packs at once. It checks the pack as a file (its
// size against the index, header, trailer: checksum, layout, the hash
// that names the pack, agreement with the index file) and every blob in
// it (decompressed as a stream and hashed against its ID), so every byte
// of a pack is checked and no blob is ever held whole in memory (but one
// whose zstd window exceeds 8 MiB, which this package never writes).
//
// fn is called once per pack, never concurrently, with nil or an error
// wrapping ErrCorrupt that joins the pack's own problems, one a line,
// each naming the pack. A damaged blob the index uses is not one of them:
// it goes to PackReport.Damaged, so that the caller reports it once, by
// the files that use it. VerifyPacks returns an error only when it could
// not run (context cancelled, repository closed). Prune and VerifyPacks
// exclude each other; packs written after VerifyPacks starts are not read.
func (r *Repo) VerifyPacks(ctx context.Context, fn func(pack string, err error)) (PackReport, error) {
	rep := PackReport{Damaged: make(map[ID]BlobDamage)}
	if err := r.enter(); err != nil {
		return rep, err
	}
	defer r.life.RUnlock()
	r.maintMu.Lock()
	defer r.maintMu.Unlock()
	if fn == nil {
		fn = func(string, error) {}
	}

	r.mu.RLock()
	packs := make([]packInfo, 0, r.livePacks)
	for _, p := range r.packs {
		if !p.gone {
			packs = append(packs, p)
		}
	}
	r.mu.RUnlock()

	checkers := make([]*packChecker, min(maxVerifyWorkers, runtime.GOMAXPROCS(0), len(packs)))
	for i := range checkers {
		c, err := r.newPackChecker()
		if err != nil {
			for _, c := range checkers[:i] {
				c.close()
			}
			return rep, fmt.Errorf("verify packs: %w", err)
		}
		checkers[i] = c
	}
	jobs := make(chan packInfo)
	var mu sync.Mutex // guards rep, unreadable and fn
	unreadable := make(map[ID]error)
	var wg sync.WaitGroup
	for _, c := range checkers {
		wg.Go(func() {
			defer c.close()
			for p := range jobs {
				res, err := r.verifyPack(ctx, c, p)
				if err != nil {
					continue // ctx is done
				}
				mu.Lock()
				problems := r.mergeCheck(&rep, unreadable, p, res)
				fn(p.id.String(), errors.Join(problems...))
				mu.Unlock()
			}
		})
	}
feed:
	for _, p := range packs {
		select {
		case jobs <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("verify packs: %w", err)
	}
	if len(unreadable) > 0 {
		// One pass over the index finds the blobs of every unreadable pack.
		r.mu.RLock()
		r.index.each(func(id ID, loc location) {
			pack := r.packs[loc.pack].id
			if reason, ok := unreadable[pack]; ok {
				rep.Damaged[id] = BlobDamage{Pack: pack, Err: reason, PackUnreadable: true}
			}
		})
		r.mu.RUnlock()
	}
	return rep, nil
}

// packCheck is what verifyPack found in one pack.
type packCheck struct {
	size     int64
	problems []error     // the pack's own, each naming the pack
	damaged  []blobFault // blobs that fail their check
	// unreadable is set when none of the pack's blobs could be checked;
	// the reason is also among problems.
	unreadable      error
	blobs, rawBytes int64
}

type blobFault struct {
	id  ID
	err error
}

// mergeCheck adds one pack's result to rep: a damaged blob goes to
// rep.Damaged when the index loads it from this pack, else it is a
// problem of the pack (a duplicate copy the index does not use). It
// returns the pack's problems.
func (r *Repo) mergeCheck(rep *PackReport, unreadable map[ID]error, p packInfo, res packCheck) []error {
	rep.Packs++
	rep.PackBytes += res.size
	rep.Blobs += res.blobs
	rep.RawBytes += res.rawBytes
	if res.unreadable != nil {
		unreadable[p.id] = res.unreadable
	}
	if len(res.damaged) == 0 {
		return res.problems
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	pi, live := r.packByID[p.id]
	for _, d := range res.damaged {
		if loc, ok := r.index.get(d.id); ok && live && loc.pack == pi {
			rep.Damaged[d.id] = BlobDamage{Pack: p.id, Err: d.err}
			continue
		}
		res.problems = append(res.problems, fmt.Errorf("pack %s: blob %s, a copy the index does not use: %w", p.id, d.id, d.err))
	}
	return res.problems
}

// verifyPack reads one pack front to back; see VerifyPacks. The blobs are
// where the index file says (the in-memory index came from it), or where
// the trailer says when the index file is unreadable. The error is the
// context's only.
func (r *Repo) verifyPack(ctx context.Context, c *packChecker, p packInfo) (packCheck, error) {
	var pc packCheck
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("pack %s: %s: %w", p.id, fmt.Sprintf(format, args...), ErrCorrupt)
	}
	unreadable := func(err error) (packCheck, error) {
		pc.unreadable = err
		pc.problems = append(pc.problems, fmt.Errorf("pack %s: %w", p.id, err))
		return pc, nil
	}
	f, err := os.Open(r.packPath(p.id))
	if err != nil {
		return unreadable(fmt.Errorf("the pack file cannot be read: %w: %w", err, ErrCorrupt))
	}
	defer func() { _ = f.Close() }()
	info, err := f.Stat()
	if err != nil {
		return unreadable(fmt.Errorf("the pack file cannot be read: %w: %w", err, ErrCorrupt))
	}
	size := info.Size()
	pc.size = size
	if size != p.size {
		pc.problems = append(pc.problems, corrupt("file is %d bytes, its index says %d", size, p.size))
	}
	src := r.counted(f)

	_, entries, ierr := r.readIndexFile(p.id)
	trailerChecked := false
	if ierr != nil {
		pc.problems = append(pc.problems, ierr)
		te, tid, terr := readTrailer(src, size)
		if terr != nil {
			pc.problems = append(pc.problems, corrupt("trailer: %v", terr))
			pc.unreadable = fmt.Errorf("its index file and its trailer are both unreadable, so the next open of the repository moves the pack to quarantine/: %w", ErrCorrupt)
			return pc, nil
		}
		if tid != p.id {
			pc.problems = append(pc.problems, corrupt("trailer hashes to %s, not to the pack's name", tid))
		}
		entries, trailerChecked = te, true
	}

	c.in.Reset(io.NewSectionReader(src, 0, size))
	defer c.in.Reset(nil)
	// broken is set when the stream ends or fails: the blobs from there on
	// cannot be checked, and are reported as unreadable.
	var broken error
	var head [packHeaderSize]byte
	if _, err := io.ReadFull(c.in, head[:]); err != nil {
		broken = streamError(err)
	} else if string(head[:]) != packHeaderMagic {
		pc.problems = append(pc.problems, corrupt("bad header magic (not a pack of format version 1)"))
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return pc, err
		}
		if broken == nil {
			var defect error
			if defect, broken = c.check(e); broken == nil {
				pc.blobs++
				if defect != nil {
					pc.damaged = append(pc.damaged, blobFault{id: e.id, err: defect})
				} else {
					pc.rawBytes += int64(e.rawLen)
				}
				continue
			}
		}
		pc.damaged = append(pc.damaged, blobFault{id: e.id, err: lostBlob(e, broken)})
	}
	if trailerChecked {
		return pc, nil
	}

	// The rest of the file is the trailer (entries are contiguous from
	// the header: decodeIndex checked the layout).
	blobsEnd := int64(packHeaderSize)
	if n := len(entries); n > 0 {
		blobsEnd = int64(entries[n-1].offset) + int64(entries[n-1].length)
	}
	var te []packEntry
	var tid ID
	var terr error
	switch rest := size - blobsEnd; {
	case broken != nil:
		te, tid, terr = readTrailer(src, size)
	case rest < int64(packFooterSize) || rest > int64(maxTrailerSize):
		terr = fmt.Errorf("%d bytes follow the blobs the index file names, where a trailer of %d to %d bytes belongs", rest, packFooterSize, maxTrailerSize)
	default:
		tb := getBuf(int(rest))
		if _, err := io.ReadFull(c.in, *tb); err != nil {
			terr = fmt.Errorf("read trailer: %w", err)
		} else {
			te, tid, terr = parseTrailer(*tb, size)
		}
		putBuf(tb)
	}
	switch {
	case terr != nil:
		pc.problems = append(pc.problems, corrupt("trailer: %v", terr))
	case tid != p.id:
		pc.problems = append(pc.problems, corrupt("trailer hashes to %s, not to the pack's name", tid))
	case !slices.Equal(te, entries):
		pc.problems = append(pc.problems, corrupt("index file disagrees with the pack trailer"))
	}
	return pc, nil
}

// streamError is the error that ends a pack's stream: the file ends
// early, or a read fails.
func streamError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// lostBlob says why blob e could not be checked once the stream broke.
func lostBlob(e packEntry, broken error) error {
	if broken == io.ErrUnexpectedEOF {
		return fmt.Errorf("the pack ends before the blob's %d bytes at offset %d: %w", e.length, e.offset, ErrCorrupt)
	}
	return fmt.Errorf("read the pack: %w", broken)
}

// packChecker is one VerifyPacks worker's state, reused from pack to pack.
type packChecker struct {
	in    *bufio.Reader
	dec   *zstd.Decoder // streaming, in the calling goroutine
	mem   *zstd.Decoder // the Repo's, for frames with a larger window
	sum   hash.Hash
	blob  blobReader
	out   hashWriter
	plain []byte
}

func (r *Repo) newPackChecker() (*packChecker, error) {
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1), // synchronous: no goroutines
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxStreamWindow),
		zstd.WithDecoderMaxMemory(MaxBlobSize))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &packChecker{in: bufio.NewReaderSize(nil, verifyBufSize), dec: dec, mem: r.dec, sum: sha256.New()}, nil
}

func (c *packChecker) close() { c.dec.Close() }

var errTooLong = errors.New("more bytes than the index says")

// check reads blob e's stored bytes from c.in, decompresses and hashes
// them. It returns what is wrong with the blob (defect), or the error that
// ends the stream (broken: the pack ends early or a read failed), when
// nothing can be said about the blob.
func (c *packChecker) check(e packEntry) (defect, broken error) {
	c.blob = blobReader{r: c.in, left: int64(e.length)}
	var h zstd.Header
	inMemory := false
	if peek, _ := c.in.Peek(min(zstd.HeaderMaxSize, int(e.length))); h.Decode(peek) == nil && !h.Skippable {
		if h.HasFCS && h.FrameContentSize != uint64(e.rawLen) {
			defect = fmt.Errorf("the zstd frame declares %d bytes, the index says %d: %w", h.FrameContentSize, e.rawLen, ErrCorrupt)
		}
		window := h.WindowSize
		if h.SingleSegment {
			window = h.FrameContentSize
		}
		inMemory = window > maxStreamWindow
	}
	switch {
	case defect != nil:
	case inMemory:
		defect = c.checkInMemory(e)
	default:
		defect = c.checkStream(e)
	}
	extra, _ := io.Copy(io.Discard, &c.blob) // what the decoder left
	if c.blob.err != nil {
		return nil, streamError(c.blob.err)
	}
	if defect == nil && extra > 0 {
		defect = fmt.Errorf("the zstd frame ends %d bytes before the blob: %w", extra, ErrCorrupt)
	}
	return defect, nil
}

func (c *packChecker) checkStream(e packEntry) error {
	c.sum.Reset()
	c.out = hashWriter{h: c.sum, left: int64(e.rawLen)}
	if err := c.dec.Reset(&c.blob); err != nil {
		return fmt.Errorf("decompress: %w: %w", err, ErrCorrupt)
	}
	n, err := c.dec.WriteTo(&c.out)
	switch {
	case errors.Is(err, errTooLong):
		return fmt.Errorf("decompresses to more than the %d bytes the index says: %w", e.rawLen, ErrCorrupt)
	case err != nil:
		return fmt.Errorf("decompress: %w: %w", err, ErrCorrupt)
	case n != int64(e.rawLen):
		return fmt.Errorf("decompressed to %d bytes, the index says %d: %w", n, e.rawLen, ErrCorrupt)
	case ID(c.sum.Sum(nil)) != e.id:
		return fmt.Errorf("content does not hash to the blob's id: %w", ErrCorrupt)
	}
	return nil
}

// checkInMemory decodes a frame whose window exceeds maxStreamWindow the
// way Load does: its bytes and its plaintext at once.
func (c *packChecker) checkInMemory(e packEntry) error {
	cb := getBuf(int(e.length))
	defer putBuf(cb)
	if _, err := io.ReadFull(&c.blob, *cb); err != nil {
		return nil // c.blob.err says why; check reports it
	}
	out, err := c.mem.DecodeAll(*cb, c.plain[:0])
	if cap(out) <= maxPooledBuf {
		c.plain = out[:0]
	}
	switch {
	case err != nil:
		return fmt.Errorf("decompress: %w: %w", err, ErrCorrupt)
	case len(out) != int(e.rawLen):
		return fmt.Errorf("decompressed to %d bytes, the index says %d: %w", len(out), e.rawLen, ErrCorrupt)
	case Hash(out) != e.id:
		return fmt.Errorf("content does not hash to the blob's id: %w", ErrCorrupt)
	}
	return nil
}

// blobReader reads one blob's stored bytes from a pack stream and
// remembers why the stream failed, if it did.
type blobReader struct {
	r    io.Reader
	left int64
	err  error // the stream ended before the blob did, or a read failed
}

func (b *blobReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err != nil && b.left > 0 {
		b.err = err
	}
	return n, err
}

// hashWriter hashes a blob's plaintext, refusing more than left bytes.
type hashWriter struct {
	h    hash.Hash
	left int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.left {
		return 0, errTooLong
	}
	w.left -= int64(len(p))
	return w.h.Write(p)
}

// countedReaderAt counts the bytes read from a pack file.
type countedReaderAt struct {
	r io.ReaderAt
	n *atomic.Int64
}

func (c countedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// counted wraps a pack file so that its reads count in Stats.ReadBytes.
func (r *Repo) counted(f io.ReaderAt) io.ReaderAt { return countedReaderAt{r: f, n: &r.readBytes} }
