package netguard

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// bound is how long a test waits for what must happen: a failure bound,
// not a timing assertion.
const bound = 30 * time.Second

// serve runs h behind BodyDeadlines with policy p on a real server.
func serve(t *testing.T, p Policy, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(BodyDeadlines(h, p))
	srv.Config.ErrorLog = nil
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// rawConn opens a connection and sends head (the request line and
// headers, without the blank line) and then body.
func rawConn(t *testing.T, addr, head, body string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, head+"\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// answerThenEOF reads one response from br and then expects the server to
// close the connection; it returns the status.
func answerThenEOF(t *testing.T, c net.Conn, br *bufio.Reader) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(bound))
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response before the connection ended: %v", err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection not closed after the %d answer: %v", res.StatusCode, err)
	}
	return res.StatusCode
}

var quick = Policy{Window: 300 * time.Millisecond, MinBytes: 1024}

// The reproduction of the issue: an early answer to a request whose body
// never comes. net/http drains such a body before the answer, with no
// deadline of its own: without BodyDeadlines the 401 is never sent.
func TestStalledBodyBeforeEarlyAnswerIsCut(t *testing.T) {
	addr := serve(t, quick, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	})
	c, br := rawConn(t, addr, "PUT /v1/objects/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10", "")
	if got := answerThenEOF(t, c, br); got != http.StatusUnauthorized {
		t.Errorf("status = %d, want 401", got)
	}
}

// A handler that reads the body sees *SlowBodyError when the body stops
// half-way; its 408 reaches the client, then the connection closes.
func TestStalledBodyFailsTheRead(t *testing.T) {
	readErr := make(chan error, 1)
	addr := serve(t, quick, func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
		w.WriteHeader(http.StatusRequestTimeout)
	})
	c, br := rawConn(t, addr, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10", "12345")
	if got := answerThenEOF(t, c, br); got != http.StatusRequestTimeout {
		t.Errorf("status = %d, want 408", got)
	}
	err := <-readErr
	var sbe *SlowBodyError
	if !errors.As(err, &sbe) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read error = %v (%T), want *SlowBodyError wrapping os.ErrDeadlineExceeded", err, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "1024 bytes in 300ms") {
		t.Errorf("message %q does not name the minimum rate", msg)
	}
}

// A body that trickles (a byte every 20ms: 15 bytes per 300ms window,
// below 1024) is cut although bytes keep coming.
func TestTricklingBodyIsCut(t *testing.T) {
	readErr := make(chan error, 1)
	addr := serve(t, quick, func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		readErr <- err
		w.WriteHeader(http.StatusRequestTimeout)
	})
	c, _ := rawConn(t, addr, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000", "")
	stop := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); <-trickled }()
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read error = %v, want a slow body error", err)
		}
	case <-time.After(bound):
		t.Fatal("a trickling body was not cut")
	}
}

