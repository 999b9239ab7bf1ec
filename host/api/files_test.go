package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// fakeFile is one file of fakeFileStore.
type fakeFile struct {
	info *dwv1.FileInfo
	data []byte
}

// fileCall is what fakeFileStore saw of one call.
type fileCall struct {
	method, path string
	prio         dwv1.Priority
	caller       string
}

// filePutRecord is what fakeFileStore saw of one Put.
type filePutRecord struct {
	header *dwv1.PutFileHeader
	body   fakeBody
}

// fakeFileStore is a FileStore over memory, following the contract of
// filestore.proto closely enough for the host's logic: files in a map,
// folders made by Put, Stat, Get, Delete and paginated List. The func
// fields, when set, replace one method.
type fakeFileStore struct {
	dwv1.UnimplementedFileStoreServer
	chunk int // Get data message size
	puts  chan filePutRecord

	PutFunc    func(dwv1.FileStore_PutServer) error
	GetFunc    func(*dwv1.GetFileRequest, dwv1.FileStore_GetServer) error
	StatFunc   func(*dwv1.StatFileRequest) (*dwv1.StatFileResponse, error)
	DeleteFunc func(*dwv1.DeleteFileRequest) (*dwv1.DeleteFileResponse, error)
	ListFunc   func(*dwv1.ListFilesRequest) (*dwv1.ListFilesResponse, error)

	mu      sync.Mutex
	files   map[string]*fakeFile
	dirs    map[string]bool
	calls   []fileCall
	version int64
}

var _ dwv1.FileStoreServer = (*fakeFileStore)(nil)

// fakeEpoch is the fake's clock: the n-th write is n seconds later.
var fakeEpoch = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)

func newFakeFileStore() *fakeFileStore {
	return &fakeFileStore{chunk: 64 << 10, puts: make(chan filePutRecord, 64), files: map[string]*fakeFile{}, dirs: map[string]bool{}}
}

func (f *fakeFileStore) record(ctx context.Context, method, p string, prio dwv1.Priority) {
	f.mu.Lock()
	f.calls = append(f.calls, fileCall{method: method, path: p, prio: prio, caller: sdk.Caller(ctx)})
	f.mu.Unlock()
}

func (f *fakeFileStore) allCalls() []fileCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeFileStore) lastCall() fileCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return fileCall{}
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeFileStore) file(p string) (*fakeFile, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.files[p]
	return o, ok
}

func dirInfo(p string) *dwv1.FileInfo {
	return &dwv1.FileInfo{Path: p, Mode: 0o755, ModifiedAt: timestamppb.New(fakeEpoch), IsDir: true, Etag: "dir"}
}

func (f *fakeFileStore) Put(stream dwv1.FileStore_PutServer) error {
	if f.PutFunc != nil {
		return f.PutFunc(stream)
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hdr := first.GetHeader()
	if hdr == nil {
		return fmt.Errorf("put: %w: first message is not a header", sdk.ErrInvalidArgument)
	}
	f.record(stream.Context(), "Put", hdr.GetPath(), hdr.GetPriority())
	body, err := receiveBody(func() ([]byte, error) { m, err := stream.Recv(); return m.GetData(), err }, true)
	if err != nil {
		return err
	}
	f.puts <- filePutRecord{header: hdr, body: body}
	if err := body.check(hdr.GetPath(), hdr.GetSize(), hdr.GetSha256()); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dirs[hdr.GetPath()] {
		return fmt.Errorf("put %q: %w: a folder", hdr.GetPath(), sdk.ErrInvalidArgument)
	}
	for p := hdr.GetPath(); strings.Contains(p, "/"); {
		p = p[:strings.LastIndexByte(p, '/')]
		f.dirs[p] = true
	}
	f.version++
	info := &dwv1.FileInfo{Path: hdr.GetPath(), Size: body.bytes, Mode: 0o644, IsDir: false,
		ModifiedAt: timestamppb.New(fakeEpoch.Add(time.Duration(f.version) * time.Second)), Etag: fmt.Sprintf("v%d-%s", f.version, body.sum[:8])}
	f.files[hdr.GetPath()] = &fakeFile{info: info, data: body.data}
	return stream.SendAndClose(&dwv1.PutFileResponse{Info: info, Sha256: body.sum})
}

func (f *fakeFileStore) Get(req *dwv1.GetFileRequest, stream dwv1.FileStore_GetServer) error {
	f.record(stream.Context(), "Get", req.GetPath(), req.GetPriority())
	if f.GetFunc != nil {
		return f.GetFunc(req, stream)
	}
	o, ok := f.file(req.GetPath())
	if !ok {
		if f.isDir(req.GetPath()) {
			return fmt.Errorf("file %q: %w: a folder; list it", req.GetPath(), sdk.ErrInvalidArgument)
		}
		return fmt.Errorf("file %q: %w", req.GetPath(), sdk.ErrNotFound)
	}
	return sendPart(fmt.Sprintf("file %q", req.GetPath()), o.data, req.GetOffset(), req.Length, f.chunk,
		func(off, n int64) error {
			return stream.Send(fileHeaderMsg(&dwv1.GetFileHeader{Info: o.info, Offset: off, Length: n}))
		},
		func(b []byte) error { return stream.Send(fileDataMsg(b)) })
}

func fileHeaderMsg(h *dwv1.GetFileHeader) *dwv1.GetFileResponse {
	return &dwv1.GetFileResponse{Part: &dwv1.GetFileResponse_Header{Header: h}}
}

func fileDataMsg(b []byte) *dwv1.GetFileResponse {
	return &dwv1.GetFileResponse{Part: &dwv1.GetFileResponse_Data{Data: b}}
}

func (f *fakeFileStore) isDir(p string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dirs[p]
}

func (f *fakeFileStore) Stat(ctx context.Context, req *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) {
	f.record(ctx, "Stat", req.GetPath(), req.GetPriority())
	if f.StatFunc != nil {
		return f.StatFunc(req)
	}
	if o, ok := f.file(req.GetPath()); ok {
		return &dwv1.StatFileResponse{Info: o.info}, nil
	}
	if f.isDir(req.GetPath()) {
		return &dwv1.StatFileResponse{Info: dirInfo(req.GetPath())}, nil
	}
	return nil, fmt.Errorf("file %q: %w", req.GetPath(), sdk.ErrNotFound)
}

// children returns the entries of folder dir ("" is the root) by name.
func (f *fakeFileStore) children(dir string) []*dwv1.FileInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	prefix := dir + "/"
	if dir == "" {
		prefix = ""
	}
	var out []*dwv1.FileInfo
	direct := func(p string) bool {
		rest, ok := strings.CutPrefix(p, prefix)
		return ok && rest != "" && !strings.Contains(rest, "/")
	}
	for p, o := range f.files {
		if direct(p) {
			out = append(out, o.info)
		}
	}
	for p := range f.dirs {
		if direct(p) {
			out = append(out, dirInfo(p))
		}
	}
	slices.SortFunc(out, func(a, b *dwv1.FileInfo) int { return strings.Compare(a.GetPath(), b.GetPath()) })
	return out
}

