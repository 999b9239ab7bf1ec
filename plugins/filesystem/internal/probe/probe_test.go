package probe

import (
	"errors"
	"os"
	"strings"
	"testing"
	"unsafe"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// checkDir fails if dir holds any entry: the probe file must be gone.
func checkDir(tb testing.TB, dir string) {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		tb.Errorf("%s left behind in %s", e.Name(), dir)
	}
}

func TestIOURingReal(t *testing.T) {
	c := IOURing()
	t.Logf("IOURing() = %+v", c)
	if c.Available && !strings.Contains(c.Detail, "io_uring_setup succeeded") {
		t.Errorf("available, but Detail %q does not say the setup succeeded", c.Detail)
	}
	if !c.Available && !strings.Contains(c.Detail, ": ") {
		t.Errorf("unavailable, but Detail %q does not say why", c.Detail)
	}
}

func TestExplainIOURing(t *testing.T) {
	tests := []struct {
		name        string
		errno       unix.Errno
		disabled    string
		disabledErr error
		want        string
	}{
		{name: "sysctl 2", errno: unix.EPERM, disabled: "2",
			want: "EPERM: io_uring is disabled (kernel.io_uring_disabled=2) or refused by a seccomp filter"},
		{name: "sysctl 1", errno: unix.EPERM, disabled: "1",
			want: "EPERM: io_uring is limited to the kernel.io_uring_group group (kernel.io_uring_disabled=1)"},
		{name: "seccomp", errno: unix.EPERM, disabled: "0",
			want: "EPERM: io_uring is refused by a seccomp filter (kernel.io_uring_disabled=0 allows it)"},
		{name: "sysctl unreadable", errno: unix.EPERM, disabledErr: os.ErrNotExist,
			want: "EPERM: io_uring is refused by a seccomp filter or disabled (kernel.io_uring_disabled unreadable)"},
		{name: "no kernel support", errno: unix.ENOSYS,
			want: "ENOSYS: kernel without io_uring"},
		{name: "memlock", errno: unix.ENOMEM,
			want: "ENOMEM: no memory for the ring"},
		{name: "other", errno: unix.EFAULT,
			want: "EFAULT: io_uring_setup failed: bad address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := explainIOURing(tt.errno, tt.disabled, tt.disabledErr)
			if c.Available || !strings.HasPrefix(c.Detail, tt.want) {
				t.Fatalf("explainIOURing = %+v; want unavailable, Detail starting %q", c, tt.want)
			}
		})
	}
}

