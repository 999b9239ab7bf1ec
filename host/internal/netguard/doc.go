// Package netguard bounds what one client can hold of the host's HTTP
// server: how slowly it may send a request body or read a response
// (BodyDeadlines), and how many connections one remote address may keep
// open (Listener). The host wraps its raw TCP listener with Listener (any
// TLS listener goes on top of it) and its API handler with BodyDeadlines,
// outermost, so that the wrapper gets net/http's own ResponseWriter.
//
// # Minimum transfer rate
//
// Object and file bodies stream for gigabytes in both directions, so a
// fixed http.Server ReadTimeout or WriteTimeout would cut large transfers;
// and ReadHeaderTimeout does not cover bodies: before a handler's early
// answer (a 401, a 404) net/http drains an unread body of less than 256 KiB
// with no deadline of its own. A client sending the headers of a PUT with
// "Content-Length: 10" and no body would hold its connection forever.
//
// Instead, a body must keep a minimum rate: DefaultMinBytes (64 KiB) in
// every DefaultWindow (30 s) of waiting. Only the time a Read of the body
// spends waiting for the client is charged; the time the server takes
// between reads (a plugin applying backpressure) is not. Each window that
// delivers its MinBytes starts a new one, so a slow but live upload (any
// rate above about 2 KiB/s) is never cut, nor a fast one however large,
// while a stalled or trickling one is cut at most one window after it
// stopped delivering. The connection's read deadline carries the budget,
// set through http.ResponseController before each Read; it stays set when
// the handler returns, so that the drain net/http does after the handler
// (at most 256 KiB) is bounded by it too; once the body has been read to
// its end the deadline is cleared (net/http then reads in the background
// to notice a client that goes away, which a deadline would break).
//
// A body cut by the deadline fails its Read with *SlowBodyError, which
// wraps os.ErrDeadlineExceeded: the API answers 408 request_timeout (and
// net/http closes the connection after the answer, since the rest of the
// body cannot be parsed as the next request).
//
// Responses get the same rule: each Write (and Flush) of the handler may
// take Window plus Window per MinBytes written; the time between writes is
// not charged, so a stream that idles (a gateway stream, a listing waiting
// on its plugin) is not cut, while a client that stops reading a download
// is cut at most a window (plus the time its bytes are allowed) later.
// After the handler returns, one more window bounds net/http's final flush.
//
// The rate is a pair of constants (DefaultWindow, DefaultMinBytes), not
// config keys: it bounds abuse, and nothing legitimate comes near it. For
// tests of the real host only, the environment variable DW_TEST_BODY_WINDOW
// (a Go duration from 100ms to 30s) shortens the window (PolicyFromEnv);
// the host logs a warning when it is set.
//
// # Connections per address
//
// Listener counts the open connections of each remote address — an IPv4
// address, or the /64 prefix of an IPv6 address (one host's usual
// allocation); loopback counts too — and closes at once every connection
// past the limit, before any byte is read (the client sees its connection
// closed or reset). 0 means no limit; SetLimit changes the limit live (the
// host applies server.max_connections_per_address on a config reload):
// connections already open beyond a lowered limit stay open, new ones are
// refused until the count drops below it. Each connection is counted down
// exactly once, on its first Close; an address whose count drops to zero
// leaves the table, so memory is bounded by the open connections.
// Metrics: dw_http_connections_refused_total and dw_http_connections_open.
//
// After a surge (SurgeConns open at once, then at most an eighth of that
// left), ReclaimAfterSurges collects and returns the memory to the system
// (debug.FreeOSMemory): otherwise an idle host keeps a slow-body attack's
// memory (about 25 KiB per connection) for minutes, until the runtime's
// forced collection and scavenger get to it. Measured with 3,000 stalled
// connections: RSS back from about 100 MiB to within 10 MiB of idle about
// a second after the last one closed, instead of staying near 100 MiB.
//
// # Header size
//
// MaxHeaderBytes (64 KiB) bounds the request line and headers: the
// longest legitimate request (a 4 KiB file path percent-encoded, 8 KiB of
// object metadata, a page token) needs well under half of it.
package netguard