func (f *fakeFileStore) Delete(ctx context.Context, req *dwv1.DeleteFileRequest) (*dwv1.DeleteFileResponse, error) {
	f.record(ctx, "Delete", req.GetPath(), req.GetPriority())
	if f.DeleteFunc != nil {
		return f.DeleteFunc(req)
	}
	p := req.GetPath()
	if f.isDir(p) {
		if len(f.children(p)) > 0 {
			return nil, fmt.Errorf("delete %q: %w: the folder is not empty", p, sdk.ErrFailedPrecondition)
		}
		f.mu.Lock()
		delete(f.dirs, p)
		f.mu.Unlock()
		return &dwv1.DeleteFileResponse{Existed: true}, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.files[p]
	delete(f.files, p)
	return &dwv1.DeleteFileResponse{Existed: ok}, nil
}

func (f *fakeFileStore) List(ctx context.Context, req *dwv1.ListFilesRequest) (*dwv1.ListFilesResponse, error) {
	f.record(ctx, "List", req.GetPath(), req.GetPriority())
	if f.ListFunc != nil {
		return f.ListFunc(req)
	}
	dir := req.GetPath()
	if dir != "" && !f.isDir(dir) {
		if _, ok := f.file(dir); ok {
			return nil, fmt.Errorf("list %q: %w: a file", dir, sdk.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("folder %q: %w", dir, sdk.ErrNotFound)
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 3
	}
	after := ""
	if t := req.GetPageToken(); t != "" {
		raw, err := base64.RawURLEncoding.DecodeString(t)
		d, last, ok := strings.Cut(string(raw), "\x00")
		if err != nil || !ok || d != dir {
			return nil, fmt.Errorf("page token: %w: not a token of folder %q", sdk.ErrInvalidArgument, dir)
		}
		after = last
	}
	resp := &dwv1.ListFilesResponse{}
	resp.Items, resp.HasMore = pageAfter(f.children(dir), (*dwv1.FileInfo).GetPath, after, limit)
	if resp.HasMore {
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(dir + "\x00" + resp.Items[len(resp.Items)-1].GetPath()))
	}
	return resp, nil
}

// logEntry is one message a logger logged.
type logEntry struct {
	level hclog.Level
	msg   string
	attrs map[string]any
}

// logSink keeps every message of the logger it is registered with.
type logSink struct {
	mu      sync.Mutex
	entries []logEntry
}

func (l *logSink) Accept(_ string, level hclog.Level, msg string, args ...any) {
	e := logEntry{level: level, msg: msg, attrs: map[string]any{}}
	for i := 0; i+1 < len(args); i += 2 {
		e.attrs[fmt.Sprint(args[i])] = args[i+1]
	}
	l.mu.Lock()
	l.entries = append(l.entries, e)
	l.mu.Unlock()
}

// logged returns the messages at level or above.
func (l *logSink) logged(level hclog.Level) []logEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logEntry
	for _, e := range l.entries {
		if e.level >= level {
			out = append(out, e)
		}
	}
	return out
}

// fileEnv is the admin API over a fake file store.
type fileEnv struct {
	*apiEnv
	store *fakeFileStore
	logs  *logSink
}

func newFileEnv(t testing.TB) *fileEnv {
	t.Helper()
	store := newFakeFileStore()
	client := connectStore(t, func(s *grpc.Server) { dwv1.RegisterFileStoreServer(s, store) })
	logs := &logSink{}
	logger := hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Warn})
	logger.RegisterSink(logs)
	return &fileEnv{apiEnv: newAPIEnv(t, FilesSubsystem, client, logger), store: store, logs: logs}
}

// put stores body at the escaped path and returns the answer's JSON.
func (e *fileEnv) put(t testing.TB, path, body string, header http.Header) File {
	t.Helper()
	o, _ := callJSON[File](t, e.apiEnv, "PUT", path, body, header, 201)
	return o
}

// seed stores files directly in the fake.
func (e *fileEnv) seed(t testing.TB, files map[string]string) {
	t.Helper()
	for p, body := range files {
		e.put(t, "/v1/files/"+p, body, nil)
		<-e.store.puts
	}
}

