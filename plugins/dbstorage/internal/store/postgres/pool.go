package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pool tuning.
const (
	// pingIdleAfter: an idle connection older than this is pinged before it
	// is handed out, so that a restarted server costs a reconnect, not an
	// error.
	pingIdleAfter = time.Second
	// maxIdleTime: idle connections older than this are closed.
	maxIdleTime = 5 * time.Minute
	// closeTimeout bounds the goodbye to the server of a closing connection.
	closeTimeout = time.Second
)

var errPoolClosed = errors.New("connection pool closed")

// errPoolExhausted: every connection was in use until the caller's context
// ended.
var errPoolExhausted = errors.New("all database connections are in use")

// pool is a small connection pool over pgx.Conn: at most max connections,
// made on demand (never in Open), reused LIFO, and dropped when a caller
// returns one in a state other than idle (broken, busy or inside a
// transaction). It exists because pgxpool needs a module this build does not
// carry; it does what the driver needs of pgxpool and no more.
type pool struct {
	cfg  *pgx.ConnConfig
	sem  chan struct{} // one token per connection handed out or being made
	done chan struct{} // closed by close

	mu     sync.Mutex
	idle   []idleConn
	closed bool
}

type idleConn struct {
	conn  *pgx.Conn
	since time.Time
}

func newPool(cfg *pgx.ConnConfig, maxConns int) *pool {
	return &pool{cfg: cfg, sem: make(chan struct{}, maxConns), done: make(chan struct{})}
}

// acquire returns a connection for the caller's sole use until release. It
// waits for a free slot under ctx.
func (p *pool) acquire(ctx context.Context) (*pgx.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case p.sem <- struct{}{}:
	case <-p.done:
		return nil, errPoolClosed
	case <-ctx.Done():
		return nil, errors.Join(errPoolExhausted, ctx.Err())
	}
	conn, err := p.take(ctx)
	if err != nil {
		<-p.sem
		return nil, err
	}
	return conn, nil
}

// take returns an idle connection that still works, or a new one.
func (p *pool) take(ctx context.Context) (*pgx.Conn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errPoolClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return pgx.ConnectConfig(ctx, p.cfg.Copy())
		}
		ic := p.idle[n-1]
		p.idle[n-1] = idleConn{}
		p.idle = p.idle[:n-1]
		p.mu.Unlock()

		idle := time.Since(ic.since)
		if idle > maxIdleTime || ic.conn.IsClosed() {
			closeConn(ic.conn)
			continue
		}
		if idle > pingIdleAfter {
			if err := ic.conn.Ping(ctx); err != nil {
				closeConn(ic.conn)
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				continue
			}
		}
		return ic.conn, nil
	}
}

// release gives conn back. A connection that is closed, busy or not idle
// outside a transaction is closed instead of kept.
func (p *pool) release(conn *pgx.Conn) {
	defer func() { <-p.sem }()
	pc := conn.PgConn()
	if conn.IsClosed() || pc.IsBusy() || pc.TxStatus() != 'I' {
		closeConn(conn)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		closeConn(conn)
		return
	}
	p.idle = append(p.idle, idleConn{conn: conn, since: time.Now()})
	p.mu.Unlock()
}

// close closes the idle connections and makes acquire fail; connections in
// use are closed when they are released.
func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, ic := range idle {
		closeConn(ic.conn)
	}
}

// closeConn closes conn, bounding the goodbye to the server.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = conn.Close(ctx)
}
