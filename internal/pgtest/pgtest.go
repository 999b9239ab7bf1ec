package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds of the server's life cycle.
const (
	readyTimeout    = 60 * time.Second // from exec to accepting connections
	stopTimeout     = 30 * time.Second // fast shutdown before SIGKILL
	killWaitTimeout = 10 * time.Second // exit after SIGKILL
	startAttempts   = 3                // a free port can be taken before postgres binds it
	logTailBytes    = 4096             // of the server log, quoted in errors
)

// EnvBinDir names the environment variable holding the folder of initdb and
// postgres.
const EnvBinDir = "DW_PG_BINDIR"

// folderPrefix starts the name of every server folder.
const folderPrefix = "dw-pgtest-"

// leftoverAge: a server folder without a running server this old is a
// leftover.
const leftoverAge = time.Hour

var sweepOnce sync.Once

// debianBinGlob finds Debian's versioned server folders; a variable so that
// tests of the lookup can point it elsewhere.
var debianBinGlob = "/usr/lib/postgresql/*/bin"

// enableHint tells how to make the tests run.
const enableHint = "install PostgreSQL 15 (apt-get install postgresql-15) or set " + EnvBinDir + " to the folder holding initdb and postgres"

// Option changes how Start sets up a server.
type Option func(*options)

type options struct {
	port     int
	settings [][2]string
}

// WithPort makes the server listen on port instead of a free one; the start
// fails if the port is taken.
func WithPort(port int) Option { return func(o *options) { o.port = port } }

// WithSetting sets a server configuration parameter (postgres -c
// name=value).
func WithSetting(name, value string) Option {
	return func(o *options) { o.settings = append(o.settings, [2]string{name, value}) }
}

// WithFastSettings trades durability for speed: fsync, synchronous_commit
// and full_page_writes off. Never for benchmarks.
func WithFastSettings() Option {
	return func(o *options) {
		o.settings = append(o.settings,
			[2]string{"fsync", "off"},
			[2]string{"synchronous_commit", "off"},
			[2]string{"full_page_writes", "off"})
	}
}

// Server is one running throwaway PostgreSQL server.
type Server struct {
	base    string // temporary folder: data/, the socket, logs
	port    int
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited
	logPath string

	stopOnce sync.Once
	stopErr  error
}

// unavailableError says that no PostgreSQL server can be run here; tests
// skip on it unless CI=true.
type unavailableError struct{ reason string }

func (e *unavailableError) Error() string { return e.reason }

// Start initializes and starts a server for the test and stops it, removing
// its files, when the test ends. It skips the test when PostgreSQL is not
// installed (fails it when CI=true) and fails it when the server does not
// start.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	srv, err := start(opts)
	if err != nil {
		failOrSkip(tb, err)
		return nil
	}
	tb.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return srv
}

// failOrSkip ends the test for err: a skip when PostgreSQL is missing
// outside CI, a failure otherwise.
func failOrSkip(tb testing.TB, err error) {
	tb.Helper()
	var ue *unavailableError
	if errors.As(err, &ue) {
		if inCI() {
			tb.Fatalf("pgtest: %v; CI=true requires the PostgreSQL tests to run: %s", err, enableHint)
		}
		tb.Skipf("pgtest: %v; to run this test, %s", err, enableHint)
		return
	}
	tb.Fatalf("pgtest: %v", err)
}

func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// DSN returns the connection string for database db as the superuser.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, url.PathEscape(db))
}

// Port returns the TCP port the server listens on (127.0.0.1).
func (s *Server) Port() int { return s.port }

// Addr returns the server's address, "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Pid returns the process id of the postmaster.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

var dbCounter atomic.Int64