func TestFileRoundTrip(t *testing.T) {
	e := newFileEnv(t)
	var big bytes.Buffer
	_, _ = io.Copy(&big, &patternReader{n: 3*putMessageBytes + 5})
	tests := []struct {
		name, path, want string // want: the path the plugin gets
		body             string
		chunked          bool
	}{
		{"empty", "/v1/files/empty", "empty", "", false},
		{"one byte", "/v1/files/a/b/c", "a/b/c", "x", false},
		{"small", "/v1/files/docs/read%20me.txt", "docs/read me.txt", "hello, files\n", false},
		{"unicode", "/v1/files/%E6%97%A5%E6%9C%AC/%C3%BC", "日本/ü", "ü", false},
		{"encoded slash", "/v1/files/x%2Fy", "x/y", "slash", false},
		{"double-encoded dots are a name", "/v1/files/%252e%252e", "%2e%2e", "literal", false},
		{"three dots are a name", "/v1/files/.../..a", ".../..a", "dots", false},
		{"multi-chunk", "/v1/files/big.bin", "big.bin", big.String(), false},
		{"multi-chunk chunked", "/v1/files/big-chunked.bin", "big-chunked.bin", big.String(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length
			}
			resp := e.request(t, "PUT", tt.path, body, nil)
			raw, _ := io.ReadAll(resp.Body)
			var o File
			if resp.StatusCode != 201 || json.Unmarshal(raw, &o) != nil {
				t.Fatalf("PUT: %d %s", resp.StatusCode, raw)
			}
			name := tt.want[strings.LastIndexByte(tt.want, '/')+1:]
			if o.Path != tt.want || o.Name != name || o.Size != int64(len(tt.body)) || o.SHA256 != sha(tt.body) || o.Mode != "0644" || o.IsDir {
				t.Errorf("PUT answered %+v", o)
			}
			if _, err := time.Parse(time.RFC3339Nano, o.ModifiedAt); err != nil {
				t.Errorf("modified_at %q: %v", o.ModifiedAt, err)
			}
			stored, ok := e.store.file(tt.want)
			if !ok {
				t.Fatalf("plugin did not get %q; last call %+v", tt.want, e.store.lastCall())
			}
			if etag := resp.Header.Get("ETag"); etag != `"`+stored.info.GetEtag()+`"` {
				t.Errorf("PUT ETag %q", etag)
			}
			rec := <-e.store.puts
			wantSize := int64(len(tt.body))
			if tt.chunked {
				wantSize = -1
			}
			if rec.header.GetSize() != wantSize || rec.body.bytes != int64(len(tt.body)) || rec.body.maxMsg > putMessageBytes {
				t.Errorf("plugin got size %d, %d bytes in messages of at most %d", rec.header.GetSize(), rec.body.bytes, rec.body.maxMsg)
			}
			if len(tt.body) > putMessageBytes && rec.body.messages < len(tt.body)/putMessageBytes {
				t.Errorf("%d bytes in %d messages: not streamed", rec.body.bytes, rec.body.messages)
			}

			r := e.call(t, "GET", tt.path, "", nil)
			if r.code != 200 || r.body != tt.body {
				t.Fatalf("GET: %d, %d bytes", r.code, len(r.body))
			}
			h := r.header
			if h.Get("Content-Length") != strconv.Itoa(len(tt.body)) || h.Get("ETag") != `"`+stored.info.GetEtag()+`"` ||
				h.Get("Accept-Ranges") != "bytes" || h.Get("Content-Type") != "application/octet-stream" ||
				h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-DW-Mode") != "0644" || h.Get("X-DW-Is-Dir") != "false" ||
				h.Get("Last-Modified") != stored.info.GetModifiedAt().AsTime().Format(http.TimeFormat) {
				t.Errorf("GET headers %v", h)
			}
			r = e.call(t, "HEAD", tt.path, "", nil)
			if r.code != 200 || r.body != "" || r.header.Get("Content-Length") != strconv.Itoa(len(tt.body)) || r.header.Get("ETag") != h.Get("ETag") {
				t.Errorf("HEAD: %d %v", r.code, r.header)
			}
			if r := e.call(t, "DELETE", tt.path, "", nil); r.code != 204 {
				t.Errorf("DELETE: %d %s", r.code, r.body)
			}
			if _, ok := e.store.file(tt.want); ok {
				t.Error("still there after DELETE")
			}
			wantError(t, e.call(t, "GET", tt.path, "", nil), 404, "not found")
			// Deleting what is not there succeeds.
			if r := e.call(t, "DELETE", tt.path, "", nil); r.code != 204 {
				t.Errorf("second DELETE: %d %s", r.code, r.body)
			}
		})
	}
}

func TestFilePutHeaders(t *testing.T) {
	e := newFileEnv(t)
	body := "checked"
	o := e.put(t, "/v1/files/sum", body, http.Header{"X-DW-Content-SHA256": {sha(body)}})
	if rec := <-e.store.puts; rec.header.GetSha256() != sha(body) || o.SHA256 != sha(body) {
		t.Errorf("plugin got sha256 %q", rec.header.GetSha256())
	}
	wantError(t, e.call(t, "PUT", "/v1/files/sum", body, http.Header{"X-DW-Content-SHA256": {sha("other")}}), 400, "sha256 mismatch")
	<-e.store.puts
	before := len(e.store.allCalls())
	for _, tt := range []struct {
		header http.Header
		want   string
	}{
		{http.Header{"X-DW-Content-SHA256": {"ABC"}}, "64 lowercase hex digits"},
		{http.Header{"X-DW-Content-SHA256": {sha("a"), sha("a")}}, "given 2 times"},
		{http.Header{"Content-Range": {"bytes 0-1/2"}}, "partial PUT"},
	} {
		wantError(t, e.call(t, "PUT", "/v1/files/sum", body, tt.header), 400, tt.want)
	}
	if calls := e.store.allCalls(); len(calls) != before {
		t.Errorf("the plugin was called for bad headers: %+v", calls[before:])
	}
}

