package main_test

// End-to-end tests: the real dw host (`dw serve`) with the real
// dw-plugin-dbstorage process, over HTTP, on real SQLite files and real
// PostgreSQL servers (internal/pgtest).

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/datawarehouse/dw/internal/hosttest"
	"github.com/datawarehouse/dw/internal/pgtest"
	"github.com/datawarehouse/dw/plugins/internal/tmpfstest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	hosttest.Cleanup()
	os.Exit(code)
}

const chunk = 1 << 20 // the default chunk size

// dbConfig is the subsystems section enabling dbstorage with the given
// strategies (YAML flow entries) and limits.
func dbConfig(strategies []string, defaultStrategy, limits string) string {
	var b strings.Builder
	b.WriteString("subsystems:\n  dbstorage:\n    enabled: true\n    strategies:\n")
	for _, s := range strategies {
		b.WriteString("      - " + s + "\n")
	}
	b.WriteString("    default_strategy: " + defaultStrategy + "\n")
	if limits != "" {
		b.WriteString("    limits: " + limits + "\n")
	}
	return b.String()
}

const sqliteStrategy = "{name: primary, driver: sqlite, dsn: db/objects.sqlite}"

func pgStrategy(t testing.TB) string {
	t.Helper()
	dsn := pgtest.Shared(t).CreateDatabase(t, "")
	return fmt.Sprintf("{name: pg, driver: postgres, dsn: %q}", dsn)
}

// startDB starts a host whose dbstorage has a SQLite strategy "primary"
// and, with withPG, a PostgreSQL strategy "pg".
func startDB(t testing.TB, withPG bool, limits string) *hosttest.Host {
	t.Helper()
	dir := t.TempDir()
	hosttest.Plugin(t, dir, "dbstorage")
	strategies := []string{sqliteStrategy}
	if withPG {
		strategies = append(strategies, pgStrategy(t))
	}
	h := hosttest.Start(t, dir, dbConfig(strategies, "primary", limits))
	h.WaitServing(t, "dbstorage", 60*time.Second)
	return h
}

// objectJSON is an object as the API shows it.
type objectJSON struct {
	Key         string            `json:"key"`
	Size        int64             `json:"size"`
	SHA256      string            `json:"sha256"`
	ContentType string            `json:"content_type"`
	Metadata    map[string]string `json:"metadata"`
	CreatedAt   time.Time         `json:"created_at"`
	ModifiedAt  time.Time         `json:"modified_at"`
	Strategy    string            `json:"strategy"`
}

type listJSON struct {
	Items         []objectJSON `json:"items"`
	TotalCount    *int64       `json:"total_count"`
	HasMore       bool         `json:"has_more"`
	NextPageToken string       `json:"next_page_token"`
}

type errorJSON struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func objectURL(h *hosttest.Host, key, query string) string {
	u := h.URL + "/v1/objects/" + escapeKey(key)
	if query != "" {
		u += "?" + query
	}
	return u
}

// escapeKey percent-encodes every byte of key that is not unreserved or
// '/', so that the host sees the key unchanged.
func escapeKey(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '/' || c == '-' || c == '_' || c == '.' || c == '~' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// pattern is a fast deterministic reader of n bytes: a random 1 MiB block
// repeated, each copy stamped with its index so that no two chunks match.
type pattern struct {
	block []byte
	n     int64
	off   int64
}

var blockOnce = sync.OnceValue(func() []byte {
	b := make([]byte, chunk)
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	_, _ = r.Read(b)
	return b
})

func newPattern(n int64) *pattern { return &pattern{block: blockOnce(), n: n} }

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	total := 0
	for len(b) > 0 && p.off < p.n {
		i := p.off % int64(len(p.block))
		k := copy(b, p.block[i:min(int64(len(p.block)), i+p.n-p.off)])
		// Stamp the block index over the first 8 bytes of each block.
		if i < 8 {
			var stamp [8]byte
			idx := uint64(p.off / int64(len(p.block)))
			for j := range stamp {
				stamp[j] = byte(idx >> (8 * j))
			}
			for j := i; j < 8 && j-i < int64(k); j++ {
				b[j-i] = stamp[j] ^ p.block[j]
			}
		}
		b = b[k:]
		total += k
		p.off += int64(k)
	}
	return total, nil
}

func patternSum(t testing.TB, n int64) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, newPattern(n)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// put stores body (of length size, or -1 for chunked) and returns the
// status and the decoded answer.
func put(t testing.TB, h *hosttest.Host, key, query string, body io.Reader, size int64, header http.Header) (int, objectJSON, errorJSON) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, objectURL(h, key, query), body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", key, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var o objectJSON
	var e errorJSON
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, &o); err != nil {
			t.Fatalf("PUT %s: %v: %s", key, err, data)
		}
	} else {
		_ = json.Unmarshal(data, &e)
	}
	return resp.StatusCode, o, e
}

