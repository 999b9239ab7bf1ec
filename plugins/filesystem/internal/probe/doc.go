// Package probe finds out, by trying them, whether the kernel's bypass
// paths can be used: io_uring and O_DIRECT on the filesystem plugin's root.
// A Detector re-runs the probes live, so the plugin can switch its I/O path
// without a restart when an answer changes.
//
// # Probes are real calls
//
// Nothing is inferred from kernel versions or file system names: the
// answer can change under a running process (a sysctl, a seccomp profile,
// a remount), and only the call itself knows.
//
// IOURing calls io_uring_setup(2) for a one-entry ring through
// golang.org/x/sys/unix and closes the ring at once. EPERM is explained
// with /proc/sys/kernel/io_uring_disabled: 2 disables io_uring for all, 1
// limits it to kernel.io_uring_group, 0 means the refusal came from a
// seccomp filter (Docker's and containerd's default profiles block
// io_uring). ENOSYS is a kernel without io_uring. A seccomp filter that
// kills instead of refusing cannot be probed; no default profile does so.
//
// ODirect creates a probe file in the folder with
// O_CREAT|O_EXCL|O_DIRECT under a random name, writes one 4096-byte block
// from a 4096-aligned buffer, reads it back through the same descriptor and
// compares. EINVAL at open or at I/O means the file system refuses direct
// I/O (tmpfs before Linux 6.6); other errors (permissions, a read-only or
// full file system) also answer no, with the error in Detail. The probe
// file is removed whatever happened — also after a failed open, because
// Linux creates the file before it checks O_DIRECT — except when open says
// EEXIST: that name is someone else's, and another is tried. 4096 is a
// multiple of every logical block size in use, so a buffer, offset and
// length aligned to it are accepted by any device; AlignedBuffer
// over-allocates by one Alignment and slices at the first aligned address
// (Go's heap does not move objects). A file system may accept O_DIRECT and
// still buffer (ZFS before 2.3, btrfs with compression): that is not
// visible to a probe.
//
// # Detector
//
// NewDetector does not probe. Start probes once in the caller's goroutine,
// so Current is valid when it returns, then starts one goroutine that
// probes every interval until Stop; Stop is idempotent and waits for it.
// Current is lock-free (an atomic.Pointer to an immutable Result). Rounds
// of probes are serialised, so a Redetect and a periodic probe never run
// together. SetInterval applies at once: the goroutine re-arms its timer
// to the end of the last probe plus the new interval (now, if that has
// passed). The interval is counted from the end of a probe, so slow probes
// never run back to back; interval <= 0 leaves only Start and Redetect.
// onChange is called when the Available of either capability changes,
// outside any lock, in the goroutine that probed.
package probe
