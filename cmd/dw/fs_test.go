package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
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

// fakeFileAPI is the host's /v1/files API over memory, enough to check
// what the fs commands send and how they handle answers: files by path,
// folders implied by them, listings two entries a page by default. GET and
// HEAD go through http.ServeContent, which does Range as the host does.
type fakeFileAPI struct {
	mu       sync.Mutex
	files    map[string][]byte
	requests []seenRequest

	// GetFunc, when set, answers GET of a file instead.
	GetFunc func(w http.ResponseWriter, r *http.Request)
	// PutSHA, when set, is the sha256 the PUT answer claims.
	PutSHA string
	// FailPage, when > 0, makes the listing page after that many pages a
	// 503.
	FailPage int
	pages    int
}

var fakeModified = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)

func newFsAPI(t *testing.T) (*fakeFileAPI, *httptest.Server) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last
	f := &fakeFileAPI{files: map[string][]byte{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Setenv("DW_TOKEN", testObjToken)
	return f, srv
}

func (f *fakeFileAPI) last() seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return seenRequest{}
	}
	return f.requests[len(f.requests)-1]
}

func (f *fakeFileAPI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func (f *fakeFileAPI) fileJSON(p string, size int) map[string]any {
	return map[string]any{"path": p, "name": p[strings.LastIndexByte(p, '/')+1:], "size": size, "mode": "0644",
		"modified_at": fakeModified.Format(time.RFC3339Nano), "is_dir": false}
}

// entries returns the listing of folder dir ("": the root), by name.
func (f *fakeFileAPI) entries(dir string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	prefix := dir + "/"
	if dir == "" {
		prefix = ""
	}
	byName := map[string]map[string]any{}
	for p, data := range f.files {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		if name, _, isDir := strings.Cut(rest, "/"); isDir {
			byName[name] = map[string]any{"path": prefix + name, "name": name, "size": 0, "mode": "0755",
				"modified_at": fakeModified.Format(time.RFC3339Nano), "is_dir": true}
		} else {
			byName[name] = f.fileJSON(p, len(data))
		}
	}
	var out []map[string]any
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, byName[name])
	}
	return out
}

func (f *fakeFileAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testObjToken {
		fakeError(w, 401, "unauthenticated", "missing bearer token")
		return
	}
	rest := strings.TrimPrefix(r.URL.EscapedPath(), "/v1/files")
	p, err := url.PathUnescape(strings.TrimPrefix(strings.TrimSuffix(rest, "/"), "/"))
	f.mu.Lock()
	f.requests = append(f.requests, seenRequest{method: r.Method, uri: r.URL.RequestURI(), key: p, header: r.Header.Clone(),
		contentLength: r.ContentLength, chunked: slices.Contains(r.TransferEncoding, "chunked")})
	data, isFile := f.files[p]
	f.mu.Unlock()
	switch {
	case err != nil:
		fakeError(w, 400, "invalid_argument", "bad path")
	case rest == "" || strings.HasSuffix(rest, "/"):
		f.list(w, r, p)
	case r.Method == "PUT":
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, r.Body); err != nil {
			fakeError(w, 400, "invalid_argument", err.Error())
			return
		}
		f.mu.Lock()
		f.files[p] = buf.Bytes()
		f.mu.Unlock()
		info := f.fileJSON(p, buf.Len())
		info["sha256"] = sum(buf.Bytes())
		if f.PutSHA != "" {
			info["sha256"] = f.PutSHA
		}
		w.WriteHeader(201)
		_ = json.NewEncoder(w).Encode(info)
	case r.Method == "DELETE":
		f.mu.Lock()
		delete(f.files, p)
		f.mu.Unlock()
		w.WriteHeader(204)
	case r.Method == "GET" && f.GetFunc != nil:
		f.GetFunc(w, r)
	case !isFile && len(f.entries(p)) > 0:
		w.Header().Set("X-DW-Is-Dir", "true")
		w.Header().Set("X-DW-Mode", "0755")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(200)
	case !isFile:
		fakeError(w, 404, "not_found", fmt.Sprintf("stat file %q: not found", p))
	default:
		h := w.Header()
		h.Set("ETag", `"v1"`)
		h.Set("X-DW-Mode", "0644")
		h.Set("X-DW-Is-Dir", "false")
		h.Set("X-DW-Modified-At", fakeModified.Format(time.RFC3339Nano))
		http.ServeContent(w, r, "", fakeModified, bytes.NewReader(data))
	}
}