// A slow but live body (well above the minimum rate) is read in full over
// many windows, and the time the handler pauses between reads is not
// charged to the client.
func TestSlowButLiveBodyAndServerPausesPass(t *testing.T) {
	p := Policy{Window: time.Second, MinBytes: 1024}
	const chunk, chunks = 4096, 30 // 30 × 100ms: three windows
	type result struct {
		n   int64
		err error
	}
	got := make(chan result, 1)
	addr := serve(t, p, func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, chunk)
		var n int64
		for {
			m, err := r.Body.Read(buf)
			n += int64(m)
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				got <- result{n, err}
				break
			}
			if n == chunk*5 {
				time.Sleep(3 * p.Window) // the server is busy: not the client's time
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c, br := rawConn(t, addr, fmt.Sprintf("PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d", chunk*chunks), "")
	for range chunks {
		if _, err := c.Write([]byte(strings.Repeat("b", chunk))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := <-got
	if r.err != nil || r.n != chunk*chunks {
		t.Fatalf("read %d bytes, err %v; want %d, nil", r.n, r.err, chunk*chunks)
	}
	_ = c.SetReadDeadline(time.Now().Add(bound))
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusNoContent {
		t.Fatalf("response %v, %v; want 204", res, err)
	}
}

// Once the body has been read to its end the deadline is gone: a handler
// that works longer than a window afterwards keeps its context (net/http's
// background read would otherwise time out and cancel it), and the
// connection serves the next request.
func TestDeadlineClearedAfterTheBody(t *testing.T) {
	addr := serve(t, quick, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			if _, err := io.ReadAll(r.Body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			time.Sleep(4 * quick.Window)
			if err := r.Context().Err(); err != nil {
				http.Error(w, "context ended: "+err.Error(), http.StatusInternalServerError)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c, br := rawConn(t, addr, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3", "abc")
	_ = c.SetReadDeadline(time.Now().Add(bound))
	for i, req := range []string{"", "GET /y HTTP/1.1\r\nHost: x\r\n\r\n"} {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusNoContent {
			t.Fatalf("request %d: status %d %s, want 204", i, res.StatusCode, b)
		}
	}
}

// A download whose client stops reading is cut: a Write fails instead of
// blocking forever.
func TestStalledReaderCutsTheDownload(t *testing.T) {
	p := Policy{Window: 200 * time.Millisecond, MinBytes: 1 << 20}
	writeErr := make(chan error, 1)
	addr := serve(t, p, func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for range 1024 { // 1 GiB: more than any socket buffer
			if _, err := w.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	})
	c, br := rawConn(t, addr, "GET /big HTTP/1.1\r\nHost: x", "")
	if _, err := br.Peek(1); err != nil { // the headers came; then nothing is read
		t.Fatal(err)
	}
	select {
	case err := <-writeErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write error = %v, want a deadline error", err)
		}
	case <-time.After(bound):
		t.Fatal("the download of a client that stopped reading was not cut")
	}
	_ = c.Close()
}

// Pauses between writes (a stream waiting on its source) are not charged:
// the writes after them succeed.
func TestPausesBetweenWritesPass(t *testing.T) {
	p := Policy{Window: 200 * time.Millisecond, MinBytes: 1024}
	addr := serve(t, p, func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for i := range 3 {
			fmt.Fprintf(w, "line %d\n", i)
			if err := rc.Flush(); err != nil {
				t.Errorf("flush %d: %v", i, err)
				return
			}
			time.Sleep(3 * p.Window)
		}
		fmt.Fprintln(w, "end") // left for net/http's final flush
	})
	res, err := http.Get("http://" + addr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || string(b) != "line 0\nline 1\nline 2\nend\n" {
		t.Fatalf("body %q, err %v", b, err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// Without net/http's writer (a recorder) nothing is bounded and the
// handler still runs.
func TestWithoutDeadlineSupport(t *testing.T) {
	h := BodyDeadlines(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}), quick)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/x", strings.NewReader("body")))
	if rec.Body.String() != "body" {
		t.Fatalf("body %q", rec.Body.String())
	}
}

func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	if p.Window != 30*time.Second || p.MinBytes != 64<<10 {
		t.Errorf("DefaultPolicy() = %+v, want 64 KiB per 30s", p)
	}
	if MaxHeaderBytes != 64<<10 {
		t.Errorf("MaxHeaderBytes = %d, want 64 KiB", MaxHeaderBytes)
	}
}

func TestPolicyFromEnv(t *testing.T) {
	for _, tc := range []struct {
		v        string
		want     time.Duration
		override bool
		err      string
	}{
		{"", DefaultWindow, false, ""},
		{"2s", 2 * time.Second, true, ""},
		{"100ms", 100 * time.Millisecond, true, ""},
		{"30s", 30 * time.Second, true, ""},
		{"99ms", DefaultWindow, false, "want a duration from 100ms to 30s"},
		{"31s", DefaultWindow, false, "want a duration from 100ms to 30s"},
		{"-1s", DefaultWindow, false, "want a duration"},
		{"2", DefaultWindow, false, `DW_TEST_BODY_WINDOW="2"`},
		{"soon", DefaultWindow, false, "want a duration"},
	} {
		p, over, err := PolicyFromEnv(func(k string) string {
			if k == TestWindowEnv {
				return tc.v
			}
			return ""
		})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want one containing %q", tc.v, err, tc.err)
			}
			continue
		}
		if err != nil || p.Window != tc.want || p.MinBytes != DefaultMinBytes || over != tc.override {
			t.Errorf("%q: %+v, %v, %v; want window %s, override %v", tc.v, p, over, err, tc.want, tc.override)
		}
	}
}