// CreateDatabase creates a database and returns its DSN; it is dropped when
// the test ends (if the server still runs). An empty name picks a fresh
// one. Any name is quoted, so it may hold any character but NUL.
func (s *Server) CreateDatabase(tb testing.TB, name string) string {
	tb.Helper()
	if name == "" {
		name = fmt.Sprintf("dw_test_%d", dbCounter.Add(1))
	}
	ident := pgx.Identifier{name}.Sanitize()
	if err := s.exec(30*time.Second, "CREATE DATABASE "+ident); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", ident, err)
	}
	tb.Cleanup(func() {
		if s.hasExited() {
			return
		}
		if err := s.exec(10*time.Second, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			tb.Logf("pgtest: drop database %s: %v", ident, err)
		}
	})
	return s.DSN(name)
}

// exec runs one statement in the postgres database.
func (s *Server) exec(timeout time.Duration, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func (s *Server) hasExited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// Stop shuts the server down (SIGINT, PostgreSQL's fast shutdown; SIGKILL
// if it has not exited after 30 s), waits for it and removes its folder. It
// also resumes a server paused with SIGSTOP. Idempotent; Start calls it at
// the end of the test.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopErr = s.terminate(syscall.SIGINT, stopTimeout)
		// After a Kill, backends may still be writing for a moment.
		var err error
		for i := 0; i < 50; i++ {
			if err = os.RemoveAll(s.base); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil && s.stopErr == nil {
			s.stopErr = fmt.Errorf("remove %s: %w", s.base, err)
		}
	})
	return s.stopErr
}

// Kill ends the postmaster with SIGKILL, as a crash would, and waits for
// it; its backends exit on their own shortly after. The folder is removed
// by Stop (or the test's cleanup).
func (s *Server) Kill() error {
	return s.terminate(syscall.SIGKILL, killWaitTimeout)
}