func TestFileRange(t *testing.T) {
	e := newFileEnv(t)
	const body = "0123456789"
	e.seed(t, map[string]string{"r": body, "empty": ""})
	tests := []struct {
		name, path, rng string
		code            int
		want, cr        string // body (206) and Content-Range
	}{
		{"first-last", "r", "bytes=2-4", 206, "234", "bytes 2-4/10"},
		{"first-", "r", "bytes=7-", 206, "789", "bytes 7-9/10"},
		{"last past the end", "r", "bytes=8-100", 206, "89", "bytes 8-9/10"},
		{"suffix", "r", "bytes=-3", 206, "789", "bytes 7-9/10"},
		{"suffix longer than the file", "r", "bytes=-50", 206, body, "bytes 0-9/10"},
		{"whole", "r", "bytes=0-", 206, body, "bytes 0-9/10"},
		{"huge numbers", "r", "bytes=0-99999999999999999999999", 206, body, "bytes 0-9/10"},
		{"first past the end", "r", "bytes=10-", 416, "", "bytes */10"},
		{"suffix of 0", "r", "bytes=-0", 416, "", "bytes */10"},
		{"empty file", "empty", "bytes=0-", 416, "", "bytes */0"},
		{"empty file suffix", "empty", "bytes=-1", 416, "", "bytes */0"},
		{"several ranges", "r", "bytes=0-1,3-4", 400, "several ranges", ""},
		{"unit", "r", "items=0-1", 400, "only bytes", ""},
		{"backwards", "r", "bytes=5-1", 400, "comes before", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.call(t, "GET", "/v1/files/"+tt.path, "", http.Header{"Range": {tt.rng}, "X-DW-Priority": {"low"}})
			if r.code != tt.code {
				t.Fatalf("%d, want %d: %s", r.code, tt.code, r.body)
			}
			switch tt.code {
			case 206:
				if r.body != tt.want || r.header.Get("Content-Length") != strconv.Itoa(len(tt.want)) {
					t.Errorf("body %q, Content-Length %s", r.body, r.header.Get("Content-Length"))
				}
			case 400:
				wantError(t, r, 400, tt.want)
			case 416:
				wantError(t, r, 416)
			}
			if got := r.header.Get("Content-Range"); got != tt.cr {
				t.Errorf("Content-Range %q, want %q", got, tt.cr)
			}
			for _, c := range e.store.allCalls() {
				if c.prio != dwv1.Priority_PRIORITY_LOW && c.method != "Put" {
					t.Errorf("call %+v without the request's priority", c)
				}
			}
		})
	}
	// A suffix range of a folder is the folder's 400, not a 416.
	e.seed(t, map[string]string{"d/x": "x"})
	wantError(t, e.call(t, "GET", "/v1/files/d", "", http.Header{"Range": {"bytes=-1"}}), 400, "is a folder", "GET /v1/files/d/")
}

func TestFileConditionalRequests(t *testing.T) {
	e := newFileEnv(t)
	e.seed(t, map[string]string{"c": "conditional"})
	stored, _ := e.store.file("c")
	etag := `"` + stored.info.GetEtag() + `"`
	lastMod := stored.info.GetModifiedAt().AsTime().Format(http.TimeFormat)
	tests := []struct {
		name   string
		method string
		header http.Header
		code   int
		body   string
	}{
		{"If-None-Match matches", "GET", http.Header{"If-None-Match": {etag}}, 304, ""},
		{"If-None-Match weak matches", "GET", http.Header{"If-None-Match": {`"x", W/` + etag}}, 304, ""},
		{"If-None-Match star", "GET", http.Header{"If-None-Match": {"*"}}, 304, ""},
		{"If-None-Match other", "GET", http.Header{"If-None-Match": {`"other"`}}, 200, "conditional"},
		{"HEAD If-None-Match", "HEAD", http.Header{"If-None-Match": {etag}}, 304, ""},
		{"If-Range etag", "GET", http.Header{"Range": {"bytes=0-3"}, "If-Range": {etag}}, 206, "cond"},
		{"If-Range other etag", "GET", http.Header{"Range": {"bytes=0-3"}, "If-Range": {`"other"`}}, 200, "conditional"},
		{"If-Range weak", "GET", http.Header{"Range": {"bytes=0-3"}, "If-Range": {"W/" + etag}}, 200, "conditional"},
		{"If-Range date", "GET", http.Header{"Range": {"bytes=0-3"}, "If-Range": {lastMod}}, 206, "cond"},
		{"If-Range other date", "GET", http.Header{"Range": {"bytes=0-3"}, "If-Range": {"Mon, 02 Jan 2006 15:04:05 GMT"}}, 200, "conditional"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.call(t, tt.method, "/v1/files/c", "", tt.header)
			if r.code != tt.code || r.body != tt.body {
				t.Fatalf("%d %q, want %d %q", r.code, r.body, tt.code, tt.body)
			}
			if r.header.Get("ETag") != etag || r.header.Get("Last-Modified") != lastMod {
				t.Errorf("validators %q %q", r.header.Get("ETag"), r.header.Get("Last-Modified"))
			}
		})
	}
}

// TestFileETags checks that an etag that is not a valid entity tag is
// left out, and that then only "*" matches.
func TestFileETags(t *testing.T) {
	e := newFileEnv(t)
	for _, tt := range []struct{ etag, want string }{
		{"abc-1", `"abc-1"`}, {"", ""}, {`a"b`, ""}, {"a b", ""}, {"a\x01", ""}, {"ü", `"ü"`},
	} {
		e.store.StatFunc = func(req *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) {
			return &dwv1.StatFileResponse{Info: &dwv1.FileInfo{Path: req.GetPath(), Size: 1, Etag: tt.etag, ModifiedAt: timestamppb.New(fakeEpoch)}}, nil
		}
		r := e.call(t, "HEAD", "/v1/files/x", "", nil)
		if r.code != 200 || r.header.Get("ETag") != tt.want {
			t.Errorf("etag %q: %d, ETag %q, want %q", tt.etag, r.code, r.header.Get("ETag"), tt.want)
		}
		if r := e.call(t, "HEAD", "/v1/files/x", "", http.Header{"If-None-Match": {`""`}}); r.code != 200 {
			t.Errorf("etag %q: If-None-Match \"\" gave %d", tt.etag, r.code)
		}
	}
}

