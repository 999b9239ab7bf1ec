package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(m.Run()) // the helper process: no shared server
	}
	goleak.VerifyTestMain(TestingM(m))
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func queryString(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// processesIn returns the pids of processes whose working folder is dir or
// below it (postgres processes work in their data folder).
func processesIn(t *testing.T, dir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("read /proc: %v", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil {
			continue
		}
		if cwd == dir || strings.HasPrefix(cwd, dir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitNoProcesses waits (bounded) until no process works in dir.
func waitNoProcesses(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pids := processesIn(t, dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes %v still run in %s", pids, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func uidOf(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("open status of %d: %v", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "Uid:" {
			uid, _ := strconv.Atoi(fields[1])
			return uid
		}
	}
	t.Fatalf("no Uid in status of %d", pid)
	return -1
}

func TestStartConnectCreateStop(t *testing.T) {
	srv := Start(t)
	conn := connect(t, srv.DSN("postgres"))
	if v := queryString(t, conn, "SHOW server_version"); !strings.HasPrefix(v, "1") {
		t.Errorf("server_version = %q", v)
	}
	// Defaults unless asked otherwise.
	if v := queryString(t, conn, "SHOW fsync"); v != "on" {
		t.Errorf("fsync = %q, want PostgreSQL's default on", v)
	}
	if v := queryString(t, conn, "SHOW listen_addresses"); v != "127.0.0.1" {
		t.Errorf("listen_addresses = %q, want 127.0.0.1", v)
	}
	if got, want := srv.Addr(), "127.0.0.1:"+strconv.Itoa(srv.Port()); got != want {
		t.Errorf("Addr() = %q, want %q", got, want)
	}

	wantUID := os.Getuid()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		wantUID, _ = strconv.Atoi(u.Uid)
	}
	if got := uidOf(t, srv.Pid()); got != wantUID {
		t.Errorf("postgres runs as uid %d, want %d", got, wantUID)
	}

	for _, name := range []string{"", "plain", `odd "name" - 1`} {
		dsn := srv.CreateDatabase(t, name)
		db := connect(t, dsn)
		if _, err := db.Exec(context.Background(), "CREATE TABLE t (v int); INSERT INTO t VALUES (7)"); err != nil {
			t.Fatalf("use database %q: %v", name, err)
		}
		if name != "" {
			if got := queryString(t, db, "SELECT current_database()"); got != name {
				t.Errorf("current_database() = %q, want %q", got, name)
			}
		}
	}

	pid, base := srv.Pid(), srv.base
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("postmaster %d still exists after Stop (kill 0: %v)", pid, err)
	}
	waitNoProcesses(t, base) // its children too
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("server folder %s remains after Stop (%v)", base, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := pgx.Connect(ctx, srv.DSN("postgres")); err == nil {
		_ = c.Close(ctx)
		t.Error("connected after Stop")
	}
}

func TestOptions(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	srv := Start(t, WithPort(port), WithFastSettings(), WithSetting("work_mem", "8MB"))
	if srv.Port() != port {
		t.Errorf("Port() = %d, want %d", srv.Port(), port)
	}
	conn := connect(t, srv.DSN("postgres"))
	for setting, want := range map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "work_mem": "8MB"} {
		if got := queryString(t, conn, "SHOW "+setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
}

func TestKill(t *testing.T) {
	srv := Start(t)
	base := srv.base
	if err := srv.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	waitNoProcesses(t, base)
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop after Kill: %v", err)
	}
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("server folder %s remains after Stop (%v)", base, err)
	}
}

func TestStopPaused(t *testing.T) {
	srv := Start(t)
	if err := syscall.Kill(srv.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop of a paused server: %v", err)
	}
	waitNoProcesses(t, srv.base)
}

func TestShared(t *testing.T) {
	a := Shared(t)
	b := Shared(t)
	if a != b {
		t.Fatal("Shared returned two servers")
	}
	connect(t, a.CreateDatabase(t, ""))
}

const helperEnv = "DW_PGTEST_HELPER"

// TestHelperDies is run in a child process by TestNoOrphans: it starts a
// server, reports it, and dies by SIGKILL without any cleanup.
func TestHelperDies(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process of TestNoOrphans")
	}
	srv := Start(t)
	fmt.Printf("SERVER %d %s\n", srv.Pid(), srv.base)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func TestNoOrphans(t *testing.T) {
	if _, err := findBinDir(os.Getenv(EnvBinDir)); err != nil {
		failOrSkip(t, err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDies$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, _ := cmd.Output() // it dies by SIGKILL
	var pid int
	var base string
	for _, line := range strings.Split(string(out), "\n") {
		if _, err := fmt.Sscanf(line, "SERVER %d %s", &pid, &base); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("helper did not report a server; output:\n%s", out)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) }) // the helper could not
	waitNoProcesses(t, base)
	waitDead(t, pid)
}

// waitDead waits (bounded) until pid is gone or a zombie waiting for its new
// parent to reap it.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// pid (comm) state ...: the state follows the last ')'.
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d outlived the test binary: %s", pid, stat)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recordTB records how a test ended; Skip and Fatal end the goroutine as
// testing.T does.
type recordTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordTB) Helper() {}
func (r *recordTB) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recordTB) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recordTB) Fatal(args ...any) {
	r.failed = fmt.Sprint(args...)
	runtime.Goexit()
}

