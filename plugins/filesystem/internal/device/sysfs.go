package device

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/datawarehouse/dw/internal/blockdev"
)

// maxListed bounds how many slave names a Reason lists.
const maxListed = 4

// fallback is the class given when the device cannot be decided; the Reason
// ends telling the operator how to override it.
func fallback(device, why string) Detection {
	return Detection{
		Class:  SSD,
		Device: device,
		Reason: fmt.Sprintf("%s: treated as ssd; set %s to override", why, SettingKey),
	}
}

// detect classifies a resolved device and marks the detection as such.
func detect(res *blockdev.Resolution) Detection {
	d := classifyResolution(res)
	d.Source = SourceDetected
	return d
}

// classifyResolution classifies the device holding a file system of type
// res.FSType.
func classifyResolution(res *blockdev.Resolution) Detection {
	fs := res.FSType
	if fs == "" {
		fs = "the file system"
	}
	if blockdev.MemoryBacked(res.FSType) {
		return Detection{Class: NVMe, Reason: fmt.Sprintf("no disk: %s is memory-backed, highest parallelism", fs)}
	}
	if res.Dev.Anonymous() {
		return fallback("", fmt.Sprintf("no disk: %s is on anonymous device %s (network, overlay, FUSE or similar)", fs, res.Dev))
	}
	if res.Node == nil {
		return fallback("", res.Err.Error())
	}
	return classify(res.Node)
}

// classify decides the class of a sysfs node from what lies below it.
func classify(n *blockdev.Node) Detection {
	switch n.Kind {
	case blockdev.Stopped:
		return fallback("", n.Reason)
	case blockdev.Partition:
		d := classify(n.Parent)
		d.Reason = fmt.Sprintf("%s is a partition of %s; %s", n.Name, n.Parent.Name, d.Reason)
		return d
	case blockdev.Loop:
		return loop(n)
	case blockdev.Stacked:
		return stacked(n)
	}
	return disk(n.Path, n.Name)
}

// disk classifies a whole disk.
func disk(path, name string) Detection {
	switch {
	case strings.HasPrefix(name, "zram"):
		return Detection{Class: NVMe, Device: name, Reason: fmt.Sprintf("%s is a compressed RAM disk: memory-backed, highest parallelism", name)}
	case ramDisk.MatchString(name):
		return Detection{Class: NVMe, Device: name, Reason: fmt.Sprintf("%s is a RAM disk: memory-backed, highest parallelism", name)}
	}
	rot, rotErr := blockdev.ReadAttr(filepath.Join(path, "queue", "rotational"))
	switch {
	case strings.HasPrefix(name, "nvme"):
		return Detection{Class: NVMe, Device: name, Reason: fmt.Sprintf("%s is an NVMe namespace: nvme", name)}
	case virtio(path, name):
		if rotErr != nil {
			rot = "missing"
		}
		return Detection{Class: SSD, Device: name, Reason: fmt.Sprintf(
			"%s is a virtio disk, whose rotational flag (%s) is unreliable: treated as ssd (set %s if the host's storage is known)",
			name, rot, SettingKey)}
	case rotErr != nil:
		return fallback(name, fmt.Sprintf("%s has no readable queue/rotational", name))
	case rot == "1":
		return Detection{Class: HDD, Device: name, Reason: fmt.Sprintf("%s has rotational flag 1: hdd", name)}
	case rot == "0":
		return Detection{Class: SSD, Device: name, Reason: fmt.Sprintf("%s has rotational flag 0: ssd", name)}
	}
	return fallback(name, fmt.Sprintf("%s has rotational flag %q, neither 0 nor 1", name, rot))
}

var (
	ramDisk  = regexp.MustCompile(`^ram[0-9]+$`)
	virtioID = regexp.MustCompile(`^virtio[0-9]+$`)
)

// virtio reports whether the disk at path is attached through virtio: named
// vd*, driven by virtio_blk, or below a virtioN device (virtio-scsi disks are
// sd*). Such a disk's rotational flag describes nothing real.
func virtio(path, name string) bool {
	if strings.HasPrefix(name, "vd") {
		return true
	}
	if l, err := os.Readlink(filepath.Join(path, "device", "driver")); err == nil && filepath.Base(l) == "virtio_blk" {
		return true
	}
	for _, part := range strings.Split(path, string(filepath.Separator)) {
		if virtioID.MatchString(part) {
			return true
		}
	}
	return false
}

// loop classifies a loop device by its backing file's device.
func loop(n *blockdev.Node) Detection {
	b := n.Backing
	switch {
	case b.File == "":
		return fallback("", fmt.Sprintf("%s is a loop device without a backing file", n.Name))
	case !b.Followed:
		return fallback("", fmt.Sprintf("%s is a loop device backed by %s, which is not followed here (a loop device's rotational flag says nothing)", n.Name, b.File))
	case b.Err != nil:
		return fallback("", fmt.Sprintf("%s is a loop device backed by %s, which cannot be found (%v)", n.Name, b.File, blockdev.UnwrapAll(b.Err)))
	}
	d := classifyResolution(b.Device)
	fs := b.Device.FSType
	if fs == "" {
		fs = "a file system"
	}
	d.Reason = fmt.Sprintf("%s is a loop device backed by %s on %s (%s); %s", n.Name, b.File, fs, b.Device.Dev, d.Reason)
	return d
}

// stacked classifies a device-mapper or md device by its slaves: the
// slowest of them decides.
func stacked(n *blockdev.Node) Detection {
	what := n.Name + " is stacked"
	if dmName, err := blockdev.ReadAttr(filepath.Join(n.Path, "dm", "name")); err == nil {
		what = fmt.Sprintf("%s (%s) is device-mapper", n.Name, dmName)
	} else if _, err := os.Lstat(filepath.Join(n.Path, "dm")); err == nil {
		what = n.Name + " is device-mapper"
	} else if level, err := blockdev.ReadAttr(filepath.Join(n.Path, "md", "level")); err == nil {
		what = fmt.Sprintf("%s is md %s", n.Name, level)
	}
	var best Detection
	names := make([]string, len(n.Slaves))
	for i, s := range n.Slaves {
		names[i] = s.Name
		var d Detection
		if s.Node == nil {
			d = fallback("", fmt.Sprintf("its slave %s cannot be resolved (%v)", s.Name, blockdev.UnwrapAll(s.Err)))
		} else {
			d = classify(s.Node)
		}
		if i == 0 || slower(d.Class, best.Class) {
			best = d
		}
	}
	listed := strings.Join(names[:min(len(names), maxListed)], ", ")
	if len(names) > maxListed {
		listed += fmt.Sprintf(" and %d more", len(names)-maxListed)
	}
	if len(names) == 1 {
		best.Reason = fmt.Sprintf("%s over %s; %s", what, listed, best.Reason)
	} else {
		best.Reason = fmt.Sprintf("%s over %s, the slowest of which decides; %s", what, listed, best.Reason)
	}
	return best
}