func TestFileListing(t *testing.T) {
	e := newFileEnv(t)
	e.seed(t, map[string]string{"a/1": "1", "a/2": "22", "a/3": "333", "a/4": "4444", "a/5": "55555", "a/sub/x": "x", "top": "t"})

	// Pages of a folder, in name order, folders included.
	var got []File
	token := ""
	for page := 0; ; page++ {
		u := "/v1/files/a/?limit=2"
		if token != "" {
			u += "&page_token=" + token
		}
		r := e.call(t, "GET", u, "", nil)
		var l FileList
		if r.code != 200 || json.Unmarshal([]byte(r.body), &l) != nil {
			t.Fatalf("page %d: %d %s", page, r.code, r.body)
		}
		if len(l.Items) > 2 || l.HasMore != (l.NextPageToken != "") {
			t.Fatalf("page %d: %s", page, r.body)
		}
		got = append(got, l.Items...)
		if !l.HasMore {
			break
		}
		token = l.NextPageToken
	}
	var paths []string
	for _, it := range got {
		paths = append(paths, it.Path)
	}
	if want := []string{"a/1", "a/2", "a/3", "a/4", "a/5", "a/sub"}; !slices.Equal(paths, want) {
		t.Errorf("listed %v, want %v", paths, want)
	}
	if sub := got[5]; !sub.IsDir || sub.Mode != "0755" || sub.Name != "sub" || sub.Size != 0 {
		t.Errorf("folder entry %+v", sub)
	}
	if f := got[2]; f.IsDir || f.Mode != "0644" || f.Name != "3" || f.Size != 3 || f.SHA256 != "" {
		t.Errorf("file entry %+v", f)
	}
	if c := e.store.lastCall(); c.method != "List" || c.path != "a" || c.prio != dwv1.Priority_PRIORITY_NORMAL || c.caller != "alice" {
		t.Errorf("plugin call %+v", c)
	}
	// The exact JSON shape.
	r := e.call(t, "GET", "/v1/files/a/sub/", "", nil)
	var shape map[string]any
	if err := json.Unmarshal([]byte(r.body), &shape); err != nil || r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	item := shape["items"].([]any)[0].(map[string]any)
	var keys []string
	for k := range item {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"is_dir", "mode", "modified_at", "name", "path", "size"}) || shape["has_more"] != false || shape["next_page_token"] != "" {
		t.Errorf("listing shape %s", r.body)
	}

	// The root, three ways.
	for _, u := range []string{"/v1/files", "/v1/files/", "/v1/files?limit=10", "/v1/files/?limit=10"} {
		r := e.call(t, "GET", u, "", nil)
		var l FileList
		if r.code != 200 || json.Unmarshal([]byte(r.body), &l) != nil {
			t.Fatalf("%s: %d %s", u, r.code, r.body)
		}
		if c := e.store.lastCall(); c.method != "List" || c.path != "" {
			t.Errorf("%s: plugin call %+v", u, c)
		}
	}
	if r := e.call(t, "HEAD", "/v1/files/a/", "", nil); r.code != 200 || r.body != "" {
		t.Errorf("HEAD listing: %d %q", r.code, r.body)
	}

	// A folder without the slash: what the plugin makes of it.
	wantError(t, e.call(t, "GET", "/v1/files/a", "", nil), 400, "a folder")
	r = e.call(t, "HEAD", "/v1/files/a", "", nil)
	if r.code != 200 || r.header.Get("X-DW-Is-Dir") != "true" || r.header.Get("X-DW-Mode") != "0755" {
		t.Errorf("HEAD of a folder: %d %v", r.code, r.header)
	}
	wantError(t, e.call(t, "DELETE", "/v1/files/a", "", nil), 409, "not empty")
	wantError(t, e.call(t, "GET", "/v1/files/top/", "", nil), 400, "a file")
	wantError(t, e.call(t, "GET", "/v1/files/nope/", "", nil), 404, `list folder "nope"`)
	wantError(t, e.call(t, "GET", "/v1/files/a/?page_token="+base64.RawURLEncoding.EncodeToString([]byte("b\x00x")), "", nil), 400, "not a token")

	// Query checks before any plugin call.
	before := len(e.store.allCalls())
	for _, tt := range []struct{ query, want string }{
		{"limit=0", "from 1 to"},
		{"limit=-1", "from 1 to"},
		{"limit=abc", "from 1 to"},
		{"limit=1&limit=2", "given 2 times"},
		{"prefix=a", `"prefix"`},
		{"page_token=%01", "not a token of this API"},
		{"a=%zz", "query"},
	} {
		wantError(t, e.call(t, "GET", "/v1/files/a/?"+tt.query, "", nil), 400, tt.want)
		wantError(t, e.call(t, "GET", "/v1/files?"+tt.query, "", nil), 400, tt.want)
	}
	if calls := e.store.allCalls(); len(calls) != before {
		t.Errorf("the plugin was called for bad queries: %+v", calls[before:])
	}
}

