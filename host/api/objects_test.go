package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
	"github.com/datawarehouse/dw/sdk/v6/sdktest"
)

// fakeObject is one object of fakeObjectStore.
type fakeObject struct {
	info *dwv1.ObjectInfo
	data []byte
}

// putRecord is what fakeObjectStore saw of one Put call.
type putRecord struct {
	header   *dwv1.PutObjectHeader
	messages int   // data messages
	maxMsg   int   // largest data message
	bytes    int64 // data received
	err      error // how the client's stream ended: nil for a normal close
	caller   string
}

// fakeObjectStore is an ObjectStore over memory, following the contract of
// objectstore.proto closely enough for the host's logic. The func fields,
// when set, replace one method.
type fakeObjectStore struct {
	dwv1.UnimplementedObjectStoreServer
	chunk    int  // Get data message size
	hashOnly bool // Put keeps size and hash, not the data
	puts     chan putRecord

	GetFunc        func(*dwv1.GetObjectRequest, dwv1.ObjectStore_GetServer) error
	ListStreamFunc func(*dwv1.ListObjectsStreamRequest, dwv1.ObjectStore_ListStreamServer) error

	mu      sync.Mutex
	objects map[string]*fakeObject
	calls   []string // "Method key strategy caller"
}

var _ dwv1.ObjectStoreServer = (*fakeObjectStore)(nil)

func newFakeObjectStore() *fakeObjectStore {
	return &fakeObjectStore{chunk: 64 << 10, puts: make(chan putRecord, 64), objects: map[string]*fakeObject{}}
}

// nextPut returns the record of the next Put of key.
func (f *fakeObjectStore) nextPut(t testing.TB, key string) putRecord {
	t.Helper()
	for rec := range f.puts {
		if rec.header.GetKey() == key {
			return rec
		}
	}
	t.Fatal("unreachable")
	return putRecord{}
}

func (f *fakeObjectStore) record(ctx context.Context, method, key, strategy string) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("%s %s %s %s", method, key, strategy, sdk.Caller(ctx)))
	f.mu.Unlock()
}

func (f *fakeObjectStore) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeObjectStore) object(key string) (*fakeObject, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.objects[key]
	return o, ok
}

func (f *fakeObjectStore) Put(stream dwv1.ObjectStore_PutServer) error {
	rec := putRecord{caller: sdk.Caller(stream.Context())}
	defer func() {
		select {
		case f.puts <- rec:
		default:
		}
	}()
	first, err := stream.Recv()
	if err != nil {
		rec.err = err
		return err
	}
	hdr := first.GetHeader()
	if hdr == nil {
		return fmt.Errorf("put: %w: first message is not a header", sdk.ErrInvalidArgument)
	}
	rec.header = hdr
	f.record(stream.Context(), "Put", hdr.GetKey(), hdr.GetStrategy())
	body, err := receiveBody(func() ([]byte, error) { m, err := stream.Recv(); return m.GetData(), err }, !f.hashOnly)
	rec.messages, rec.maxMsg, rec.bytes = body.messages, body.maxMsg, body.bytes
	if err != nil {
		rec.err = err
		return err
	}
	if err := body.check(hdr.GetKey(), hdr.GetSize(), hdr.GetSha256()); err != nil {
		return err
	}
	sum, data := body.sum, body.data
	strategy := hdr.GetStrategy()
	if strategy == "" {
		strategy = "primary"
	}
	now := timestamppb.Now()
	f.mu.Lock()
	created := now
	if old, ok := f.objects[hdr.GetKey()]; ok {
		created = old.info.GetCreatedAt()
	}
	info := &dwv1.ObjectInfo{Key: hdr.GetKey(), Size: rec.bytes, Sha256: sum, ContentType: hdr.GetContentType(),
		Metadata: hdr.GetMetadata(), CreatedAt: created, ModifiedAt: now, Strategy: strategy}
	f.objects[hdr.GetKey()] = &fakeObject{info: info, data: data}
	f.mu.Unlock()
	return stream.SendAndClose(&dwv1.PutObjectResponse{Info: info})
}

func (f *fakeObjectStore) Get(req *dwv1.GetObjectRequest, stream dwv1.ObjectStore_GetServer) error {
	f.record(stream.Context(), "Get", req.GetKey(), req.GetStrategy())
	if f.GetFunc != nil {
		return f.GetFunc(req, stream)
	}
	o, ok := f.object(req.GetKey())
	if !ok {
		return fmt.Errorf("object %q: %w", req.GetKey(), sdk.ErrNotFound)
	}
	return sendPart(fmt.Sprintf("object %q", req.GetKey()), o.data, req.GetOffset(), req.Length, f.chunk,
		func(off, n int64) error {
			return stream.Send(&dwv1.GetObjectResponse{Part: &dwv1.GetObjectResponse_Header{
				Header: &dwv1.GetObjectHeader{Info: o.info, Offset: off, Length: n}}})
		},
		func(b []byte) error {
			return stream.Send(&dwv1.GetObjectResponse{Part: &dwv1.GetObjectResponse_Data{Data: b}})
		})
}

// fakeBody is what a fake store received of a Put's data.
type fakeBody struct {
	messages int   // data messages
	maxMsg   int   // largest data message
	bytes    int64 // data received
	sum      string
	data     []byte // nil unless kept
}

// receiveBody receives a Put's data messages (recv) until the client
// closes its side, keeping the data if keep.
func receiveBody(recv func() ([]byte, error), keep bool) (fakeBody, error) {
	var b fakeBody
	h := sha256.New()
	var data bytes.Buffer
	for {
		d, err := recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return b, err
		}
		b.messages++
		b.maxMsg = max(b.maxMsg, len(d))
		b.bytes += int64(len(d))
		h.Write(d)
		if keep {
			data.Write(d)
		}
	}
	b.sum, b.data = hex.EncodeToString(h.Sum(nil)), data.Bytes()
	return b, nil
}

// check compares the body of name with the size (-1: unknown) and SHA-256
// (empty: none) its Put announced, as the contract asks.
func (b fakeBody) check(name string, size int64, sum string) error {
	if size >= 0 && size != b.bytes {
		return fmt.Errorf("put %q: %w: announced %d bytes, got %d", name, sdk.ErrInvalidArgument, size, b.bytes)
	}
	if sum != "" && sum != b.sum {
		return fmt.Errorf("put %q: %w: sha256 mismatch", name, sdk.ErrInvalidArgument)
	}
	return nil
}

// sendPart serves a fake store's Get of data (what names it in errors):
// an offset outside it is OUT_OF_RANGE; else header gets the offset and
// length served, and send the data in messages of chunk bytes.
func sendPart(what string, data []byte, off int64, length *int64, chunk int, header func(off, n int64) error, send func([]byte) error) error {
	size := int64(len(data))
	if off < 0 || off > size || off == size && size > 0 {
		return fmt.Errorf("%s: offset %d: %w: size %d", what, off, sdk.ErrOutOfRange, size)
	}
	n := size - off
	if length != nil && *length < n {
		n = *length
	}
	if err := header(off, n); err != nil {
		return err
	}
	for p := off; p < off+n; p += int64(chunk) {
		if err := send(data[p:min(p+int64(chunk), off+n)]); err != nil {
			return err
		}
	}
	return nil
}

