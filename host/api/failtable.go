package api

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/datawarehouse/dw/host/internal/netguard"
)

// Refused-token slowdown: a remote address that keeps presenting wrong
// bearer tokens waits longer and longer for each 401, so that guessing a
// token from one address is slow, while a valid token is never delayed.
//
//   - Only a well-formed token that matches none counts: a missing or
//     malformed Authorization header is a client's mistake, not a guess.
//   - Addresses are the connection's remote IP (no X-Forwarded-For: dw
//     does not know its proxies); IPv6 addresses count per /64, the block
//     one host usually gets.
//   - The first failTableFree failures are free; then the delay doubles
//     from failTableBase up to failTableMax. Each failTableQuiet without a
//     failure halves the count. A success (from this or another address)
//     changes nothing: it must not let a guesser behind the same NAT
//     start over.
//   - At most failTableMaxWaiting refused requests of one address wait at
//     once; more get 429 at once (with Retry-After), so that parallel
//     guesses neither multiply the guessing rate nor hold goroutines.
//   - The table keeps at most failTableSize addresses (LRU: the least
//     recently failed goes); BenchmarkFailTable measures its memory.
//     An attacker with more addresses than that can make the table forget
//     one; the per-address connection cap and the length of tokens
//     (config.MinTokenBytes) remain.
//   - The wait happens outside the table's lock, on the request's context:
//     a client that hangs up ends it.
const (
	failTableFree       = 3
	failTableBase       = 100 * time.Millisecond
	failTableMax        = 5 * time.Second
	failTableQuiet      = time.Minute
	failTableMaxWaiting = 8
	failTableSize       = 1 << 16
)

// failKey is an IPv4 address (in its IPv4-mapped IPv6 form) or the /64 of
// an IPv6 address. Fixed size, no pointers: cheap to keep 65,536 of.
type failKey [16]byte

// failKeyOf returns the key of a request's RemoteAddr ("ip:port"); ok is
// false when it is not an IP address (e.g. a Unix socket), which is then
// not slowed.
func failKeyOf(remoteAddr string) (k failKey, ok bool) {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return k, false
	}
	return netguard.ClientKey(a).As16(), true
}

type failEntry struct {
	last    int64 // unix nanoseconds of the last failure
	count   uint32
	waiting uint32
}

// failTable remembers recent token failures per address.
type failTable struct {
	now func() time.Time

	mu  sync.Mutex
	lru *simplelru.LRU[failKey, failEntry]
}

func newFailTable(size int) *failTable {
	l, err := simplelru.NewLRU[failKey, failEntry](size, nil)
	if err != nil {
		panic(err) // size > 0 is a constant of this file
	}
	return &failTable{now: time.Now, lru: l}
}

// fail records a refused token from k and returns how long its 401 must
// wait. busy reports that too many refused requests of k wait already:
// answer 429 at once (retry after delay). When neither busy nor delay is
// 0, call done(k) after the wait.
func (t *failTable) fail(k failKey) (delay time.Duration, busy bool) {
	now := t.now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, _ := t.lru.Get(k)
	if e.count > 0 {
		if halvings := (now - e.last) / int64(failTableQuiet); halvings >= 32 {
			e.count = 0
		} else if halvings > 0 {
			e.count >>= uint(halvings)
		}
	}
	if e.count < 1<<30 {
		e.count++
	}
	e.last = now
	delay = failDelay(e.count)
	busy = e.waiting >= failTableMaxWaiting
	if !busy && delay > 0 {
		e.waiting++
	}
	t.lru.Add(k, e)
	return delay, busy
}

// done ends a wait that fail started.
func (t *failTable) done(k failKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.lru.Peek(k); ok && e.waiting > 0 {
		e.waiting--
		t.lru.Add(k, e)
	}
}

// failDelay is the wait before the 401 of the count-th failure.
func failDelay(count uint32) time.Duration {
	if count <= failTableFree {
		return 0
	}
	n := count - failTableFree - 1
	if n >= 16 {
		return failTableMax
	}
	return min(failTableBase<<n, failTableMax)
}

// wait sleeps d or until ctx ends, whichever comes first.
func wait(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
