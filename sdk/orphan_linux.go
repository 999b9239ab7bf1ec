//go:build linux

package sdk

import (
	"errors"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
)

// watchHost arranges for onGone to be called once when the host process
// dies, however it dies (kill -9 included), and returns a function that ends
// the watch. Three mechanisms, any of which suffices:
//
//   - PR_SET_PDEATHSIG delivers SIGTERM when the parent exits. It fires when
//     the parent *thread* that started us exits, which is why the dw host
//     starts plugins from a thread that lives as long as the host. It is
//     also a per-thread setting on our side: the dw host sets it (SIGTERM)
//     on the thread that execs the plugin, its main thread; the call here
//     adds it on whichever thread runs it, for parents that set nothing.
//   - A pidfd of the host (Linux 5.3+) becomes readable when the host exits;
//     one goroutine blocks in poll on it, so this costs nothing while waiting.
//   - Where pidfd_open is refused, the parent pid is polled every 250 ms.
//
// The host's pid comes from DW_HOST_PID, else from getppid at start. If the
// parent is already gone at start (the race between fork and prctl), onGone
// is called at once.
func watchHost(logger hclog.Logger, onGone func(reason string)) (stop func()) {
	hostPID := os.Getppid()
	if s := os.Getenv(contract.EnvHostPID); s != "" {
		if pid, err := strconv.Atoi(s); err == nil && pid > 0 {
			hostPID = pid
		}
	}
	done := make(chan struct{})
	var fired = make(chan struct{}, 1)
	gone := func(reason string) {
		select {
		case fired <- struct{}{}:
			go onGone(reason)
		default:
		}
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	// Once the host is gone, the read ends of our stdout and stderr pipes
	// are closed. Without this, the Go runtime kills the process with
	// SIGPIPE at the first log line written after that — before Shutdown
	// could run (a fabric node would vanish instead of leaving, stores
	// would not close their files). Caught, SIGPIPE only makes the write fail
	// with EPIPE, and the lost log line is all that is lost. The channel
	// is never read: the signal itself carries nothing to act on. (Notify
	// rather than Ignore: an ignored signal stays ignored in children a
	// plugin starts; a caught one is reset to the default at exec.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	go func() {
		select {
		case <-sigs:
			gone("received SIGTERM (host stopped or died)")
		case <-done:
		}
	}()

	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGTERM), 0, 0, 0); err != nil {
		logger.Warn("cannot set parent-death signal; relying on the host watch", "error", err)
	}
	if os.Getppid() != hostPID {
		gone("host process " + strconv.Itoa(hostPID) + " is not our parent (it exited before we started)")
	}

	stopR, stopW, err := os.Pipe()
	if err != nil {
		logger.Warn("host watch: pipe", "error", err)
	}
	pidfd, perr := unix.PidfdOpen(hostPID, 0)
	switch {
	case perr == nil && err == nil:
		go func() {
			defer unix.Close(pidfd)
			defer stopR.Close()
			fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}, {Fd: int32(stopR.Fd()), Events: unix.POLLIN}}
			for {
				_, err := unix.Poll(fds, -1)
				if errors.Is(err, unix.EINTR) {
					continue
				}
				if fds[1].Revents != 0 {
					return
				}
				if err != nil {
					logger.Warn("host watch: poll", "error", err)
					pollParent(hostPID, done, gone)
					return
				}
				if fds[0].Revents != 0 {
					gone("host process " + strconv.Itoa(hostPID) + " exited")
					return
				}
			}
		}()
	default:
		if perr == nil {
			unix.Close(pidfd)
		} else {
			logger.Debug("pidfd_open refused; polling the parent pid", "error", perr)
		}
		if err == nil {
			stopR.Close()
		}
		go pollParent(hostPID, done, gone)
	}

	return func() {
		signal.Stop(sigs)
		close(done)
		if stopW != nil {
			stopW.Close()
		}
	}
}

// killOwnGroup kills this process's group with SIGKILL, this process
// included, when the dw host started it: the host makes every plugin the
// leader of its own group (Setpgid) and kills the group once the plugin
// exits; when the host itself is gone, this is how children a plugin
// started do not outlive it. A process not started by a host, or not the
// leader of its group (run from a shell pipeline, say), is left alone.
func killOwnGroup() {
	if os.Getenv(contract.EnvHostPID) == "" || unix.Getpgrp() != os.Getpid() {
		return
	}
	_ = unix.Kill(-os.Getpid(), unix.SIGKILL)
}