// getHash GETs key (with an optional Range) and returns the status, the
// response and the SHA-256 and length of its body.
func getHash(t testing.TB, h *hosttest.Host, key, query, rng string) (int, *http.Response, string, int64) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, objectURL(h, key, query), nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	defer resp.Body.Close()
	sum := sha256.New()
	n, err := io.Copy(sum, resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", key, err)
	}
	return resp.StatusCode, resp, hex.EncodeToString(sum.Sum(nil)), n
}

func request(t testing.TB, method, u string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, data, resp.Header
}

func forEachStrategy(t *testing.T, h *hosttest.Host, withPG bool, fn func(t *testing.T, query string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, "") })
	if withPG {
		t.Run("postgres", func(t *testing.T) { fn(t, "strategy=pg") })
	}
}

func TestObjectRoundTrips(t *testing.T) {
	h := startDB(t, true, "")
	forEachStrategy(t, h, true, func(t *testing.T, query string) {
		for _, size := range []int64{0, 1, chunk - 1, chunk, chunk + 1, 3*chunk + 7} {
			key := fmt.Sprintf("round/trip/%d", size)
			want := patternSum(t, size)
			hdr := http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "X-Dw-Meta-Owner": {"alice"}}
			code, o, e := put(t, h, key, query, newPattern(size), size, hdr)
			if code != 200 {
				t.Fatalf("PUT %d bytes: %d %+v", size, code, e)
			}
			if o.SHA256 != want || o.Size != size || o.Key != key {
				t.Fatalf("PUT %d bytes answered %+v, want sha %s", size, o, want)
			}
			code, resp, got, n := getHash(t, h, key, query, "")
			if code != 200 || got != want || n != size {
				t.Fatalf("GET %d bytes: status %d, %d bytes, sha %s, want %s", size, code, n, got, want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Fatalf("Content-Type %q", ct)
			}
			if m := resp.Header.Get("X-Dw-Meta-Owner"); m != "alice" {
				t.Fatalf("X-DW-Meta-Owner %q", m)
			}
			if etag := resp.Header.Get("ETag"); etag != `"`+want+`"` {
				t.Fatalf("ETag %q", etag)
			}
			code, _, hdrs := request(t, http.MethodHead, objectURL(h, key, query))
			if code != 200 || hdrs.Get("Content-Length") != strconv.FormatInt(size, 10) {
				t.Fatalf("HEAD: %d, Content-Length %q", code, hdrs.Get("Content-Length"))
			}
			if size > 10 {
				// A range that starts in the last chunk reads nothing before it.
				first := size - 10
				code, resp, _, n := getHash(t, h, key, query, fmt.Sprintf("bytes=%d-", first))
				if code != 206 || n != 10 || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", first, size-1, size) {
					t.Fatalf("suffix range: %d, %d bytes, Content-Range %q", code, n, resp.Header.Get("Content-Range"))
				}
			}
		}
		if code, _, _ := request(t, http.MethodGet, objectURL(h, "round/trip/missing", query)); code != 404 {
			t.Fatalf("GET missing: %d", code)
		}
		for i := 0; i < 2; i++ { // DELETE is idempotent
			if code, _, _ := request(t, http.MethodDelete, objectURL(h, "round/trip/1", query)); code != 204 {
				t.Fatalf("DELETE #%d: %d", i+1, code)
			}
		}
		if code, _, _ := request(t, http.MethodGet, objectURL(h, "round/trip/1", query)); code != 404 {
			t.Fatalf("GET after DELETE: %d", code)
		}
	})
}

