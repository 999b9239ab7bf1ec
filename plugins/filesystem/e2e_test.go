package main_test

// End-to-end tests: the real dw host (`dw serve`) with the real
// dw-plugin-filesystem process, over HTTP, on real files.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/datawarehouse/dw/internal/hosttest"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

// startFS starts a host whose only plugin is filesystem, with the given
// limits (a YAML flow map, or "").
func startFS(t testing.TB, limits string) *hosttest.Host {
	t.Helper()
	dir := t.TempDir()
	hosttest.Plugin(t, dir, "filesystem")
	cfg := "subsystems:\n  filesystem:\n    enabled: true\n    root: files\n"
	if limits != "" {
		cfg += "    limits: " + limits + "\n"
	}
	h := hosttest.Start(t, dir, cfg)
	h.WaitServing(t, "filesystem", 60*time.Second)
	return h
}

// fileURL is the URL of p, whose bytes go unescaped except ' ', '%', '?'
// and '#': tests pass hostile paths in the form they want the host to see.
func fileURL(h *hosttest.Host, p string) string {
	r := strings.NewReplacer("%", "%25", " ", "%20", "?", "%3F", "#", "%23")
	return h.URL + "/v1/files/" + r.Replace(p)
}

// do sends a request and returns the status, the body and the headers.
func do(t testing.TB, method, url string, body io.Reader, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, data, resp.Header
}

// randomData returns n reproducible random bytes.
func randomData(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

type fileJSON struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	IsDir bool   `json:"is_dir"`
}

type listJSON struct {
	Items         []fileJSON `json:"items"`
	HasMore       bool       `json:"has_more"`
	NextPageToken string     `json:"next_page_token"`
}

func TestFilesThroughTheHost(t *testing.T) {
	h := startFS(t, "")
	data := randomData(3<<20+7, 1)
	if code, body, _ := do(t, "PUT", fileURL(h, "docs/a.bin"), bytes.NewReader(data), "X-DW-Priority", "low"); code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, body)
	}
	onDisk, err := os.ReadFile(filepath.Join(h.DataDir, "files", "docs", "a.bin"))
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Fatalf("file under the root: %d bytes, %v", len(onDisk), err)
	}
	code, got, hdr := do(t, "GET", fileURL(h, "docs/a.bin"), nil, "X-DW-Priority", "high")
	if code != 200 || !bytes.Equal(got, data) || hdr.Get("ETag") == "" {
		t.Fatalf("GET: %d, %d bytes, ETag %q", code, len(got), hdr.Get("ETag"))
	}
	code, got, _ = do(t, "GET", fileURL(h, "docs/a.bin"), nil, "Range", "bytes=1000-1999")
	if code != http.StatusPartialContent || !bytes.Equal(got, data[1000:2000]) {
		t.Errorf("ranged GET: %d, %d bytes", code, len(got))
	}
	if code, _, hdr := do(t, "HEAD", fileURL(h, "docs/a.bin"), nil); code != 200 || hdr.Get("Content-Length") != strconv.Itoa(len(data)) {
		t.Errorf("HEAD: %d, Content-Length %q", code, hdr.Get("Content-Length"))
	}
	code, body, _ := do(t, "GET", h.URL+"/v1/files/docs/", nil)
	var l listJSON
	if code != 200 || json.Unmarshal(body, &l) != nil || len(l.Items) != 1 || l.Items[0].Path != "docs/a.bin" || l.Items[0].Size != int64(len(data)) {
		t.Errorf("list docs/: %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", fileURL(h, "docs/a.bin"), nil, "X-DW-Priority", "urgent"); code != 400 || !strings.Contains(string(body), "X-DW-Priority") {
		t.Errorf("bad priority: %d %s", code, body)
	}
	if code, _, _ := do(t, "DELETE", fileURL(h, "docs/a.bin"), nil); code != http.StatusNoContent {
		t.Errorf("DELETE: %d", code)
	}
	if code, _, _ := do(t, "GET", fileURL(h, "docs/a.bin"), nil); code != 404 {
		t.Errorf("GET after DELETE: %d", code)
	}
}