// pageAfter is the page of items (sorted by key) after the key after, of
// at most limit items; more reports items beyond it.
func pageAfter[T any](items []T, key func(T) string, after string, limit int) (page []T, more bool) {
	i, _ := slices.BinarySearchFunc(items, after, func(o T, k string) int { return strings.Compare(key(o), k) })
	for i < len(items) && key(items[i]) <= after {
		i++
	}
	if items = items[i:]; len(items) > limit {
		return items[:limit], true
	}
	return items, false
}

func (f *fakeObjectStore) Stat(ctx context.Context, req *dwv1.StatObjectRequest) (*dwv1.StatObjectResponse, error) {
	f.record(ctx, "Stat", req.GetKey(), req.GetStrategy())
	o, ok := f.object(req.GetKey())
	if !ok {
		return nil, fmt.Errorf("object %q: %w", req.GetKey(), sdk.ErrNotFound)
	}
	return &dwv1.StatObjectResponse{Info: o.info}, nil
}

func (f *fakeObjectStore) Delete(ctx context.Context, req *dwv1.DeleteObjectRequest) (*dwv1.DeleteObjectResponse, error) {
	f.record(ctx, "Delete", req.GetKey(), req.GetStrategy())
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.objects[req.GetKey()]
	delete(f.objects, req.GetKey())
	return &dwv1.DeleteObjectResponse{Existed: ok}, nil
}

// matching returns the infos under prefix in key order.
func (f *fakeObjectStore) matching(prefix string) []*dwv1.ObjectInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*dwv1.ObjectInfo
	for k, o := range f.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, o.info)
		}
	}
	slices.SortFunc(out, func(a, b *dwv1.ObjectInfo) int { return strings.Compare(a.GetKey(), b.GetKey()) })
	return out
}

func (f *fakeObjectStore) List(ctx context.Context, req *dwv1.ListObjectsRequest) (*dwv1.ListObjectsResponse, error) {
	f.record(ctx, "List", req.GetPrefix(), req.GetStrategy())
	all := f.matching(req.GetPrefix())
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 3
	}
	limit = min(limit, 1000)
	after, err := base64.RawURLEncoding.DecodeString(req.GetPageToken())
	if err != nil {
		return nil, fmt.Errorf("page token: %w: tampered", sdk.ErrInvalidArgument)
	}
	items, _ := pageAfter(all, (*dwv1.ObjectInfo).GetKey, string(after), len(all))
	items = items[min(int(req.GetOffset()), len(items)):]
	resp := &dwv1.ListObjectsResponse{}
	if len(items) > limit {
		items = items[:limit]
		resp.HasMore = true
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(items[len(items)-1].GetKey()))
	}
	resp.Items = items
	if req.GetCount() {
		n := int64(len(all))
		resp.TotalCount = &n
	}
	return resp, nil
}

func (f *fakeObjectStore) ListStream(req *dwv1.ListObjectsStreamRequest, stream dwv1.ObjectStore_ListStreamServer) error {
	f.record(stream.Context(), "ListStream", req.GetPrefix(), req.GetStrategy())
	if f.ListStreamFunc != nil {
		return f.ListStreamFunc(req, stream)
	}
	for _, info := range f.matching(req.GetPrefix()) {
		if err := stream.Send(info); err != nil {
			return err
		}
	}
	return nil
}

// connectStore serves what register adds in process, as sdk.Serve serves
// a plugin's services (errors become statuses, panics are recovered), and
// returns the host-side client over a connection made as the host makes it
// (pluginhost.DialOptions).
func connectStore(t testing.TB, register func(*grpc.Server)) *pluginhost.Client {
	t.Helper()
	return pluginhost.NewClient(sdktest.ServeInProcess(t, register), nil)
}

// connectObjectStore serves store over a real gRPC connection and returns
// the host-side client.
func connectObjectStore(t testing.TB, store dwv1.ObjectStoreServer) *pluginhost.Client {
	t.Helper()
	return connectStore(t, func(s *grpc.Server) { dwv1.RegisterObjectStoreServer(s, store) })
}

// apiEnv is the admin API with one plugin client for subsystem, reachable
// in process (handler) and over a real HTTP server (url).
type apiEnv struct {
	server  *Server
	handler http.Handler
	http    *httptest.Server
	token   string
}

// objectEnv is the admin API over a fake object store.
type objectEnv struct {
	*apiEnv
	store *fakeObjectStore
}

const objectToken = "tok-alice-0123456789"

func newObjectEnv(t testing.TB) *objectEnv {
	t.Helper()
	store := newFakeObjectStore()
	return &objectEnv{apiEnv: newAPIEnv(t, ObjectsSubsystem, connectObjectStore(t, store), nil), store: store}
}

// newAPIEnv serves the admin API, with the token objectToken for "alice",
// logging to logger (nil: nowhere), with client as the plugin of
// subsystem.
func newAPIEnv(t testing.TB, subsystem string, client *pluginhost.Client, logger hclog.Logger) *apiEnv {
	t.Helper()
	p := &fakePlugins{ClientFunc: func(name string) (*pluginhost.Client, error) {
		if name != subsystem {
			return nil, fmt.Errorf("plugin %s: %w", name, sdk.ErrNotFound)
		}
		return client, nil
	}}
	s, err := New(Options{Plugins: p, Credentials: adminTokens(map[string]string{objectToken: "alice"}), Registry: prometheus.NewRegistry(),
		Version: "1.2.3", ScrapeTimeout: 100 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		srv.Client().CloseIdleConnections()
		srv.Close()
	})
	return &apiEnv{server: s, handler: s.Handler(), http: srv, token: objectToken}
}

// request sends one request to the real HTTP server; path goes on the wire
// as written (no cleaning, no re-escaping).
func (e *apiEnv) request(t testing.TB, method, path string, body io.Reader, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// call is request with the whole answer read.
func (e *apiEnv) call(t testing.TB, method, path, body string, header http.Header) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	resp := e.request(t, method, path, rd, header)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

// serve runs req through the handler in process: for headers and paths a
// real client would refuse to send.
func (e *apiEnv) serve(t testing.TB, req *http.Request) response {
	t.Helper()
	if req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, req)
	return response{code: w.Code, header: w.Header(), body: w.Body.String()}
}

