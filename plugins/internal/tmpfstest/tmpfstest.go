// Package tmpfstest gives tests a real small volume that fills up: a tmpfs
// of a given size mounted on a temporary folder (Linux, as root).
package tmpfstest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Mount mounts a tmpfs of sizeMiB MiB on a new temporary folder and
// returns it; cleanup unmounts it (lazily, should something still hold a
// file open). When it cannot mount (not root, not Linux, no mount
// binary), the test is skipped with the reason, or fails under CI=true,
// where the machines can.
func Mount(tb testing.TB, sizeMiB int) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "dw-tmpfs-")
	if err != nil {
		tb.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm,mode=0700", sizeMiB), "tmpfs", dir).CombinedOutput()
	if err != nil {
		os.Remove(dir)
		msg := fmt.Sprintf("mount a tmpfs of %d MiB on %s: %v: %s (needs root on Linux)", sizeMiB, dir, err, strings.TrimSpace(string(out)))
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			if out2, err2 := exec.Command("umount", "-l", dir).CombinedOutput(); err2 != nil {
				tb.Errorf("unmount %s: %v: %s; lazy: %v: %s", dir, err, out, err2, out2)
				return
			}
		}
		if err := os.Remove(dir); err != nil {
			tb.Errorf("remove the mount point: %v", err)
		}
	})
	return dir
}

// Fill writes a file of n bytes at path, taking n bytes of its volume.
func Fill(tb testing.TB, path string, n int64) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			tb.Fatalf("fill %s: %v", path, err)
		}
		n -= k
	}
}
