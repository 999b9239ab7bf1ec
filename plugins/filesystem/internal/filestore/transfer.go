package filestore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/datawarehouse/dw/plugins/filesystem/internal/probe"
	"github.com/datawarehouse/dw/plugins/filesystem/internal/scheduler"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// chunkSize is the unit of file I/O: one read or write of a transfer, one
// dispatch of the I/O queue, one gRPC message. 1 MiB keeps the queue
// responsive (a high-priority request waits for at most one chunk of each
// running transfer) while large enough for direct I/O to stream.
const chunkSize = 1 << 20

// maxBuffers bounds the chunk buffers of transfers (see bufferPool).
const maxBuffers = 64

// smallTransfer is the largest read served from smallBuffers instead of
// the chunk pool.
const smallTransfer = 64 << 10

// smallBuffers hold the data of small reads. They are not counted against
// the chunk pool: there is at most one per admitted request, so their
// memory is bounded by (max_queue_depth + queue depth) × 64 KiB.
var smallBuffers = sync.Pool{New: func() any { b := make([]byte, smallTransfer); return &b }}

// bufferPool hands out aligned chunk buffers, at most max at a time: the
// memory of all transfers together is bounded by max × chunkSize (64 MiB)
// whatever the number of requests. A transfer waits (context-aware) when
// all are out. Buffers are allocated on first use and kept.
type bufferPool struct {
	free  chan []byte
	slots chan struct{}
	inUse atomic.Int64
	waits atomic.Uint64
}

func newBufferPool(max int) *bufferPool {
	return &bufferPool{free: make(chan []byte, max), slots: make(chan struct{}, max)}
}

// get returns a chunkSize buffer aligned for O_DIRECT.
func (p *bufferPool) get(ctx context.Context) ([]byte, error) {
	select {
	case p.slots <- struct{}{}:
	default:
		p.waits.Add(1)
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	p.inUse.Add(1)
	select {
	case b := <-p.free:
		return b, nil
	default:
		return probe.AlignedBuffer(chunkSize), nil
	}
}

// put gives back a buffer from get.
func (p *bufferPool) put(b []byte) {
	p.inUse.Add(-1)
	select {
	case p.free <- b:
	default:
	}
	<-p.slots
}

// transfer is one admitted request: its queue operation and its caller's
// quota account.
type transfer struct {
	s       *Service
	op      *scheduler.Op
	class   scheduler.Class
	caller  string
	prepaid int64 // bytes taken from the quota at admission, not yet used
}

// take charges n bytes to the caller's quota, first from what admission
// took.
func (t *transfer) take(ctx context.Context, n int64) error {
	if t.prepaid >= n {
		t.prepaid -= n
		return nil
	}
	n -= t.prepaid
	t.prepaid = 0
	return t.s.quotas.Load().Bytes(ctx, t.caller, n)
}

// run runs fn on the device, in the queue's order.
func (t *transfer) run(ctx context.Context, fn func() error) error {
	return t.op.Run(ctx, fn)
}

// pread reads into buf at off with one pread(2) per call until buf is full
// or the file ends. Unlike os.File.ReadAt it never continues at an
// unaligned offset, which O_DIRECT would refuse: a short read that is not
// a multiple of the alignment is the end of the file.
func pread(f *os.File, buf []byte, off int64) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	got := 0
	var rerr error
	cerr := rc.Control(func(fd uintptr) {
		for got < len(buf) {
			n, err := unix.Pread(int(fd), buf[got:], off+int64(got))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				rerr = err
				return
			}
			if n == 0 {
				return
			}
			got += n
			if n%probe.Alignment != 0 {
				return
			}
		}
	})
	if cerr != nil {
		return got, cerr
	}
	return got, rerr
}

// pwrite writes all of buf at off.
func pwrite(f *os.File, buf []byte, off int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	cerr := rc.Control(func(fd uintptr) {
		for len(buf) > 0 {
			n, err := unix.Pwrite(int(fd), buf, off)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				werr = err
				return
			}
			buf, off = buf[n:], off+int64(n)
		}
	})
	if cerr != nil {
		return cerr
	}
	return werr
}

