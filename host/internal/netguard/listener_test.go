package netguard

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// value reads a counter's or gauge's value.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// acceptor runs Accept on l until it is closed, handing out the
// connections.
type acceptor struct {
	l     *Listener
	conns chan net.Conn
	done  chan struct{}
}

func startAcceptor(t *testing.T, limit int, network, addr string) *acceptor {
	t.Helper()
	inner, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	a := &acceptor{l: NewListener(inner, limit), conns: make(chan net.Conn, 1024), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for {
			c, err := a.l.Accept()
			if err != nil {
				return
			}
			a.conns <- c
		}
	}()
	t.Cleanup(func() {
		_ = a.l.Close()
		<-a.done
		close(a.conns)
		for c := range a.conns {
			_ = c.Close()
		}
	})
	return a
}

func (a *acceptor) next(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-a.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted within 10s")
		return nil
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// closedByServer waits (at most 10s: a bound, not a timing assertion)
// for the server's end of c to close: EOF or a reset.
func closedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection past the limit was not closed by the server: read err %v", err)
	}
}

func TestListenerClosesConnectionsPastTheLimit(t *testing.T) {
	a := startAcceptor(t, 2, "tcp", "127.0.0.1:0")
	addr := a.l.Addr().String()
	c1, c2 := dial(t, addr), dial(t, addr)
	s1, s2 := a.next(t), a.next(t)
	c3 := dial(t, addr)
	closedByServer(t, c3)
	if got := value(a.l.refused); got != 1 {
		t.Errorf("refused = %v, want 1", got)
	}
	if got := a.l.Open(); got != 2 {
		t.Errorf("Open() = %d, want 2", got)
	}
	if got := value(a.l.openGauge); got != 2 {
		t.Errorf("open gauge = %v, want 2", got)
	}

	// Closing one (twice: counted down once) makes room for exactly one.
	_ = s1.Close()
	_ = s1.Close()
	if got := a.l.Open(); got != 1 {
		t.Fatalf("Open() after a double Close = %d, want 1", got)
	}
	c4 := dial(t, addr)
	s4 := a.next(t)
	if _, err := c4.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(s4, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("accepted connection does not carry data: %q %v", buf, err)
	}
	closedByServer(t, dial(t, addr))
	if got := value(a.l.refused); got != 2 {
		t.Errorf("refused = %v, want 2", got)
	}

	for _, c := range []net.Conn{s2, s4} {
		_ = c.Close()
	}
	if got, n := a.l.Open(), a.l.addresses(); got != 0 || n != 0 {
		t.Errorf("after closing every connection: Open() = %d, addresses = %d; want 0, 0", got, n)
	}
	_, _, _ = c1, c2, c4
}

func TestListenerWithoutLimit(t *testing.T) {
	a := startAcceptor(t, 0, "tcp", "127.0.0.1:0")
	var conns []net.Conn
	for range 300 {
		dial(t, a.l.Addr().String())
		conns = append(conns, a.next(t))
	}
	if got := a.l.Open(); got != 300 {
		t.Errorf("Open() = %d, want 300", got)
	}
	if got := value(a.l.refused); got != 0 {
		t.Errorf("refused = %v, want 0", got)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	if got := a.l.addresses(); got != 0 {
		t.Errorf("addresses after closing all = %d, want 0", got)
	}
}

func TestListenerSetLimitAppliesToNewConnections(t *testing.T) {
	a := startAcceptor(t, 3, "tcp", "127.0.0.1:0")
	addr := a.l.Addr().String()
	var open []net.Conn
	for range 3 {
		dial(t, addr)
		open = append(open, a.next(t))
	}
	a.l.SetLimit(1)
	closedByServer(t, dial(t, addr)) // 3 open ≥ 1
	for _, c := range open[:2] {
		_ = c.Close()
	}
	closedByServer(t, dial(t, addr)) // 1 open ≥ 1
	_ = open[2].Close()
	dial(t, addr)
	_ = a.next(t).Close()

	a.l.SetLimit(-5) // counts as no limit
	if a.l.Limit() != 0 {
		t.Fatalf("Limit() after SetLimit(-5) = %d, want 0", a.l.Limit())
	}
	for range 5 {
		dial(t, addr)
		defer a.next(t).Close()
	}
}

func TestListenerIPv6Loopback(t *testing.T) {
	if _, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no IPv6 loopback: %v", err)
		}
		t.Skipf("no IPv6 loopback: %v", err)
	}
	a := startAcceptor(t, 1, "tcp6", "[::1]:0")
	dial(t, a.l.Addr().String())
	s := a.next(t)
	closedByServer(t, dial(t, a.l.Addr().String()))
	_ = s.Close()
}

