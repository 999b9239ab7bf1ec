package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
	"golang.org/x/sys/unix"
)

// errSpawnerClosed is returned for a start requested after Stop.
var errSpawnerClosed = errors.New("the plugin manager is stopped")

// spawner runs every plugin fork/exec on one goroutine locked to one OS
// thread. A plugin's parent-death signal (Pdeathsig) fires when the *thread*
// that forked it exits, and the Go runtime retires threads freely; this
// thread lives until the manager has stopped every plugin, so Pdeathsig
// fires only when the host process dies. When the loop ends, the goroutine
// returns still locked and the runtime ends the thread with it.
type spawner struct {
	reqs chan spawnReq
	done chan struct{}

	mu     sync.RWMutex
	closed bool
}

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq), done: make(chan struct{})}
	go s.loop()
	return s
}

func (s *spawner) loop() {
	defer close(s.done)
	runtime.LockOSThread() // never unlocked, on purpose: see the type comment
	for r := range s.reqs {
		r.reply <- r.cmd.Start()
	}
}

// start runs cmd.Start on the spawner thread. Once the request is taken, it
// waits for the result even if ctx ends, so that no started process goes
// unnoticed.
func (s *spawner) start(ctx context.Context, cmd *exec.Cmd) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errSpawnerClosed
	}
	reply := make(chan error, 1)
	select {
	case s.reqs <- spawnReq{cmd: cmd, reply: reply}:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-reply
}

// close ends the spawner thread once in-flight starts are done.
func (s *spawner) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.reqs)
	}
	s.mu.Unlock()
	<-s.done
}

// pipeDrainTimeout bounds how long the runner waits, after the plugin
// exited, for its stdout and stderr to reach end of file before closing
// them: a grandchild that left the process group could hold them open.
const pipeDrainTimeout = 2 * time.Second

// procRunner is the go-plugin runner.Runner through which the supervisor
// owns each plugin process: it starts it on the spawner thread in its own
// process group with a parent-death signal, notices its exit at once
// (waitid), kills the whole group on exit and on Kill, and reaps it.
type procRunner struct {
	spawn    *spawner
	logger   hclog.Logger
	env      []string
	execPath string // the file executed (a private copy when pinned)
	display  string // the binary in plugins.dir, argv[0]
	tmpDir   string // go-plugin's socket folder, removed by it on Kill

	stdoutR, stderrR *os.File
	stdoutW, stderrW *os.File
	stdout, stderr   *eofReader

	mu      sync.Mutex
	pid     int
	dead    bool // reaped or about to be: the pid is no longer ours to signal
	killed  bool // Kill was called
	started bool

	exited   chan struct{} // closed once the process has exited and exitErr is set
	exitErr  error
	finished chan struct{} // closed when the pipes are closed and the runner is done
}

var _ runner.Runner = (*procRunner)(nil)

func newProcRunner(spawn *spawner, logger hclog.Logger, env []string, execPath, display, tmpDir string) (*procRunner, error) {
	r := &procRunner{
		spawn: spawn, logger: logger, env: env, execPath: execPath, display: display, tmpDir: tmpDir,
		exited: make(chan struct{}), finished: make(chan struct{}),
	}
	var err error
	if r.stdoutR, r.stdoutW, err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("plugin stdout pipe: %w", err)
	}
	if r.stderrR, r.stderrW, err = os.Pipe(); err != nil {
		r.stdoutR.Close()
		r.stdoutW.Close()
		return nil, fmt.Errorf("plugin stderr pipe: %w", err)
	}
	r.stdout = &eofReader{f: r.stdoutR, eof: make(chan struct{})}
	r.stderr = &eofReader{f: r.stderrR, eof: make(chan struct{})}
	return r, nil
}

// spawnAttempts bounds retries of a start that failed with ETXTBSY, which
// happens when another goroutine of this process forks while a freshly
// written binary (a private copy) still has a write descriptor open in the
// child between fork and exec.
const spawnAttempts = 5

