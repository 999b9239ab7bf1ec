package device

import (
	"fmt"
	"strings"

	"github.com/datawarehouse/dw/internal/blockdev"
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

// Detect resolves dir's file system to its block device on the real system
// (/sys and /proc/self/mountinfo, through package blockdev) and classifies
// it. It returns an error only when dir cannot be stat'ed; every other
// failure becomes a fallback class whose Reason says what was missing.
func Detect(dir string) (Detection, error) {
	var r blockdev.Resolver
	mounts, mountErr := r.Mounts()
	loc, res, err := r.Resolve(dir, mounts)
	if err != nil {
		return Detection{}, fmt.Errorf("detect device class of %s: %w", dir, err)
	}
	d := detect(res)
	var notes []string
	if mountErr != nil {
		notes = append(notes, fmt.Sprintf("file system type unknown (%v)", mountErr))
	}
	if loc.Note != "" {
		notes = append(notes, loc.Note)
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
	return detect(blockdev.Walker{SysRoot: sysRoot}.Resolve(blockdev.Dev{Major: major, Minor: minor}, fsType))
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
