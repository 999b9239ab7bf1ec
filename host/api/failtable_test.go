package api

import (
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"
)

func TestFailKeyOf(t *testing.T) {
	same := [][2]string{
		{"192.0.2.1:1234", "192.0.2.1:9"},
		{"192.0.2.1:1234", "[::ffff:192.0.2.1]:5"},
		{"[2001:db8:1:2:aaaa::1]:1", "[2001:db8:1:2:bbbb::2]:2"}, // same /64
	}
	for _, p := range same {
		a, ok1 := failKeyOf(p[0])
		b, ok2 := failKeyOf(p[1])
		if !ok1 || !ok2 || a != b {
			t.Errorf("%s and %s: keys %x %x (%v %v), want the same", p[0], p[1], a, b, ok1, ok2)
		}
	}
	differ := [][2]string{
		{"192.0.2.1:1", "192.0.2.2:1"},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:1"}, // another /64
		{"[::ffff:0:0]:1", "[::]:1"},
	}
	for _, p := range differ {
		a, _ := failKeyOf(p[0])
		b, _ := failKeyOf(p[1])
		if a == b {
			t.Errorf("%s and %s: the same key %x", p[0], p[1], a)
		}
	}
	for _, bad := range []string{"", "@", "unix:/run/dw.sock", "example.com:80"} {
		if _, ok := failKeyOf(bad); ok {
			t.Errorf("%q has a key", bad)
		}
	}
}

// The delay grows exponentially after the free failures, is capped,
// decays with quiet time, and is per address.
func TestFailTableDelays(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tb := newFailTable(4)
	tb.now = func() time.Time { return now }
	a, _ := failKeyOf("192.0.2.1:1")
	b, _ := failKeyOf("192.0.2.2:1")
	var got []time.Duration
	for range 12 {
		d, busy := tb.fail(a)
		if busy {
			t.Fatal("busy without anyone waiting")
		}
		if d > 0 {
			tb.done(a)
		}
		got = append(got, d)
	}
	want := []time.Duration{0, 0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("failure %d: delay %v, want %v (all: %v)", i+1, got[i], want[i], got)
		}
	}
	// Another address starts free.
	if d, _ := tb.fail(b); d != 0 {
		t.Errorf("first failure of another address: %v", d)
	}
	// Two quiet periods quarter the count (12 → 3): the next is the 4th.
	now = now.Add(2 * failTableQuiet)
	if d, _ := tb.fail(a); d != 100*time.Millisecond {
		t.Errorf("after two quiet periods: %v, want 100ms", d)
	}
	tb.done(a)
	// A long quiet forgets.
	now = now.Add(40 * failTableQuiet)
	if d, _ := tb.fail(a); d != 0 {
		t.Errorf("after a long quiet: %v, want 0", d)
	}
}

// Past failTableMaxWaiting waiting requests, more are busy (429) until
// one is done.
func TestFailTableBusy(t *testing.T) {
	tb := newFailTable(4)
	a, _ := failKeyOf("192.0.2.1:1")
	for range failTableFree {
		tb.fail(a)
	}
	for i := range failTableMaxWaiting {
		if _, busy := tb.fail(a); busy {
			t.Fatalf("waiting request %d is busy", i+1)
		}
	}
	d, busy := tb.fail(a)
	if !busy || d <= 0 {
		t.Fatalf("one more: delay %v busy %v, want busy with a delay", d, busy)
	}
	tb.done(a)
	if _, busy := tb.fail(a); busy {
		t.Fatal("busy after one was done")
	}
}

// The table keeps at most its size, dropping the least recently failed.
func TestFailTableBounded(t *testing.T) {
	tb := newFailTable(3)
	keys := make([]failKey, 5)
	for i := range keys {
		keys[i][15] = byte(i + 1)
		tb.fail(keys[i])
	}
	if n := tb.lru.Len(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	if tb.lru.Contains(keys[0]) || tb.lru.Contains(keys[1]) || !tb.lru.Contains(keys[4]) {
		t.Errorf("kept %v", tb.lru.Keys())
	}
}

// Over HTTP: after the free failures a wrong token waits (here: its
// client gives up first, which ends the wait), a valid token from the
// same address never waits, and a missing token does not count.
func TestRefusedTokenSlowdown(t *testing.T) {
	s, _ := newTestServer(t, &fakePlugins{}, map[string]string{tok: "alice"})
	now := time.Unix(1_700_000_000, 0)
	s.fails.now = func() time.Time { return now }
	h := s.Handler()
	for range 5 {
		do(t, h, "GET", "/v1/plugins", "", "") // no token: not a guess
	}
	for range failTableFree {
		if r := do(t, h, "GET", "/v1/plugins", "wrong-0123456789abcdef", ""); r.code != 401 {
			t.Fatalf("wrong token: %d", r.code)
		}
	}
	// The next wrong token would wait 100ms; its client is gone already,
	// so the answer comes without the wait (no timing is asserted: a
	// wait that ignored the context would still pass, so check that the
	// waiting count went back to 0).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, "GET", "/v1/plugins", nil)
	req.Header.Set("Authorization", "Bearer wrong-0123456789abcdef")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("delayed wrong token: %d", w.Code)
	}
	k, _ := failKeyOf(req.RemoteAddr)
	if e, _ := s.fails.lru.Peek(k); e.count != failTableFree+1 || e.waiting != 0 {
		t.Errorf("entry %+v, want count %d and nobody waiting", e, failTableFree+1)
	}
	// A valid token is not slowed and does not count.
	if r := do(t, h, "GET", "/v1/plugins", tok, ""); r.code != 200 {
		t.Fatalf("valid token: %d", r.code)
	}
	if e, _ := s.fails.lru.Peek(k); e.count != failTableFree+1 {
		t.Errorf("count after a success %d, want unchanged %d", e.count, failTableFree+1)
	}
	// Past failTableMaxWaiting waiting: 429 with Retry-After, audited
	// as refused.
	s.fails.mu.Lock()
	e, _ := s.fails.lru.Peek(k)
	e.waiting = failTableMaxWaiting
	s.fails.lru.Add(k, e)
	s.fails.mu.Unlock()
	r := do(t, h, "GET", "/v1/plugins", "wrong-0123456789abcdef", "")
	if r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || errorOf(t, r).Code != "too_many_refused_tokens" {
		t.Errorf("busy: %d %v %s", r.code, r.header, r.body)
	}
}

// BenchmarkFailTable reports the memory the table holds after failures
// from 100,000 distinct addresses (it keeps failTableSize of them).
func BenchmarkFailTable(b *testing.B) {
	const addresses = 100_000
	var held uint64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tb := newFailTable(failTableSize)
		var k failKey
		k[10], k[11] = 0xff, 0xff
		for i := range addresses {
			binary.BigEndian.PutUint32(k[12:], uint32(0x0a000000+i))
			tb.fail(k)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held = after.HeapAlloc - before.HeapAlloc
		if tb.lru.Len() != failTableSize {
			b.Fatalf("%d entries", tb.lru.Len())
		}
		runtime.KeepAlive(tb)
	}
	b.ReportMetric(float64(held), "heap-bytes")
	b.ReportMetric(float64(held)/failTableSize, "bytes/entry")
}