// run calls f with r in a goroutine of its own, as testing does.
func (r *recordTB) run(f func(tb testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
}

func TestFailOrSkip(t *testing.T) {
	missing := &unavailableError{reason: "PostgreSQL server binaries not found"}
	tests := []struct {
		name      string
		ci        string
		err       error
		wantSkip  bool
		wantFatal bool
	}{
		{"missing outside CI skips", "", missing, true, false},
		{"missing with CI=false skips", "false", missing, true, false},
		{"missing in CI fails", "true", missing, false, true},
		{"broken outside CI fails", "", errors.New("initdb failed"), false, true},
		{"broken in CI fails", "true", errors.New("initdb failed"), false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recordTB{}
			r.run(func(tb testing.TB) { failOrSkip(tb, tc.err) })
			if (r.skipped != "") != tc.wantSkip || (r.failed != "") != tc.wantFatal {
				t.Fatalf("skipped %q, failed %q; want skip %v, fail %v", r.skipped, r.failed, tc.wantSkip, tc.wantFatal)
			}
			msg := r.skipped + r.failed
			if errors.Is(tc.err, missing) {
				for _, hint := range []string{"apt-get install postgresql-15", EnvBinDir} {
					if !strings.Contains(msg, hint) {
						t.Errorf("message %q does not say %q", msg, hint)
					}
				}
			}
		})
	}
}

func TestSharedNeedsMain(t *testing.T) {
	shared.mu.Lock()
	inMain := shared.inMain
	shared.inMain = false
	shared.mu.Unlock()
	defer func() {
		shared.mu.Lock()
		shared.inMain = inMain
		shared.mu.Unlock()
	}()
	r := &recordTB{}
	r.run(func(tb testing.TB) { Shared(tb) })
	if !strings.Contains(r.failed, "pgtest.Main") {
		t.Fatalf("Shared without Main: failed %q, skipped %q; want a failure naming pgtest.Main", r.failed, r.skipped)
	}
}

// fakeBinDir makes dir hold executables named names.
func fakeBinDir(t *testing.T, dir string, names ...string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFindBinDir(t *testing.T) {
	root := t.TempDir()
	envDir := fakeBinDir(t, filepath.Join(root, "env"), "initdb", "postgres")
	emptyDir := fakeBinDir(t, filepath.Join(root, "empty"))
	debian := filepath.Join(root, "postgresql")
	fakeBinDir(t, filepath.Join(debian, "9.6", "bin"), "initdb", "postgres")
	want15 := fakeBinDir(t, filepath.Join(debian, "15", "bin"), "initdb", "postgres")
	fakeBinDir(t, filepath.Join(debian, "16", "bin"), "initdb") // no postgres
	pathDir := fakeBinDir(t, filepath.Join(root, "path"), "initdb", "postgres")

	oldGlob := debianBinGlob
	t.Cleanup(func() { debianBinGlob = oldGlob })

	tests := []struct {
		name        string
		env         string
		glob        string
		path        string
		want        string
		unavailable bool // error is "not installed" (skip outside CI)
	}{
		{name: "env wins", env: envDir, glob: filepath.Join(debian, "*", "bin"), want: envDir},
		{name: "env without binaries fails", env: emptyDir, glob: filepath.Join(debian, "*", "bin")},
		{name: "newest complete debian folder", glob: filepath.Join(debian, "*", "bin"), path: pathDir, want: want15},
		{name: "PATH last", glob: filepath.Join(root, "none", "*", "bin"), path: emptyDir + ":" + pathDir, want: pathDir},
		{name: "nothing", glob: filepath.Join(root, "none", "*", "bin"), path: emptyDir, unavailable: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			debianBinGlob = tc.glob
			t.Setenv("PATH", tc.path)
			got, err := findBinDir(tc.env)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("findBinDir = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("findBinDir = %q, want an error", got)
			}
			var ue *unavailableError
			if errors.As(err, &ue) != tc.unavailable {
				t.Fatalf("error %v: unavailable = %v, want %v", err, !tc.unavailable, tc.unavailable)
			}
		})
	}
}

func TestSweepLeftovers(t *testing.T) {
	root := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(name, pid string, age time.Duration) string {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if pid != "" {
			if err := os.WriteFile(filepath.Join(dir, "data", "postmaster.pid"), []byte(pid+"\n/some/data\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		when := time.Now().Add(-age)
		if err := os.Chtimes(dir, when, when); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	deadServer := mk(folderPrefix+"dead", strconv.Itoa(dead.Process.Pid), 0)
	liveServer := mk(folderPrefix+"live", strconv.Itoa(os.Getpid()), 2*leftoverAge)
	oldUnstarted := mk(folderPrefix+"old", "", 2*leftoverAge)
	newUnstarted := mk(folderPrefix+"new", "", 0)
	other := mk("other-dead", strconv.Itoa(dead.Process.Pid), 2*leftoverAge)

	sweepLeftovers(root, time.Now())

	for dir, wantKept := range map[string]bool{deadServer: false, liveServer: true, oldUnstarted: false, newUnstarted: true, other: true} {
		_, err := os.Stat(dir)
		if kept := err == nil; kept != wantKept {
			t.Errorf("%s: kept %v, want %v", filepath.Base(dir), kept, wantKept)
		}
	}
}