// terminate sends sig and waits up to timeout, then kills.
func (s *Server) terminate(sig syscall.Signal, timeout time.Duration) error {
	if s.hasExited() {
		return nil
	}
	p := s.cmd.Process
	_ = p.Signal(syscall.SIGCONT) // a paused server could not handle sig
	if err := p.Signal(sig); err != nil && !s.hasExited() {
		return fmt.Errorf("signal postgres (pid %d): %w", p.Pid, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-s.exited:
		return nil
	case <-timer.C:
	}
	_ = p.Kill()
	select {
	case <-s.exited:
		return fmt.Errorf("postgres (pid %d) did not exit within %v of %v; killed it", p.Pid, timeout, sig)
	case <-time.After(killWaitTimeout):
		return fmt.Errorf("postgres (pid %d) did not exit after SIGKILL", p.Pid)
	}
}

// start sets up and starts a server.
func start(opts []Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	bindir, err := findBinDir(os.Getenv(EnvBinDir))
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	root := tempRoot(cred != nil)
	sweepOnce.Do(func() { sweepLeftovers(root, time.Now()) })
	base, err := os.MkdirTemp(root, folderPrefix)
	if err != nil {
		return nil, fmt.Errorf("make server folder: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(base)
		}
	}()
	if cred != nil {
		if err := os.Chown(base, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("give %s to the postgres user: %w", base, err)
		}
	}
	data := filepath.Join(base, "data")
	initdb := exec.Command(filepath.Join(bindir, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8",
		"--locale=C", "--no-sync", "--no-instructions")
	initdb.Dir = base
	initdb.SysProcAttr = procAttr(cred)
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb %s: %w\n%s", data, err, tail(out))
	}
	for attempt := 1; ; attempt++ {
		port := o.port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		srv, err := launch(bindir, base, data, port, attempt, cred, o.settings)
		if err == nil {
			ok = true
			return srv, nil
		}
		if o.port != 0 || attempt == startAttempts || !errors.Is(err, errPortTaken) {
			return nil, err
		}
	}
}

var errPortTaken = errors.New("port taken")

// launch runs postgres on port and waits until it accepts connections.
func launch(bindir, base, data string, port, attempt int, cred *syscall.Credential, settings [][2]string) (*Server, error) {
	logPath := filepath.Join(base, fmt.Sprintf("postgres-%d.log", attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create server log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	args := []string{"-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + base}
	for _, kv := range settings {
		args = append(args, "-c", kv[0]+"="+kv[1])
	}
	cmd := exec.Command(filepath.Join(bindir, "postgres"), args...)
	cmd.Dir = base
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = procAttr(cred)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	srv := &Server{base: base, port: port, cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	go func() {
		_ = cmd.Wait()
		close(srv.exited)
	}()
	if err := srv.waitReady(); err != nil {
		_ = srv.terminate(syscall.SIGKILL, killWaitTimeout)
		return nil, err
	}
	return srv, nil
}

// waitReady connects until the server answers, it exits, or readyTimeout.
func (s *Server) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var last error
	for {
		if s.hasExited() {
			log := s.logTail()
			if strings.Contains(log, "could not bind") || strings.Contains(log, "could not create any TCP/IP sockets") {
				return fmt.Errorf("postgres could not listen on port %d: %w\n%s", s.port, errPortTaken, log)
			}
			return fmt.Errorf("postgres exited while starting (%v)\n%s", s.cmd.ProcessState, log)
		}
		attemptCtx, attemptCancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attemptCtx, s.DSN("postgres"))
		attemptCancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections within %v: %v\n%s", readyTimeout, last, s.logTail())
		case <-s.exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logTail returns the end of the server log.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	return tail(b)
}

func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > logTailBytes {
		b = append([]byte("…"), b[len(b)-logTailBytes:]...)
	}
	return string(b)
}

// procAttr runs a child as cred (nil: the current user) and kills it when
// the test binary dies. (Linux sends Pdeathsig when the forking thread
// ends; Go ends a thread only when a goroutine exits locked to it, which
// the goroutines calling Start do not.)
func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
}

// credential returns the postgres user's credential when running as root,
// nil otherwise.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, &unavailableError{reason: fmt.Sprintf("running as root, PostgreSQL must run as the postgres system user, which is missing (%v)", err)}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user has uid %q, gid %q: not numbers", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// tempRoot returns the folder for server folders: os.TempDir, unless the
// server runs as another user who cannot reach it, then /tmp.
func tempRoot(otherUser bool) string {
	dir := os.TempDir()
	if !otherUser {
		return dir
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}

// findBinDir returns the folder holding initdb and postgres: envDir if set,
// else the newest Debian versioned folder, else the folder of initdb on
// PATH.
func findBinDir(envDir string) (string, error) {
	if envDir != "" {
		if !hasBinaries(envDir) {
			return "", fmt.Errorf("%s=%s does not hold initdb and postgres", EnvBinDir, envDir)
		}
		return envDir, nil
	}
	dirs, _ := filepath.Glob(debianBinGlob)
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if hasBinaries(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if d := filepath.Dir(p); hasBinaries(d) {
			return d, nil
		}
	}
	return "", &unavailableError{reason: fmt.Sprintf("PostgreSQL server binaries not found (%s unset, none in %s, no initdb and postgres on PATH)", EnvBinDir, debianBinGlob)}
}

// versionOf reads the version number of .../postgresql/<version>/bin; 0 if
// it is not a number.
func versionOf(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return 0
	}
	return v
}

func hasBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// sweepLeftovers removes the server folders in root that test binaries
// killed before their cleanup left behind (their servers died with them):
// those whose postmaster.pid names a process that is gone, and those
// without one (never started) older than leftoverAge. A folder whose
// server runs, possibly another test binary's, is kept.
func sweepLeftovers(root string, now time.Time) {
	dirs, _ := filepath.Glob(filepath.Join(root, folderPrefix+"*"))
	for _, dir := range dirs {
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && now.Sub(fi.ModTime()) > leftoverAge {
				_ = os.RemoveAll(dir)
			}
			continue
		}
		first, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(first))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}