// callJSON sends a request whose answer must be code and JSON.
func callJSON[T any](t testing.TB, e *apiEnv, method, path, body string, header http.Header, code int) (T, response) {
	t.Helper()
	var v T
	r := e.call(t, method, path, body, header)
	if r.code != code {
		t.Fatalf("%s %s: %d %s", method, path, r.code, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("%s %s: %v: %s", method, path, err, r.body)
	}
	return v, r
}

// put stores body at the escaped path and returns the object JSON.
func (e *objectEnv) put(t testing.TB, path, body string, header http.Header) Object {
	t.Helper()
	o, r := callJSON[Object](t, e.apiEnv, "PUT", path, body, header, 200)
	if r.header.Get("ETag") != `"`+o.SHA256+`"` {
		t.Errorf("PUT %s: ETag %q, sha256 %q", path, r.header.Get("ETag"), o.SHA256)
	}
	return o
}

func wantError(t testing.TB, r response, code int, contains ...string) {
	t.Helper()
	e := errorOf(t, r)
	if r.code != code {
		t.Errorf("status %d, want %d: %s", r.code, code, r.body)
	}
	for _, c := range contains {
		if !strings.Contains(e.Message, c) {
			t.Errorf("message %q does not contain %q", e.Message, c)
		}
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestObjectKeysSurviveTheRoundTrip(t *testing.T) {
	e := newObjectEnv(t)
	tests := []struct{ key, path string }{
		{"a//b", "/v1/objects/a//b"},
		{"x/../y", "/v1/objects/x/../y"},
		{"../up", "/v1/objects/../up"},
		{".", "/v1/objects/."},
		{"./.", "/v1/objects/./."},
		{"/leading", "/v1/objects//leading"},
		{"trailing/", "/v1/objects/trailing/"},
		{"a/b", "/v1/objects/a%2Fb"},
		{"a?b", "/v1/objects/a%3Fb"},
		{"a#b", "/v1/objects/a%23b"},
		{"100%", "/v1/objects/100%25"},
		{"%2F", "/v1/objects/%252F"},
		{"with space", "/v1/objects/with%20space"},
		{"a+b", "/v1/objects/a+b"},
		{"日本/ü", "/v1/objects/" + url.PathEscape("日本/ü")},
		{"emoji😀", "/v1/objects/emoji%F0%9F%98%80"},
		{strings.Repeat("k", 1024), "/v1/objects/" + strings.Repeat("k", 1024)},
	}
	for _, tt := range tests {
		t.Run(tt.path[:min(len(tt.path), 40)], func(t *testing.T) {
			body := "content of " + tt.key
			o := e.put(t, tt.path, body, nil)
			if o.Key != tt.key || o.Size != int64(len(body)) || o.SHA256 != sha(body) {
				t.Errorf("PUT answered %+v", o)
			}
			if _, ok := e.store.object(tt.key); !ok {
				t.Fatalf("plugin did not get key %q; calls: %s", tt.key, e.store.lastCall())
			}
			r := e.call(t, "GET", tt.path, "", nil)
			if r.code != 200 || r.body != body {
				t.Errorf("GET: %d %q", r.code, r.body)
			}
			if r := e.call(t, "HEAD", tt.path, "", nil); r.code != 200 || r.header.Get("Content-Length") != strconv.Itoa(len(body)) {
				t.Errorf("HEAD: %d %v", r.code, r.header)
			}
			r = e.call(t, "GET", "/v1/objects?prefix="+url.QueryEscape(tt.key)+"&limit=1000", "", nil)
			var l ObjectList
			if err := json.Unmarshal([]byte(r.body), &l); err != nil || r.code != 200 {
				t.Fatalf("list: %d %s", r.code, r.body)
			}
			if len(l.Items) == 0 || l.Items[0].Key != tt.key {
				t.Errorf("list with the key as prefix: %s", r.body)
			}
			if r := e.call(t, "DELETE", tt.path, "", nil); r.code != 204 {
				t.Errorf("DELETE: %d %s", r.code, r.body)
			}
			if _, ok := e.store.object(tt.key); ok {
				t.Errorf("still there after DELETE")
			}
		})
	}
}

func TestObjectKeyRules(t *testing.T) {
	e := newObjectEnv(t)
	long := strings.Repeat("k", 1025)
	tests := []struct {
		name, path string
		want       []string
	}{
		{"empty", "/v1/objects/", []string{"object key is empty", "GET /v1/objects"}},
		{"too long", "/v1/objects/" + long, []string{"1025 bytes", "1 to 1024 bytes"}},
		{"too long when decoded", "/v1/objects/" + strings.Repeat("%C3%BC", 513), []string{"1026 bytes"}},
		{"invalid UTF-8", "/v1/objects/a%FFb", []string{"not valid UTF-8"}},
		{"overlong UTF-8", "/v1/objects/%C0%AF", []string{"not valid UTF-8"}},
		{"surrogate", "/v1/objects/%ED%A0%80", []string{"not valid UTF-8"}},
		{"NUL", "/v1/objects/a%00b", []string{"contains NUL"}},
		{"NUL alone", "/v1/objects/%00", []string{"contains NUL"}},
	}
	for _, tt := range tests {
		for _, method := range []string{"PUT", "GET", "HEAD", "DELETE"} {
			t.Run(tt.name+" "+method, func(t *testing.T) {
				body := ""
				if method == "PUT" {
					body = "x"
				}
				r := e.serve(t, httptest.NewRequest(method, tt.path, strings.NewReader(body)))
				wantError(t, r, 400, tt.want...)
			})
		}
	}
	// A client cannot send bad percent-encoding (the server refuses to
	// parse it), but the parser must not trust that.
	if _, err := parseObjectKey("a%zzb"); !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "percent-encoding") {
		t.Errorf("bad escape: %v", err)
	}
	if calls := e.store.lastCall(); calls != "" {
		t.Errorf("the plugin was called for bad keys: %s", calls)
	}
	// Over the wire too.
	wantError(t, e.call(t, "GET", "/v1/objects/a%FF", "", nil), 400, "not valid UTF-8")
}

func TestObjectRouting(t *testing.T) {
	e := newObjectEnv(t)
	r := e.serve(t, httptest.NewRequest("POST", "/v1/objects/x", nil))
	wantError(t, r, 405, "allowed: DELETE, GET, HEAD, PUT")
	if r.header.Get("Allow") != "DELETE, GET, HEAD, PUT" {
		t.Errorf("Allow %q", r.header.Get("Allow"))
	}
	r = e.serve(t, httptest.NewRequest("PUT", "/v1/objects", strings.NewReader("x")))
	wantError(t, r, 405, "allowed: GET, HEAD")
	r = e.serve(t, httptest.NewRequest("GET", "/v1/objectsx", nil))
	wantError(t, r, 404, "no route")
	// Other routes keep the ServeMux's cleaning.
	r = e.serve(t, httptest.NewRequest("GET", "/v1//objects/x", nil))
	if r.code/100 != 3 {
		t.Errorf("unclean non-object path: %d", r.code)
	}
	// Query parameters of object routes: only strategy, once.
	wantError(t, e.serve(t, httptest.NewRequest("GET", "/v1/objects/x?stratgy=a", nil)), 400, `"stratgy"`, "allowed: strategy")
	wantError(t, e.serve(t, httptest.NewRequest("GET", "/v1/objects/x?strategy=a&strategy=b", nil)), 400, "given 2 times")
	wantError(t, e.serve(t, httptest.NewRequest("GET", "/v1/objects/x?strategy=a%01", nil)), 400, "control characters")
	wantError(t, e.serve(t, httptest.NewRequest("GET", "/v1/objects/x?strategy="+strings.Repeat("s", 256), nil)), 400, "at most 255")
	wantError(t, e.serve(t, httptest.NewRequest("GET", "/v1/objects/x?a=%zz", nil)), 400, "query")

	// The strategy and the caller reach the plugin.
	e.put(t, "/v1/objects/s?strategy=secondary", "x", nil)
	if c := e.store.lastCall(); c != "Put s secondary alice" {
		t.Errorf("plugin call %q", c)
	}
	_ = e.call(t, "GET", "/v1/objects/s?strategy=secondary", "", nil)
	if c := e.store.lastCall(); c != "Get s secondary alice" {
		t.Errorf("plugin call %q", c)
	}

	// Routes are measured under their patterns.
	for _, route := range []string{"PUT /v1/objects/{key...}", "GET /v1/objects/{key...}"} {
		if !measured(t, e.server.registry, `code="200",route="`+route+`"`) {
			t.Errorf("no metric for %s", route)
		}
	}
	if !measured(t, e.server.registry, `code="405",route="unmatched"`) {
		t.Errorf("no metric for the 405")
	}
}

// measured reports whether reg has a request duration with labels,
// waiting for it up to 10 s: the server observes a request after its
// answer is out, so a client can be quicker.
func measured(t testing.TB, reg prometheus.Gatherer, labels string) bool {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if hasPrefix(gathered(t, reg), `dw_http_request_duration_seconds{`+labels+`}`) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func TestObjectAuth(t *testing.T) {
	e := newObjectEnv(t)
	for _, tc := range []struct{ method, path string }{
		{"PUT", "/v1/objects/k"}, {"GET", "/v1/objects/k"}, {"HEAD", "/v1/objects/k"},
		{"DELETE", "/v1/objects/k"}, {"GET", "/v1/objects"}, {"GET", "/v1/objects?stream=true"},
		{"GET", "/v1/objects/a//b"}, {"POST", "/v1/objects/k"},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer wrong")
		if r := e.serve(t, req); r.code != 401 {
			t.Errorf("%s %s with a wrong token: %d", tc.method, tc.path, r.code)
		}
		req = httptest.NewRequest(tc.method, tc.path, strings.NewReader("x"))
		req.Header.Set("Authorization", "")
		w := httptest.NewRecorder()
		e.handler.ServeHTTP(w, req)
		if w.Code != 401 {
			t.Errorf("%s %s without a token: %d", tc.method, tc.path, w.Code)
		}
	}
	if c := e.store.lastCall(); c != "" {
		t.Errorf("the plugin was called without authentication: %s", c)
	}
}

func TestObjectPluginDown(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("plugin dbstorage: %w", sdk.ErrUnavailable),
		fmt.Errorf("no plugin dbstorage: %w", sdk.ErrNotFound),
	} {
		s, _ := newTestServer(t, &fakePlugins{ClientFunc: func(string) (*pluginhost.Client, error) { return nil, err }}, nil)
		for _, path := range []string{"/v1/objects/k", "/v1/objects", "/v1/objects?stream=true"} {
			r := do(t, s.Handler(), "GET", path, "", "")
			wantError(t, r, 503, "dbstorage")
		}
	}
}

func TestObjectPutHeaders(t *testing.T) {
	e := newObjectEnv(t)
	meta := func(n int) http.Header {
		h := http.Header{}
		for i := range n {
			h.Set(fmt.Sprintf("X-DW-Meta-m%d", i), "v")
		}
		return h
	}
	tests := []struct {
		name   string
		header http.Header
		want   []string
	}{
		{"content type too long", http.Header{"Content-Type": {strings.Repeat("t", 256)}}, []string{"Content-Type", "at most 255 bytes"}},
		{"content type control", http.Header{"Content-Type": {"text/plain\x01"}}, []string{"control characters"}},
		{"content type invalid UTF-8", http.Header{"Content-Type": {"text/\xff"}}, []string{"UTF-8"}},
		{"content type twice", http.Header{"Content-Type": {"a/b", "c/d"}}, []string{"given 2 times"}},
		{"65 metadata", meta(65), []string{"more than 64 X-DW-Meta-*"}},
		{"1000 metadata", meta(1000), []string{"more than 64"}},
		{"metadata name bad char", http.Header{"X-Dw-Meta-A.b": {"v"}}, []string{`bad name "a.b"`, "a-z, 0-9"}},
		{"metadata name empty", http.Header{"X-Dw-Meta-": {"v"}}, []string{`bad name ""`}},
		{"metadata name too long", http.Header{"X-Dw-Meta-" + strings.Repeat("n", 129): {"v"}}, []string{"bad name", "1 to 128"}},
		{"metadata name non-ASCII", http.Header{"X-Dw-Meta-Ü": {"v"}}, []string{"bad name"}},
		{"metadata twice", http.Header{"X-Dw-Meta-A": {"1", "2"}}, []string{"X-DW-Meta-a", "more than once"}},
		{"metadata twice by case", http.Header{"X-Dw-Meta-A": {"1"}, "x-dw-meta-a": {"2"}}, []string{"more than once"}},
		{"metadata too big", http.Header{"X-Dw-Meta-A": {strings.Repeat("v", 4096)}, "X-Dw-Meta-B": {strings.Repeat("v", 4096)}}, []string{"exceed 8192 bytes"}},
		{"metadata value invalid UTF-8", http.Header{"X-Dw-Meta-A": {"\xff"}}, []string{"not valid UTF-8"}},
		{"sha uppercase", http.Header{"X-Dw-Content-Sha256": {strings.ToUpper(sha("x"))}}, []string{"64 lowercase hex"}},
		{"sha short", http.Header{"X-Dw-Content-Sha256": {sha("x")[:63]}}, []string{"64 lowercase hex"}},
		{"sha empty", http.Header{"X-Dw-Content-Sha256": {""}}, []string{"64 lowercase hex"}},
		{"sha twice", http.Header{"X-Dw-Content-Sha256": {sha("x"), sha("x")}}, []string{"given 2 times"}},
		{"partial put", http.Header{"Content-Range": {"bytes 0-0/1"}}, []string{"partial PUT"}},
		{"sha mismatch (plugin)", http.Header{"X-Dw-Content-Sha256": {sha("y")}}, []string{"sha256 mismatch"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("PUT", "/v1/objects/k", strings.NewReader("x"))
			for k, v := range tt.header {
				req.Header[k] = v
			}
			wantError(t, e.serve(t, req), 400, tt.want...)
		})
	}
	if _, ok := e.store.object("k"); ok {
		t.Fatal("a rejected PUT stored the object")
	}

	// The limits themselves are allowed (64 entries, 8 KiB), and metadata
	// round-trips.
	h := meta(62)
	h.Set("X-DW-Meta-Under_Score-1", "Mixed Case ü")
	total := len("big")
	for k, v := range h {
		total += len(k) - len("X-Dw-Meta-") + len(v[0])
	}
	h.Set("X-DW-Meta-Big", strings.Repeat("v", 8192-total))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-DW-Content-SHA256", sha("body"))
	o := e.put(t, "/v1/objects/meta", "body", h)
	if len(o.Metadata) != 64 || o.Metadata["under_score-1"] != "Mixed Case ü" || o.Metadata["m0"] != "v" || o.ContentType != "text/plain; charset=utf-8" {
		t.Errorf("object %+v", o)
	}
	r := e.call(t, "GET", "/v1/objects/meta", "", nil)
	if r.header.Get("X-DW-Meta-Under_Score-1") != "Mixed Case ü" || r.header.Get("X-Dw-Meta-M5") != "v" || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("GET headers %v", r.header)
	}
	// No Content-Type: the default.
	if o := e.put(t, "/v1/objects/plain", "x", nil); o.ContentType != "application/octet-stream" {
		t.Errorf("default content type %q", o.ContentType)
	}
	// The announced size reaches the plugin; a chunked body announces -1.
	if rec := e.store.nextPut(t, "meta"); rec.header.GetSize() != 4 {
		t.Errorf("put header %v", rec.header)
	}
	resp := e.request(t, "PUT", "/v1/objects/chunked", io.MultiReader(strings.NewReader("ab"), strings.NewReader("cd")), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("chunked PUT: %d", resp.StatusCode)
	}
	if rec := e.store.nextPut(t, "chunked"); rec.header.GetSize() != -1 || rec.bytes != 4 {
		t.Errorf("chunked put: %+v", rec)
	}
}

func TestObjectJSON(t *testing.T) {
	e := newObjectEnv(t)
	o := e.put(t, "/v1/objects/doc", "hello", http.Header{"X-Dw-Meta-Owner": {"alice"}})
	r := e.call(t, "GET", "/v1/objects?prefix=doc", "", nil)
	var raw struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.body), &raw); err != nil || len(raw.Items) != 1 {
		t.Fatalf("%s", r.body)
	}
	got := raw.Items[0]
	for _, k := range []string{"key", "size", "sha256", "content_type", "metadata", "created_at", "modified_at", "strategy"} {
		if _, ok := got[k]; !ok {
			t.Errorf("object JSON has no %s: %v", k, got)
		}
	}
	if len(got) != 8 {
		t.Errorf("object JSON has extra fields: %v", got)
	}
	for _, ts := range []string{o.CreatedAt, o.ModifiedAt} {
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.HasSuffix(ts, "Z") {
			t.Errorf("time %q: %v", ts, err)
		}
	}
	stored, _ := e.store.object("doc")
	if o.ModifiedAt != stored.info.GetModifiedAt().AsTime().UTC().Format(time.RFC3339Nano) {
		t.Errorf("modified_at %s loses precision", o.ModifiedAt)
	}
	// An object without metadata has {} (not null).
	e.put(t, "/v1/objects/bare", "", nil)
	if r := e.call(t, "GET", "/v1/objects?prefix=bare", "", nil); !strings.Contains(r.body, `"metadata":{}`) {
		t.Errorf("bare object: %s", r.body)
	}
}

