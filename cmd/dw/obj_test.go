package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/host/api"
)

const testObjToken = "tok-obj-0123456789"

type storedObject struct {
	data        []byte
	contentType string
	meta        map[string]string
	modified    time.Time
}

// seenRequest is what fakeObjectAPI saw of one request.
type seenRequest struct {
	method, uri   string // uri as sent: escaped path and query
	key           string
	header        http.Header
	contentLength int64
	chunked       bool
}

// fakeObjectAPI is the host's /v1/objects API over memory, enough to check
// what the obj commands send and how they handle answers. The func fields
// replace a behaviour when set.
type fakeObjectAPI struct {
	mu       sync.Mutex
	objects  map[string]*storedObject
	requests []seenRequest

	// GetFunc, when set, answers GET of an object instead.
	GetFunc func(w http.ResponseWriter, r *http.Request, key string)
	// PutSHA, when set, is the sha256 the PUT answer claims.
	PutSHA string
	// StreamError, when set, ends stream=true listings with this error line.
	StreamError string
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func (f *fakeObjectAPI) info(key string, o *storedObject) map[string]any {
	return map[string]any{"key": key, "size": len(o.data), "sha256": sum(o.data), "content_type": o.contentType,
		"metadata": o.meta, "created_at": o.modified.Format(time.RFC3339Nano), "modified_at": o.modified.Format(time.RFC3339Nano),
		"strategy": "primary"}
}

func (f *fakeObjectAPI) last() seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1]
}

func fakeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (f *fakeObjectAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testObjToken {
		fakeError(w, 401, "unauthenticated", "missing bearer token")
		return
	}
	seen := seenRequest{method: r.Method, uri: r.URL.RequestURI(), header: r.Header.Clone(), contentLength: r.ContentLength,
		chunked: slices.Contains(r.TransferEncoding, "chunked")}
	esc := r.URL.EscapedPath()
	if esc == "/v1/objects" {
		f.mu.Lock()
		f.requests = append(f.requests, seen)
		f.mu.Unlock()
		f.list(w, r)
		return
	}
	key, err := url.PathUnescape(strings.TrimPrefix(esc, "/v1/objects/"))
	if err != nil || key == "" {
		fakeError(w, 400, "invalid_argument", "bad key")
		return
	}
	seen.key = key
	f.mu.Lock()
	f.requests = append(f.requests, seen)
	o := f.objects[key]
	f.mu.Unlock()
	switch r.Method {
	case "PUT":
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, r.Body); err != nil {
			fakeError(w, 400, "invalid_argument", err.Error())
			return
		}
		o = &storedObject{data: buf.Bytes(), contentType: r.Header.Get("Content-Type"), meta: map[string]string{}, modified: time.Now().UTC()}
		for k, vs := range r.Header {
			if name, ok := strings.CutPrefix(k, "X-Dw-Meta-"); ok {
				o.meta[strings.ToLower(name)] = vs[0]
			}
		}
		f.mu.Lock()
		f.objects[key] = o
		f.mu.Unlock()
		info := f.info(key, o)
		if f.PutSHA != "" {
			info["sha256"] = f.PutSHA
		}
		_ = json.NewEncoder(w).Encode(info)
	case "GET", "HEAD":
		if r.Method == "GET" && f.GetFunc != nil {
			f.GetFunc(w, r, key)
			return
		}
		if o == nil {
			fakeError(w, 404, "not_found", fmt.Sprintf("object %q: not found", key))
			return
		}
		h := w.Header()
		h.Set("Content-Type", o.contentType)
		h.Set("X-DW-Content-SHA256", sum(o.data))
		h.Set("X-DW-Strategy", "primary")
		h.Set("X-DW-Created-At", o.modified.Format(time.RFC3339Nano))
		h.Set("X-DW-Modified-At", o.modified.Format(time.RFC3339Nano))
		for k, v := range o.meta {
			h.Set("X-DW-Meta-"+k, v)
		}
		data, status := o.data, 200
		if rng := r.Header.Get("Range"); rng != "" && r.Method == "GET" {
			var first, last int
			if _, err := fmt.Sscanf(rng, "bytes=%d-%d", &first, &last); err != nil {
				fakeError(w, 400, "invalid_argument", "this fake knows only bytes=first-last")
				return
			}
			last = min(last, len(data)-1)
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(data)))
			data, status = data[first:last+1], 206
		}
		h.Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(status)
		if r.Method == "GET" {
			_, _ = w.Write(data)
		}
	case "DELETE":
		f.mu.Lock()
		delete(f.objects, key)
		f.mu.Unlock()
		w.WriteHeader(204)
	default:
		fakeError(w, 405, "method_not_allowed", "no")
	}
}