func TestFileRouting(t *testing.T) {
	e := newFileEnv(t)
	for _, tt := range []struct{ method, path, allow string }{
		{"POST", "/v1/files/x", "DELETE, GET, HEAD, PUT"},
		{"PATCH", "/v1/files/x", "DELETE, GET, HEAD, PUT"},
		{"PUT", "/v1/files/x/", "GET, HEAD"},
		{"DELETE", "/v1/files/", "GET, HEAD"},
		{"PUT", "/v1/files", "GET, HEAD"},
	} {
		r := e.serve(t, httptest.NewRequest(tt.method, tt.path, strings.NewReader("x")))
		wantError(t, r, 405, "allowed: "+tt.allow)
		if r.header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: Allow %q", tt.method, tt.path, r.header.Get("Allow"))
		}
	}
	wantError(t, e.serve(t, httptest.NewRequest("GET", "/v1/filesx", nil)), 404, "no route")
	wantError(t, e.serve(t, httptest.NewRequest("GET", "/v1/files/x?strategy=a", nil)), 400, `"strategy"`, "allowed: none")
	if c := e.store.lastCall(); c.method != "" {
		t.Errorf("the plugin was called: %+v", c)
	}
	// Routes are measured under their patterns.
	e.seed(t, map[string]string{"m": "m"})
	_ = e.call(t, "GET", "/v1/files/m", "", nil)
	_ = e.call(t, "GET", "/v1/files/", "", nil)
	for _, want := range []string{`code="201",route="PUT /v1/files/{path...}"`, `code="200",route="GET /v1/files/{path...}"`, `code="200",route="GET /v1/files"`} {
		if !measured(t, e.server.registry, want) {
			t.Errorf("no metric for %s", want)
		}
	}
}

func TestFilePriority(t *testing.T) {
	e := newFileEnv(t)
	e.seed(t, map[string]string{"p/f": "data"})
	valid := []struct {
		header []string // nil: absent
		want   dwv1.Priority
	}{
		{nil, dwv1.Priority_PRIORITY_NORMAL},
		{[]string{"high"}, dwv1.Priority_PRIORITY_HIGH},
		{[]string{"HIGH"}, dwv1.Priority_PRIORITY_HIGH},
		{[]string{"normal"}, dwv1.Priority_PRIORITY_NORMAL},
		{[]string{"Low"}, dwv1.Priority_PRIORITY_LOW},
	}
	requests := []struct{ method, path, body, plugin string }{
		{"PUT", "/v1/files/p/f", "data", "Put"},
		{"GET", "/v1/files/p/f", "", "Get"},
		{"HEAD", "/v1/files/p/f", "", "Stat"},
		{"GET", "/v1/files/p/", "", "List"},
		{"GET", "/v1/files", "", "List"},
		{"DELETE", "/v1/files/p/gone", "", "Delete"},
	}
	for _, v := range valid {
		for _, rq := range requests {
			r := e.call(t, rq.method, rq.path, rq.body, http.Header{"X-Dw-Priority": v.header})
			if r.code/100 != 2 {
				t.Fatalf("%s %s with %q: %d %s", rq.method, rq.path, v.header, r.code, r.body)
			}
			if rq.method == "PUT" {
				<-e.store.puts
			}
			if c := e.store.lastCall(); c.method != rq.plugin || c.prio != v.want {
				t.Errorf("%s %s with %q: plugin saw %+v, want %s", rq.method, rq.path, v.header, c, v.want)
			}
		}
	}
	before := len(e.store.allCalls())
	for _, bad := range [][]string{{"urgent"}, {""}, {" high"}, {"high", "low"}, {"1"}, {"PRIORITY_HIGH"}, {"hıgh"}} {
		for _, rq := range requests {
			r := e.serve(t, func() *http.Request {
				req := httptest.NewRequest(rq.method, rq.path, strings.NewReader(rq.body))
				req.Header["X-Dw-Priority"] = bad
				return req
			}())
			wantError(t, r, 400, "X-DW-Priority", "high, normal or low")
		}
	}
	if calls := e.store.allCalls(); len(calls) != before {
		t.Errorf("the plugin was called for bad priorities: %+v", calls[before:])
	}
}

// traversalPaths are escaped paths after /v1/files/ that name something
// outside the root, or no valid path at all.
var traversalPaths = []string{
	"..", "../etc/passwd", "a/../../etc/passwd", "a/..", "./a", "a/./b", ".", "a/.",
	"%2e%2e", "%2E%2E/etc/passwd", ".%2e/x", "%2e./x", "a/%2e%2e/%2e%2e/x", "%2e%2e%2fetc%2fpasswd", "..%2F..%2Fetc",
	"a%2F..%2F..%2Fb", "%2e", "a%2f%2e",
	"a//b", "a%2F%2Fb", "a/%2Fb", "%2F", "%2Fetc%2Fpasswd", "/etc/passwd", "//etc/passwd", "%2F%2Fserver%2Fshare",
	"a%2F", "a/b%2F",
	"..%5Cwindows", "a%5C..%5Cb", "%5C%5Cserver%5Cshare", "C:%5Cwindows", "a%5Cb",
	"a%00b", "%00", "..%00/x", "a%0Ab", "a%0D%0Ab", "%09", "a%1Fb", "a%7Fb", "a%C2%85b", "a%C2%9Fb",
	"%C0%AE%C0%AE/x", "%C0%AF", "%E0%80%AE", "%FF", "a%FEb", "%ED%A0%80",
	strings.Repeat("n", 256), strings.Repeat("a/", 2048) + "b",
}

