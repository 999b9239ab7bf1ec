package concurrency

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/datawarehouse/dw/internal/blockdev"
)

// SysRoot is the real sysfs mount.
const SysRoot = blockdev.DefaultSysRoot

// Watch is the set of whole disks under some folders, and how they were
// found.
type Watch struct {
	// Disks are the distinct whole disks (as /proc/diskstats names them),
	// sorted.
	Disks []string
	// Notes say, one sentence each, how a folder's disks were found when
	// stat alone does not tell (btrfs: through its mount source), why a
	// folder gave none, and what was watched instead.
	Notes []string
	// Unresolved are the folders whose disks could not all be resolved
	// (missing folder, overlay or network file system, a device sysfs
	// does not know). When there are any, Disks also holds every physical
	// disk (see Watcher.Folders).
	Unresolved []string
}

// Err is nil when every folder's disks were resolved, else an error
// naming the folders that were not and saying what is watched instead.
func (w Watch) Err() error {
	if len(w.Unresolved) == 0 {
		return nil
	}
	return fmt.Errorf("disks under %s: %w; watching every physical disk instead (%s)",
		strings.Join(w.Unresolved, ", "), errUnresolved, strings.Join(w.Disks, ", "))
}

var errUnresolved = errors.New("cannot be resolved")

// Watcher finds the whole disks under folders. Its zero value reads the
// real system (/sys, /proc/self/mountinfo, /proc/diskstats).
type Watcher struct {
	// Resolver finds a folder's block device and follows it down sysfs.
	Resolver blockdev.Resolver
	// Diskstats is the diskstats file; "" is DiskstatsPath.
	Diskstats string
}

// WatchFolders finds the whole disks under folders on the real system,
// with the sysfs tree at sysRoot (SysRoot). See Watcher.Folders.
func WatchFolders(sysRoot string, folders []string) Watch {
	return Watcher{Resolver: blockdev.Resolver{SysRoot: sysRoot}}.Folders(folders)
}

// Folders finds the whole disks under folders through package blockdev:
// the folder's file system's device (st_dev, or for a file system on an
// anonymous device such as btrfs the block device its mountinfo source
// names), then partitions to their disk, device-mapper and md devices to
// their slaves, loop devices to their backing file's disks. It never
// fails; what it could not do is in the Notes.
//
// A folder whose disks cannot be resolved (it cannot be stat'ed, it is on
// overlay, NFS or FUSE, its device is not in sysfs, a slave link is
// broken) is listed in Unresolved, and every physical disk (PhysicalDisks
// of sysfs that /proc/diskstats counts; without sysfs, the diskstats
// devices that are neither virtual nor partitions by name) is watched as
// well. Watching nothing would make utilisation read 0 and the limit
// climb to its bound whatever the real load; watching every disk errs the
// other way, since the busiest disk decides: at worst fewer jobs run. A
// folder on a memory-backed file system (tmpfs) has no disk and is not
// unresolved: no device to saturate.
func (wr Watcher) Folders(folders []string) Watch {
	var w Watch
	r := wr.Resolver
	mounts, err := r.Mounts()
	if err != nil {
		w.Notes = append(w.Notes, fmt.Sprintf("mount table unreadable (%v): file systems on anonymous devices (btrfs) cannot be resolved through their source", err))
	}
	seen := map[string]bool{}
	for _, f := range folders {
		if seen[f] {
			continue
		}
		seen[f] = true
		loc, res, err := r.Resolve(f, mounts)
		if err != nil {
			w.Unresolved = append(w.Unresolved, f)
			w.Notes = append(w.Notes, fmt.Sprintf("disks of %s: %v", f, err))
			continue
		}
		if loc.Note != "" {
			w.Notes = append(w.Notes, loc.Note)
		}
		disks, problems := res.Disks()
		w.Disks = append(w.Disks, disks...)
		fs := loc.FSType
		if fs == "" {
			fs = "an unknown file system"
		}
		switch {
		case len(problems) > 0:
			w.Unresolved = append(w.Unresolved, f)
			w.Notes = append(w.Notes, fmt.Sprintf("disks of %s (%s on device %s): %s", f, fs, loc.Dev, strings.Join(problems, "; ")))
		case len(disks) == 0:
			w.Notes = append(w.Notes, fmt.Sprintf("%s is on %s, memory-backed: no disk to watch", f, fs))
		}
	}
	if len(w.Unresolved) > 0 {
		phys, how := wr.physicalDisks()
		w.Disks = append(w.Disks, phys...)
		w.Notes = append(w.Notes, fmt.Sprintf("the disks under %s cannot be resolved: watching %s instead (the busiest disk decides, which errs towards fewer jobs)",
			strings.Join(w.Unresolved, ", "), how))
	}
	slices.Sort(w.Disks)
	w.Disks = slices.Compact(w.Disks)
	return w
}

// physicalDisks is the fallback of an unresolved folder: the physical
// disks of sysfs that /proc/diskstats counts, else (no sysfs) the
// diskstats devices that look like whole physical disks by name. how says
// which, in a few words.
func (wr Watcher) physicalDisks() (disks []string, how string) {
	path := wr.Diskstats
	if path == "" {
		path = DiskstatsPath
	}
	stats, statsErr := ReadDiskstats(path)
	sysRoot := wr.Resolver.SysRoot
	if sysRoot == "" {
		sysRoot = SysRoot
	}
	phys, physErr := blockdev.PhysicalDisks(sysRoot)
	if physErr == nil && len(phys) > 0 {
		if statsErr != nil {
			return phys, fmt.Sprintf("every physical disk of %s (%s)", sysRoot, strings.Join(phys, ", "))
		}
		for _, d := range phys {
			if _, ok := stats[d]; ok {
				disks = append(disks, d)
			}
		}
		if len(disks) > 0 {
			return disks, fmt.Sprintf("every physical disk in %s (%s)", path, strings.Join(disks, ", "))
		}
	}
	if statsErr != nil {
		return nil, fmt.Sprintf("no disk at all, since neither sysfs (%v) nor diskstats (%v) lists any: utilisation cannot be measured", physErr, statsErr)
	}
	disks = diskstatsDisks(stats)
	if len(disks) == 0 {
		return nil, fmt.Sprintf("no disk at all, since %s lists no physical disk: utilisation cannot be measured", path)
	}
	return disks, fmt.Sprintf("every device in %s that is neither virtual nor a partition by its name (%s), sysfs having none", path, strings.Join(disks, ", "))
}

// virtualName matches the names of devices with no disk of their own.
var virtualName = regexp.MustCompile(`^(loop|ram|zram|dm-|md|nbd|sr|fd)`)

// diskstatsDisks guesses the whole physical disks among diskstats devices
// by name alone: not virtual, and not a partition of another listed device
// (its name is the device's plus digits, or plus "p" and digits: sda1,
// nvme0n1p1, mmcblk0p1). Sorted.
func diskstatsDisks(stats map[string]DiskStat) []string {
	var disks []string
	for name := range stats {
		if virtualName.MatchString(name) || partitionOf(stats, name) {
			continue
		}
		disks = append(disks, name)
	}
	slices.Sort(disks)
	return disks
}

// partitionOf reports whether name is a partition of another listed device.
func partitionOf(stats map[string]DiskStat, name string) bool {
	base := strings.TrimRight(name, "0123456789")
	if base == name {
		return false
	}
	if _, ok := stats[base]; ok {
		return true
	}
	if b, ok := strings.CutSuffix(base, "p"); ok {
		_, ok := stats[b]
		return ok
	}
	return false
}