func (f *fakeObjectAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	var keys []string
	for k := range f.objects {
		if strings.HasPrefix(k, q.Get("prefix")) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	infos := make([]map[string]any, len(keys))
	for i, k := range keys {
		infos[i] = f.info(k, f.objects[k])
	}
	f.mu.Unlock()
	if q.Get("stream") == "true" {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, info := range infos {
			_ = enc.Encode(info)
		}
		if f.StreamError != "" {
			_ = enc.Encode(map[string]any{"error": map[string]string{"code": "unavailable", "message": f.StreamError}})
		}
		return
	}
	limit := len(infos)
	if l := q.Get("limit"); l != "" {
		limit, _ = strconv.Atoi(l)
	}
	start := 0
	if t := q.Get("page_token"); t != "" {
		start, _ = strconv.Atoi(strings.TrimPrefix(t, "after-"))
	}
	end := min(start+limit, len(infos))
	body := map[string]any{"items": infos[start:end], "has_more": end < len(infos), "next_page_token": ""}
	if end < len(infos) {
		body["next_page_token"] = fmt.Sprintf("after-%d", end)
	}
	if q.Get("count") == "true" {
		body["total_count"] = len(infos)
	}
	_ = json.NewEncoder(w).Encode(body)
}

// newObjAPI starts the fake API and checks for leaked goroutines at the end.
func newObjAPI(t *testing.T) (*fakeObjectAPI, *httptest.Server) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last
	f := &fakeObjectAPI{objects: map[string]*storedObject{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Setenv("DW_TOKEN", testObjToken)
	return f, srv
}

// runDW runs the dw command line with args against addr.
func runDW(t *testing.T, addr string, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	root.SetArgs(append([]string{"--addr", addr}, args...))
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	if stdin != nil {
		root.SetIn(stdin)
	}
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// filesIn lists the names in dir.
func filesIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestObjPutAndGet(t *testing.T) {
	f, srv := newObjAPI(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "notes.txt")
	content := []byte("hello, objects\n")
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	const key = "dir//sub/../name with space%2F日本"
	out, errOut, err := runDW(t, srv.URL, nil, "obj", "put", key, src, "--meta", "owner=alice", "--meta", "Team=data=eng")
	if err != nil {
		t.Fatalf("put: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "stored "+key+": 15 B, sha256 "+sum(content)) {
		t.Errorf("put output %q", out)
	}
	if errOut != "" {
		t.Errorf("stderr without a terminal: %q", errOut)
	}
	req := f.last()
	if req.key != key || req.contentLength != int64(len(content)) || req.chunked {
		t.Errorf("PUT key %q, Content-Length %d, chunked %v", req.key, req.contentLength, req.chunked)
	}
	// Every reserved byte is escaped: nothing on the way can clean the path.
	if strings.Contains(strings.TrimPrefix(req.uri, "/v1/objects/"), "/") {
		t.Errorf("key sent with raw slashes: %s", req.uri)
	}
	if req.header.Get("Content-Type") != "text/plain; charset=utf-8" || req.header.Get("X-DW-Meta-Owner") != "alice" ||
		req.header.Get("X-DW-Meta-Team") != "data=eng" {
		t.Errorf("PUT headers %v", req.header)
	}

	// To a file, through a temporary file.
	dst := filepath.Join(dir, "out", "copy.txt")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, _, err = runDW(t, srv.URL, nil, "obj", "get", key, dst)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, content) || out != "wrote "+dst+": 15 B, sha256 verified\n" {
		t.Errorf("get wrote %q, said %q", got, out)
	}
	if names := filesIn(t, filepath.Dir(dst)); len(names) != 1 {
		t.Errorf("left behind: %v", names)
	}
	st, _ := os.Stat(dst)
	if st.Mode().Perm()&0o600 != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	// To stdout.
	out, _, err = runDW(t, srv.URL, nil, "obj", "get", key)
	if err != nil || out != string(content) {
		t.Errorf("get to stdout: %q %v", out, err)
	}
	out, _, err = runDW(t, srv.URL, nil, "obj", "get", key, "-")
	if err != nil || out != string(content) {
		t.Errorf("get to -: %q %v", out, err)
	}
	// JSON.
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "obj", "get", key, dst)
	var obj api.Object
	if err != nil || json.Unmarshal([]byte(out), &obj) != nil || obj.Key != key || obj.Size != 15 || obj.Metadata["owner"] != "alice" {
		t.Errorf("get -o json: %q %v", out, err)
	}

	// From stdin: streamed (chunked), the content type given.
	out, _, err = runDW(t, srv.URL, strings.NewReader("from stdin"), "-o", "json", "obj", "put", "piped", "-", "--content-type", "text/x", "--strategy", "fast")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &obj); err != nil || obj.Key != "piped" || obj.SHA256 != sum([]byte("from stdin")) {
		t.Errorf("put -o json: %q", out)
	}
	req = f.last()
	if !req.chunked || req.header.Get("Content-Type") != "text/x" || !strings.HasSuffix(req.uri, "?strategy=fast") {
		t.Errorf("stdin PUT %+v", req)
	}
	// An empty file is sent with Content-Length 0, not chunked.
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, nil, 0o644)
	if _, _, err := runDW(t, srv.URL, nil, "obj", "put", "empty", empty); err != nil {
		t.Fatal(err)
	}
	if req := f.last(); req.contentLength != 0 || req.chunked {
		t.Errorf("empty PUT: %+v", req)
	}
}