func TestFileTraversalBattery(t *testing.T) {
	e := newFileEnv(t)
	type attempt struct{ method, path string }
	var attempts []attempt
	for _, p := range traversalPaths {
		for _, m := range []string{"PUT", "GET", "HEAD", "DELETE"} {
			attempts = append(attempts, attempt{m, "/v1/files/" + p})
		}
		// As a folder to list.
		attempts = append(attempts, attempt{"GET", "/v1/files/" + p + "/"})
	}
	attempts = append(attempts, attempt{"GET", "/v1/files//"}, attempt{"GET", "/v1/files///"}, attempt{"GET", "/v1/files/a//"})
	for _, a := range attempts {
		r := e.serve(t, httptest.NewRequest(a.method, a.path, strings.NewReader("x")))
		if r.code != 400 {
			t.Errorf("%s %s: %d, want 400", a.method, a.path, r.code)
			continue
		}
		if a.method != "HEAD" {
			wantError(t, r, 400, "file path")
		}
	}
	// Over the wire, as a client sends them.
	for _, p := range []string{"../etc/passwd", "%2e%2e/x", "a/../../b", "a//b", "%2Fetc", "a%5Cb", "a%00b", "%C0%AE%C0%AE"} {
		wantError(t, e.call(t, "GET", "/v1/files/"+p, "", nil), 400, "file path")
		wantError(t, e.call(t, "PUT", "/v1/files/"+p, "x", nil), 400, "file path")
	}
	if calls := e.store.allCalls(); len(calls) != 0 {
		t.Fatalf("refused paths reached the plugin: %+v", calls[:min(len(calls), 5)])
	}
	// Each refusal is logged at warn with the caller and the path sent.
	logged := e.logs.logged(hclog.Warn)
	if len(logged) < len(attempts) {
		t.Fatalf("%d messages logged for %d refusals", len(logged), len(attempts))
	}
	l := logged[0]
	if l.level != hclog.Warn || l.msg != "file path refused" || l.attrs["caller"] != "alice" || l.attrs["path"] != strconv.Quote("/v1/files/..") {
		t.Errorf("logged %+v", l)
	}

	// Names that merely look odd stay inside the root and reach the plugin.
	for _, tt := range []struct{ escaped, want string }{
		{"%252e%252e", "%2e%2e"}, {"...", "..."}, {"..a", "..a"}, {"a..", "a.."}, {".hidden", ".hidden"},
		{"%E2%80%A5", "‥"}, {"%EF%BC%8E%EF%BC%8E", "．．"}, {"~", "~"}, {"a%3Bb", "a;b"}, {"..%252f", "..%2f"},
	} {
		e.put(t, "/v1/files/"+tt.escaped, "ok", nil)
		<-e.store.puts
		if c := e.store.lastCall(); c.path != tt.want {
			t.Errorf("%s reached the plugin as %q, want %q", tt.escaped, c.path, tt.want)
		}
	}
}

func TestFileStoreErrors(t *testing.T) {
	e := newFileEnv(t)
	e.seed(t, map[string]string{"f": "data"})
	tests := []struct {
		name  string
		err   error
		code  int
		ecode string
		retry string
	}{
		{"backpressure", sdk.WithRetryAfter(fmt.Errorf("queue full: %w", sdk.ErrBackpressure), 3*time.Second), 429, "backpressure", "3"},
		{"quota", sdk.WithRetryAfter(fmt.Errorf("caller alice over 1 MiB/s: %w", sdk.ErrQuotaExceeded), 1500*time.Millisecond), 429, "quota_exceeded", "2"},
		{"quota without a hint", fmt.Errorf("over quota: %w", sdk.ErrQuotaExceeded), 429, "quota_exceeded", "1"},
		{"outside the root", fmt.Errorf("path %q: %w: a symlink leads outside the root", "f", sdk.ErrInvalidArgument), 400, "invalid_argument", ""},
		{"permission", fmt.Errorf("open: %w", sdk.ErrPermissionDenied), 403, "permission_denied", ""},
		{"unavailable", fmt.Errorf("disk gone: %w", sdk.ErrUnavailable), 503, "unavailable", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fail := tt.err
			e.store.PutFunc = func(s dwv1.FileStore_PutServer) error { _, _ = s.Recv(); return fail }
			e.store.GetFunc = func(*dwv1.GetFileRequest, dwv1.FileStore_GetServer) error { return fail }
			e.store.StatFunc = func(*dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) { return nil, fail }
			e.store.DeleteFunc = func(*dwv1.DeleteFileRequest) (*dwv1.DeleteFileResponse, error) { return nil, fail }
			e.store.ListFunc = func(*dwv1.ListFilesRequest) (*dwv1.ListFilesResponse, error) { return nil, fail }
			t.Cleanup(func() {
				e.store.PutFunc, e.store.GetFunc, e.store.StatFunc, e.store.DeleteFunc, e.store.ListFunc = nil, nil, nil, nil, nil
			})
			for _, rq := range []struct{ method, path, body, rng string }{
				{"PUT", "/v1/files/f", "new", ""}, {"GET", "/v1/files/f", "", ""}, {"GET", "/v1/files/f", "", "bytes=-2"},
				{"HEAD", "/v1/files/f", "", ""}, {"DELETE", "/v1/files/f", "", ""}, {"GET", "/v1/files/", "", ""},
			} {
				h := http.Header{}
				if rq.rng != "" {
					h.Set("Range", rq.rng)
				}
				r := e.call(t, rq.method, rq.path, rq.body, h)
				if r.code != tt.code || r.header.Get("Retry-After") != tt.retry {
					t.Errorf("%s %s: %d Retry-After %q, want %d %q", rq.method, rq.path, r.code, r.header.Get("Retry-After"), tt.code, tt.retry)
				}
				if rq.method != "HEAD" {
					if got := errorOf(t, r); got.Code != tt.ecode {
						t.Errorf("%s %s: code %q, want %q", rq.method, rq.path, got.Code, tt.ecode)
					}
				}
			}
		})
	}
}