func TestObjectGetAndHead(t *testing.T) {
	e := newObjectEnv(t)
	o := e.put(t, "/v1/objects/g", "0123456789", http.Header{"Content-Type": {"text/x"}, "X-Dw-Meta-Color": {"blue"}})
	stored, _ := e.store.object("g")
	for _, method := range []string{"GET", "HEAD"} {
		r := e.call(t, method, "/v1/objects/g", "", nil)
		h := r.header
		want := map[string]string{
			"Content-Type":        "text/x",
			"Content-Length":      "10",
			"Etag":                `"` + o.SHA256 + `"`,
			"Last-Modified":       stored.info.GetModifiedAt().AsTime().UTC().Format(http.TimeFormat),
			"Accept-Ranges":       "bytes",
			"X-Dw-Content-Sha256": o.SHA256,
			"X-Dw-Strategy":       "primary",
			"X-Dw-Created-At":     o.CreatedAt,
			"X-Dw-Modified-At":    o.ModifiedAt,
			"X-Dw-Meta-Color":     "blue",
		}
		for k, v := range want {
			if h.Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", method, k, h.Get(k), v)
			}
		}
		if r.code != 200 || (method == "GET") != (r.body == "0123456789") {
			t.Errorf("%s: %d %q", method, r.code, r.body)
		}
		// If-None-Match with the ETag: 304.
		r = e.call(t, method, "/v1/objects/g", "", http.Header{"If-None-Match": {`"nope", W/"` + o.SHA256 + `"`}})
		if r.code != 304 || r.body != "" || r.header.Get("ETag") != `"`+o.SHA256+`"` {
			t.Errorf("%s If-None-Match: %d %q %v", method, r.code, r.body, r.header)
		}
		if r = e.call(t, method, "/v1/objects/g", "", http.Header{"If-None-Match": {`"other"`}}); r.code != 200 {
			t.Errorf("%s If-None-Match other: %d", method, r.code)
		}
		r = e.call(t, method, "/v1/objects/missing", "", nil)
		if r.code != 404 {
			t.Errorf("%s missing: %d", method, r.code)
		}
	}
	wantError(t, e.call(t, "GET", "/v1/objects/missing", "", nil), 404, `"missing"`)
	// DELETE is idempotent.
	for range 2 {
		if r := e.call(t, "DELETE", "/v1/objects/g", "", nil); r.code != 204 || r.body != "" {
			t.Errorf("DELETE: %d %q", r.code, r.body)
		}
	}
}

