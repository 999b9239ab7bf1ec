package filestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/datawarehouse/dw/plugins/filesystem/internal/scheduler"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// classOf maps a request's priority to its queue class.
func classOf(p dwv1.Priority) (scheduler.Class, error) {
	if c, ok := classIndex(p); ok {
		return c, nil
	}
	return 0, fmt.Errorf("priority %d is not one of high, normal, low: %w", p, sdk.ErrInvalidArgument)
}

// classIndex is classOf without the error, for the latency of every
// request (no allocation).
func classIndex(p dwv1.Priority) (scheduler.Class, bool) {
	switch p {
	case dwv1.Priority_PRIORITY_HIGH:
		return scheduler.High, true
	case dwv1.Priority_PRIORITY_NORMAL, dwv1.Priority_PRIORITY_UNSPECIFIED:
		return scheduler.Normal, true
	case dwv1.Priority_PRIORITY_LOW:
		return scheduler.Low, true
	}
	return 0, false
}

// admit lets a request in: first its caller's quota (one operation and
// firstBytes bytes, waiting up to max_throttle_wait), then a place in the
// I/O queue (refused at once when the queue is full). Quota waits happen
// before the queue, so that a throttled caller holds no place in it. The
// returned transfer's finish must be called. (The SDK calls the service
// only once Configure has succeeded: the queue and the quotas exist.)
func (s *Service) admit(ctx context.Context, op string, prio dwv1.Priority, firstBytes int64) (*transfer, error) {
	class, err := classOf(prio)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	caller := sdk.Caller(ctx)
	s.admitted.Store(true)
	if err := s.quotas.Load().Admit(ctx, caller, firstBytes); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	o, err := s.sched.Admit(class)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return &transfer{s: s, op: o, class: class, caller: caller, prepaid: firstBytes}, nil
}

// admissionBytes is what admission takes from the caller's byte quota for
// a transfer of n bytes (-1: not known yet): the first 64 KiB at most. The
// rest is charged chunk by chunk; taking more up front would overcharge a
// small file whose size admission cannot know (a GET learns it after the
// open), and tokens taken cannot be given back.
func admissionBytes(n int64) int64 {
	if n < 0 {
		return smallTransfer
	}
	return min(n, smallTransfer)
}

// finish leaves the queue and counts the request.
func (t *transfer) finish(kind int, start time.Time, err error) {
	t.op.Done()
	t.s.stats.observe(kind, start, err)
}

// unary runs a metadata request: the path rule, admission, then fn in
// one dispatch of the queue.
func unary[R any](s *Service, ctx context.Context, kind int, p string, prio dwv1.Priority, fn func() (R, error)) (R, error) {
	start := time.Now()
	defer s.timeRequest(kind, prio, start)
	var zero R
	op := opNames[kind]
	if err := s.checkPath(ctx, op, p, kind == opList); err != nil {
		return zero, err
	}
	t, err := s.admit(ctx, op, prio, 0)
	if err != nil {
		return zero, err
	}
	var out R
	err = t.run(ctx, func() (err error) { out, err = fn(); return err })
	t.finish(kind, start, err)
	if err != nil {
		return zero, err
	}
	return out, nil
}

// Stat returns a file's or folder's info.
func (s *Service) Stat(ctx context.Context, req *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) {
	return unary(s, ctx, opStat, req.GetPath(), req.GetPriority(), func() (*dwv1.StatFileResponse, error) {
		info, err := s.stat(ctx, req.GetPath())
		return &dwv1.StatFileResponse{Info: info}, err
	})
}

// Delete removes a file or an empty folder.
func (s *Service) Delete(ctx context.Context, req *dwv1.DeleteFileRequest) (*dwv1.DeleteFileResponse, error) {
	return unary(s, ctx, opDelete, req.GetPath(), req.GetPriority(), func() (*dwv1.DeleteFileResponse, error) {
		existed, err := s.remove(ctx, req.GetPath())
		return &dwv1.DeleteFileResponse{Existed: existed}, err
	})
}