func TestRanges(t *testing.T) {
	h := startDB(t, false, "")
	const size = 3*chunk + 100
	if code, _, e := put(t, h, "ranged", "", newPattern(size), size, nil); code != 200 {
		t.Fatalf("PUT: %d %+v", code, e)
	}
	all, _ := io.ReadAll(newPattern(size))
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	for _, tt := range []struct {
		rng        string
		start, end int64 // inclusive
	}{
		{"bytes=0-0", 0, 0},
		{"bytes=0-99", 0, 99},
		{fmt.Sprintf("bytes=%d-%d", chunk-5, 2*chunk+5), chunk - 5, 2*chunk + 5}, // spans three chunks
		{fmt.Sprintf("bytes=%d-", 2*chunk), 2 * chunk, size - 1},
		{"bytes=-100", size - 100, size - 1},
		{fmt.Sprintf("bytes=%d-%d", size-1, size+1000), size - 1, size - 1}, // past the end is cut
	} {
		code, resp, got, n := getHash(t, h, "ranged", "", tt.rng)
		if code != 206 || n != tt.end-tt.start+1 || got != sum(all[tt.start:tt.end+1]) {
			t.Fatalf("%s: status %d, %d bytes (want %d), hash match %v", tt.rng, code, n, tt.end-tt.start+1, got == sum(all[tt.start:tt.end+1]))
		}
		if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes %d-%d/%d", tt.start, tt.end, size) {
			t.Fatalf("%s: Content-Range %q", tt.rng, cr)
		}
	}
	code, resp, _, _ := getHash(t, h, "ranged", "", fmt.Sprintf("bytes=%d-", size))
	if code != 416 || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
		t.Fatalf("range past the end: %d, Content-Range %q", code, resp.Header.Get("Content-Range"))
	}
	for _, bad := range []string{"bytes=abc", "bytes=5-1", "lines=0-1", "bytes=0-1,5-6"} {
		if code, _, _, _ := getHash(t, h, "ranged", "", bad); code != 400 {
			t.Fatalf("Range %q: %d, want 400", bad, code)
		}
	}
}