func TestObjKeysEscaped(t *testing.T) {
	f, srv := newObjAPI(t)
	for _, key := range []string{".", "..", "a//b", "x/../y", "?#%", "/"} {
		if _, _, err := runDW(t, srv.URL, strings.NewReader("v"), "obj", "put", key); err != nil {
			t.Fatalf("put %q: %v", key, err)
		}
		if got := f.last(); got.key != key {
			t.Errorf("key %q arrived as %q (%s)", key, got.key, got.uri)
		}
	}
	if _, _, err := runDW(t, srv.URL, strings.NewReader("v"), "obj", "put", strings.Repeat("k", 1025)); err == nil || !strings.Contains(err.Error(), "1 to 1024 bytes") {
		t.Errorf("long key: %v", err)
	}
}

// brokenReader fails after a few bytes, like a file on a failing disk.
type brokenReader struct{ n int }

func (b *brokenReader) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, errors.New("input/output error")
	}
	k := min(len(p), b.n)
	b.n -= k
	return k, nil
}

func TestObjPutSourceFails(t *testing.T) {
	f, srv := newObjAPI(t)
	_, _, err := runDW(t, srv.URL, &brokenReader{n: 100 << 10}, "obj", "put", "k")
	if err == nil || !strings.Contains(err.Error(), "read -: input/output error (nothing was stored)") {
		t.Errorf("err = %v", err)
	}
	if _, ok := f.objects["k"]; ok {
		t.Error("stored")
	}
}

func TestObjPutDetectsDamage(t *testing.T) {
	f, srv := newObjAPI(t)
	f.PutSHA = strings.Repeat("0", 64)
	_, _, err := runDW(t, srv.URL, strings.NewReader("data"), "obj", "put", "k")
	if err == nil || !strings.Contains(err.Error(), "the host stored SHA-256 "+f.PutSHA) {
		t.Errorf("err = %v", err)
	}
}

func TestObjGetRange(t *testing.T) {
	f, srv := newObjAPI(t)
	f.objects["r"] = &storedObject{data: []byte("0123456789"), meta: map[string]string{}, modified: time.Now()}
	out, _, err := runDW(t, srv.URL, nil, "obj", "get", "r", "--range", "2-4")
	if err != nil || out != "234" || f.last().header.Get("Range") != "bytes=2-4" {
		t.Errorf("range: %q %v %v", out, err, f.last().header)
	}
	// A part is not checked against the whole object's SHA-256.
	dst := filepath.Join(t.TempDir(), "part")
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "obj", "get", "r", dst, "--range", "2-4")
	var obj api.Object
	if err != nil || json.Unmarshal([]byte(out), &obj) != nil || obj.Size != 10 {
		t.Errorf("range to file: %q %v", out, err)
	}
	for _, bad := range []string{"2", "a-b", "5-3-1", "--5", "bytes=0-1", "0-1,3-4"} {
		if _, _, err := runDW(t, srv.URL, nil, "obj", "get", "r", "--range", bad); err == nil || !strings.Contains(err.Error(), "--range") {
			t.Errorf("--range %s: %v", bad, err)
		}
	}
	if _, _, err := runDW(t, srv.URL, nil, "obj", "get", "missing"); err == nil || !strings.Contains(err.Error(), `object "missing": not found`) {
		t.Errorf("missing: %v", err)
	}
}