func TestTraversalThroughTheHost(t *testing.T) {
	h := startFS(t, "")
	root := filepath.Join(h.DataDir, "files")
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../../../"+outside, filepath.Join(root, "rel")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"../secret", "..%2fsecret", "%2e%2e/secret", "%2E%2E%2Fsecret", "a/%2e%2e/%2e%2e/secret",
		"%2fetc%2fpasswd", "/etc/passwd", "a//b", "a/./b", "..%5csecret", "a%00b", "a%0ab",
		"out/secret", "rel/secret", ".dw-staging/x",
	} {
		for _, method := range []string{"GET", "PUT", "DELETE", "HEAD"} {
			var body io.Reader
			if method == "PUT" {
				body = strings.NewReader("pwned")
			}
			code, resp, _ := do(t, method, h.URL+"/v1/files/"+p, body) // sent as written
			if code != 400 {
				t.Errorf("%s %q: %d %s, want 400", method, p, code, resp)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(outside, "secret")); err != nil || string(b) != "secret" {
		t.Errorf("the file outside the root: %q %v", b, err)
	}
	if names, _ := os.ReadDir(outside); len(names) != 1 {
		t.Errorf("the folder outside the root holds %d entries", len(names))
	}
	if !strings.Contains(h.Logs(), "refused file path") {
		t.Error("the plugin did not log the refused paths")
	}
}

// metrics returns the filesystem plugin's metrics as name{labels} → value.
func metrics(t testing.TB, h *hosttest.Host) (map[string]float64, string) {
	t.Helper()
	var out struct {
		Backpressure string `json:"backpressure"`
		Metrics      []struct {
			Name   string            `json:"name"`
			Value  float64           `json:"value"`
			Labels map[string]string `json:"labels"`
		} `json:"metrics"`
	}
	if code := h.JSON(t, "GET", "/v1/subsystems/filesystem/metrics", nil, &out); code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	m := map[string]float64{}
	for _, v := range out.Metrics {
		key := v.Name
		for _, l := range []string{"class", "caller", "path", "capability", "kind", "op"} {
			if x, ok := v.Labels[l]; ok {
				key += "{" + l + "=" + x + "}"
			}
		}
		m[key] = v.Value
	}
	return m, out.Backpressure
}

func TestQueueFullIs429(t *testing.T) {
	h := startFS(t, "{max_queue_depth: 1, queue_depth: {nvme: 1, ssd: 1, hdd: 1}}")
	const size = 64 << 20
	if code, body, _ := do(t, "PUT", fileURL(h, "big"), bytes.NewReader(make([]byte, size))); code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, body)
	}
	// A GET whose client does not read stays admitted: the plugin blocks
	// on the stream's flow control with its place in the queue.
	conn, err := net.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/files/big HTTP/1.1\r\nHost: %s\r\n\r\n", h.Addr)
	// Stalled: admitted, not running (blocked on flow control), and no
	// byte sent for a while. While one of its chunks runs it does not
	// count as queued, so the check waits for the stall.
	hosttest.WaitFor(t, 30*time.Second, "the stalled GET to hold the queue", func() bool {
		before, _ := metrics(t, h)
		time.Sleep(300 * time.Millisecond)
		m, _ := metrics(t, h)
		return m["queue_length{class=normal}"] == 1 && m["in_flight"] == 0 &&
			m["bytes_out_total"] > 0 && m["bytes_out_total"] == before["bytes_out_total"]
	})
	code, body, hdr := do(t, "HEAD", fileURL(h, "big"), nil)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		m, _ := metrics(t, h)
		t.Fatalf("HEAD with a full queue: %d %s Retry-After %q; metrics %v\n%s", code, body, hdr.Get("Retry-After"), m, h.Logs())
	}
	if _, bp := metrics(t, h); bp != "saturated" {
		t.Errorf("backpressure %q with a full queue", bp)
	}
	conn.Close()
	hosttest.WaitFor(t, 30*time.Second, "the queue to drain", func() bool {
		code, _, _ := do(t, "HEAD", fileURL(h, "big"), nil)
		return code == 200
	})
	m, _ := metrics(t, h)
	if m["refused_total{class=normal}"] < 1 {
		t.Errorf("refused_total = %v", m["refused_total{class=normal}"])
	}
}

