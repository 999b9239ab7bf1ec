package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// envHelperHost makes TestHelperHost act as a dw host over the plugins
// folder it names.
const envHelperHost = "DW_SUPERVISOR_TEST_HELPER_HOST"

// TestHelperHost is not a test: run by TestHostKill9LeavesNoPlugins in a
// child process, it starts a manager, prints "pid <name> <pid>" for every
// plugin process as it appears, and waits to be killed.
func TestHelperHost(t *testing.T) {
	dir := os.Getenv(envHelperHost)
	if dir == "" {
		t.Skip("helper process for TestHostKill9LeavesNoPlugins")
	}
	m, err := NewManager(Options{Dir: dir, StartTimeout: 5 * time.Minute, Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Debug})})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go func() { _ = m.Start(context.Background()) }()
	seen := map[int]bool{}
	for {
		m.mu.Lock()
		for name, p := range m.plugins {
			if p.run != nil && p.run.PID() != 0 && !seen[p.run.PID()] {
				seen[p.run.PID()] = true
				fmt.Printf("pid %s %d %s\n", name, p.run.PID(), p.st.State)
			}
			if p.st.State == StateServing {
				fmt.Printf("serving %s\n", name)
			}
		}
		m.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHostKill9LeavesNoPlugins kills a host with SIGKILL and checks that
// its plugins die with it: a good plugin (the sdk's own host watch, and
// Pdeathsig), one stuck before its handshake, which only the Pdeathsig set
// by the spawner thread can end, and the children of a plugin (forker's
// sleep), which the sdk kills with its process group on the way out.
func TestHostKill9LeavesNoPlugins(t *testing.T) {
	h := newHarness(t, []string{"good", "hang", "forker"}, nil)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHost$", "-test.v")
	cmd.Env = append(os.Environ(), envHelperHost+"="+h.dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	pids := map[string]int{}
	serving := map[string]bool{}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	deadline := time.After(60 * time.Second)
	for pids["good"] == 0 || pids["hang"] == 0 || pids["forker"] == 0 || !serving["good"] || !serving["forker"] {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("helper host exited")
			}
			f := strings.Fields(l)
			switch {
			case len(f) >= 3 && f[0] == "pid":
				pids[f[1]], _ = strconv.Atoi(f[2])
				h.notePID(pids[f[1]])
			case len(f) == 2 && f[0] == "serving":
				serving[f[1]] = true
			}
		case <-deadline:
			t.Fatalf("helper host did not start its plugins: %v serving=%v", pids, serving)
		}
	}
	// forker starts its child at Configure, before it serves.
	children := groupMembers(t, pids["forker"])
	if len(children) == 0 {
		t.Fatalf("forker (pid %d) has no child in its process group", pids["forker"])
	}
	for _, c := range children {
		h.notePID(c)
		pids[fmt.Sprintf("forker's child %d", c)] = c
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	go func() {
		for range lines {
		}
	}()
	for name, pid := range pids {
		if !waitGone(pid, 20*time.Second) {
			t.Fatalf("plugin %s (pid %d) outlived its host by 20s", name, pid)
		}
	}
}

// groupMembers lists the processes of process group pgid other than its
// leader.
func groupMembers(t *testing.T, pgid int) []int {
	t.Helper()
	return processesWhere(t, func(pid int) bool {
		g, err := syscall.Getpgid(pid)
		return pid != pgid && err == nil && g == pgid
	})
}