// TestObjGetNeverLeavesAPartialFile aborts a download midway and sends a
// wrong SHA-256: FILE must stay as it was (or absent), with no temporary
// file left behind.
func TestObjGetNeverLeavesAPartialFile(t *testing.T) {
	f, srv := newObjAPI(t)
	full := bytes.Repeat([]byte("x"), 1<<20)
	tests := []struct {
		name string
		get  func(w http.ResponseWriter, r *http.Request, key string)
		want string
	}{
		{"aborted", func(w http.ResponseWriter, _ *http.Request, _ string) {
			w.Header().Set("Content-Length", strconv.Itoa(len(full)))
			w.Header().Set("X-DW-Content-SHA256", sum(full))
			w.WriteHeader(200)
			_, _ = w.Write(full[:len(full)/2])
			panic(http.ErrAbortHandler)
		}, "download failed after"},
		{"sha mismatch", func(w http.ResponseWriter, _ *http.Request, _ string) {
			w.Header().Set("Content-Length", strconv.Itoa(len(full)))
			w.Header().Set("X-DW-Content-SHA256", sum([]byte("something else")))
			w.WriteHeader(200)
			_, _ = w.Write(full)
		}, "SHA-256 mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.GetFunc = tt.get
			dir := t.TempDir()
			fresh := filepath.Join(dir, "fresh")
			_, _, err := runDW(t, srv.URL, nil, "obj", "get", "k", fresh)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "was not written") {
				t.Errorf("err = %v", err)
			}
			if names := filesIn(t, dir); len(names) != 0 {
				t.Errorf("left behind: %v", names)
			}
			old := filepath.Join(dir, "old")
			if err := os.WriteFile(old, []byte("previous"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, _, err := runDW(t, srv.URL, nil, "obj", "get", "k", old); err == nil {
				t.Error("no error")
			}
			if got, _ := os.ReadFile(old); string(got) != "previous" {
				t.Errorf("FILE changed to %d bytes", len(got))
			}
			if names := filesIn(t, dir); !slices.Equal(names, []string{"old"}) {
				t.Errorf("left behind: %v", names)
			}
			// To stdout the data is out already, but the command fails.
			if _, _, err := runDW(t, srv.URL, nil, "obj", "get", "k"); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("to stdout: %v", err)
			}
		})
	}
}

func TestObjStat(t *testing.T) {
	f, srv := newObjAPI(t)
	mod := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	f.objects["s"] = &storedObject{data: []byte("12345"), contentType: "text/plain", meta: map[string]string{"owner": "alice", "b_2": "x"}, modified: mod}
	out, _, err := runDW(t, srv.URL, nil, "obj", "stat", "s")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"key           s", "size          5 (5 B)", "sha256        " + sum([]byte("12345")), "content type  text/plain",
		"modified      2026-01-02T03:04:05.123456789Z", "meta b_2      x", "meta owner    alice"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("stat output lacks %q:\n%s", want, out)
		}
	}
	if f.last().method != "HEAD" {
		t.Errorf("stat sent %s", f.last().method)
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "obj", "stat", "s")
	var obj api.Object
	if err != nil || json.Unmarshal([]byte(out), &obj) != nil || obj.Size != 5 || obj.Metadata["owner"] != "alice" || obj.ModifiedAt != mod.Format(time.RFC3339Nano) {
		t.Errorf("stat -o json: %q %v", out, err)
	}
	if _, _, err := runDW(t, srv.URL, nil, "obj", "stat", "nope"); err == nil || !strings.Contains(err.Error(), `object "nope" not found (HTTP 404`) {
		t.Errorf("missing: %v", err)
	}
}