// TestQuotaThrottles checks that a caller limited to 1 MiB/s needs about
// 4–5 s for 5 MiB (the first second's burst may be free). The lower bound
// is the token bucket's arithmetic, not a race; the upper bound is
// generous.
func TestQuotaThrottles(t *testing.T) {
	h := startFS(t, "{max_throttle_wait: 10s, quota: {default: {bytes_per_second: 1MiB, ops_per_second: 0}}}")
	data := randomData(5<<20, 2)
	start := time.Now()
	if code, body, _ := do(t, "PUT", fileURL(h, "q.bin"), bytes.NewReader(data)); code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, body)
	}
	put := time.Since(start)
	start = time.Now()
	code, got, _ := do(t, "GET", fileURL(h, "q.bin"), nil)
	get := time.Since(start)
	if code != 200 || !bytes.Equal(got, data) {
		t.Fatalf("GET: %d, %d bytes", code, len(got))
	}
	t.Logf("5 MiB at 1 MiB/s: PUT %v, GET %v", put, get)
	// The bucket holds at most one second of bytes, so 5 MiB need at least
	// 4 s of refill whatever the bucket held at the start (the PUT starts
	// with a full one: 4 s; the GET with what the PUT left: up to 5 s).
	if put < 3900*time.Millisecond || get < 3900*time.Millisecond || put > time.Minute || get > time.Minute {
		t.Errorf("5 MiB at 1 MiB/s took PUT %v, GET %v; want about 4–5 s each", put, get)
	}
	m, _ := metrics(t, h)
	if m["quota_throttled_total{caller=anonymous}"] < 1 {
		t.Errorf("quota_throttled_total{caller=anonymous} = %v", m["quota_throttled_total{caller=anonymous}"])
	}
}

func TestQuotaRefusal429(t *testing.T) {
	h := startFS(t, "{max_throttle_wait: 0s, quota: {default: {bytes_per_second: 0, ops_per_second: 0.01}}}")
	if code, body, _ := do(t, "PUT", fileURL(h, "f"), strings.NewReader("x")); code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, body)
	}
	// The bucket holds one operation per 100 s and the PUT took it.
	code, body, hdr := do(t, "HEAD", fileURL(h, "f"), nil)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("HEAD over quota: %d %s, Retry-After %q", code, body, hdr.Get("Retry-After"))
	}
	m, _ := metrics(t, h)
	if m["quota_refused_total{caller=anonymous}"] < 1 {
		t.Errorf("quota_refused_total = %v", m["quota_refused_total{caller=anonymous}"])
	}
}

func TestLimitsChangeLive(t *testing.T) {
	h := startFS(t, "")
	pid := h.Plugin(t, "filesystem").PID
	h.WriteConfig(t, "subsystems:\n  filesystem:\n    enabled: true\n    root: files\n    limits: {max_queue_depth: 7, queue_depth: {nvme: 3, ssd: 3, hdd: 3}, quota: {callers: {alice: {bytes_per_second: 2MiB}}}}\n")
	hosttest.WaitFor(t, 30*time.Second, "the new limits", func() bool {
		m, _ := metrics(t, h)
		return m["queue_max"] == 7 && m["dispatch_depth"] == 3
	})
	if p := h.Plugin(t, "filesystem").PID; p != pid {
		t.Errorf("the plugin restarted for a limit change (pid %d → %d)", pid, p)
	}
	var health struct {
		Components []struct {
			Name, Message string
		} `json:"components"`
	}
	h.JSON(t, "GET", "/v1/subsystems/filesystem/health", nil, &health)
	names := map[string]string{}
	for _, c := range health.Components {
		names[c.Name] = c.Message
	}
	for _, want := range []string{"device", "io_uring", "o_direct", "io_path"} {
		if names[want] == "" {
			t.Errorf("health has no %s component: %v", want, names)
		}
	}
	// A refused change keeps the limits in force.
	h.WriteConfig(t, "subsystems:\n  filesystem:\n    enabled: true\n    root: files\n    limits: {max_queue_depth: 0}\n")
	hosttest.WaitFor(t, 30*time.Second, "the refused reload", func() bool {
		var c struct {
			LastReload struct {
				OK    bool   `json:"ok"`
				Error string `json:"error"`
			} `json:"last_reload"`
		}
		h.JSON(t, "GET", "/v1/config", nil, &c)
		return !c.LastReload.OK && strings.Contains(c.LastReload.Error, "max_queue_depth")
	})
	if m, _ := metrics(t, h); m["queue_max"] != 7 {
		t.Errorf("queue_max = %v after a refused reload, want 7", m["queue_max"])
	}
}

