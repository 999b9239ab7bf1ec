package concurrency

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// SysRoot is the real sysfs mount.
const SysRoot = "/sys"

// Dev is a block device number.
type Dev struct{ Major, Minor uint32 }

func (d Dev) String() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// DeviceOf returns the device number of the file system holding path.
func DeviceOf(path string) (Dev, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Dev{}, fmt.Errorf("device of %s: %w", path, &os.PathError{Op: "stat", Path: path, Err: err})
	}
	return Dev{Major: unix.Major(st.Dev), Minor: unix.Minor(st.Dev)}, nil
}

// Watch is the set of whole disks under some folders, and why a folder
// added none.
type Watch struct {
	// Disks are the distinct whole disks (as /proc/diskstats names them),
	// sorted.
	Disks []string
	// Notes say, one sentence each, why a folder or device gave no disk.
	Notes []string
}

// Bounds of following stacked devices (dm over dm over a partition is 3
// levels).
const (
	maxStackDepth = 8
	maxStackNodes = 64
)

// WatchFolders finds the whole disks under folders over the sysfs tree at
// sysRoot (SysRoot on the real system). It never fails: a folder that
// cannot be stat'ed or whose device is not in sysfs gets a note.
func WatchFolders(sysRoot string, folders []string) Watch {
	var w Watch
	var devs []Dev
	for _, f := range folders {
		d, err := DeviceOf(f)
		if err != nil {
			w.Notes = append(w.Notes, err.Error())
			continue
		}
		devs = append(devs, d)
	}
	dw := WatchDevices(sysRoot, devs)
	w.Disks = dw.Disks
	w.Notes = append(w.Notes, dw.Notes...)
	return w
}

// WatchDevices finds the whole disks of the block devices devs over the
// sysfs tree at sysRoot: /sys/dev/block/MAJ:MIN leads to the device's
// folder; a partition (it has a partition file) stands for its parent
// disk; a stacked device (device-mapper, md: it has slaves) for the disks
// below it. Anonymous devices (major 0: tmpfs, overlay, network and FUSE
// file systems) have no disk and get a note.
func WatchDevices(sysRoot string, devs []Dev) Watch {
	var w Watch
	seen := map[Dev]bool{}
	for _, d := range devs {
		if seen[d] {
			continue
		}
		seen[d] = true
		if d.Major == 0 {
			w.Notes = append(w.Notes, fmt.Sprintf("device %s is anonymous (tmpfs, overlay, network or FUSE file system): no disk to watch", d))
			continue
		}
		node, err := filepath.EvalSymlinks(filepath.Join(sysRoot, "dev", "block", d.String()))
		if err != nil {
			w.Notes = append(w.Notes, fmt.Sprintf("device %s is not in %s: no disk to watch (%v)", d, filepath.Join(sysRoot, "dev", "block"), err))
			continue
		}
		r := diskWalk{}
		r.disks(node, 0)
		w.Disks = append(w.Disks, r.found...)
		w.Notes = append(w.Notes, r.notes...)
	}
	slices.Sort(w.Disks)
	w.Disks = slices.Compact(w.Disks)
	return w
}

// diskWalk follows one device down to its disks.
type diskWalk struct {
	nodes int
	found []string
	notes []string
}

func (r *diskWalk) disks(node string, depth int) {
	r.nodes++
	name := filepath.Base(node)
	if depth > maxStackDepth || r.nodes > maxStackNodes {
		r.notes = append(r.notes, fmt.Sprintf("stopped at %s: devices stacked deeper than %d levels or more than %d devices", name, maxStackDepth, maxStackNodes))
		return
	}
	if _, err := os.Lstat(filepath.Join(node, "partition")); err == nil {
		r.disks(filepath.Dir(node), depth+1)
		return
	}
	slaves, _ := os.ReadDir(filepath.Join(node, "slaves"))
	if len(slaves) == 0 {
		r.found = append(r.found, name)
		return
	}
	for _, s := range slaves {
		target, err := filepath.EvalSymlinks(filepath.Join(node, "slaves", s.Name()))
		if err != nil {
			r.notes = append(r.notes, fmt.Sprintf("%s: slave %s cannot be resolved (%v)", name, s.Name(), err))
			continue
		}
		r.disks(target, depth+1)
	}
}