// TestLargeObjectsBoundedMemory moves 256 MiB and 1 GiB objects through the
// host on each strategy and checks that neither the host's nor the
// plugin's peak RSS grows with the object size.
func TestLargeObjectsBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves several GiB; skipped with -short")
	}
	h := startDB(t, true, "")
	// Idle sizes: the fresh processes, before any transfer.
	plugin := h.Plugin(t, "dbstorage").PID
	idleHost, idlePlugin := rss(t, h.PID()), rss(t, plugin)
	t.Logf("idle RSS: host %.1f MiB, plugin %.1f MiB", mib(idleHost), mib(idlePlugin))
	forEachStrategy(t, h, true, func(t *testing.T, query string) {
		peaks := map[int64][2]int64{}
		for _, size := range []int64{256 << 20, 1 << 30} {
			if pid := h.Plugin(t, "dbstorage").PID; pid != plugin {
				t.Fatalf("the plugin was restarted (pid %d → %d)", plugin, pid)
			}
			key := fmt.Sprintf("large/%d", size)
			want := patternSum(t, size)
			resetPeak(t, h.PID())
			resetPeak(t, plugin)
			code, o, e := put(t, h, key, query, newPattern(size), size, nil)
			if code != 200 || o.SHA256 != want {
				t.Fatalf("PUT %d MiB: %d %+v %+v", size>>20, code, o, e)
			}
			code, _, got, n := getHash(t, h, key, query, "")
			if code != 200 || got != want || n != size {
				t.Fatalf("GET %d MiB: %d, %d bytes, sha match %v", size>>20, code, n, got == want)
			}
			hostPeak, pluginPeak := peak(t, h.PID())-idleHost, peak(t, plugin)-idlePlugin
			t.Logf("%d MiB: peak RSS above idle: host %.1f MiB, plugin %.1f MiB", size>>20, mib(hostPeak), mib(pluginPeak))
			peaks[size] = [2]int64{hostPeak, pluginPeak}
			if code, _, _ := request(t, http.MethodDelete, objectURL(h, key, query)); code != 204 {
				t.Fatalf("DELETE: %d", code)
			}
		}
		small, large := peaks[256<<20], peaks[1<<30]
		for i, who := range []string{"host", "plugin"} {
			if large[i] > 64<<20 {
				t.Errorf("%s peak RSS %.1f MiB above idle during a 1 GiB transfer; the bound is 64 MiB", who, mib(large[i]))
			}
			if large[i] > small[i]+16<<20 {
				t.Errorf("%s peak RSS grows with object size: %.1f MiB above idle for 256 MiB, %.1f MiB for 1 GiB", who, mib(small[i]), mib(large[i]))
			}
		}
	})
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func rss(t testing.TB, pid int) int64 {
	t.Helper()
	n, err := hosttest.RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func peak(t testing.TB, pid int) int64 {
	t.Helper()
	n, err := hosttest.PeakRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func resetPeak(t testing.TB, pid int) {
	t.Helper()
	if err := hosttest.ResetPeakRSS(pid); err != nil {
		t.Fatalf("reset peak RSS of pid %d: %v", pid, err)
	}
}

func list(t testing.TB, h *hosttest.Host, query string) (int, listJSON, errorJSON) {
	t.Helper()
	code, data, _ := request(t, http.MethodGet, h.URL+"/v1/objects?"+query)
	var l listJSON
	var e errorJSON
	if code == 200 {
		if err := json.Unmarshal(data, &l); err != nil {
			t.Fatalf("list %s: %v: %s", query, err, data)
		}
	} else {
		_ = json.Unmarshal(data, &e)
	}
	return code, l, e
}

func putSmall(t testing.TB, h *hosttest.Host, key, query, body string) {
	t.Helper()
	if code, _, e := put(t, h, key, query, strings.NewReader(body), int64(len(body)), nil); code != 200 {
		t.Fatalf("PUT %s: %d %+v", key, code, e)
	}
}

// TestPaginationUnderConcurrentWrites pages through a prefix with a page
// token while other clients insert and delete keys between the stable ones:
// every stable key comes back exactly once and no key twice.
func TestPaginationUnderConcurrentWrites(t *testing.T) {
	h := startDB(t, true, "")
	forEachStrategy(t, h, true, func(t *testing.T, query string) {
		const stable = 600
		for i := 0; i < stable; i++ {
			putSmall(t, h, fmt.Sprintf("page/%05d", i*2), query, "s")
			if i%3 == 0 { // doomed: deleted by the writers during the listing
				putSmall(t, h, fmt.Sprintf("page/%05d-doomed", i*2), query, "d")
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var ops atomic.Int64
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					// Spread over the whole range, ahead of and behind the cursor.
					pos := (i*7919 + w*104729) % stable * 2
					key := fmt.Sprintf("page/%05d-churn-%d-%d", pos, w, i)
					putSmall(t, h, key, query, "c")
					if i%2 == 1 {
						request(t, http.MethodDelete, objectURL(h, key, query))
					}
					if pos%6 == 0 {
						request(t, http.MethodDelete, objectURL(h, fmt.Sprintf("page/%05d-doomed", pos), query))
					}
					ops.Add(1)
				}
			}()
		}
		hosttest.WaitFor(t, 30*time.Second, "the writers to start", func() bool { return ops.Load() >= 10 })
		seen := map[string]int{}
		token := ""
		pages := 0
		for {
			q := "prefix=page/&limit=23"
			if query != "" {
				q += "&" + query
			}
			if token != "" {
				q += "&page_token=" + url.QueryEscape(token)
			}
			code, l, e := list(t, h, q)
			if code != 200 {
				close(stop)
				wg.Wait()
				t.Fatalf("page %d: %d %+v", pages, code, e)
			}
			pages++
			for _, it := range l.Items {
				seen[it.Key]++
			}
			// Let the writers move between pages.
			before := ops.Load()
			hosttest.WaitFor(t, 30*time.Second, "a write between pages", func() bool { return ops.Load() > before })
			if !l.HasMore {
				break
			}
			token = l.NextPageToken
		}
		close(stop)
		wg.Wait()
		for k, n := range seen {
			if n != 1 {
				t.Errorf("key %s listed %d times", k, n)
			}
		}
		for i := 0; i < stable; i++ {
			if seen[fmt.Sprintf("page/%05d", i*2)] != 1 {
				t.Errorf("stable key page/%05d missing from the listing", i*2)
			}
		}
		churn := 0
		for k := range seen {
			if strings.Contains(k, "churn") {
				churn++
			}
		}
		t.Logf("%d pages, %d keys seen (%d written during the listing), %d writes", pages, len(seen), churn, ops.Load())
	})
}

func TestListingParameters(t *testing.T) {
	h := startDB(t, false, "{default_page_size: 5, max_page_size: 20}")
	for i := 0; i < 30; i++ {
		putSmall(t, h, fmt.Sprintf("lp/a/%02d", i), "", "x")
	}
	putSmall(t, h, "lp/b/1", "", "x")

	code, l, _ := list(t, h, "prefix=lp/a/")
	if code != 200 || len(l.Items) != 5 || !l.HasMore || l.NextPageToken == "" || l.TotalCount != nil {
		t.Fatalf("default page: %d, %d items, has_more %v, total %v", code, len(l.Items), l.HasMore, l.TotalCount)
	}
	code, l, _ = list(t, h, "prefix=lp/a/&limit=1000&count=true")
	if code != 200 || len(l.Items) != 20 || l.TotalCount == nil || *l.TotalCount != 30 {
		t.Fatalf("capped page with count: %d, %d items, total %v", code, len(l.Items), l.TotalCount)
	}
	code, l, _ = list(t, h, "prefix=lp/a/&limit=10&offset=25")
	if code != 200 || len(l.Items) != 5 || l.Items[0].Key != "lp/a/25" || l.HasMore {
		t.Fatalf("offset: %d %+v", code, l)
	}
	// A token continues after the last key of its page.
	_, first, _ := list(t, h, "prefix=lp/a/&limit=10")
	code, second, _ := list(t, h, "prefix=lp/a/&limit=10&page_token="+url.QueryEscape(first.NextPageToken))
	if code != 200 || second.Items[0].Key != "lp/a/10" {
		t.Fatalf("second page: %d %+v", code, second.Items)
	}

	raw, _ := base64.RawURLEncoding.DecodeString(first.NextPageToken)
	raw[len(raw)-40] ^= 0xff // inside the key
	for _, tt := range []struct{ name, query, want string }{
		{"limit zero", "limit=0", "limit"},
		{"limit negative", "limit=-3", "limit"},
		{"limit not a number", "limit=ten", "limit"},
		{"offset negative", "offset=-1", "offset"},
		{"offset not a number", "offset=x", "offset"},
		{"offset with token", "prefix=lp/a/&offset=3&page_token=" + url.QueryEscape(first.NextPageToken), "offset"},
		{"tampered token", "prefix=lp/a/&page_token=" + base64.RawURLEncoding.EncodeToString(raw), "page_token"},
		{"garbage token", "prefix=lp/a/&page_token=%21%21", "page_token"},
		{"token of another prefix", "prefix=lp/b/&page_token=" + url.QueryEscape(first.NextPageToken), "another query"},
		{"token of another strategy", "prefix=lp/a/&strategy=nope&page_token=" + url.QueryEscape(first.NextPageToken), "strategy"},
		{"unknown parameter", "perfix=lp/", "perfix"},
		{"bad count", "count=maybe", "count"},
	} {
		code, _, e := list(t, h, tt.query)
		if code != 400 || !strings.Contains(e.Error.Message, tt.want) {
			t.Errorf("%s (%s): %d %q, want 400 mentioning %q", tt.name, tt.query, code, e.Error.Message, tt.want)
		}
	}
}

func TestListStream(t *testing.T) {
	h := startDB(t, false, "")
	const n = 2500
	for i := 0; i < n; i++ {
		putSmall(t, h, fmt.Sprintf("ls/%05d", i), "", "x")
	}
	putSmall(t, h, "other", "", "x")
	resp, err := http.Get(h.URL + "/v1/objects?prefix=ls/&stream=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	i := 0
	for sc.Scan() {
		var o objectJSON
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, sc.Bytes())
		}
		if want := fmt.Sprintf("ls/%05d", i); o.Key != want {
			t.Fatalf("line %d: key %q, want %q", i, o.Key, want)
		}
		i++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Fatalf("%d lines, want %d", i, n)
	}
}