func TestObjectRange(t *testing.T) {
	e := newObjectEnv(t)
	e.store.chunk = 3 // several data messages per range
	e.put(t, "/v1/objects/r", "0123456789", nil)
	e.put(t, "/v1/objects/empty", "", nil)
	tests := []struct {
		name, key string
		ranges    []string
		code      int
		body      string
		cr        string // Content-Range
		msg       string // error message part
	}{
		{"first-last", "r", []string{"bytes=0-3"}, 206, "0123", "bytes 0-3/10", ""},
		{"one byte", "r", []string{"bytes=9-9"}, 206, "9", "bytes 9-9/10", ""},
		{"first-", "r", []string{"bytes=5-"}, 206, "56789", "bytes 5-9/10", ""},
		{"last past the end", "r", []string{"bytes=8-100"}, 206, "89", "bytes 8-9/10", ""},
		{"last huge", "r", []string{"bytes=2-99999999999999999999999"}, 206, "23456789", "bytes 2-9/10", ""},
		{"suffix", "r", []string{"bytes=-3"}, 206, "789", "bytes 7-9/10", ""},
		{"suffix longer", "r", []string{"bytes=-20"}, 206, "0123456789", "bytes 0-9/10", ""},
		{"unit case", "r", []string{"BYTES=1-2"}, 206, "12", "bytes 1-2/10", ""},
		{"spaces", "r", []string{" bytes = 1-2 "}, 206, "12", "bytes 1-2/10", ""},
		{"first at size", "r", []string{"bytes=10-"}, 416, "", "bytes */10", ""},
		{"first past size", "r", []string{"bytes=11-20"}, 416, "", "bytes */10", ""},
		{"first huge", "r", []string{"bytes=99999999999999999999-"}, 416, "", "bytes */10", ""},
		{"suffix zero", "r", []string{"bytes=-0"}, 416, "", "bytes */10", ""},
		{"empty suffix", "empty", []string{"bytes=-5"}, 416, "", "bytes */0", ""},
		{"empty first-", "empty", []string{"bytes=0-"}, 416, "", "bytes */0", ""},
		{"empty first-last", "empty", []string{"bytes=0-0"}, 416, "", "bytes */0", ""},
		{"empty whole", "empty", nil, 200, "", "", ""},
		{"no range", "r", nil, 200, "0123456789", "", ""},
		{"multiple", "r", []string{"bytes=0-1,3-4"}, 400, "", "", "several ranges"},
		{"trailing comma", "r", []string{"bytes=0-1,"}, 400, "", "", "several ranges"},
		{"two headers", "r", []string{"bytes=0-1", "bytes=3-4"}, 400, "", "", "2 Range headers"},
		{"other unit", "r", []string{"items=0-1"}, 400, "", "", `unit "items"`},
		{"no equals", "r", []string{"bytes 0-1"}, 400, "", "", "no '='"},
		{"no dash", "r", []string{"bytes=5"}, 400, "", "", "no '-'"},
		{"dash only", "r", []string{"bytes=-"}, 400, "", "", "suffix length"},
		{"letters", "r", []string{"bytes=a-b"}, 400, "", "", "first byte"},
		{"negative", "r", []string{"bytes=--1"}, 400, "", "", "suffix length"},
		{"plus", "r", []string{"bytes=+1-2"}, 400, "", "", "first byte"},
		{"backwards", "r", []string{"bytes=5-3"}, 400, "", "", "before the first"},
		{"empty", "r", []string{""}, 400, "", "", "no '='"},
		{"inner space", "r", []string{"bytes=1 -2"}, 400, "", "", "first byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.call(t, "GET", "/v1/objects/"+tt.key, "", http.Header{"Range": tt.ranges})
			if r.code != tt.code {
				t.Fatalf("status %d, want %d: %s", r.code, tt.code, r.body)
			}
			if r.header.Get("Content-Range") != tt.cr {
				t.Errorf("Content-Range %q, want %q", r.header.Get("Content-Range"), tt.cr)
			}
			switch tt.code {
			case 200, 206:
				if r.body != tt.body || r.header.Get("Content-Length") != strconv.Itoa(len(tt.body)) {
					t.Errorf("body %q (Content-Length %s), want %q", r.body, r.header.Get("Content-Length"), tt.body)
				}
			case 416:
				wantError(t, r, 416)
				if e := errorOf(t, r); e.Code != "range_not_satisfiable" {
					t.Errorf("code %q", e.Code)
				}
			default:
				wantError(t, r, tt.code, tt.msg)
			}
		})
	}
	// Range on a missing object is 404, not 416.
	wantError(t, e.call(t, "GET", "/v1/objects/nope", "", http.Header{"Range": {"bytes=-5"}}), 404)
	wantError(t, e.call(t, "GET", "/v1/objects/nope", "", http.Header{"Range": {"bytes=5-"}}), 404)

	// If-Range: the current ETag keeps the range, another one or an old
	// date gets the whole object.
	o, _ := e.store.object("r")
	etag := `"` + o.info.GetSha256() + `"`
	lastMod := o.info.GetModifiedAt().AsTime().UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		ifRange string
		code    int
	}{{etag, 206}, {`"other"`, 200}, {"W/" + etag, 200}, {lastMod, 206}, {"Mon, 02 Jan 2006 15:04:05 GMT", 200}, {"garbage", 200}} {
		r := e.call(t, "GET", "/v1/objects/r", "", http.Header{"Range": {"bytes=-2"}, "If-Range": {tc.ifRange}})
		if r.code != tc.code || (tc.code == 200) != (r.body == "0123456789") {
			t.Errorf("If-Range %s: %d %q", tc.ifRange, r.code, r.body)
		}
	}
}