// getFile streams p's range [offset, offset+length) (length < 0: to the
// end) to send: first the header, then the data in chunks. Each chunk is
// read in one dispatch of the queue and charged to the caller's byte quota
// before it is read.
func (s *Service) getFile(ctx context.Context, t *transfer, p string, offset int64, length int64, send func(*dwv1.GetFileResponse) error) error {
	var f *os.File
	var info *dwv1.FileInfo
	var size int64
	err := t.run(ctx, func() error {
		var err error
		if f, err = s.root.Open(p); err != nil {
			return s.fileError(ctx, "get", p, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return s.fileError(ctx, "get", p, err)
		}
		if fi.IsDir() {
			f.Close()
			return fmt.Errorf("get %q: is a folder; list it instead: %w", p, sdk.ErrInvalidArgument)
		}
		info, size = fileInfo(p, fi), fi.Size()
		return nil
	})
	if err != nil {
		return err
	}
	defer f.Close()
	if offset < 0 || (offset >= size && !(offset == 0 && size == 0)) {
		return fmt.Errorf("get %q: range starts at byte %d of a %d-byte file: %w", p, offset, size, sdk.ErrOutOfRange)
	}
	if length < 0 || length > size-offset {
		length = size - offset
	}
	if err := send(&dwv1.GetFileResponse{Part: &dwv1.GetFileResponse_Header{Header: &dwv1.GetFileHeader{Info: info, Offset: offset, Length: length}}}); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	direct := useDirect(s.path.Load(), t.class, length)
	src := f
	if direct {
		// A second descriptor with O_DIRECT on the same inode: the check
		// above (not a folder, the size) holds for it.
		df, err := s.root.OpenFile(p, os.O_RDONLY|unix.O_DIRECT, 0)
		if err != nil {
			direct = false
			s.logger.Debug("O_DIRECT open failed; reading buffered", "path", p, "error", err)
		} else {
			defer df.Close()
			src = df
		}
	}
	if direct {
		s.stats.directTransfers.Add(1)
	} else {
		s.stats.bufferedTransfers.Add(1)
	}
	var buf []byte
	if !direct && length <= smallTransfer {
		// Small reads never wait for the chunk pool: a flood of large
		// transfers holding every chunk buffer must not delay them.
		bp := smallBuffers.Get().(*[]byte)
		defer smallBuffers.Put(bp)
		buf = (*bp)[:length]
	} else {
		if buf, err = s.bufs.get(ctx); err != nil {
			return err
		}
		defer s.bufs.put(buf)
	}

	// Direct reads start at the aligned block below offset and skip the
	// bytes before it.
	pos, end := offset, offset+length
	if direct {
		pos = offset &^ (probe.Alignment - 1)
	}
	for pos < end {
		want := min(int64(len(buf)), end-pos)
		if direct {
			want = min(int64(len(buf)), alignUp(end-pos))
		}
		skip := max(offset-pos, 0)
		if err := t.take(ctx, min(want, end-pos)-skip); err != nil {
			return err
		}
		var n int
		err := t.run(ctx, func() error {
			var rerr error
			start := time.Now()
			n, rerr = pread(src, buf[:want], pos)
			s.stats.readNanos.Add(uint64(time.Since(start)))
			return rerr
		})
		if err != nil {
			return s.fileError(ctx, "read", p, err)
		}
		data := buf[:min(int64(n), end-pos)]
		if int64(len(data)) <= skip {
			return fmt.Errorf("read %q: the file shrank while it was read (%d bytes at %d): %w", p, n, pos, io.ErrUnexpectedEOF)
		}
		data = data[skip:]
		if err := send(&dwv1.GetFileResponse{Part: &dwv1.GetFileResponse_Data{Data: data}}); err != nil {
			return err
		}
		s.stats.bytesOut.Add(uint64(len(data)))
		pos += int64(skip) + int64(len(data))
		if pos < end && int64(n) < want {
			return fmt.Errorf("read %q: the file shrank while it was read: %w", p, io.ErrUnexpectedEOF)
		}
	}
	return nil
}

// alignUp rounds n up to the direct I/O alignment.
func alignUp(n int64) int64 { return (n + probe.Alignment - 1) &^ (probe.Alignment - 1) }

// upload is a Put in progress: a staging file renamed into place by
// commit, removed by abort.
type upload struct {
	s       *Service
	t       *transfer
	p       string
	tmp     string // staging path, relative to the root
	f       *os.File
	direct  bool
	buf     []byte // direct only: aligned staging of the data
	fill    int
	written int64 // bytes on disk
	size    int64 // bytes received
	want    int64 // announced size or -1
	sum     hash.Hash
	wantSum string
}

var uploadSeq atomic.Uint64

// startUpload creates the staging file for p. size is the announced size
// (-1 unknown); wantSum the SHA-256 to verify, if any.
func (s *Service) startUpload(ctx context.Context, t *transfer, p string, size int64, wantSum string) (*upload, error) {
	u := &upload{s: s, t: t, p: p, want: size, wantSum: wantSum}
	if wantSum != "" {
		u.sum = sha256.New()
	}
	u.tmp = stagingDir + "/" + strconv.FormatInt(int64(os.Getpid()), 36) + "-" + strconv.FormatUint(uploadSeq.Add(1), 36) + ".part"
	u.direct = useDirect(s.path.Load(), t.class, size)
	err := t.run(ctx, func() error {
		// The target's parent folders are made here, so that a path
		// whose parent is a file fails before any data is taken.
		if dir := parentOf(p); dir != "" {
			if err := s.root.MkdirAll(dir, 0o755); err != nil {
				if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTDIR) {
					return fmt.Errorf("put %q: a parent of the path is a file, not a folder: %w", p, sdk.ErrInvalidArgument)
				}
				return s.fileError(ctx, "put", p, err)
			}
		}
		if fi, err := s.root.Lstat(p); err == nil && fi.IsDir() {
			return fmt.Errorf("put %q: is a folder: %w", p, sdk.ErrInvalidArgument)
		}
		flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
		if u.direct {
			f, err := s.root.OpenFile(u.tmp, flags|unix.O_DIRECT, 0o644)
			if err == nil {
				u.f = f
				return nil
			}
			u.direct = false
		}
		var err error
		u.f, err = s.root.OpenFile(u.tmp, flags, 0o644)
		return err
	})
	if err != nil {
		return nil, err
	}
	if u.direct {
		s.stats.directTransfers.Add(1)
		if u.buf, err = s.bufs.get(ctx); err != nil {
			u.abort()
			return nil, err
		}
	} else {
		s.stats.bufferedTransfers.Add(1)
	}
	return u, nil
}

