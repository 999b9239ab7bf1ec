package sdktest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// procStat is what the harness reads from /proc/<pid>/stat.
type procStat struct {
	state     byte   // R, S, D, Z, X, …
	pgrp      int    // process group
	startTime uint64 // clock ticks after boot; tells a reused pid apart
}

// readProcStat reads /proc/<pid>/stat. An error wrapping os.ErrNotExist
// means there is no such process.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name in %q", pid, b)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: too few fields in %q", pid, b)
	}
	pgrp, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: pgrp: %w", pid, err)
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return procStat{state: f[0][0], pgrp: pgrp, startTime: start}, nil
}

// exited reports whether a state is that of a process that has ended and
// waits only to be reaped.
func (s procStat) exited() bool { return s.state == 'Z' || s.state == 'X' }

// groupMembers lists the live (not zombie) processes of process group pgid.
func groupMembers(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(pid)
		if err == nil && st.pgrp == pgid && !st.exited() {
			pids = append(pids, pid)
		}
	}
	return pids
}