func TestFileGetStreamErrors(t *testing.T) {
	e := newFileEnv(t)
	info := &dwv1.FileInfo{Path: "k", Size: 100, Etag: "e", ModifiedAt: timestamppb.New(fakeEpoch)}
	var header *dwv1.GetFileHeader
	get := func(steps []int) func(*dwv1.GetFileRequest, dwv1.FileStore_GetServer) error {
		return func(_ *dwv1.GetFileRequest, s dwv1.FileStore_GetServer) error {
			return playGet(steps, func() error { return s.Send(fileHeaderMsg(header)) }, func(b []byte) error { return s.Send(fileDataMsg(b)) })
		}
	}
	header = &dwv1.GetFileHeader{Info: info, Length: 100}
	for _, tt := range getStreamCases {
		t.Run(tt.name, func(t *testing.T) {
			e.store.GetFunc = get(tt.steps)
			checkGetStream(t, e.apiEnv, "/v1/files/k", tt.code)
		})
	}
	var aborted int
	for _, l := range e.logs.logged(hclog.Warn) {
		if l.msg == "file download aborted after its headers were sent" && l.attrs["path"] == "k" && l.attrs["caller"] == "alice" {
			aborted++
		}
	}
	if aborted != 4 {
		t.Errorf("%d aborted downloads logged, want 4", aborted)
	}

	// The whole file in two messages; a header without the info.
	e.store.GetFunc = get([]int{stepHeader, 60, 40})
	r := e.call(t, "GET", "/v1/files/k", "", nil)
	if r.code != 200 || r.body != strings.Repeat("d", 100) || r.header.Get("ETag") != `"e"` {
		t.Errorf("%d, %d bytes, %v", r.code, len(r.body), r.header)
	}
	header = &dwv1.GetFileHeader{Length: 1}
	wantError(t, e.call(t, "GET", "/v1/files/k", "", nil), 500, "no header first")
}

// TestFileStreamLayout checks what the shared codec relies on: the header
// of a FileStore.Get message is field 1 and its data field 2, and a header
// decodes whole.
func TestFileStreamLayout(t *testing.T) {
	fields := (&dwv1.GetFileResponse{}).ProtoReflect().Descriptor().Fields()
	if fields.ByNumber(getHeaderField).Name() != "header" || fields.ByNumber(getDataField).Name() != "data" {
		t.Fatalf("GetFileResponse fields changed: %v", fields)
	}
	hdr, _ := proto.Marshal(fileHeaderMsg(&dwv1.GetFileHeader{Length: 9, Info: &dwv1.FileInfo{Path: "p"}}))
	var d streamData[dwv1.GetFileResponse, *dwv1.GetFileResponse]
	if err := (objectCodec{}).Unmarshal(split(hdr, 3), &d); err != nil || d.Other.GetHeader().GetInfo().GetPath() != "p" || d.Data != nil {
		t.Errorf("header: %v %+v", err, d)
	}
	payload, _ := proto.Marshal(fileDataMsg([]byte("abc")))
	if err := (objectCodec{}).Unmarshal(split(payload, 2), &d); err != nil || string(d.Data) != "abc" || d.Other != nil {
		t.Errorf("data: %v %+v", err, d)
	}
}

func TestFileAuthAndCaller(t *testing.T) {
	e := newFileEnv(t)
	for _, tc := range []struct{ method, path string }{
		{"PUT", "/v1/files/k"}, {"GET", "/v1/files/k"}, {"HEAD", "/v1/files/k"}, {"DELETE", "/v1/files/k"},
		{"GET", "/v1/files"}, {"GET", "/v1/files/d/"}, {"GET", "/v1/files/../x"}, {"POST", "/v1/files/k"},
	} {
		for _, auth := range []string{"Bearer wrong", ""} {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader("x"))
			req.Header.Set("Authorization", auth)
			w := httptest.NewRecorder()
			e.handler.ServeHTTP(w, req)
			if w.Code != 401 {
				t.Errorf("%s %s with %q: %d", tc.method, tc.path, auth, w.Code)
			}
		}
	}
	if c := e.store.allCalls(); len(c) != 0 {
		t.Errorf("the plugin was called without authentication: %+v", c)
	}
	e.seed(t, map[string]string{"d/k": "v"})
	for _, rq := range []struct{ method, path string }{{"GET", "/v1/files/d/k"}, {"HEAD", "/v1/files/d/k"}, {"GET", "/v1/files/d/"}, {"DELETE", "/v1/files/d/k"}} {
		_ = e.call(t, rq.method, rq.path, "", nil)
	}
	for _, c := range e.store.allCalls() {
		if c.caller != "alice" {
			t.Errorf("call %+v: caller %q, want alice", c, c.caller)
		}
	}
}

func TestFilePluginDown(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("plugin filesystem: %w", sdk.ErrUnavailable),
		fmt.Errorf("no plugin filesystem: %w", sdk.ErrNotFound),
	} {
		s, _ := newTestServer(t, &fakePlugins{ClientFunc: func(string) (*pluginhost.Client, error) { return nil, err }}, nil)
		for _, rq := range []struct{ method, path string }{{"GET", "/v1/files/k"}, {"PUT", "/v1/files/k"}, {"DELETE", "/v1/files/k"}, {"GET", "/v1/files"}, {"GET", "/v1/files/d/"}} {
			wantError(t, do(t, s.Handler(), rq.method, rq.path, "", "x"), 503, "file store", "filesystem")
		}
		// Request errors come first.
		wantError(t, do(t, s.Handler(), "GET", "/v1/files/../x", "", ""), 400, "file path")
	}
}

func BenchmarkFileGet(b *testing.B) {
	e := newFileEnv(b)
	e.store.chunk = 1 << 20
	var body bytes.Buffer
	_, _ = io.Copy(&body, &patternReader{n: 16 << 20})
	e.put(b, "/v1/files/bench", body.String(), nil)
	<-e.store.puts
	b.SetBytes(int64(body.Len()))
	b.ResetTimer()
	for range b.N {
		resp := e.request(b, "GET", "/v1/files/bench", nil, nil)
		if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != int64(body.Len()) {
			b.Fatalf("read %d: %v", n, err)
		}
		resp.Body.Close()
	}
}
