package objectstore

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/pagetoken"
	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// Bounds of what a request may carry besides data.
const (
	maxContentTypeBytes = 255
	maxMetadataEntries  = 64
	maxMetadataNameLen  = 128
	maxMetadataBytes    = 8 << 10
	maxPrefixBytes      = 1024
	// streamBatch is how many keys ListStream reads per query.
	streamBatch = 1000
)

func toProto(o store.Object, strategy string) *dwv1.ObjectInfo {
	return &dwv1.ObjectInfo{
		Key:         o.Key,
		Size:        o.Size,
		Sha256:      o.SHA256,
		ContentType: o.ContentType,
		Metadata:    o.Metadata,
		CreatedAt:   timestamppb.New(o.CreatedAt),
		ModifiedAt:  timestamppb.New(o.ModifiedAt),
		Strategy:    strategy,
	}
}

// validateHeader checks what a Put carries besides the data: the store's
// rules for key, size and digest, and the service's for content type and
// metadata.
func validateHeader(h *dwv1.PutObjectHeader) error {
	if err := store.ValidatePutRequest(store.PutRequest{Key: h.GetKey(), Size: h.GetSize(), SHA256: h.GetSha256()}); err != nil {
		return err
	}
	ct := h.GetContentType()
	if len(ct) > maxContentTypeBytes {
		return fmt.Errorf("%w: content type is %d bytes, at most %d allowed", sdk.ErrInvalidArgument, len(ct), maxContentTypeBytes)
	}
	if !printable(ct) {
		return fmt.Errorf("%w: content type %q has control or non-ASCII characters", sdk.ErrInvalidArgument, ct)
	}
	md := h.GetMetadata()
	if len(md) > maxMetadataEntries {
		return fmt.Errorf("%w: %d metadata entries, at most %d allowed", sdk.ErrInvalidArgument, len(md), maxMetadataEntries)
	}
	total := 0
	for k, v := range md {
		total += len(k) + len(v)
		if k == "" || len(k) > maxMetadataNameLen || strings.Trim(k, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return fmt.Errorf("%w: metadata name %q: 1–%d of a-z, 0-9, '-' and '_' allowed", sdk.ErrInvalidArgument, k, maxMetadataNameLen)
		}
		if !utf8.ValidString(v) || strings.ContainsAny(v, "\x00\r\n") {
			return fmt.Errorf("%w: metadata %q: value must be UTF-8 without NUL, CR or LF", sdk.ErrInvalidArgument, k)
		}
	}
	if total > maxMetadataBytes {
		return fmt.Errorf("%w: metadata is %d bytes (names and values), at most %d allowed", sdk.ErrInvalidArgument, total, maxMetadataBytes)
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Put receives the header, then streams the data into the strategy. The
// data is read message by message: the plugin holds at most one gRPC
// message plus the strategy's one chunk, and the chunk is reserved from the
// buffer budget first (waiting while the budget is spent).
func (s *Service) Put(stream dwv1.ObjectStore_PutServer) error {
	var h *dwv1.PutObjectHeader // the request's strategy, once received
	defer func(start time.Time) { s.timeRequest(reqPut, h.GetStrategy(), start) }(time.Now())
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("put: receive header: %w", err)
	}
	h = first.GetHeader()
	if h == nil {
		return fmt.Errorf("%w: put: the first message must be the header", sdk.ErrInvalidArgument)
	}
	if err := validateHeader(h); err != nil {
		return fmt.Errorf("put %q: %w", h.GetKey(), err)
	}
	st, err := s.pick(h.GetStrategy())
	if err != nil {
		return fmt.Errorf("put %q: %w", h.GetKey(), err)
	}
	done := s.stats.streamStart(&s.stats.putStreams)
	defer done()
	// The strategy holds one chunk while it fills it.
	size := h.GetSize()
	reserve := st.chunkSize
	if size >= 0 {
		reserve = min(reserve, size)
	}
	if err := s.acquire(ctx, reserve); err != nil {
		return fmt.Errorf("put %q: %w", h.GetKey(), err)
	}
	defer s.budget.Release(reserve)
	ct := h.GetContentType()
	if ct == "" {
		ct = "application/octet-stream"
	}
	req := store.PutRequest{Key: h.GetKey(), ContentType: ct, Metadata: h.GetMetadata(), Size: size, SHA256: h.GetSha256()}
	start := time.Now()
	obj, err := st.store.Put(ctx, req, &recvReader{stream: stream, s: s})
	s.stats.observe(opPut, start, err)
	if err != nil {
		s.noteError(err)
		return fmt.Errorf("put %q on strategy %q: %w", h.GetKey(), st.name, err)
	}
	return stream.SendAndClose(&dwv1.PutObjectResponse{Info: toProto(obj, st.name)})
}

// recvReader reads the data messages of a Put as an io.Reader.
type recvReader struct {
	stream dwv1.ObjectStore_PutServer
	s      *Service
	buf    []byte
	eof    bool
}

func (r *recvReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		msg, err := r.stream.Recv()
		if err == io.EOF {
			r.eof = true
			return 0, io.EOF
		}
		if err != nil {
			return 0, fmt.Errorf("receive data: %w", err)
		}
		if msg.GetHeader() != nil {
			return 0, fmt.Errorf("%w: a second header arrived after the data started", sdk.ErrInvalidArgument)
		}
		r.buf = msg.GetData()
		r.s.stats.bytesIn.Add(uint64(len(r.buf)))
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// acquire reserves n bytes of the buffer budget, counting the waits.
func (s *Service) acquire(ctx context.Context, n int64) error {
	if err := s.budget.Acquire(ctx, n); err != nil {
		return fmt.Errorf("buffer budget (max_buffer_bytes) is spent and the request ended while waiting: %w", err)
	}
	return nil
}

// Get streams an object: the header, then each piece as the strategy reads
// it. Each piece is reserved from the buffer budget while it is held.
func (s *Service) Get(req *dwv1.GetObjectRequest, stream dwv1.ObjectStore_GetServer) error {
	defer s.timeRequest(reqGet, req.GetStrategy(), time.Now())
	ctx := stream.Context()
	if err := store.ValidateKey(req.GetKey()); err != nil {
		return fmt.Errorf("get: %w", err)
	}
	length := int64(-1)
	if req.Length != nil {
		length = req.GetLength()
		if length < 0 {
			return fmt.Errorf("%w: get %q: length %d is negative", sdk.ErrInvalidArgument, req.GetKey(), length)
		}
	}
	if req.GetOffset() < 0 {
		return fmt.Errorf("%w: get %q: offset %d is negative", sdk.ErrInvalidArgument, req.GetKey(), req.GetOffset())
	}
	st, err := s.pick(req.GetStrategy())
	if err != nil {
		return fmt.Errorf("get %q: %w", req.GetKey(), err)
	}
	done := s.stats.streamStart(&s.stats.getStreams)
	defer done()
	start := time.Now()
	obj, off, n, r, err := st.store.Get(ctx, req.GetKey(), req.GetOffset(), length)
	s.stats.observe(opGet, start, err)
	if err != nil {
		s.noteError(err)
		return fmt.Errorf("get %q on strategy %q: %w", req.GetKey(), st.name, err)
	}
	defer r.Close()
	if err := stream.Send(&dwv1.GetObjectResponse{Part: &dwv1.GetObjectResponse_Header{Header: &dwv1.GetObjectHeader{
		Info: toProto(obj, st.name), Offset: off, Length: n,
	}}}); err != nil {
		return err
	}
	msg := &dwv1.GetObjectResponse{}
	data := &dwv1.GetObjectResponse_Data{}
	msg.Part = data
	var sent int64
	for {
		// Reserve the piece before reading it: at most a chunk, at most
		// what is left (a 4 KiB object reserves 4 KiB; the call that
		// only finds the end reserves nothing).
		reserve := min(st.chunkSize, n-sent)
		if err := s.acquire(ctx, reserve); err != nil {
			return fmt.Errorf("get %q: %w", req.GetKey(), err)
		}
		p, err := r.Next(ctx)
		if err == io.EOF {
			s.budget.Release(reserve)
			break
		}
		if err != nil {
			s.budget.Release(reserve)
			s.noteError(err)
			return fmt.Errorf("get %q on strategy %q: read at byte %d: %w", req.GetKey(), st.name, off+sent, err)
		}
		if extra := int64(len(p)) - reserve; extra > 0 {
			// An object written with a larger chunk_size than today's.
			if err := s.acquire(ctx, extra); err != nil {
				s.budget.Release(reserve)
				return fmt.Errorf("get %q: %w", req.GetKey(), err)
			}
			reserve += extra
		}
		data.Data = p
		err = stream.Send(msg)
		s.budget.Release(reserve)
		if err != nil {
			return err
		}
		sent += int64(len(p))
		s.stats.bytesOut.Add(uint64(len(p)))
	}
	if sent != n {
		return fmt.Errorf("get %q on strategy %q: served %d bytes of %d", req.GetKey(), st.name, sent, n)
	}
	return nil
}

// Stat returns an object's info.
func (s *Service) Stat(ctx context.Context, req *dwv1.StatObjectRequest) (*dwv1.StatObjectResponse, error) {
	defer s.timeRequest(reqStat, req.GetStrategy(), time.Now())
	if err := store.ValidateKey(req.GetKey()); err != nil {
		return nil, fmt.Errorf("stat: %w", err)
	}
	st, err := s.pick(req.GetStrategy())
	if err != nil {
		return nil, fmt.Errorf("stat %q: %w", req.GetKey(), err)
	}
	start := time.Now()
	obj, err := st.store.Stat(ctx, req.GetKey())
	s.stats.observe(opStat, start, err)
	if err != nil {
		s.noteError(err)
		return nil, fmt.Errorf("stat %q on strategy %q: %w", req.GetKey(), st.name, err)
	}
	return &dwv1.StatObjectResponse{Info: toProto(obj, st.name)}, nil
}

// Delete removes an object; a missing one is no error.
func (s *Service) Delete(ctx context.Context, req *dwv1.DeleteObjectRequest) (*dwv1.DeleteObjectResponse, error) {
	defer s.timeRequest(reqDelete, req.GetStrategy(), time.Now())
	if err := store.ValidateKey(req.GetKey()); err != nil {
		return nil, fmt.Errorf("delete: %w", err)
	}
	st, err := s.pick(req.GetStrategy())
	if err != nil {
		return nil, fmt.Errorf("delete %q: %w", req.GetKey(), err)
	}
	start := time.Now()
	existed, err := st.store.Delete(ctx, req.GetKey())
	s.stats.observe(opDelete, start, err)
	if err != nil {
		s.noteError(err)
		return nil, fmt.Errorf("delete %q on strategy %q: %w", req.GetKey(), st.name, err)
	}
	return &dwv1.DeleteObjectResponse{Existed: existed}, nil
}

func validatePrefix(p string) error {
	if len(p) > maxPrefixBytes {
		return fmt.Errorf("%w: prefix is %d bytes, at most %d allowed", sdk.ErrInvalidArgument, len(p), maxPrefixBytes)
	}
	if !utf8.ValidString(p) || strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%w: prefix must be UTF-8 without NUL", sdk.ErrInvalidArgument)
	}
	return nil
}

// List returns one page. The page size is limit, or default_page_size
// when 0, capped at max_page_size. A page token gives keyset pagination;
// offset skips matches (its cost grows with it); the two do not mix.
func (s *Service) List(ctx context.Context, req *dwv1.ListObjectsRequest) (*dwv1.ListObjectsResponse, error) {
	defer s.timeRequest(reqList, req.GetStrategy(), time.Now())
	l := s.currentLimits()
	if err := validatePrefix(req.GetPrefix()); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	limit := int(req.GetLimit())
	switch {
	case limit < 0:
		return nil, fmt.Errorf("%w: list: limit %d: a positive page size is required (0 means default_page_size %d; at most max_page_size %d)",
			sdk.ErrInvalidArgument, limit, l.DefaultPageSize, l.MaxPageSize)
	case limit == 0:
		limit = l.DefaultPageSize
	case limit > l.MaxPageSize:
		limit = l.MaxPageSize
	}
	if req.GetOffset() < 0 {
		return nil, fmt.Errorf("%w: list: offset %d is negative", sdk.ErrInvalidArgument, req.GetOffset())
	}
	if req.GetOffset() > 0 && req.GetPageToken() != "" {
		return nil, fmt.Errorf("%w: list: offset and page_token cannot be used together; the token already says where the next page starts", sdk.ErrInvalidArgument)
	}
	st, err := s.pick(req.GetStrategy())
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	q := pagetoken.Query{Strategy: st.name, Prefix: req.GetPrefix()}
	var after string
	if tok := req.GetPageToken(); tok != "" {
		if after, err = s.tokens.Decode(q, tok); err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
	}
	start := time.Now()
	items, err := st.store.List(ctx, store.ListQuery{Prefix: req.GetPrefix(), After: after, Offset: req.GetOffset(), Limit: limit + 1})
	s.stats.observe(opList, start, err)
	if err != nil {
		s.noteError(err)
		return nil, fmt.Errorf("list on strategy %q: %w", st.name, err)
	}
	resp := &dwv1.ListObjectsResponse{}
	if len(items) > limit {
		items = items[:limit]
		resp.HasMore = true
		resp.NextPageToken = s.tokens.Encode(q, items[len(items)-1].Key)
	}
	resp.Items = make([]*dwv1.ObjectInfo, len(items))
	for i, o := range items {
		resp.Items[i] = toProto(o, st.name)
	}
	if req.GetCount() {
		start := time.Now()
		n, err := st.store.Count(ctx, req.GetPrefix())
		s.stats.observe(opCount, start, err)
		if err != nil {
			s.noteError(err)
			return nil, fmt.Errorf("count on strategy %q: %w", st.name, err)
		}
		resp.TotalCount = &n
	}
	return resp, nil
}

// ListStream streams every match in key order, reading the database in
// keyset batches so that no query holds a snapshot for the whole stream
// and memory stays bounded by one batch. An object that exists for the
// whole stream is sent exactly once.
func (s *Service) ListStream(req *dwv1.ListObjectsStreamRequest, stream dwv1.ObjectStore_ListStreamServer) error {
	defer s.timeRequest(reqListStream, req.GetStrategy(), time.Now())
	ctx := stream.Context()
	if err := validatePrefix(req.GetPrefix()); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	st, err := s.pick(req.GetStrategy())
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	done := s.stats.streamStart(&s.stats.listStreams)
	defer done()
	after := ""
	for {
		start := time.Now()
		items, err := st.store.List(ctx, store.ListQuery{Prefix: req.GetPrefix(), After: after, Limit: streamBatch})
		s.stats.observe(opList, start, err)
		if err != nil {
			s.noteError(err)
			return fmt.Errorf("list on strategy %q after key %q: %w", st.name, after, err)
		}
		for _, o := range items {
			if err := stream.Send(toProto(o, st.name)); err != nil {
				return err
			}
		}
		if len(items) < streamBatch {
			return nil
		}
		after = items[len(items)-1].Key
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