// List returns one page of a folder.
func (s *Service) List(ctx context.Context, req *dwv1.ListFilesRequest) (*dwv1.ListFilesResponse, error) {
	return unary(s, ctx, opList, req.GetPath(), req.GetPriority(), func() (*dwv1.ListFilesResponse, error) {
		return s.list(ctx, req.GetPath(), req.GetPageToken(), int(req.GetLimit()))
	})
}

// Get streams a file or a range of it.
func (s *Service) Get(req *dwv1.GetFileRequest, stream dwv1.FileStore_GetServer) error {
	start := time.Now()
	defer s.timeRequest(opGet, req.GetPriority(), start)
	ctx := stream.Context()
	if err := s.checkPath(ctx, "get", req.GetPath(), false); err != nil {
		return err
	}
	length := int64(-1)
	if req.Length != nil {
		if req.GetLength() < 0 {
			return fmt.Errorf("get %q: length %d is negative: %w", req.GetPath(), req.GetLength(), sdk.ErrInvalidArgument)
		}
		length = req.GetLength()
	}
	if req.GetOffset() < 0 {
		return fmt.Errorf("get %q: offset %d is negative: %w", req.GetPath(), req.GetOffset(), sdk.ErrInvalidArgument)
	}
	t, err := s.admit(ctx, "get", req.GetPriority(), admissionBytes(length))
	if err != nil {
		return err
	}
	s.stats.activeGets.Add(1)
	err = s.getFile(ctx, t, req.GetPath(), req.GetOffset(), length, stream.Send)
	s.stats.activeGets.Add(-1)
	t.finish(opGet, start, err)
	return err
}

// Put writes a file atomically.
func (s *Service) Put(stream dwv1.FileStore_PutServer) error {
	start := time.Now()
	var hdr *dwv1.PutFileHeader // the request's priority, once received
	defer func() { s.timeRequest(opPut, hdr.GetPriority(), start) }()
	ctx := stream.Context()
	msg, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("put: receive header: %w", err)
	}
	hdr = msg.GetHeader()
	if hdr == nil {
		return fmt.Errorf("put: the first message must be the header: %w", sdk.ErrInvalidArgument)
	}
	p := hdr.GetPath()
	if err := s.checkPath(ctx, "put", p, false); err != nil {
		return err
	}
	if hdr.GetSize() < -1 {
		return fmt.Errorf("put %q: size %d is invalid; announce the size or -1 for unknown: %w", p, hdr.GetSize(), sdk.ErrInvalidArgument)
	}
	if sum := hdr.GetSha256(); sum != "" && !isSHA256Hex(sum) {
		return fmt.Errorf("put %q: sha256 %.80q is not 64 lowercase hex digits: %w", p, sum, sdk.ErrInvalidArgument)
	}
	t, err := s.admit(ctx, "put", hdr.GetPriority(), admissionBytes(hdr.GetSize()))
	if err != nil {
		return err
	}
	s.stats.activePuts.Add(1)
	defer s.stats.activePuts.Add(-1)
	resp, err := s.receive(ctx, t, p, hdr, stream)
	t.finish(opPut, start, err)
	if err != nil {
		return err
	}
	return stream.SendAndClose(resp)
}

// receive writes the data messages of a Put into a staging file and
// commits it; on any error the staging file is removed.
func (s *Service) receive(ctx context.Context, t *transfer, p string, hdr *dwv1.PutFileHeader, stream dwv1.FileStore_PutServer) (*dwv1.PutFileResponse, error) {
	u, err := s.startUpload(ctx, t, p, hdr.GetSize(), hdr.GetSha256())
	if err != nil {
		return nil, err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			u.abort()
			return nil, fmt.Errorf("put %q: receive: %w", p, err)
		}
		data := msg.GetData()
		if msg.GetHeader() != nil {
			u.abort()
			return nil, fmt.Errorf("put %q: a second header after %d bytes: %w", p, u.size, sdk.ErrInvalidArgument)
		}
		if err := u.write(ctx, data); err != nil {
			u.abort()
			return nil, err
		}
	}
	info, sum, err := u.commit(ctx)
	if err != nil {
		return nil, err
	}
	return &dwv1.PutFileResponse{Info: info, Sha256: sum}, nil
}

// isSHA256Hex reports whether s is 64 lowercase hex digits.
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
