package netguard

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// The minimum transfer rate of request and response bodies (see the
// package doc), and the bound of request headers.
const (
	// DefaultWindow is how long a body may wait for its next MinBytes.
	DefaultWindow = 30 * time.Second
	// DefaultMinBytes is what a body must deliver in each window.
	DefaultMinBytes = 64 << 10
	// MaxHeaderBytes bounds a request's line and headers
	// (http.Server.MaxHeaderBytes).
	MaxHeaderBytes = 64 << 10

	// TestWindowEnv names the variable that shortens the window for tests
	// of the real host (PolicyFromEnv).
	TestWindowEnv = "DW_TEST_BODY_WINDOW"
	// minTestWindow is the shortest window TestWindowEnv may ask for.
	minTestWindow = 100 * time.Millisecond
)

// Policy is a minimum transfer rate: MinBytes in every Window of waiting.
type Policy struct {
	Window   time.Duration
	MinBytes int64
}

// DefaultPolicy is DefaultMinBytes per DefaultWindow.
func DefaultPolicy() Policy { return Policy{Window: DefaultWindow, MinBytes: DefaultMinBytes} }

// PolicyFromEnv returns DefaultPolicy, with the window of TestWindowEnv
// when getenv has it (tests of the real host set it; overridden reports
// that it did). A value that is not a duration from 100ms to
// DefaultWindow is an error.
func PolicyFromEnv(getenv func(string) string) (p Policy, overridden bool, err error) {
	p = DefaultPolicy()
	v := getenv(TestWindowEnv)
	if v == "" {
		return p, false, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < minTestWindow || d > DefaultWindow {
		return p, false, fmt.Errorf("%s=%q: want a duration from %s to %s (it shortens the body rate window for tests)",
			TestWindowEnv, v, minTestWindow, DefaultWindow)
	}
	p.Window = d
	return p, true, nil
}

// SlowBodyError is the error of a request body Read cut because the body
// came slower than the Policy. It wraps os.ErrDeadlineExceeded (and the
// connection's error).
type SlowBodyError struct {
	Policy Policy
	Err    error // the read error of the connection
}

func (e *SlowBodyError) Error() string {
	return fmt.Sprintf("request body too slow: the client sent fewer than %d bytes in %s of waiting (the minimum rate); send the body without pauses",
		e.Policy.MinBytes, e.Policy.Window)
}

func (e *SlowBodyError) Unwrap() []error { return []error{os.ErrDeadlineExceeded, e.Err} }

// BodyDeadlines wraps next so that every request body and every response
// keeps the Policy's minimum rate (see the package doc). It must wrap the
// handler the http.Server calls, so that its ResponseWriter supports
// http.ResponseController's deadlines; where it does not (a test's
// recorder), nothing is bounded.
func BodyDeadlines(next http.Handler, p Policy) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		gw := &guardedWriter{ResponseWriter: w, rc: rc, policy: p}
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			// The first deadline bounds the drain net/http does of a body
			// the handler never reads; the first Read sets its own.
			b := &guardedBody{body: r.Body, rc: rc, policy: p}
			if b.setDeadline(time.Now().Add(p.Window)) == nil {
				r2 := *r // handlers must not modify the request they get
				r2.Body = b
				r = &r2
				gw.body = b
			}
		}
		defer gw.finish()
		next.ServeHTTP(gw, r)
	})
}

// guardedBody charges the time its Reads wait against the Policy.
type guardedBody struct {
	body    io.ReadCloser
	rc      *http.ResponseController
	policy  Policy
	got     int64         // bytes of the current window
	charged time.Duration // waiting of the current window
	done    bool          // the body ended: no deadline any more
	err     error         // sticky: the body was cut
	// deadline is the read deadline set last (UnixNano; 0: none), which
	// the writer reads.
	deadline atomic.Int64
}

func (b *guardedBody) setDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	b.deadline.Store(ns)
	return b.rc.SetReadDeadline(t)
}

func (b *guardedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return b.body.Read(p)
	}
	start := time.Now()
	// A past deadline (the window used up) fails the Read at once.
	_ = b.setDeadline(start.Add(b.policy.Window - b.charged))
	n, err := b.body.Read(p)
	b.charged += time.Since(start)
	b.got += int64(n)
	if b.got >= b.policy.MinBytes {
		b.got, b.charged = 0, 0
	}
	switch {
	case err == io.EOF:
		// net/http now reads in the background to see the client go
		// away: a deadline would end the request's context.
		b.done = true
		_ = b.setDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.err = &SlowBodyError{Policy: b.policy, Err: err}
		return n, b.err
	}
	return n, err
}

func (b *guardedBody) Close() error { return b.body.Close() }

// guardedWriter sets a write deadline before each Write and Flush.
type guardedWriter struct {
	http.ResponseWriter
	rc     *http.ResponseController
	policy Policy
	body   *guardedBody // nil: no body, or no deadlines
}

// extend gives the next write of n bytes its budget: a window, plus a
// window per MinBytes.
func (g *guardedWriter) extend(n int) {
	budget := g.policy.Window + time.Duration(float64(g.policy.Window)*float64(n)/float64(g.policy.MinBytes))
	_ = g.rc.SetWriteDeadline(g.start().Add(budget))
}

// start is when the budget of a write starts: now, or, while the body is
// unread, its read deadline: the first write of the headers drains an
// unread body first (at most 256 KiB, up to that deadline).
func (g *guardedWriter) start() time.Time {
	now := time.Now()
	if g.body != nil {
		if d := g.body.deadline.Load(); d > now.UnixNano() {
			return time.Unix(0, d)
		}
	}
	return now
}

func (g *guardedWriter) Write(p []byte) (int, error) {
	g.extend(len(p))
	return g.ResponseWriter.Write(p)
}

// FlushError is what http.ResponseController.Flush calls.
func (g *guardedWriter) FlushError() error {
	g.extend(0)
	return g.rc.Flush()
}

// Flush serves handlers that assert http.Flusher.
func (g *guardedWriter) Flush() { _ = g.FlushError() }

// Unwrap lets http.ResponseController reach net/http's writer.
func (g *guardedWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// finish gives net/http's final flush after the handler a window (net/http
// clears the deadline after it).
func (g *guardedWriter) finish() { g.extend(0) }
