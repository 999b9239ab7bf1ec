package sdktest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// standInHost is the script of the stand-in host: it starts the plugin
// ($0) in the background, without the pid pipe, reports the plugin's pid on
// fd 3 and waits, so that the plugin's parent is this shell.
const standInHost = `"$0" 3>&- & echo $! >&3; exec 3>&-; wait`

// reHandshake matches go-plugin's handshake line: core|app|network|addr|…
var reHandshake = regexp.MustCompile(`^\d+\|\d+\|(tcp|unix)\|`)

// hostDeath starts the plugin under a shell that stands in for the host,
// waits for the plugin's handshake, kills the shell with SIGKILL and checks
// that the plugin is gone (or a zombie waiting to be reaped by init) within
// OrphanWithin. The plugin watches its real parent: DW_HOST_PID is not set.
func (r *run) hostDeath() outcome {
	const shell = "/bin/sh"
	if _, err := os.Stat(shell); err != nil {
		return skip("needs %s to stand in for the host: %v", shell, err)
	}
	var files []*os.File // all pipe ends, closed on return
	defer func() {
		for _, f := range files {
			_ = f.Close()
		}
	}()
	pipe := func() (*os.File, *os.File, error) {
		rd, wr, err := os.Pipe()
		if err == nil {
			files = append(files, rd, wr)
		}
		return rd, wr, err
	}
	pidR, pidW, err1 := pipe()
	outR, outW, err2 := pipe()
	errR, errW, err3 := pipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		return fail("create pipes: %v", err)
	}

	cmd := exec.Command(shell, "-c", standInHost, r.path)
	cmd.Env = pluginEnv(
		pluginhost.Handshake().MagicCookieKey+"="+pluginhost.Handshake().MagicCookieValue,
		"PLUGIN_PROTOCOL_VERSIONS="+strconv.Itoa(pluginhost.ProtocolVersion),
		"PLUGIN_MIN_PORT=10000",
		"PLUGIN_MAX_PORT=25000",
		plugin.EnvUnixSocketDir+"="+r.tmp.sockets,
	)
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = []*os.File{pidW}
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return fail("start %s as a stand-in host: %v", shell, err)
	}
	// The shell's process group holds the shell, the plugin and whatever the
	// plugin starts: kill it all on every path.
	pgid := cmd.Process.Pid
	waited := false
	defer func() {
		killGroup(pgid)
		if !waited {
			_ = cmd.Wait()
		}
	}()
	for _, f := range []*os.File{pidW, outW, errW} {
		_ = f.Close()
	}

	// The readers below end when their pipes close: the deferred function
	// after them kills the group and closes the read ends, then wg.Wait
	// runs (defers run last first).
	var wg sync.WaitGroup
	defer wg.Wait()
	stderr := newTail(16 << 10)
	pidCh := make(chan string, 1)
	handshakeCh := make(chan string, 1)
	stdoutDone := make(chan struct{})
	var before atomic.Int64 // stdout lines before the handshake
	wg.Add(3)
	go func() {
		defer wg.Done()
		line, _ := bufio.NewReader(pidR).ReadString('\n')
		pidCh <- strings.TrimSpace(line)
	}()
	go func() {
		defer wg.Done()
		defer close(stdoutDone)
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case found:
			case reHandshake.MatchString(line):
				found = true
				handshakeCh <- line
			default:
				before.Add(1)
			}
		}
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(stderr, errR)
	}()
	defer func() {
		killGroup(pgid)
		_ = pidR.Close()
		_ = outR.Close()
		_ = errR.Close()
	}()

	timeout := time.NewTimer(r.opts.StartTimeout)
	defer timeout.Stop()
	var pid int
	select {
	case s := <-pidCh:
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return fail("the stand-in host reported no plugin pid (%q)%s", s, stderr.section())
		}
		pid = n
	case <-timeout.C:
		return fail("the stand-in host reported no plugin pid within %v", r.opts.StartTimeout)
	case <-r.ctx.Done():
		return fail("%v", r.ctx.Err())
	}
	st0, err := readProcStat(pid)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail("read the plugin's process state: %v", err)
	}

	select {
	case <-handshakeCh:
	case <-stdoutDone:
		return fail("the plugin exited before the handshake%s", stderr.section())
	case <-timeout.C:
		return fail("no handshake within the start timeout of %v%s", r.opts.StartTimeout, stderr.section())
	case <-r.ctx.Done():
		return fail("%v", r.ctx.Err())
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fail("kill the stand-in host (pid %d): %v", pgid, err)
	}
	_ = cmd.Wait()
	waited = true
	killedAt := time.Now()

	gone := func() bool {
		st, err := readProcStat(pid)
		return errors.Is(err, fs.ErrNotExist) || err == nil && (st.exited() || st.startTime != st0.startTime)
	}
	for !gone() {
		if time.Since(killedAt) > r.opts.OrphanWithin {
			if !gone() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				// SIGKILL is asynchronous: do not return while it still runs,
				// so the harness never leaves a process behind.
				for deadline := time.Now().Add(5 * time.Second); !gone() && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
				}
			}
			return fail("the plugin (pid %d) was still running %v after its host (pid %d) was killed with SIGKILL; a plugin must exit when its host dies, however it dies (sdk.Serve does this: PR_SET_PDEATHSIG and a watch of the host pid); the harness killed it%s",
				pid, r.opts.OrphanWithin, pgid, stderr.section())
		}
		time.Sleep(10 * time.Millisecond)
	}
	detail := fmt.Sprintf("the plugin exited %v after its host was killed with SIGKILL", time.Since(killedAt).Round(timeUnit))
	switch n := before.Load(); n {
	case 0:
	case 1:
		detail += " (it wrote a line to stdout before the handshake, which was skipped)"
	default:
		detail += fmt.Sprintf(" (it wrote %d lines to stdout before the handshake, which were skipped)", n)
	}
	return pass("%s", detail)
}