// healthJSON is GET /v1/subsystems/dbstorage/health.
type healthJSON struct {
	Status     string `json:"status"`
	Components []struct {
		Name    string `json:"name"`
		Status  string `json:"status"`
		Message string `json:"message"`
	} `json:"components"`
}

// TestHungStrategy: a PostgreSQL strategy whose server accepts connections
// and never answers is reported unhealthy at its health_timeout while the
// SQLite strategy reports at once and keeps serving; requests to the hung
// strategy get 503.
func TestHungStrategy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // never read, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	dir := t.TempDir()
	hosttest.Plugin(t, dir, "dbstorage")
	hung := fmt.Sprintf("{name: hung, driver: postgres, dsn: \"postgres://dw@%s/dw?connect_timeout=600\"}", ln.Addr())
	h := hosttest.Start(t, dir, dbConfig([]string{sqliteStrategy, hung}, "primary", "{health_timeout: 700ms, health_interval: 1h}"))
	h.WaitServing(t, "dbstorage", 60*time.Second)

	var health healthJSON
	if code := h.JSON(t, "GET", "/v1/subsystems/dbstorage/health", nil, &health); code != 200 {
		t.Fatalf("health: %d", code)
	}
	byName := map[string]string{}
	for _, c := range health.Components {
		byName[c.Name] = c.Status + ": " + c.Message
	}
	if health.Status != "degraded" || !strings.HasPrefix(byName["primary"], "serving") || !strings.HasPrefix(byName["hung"], "not_serving") {
		t.Fatalf("health %+v", health)
	}
	if !strings.Contains(byName["hung"], "health_timeout") {
		t.Fatalf("hung strategy's message does not name the deadline: %s", byName["hung"])
	}
	if code, _, _ := request(t, http.MethodGet, objectURL(h, "x", "strategy=hung")); code != 503 {
		t.Fatalf("GET on the hung strategy: %d, want 503", code)
	}
	putSmall(t, h, "still/works", "", "yes")
	_, data, _ := request(t, http.MethodGet, h.URL+"/metrics")
	if !strings.Contains(string(data), `dw_dbstorage_strategy_healthy{driver="postgres",strategy="hung"} 0`) ||
		!strings.Contains(string(data), `dw_dbstorage_strategy_healthy{driver="sqlite",strategy="primary"} 1`) {
		t.Fatalf("metrics lack the strategy health:\n%s", grepLines(string(data), "strategy_healthy"))
	}
	if !strings.Contains(h.Logs(), "strategy unhealthy") {
		t.Fatal("the unhealthy strategy was not logged")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestKill9DuringPut kills the plugin in the middle of a PUT that replaces
// an object: the previous version stays whole.
func TestKill9DuringPut(t *testing.T) {
	h := startDB(t, true, "")
	forEachStrategy(t, h, true, func(t *testing.T, query string) {
		const oldSize = 2*chunk + 5
		code, old, e := put(t, h, "victim", query, newPattern(oldSize), oldSize, nil)
		if code != 200 {
			t.Fatalf("PUT v1: %d %+v", code, e)
		}
		pid := h.Plugin(t, "dbstorage").PID
		pr, pw := io.Pipe()
		done := make(chan int, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPut, objectURL(h, "victim", query), pr)
			req.ContentLength = 64 << 20
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- -1
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		// Send 8 MiB of the new version (more than a few chunks, so some
		// are in the database), then kill the plugin mid-upload.
		if _, err := io.CopyN(pw, rand.NewChaCha8([32]byte{9}), 8<<20); err != nil {
			t.Fatal(err)
		}
		hosttest.WaitFor(t, 30*time.Second, "the plugin to have received data", func() bool {
			return metric(t, h, "dw_dbstorage_bytes_in_total") >= 4<<20
		})
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		pw.CloseWithError(fmt.Errorf("client gives up"))
		if code := <-done; code == 200 {
			t.Fatal("the interrupted PUT succeeded")
		}
		hosttest.WaitFor(t, 60*time.Second, "the plugin to be restarted", func() bool {
			st := h.Plugin(t, "dbstorage")
			return st.State == "serving" && st.PID != pid
		})
		code, _, got, n := getHash(t, h, "victim", query, "")
		if code != 200 || got != old.SHA256 || n != oldSize {
			t.Fatalf("after kill -9: GET %d, %d bytes, sha %s, want the previous version %s", code, n, got, old.SHA256)
		}
	})
}

// metric returns the value of an unlabelled metric from GET /metrics.
func metric(t testing.TB, h *hosttest.Host, name string) float64 {
	t.Helper()
	_, data, _ := request(t, http.MethodGet, h.URL+"/metrics")
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return 0
}

// TestLiveLimits changes the page sizes through the config file: applied
// without a restart; a nonsensical change is refused and the old limits
// stay.
func TestLiveLimits(t *testing.T) {
	h := startDB(t, false, "{default_page_size: 3}")
	pid := h.Plugin(t, "dbstorage").PID
	for i := 0; i < 12; i++ {
		putSmall(t, h, fmt.Sprintf("live/%02d", i), "", "x")
	}
	if _, l, _ := list(t, h, "prefix=live/"); len(l.Items) != 3 {
		t.Fatalf("before: %d items", len(l.Items))
	}
	h.WriteConfig(t, dbConfig([]string{sqliteStrategy}, "primary", "{default_page_size: 7}"))
	hosttest.WaitFor(t, 30*time.Second, "the new default_page_size", func() bool {
		_, l, _ := list(t, h, "prefix=live/")
		return len(l.Items) == 7
	})
	if st := h.Plugin(t, "dbstorage"); st.PID != pid {
		t.Fatalf("the plugin was restarted for a limit change (pid %d → %d)", pid, st.PID)
	}
	var before struct {
		Generation uint64 `json:"generation"`
	}
	h.JSON(t, "GET", "/v1/config", nil, &before)
	h.WriteConfig(t, dbConfig([]string{sqliteStrategy}, "primary", "{default_page_size: 50, max_page_size: 10}"))
	var cfg struct {
		Generation uint64 `json:"generation"`
		LastReload struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"last_reload"`
	}
	hosttest.WaitFor(t, 30*time.Second, "the refused reload", func() bool {
		h.JSON(t, "GET", "/v1/config", nil, &cfg)
		return !cfg.LastReload.OK && cfg.LastReload.Error != ""
	})
	if !strings.Contains(cfg.LastReload.Error, "default_page_size") || cfg.Generation != before.Generation {
		t.Fatalf("refused reload: %+v (generation before %d)", cfg, before.Generation)
	}
	if _, l, _ := list(t, h, "prefix=live/"); len(l.Items) != 7 {
		t.Fatalf("after a refused reload: %d items, want the old 7", len(l.Items))
	}
}

// TestKeysSurviveUnchanged stores keys that HTTP paths like to rewrite.
func TestKeysSurviveUnchanged(t *testing.T) {
	h := startDB(t, false, "")
	keys := []string{"a//b", "x/../y", "./dot", "sp ace", "per%cent", "q?mark", "hash#tag", "ünï/cødé/☃", strings.Repeat("k", 1024), "/leading", "trailing/"}
	for i, k := range keys {
		putSmall(t, h, k, "", strconv.Itoa(i))
		code, data, _ := request(t, http.MethodGet, objectURL(h, k, ""))
		if code != 200 || string(data) != strconv.Itoa(i) {
			t.Fatalf("key %q: %d %q", k, code, data)
		}
	}
	_, l, _ := list(t, h, "limit=100")
	got := map[string]bool{}
	for _, it := range l.Items {
		got[it.Key] = true
	}
	for _, k := range keys {
		if !got[k] {
			t.Errorf("key %q not listed as stored", k)
		}
	}
	for _, bad := range []string{strings.Repeat("k", 1025), "nul\x00byte", "\xff\xfe"} {
		code, _, e := put(t, h, bad, "", strings.NewReader("x"), 1, nil)
		if code != 400 || e.Error.Message == "" {
			t.Errorf("key %q: %d %+v, want 400 with the rule", bad, code, e)
		}
	}
}

// TestHealthLoopFollowsOutage: without anyone asking, the background
// checks (every health_interval) mark a PostgreSQL strategy unhealthy when
// its server dies — requests to it get 503 while SQLite keeps serving —
// and healthy again when a server answers on its address.
func TestHealthLoopFollowsOutage(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.CreateDatabase(t, "healthloop")
	dir := t.TempDir()
	hosttest.Plugin(t, dir, "dbstorage")
	pg := fmt.Sprintf("{name: pg, driver: postgres, dsn: %q}", dsn)
	h := hosttest.Start(t, dir, dbConfig([]string{sqliteStrategy, pg}, "primary", "{health_timeout: 300ms, health_interval: 400ms}"))
	h.WaitServing(t, "dbstorage", 60*time.Second)
	putSmall(t, h, "before", "strategy=pg", "x")

	healthy := func() string {
		_, data, _ := request(t, http.MethodGet, h.URL+"/metrics")
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, `dw_dbstorage_strategy_healthy{driver="postgres",strategy="pg"}`) {
				return l[strings.LastIndexByte(l, ' ')+1:]
			}
		}
		return ""
	}
	hosttest.WaitFor(t, 30*time.Second, "pg healthy", func() bool { return healthy() == "1" })
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	hosttest.WaitFor(t, 30*time.Second, "the health loop to mark pg unhealthy", func() bool { return healthy() == "0" })
	t.Logf("pg marked unhealthy %v after its server was killed", time.Since(killed).Round(time.Millisecond))
	if code, _, _ := request(t, http.MethodGet, objectURL(h, "before", "strategy=pg")); code != 503 {
		t.Fatalf("GET on the dead strategy: %d, want 503", code)
	}
	putSmall(t, h, "sqlite/still/works", "", "y")

	// A server on the same address brings the strategy back.
	again := pgtest.Start(t, pgtest.WithPort(srv.Port()))
	again.CreateDatabase(t, "healthloop")
	back := time.Now()
	hosttest.WaitFor(t, 60*time.Second, "the health loop to mark pg healthy again", func() bool { return healthy() == "1" })
	t.Logf("pg marked healthy %v after a server answered again", time.Since(back).Round(time.Millisecond))
	if !strings.Contains(h.Logs(), "strategy healthy again") {
		t.Fatal("the recovery was not logged")
	}
}

// TestCLIObj drives `dw obj` against the real host and plugin.
func TestCLIObj(t *testing.T) {
	h := startDB(t, false, "")
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
	src := filepath.Join(dir, "src.bin")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	const size = 3*chunk + 17
	if _, err := io.Copy(f, newPattern(size)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := patternSum(t, size)

	if out := run("obj", "put", "cli/dir/file.bin", src, "--meta", "owner=bob"); !strings.Contains(out, want) {
		t.Fatalf("put printed %q, want the sha256 %s", out, want)
	}
	dst := filepath.Join(dir, "dst.bin")
	run("obj", "get", "cli/dir/file.bin", dst)
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(got); hex.EncodeToString(sum[:]) != want {
		t.Fatal("the downloaded file differs")
	}
	var st objectJSON
	if err := json.Unmarshal([]byte(run("obj", "stat", "cli/dir/file.bin", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size || st.Metadata["owner"] != "bob" || st.SHA256 != want {
		t.Fatalf("stat %+v", st)
	}
	if out := run("obj", "ls", "cli/"); !strings.Contains(out, "cli/dir/file.bin") {
		t.Fatalf("ls printed %q", out)
	}
	part := run("obj", "get", "cli/dir/file.bin", "-", "--range", "-17")
	if len(part) != 17 {
		t.Fatalf("ranged get printed %d bytes, want 17", len(part))
	}
	run("obj", "rm", "cli/dir/file.bin")
	if code, _, _ := request(t, http.MethodHead, objectURL(h, "cli/dir/file.bin", "")); code != 404 {
		t.Fatalf("HEAD after rm: %d", code)
	}
}

// TestFullDiskCostsTheFailedWriteOnly (the real plugin, its SQLite file on
// a 64 MiB tmpfs): a PUT larger than the free space fails with 503 saying
// the volume is full; afterwards the WAL is back to zero, a small PUT
// succeeds, the earlier objects read whole, the health shows the free
// space, and a plugin killed and restarted on the still-tight volume
// reads and writes.
func TestFullDiskCostsTheFailedWriteOnly(t *testing.T) {
	vol := tmpfstest.Mount(t, 64)
	dbPath := filepath.Join(vol, "db", "objects.sqlite")
	dir := t.TempDir()
	hosttest.Plugin(t, dir, "dbstorage")
	h := hosttest.Start(t, dir, dbConfig([]string{fmt.Sprintf("{name: primary, driver: sqlite, dsn: %q}", dbPath)}, "primary", ""))
	h.WaitServing(t, "dbstorage", 60*time.Second)

	const keptSize = 4 * chunk
	var keys []string
	for i := range 4 {
		key := fmt.Sprintf("kept/%d", i)
		if code, _, e := put(t, h, key, "", newPattern(keptSize), keptSize, nil); code != 200 {
			t.Fatalf("PUT %s: %d %+v", key, code, e)
		}
		keys = append(keys, key)
	}
	tmpfstest.Fill(t, filepath.Join(vol, "filler"), 16<<20)

	// Of unknown size (chunked), so that it runs until the volume is full.
	code, _, e := put(t, h, "big", "", io.LimitReader(newPattern(100<<20), 100<<20), -1, nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(e.Error.Message, "volume") || !strings.Contains(e.Error.Message, "free") {
		t.Fatalf("PUT of 100 MiB on a 64 MiB volume: %d %+v; want 503 saying the volume is full", code, e)
	}
	t.Logf("PUT of 100 MiB: %d %s", code, e.Error.Message)
	walSize := func() int64 {
		fi, err := os.Stat(dbPath + "-wal")
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	hosttest.WaitFor(t, 90*time.Second, "the WAL to be checkpointed back to zero", func() bool { return walSize() == 0 })

	check := func(when string) {
		t.Helper()
		want := patternSum(t, keptSize)
		for _, key := range keys {
			if code, _, got, n := getHash(t, h, key, "", ""); code != 200 || got != want || n != keptSize {
				t.Fatalf("%s: GET %s: %d, %d bytes", when, key, code, n)
			}
		}
		putSmall(t, h, "small/"+strings.ReplaceAll(when, " ", "-"), "", "still writable")
	}
	check("after the full disk")

	var health healthJSON
	if code := h.JSON(t, "GET", "/v1/subsystems/dbstorage/health", nil, &health); code != 200 || len(health.Components) != 1 ||
		!strings.Contains(health.Components[0].Message, "free_bytes=") {
		t.Fatalf("health: %d %+v; want the volume's free_bytes", code, health)
	}
	if _, data, _ := request(t, http.MethodGet, h.URL+"/metrics"); !strings.Contains(string(data), `dw_dbstorage_volume_free_bytes{strategy="primary"}`) {
		t.Fatalf("metrics lack the volume's free space:\n%s", grepLines(string(data), "dbstorage_"))
	}

	pid := h.Plugin(t, "dbstorage").PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	hosttest.WaitFor(t, 60*time.Second, "the plugin to be restarted", func() bool {
		st := h.Plugin(t, "dbstorage")
		return st.State == "serving" && st.PID != pid
	})
	check("after a restart")
}