func (f *fakeFileAPI) list(w http.ResponseWriter, r *http.Request, dir string) {
	f.mu.Lock()
	f.pages++
	fail := f.FailPage > 0 && f.pages > f.FailPage
	f.mu.Unlock()
	if fail {
		fakeError(w, 503, "unavailable", "plugin filesystem is restarting")
		return
	}
	q := r.URL.Query()
	items := f.entries(dir)
	limit := 2
	if l := q.Get("limit"); l != "" {
		limit, _ = strconv.Atoi(l)
	}
	start := 0
	if t := q.Get("page_token"); t != "" {
		start, _ = strconv.Atoi(strings.TrimPrefix(t, "after-"))
	}
	end := min(start+limit, len(items))
	body := map[string]any{"items": items[start:end], "has_more": end < len(items), "next_page_token": ""}
	if end < len(items) {
		body["next_page_token"] = fmt.Sprintf("after-%d", end)
	}
	_ = json.NewEncoder(w).Encode(body)
}

func TestFsPutAndGet(t *testing.T) {
	f, srv := newFsAPI(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "notes.txt")
	content := []byte("hello, files\n")
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	const p = "docs/read me?#%.txt"
	out, errOut, err := runDW(t, srv.URL, nil, "fs", "put", p, src)
	if err != nil {
		t.Fatalf("put: %v\n%s", err, errOut)
	}
	if out != "stored "+p+": 13 B, sha256 "+sum(content)+"\n" || errOut != "" {
		t.Errorf("put said %q, stderr %q", out, errOut)
	}
	req := f.last()
	if req.key != p || req.uri != "/v1/files/docs/read%20me%3F%23%25.txt" || req.contentLength != int64(len(content)) || req.chunked {
		t.Errorf("PUT %+v", req)
	}
	if got := req.header.Get("X-DW-Priority"); got != "normal" {
		t.Errorf("X-DW-Priority %q", got)
	}

	// To a file, through a temporary file.
	dst := filepath.Join(dir, "out", "copy.txt")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, _, err = runDW(t, srv.URL, nil, "fs", "get", p, dst)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, content) || out != "wrote "+dst+": 13 B\n" {
		t.Errorf("get wrote %q, said %q", got, out)
	}
	if names := filesIn(t, filepath.Dir(dst)); !slices.Equal(names, []string{"copy.txt"}) {
		t.Errorf("left behind: %v", names)
	}
	// To stdout, and as JSON.
	for _, args := range [][]string{{"fs", "get", p}, {"fs", "get", p, "-"}} {
		if out, _, err := runDW(t, srv.URL, nil, args...); err != nil || out != string(content) {
			t.Errorf("%v: %q %v", args, out, err)
		}
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "fs", "get", p, dst)
	var fi api.File
	if err != nil || json.Unmarshal([]byte(out), &fi) != nil || fi.Path != p || fi.Name != "read me?#%.txt" || fi.Size != 13 || fi.Mode != "0644" {
		t.Errorf("get -o json: %q %v", out, err)
	}

	// From stdin: streamed (chunked).
	out, _, err = runDW(t, srv.URL, strings.NewReader("from stdin"), "-o", "json", "fs", "put", "piped")
	if err != nil || json.Unmarshal([]byte(out), &fi) != nil || fi.Path != "piped" || fi.SHA256 != sum([]byte("from stdin")) {
		t.Errorf("put -o json: %q %v", out, err)
	}
	if req := f.last(); !req.chunked || req.contentLength != -1 {
		t.Errorf("stdin PUT %+v", req)
	}
	// An empty file is sent with Content-Length 0.
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, nil, 0o644)
	if _, _, err := runDW(t, srv.URL, nil, "fs", "put", "empty", empty); err != nil {
		t.Fatal(err)
	}
	if req := f.last(); req.contentLength != 0 || req.chunked {
		t.Errorf("empty PUT: %+v", req)
	}
	if _, _, err := runDW(t, srv.URL, nil, "fs", "put", "x", dir); err == nil || !strings.Contains(err.Error(), "is a folder") {
		t.Errorf("put of a folder: %v", err)
	}
	if _, _, err := runDW(t, srv.URL, nil, "fs", "get", "missing"); err == nil || !strings.Contains(err.Error(), `file "missing": not found`) {
		t.Errorf("missing: %v", err)
	}
}

