package netguard

import (
	"io"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Listener limits the open connections per remote address (see the
// package doc). Its Accept never returns a connection past the limit.
type Listener struct {
	net.Listener
	limit atomic.Int64 // 0: no limit

	mu    sync.Mutex
	open  map[netip.Addr]int // address (IPv6: its /64) → open connections
	total int
	peak  int           // most open at once since the last drained surge
	surge chan struct{} // a surge drained (buffered: one pending)

	refused   prometheus.Counter
	openGauge prometheus.GaugeFunc
}

// NewListener wraps inner, allowing limit open connections per address (0:
// no limit; a negative limit counts as 0).
func NewListener(inner net.Listener, limit int) *Listener {
	l := &Listener{Listener: inner, open: make(map[netip.Addr]int), surge: make(chan struct{}, 1)}
	l.SetLimit(limit)
	l.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dw_http_connections_refused_total",
		Help: "Connections to the API closed at once because their remote address already had server.max_connections_per_address open.",
	})
	l.openGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dw_http_connections_open",
		Help: "Open connections to the API (the ones max_connections_per_address counts).",
	}, func() float64 { return float64(l.Open()) })
	return l
}

// SetLimit changes the limit for the connections accepted from now on.
func (l *Listener) SetLimit(limit int) { l.limit.Store(int64(max(limit, 0))) }

// Limit is the current limit (0: none).
func (l *Listener) Limit() int { return int(l.limit.Load()) }

// Collectors are the listener's metrics, for the host's registry.
func (l *Listener) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.refused, l.openGauge}
}

// Open is the number of open connections counted.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// addresses is the number of addresses with open connections (tests).
func (l *Listener) addresses() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open)
}

// Accept returns the next connection whose address is under the limit,
// closing the others as they come.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, ok := addrKey(c.RemoteAddr())
		if !ok {
			return c, nil // not an IP connection: nothing to count by
		}
		if !l.acquire(key) {
			l.refused.Inc()
			_ = c.Close()
			continue
		}
		return &conn{Conn: c, l: l, key: key}, nil
	}
}

func (l *Listener) acquire(key netip.Addr) bool {
	limit := int(l.limit.Load())
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit > 0 && l.open[key] >= limit {
		return false
	}
	l.open[key]++
	l.total++
	l.peak = max(l.peak, l.total)
	return true
}

func (l *Listener) release(key netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.open[key] - 1; n > 0 {
		l.open[key] = n
	} else {
		delete(l.open, key)
	}
	l.total--
	if l.peak >= SurgeConns && l.total <= SurgeConns/8 {
		l.peak = l.total
		select {
		case l.surge <- struct{}{}:
		default: // one pending is enough
		}
	}
}

// SurgeConns is how many connections open at once make a surge: once at
// most an eighth of that many are left open, ReclaimAfterSurges returns
// the memory they held to the system.
const SurgeConns = 256

// surgeSettle is how long ReclaimAfterSurges waits after a surge drained
// before it collects: the goroutines of the last connections are still
// ending, and the plugin calls they made still being torn down.
const surgeSettle = time.Second

// ReclaimAfterSurges runs until done is closed: after each surge of
// connections has drained (and surgeSettle more), it runs the garbage
// collector twice (pooled buffers of closed connections survive one
// collection in sync.Pool's victim cache) and returns the freed memory to
// the system (debug.FreeOSMemory). Without it a surge's memory — thousands
// of goroutine stacks and connection buffers, about 25 KiB per connection —
// stays resident until the runtime's forced collection (every two minutes
// when idle) and its background scavenger get to it: a host left idle
// after a slow-body attack would keep that memory for minutes. Each
// reclaim is a full collection; an attacker can cause at most one per
// surge of SurgeConns connections and surgeSettle.
func (l *Listener) ReclaimAfterSurges(done <-chan struct{}) {
	settle := time.NewTimer(0)
	<-settle.C
	for {
		select {
		case <-done:
			settle.Stop()
			return
		case <-l.surge:
			settle.Reset(surgeSettle)
		case <-settle.C:
			runtime.GC()
			debug.FreeOSMemory()
		}
	}
}

// addrKey is what a remote address counts under: an IPv4 address, or the
// /64 of an IPv6 one.
func addrKey(a net.Addr) (netip.Addr, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.Addr{}, false
		}
	}
	if !ap.Addr().IsValid() {
		return netip.Addr{}, false
	}
	return ClientKey(ap.Addr()), true
}

// ClientKey is what a client's IP address counts under, for the
// connection cap and the API's refused-token slowdown alike: an IPv4
// address (IPv4-mapped IPv6 unmapped), or the /64 of an IPv6 one (a
// host's share of its network; the zone dropped).
func ClientKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// conn counts down its address once, on its first Close.
type conn struct {
	net.Conn
	l      *Listener
	key    netip.Addr
	closed atomic.Bool
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.key)
	}
	return err
}

// CloseWrite lets net/http half-close the connection after an early answer
// (it then waits briefly for the client to read it).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps the TCP connection's sendfile and splice paths.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.Conn, r)
}
