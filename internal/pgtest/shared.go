package pgtest

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// shared is the one server per test binary, started by the first Shared
// call and stopped by Main.
var shared struct {
	mu      sync.Mutex
	inMain  bool     // Main is running: it will stop the server
	opts    []Option // Main's options for the server
	srv     *Server
	started bool  // a start was tried
	err     error // why it failed
}

// Main runs the tests of m and then stops the shared server, if one was
// started, and returns m.Run's exit code (a failed stop makes it 1). opts
// configure the shared server. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M, opts ...Option) int {
	shared.mu.Lock()
	shared.inMain = true
	shared.opts = opts
	shared.mu.Unlock()
	code := m.Run()
	if err := stopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: stop the shared server: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// TestingM wraps Main for goleak.VerifyTestMain, which checks for leaked
// goroutines after the shared server is stopped:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.TestingM(m)) }
func TestingM(m *testing.M, opts ...Option) interface{ Run() int } {
	return mainRunner(func() int { return Main(m, opts...) })
}

type mainRunner func() int

func (f mainRunner) Run() int { return f() }

// Shared returns the test binary's shared server, starting it on first use.
// Tests should take a database of their own with CreateDatabase. It fails
// the test unless TestMain runs Main (which stops the server), and skips or
// fails it like Start when PostgreSQL cannot run. A failed start is not
// retried.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		tb.Fatal("pgtest.Shared: TestMain must run pgtest.Main(m) so that the shared server is stopped after the tests")
		return nil
	}
	if !shared.started {
		shared.started = true
		shared.srv, shared.err = start(shared.opts)
	}
	if shared.err != nil {
		failOrSkip(tb, shared.err)
		return nil
	}
	return shared.srv
}

func stopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil {
		return nil
	}
	return shared.srv.Stop()
}