// write takes data from the stream: charged to the quota, written in one
// dispatch (buffered) or staged in the aligned buffer and written when it
// is full (direct).
func (u *upload) write(ctx context.Context, data []byte) error {
	u.size += int64(len(data))
	if u.want >= 0 && u.size > u.want {
		return fmt.Errorf("put %q: the body is longer than the announced %d bytes: %w", u.p, u.want, sdk.ErrInvalidArgument)
	}
	if u.sum != nil {
		u.sum.Write(data)
	}
	if err := u.t.take(ctx, int64(len(data))); err != nil {
		return err
	}
	u.s.stats.bytesIn.Add(uint64(len(data)))
	if !u.direct {
		return u.t.run(ctx, func() error { return u.writeAt(data) })
	}
	for len(data) > 0 {
		n := copy(u.buf[u.fill:], data)
		u.fill += n
		data = data[n:]
		if u.fill == len(u.buf) {
			if err := u.t.run(ctx, func() error { return u.writeAt(u.buf) }); err != nil {
				return err
			}
			u.fill = 0
		}
	}
	return nil
}

func (u *upload) writeAt(b []byte) error {
	start := time.Now()
	err := pwrite(u.f, b, u.written)
	u.s.stats.writeNanos.Add(uint64(time.Since(start)))
	if err != nil {
		return u.s.fileError(context.Background(), "write", u.p, err)
	}
	u.written += int64(len(b))
	return nil
}

// commit checks the size and checksum, flushes, fsyncs and renames the
// staging file into place, then fsyncs the folder: when it returns, the
// file survives a crash.
func (u *upload) commit(ctx context.Context) (*dwv1.FileInfo, string, error) {
	if u.want >= 0 && u.size != u.want {
		u.abort()
		return nil, "", fmt.Errorf("put %q: the body has %d bytes, the header announced %d: %w", u.p, u.size, u.want, sdk.ErrInvalidArgument)
	}
	var sum string
	if u.sum != nil {
		sum = hex.EncodeToString(u.sum.Sum(nil))
		if sum != u.wantSum {
			u.abort()
			return nil, "", fmt.Errorf("put %q: the body's SHA-256 is %s, the header announced %s: %w", u.p, sum, u.wantSum, sdk.ErrInvalidArgument)
		}
	}
	var info *dwv1.FileInfo
	err := u.t.run(ctx, func() error {
		if u.direct && u.fill > 0 {
			// The tail: one padded aligned block, then cut to size.
			n := int(alignUp(int64(u.fill)))
			clear(u.buf[u.fill:n])
			if err := pwrite(u.f, u.buf[:n], u.written); err != nil {
				return u.s.fileError(ctx, "write", u.p, err)
			}
			u.written += int64(u.fill)
			u.fill = 0
			if err := u.f.Truncate(u.written); err != nil {
				return u.s.fileError(ctx, "write", u.p, err)
			}
		}
		if err := u.f.Sync(); err != nil {
			return u.s.fileError(ctx, "sync", u.p, err)
		}
		if err := u.f.Close(); err != nil {
			return u.s.fileError(ctx, "close", u.p, err)
		}
		u.f = nil
		if err := u.s.root.Rename(u.tmp, u.p); err != nil {
			return u.s.fileError(ctx, "put", u.p, err)
		}
		u.tmp = ""
		if err := u.s.syncDir(parentOf(u.p)); err != nil {
			return fmt.Errorf("put %q: sync folder: %w", u.p, err)
		}
		fi, err := u.s.root.Lstat(u.p)
		if err != nil {
			return u.s.fileError(ctx, "put", u.p, err)
		}
		info = fileInfo(u.p, fi)
		return nil
	})
	u.release()
	if err != nil {
		u.abort()
		return nil, "", err
	}
	return info, sum, nil
}

// release gives back the aligned buffer.
func (u *upload) release() {
	if u.buf != nil {
		u.s.bufs.put(u.buf)
		u.buf = nil
	}
}

// abort closes and removes the staging file. It runs outside the queue:
// cleanup must not wait behind other work or be refused.
func (u *upload) abort() {
	u.release()
	if u.f != nil {
		u.f.Close()
		u.f = nil
	}
	if u.tmp != "" {
		if err := u.s.root.Remove(u.tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
			u.s.logger.Warn("remove staging file of an aborted upload", "file", u.tmp, "error", err)
		}
		u.tmp = ""
	}
}
