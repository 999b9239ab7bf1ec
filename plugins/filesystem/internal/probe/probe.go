package probe

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Capability is the answer of one probe.
type Capability struct {
	Available bool
	// Detail says what was found, e.g. "io_uring_setup succeeded" or
	// "EINVAL: the file system of /x does not support O_DIRECT".
	Detail string
}

// Alignment is the alignment of O_DIRECT buffers, offsets and lengths: a
// multiple of every logical block size in use (512 and 4096).
const Alignment = 4096

// AlignedBuffer returns a buffer of n bytes rounded up to a multiple of
// Alignment, whose first byte is Alignment-aligned. It panics if n < 0.
func AlignedBuffer(n int) []byte {
	if n < 0 {
		panic(fmt.Sprintf("probe: AlignedBuffer(%d): negative size", n))
	}
	size := (n + Alignment - 1) &^ (Alignment - 1)
	if size == 0 {
		return []byte{}
	}
	// Go's heap does not move objects, so the alignment holds for the
	// buffer's life.
	buf := make([]byte, size+Alignment)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&buf[0])) & (Alignment - 1)); r != 0 {
		off = Alignment - r
	}
	return buf[off : off+size : off+size]
}

// ioURingParams is struct io_uring_params (linux/io_uring.h), 120 bytes:
// sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features,
// wq_fd, resv[3], then struct io_sqring_offsets and io_cqring_offsets (40
// bytes each). The kernel fills it in; the probe only reads features.
type ioURingParams struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        [10]uint32
	cqOff        [10]uint32
}

var _ [120]byte = [unsafe.Sizeof(ioURingParams{})]byte{}

// ioURingDisabledPath is the sysctl kernel.io_uring_disabled (Linux 6.6+).
const ioURingDisabledPath = "/proc/sys/kernel/io_uring_disabled"

// IOURing probes io_uring with a real io_uring_setup(2) of one entry and
// closes the ring at once.
func IOURing() Capability {
	var p ioURingParams
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		disabled, err := os.ReadFile(ioURingDisabledPath)
		return explainIOURing(errno, strings.TrimSpace(string(disabled)), err)
	}
	unix.Close(int(fd))
	return Capability{Available: true, Detail: fmt.Sprintf("io_uring_setup succeeded (features %#x)", p.features)}
}

// explainIOURing turns io_uring_setup's errno into a Capability, using the
// value of kernel.io_uring_disabled (or the error reading it) to tell a
// sysctl refusal from a seccomp filter.
func explainIOURing(errno unix.Errno, disabled string, disabledErr error) Capability {
	name := unix.ErrnoName(errno)
	if name == "" {
		name = fmt.Sprintf("errno %d", int(errno))
	}
	var why string
	switch errno {
	case unix.EPERM:
		switch {
		case disabledErr != nil:
			why = "io_uring is refused by a seccomp filter or disabled (kernel.io_uring_disabled unreadable)"
		case disabled == "2":
			why = "io_uring is disabled (kernel.io_uring_disabled=2) or refused by a seccomp filter"
		case disabled == "1":
			why = "io_uring is limited to the kernel.io_uring_group group (kernel.io_uring_disabled=1) or refused by a seccomp filter"
		default:
			why = fmt.Sprintf("io_uring is refused by a seccomp filter (kernel.io_uring_disabled=%s allows it)", disabled)
		}
	case unix.ENOSYS:
		why = "kernel without io_uring (or a seccomp filter answering ENOSYS)"
	case unix.ENOMEM:
		why = "no memory for the ring (RLIMIT_MEMLOCK too low on kernels before 5.12)"
	case unix.EMFILE, unix.ENFILE:
		why = "no file descriptor left for the ring"
	default:
		why = "io_uring_setup failed: " + errno.Error()
	}
	return Capability{Detail: name + ": " + why}
}

// odirectOps are the system calls of the O_DIRECT probe; tests replace
// them to inject failures.
type odirectOps struct {
	open   func(path string, flags int, mode uint32) (int, error)
	pwrite func(fd int, p []byte, off int64) (int, error)
	pread  func(fd int, p []byte, off int64) (int, error)
}

var realOps = odirectOps{open: unix.Open, pwrite: unix.Pwrite, pread: unix.Pread}

// ODirect probes whether dir's file system accepts O_DIRECT: it creates a
// probe file (O_CREAT|O_EXCL|O_DIRECT, a random name), writes one aligned
// block and reads it back, and removes the file whatever happened.
func ODirect(dir string) Capability { return odirect(dir, realOps) }

// probeAttempts bounds the names tried when a probe file name exists.
const probeAttempts = 4

func odirect(dir string, ops odirectOps) (c Capability) {
	var (
		path string
		fd   = -1
		err  error
	)
	for range probeAttempts {
		path = filepath.Join(dir, fmt.Sprintf(".dw-odirect-probe-%016x", rand.Uint64()))
		fd, err = ops.open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_DIRECT|unix.O_CLOEXEC, 0o600)
		if !errors.Is(err, unix.EEXIST) {
			break
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return Capability{Detail: fmt.Sprintf("could not probe O_DIRECT in %s: %d probe file names were taken", dir, probeAttempts)}
	}
	// The file may exist even when open failed: Linux creates it before it
	// checks O_DIRECT, so tmpfs before 6.6 leaves it behind with EINVAL.
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
		if err := unix.Unlink(path); err != nil && !errors.Is(err, unix.ENOENT) {
			c.Detail += fmt.Sprintf("; the probe file %s could not be removed: %s", path, errnoText(err))
		}
	}()
	if err != nil {
		if errors.Is(err, unix.EINVAL) {
			return Capability{Detail: fmt.Sprintf("EINVAL: the file system of %s does not support O_DIRECT", dir)}
		}
		return Capability{Detail: fmt.Sprintf("could not probe O_DIRECT in %s: open: %s", dir, errnoText(err))}
	}
	want := AlignedBuffer(Alignment)
	for i := range want {
		want[i] = byte(i*7 + 1)
	}
	if n, err := ops.pwrite(fd, want, 0); err != nil || n != len(want) {
		return ioFailure(dir, "write", n, err)
	}
	got := AlignedBuffer(Alignment)
	if n, err := ops.pread(fd, got, 0); err != nil || n != len(got) {
		return ioFailure(dir, "read", n, err)
	}
	if !bytes.Equal(got, want) {
		return Capability{Detail: fmt.Sprintf("the file system of %s read back other bytes than it was given with O_DIRECT", dir)}
	}
	return Capability{Available: true, Detail: fmt.Sprintf("O_DIRECT accepted by the file system of %s (a %d-byte aligned write and read)", dir, Alignment)}
}

func ioFailure(dir, op string, n int, err error) Capability {
	switch {
	case errors.Is(err, unix.EINVAL):
		return Capability{Detail: fmt.Sprintf("EINVAL: the file system of %s refused an aligned O_DIRECT %s", dir, op)}
	case err != nil:
		return Capability{Detail: fmt.Sprintf("could not probe O_DIRECT in %s: %s: %s", dir, op, errnoText(err))}
	}
	return Capability{Detail: fmt.Sprintf("could not probe O_DIRECT in %s: %s moved %d of %d bytes", dir, op, n, Alignment)}
}

// errnoText is "ENAME: message" for an errno, else the error's text.
func errnoText(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name + ": " + errno.Error()
		}
	}
	return err.Error()
}