// TestKilledMidPutKeepsThePreviousFile kills the plugin while an upload
// streams: the previous file stays whole, and the restarted plugin clears
// the staging folder.
func TestKilledMidPutKeepsThePreviousFile(t *testing.T) {
	h := startFS(t, "")
	old := randomData(1<<20, 3)
	if code, _, _ := do(t, "PUT", fileURL(h, "v"), bytes.NewReader(old)); code != http.StatusCreated {
		t.Fatal("first PUT failed")
	}
	pid := h.Plugin(t, "filesystem").PID
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "PUT", fileURL(h, "v"), pr)
	req.ContentLength = 64 << 20
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	pw.Write(make([]byte, 4<<20))
	staging := filepath.Join(h.DataDir, "files", ".dw-staging")
	hosttest.WaitFor(t, 30*time.Second, "the upload in staging", func() bool {
		n, _ := os.ReadDir(staging)
		return len(n) == 1
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pw.CloseWithError(io.ErrUnexpectedEOF)
	cancel()
	<-done
	hosttest.WaitFor(t, 60*time.Second, "the plugin to restart", func() bool {
		st := h.Plugin(t, "filesystem")
		return st.State == "serving" && st.PID != pid
	})
	if n, _ := os.ReadDir(staging); len(n) != 0 {
		t.Errorf("staging holds %d entries after the restart", len(n))
	}
	code, got, _ := do(t, "GET", fileURL(h, "v"), nil)
	if code != 200 || sha256.Sum256(got) != sha256.Sum256(old) {
		t.Errorf("after the crash GET gives %d, %d bytes; want the previous file", code, len(got))
	}
}

// TestCLIFs drives `dw fs` against the real host and plugin.
func TestCLIFs(t *testing.T) {
	h := startFS(t, "")
	dw := hosttest.Binary(t, "cmd/dw", "dw")
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(dw, args...)
		cmd.Env = append(os.Environ(), "DW_ADDR="+h.Addr)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dw %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	data := randomData(3<<20+17, 4)
	src := filepath.Join(dir, "src.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	run("fs", "put", "cli/dir/file.bin", src, "--priority", "low")
	dst := filepath.Join(dir, "dst.bin")
	run("fs", "get", "cli/dir/file.bin", dst, "--priority", "high")
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the downloaded file differs (%d bytes, %v)", len(got), err)
	}
	var st fileJSON
	if err := json.Unmarshal([]byte(run("fs", "stat", "cli/dir/file.bin", "-o", "json")), &st); err != nil || st.Size != int64(len(data)) {
		t.Fatalf("stat: %+v %v", st, err)
	}
	if out := run("fs", "ls", "cli/dir", "--all"); !strings.Contains(out, "file.bin") {
		t.Fatalf("ls printed %q", out)
	}
	run("fs", "rm", "cli/dir/file.bin")
	if _, err := os.Stat(filepath.Join(h.DataDir, "files", "cli", "dir", "file.bin")); !os.IsNotExist(err) {
		t.Fatalf("after rm the file is still there: %v", err)
	}
	cmd := exec.Command(dw, "fs", "get", "../etc/passwd", filepath.Join(dir, "x"))
	cmd.Env = append(os.Environ(), "DW_ADDR="+h.Addr)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "..") {
		t.Fatalf("dw fs get ../etc/passwd: %v %s", err, out)
	}
}

// TestQuotaPerCaller: each token's name is a caller with its own quota;
// alice's override refuses her second request while bob, on the default
// (unlimited), goes on.
func TestQuotaPerCaller(t *testing.T) {
	dir := t.TempDir()
	hosttest.Plugin(t, dir, "filesystem")
	cfg := "subsystems:\n  filesystem:\n    enabled: true\n    root: files\n" +
		"    limits: {max_throttle_wait: 0s, quota: {callers: {alice: {ops_per_second: 0.01}}}}\n"
	h := hosttest.StartWithTokens(t, dir, cfg, map[string]string{"alice": "alice-secret-token", "bob": "bob-secret-token"})
	h.WaitServing(t, "filesystem", 60*time.Second)
	as := func(token string) []string { return []string{"Authorization", "Bearer " + token} }
	if code, body, _ := do(t, "PUT", fileURL(h, "shared"), strings.NewReader("x"), as("alice-secret-token")...); code != http.StatusCreated {
		t.Fatalf("alice's PUT: %d %s", code, body)
	}
	code, body, hdr := do(t, "HEAD", fileURL(h, "shared"), nil, as("alice-secret-token")...)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("alice's second request within 100 s: %d %s, Retry-After %q", code, body, hdr.Get("Retry-After"))
	}
	for range 5 {
		if code, body, _ := do(t, "HEAD", fileURL(h, "shared"), nil, as("bob-secret-token")...); code != 200 {
			t.Fatalf("bob: %d %s", code, body)
		}
	}
	if code, _, _ := do(t, "HEAD", fileURL(h, "shared"), nil); code != http.StatusUnauthorized {
		t.Errorf("without a token: %d", code)
	}
	m, _ := metrics(t, h)
	if m["quota_refused_total{caller=alice}"] != 1 || m["quota_refused_total{caller=bob}"] != 0 {
		t.Errorf("refusals: alice %v, bob %v", m["quota_refused_total{caller=alice}"], m["quota_refused_total{caller=bob}"])
	}
}