func TestObjectSuffixRangeOfAChangingObject(t *testing.T) {
	e := newObjectEnv(t)
	e.put(t, "/v1/objects/c", "0123456789", nil)
	// The object grows between every Stat and Get: the host starts over
	// and gives up after its attempts.
	var n int
	e.store.GetFunc = func(req *dwv1.GetObjectRequest, stream dwv1.ObjectStore_GetServer) error {
		n++
		info := &dwv1.ObjectInfo{Key: "c", Size: int64(10 + n), Sha256: sha("x"), ModifiedAt: timestamppb.Now(), CreatedAt: timestamppb.Now()}
		return stream.Send(&dwv1.GetObjectResponse{Part: &dwv1.GetObjectResponse_Header{Header: &dwv1.GetObjectHeader{Info: info, Offset: req.GetOffset(), Length: req.GetLength()}}})
	}
	wantError(t, e.call(t, "GET", "/v1/objects/c", "", http.Header{"Range": {"bytes=-2"}}), 503, "keeps changing")
	if n != getAttempts {
		t.Errorf("%d attempts, want %d", n, getAttempts)
	}
}

// getStreamCases are Get streams of a fake plugin that go wrong, as
// steps: a header announcing 100 bytes (stepHeader), n > 0 bytes of data,
// or an UNAVAILABLE error that ends the stream (stepFail). code is the
// status of the answer; 0 is a 200 whose body is cut short.
var getStreamCases = []struct {
	name  string
	steps []int
	code  int
}{
	{"error before the header", []int{stepFail}, 503},
	{"no header first", []int{3}, 500},
	{"error after some data", []int{stepHeader, 40, stepFail}, 0},
	{"ends short", []int{stepHeader, 99}, 0},
	{"sends too much", []int{stepHeader, 60, 60}, 0},
	{"second header", []int{stepHeader, 10, stepHeader}, 0},
}

const (
	stepHeader = 0
	stepFail   = -1
)

