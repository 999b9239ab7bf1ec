package device

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Class is the kind of device a folder's file system lives on; it chooses the
// scheduler's dispatch depth (queue_depth.{nvme,ssd,hdd}).
type Class string

// The device classes, fastest first.
const (
	NVMe Class = "nvme"
	SSD  Class = "ssd"
	HDD  Class = "hdd"
)

// SettingKey is the setting that overrides detection.
const SettingKey = "subsystems.filesystem.device_class"

// Detection is a device class and how it was arrived at.
type Detection struct {
	Class Class
	// Device is the disk decided on, e.g. "vda", "nvme0n1", "sda"; "" when
	// there is none (memory-backed or network file systems, unresolved
	// devices).
	Device string
	// Reason says how the class was decided, in one human sentence.
	Reason string
	// Source is "detected" or "setting".
	Source string
}

// The values of Detection.Source.
const (
	SourceDetected = "detected"
	SourceSetting  = "setting"
)

// FromSetting maps the device_class setting. "auto" (or empty) returns ok
// false: detect. "nvme", "ssd" and "hdd" return that class with Source
// "setting". Anything else is an error naming the key and the allowed values.
func FromSetting(v string) (Detection, bool, error) {
	switch Class(v) {
	case "", "auto":
		return Detection{}, false, nil
	case NVMe, SSD, HDD:
		return Detection{
			Class:  Class(v),
			Reason: fmt.Sprintf("set by %s", SettingKey),
			Source: SourceSetting,
		}, true, nil
	}
	return Detection{}, false, fmt.Errorf("%s: unknown device class %q (allowed: auto, nvme, ssd, hdd)", SettingKey, v)
}

// Paths of the real system.
const (
	realSysRoot   = "/sys"
	realMountinfo = "/proc/self/mountinfo"
)

// Detect resolves dir's file system to its block device on the real system
// (/sys and /proc/self/mountinfo) and classifies it. It returns an error only
// when dir cannot be stat'ed; every other failure becomes a fallback class
// whose Reason says what was missing.
func Detect(dir string) (Detection, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return Detection{}, fmt.Errorf("detect device class of %s: %w", dir, &os.PathError{Op: "stat", Path: dir, Err: err})
	}
	mounts, mountErr := readMountinfo(realMountinfo)
	r := resolver{sysRoot: realSysRoot}
	r.fileDevice = func(path string) (fileDevice, error) { return locate(path, mounts) }
	fd := locateStat(dir, st, mounts)
	d := r.detect(fd.major, fd.minor, fd.fsType)
	var notes []string
	if mountErr != nil {
		notes = append(notes, fmt.Sprintf("file system type unknown (%v)", mountErr))
	}
	if fd.note != "" {
		notes = append(notes, fd.note)
	}
	if len(notes) > 0 {
		d.Reason = strings.Join(notes, "; ") + "; " + d.Reason
	}
	return d, nil
}

// DetectIn classifies the block device major:minor, holding a file system of
// type fsType (as mountinfo names it; "" if unknown), over the sysfs tree at
// sysRoot. It reads nothing outside sysRoot, so a loop device's backing file
// is not followed (Detect follows it).
func DetectIn(sysRoot string, major, minor uint32, fsType string) Detection {
	return resolver{sysRoot: sysRoot}.detect(major, minor, fsType)
}

// fileDevice is where a file lives: the device number of its file system,
// that file system's type, and a note when the number was not stat's own.
type fileDevice struct {
	major, minor uint32
	fsType       string
	note         string
}

// locate stats path and finds its file system in mounts.
func locate(path string, mounts []mount) (fileDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileDevice{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return locateStat(path, st, mounts), nil
}

// locateStat finds path's file system in mounts from its stat result. A file
// system on an anonymous device (major 0: btrfs, overlay, network) that was
// mounted from a block device node (btrfs: /dev/sda2) is resolved to that
// node's device number.
func locateStat(path string, st unix.Stat_t, mounts []mount) fileDevice {
	fd := fileDevice{major: unix.Major(st.Dev), minor: unix.Minor(st.Dev)}
	abs, err := filepath.Abs(path)
	if err == nil {
		if resolved, err := filepath.EvalSymlinks(abs); err == nil {
			abs = resolved
		}
	}
	m, ok := findMount(mounts, fd.major, fd.minor, abs)
	if !ok {
		return fd
	}
	fd.fsType = m.fsType
	if fd.major != 0 || !strings.HasPrefix(m.source, "/dev/") {
		return fd
	}
	var src unix.Stat_t
	if err := unix.Stat(m.source, &src); err != nil || src.Mode&unix.S_IFMT != unix.S_IFBLK {
		return fd
	}
	fd.note = fmt.Sprintf("%s is on %s from %s (%d:%d) over anonymous device %d:%d",
		path, m.fsType, m.source, unix.Major(src.Rdev), unix.Minor(src.Rdev), fd.major, fd.minor)
	fd.major, fd.minor = unix.Major(src.Rdev), unix.Minor(src.Rdev)
	return fd
}

// slower reports whether a is a slower class than b (hdd < ssd < nvme).
func slower(a, b Class) bool { return rank(a) < rank(b) }

func rank(c Class) int {
	switch c {
	case HDD:
		return 0
	case SSD:
		return 1
	case NVMe:
		return 2
	}
	return 1
}