func TestODirectReal(t *testing.T) {
	dirs := []string{t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		shm, err := os.MkdirTemp("/dev/shm", "dw-probe-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(shm) })
		dirs = append(dirs, shm)
	}
	for _, dir := range dirs {
		c := ODirect(dir)
		t.Logf("ODirect(%s) = %+v", dir, c)
		if c.Available && !strings.Contains(c.Detail, "O_DIRECT accepted by the file system of "+dir) {
			t.Errorf("available, but Detail %q does not say so", c.Detail)
		}
		if !c.Available && !strings.Contains(c.Detail, "EINVAL") && !strings.Contains(c.Detail, "could not probe") {
			t.Errorf("unavailable, but Detail %q does not say why", c.Detail)
		}
		checkDir(t, dir)
	}
}

func TestODirectMissingDir(t *testing.T) {
	dir := t.TempDir() + "/gone"
	c := ODirect(dir)
	if c.Available || !strings.Contains(c.Detail, "could not probe O_DIRECT in "+dir+": open: ENOENT") {
		t.Fatalf("ODirect(%s) = %+v; want unavailable with ENOENT at open", dir, c)
	}
}

// TestODirectFaults injects failures into the probe's system calls: each
// answers no with the reason, and the probe file never stays.
func TestODirectFaults(t *testing.T) {
	// createThen creates the file for real, as Linux does before it checks
	// O_DIRECT, and then fails with err.
	createThen := func(err error) func(string, int, uint32) (int, error) {
		return func(path string, flags int, mode uint32) (int, error) {
			fd, oerr := unix.Open(path, flags&^unix.O_DIRECT, mode)
			if oerr != nil {
				return -1, oerr
			}
			unix.Close(fd)
			return -1, err
		}
	}
	plainOpen := func(path string, flags int, mode uint32) (int, error) {
		return unix.Open(path, flags&^unix.O_DIRECT, mode)
	}
	tests := []struct {
		name string
		ops  odirectOps
		want string
	}{
		{name: "EINVAL at open leaves a file", ops: odirectOps{open: createThen(unix.EINVAL), pwrite: unix.Pwrite, pread: unix.Pread},
			want: "EINVAL: the file system of {dir} does not support O_DIRECT"},
		{name: "EACCES at open", ops: odirectOps{open: func(string, int, uint32) (int, error) { return -1, unix.EACCES }, pwrite: unix.Pwrite, pread: unix.Pread},
			want: "could not probe O_DIRECT in {dir}: open: EACCES: permission denied"},
		{name: "EINVAL at write", ops: odirectOps{open: plainOpen, pwrite: func(int, []byte, int64) (int, error) { return 0, unix.EINVAL }, pread: unix.Pread},
			want: "EINVAL: the file system of {dir} refused an aligned O_DIRECT write"},
		{name: "ENOSPC at write", ops: odirectOps{open: plainOpen, pwrite: func(int, []byte, int64) (int, error) { return 0, unix.ENOSPC }, pread: unix.Pread},
			want: "could not probe O_DIRECT in {dir}: write: ENOSPC"},
		{name: "EINVAL at read", ops: odirectOps{open: plainOpen, pwrite: unix.Pwrite, pread: func(int, []byte, int64) (int, error) { return 0, unix.EINVAL }},
			want: "EINVAL: the file system of {dir} refused an aligned O_DIRECT read"},
		{name: "short read", ops: odirectOps{open: plainOpen, pwrite: unix.Pwrite, pread: func(int, []byte, int64) (int, error) { return 100, nil }},
			want: "could not probe O_DIRECT in {dir}: read moved 100 of 4096 bytes"},
		{name: "other bytes read", ops: odirectOps{open: plainOpen, pwrite: unix.Pwrite, pread: func(_ int, p []byte, _ int64) (int, error) { clear(p); return len(p), nil }},
			want: "the file system of {dir} read back other bytes"},
		{name: "works", ops: odirectOps{open: plainOpen, pwrite: unix.Pwrite, pread: unix.Pread},
			want: "O_DIRECT accepted by the file system of {dir}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := odirect(dir, tt.ops)
			want := strings.ReplaceAll(tt.want, "{dir}", dir)
			if c.Available != (tt.name == "works") || !strings.HasPrefix(c.Detail, want) {
				t.Errorf("odirect = %+v; want Detail starting %q", c, want)
			}
			checkDir(t, dir)
		})
	}
}

// TestODirectTakenNames: a name that exists belongs to someone else; the
// probe tries others and never removes it.
func TestODirectTakenNames(t *testing.T) {
	dir := t.TempDir()
	var taken []string
	ops := odirectOps{
		open: func(path string, _ int, _ uint32) (int, error) {
			if err := os.WriteFile(path, []byte("not yours"), 0o600); err != nil {
				return -1, err
			}
			taken = append(taken, path)
			return -1, unix.EEXIST
		},
		pwrite: unix.Pwrite, pread: unix.Pread,
	}
	c := odirect(dir, ops)
	if c.Available || !strings.Contains(c.Detail, "probe file names were taken") || len(taken) != probeAttempts {
		t.Fatalf("odirect = %+v after %d names; want unavailable after %d taken names", c, len(taken), probeAttempts)
	}
	for _, p := range taken {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("someone else's %s was touched: %v", p, err)
		}
	}
}

func TestAlignedBuffer(t *testing.T) {
	for _, tt := range []struct{ n, want int }{
		{0, 0}, {1, 4096}, {4095, 4096}, {4096, 4096}, {4097, 8192}, {1<<20 + 3, 1<<20 + 4096},
	} {
		b := AlignedBuffer(tt.n)
		if len(b) != tt.want || cap(b) != tt.want {
			t.Errorf("AlignedBuffer(%d): len %d cap %d; want %d", tt.n, len(b), cap(b), tt.want)
		}
		if len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))%Alignment != 0 {
			t.Errorf("AlignedBuffer(%d) starts at %p, not %d-aligned", tt.n, &b[0], Alignment)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("AlignedBuffer(-1) did not panic")
		}
	}()
	AlignedBuffer(-1)
}

func TestErrnoText(t *testing.T) {
	if got := errnoText(&os.PathError{Op: "open", Path: "/x", Err: unix.EROFS}); got != "EROFS: read-only file system" {
		t.Errorf("errnoText(EROFS) = %q", got)
	}
	if got := errnoText(errors.New("plain")); got != "plain" {
		t.Errorf("errnoText(plain) = %q", got)
	}
}