func TestFsPriority(t *testing.T) {
	f, srv := newFsAPI(t)
	f.files["d/f"] = []byte("data")
	commands := [][]string{
		{"fs", "put", "d/f"}, {"fs", "get", "d/f"}, {"fs", "stat", "d/f"}, {"fs", "ls", "d"}, {"fs", "ls", "--all"}, {"fs", "rm", "d/gone"},
	}
	for _, prio := range []struct{ flag, want string }{{"", "normal"}, {"high", "high"}, {"LOW", "low"}, {"Normal", "normal"}} {
		for _, args := range commands {
			if prio.flag != "" {
				args = append(slices.Clone(args), "--priority", prio.flag)
			}
			if _, _, err := runDW(t, srv.URL, strings.NewReader("data"), args...); err != nil {
				t.Fatalf("%v: %v", args, err)
			}
			if got := f.last().header.Get("X-DW-Priority"); got != prio.want {
				t.Errorf("%v: X-DW-Priority %q, want %q", args, got, prio.want)
			}
		}
	}
	before := f.count()
	for _, args := range commands {
		_, _, err := runDW(t, srv.URL, strings.NewReader("data"), append(slices.Clone(args), "--priority", "urgent")...)
		if err == nil || !strings.Contains(err.Error(), `--priority "urgent": must be high, normal or low`) {
			t.Errorf("%v --priority urgent: %v", args, err)
		}
	}
	if f.count() != before {
		t.Errorf("%d requests sent with a bad priority", f.count()-before)
	}
}

func TestFsPathsCheckedLocally(t *testing.T) {
	f, srv := newFsAPI(t)
	for _, p := range []string{"", "../etc/passwd", "a/../b", "/abs", "a//b", "a/", "./a", "a\\b", "a\x00b", "a\nb", strings.Repeat("n", 256)} {
		for _, args := range [][]string{{"fs", "put", p}, {"fs", "get", p}, {"fs", "stat", p}} {
			if _, _, err := runDW(t, srv.URL, strings.NewReader("x"), args...); err == nil || !strings.Contains(err.Error(), "file path") {
				t.Errorf("%q: %v", args, err)
			}
		}
	}
	if _, _, err := runDW(t, srv.URL, nil, "fs", "ls", "../up"); err == nil || !strings.Contains(err.Error(), "file path") {
		t.Errorf("ls ../up: %v", err)
	}
	if n := f.count(); n != 0 {
		t.Errorf("%d requests sent for bad paths", n)
	}
}

func TestFsGetRange(t *testing.T) {
	f, srv := newFsAPI(t)
	f.files["r"] = []byte("0123456789")
	out, _, err := runDW(t, srv.URL, nil, "fs", "get", "r", "--range", "2-4")
	if err != nil || out != "234" || f.last().header.Get("Range") != "bytes=2-4" {
		t.Errorf("range: %q %v %v", out, err, f.last().header)
	}
	out, _, err = runDW(t, srv.URL, nil, "fs", "get", "r", "--range", "-3")
	if err != nil || out != "789" {
		t.Errorf("suffix range: %q %v", out, err)
	}
	dst := filepath.Join(t.TempDir(), "part")
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "fs", "get", "r", dst, "--range", "2-4")
	var fi api.File
	if err != nil || json.Unmarshal([]byte(out), &fi) != nil || fi.Size != 10 {
		t.Errorf("range to a file: %q %v", out, err)
	}
	if got, _ := os.ReadFile(dst); string(got) != "234" {
		t.Errorf("wrote %q", got)
	}
	before := f.count()
	for _, bad := range []string{"2", "a-b", "--5", "bytes=0-1", "0-1,3-4"} {
		if _, _, err := runDW(t, srv.URL, nil, "fs", "get", "r", "--range", bad); err == nil || !strings.Contains(err.Error(), "--range") {
			t.Errorf("--range %s: %v", bad, err)
		}
	}
	if f.count() != before {
		t.Error("requests sent for bad ranges")
	}
}

