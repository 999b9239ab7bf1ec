package blockdev

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Paths of the real system.
const (
	DefaultSysRoot   = "/sys"
	DefaultMountinfo = "/proc/self/mountinfo"
)

// Resolver finds the block devices under paths. Its zero value reads the
// real system; tests point SysRoot and Mountinfo at fake trees and replace
// the stat calls.
type Resolver struct {
	// SysRoot is the sysfs tree; "" is DefaultSysRoot.
	SysRoot string
	// Mountinfo is the mount table; "" is DefaultMountinfo.
	Mountinfo string
	// Stat returns the device number of the file system holding path
	// (stat(2) st_dev); nil is stat(2). Its error should name the path.
	Stat func(path string) (Dev, error)
	// NodeDev returns the device number of a block device node such as
	// /dev/sdb2 (stat(2) st_rdev; an error if it is not a block device);
	// nil is stat(2).
	NodeDev func(node string) (Dev, error)
}

// Location is where a path's file system lives.
type Location struct {
	// Path is the path as given; Real the absolute path with symlinks
	// resolved (as far as they resolve), which is looked up in the mounts.
	Path, Real string
	// StatDev is stat(2)'s st_dev for the path.
	StatDev Dev
	// Dev is the block device holding the file system: StatDev, or, for
	// a file system on an anonymous device mounted from a block device
	// node (btrfs reports an anonymous st_dev but mountinfo names
	// /dev/sdb2), that node's device number.
	Dev Dev
	// Mount is the mount holding the path when Mounted; FSType its type
	// ("" when not found).
	Mount   Mount
	Mounted bool
	FSType  string
	// Note says, in one sentence, how Dev was found when it is not
	// StatDev, or why an anonymous device's source could not be resolved;
	// "" otherwise.
	Note string
}

func (r Resolver) sysRoot() string {
	if r.SysRoot == "" {
		return DefaultSysRoot
	}
	return r.SysRoot
}

// Mounts reads the mount table.
func (r Resolver) Mounts() ([]Mount, error) {
	path := r.Mountinfo
	if path == "" {
		path = DefaultMountinfo
	}
	return ReadMountinfo(path)
}

// Walker returns a Walker over r's sysfs tree that follows loop devices to
// their backing files' devices through Locate with mounts.
func (r Resolver) Walker(mounts []Mount) Walker {
	return Walker{SysRoot: r.sysRoot(), Backing: func(file string) (Location, error) { return r.Locate(file, mounts) }}
}

// Resolve locates path and follows its device down the sysfs tree.
func (r Resolver) Resolve(path string, mounts []Mount) (Location, *Resolution, error) {
	loc, err := r.Locate(path, mounts)
	if err != nil {
		return Location{}, nil, err
	}
	return loc, r.Walker(mounts).Resolve(loc.Dev, loc.FSType), nil
}

// Locate stats path and finds its file system among mounts (the longest
// mount point holding it, preferring mounts of its own device: see
// FindMount). A file system on an anonymous device (major 0) mounted from
// a /dev node is resolved to that node's device: by NodeDev, else by the
// node's name in the sysfs tree (class/block/NAME, or for /dev/mapper/NAME
// the device-mapper device of that name). It fails only when path cannot
// be stat'ed.
func (r Resolver) Locate(path string, mounts []Mount) (Location, error) {
	stat := r.Stat
	if stat == nil {
		stat = statDev
	}
	dev, err := stat(path)
	if err != nil {
		return Location{}, err
	}
	loc := Location{Path: path, Real: path, StatDev: dev, Dev: dev}
	if abs, err := filepath.Abs(path); err == nil {
		loc.Real = abs
		if resolved, err := filepath.EvalSymlinks(abs); err == nil {
			loc.Real = resolved
		}
	}
	m, ok := FindMount(mounts, dev, loc.Real)
	if !ok {
		return loc, nil
	}
	loc.Mount, loc.Mounted, loc.FSType = m, true, m.FSType
	if !dev.Anonymous() || !strings.HasPrefix(m.Source, "/dev/") {
		return loc, nil
	}
	src, err := r.sourceDev(m.Source)
	if err != nil {
		loc.Note = fmt.Sprintf("%s is on %s from %s over anonymous device %s, and %s cannot be resolved (%v)",
			path, m.FSType, m.Source, dev, m.Source, err)
		return loc, nil
	}
	loc.Note = fmt.Sprintf("%s is on %s from %s (%s) over anonymous device %s", path, m.FSType, m.Source, src, dev)
	loc.Dev = src
	return loc, nil
}

// sourceDev finds the device number of a mount source /dev/NAME: the
// node's st_rdev, else the sysfs entry of that name (a container may lack
// the node, and tests have no /dev).
func (r Resolver) sourceDev(node string) (Dev, error) {
	nodeDev := r.NodeDev
	if nodeDev == nil {
		nodeDev = statNode
	}
	d, nodeErr := nodeDev(node)
	if nodeErr == nil {
		return d, nil
	}
	name := filepath.Base(node)
	classDir := filepath.Join(r.sysRoot(), "class", "block")
	if strings.HasPrefix(node, "/dev/mapper/") {
		for _, e := range listDir(classDir) {
			if dm, err := ReadAttr(filepath.Join(classDir, e, "dm", "name")); err == nil && dm == name {
				name = e
				break
			}
		}
	}
	s, err := ReadAttr(filepath.Join(classDir, name, "dev"))
	if err != nil {
		return Dev{}, fmt.Errorf("%v, and no block device %s in %s", UnwrapAll(nodeErr), name, classDir)
	}
	return ParseDev(s)
}

func statDev(path string) (Dev, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Dev{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return DevOf(st.Dev), nil
}

func statNode(node string) (Dev, error) {
	var st unix.Stat_t
	if err := unix.Stat(node, &st); err != nil {
		return Dev{}, &os.PathError{Op: "stat", Path: node, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return Dev{}, fmt.Errorf("%s is not a block device node", node)
	}
	return DevOf(st.Rdev), nil
}