// playGet sends steps through header and data.
func playGet(steps []int, header func() error, data func([]byte) error) error {
	for _, n := range steps {
		var err error
		switch {
		case n == stepFail:
			return fmt.Errorf("disk on fire: %w", sdk.ErrUnavailable)
		case n == stepHeader:
			err = header()
		default:
			err = data(bytes.Repeat([]byte("d"), n))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkGetStream GETs path and checks the answer against code (see
// getStreamCases).
func checkGetStream(t *testing.T, e *apiEnv, path string, code int) {
	t.Helper()
	resp := e.request(t, "GET", path, nil, nil)
	body, err := io.ReadAll(resp.Body)
	if code != 0 {
		if resp.StatusCode != code || err != nil {
			t.Fatalf("status %d (%v), want %d: %s", resp.StatusCode, err, code, body)
		}
		wantError(t, response{code: resp.StatusCode, header: resp.Header, body: string(body)}, code)
		return
	}
	if resp.StatusCode != 200 || resp.ContentLength != 100 {
		t.Fatalf("status %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) >= 100 {
		t.Errorf("read %d bytes, error %v: want a truncated body", len(body), err)
	}
}

func TestObjectGetErrors(t *testing.T) {
	e := newObjectEnv(t)
	info := &dwv1.ObjectInfo{Key: "k", Size: 100, Sha256: sha("x"), CreatedAt: timestamppb.Now(), ModifiedAt: timestamppb.Now()}
	for _, tt := range getStreamCases {
		t.Run(tt.name, func(t *testing.T) {
			e.store.GetFunc = func(_ *dwv1.GetObjectRequest, s dwv1.ObjectStore_GetServer) error {
				return playGet(tt.steps, func() error {
					return s.Send(&dwv1.GetObjectResponse{Part: &dwv1.GetObjectResponse_Header{Header: &dwv1.GetObjectHeader{Info: info, Length: 100}}})
				}, func(b []byte) error {
					return s.Send(&dwv1.GetObjectResponse{Part: &dwv1.GetObjectResponse_Data{Data: b}})
				})
			}
			checkGetStream(t, e.apiEnv, "/v1/objects/k", tt.code)
		})
	}
}

// patternReader yields n deterministic bytes without holding them.
type patternReader struct {
	n, off int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	k := int(min(int64(len(b)), p.n-p.off))
	for i := range k {
		b[i] = byte((p.off + int64(i)) * 7 >> 3)
	}
	p.off += int64(k)
	return k, nil
}

func TestObjectPutStreamsLargeBodies(t *testing.T) {
	const size = 64 << 20
	e := newObjectEnv(t)
	e.store.hashOnly = true
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			h := sha256.New()
			var body io.Reader = io.TeeReader(&patternReader{n: size}, h)
			if chunked {
				body = io.MultiReader(body) // hides the length
			}
			req, err := http.NewRequest("PUT", e.http.URL+"/v1/objects/big", body)
			if err != nil {
				t.Fatal(err)
			}
			if !chunked {
				req.ContentLength = size
			}
			req.Header.Set("Authorization", "Bearer "+e.token)
			resp, err := e.http.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var o Object
			if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %v", resp.StatusCode, err)
			}
			if want := hex.EncodeToString(h.Sum(nil)); o.SHA256 != want || o.Size != size {
				t.Errorf("stored %d bytes %s, sent %d %s", o.Size, o.SHA256, size, want)
			}
			rec := <-e.store.puts
			wantSize := int64(size)
			if chunked {
				wantSize = -1
			}
			if rec.header.GetSize() != wantSize || rec.bytes != size || rec.err != nil {
				t.Errorf("plugin got %+v", rec)
			}
			// The host streams: 1 MiB messages, never the body at once.
			if rec.maxMsg > putMessageBytes || rec.messages < size/putMessageBytes {
				t.Errorf("plugin got %d messages of at most %d bytes", rec.messages, rec.maxMsg)
			}
		})
	}
}

func TestObjectGetStreamsLargeObjects(t *testing.T) {
	const size = 8<<20 + 5
	e := newObjectEnv(t)
	e.store.chunk = 256 << 10
	var sent bytes.Buffer
	_, _ = io.Copy(&sent, &patternReader{n: size})
	e.put(t, "/v1/objects/big", sent.String(), nil)
	resp := e.request(t, "GET", "/v1/objects/big", nil, nil)
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil || n != size || resp.ContentLength != size {
		t.Fatalf("read %d of %d: %v", n, resp.ContentLength, err)
	}
	if got, want := hex.EncodeToString(h.Sum(nil)), sha(sent.String()); got != want || resp.Header.Get("X-DW-Content-SHA256") != want {
		t.Errorf("sha %s, header %s, want %s", got, resp.Header.Get("X-DW-Content-SHA256"), want)
	}
}

// TestObjectPutClientAbort checks that a body the client aborts cancels
// the plugin's Put stream (not a normal close) and stores nothing.
func TestObjectPutClientAbort(t *testing.T) {
	e := newObjectEnv(t)
	for _, withLength := range []bool{false, true} {
		t.Run(fmt.Sprintf("content-length=%v", withLength), func(t *testing.T) {
			pr, pw := io.Pipe()
			req, err := http.NewRequest("PUT", e.http.URL+"/v1/objects/aborted", pr)
			if err != nil {
				t.Fatal(err)
			}
			if withLength {
				req.ContentLength = 10 << 20
			}
			req.Header.Set("Authorization", "Bearer "+e.token)
			done := make(chan error, 1)
			go func() {
				resp, err := e.http.Client().Do(req)
				if err == nil {
					resp.Body.Close()
					err = fmt.Errorf("request completed with %d", resp.StatusCode)
				}
				done <- err
			}()
			chunk := bytes.Repeat([]byte("a"), 1<<20)
			for range 3 {
				if _, err := pw.Write(chunk); err != nil {
					t.Fatal(err)
				}
			}
			pw.CloseWithError(errors.New("the user pressed ^C"))
			if err := <-done; err == nil {
				t.Error("client request succeeded")
			}
			rec := <-e.store.puts
			if rec.err == nil || status.Code(rec.err) != codes.Canceled {
				t.Errorf("plugin stream ended with %v, want canceled", rec.err)
			}
			if _, ok := e.store.object("aborted"); ok {
				t.Error("an aborted PUT stored the object")
			}
		})
	}
}

// failingReader yields n bytes and then fails with err.
type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(b []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	k := min(len(b), f.n)
	f.n -= k
	return k, nil
}

// TestObjectPutBodyFails checks the host's own handling of a body that
// fails while the request is alive: a truncated body must never end the
// plugin's stream normally (it would store a short object).
func TestObjectPutBodyFails(t *testing.T) {
	e := newObjectEnv(t)
	for _, err := range []error{io.ErrUnexpectedEOF, errors.New("connection reset by peer")} {
		req := httptest.NewRequest("PUT", "/v1/objects/short", &failingReader{n: 3<<20 + 17, err: err})
		wantError(t, e.serve(t, req), 400, "read request body", err.Error())
		rec := e.store.nextPut(t, "short")
		if status.Code(rec.err) != codes.Canceled || rec.bytes > 3<<20 {
			t.Errorf("plugin stream ended with %v after %d bytes, want canceled", rec.err, rec.bytes)
		}
		if _, ok := e.store.object("short"); ok {
			t.Fatal("a failed PUT stored the object")
		}
	}
}

func TestObjectList(t *testing.T) {
	e := newObjectEnv(t)
	for _, k := range []string{"a/1", "a/2", "a/3", "a/4", "a/5", "b/1"} {
		e.put(t, "/v1/objects/"+k, k, nil)
	}
	get := func(query string) ObjectList {
		t.Helper()
		r := e.call(t, "GET", "/v1/objects"+query, "", nil)
		if r.code != 200 {
			t.Fatalf("GET %s: %d %s", query, r.code, r.body)
		}
		var l ObjectList
		if err := json.Unmarshal([]byte(r.body), &l); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(query, "count=true") != strings.Contains(r.body, `"total_count"`) {
			t.Errorf("GET %s: total_count presence: %s", query, r.body)
		}
		return l
	}
	keys := func(l ObjectList) string {
		var ks []string
		for _, o := range l.Items {
			ks = append(ks, o.Key)
		}
		return strings.Join(ks, ",")
	}
	// Page by token through a prefix.
	var seen []string
	l := get("?prefix=a/&limit=2&count=true")
	if *l.TotalCount != 5 || !l.HasMore || l.NextPageToken == "" {
		t.Fatalf("first page %+v", l)
	}
	for {
		seen = append(seen, keys(l))
		if !l.HasMore {
			break
		}
		l = get("?prefix=a/&limit=2&page_token=" + url.QueryEscape(l.NextPageToken))
	}
	if got := strings.Join(seen, "|"); got != "a/1,a/2|a/3,a/4|a/5" {
		t.Errorf("pages %s", got)
	}
	if l.NextPageToken != "" {
		t.Errorf("last page token %q", l.NextPageToken)
	}
	if l := get("?prefix=a/&offset=3&limit=10"); keys(l) != "a/4,a/5" || l.HasMore {
		t.Errorf("offset page %+v", l)
	}
	if l := get("?prefix=zzz"); l.Items == nil || len(l.Items) != 0 {
		t.Errorf("empty page %+v", l)
	}
	if l := get(""); len(l.Items) != 3 || !l.HasMore { // the plugin's default page size
		t.Errorf("default page %+v", l)
	}
	if l := get("?limit=2147483647&strategy=primary&count=false&stream=false"); len(l.Items) != 6 {
		t.Errorf("max limit %+v", l)
	}
	if r := e.call(t, "GET", "/v1/objects?page_token=bad!", "", nil); r.code != 400 {
		t.Errorf("tampered token: %d %s", r.code, r.body)
	}
}

func TestObjectListBadQueries(t *testing.T) {
	e := newObjectEnv(t)
	tests := []struct{ query, want string }{
		{"limit=0", "from 1 to 2147483647"},
		{"limit=-1", "from 1 to 2147483647"},
		{"limit=abc", "from 1 to 2147483647"},
		{"limit=", "from 1 to 2147483647"},
		{"limit=2147483648", "from 1 to 2147483647"},
		{"limit=%2B5", "from 1 to 2147483647"},
		{"limit=1.5", "from 1 to 2147483647"},
		{"limit=%205", "from 1 to 2147483647"},
		{"offset=-1", "from 0 to 9223372036854775807"},
		{"offset=x", "from 0 to"},
		{"offset=99999999999999999999", "from 0 to"},
		{"offset=", "from 0 to"},
		{"count=yes", "true or false"},
		{"count=TRUE", "true or false"},
		{"count=", "true or false"},
		{"stream=1", "true or false"},
		{"page_token=abc&offset=0", "offset and page_token exclude each other"},
		{"lmit=5", `"lmit"`},
		{"lmit=5", "allowed: prefix, limit, offset, page_token, count, strategy, stream"},
		{"limit=1&limit=2", "given 2 times"},
		{"stream=true&limit=5", "got limit"},
		{"stream=true&count=true", "got count"},
		{"stream=true&count=false", "got count"},
		{"stream=true&page_token=x", "got page_token"},
		{"stream=true&offset=1", "got offset"},
		{"prefix=%FF", "UTF-8 without NUL"},
		{"prefix=a%00b", "UTF-8 without NUL"},
		{"prefix=" + strings.Repeat("p", 1025), "at most 1024 bytes"},
		{"page_token=" + strings.Repeat("t", 4097), "at most 4096 bytes"},
		{"page_token=%FF", "not a token"},
		{"a=%zz", "invalid URL escape"},
		{"a;b", "semicolon"},
		{"strategy=%0A", "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			wantError(t, e.serve(t, httptest.NewRequest("GET", "/v1/objects?"+tt.query, nil)), 400, tt.want)
		})
	}
	if c := e.store.lastCall(); c != "" {
		t.Errorf("the plugin was called for bad queries: %s", c)
	}
}

