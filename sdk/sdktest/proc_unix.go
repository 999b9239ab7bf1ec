//go:build unix

package sdktest

import (
	"os"
	"os/exec"
	"syscall"
	"time"
)

// setProcessGroup starts cmd in a process group of its own, whose id is its
// pid, so that everything it starts can be found and killed.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup kills every process of process group pgid.
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// signaled returns the signal that ended a process, if one did.
func signaled(ps *os.ProcessState) (os.Signal, bool) {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return nil, false
	}
	return ws.Signal(), true
}

// leftInGroup waits up to wait (at least 200ms) for process group pgid to
// empty, then kills what is left and returns the pids it found (all of them
// where they cannot be listed: [-1]).
func leftInGroup(pgid int, wait time.Duration) []int {
	deadline := time.Now().Add(max(wait, 200*time.Millisecond))
	for {
		left := groupMembers(pgid)
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			killGroup(pgid)
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}