// TestFsGetNeverLeavesAPartialFile aborts a download midway: FILE must
// stay as it was (or absent), with no temporary file left behind.
func TestFsGetNeverLeavesAPartialFile(t *testing.T) {
	f, srv := newFsAPI(t)
	full := bytes.Repeat([]byte("x"), 1<<20)
	f.GetFunc = func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(full)))
		w.WriteHeader(200)
		_, _ = w.Write(full[:len(full)/2])
		panic(http.ErrAbortHandler)
	}
	dir := t.TempDir()
	old := filepath.Join(dir, "old")
	if err := os.WriteFile(old, []byte("previous"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{filepath.Join(dir, "fresh"), old} {
		_, _, err := runDW(t, srv.URL, nil, "fs", "get", "k", dst)
		if err == nil || !strings.Contains(err.Error(), "download failed after") || !strings.Contains(err.Error(), "was not written") {
			t.Errorf("%s: %v", dst, err)
		}
	}
	if got, _ := os.ReadFile(old); string(got) != "previous" {
		t.Errorf("FILE changed to %d bytes", len(got))
	}
	if names := filesIn(t, dir); !slices.Equal(names, []string{"old"}) {
		t.Errorf("left behind: %v", names)
	}
}

func TestFsPutFailures(t *testing.T) {
	f, srv := newFsAPI(t)
	_, _, err := runDW(t, srv.URL, &brokenReader{n: 100 << 10}, "fs", "put", "k")
	if err == nil || !strings.Contains(err.Error(), "read -: input/output error (nothing was stored)") {
		t.Errorf("source fails: %v", err)
	}
	f.PutSHA = strings.Repeat("0", 64)
	_, _, err = runDW(t, srv.URL, strings.NewReader("data"), "fs", "put", "k")
	if err == nil || !strings.Contains(err.Error(), "the host stored SHA-256 "+f.PutSHA) || !strings.Contains(err.Error(), "the file is damaged") {
		t.Errorf("damage: %v", err)
	}
	// Progress on request; a wrong token.
	f.PutSHA = ""
	_, errOut, err := runDW(t, srv.URL, strings.NewReader("data"), "fs", "put", "p", "--progress", "always")
	if err != nil || !strings.Contains(errOut, "put p") {
		t.Errorf("--progress always: %q %v", errOut, err)
	}
	t.Setenv("DW_TOKEN", "wrong")
	if _, _, err := runDW(t, srv.URL, strings.NewReader("x"), "fs", "put", "p"); err == nil || !strings.Contains(err.Error(), "set DW_TOKEN") {
		t.Errorf("wrong token: %v", err)
	}
}

func TestFsStat(t *testing.T) {
	f, srv := newFsAPI(t)
	f.files["d/s"] = []byte("12345")
	out, _, err := runDW(t, srv.URL, nil, "fs", "stat", "d/s")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"path      d/s", "type      file", "size      5 (5 B)", "mode      0644",
		"modified  2026-01-02T03:04:05.123456789Z", `etag      "v1"`} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("stat output lacks %q:\n%s", want, out)
		}
	}
	if f.last().method != "HEAD" {
		t.Errorf("stat sent %s", f.last().method)
	}
	out, _, err = runDW(t, srv.URL, nil, "fs", "stat", "d")
	if err != nil || !strings.Contains(out, "type      folder\n") || !strings.Contains(out, "mode      0755\n") {
		t.Errorf("stat of a folder: %q %v", out, err)
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "fs", "stat", "d/s")
	var fi api.File
	if err != nil || json.Unmarshal([]byte(out), &fi) != nil || fi.Size != 5 || fi.Name != "s" || fi.IsDir {
		t.Errorf("stat -o json: %q %v", out, err)
	}
	if _, _, err := runDW(t, srv.URL, nil, "fs", "stat", "nope"); err == nil || !strings.Contains(err.Error(), `file "nope" not found (HTTP 404`) {
		t.Errorf("missing: %v", err)
	}
}