func TestObjLs(t *testing.T) {
	f, srv := newObjAPI(t)
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, k := range []string{"a/1", "a/2", "a/3", "b/1"} {
		f.objects[k] = &storedObject{data: bytes.Repeat([]byte("x"), i*1000), meta: map[string]string{}, modified: mod}
	}
	out, errOut, err := runDW(t, srv.URL, nil, "obj", "ls", "a/", "--limit", "2", "--count")
	if err != nil {
		t.Fatal(err)
	}
	want := "2026-01-02 03:04:05             0  a/1\n2026-01-02 03:04:05          1000  a/2\n"
	if out != want || !strings.Contains(errOut, "3 objects match") || !strings.Contains(errOut, "--page-token after-2") {
		t.Errorf("ls page:\n%s\nstderr: %s", out, errOut)
	}
	if u := f.last().uri; u != "/v1/objects?count=true&limit=2&prefix=a%2F" {
		t.Errorf("ls sent %s", u)
	}
	out, errOut, err = runDW(t, srv.URL, nil, "obj", "ls", "a/", "--page-token", "after-2")
	if err != nil || out != "2026-01-02 03:04:05          2000  a/3\n" || errOut != "" {
		t.Errorf("ls next page: %q %q %v", out, errOut, err)
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "obj", "ls")
	var page api.ObjectList
	if err != nil || json.Unmarshal([]byte(out), &page) != nil || len(page.Items) != 4 {
		t.Errorf("ls -o json: %q %v", out, err)
	}
	if _, _, err := runDW(t, srv.URL, nil, "obj", "ls", "--limit", "0"); err == nil {
		t.Error("--limit 0 accepted")
	}

	// --all streams every match.
	out, _, err = runDW(t, srv.URL, nil, "obj", "ls", "--all", "--strategy", "primary")
	if err != nil || strings.Count(out, "\n") != 4 || !strings.HasSuffix(out, "  b/1\n") {
		t.Errorf("ls --all: %q %v", out, err)
	}
	if u := f.last().uri; u != "/v1/objects?strategy=primary&stream=true" {
		t.Errorf("ls --all sent %s", u)
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "obj", "ls", "--all", "a/")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(lines) != 3 || !strings.Contains(lines[2], `"key":"a/3"`) {
		t.Errorf("ls --all -o json: %q %v", out, err)
	}
	f.StreamError = "database went away"
	out, _, err = runDW(t, srv.URL, nil, "obj", "ls", "--all")
	if err == nil || !strings.Contains(err.Error(), "stopped after 4 objects: database went away") || strings.Count(out, "\n") != 4 {
		t.Errorf("ls --all with an error: %q %v", out, err)
	}
	for _, flag := range []string{"--limit=5", "--count", "--page-token=x"} {
		if _, _, err := runDW(t, srv.URL, nil, "obj", "ls", "--all", flag); err == nil || !strings.Contains(err.Error(), "--all") {
			t.Errorf("--all %s: %v", flag, err)
		}
	}
}

func TestObjRm(t *testing.T) {
	f, srv := newObjAPI(t)
	f.objects["a"] = &storedObject{}
	out, errOut, err := runDW(t, srv.URL, nil, "obj", "rm", "a", "never-was", "", "c//d")
	if err == nil || !strings.Contains(err.Error(), "1 of 4 objects") {
		t.Errorf("rm: %v", err)
	}
	if out != "removed a\nremoved never-was\nremoved c//d\n" || !strings.Contains(errOut, "rm : object key is empty") {
		t.Errorf("rm output %q, stderr %q", out, errOut)
	}
	if len(f.objects) != 0 || f.last().method != "DELETE" || f.last().key != "c//d" {
		t.Errorf("objects left %v, last %+v", f.objects, f.last())
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "obj", "rm", "x", "y")
	if err != nil || strings.Join(strings.Fields(out), "") != `{"removed":["x","y"]}` {
		t.Errorf("rm -o json: %q %v", out, err)
	}
}

func TestObjProgressAndAuth(t *testing.T) {
	_, srv := newObjAPI(t)
	// Not a terminal: no bar by default, one when asked.
	_, errOut, err := runDW(t, srv.URL, strings.NewReader("data"), "obj", "put", "p")
	if err != nil || errOut != "" {
		t.Errorf("auto: %q %v", errOut, err)
	}
	_, errOut, err = runDW(t, srv.URL, strings.NewReader("data"), "obj", "put", "p", "--progress", "always")
	if err != nil || !strings.Contains(errOut, "put p") {
		t.Errorf("always: %q %v", errOut, err)
	}
	_, errOut, err = runDW(t, srv.URL, nil, "obj", "get", "p", filepath.Join(t.TempDir(), "p"), "--progress", "always")
	if err != nil || !strings.Contains(errOut, "get p") {
		t.Errorf("get always: %q %v", errOut, err)
	}
	if _, _, err := runDW(t, srv.URL, nil, "obj", "get", "p", "--progress", "sometimes"); err == nil || !strings.Contains(err.Error(), "auto, always or never") {
		t.Errorf("bad --progress: %v", err)
	}
	// A wrong token: the host's message and a hint.
	t.Setenv("DW_TOKEN", "wrong")
	if _, _, err := runDW(t, srv.URL, strings.NewReader("x"), "obj", "put", "p"); err == nil || !strings.Contains(err.Error(), "set DW_TOKEN") {
		t.Errorf("wrong token: %v", err)
	}
	if _, _, err := runDW(t, srv.URL, nil, "obj", "stat", "p"); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("wrong token on HEAD: %v", err)
	}
}