// readNDJSON reads the lines of a streamed listing.
func readNDJSON(t testing.TB, body io.Reader) (items []Object, errLine *ErrorDetail) {
	t.Helper()
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		var line struct {
			Object
			Error *ErrorDetail `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if errLine != nil {
			t.Fatalf("a line after the error line: %s", sc.Text())
		}
		if line.Error != nil {
			errLine = line.Error
			continue
		}
		items = append(items, line.Object)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return items, errLine
}

func TestObjectListStream(t *testing.T) {
	e := newObjectEnv(t)
	const n = 1000 // several flushes
	for i := range n {
		e.store.objects[fmt.Sprintf("s/%04d", i)] = &fakeObject{info: &dwv1.ObjectInfo{
			Key: fmt.Sprintf("s/%04d", i), Size: int64(i), CreatedAt: timestamppb.Now(), ModifiedAt: timestamppb.Now()}}
	}
	resp := e.request(t, "GET", "/v1/objects?stream=true&prefix=s/&strategy=primary", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	items, errLine := readNDJSON(t, resp.Body)
	if errLine != nil || len(items) != n || items[0].Key != "s/0000" || items[n-1].Key != fmt.Sprintf("s/%04d", n-1) || items[5].Size != 5 {
		t.Errorf("%d items, error %v", len(items), errLine)
	}
	if c := e.store.lastCall(); c != "ListStream s/ primary alice" {
		t.Errorf("plugin call %q", c)
	}

	// No match: 200 and no lines.
	r := e.call(t, "GET", "/v1/objects?stream=true&prefix=none", "", nil)
	if r.code != 200 || r.body != "" {
		t.Errorf("empty stream: %d %q", r.code, r.body)
	}

	// An error before the first line is a normal error answer.
	e.store.ListStreamFunc = func(*dwv1.ListObjectsStreamRequest, dwv1.ObjectStore_ListStreamServer) error {
		return fmt.Errorf("strategy nope: %w: unknown", sdk.ErrInvalidArgument)
	}
	wantError(t, e.call(t, "GET", "/v1/objects?stream=true", "", nil), 400, "strategy nope")

	// An error after lines is a last line {"error":...}; lines already
	// there reach the client while the stream stalls.
	release := make(chan struct{})
	e.store.ListStreamFunc = func(_ *dwv1.ListObjectsStreamRequest, s dwv1.ObjectStore_ListStreamServer) error {
		for i := range 3 {
			if err := s.Send(&dwv1.ObjectInfo{Key: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		select {
		case <-release:
		case <-s.Context().Done():
			return s.Context().Err()
		}
		return fmt.Errorf("strategy primary: %w: database went away", sdk.ErrUnavailable)
	}
	// A guard against hanging forever if lines are not flushed: not a
	// timing assertion, the stall flush takes milliseconds.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	guard := time.AfterFunc(time.Minute, cancel)
	defer guard.Stop()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.http.URL+"/v1/objects?stream=true", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatalf("stalled stream: %v", err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := br.ReadString('\n') // would hang if stalled lines were not flushed
		if err != nil || !strings.Contains(line, fmt.Sprintf(`"key":"%d"`, i)) {
			t.Fatalf("line %d: %q %v", i, line, err)
		}
	}
	close(release)
	items, errLine = readNDJSON(t, br)
	if len(items) != 0 || errLine == nil || errLine.Code != "unavailable" || !strings.Contains(errLine.Message, "database went away") {
		t.Errorf("after the stall: %v %+v", items, errLine)
	}
}

// TestObjectListStreamClientGoesAway checks that the plugin's stream ends
// when the client stops reading.
func TestObjectListStreamClientGoesAway(t *testing.T) {
	e := newObjectEnv(t)
	ended := make(chan error, 1)
	e.store.ListStreamFunc = func(_ *dwv1.ListObjectsStreamRequest, s dwv1.ObjectStore_ListStreamServer) error {
		for i := 0; ; i++ {
			if err := s.Send(&dwv1.ObjectInfo{Key: fmt.Sprintf("k%09d", i)}); err != nil {
				ended <- err
				return err
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.http.URL+"/v1/objects?stream=true", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	if err := <-ended; err == nil {
		t.Error("plugin stream did not end")
	}
}

func BenchmarkObjectGet(b *testing.B) {
	const size = 256 << 20
	e := newObjectEnv(b)
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	e.store.GetFunc = func(_ *dwv1.GetObjectRequest, s dwv1.ObjectStore_GetServer) error {
		info := &dwv1.ObjectInfo{Key: "k", Size: size, Sha256: sha("x"), CreatedAt: timestamppb.Now(), ModifiedAt: timestamppb.Now()}
		if err := s.Send(&dwv1.GetObjectResponse{Part: &dwv1.GetObjectResponse_Header{Header: &dwv1.GetObjectHeader{Info: info, Length: size}}}); err != nil {
			return err
		}
		for range size / len(chunk) {
			if err := s.Send(&dwv1.GetObjectResponse{Part: &dwv1.GetObjectResponse_Data{Data: chunk}}); err != nil {
				return err
			}
		}
		return nil
	}
	b.SetBytes(size)
	for b.Loop() {
		resp := e.request(b, "GET", "/v1/objects/k", nil, nil)
		if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != size {
			b.Fatalf("%d %v", n, err)
		}
		resp.Body.Close()
	}
}

func BenchmarkObjectPut(b *testing.B) {
	const size = 256 << 20
	e := newObjectEnv(b)
	e.store.hashOnly = true
	b.SetBytes(size)
	for b.Loop() {
		req, _ := http.NewRequest("PUT", e.http.URL+"/v1/objects/k", &patternReader{n: size})
		req.ContentLength = size
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := e.http.Client().Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("%v", err)
		}
		resp.Body.Close()
		<-e.store.puts
	}
}