func TestFsLs(t *testing.T) {
	f, srv := newFsAPI(t)
	for i, p := range []string{"a/1", "a/2", "a/3", "a/sub/x", "b"} {
		f.files[p] = bytes.Repeat([]byte("x"), i*1000)
	}
	out, errOut, err := runDW(t, srv.URL, nil, "fs", "ls", "a/", "--limit", "2")
	if err != nil {
		t.Fatal(err)
	}
	want := "0644  2026-01-02 03:04:05             0  1\n0644  2026-01-02 03:04:05          1000  2\n"
	if out != want || !strings.Contains(errOut, "--page-token after-2") {
		t.Errorf("ls page:\n%s\nstderr: %s", out, errOut)
	}
	if u := f.last().uri; u != "/v1/files/a/?limit=2" {
		t.Errorf("ls sent %s", u)
	}
	out, errOut, err = runDW(t, srv.URL, nil, "fs", "ls", "a", "--page-token", "after-2")
	if err != nil || out != "0644  2026-01-02 03:04:05          2000  3\n0755  2026-01-02 03:04:05             0  sub/\n" || errOut != "" {
		t.Errorf("ls next page: %q %q %v", out, errOut, err)
	}
	if u := f.last().uri; u != "/v1/files/a/?page_token=after-2" {
		t.Errorf("ls sent %s", u)
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "fs", "ls")
	var page api.FileList
	if err != nil || json.Unmarshal([]byte(out), &page) != nil || len(page.Items) != 2 || page.HasMore || page.Items[0].Path != "a" || !page.Items[0].IsDir || f.last().uri != "/v1/files/" {
		t.Errorf("ls -o json: %q %v (%s)", out, err, f.last().uri)
	}

	// --all follows the pages.
	before := f.count()
	out, _, err = runDW(t, srv.URL, nil, "fs", "ls", "--all", "a")
	if err != nil || strings.Count(out, "\n") != 4 || !strings.HasSuffix(out, "  sub/\n") || f.count()-before != 2 {
		t.Errorf("ls --all: %q %v, %d requests", out, err, f.count()-before)
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "fs", "ls", "--all", "a", "--limit", "1")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(lines) != 4 || !strings.Contains(lines[3], `"path":"a/sub"`) {
		t.Errorf("ls --all -o json: %q %v", out, err)
	}
	f.FailPage = f.pages + 1
	out, _, err = runDW(t, srv.URL, nil, "fs", "ls", "--all", "a")
	if err == nil || !strings.Contains(err.Error(), "stopped after 2 entries: plugin filesystem is restarting") || strings.Count(out, "\n") != 2 {
		t.Errorf("ls --all with an error: %q %v", out, err)
	}
	f.FailPage = 0
	for _, args := range [][]string{{"--limit", "0"}, {"--all", "--page-token", "x"}} {
		if _, _, err := runDW(t, srv.URL, nil, append([]string{"fs", "ls"}, args...)...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestFsRm(t *testing.T) {
	f, srv := newFsAPI(t)
	f.files["a"] = []byte("x")
	f.files["c/d"] = []byte("y")
	out, errOut, err := runDW(t, srv.URL, nil, "fs", "rm", "a", "never-was", "../x", "c/d", "--priority", "low")
	if err == nil || !strings.Contains(err.Error(), "1 of 4 files") {
		t.Errorf("rm: %v", err)
	}
	if out != "removed a\nremoved never-was\nremoved c/d\n" || !strings.Contains(errOut, "rm ../x: file path") {
		t.Errorf("rm output %q, stderr %q", out, errOut)
	}
	if len(f.files) != 0 || f.last().method != "DELETE" || f.last().uri != "/v1/files/c/d" || f.last().header.Get("X-DW-Priority") != "low" {
		t.Errorf("files left %v, last %+v", f.files, f.last())
	}
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "fs", "rm", "x", "y")
	if err != nil || strings.Join(strings.Fields(out), "") != `{"removed":["x","y"]}` {
		t.Errorf("rm -o json: %q %v", out, err)
	}
}