// Start starts the plugin process.
func (r *procRunner) Start(ctx context.Context) error {
	defer func() {
		// The parent's copies of the write ends must go, or the pipes
		// never reach end of file.
		r.stdoutW.Close()
		r.stderrW.Close()
	}()
	var cmd *exec.Cmd
	var err error
	for attempt := 1; ; attempt++ {
		r.mu.Lock()
		killed := r.killed
		r.mu.Unlock()
		if killed {
			err = errors.New("stopped before it started")
			break
		}
		cmd = &exec.Cmd{
			Path:   r.execPath,
			Args:   []string{r.display},
			Env:    r.env,
			Stdin:  nil, // /dev/null, not the host's stdin
			Stdout: r.stdoutW,
			Stderr: r.stderrW,
			SysProcAttr: &syscall.SysProcAttr{
				Setpgid: true,
				// SIGTERM, not SIGKILL: an sdk plugin whose host died
				// stops through its graceful path (Shutdown: a fabric node
				// leaves, stores close their files) and exits within
				// sdk's orphan deadline, killing its own process group;
				// a process that does not catch SIGTERM dies of it.
				Pdeathsig: syscall.SIGTERM,
			},
		}
		err = r.spawn.start(ctx, cmd)
		if !errors.Is(err, syscall.ETXTBSY) || attempt == spawnAttempts {
			break
		}
		time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
	}
	if err != nil {
		r.stdoutR.Close()
		r.stderrR.Close()
		r.stdout.markEOF()
		r.stderr.markEOF()
		// go-plugin removes its socket folder only for a started runner.
		if r.tmpDir != "" {
			_ = os.RemoveAll(r.tmpDir)
		}
		return fmt.Errorf("start %s: %w", r.display, err)
	}
	r.mu.Lock()
	r.pid = cmd.Process.Pid
	r.started = true
	killed := r.killed
	r.mu.Unlock()
	r.logger.Debug("plugin process started", "path", r.display, "pid", r.pid)
	go r.wait(cmd)
	if killed {
		_ = r.Kill(context.Background())
	}
	return nil
}

// wait notices the exit, kills what is left of the process group, reaps the
// process and closes the pipes once drained.
func (r *procRunner) wait(cmd *exec.Cmd) {
	defer close(r.finished)
	pid := r.pid
	var info unix.Siginfo
	for {
		// WNOWAIT: observe the exit without reaping, so that the pid (and
		// with it the process group id) cannot be reused while we kill the
		// group below.
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	r.mu.Lock()
	_ = unix.Kill(-pid, unix.SIGKILL) // children the plugin left behind
	r.dead = true
	r.mu.Unlock()
	r.exitErr = cmd.Wait()
	close(r.exited)

	t := time.NewTimer(pipeDrainTimeout)
	defer t.Stop()
drain:
	for _, ch := range []chan struct{}{r.stdout.eof, r.stderr.eof} {
		select {
		case <-ch:
		case <-t.C:
			r.logger.Warn("plugin output still open after its exit; closing it (a child left its process group?)", "path", r.display, "pid", pid)
			break drain
		}
	}
	r.stdoutR.Close()
	r.stderrR.Close()
}

// Wait waits for the process to exit and returns how it exited.
func (r *procRunner) Wait(ctx context.Context) error {
	select {
	case <-r.exited:
		return r.exitErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill sends SIGKILL to the plugin's whole process group. It does not wait;
// Wait and finished tell when it is gone.
func (r *procRunner) Kill(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killed = true
	if r.started && !r.dead {
		if err := unix.Kill(-r.pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill process group %d of %s: %w", r.pid, r.display, err)
		}
	}
	return nil
}

// PID is the process id, 0 before the start.
func (r *procRunner) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pid
}

// Stdout is the plugin's stdout, which carries the handshake.
func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }

// Stderr is the plugin's stderr, which carries its logs.
func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }

// Name is the plugin binary's path.
func (r *procRunner) Name() string { return r.display }

// ID is the pid, "" before the start.
func (r *procRunner) ID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		return ""
	}
	return strconv.Itoa(r.pid)
}

// Diagnose returns nothing: the supervisor writes its own explanations.
func (r *procRunner) Diagnose(context.Context) string { return "" }

// PluginToHost is the identity: host and plugin share the network.
func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

// HostToPlugin is the identity: host and plugin share the network.
func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// eofReader reads a pipe and says when it reached its end. Closing is left
// to the runner.
type eofReader struct {
	f    *os.File
	eof  chan struct{}
	once sync.Once
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.f.Read(p)
	if err != nil {
		e.markEOF()
	}
	return n, err
}

func (e *eofReader) markEOF() { e.once.Do(func() { close(e.eof) }) }

func (e *eofReader) Close() error { return nil }