// Connections opened and closed from many goroutines leave the count at
// zero and the table empty (run under -race).
func TestListenerConcurrentCloses(t *testing.T) {
	a := startAcceptor(t, 8, "tcp", "127.0.0.1:0")
	addr := a.l.Addr().String()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 20 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				_ = c.Close()
			}
		})
	}
	// Close the server ends from several goroutines at once, each twice.
	closers := make(chan net.Conn)
	var cw sync.WaitGroup
	for range 4 {
		cw.Go(func() {
			for c := range closers {
				_ = c.Close()
				_ = c.Close()
			}
		})
	}
	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()
	accepted := 0
	refused := func() int { return int(value(a.l.refused)) }
loop:
	for {
		select {
		case c := <-a.conns:
			accepted++
			closers <- c
		case <-clientsDone:
			// Drain what the listener still hands out.
			for accepted+refused() < 16*20 {
				select {
				case c := <-a.conns:
					accepted++
					closers <- c
				case <-time.After(10 * time.Second):
					t.Errorf("accepted %d + refused %d of %d connections", accepted, refused(), 16*20)
					break loop
				}
			}
			break loop
		}
	}
	close(closers)
	cw.Wait()
	if got, n := a.l.Open(), a.l.addresses(); got != 0 || n != 0 {
		t.Errorf("Open() = %d, addresses = %d after every connection closed; want 0, 0", got, n)
	}
}

func TestAddrKey(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
		ok   bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7", true},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7", true},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::", true},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::1"), Port: 1}, "2001:db8:1:2::", true},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, "fe80::", true},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 1}, "::", true},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, "", false},
		{&net.TCPAddr{}, "", false},
	} {
		got, ok := addrKey(tc.addr)
		if ok != tc.ok || (ok && got != netip.MustParseAddr(tc.want)) {
			t.Errorf("addrKey(%v) = %v, %v; want %s, %v", tc.addr, got, ok, tc.want, tc.ok)
		}
	}
}

// A surge (SurgeConns open at once) signals ReclaimAfterSurges once it has
// drained to an eighth of SurgeConns, not before; ReclaimAfterSurges
// collects and ends with done.
func TestSurgeSignalsOnceDrained(t *testing.T) {
	a := startAcceptor(t, 0, "tcp", "127.0.0.1:0")
	var conns []net.Conn
	for range SurgeConns {
		dial(t, a.l.Addr().String())
		conns = append(conns, a.next(t))
	}
	pending := func() bool {
		select {
		case <-a.l.surge:
			return true
		default:
			return false
		}
	}
	left := SurgeConns/8 + 1
	for _, c := range conns[left:] {
		_ = c.Close()
	}
	if pending() {
		t.Fatalf("surge signalled with %d connections still open", left)
	}
	_ = conns[0].Close()
	if !pending() {
		t.Fatalf("no signal once the surge drained to %d", SurgeConns/8)
	}
	for _, c := range conns[1:left] {
		_ = c.Close()
	}
	if pending() {
		t.Fatal("a second signal without a new surge")
	}

	done, ended := make(chan struct{}), make(chan struct{})
	go func() { defer close(ended); a.l.ReclaimAfterSurges(done) }()
	a.l.surge <- struct{}{}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	deadline := time.Now().Add(bound)
	for {
		var now runtime.MemStats
		runtime.ReadMemStats(&now)
		if now.NumForcedGC >= before.NumForcedGC+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ReclaimAfterSurges did not collect within %s", bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(done)
	<-ended
}
