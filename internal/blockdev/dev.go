package blockdev

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Dev is a device number, MAJ:MIN.
type Dev struct{ Major, Minor uint32 }

// DevOf splits a stat(2) st_dev or st_rdev.
func DevOf(n uint64) Dev { return Dev{Major: unix.Major(n), Minor: unix.Minor(n)} }

// ParseDev parses "MAJ:MIN" as sysfs dev files and mountinfo write it.
func ParseDev(s string) (Dev, error) {
	majS, minS, ok := strings.Cut(s, ":")
	maj, err1 := strconv.ParseUint(majS, 10, 32)
	min, err2 := strconv.ParseUint(minS, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return Dev{}, fmt.Errorf("device number %q is not MAJ:MIN", s)
	}
	return Dev{Major: uint32(maj), Minor: uint32(min)}, nil
}

func (d Dev) String() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// Anonymous reports whether d is an anonymous device (major 0): the file
// systems without a block device of their own (tmpfs, overlay, network and
// FUSE file systems) and btrfs, which gives each subvolume one.
func (d Dev) Anonymous() bool { return d.Major == 0 }

// MemoryBacked reports whether a file system type (as mountinfo names it)
// keeps its files in memory: it has no disk at all.
func MemoryBacked(fsType string) bool {
	switch fsType {
	case "tmpfs", "ramfs", "devtmpfs", "hugetlbfs":
		return true
	}
	return false
}
