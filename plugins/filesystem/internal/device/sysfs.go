package device

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Bounds of one resolution: how deep stacked devices are followed (dm over
// dm over a partition is 3), how many sysfs nodes are visited in all, and
// how many slave names a Reason lists.
const (
	maxDepth  = 8
	maxNodes  = 64
	maxListed = 4
)

// resolver classifies block devices over the sysfs tree at sysRoot.
type resolver struct {
	sysRoot string
	// fileDevice locates a loop device's backing file; nil: backing files
	// are not followed.
	fileDevice func(path string) (fileDevice, error)
}

// walk is one resolution: it counts visited nodes against maxNodes.
type walk struct {
	r     resolver
	nodes int
}

func (r resolver) detect(major, minor uint32, fsType string) Detection {
	w := &walk{r: r}
	d := w.device(major, minor, fsType, 0, nil)
	d.Source = SourceDetected
	return d
}

// fallback is the class given when the device cannot be decided; the Reason
// ends telling the operator how to override it.
func fallback(device, why string) Detection {
	return Detection{
		Class:  SSD,
		Device: device,
		Reason: fmt.Sprintf("%s: treated as ssd; set %s to override", why, SettingKey),
	}
}

// memoryFS reports whether a file system type keeps its files in memory.
func memoryFS(fsType string) bool {
	switch fsType {
	case "tmpfs", "ramfs", "devtmpfs", "hugetlbfs":
		return true
	}
	return false
}

// device classifies the device major:minor holding a file system of type
// fsType. stack holds the sysfs nodes being resolved above this one.
func (w *walk) device(major, minor uint32, fsType string, depth int, stack []string) Detection {
	fs := fsType
	if fs == "" {
		fs = "the file system"
	}
	if memoryFS(fsType) {
		return Detection{Class: NVMe, Reason: fmt.Sprintf("no disk: %s is memory-backed, highest parallelism", fs)}
	}
	if major == 0 {
		return fallback("", fmt.Sprintf("no disk: %s is on anonymous device 0:%d (network, overlay, FUSE or similar)", fs, minor))
	}
	node, err := w.r.node(major, minor)
	if err != nil {
		return fallback("", err.Error())
	}
	return w.classify(node, depth, stack)
}

// node finds the sysfs folder of block device major:minor: the
// dev/block/MAJ:MIN link, else the class/block entry whose dev file holds
// MAJ:MIN.
func (r resolver) node(major, minor uint32) (string, error) {
	want := fmt.Sprintf("%d:%d", major, minor)
	if p, err := filepath.EvalSymlinks(filepath.Join(r.sysRoot, "dev", "block", want)); err == nil {
		return p, nil
	}
	classDir := filepath.Join(r.sysRoot, "class", "block")
	entries, err := os.ReadDir(classDir)
	if err == nil {
		for _, e := range entries {
			dev, err := readAttr(filepath.Join(classDir, e.Name(), "dev"))
			if err != nil || dev != want {
				continue
			}
			if p, err := filepath.EvalSymlinks(filepath.Join(classDir, e.Name())); err == nil {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("no block device %s in %s (neither dev/block/%s nor a class/block entry)", want, r.sysRoot, want)
}

// classify decides the class of the block device whose sysfs folder is path.
func (w *walk) classify(path string, depth int, stack []string) Detection {
	name := filepath.Base(path)
	w.nodes++
	if depth > maxDepth || w.nodes > maxNodes {
		return fallback("", fmt.Sprintf("stopped at %s: stacked deeper than %d levels or more than %d devices", name, maxDepth, maxNodes))
	}
	for _, s := range stack {
		if s == path {
			return fallback("", fmt.Sprintf("%s is reached again through its own slaves (a cycle)", name))
		}
	}
	stack = append(stack[:len(stack):len(stack)], path)

	if exists(filepath.Join(path, "partition")) {
		parent := filepath.Dir(path)
		d := w.classify(parent, depth+1, stack)
		d.Reason = fmt.Sprintf("%s is a partition of %s; %s", name, filepath.Base(parent), d.Reason)
		return d
	}
	switch {
	case strings.HasPrefix(name, "zram"):
		return Detection{Class: NVMe, Device: name, Reason: fmt.Sprintf("%s is a compressed RAM disk: memory-backed, highest parallelism", name)}
	case ramDisk.MatchString(name):
		return Detection{Class: NVMe, Device: name, Reason: fmt.Sprintf("%s is a RAM disk: memory-backed, highest parallelism", name)}
	case strings.HasPrefix(name, "loop"):
		return w.loop(path, name, depth, stack)
	}
	if slaves := listDir(filepath.Join(path, "slaves")); len(slaves) > 0 {
		return w.stacked(path, name, slaves, depth, stack)
	}
	rot, rotErr := readAttr(filepath.Join(path, "queue", "rotational"))
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

// loop follows a loop device to its backing file's file system.
func (w *walk) loop(path, name string, depth int, stack []string) Detection {
	backing, err := readAttr(filepath.Join(path, "loop", "backing_file"))
	if err != nil || backing == "" {
		return fallback("", fmt.Sprintf("%s is a loop device without a backing file", name))
	}
	backing = strings.TrimSuffix(backing, " (deleted)")
	if w.r.fileDevice == nil {
		return fallback("", fmt.Sprintf("%s is a loop device backed by %s, which is not followed here (a loop device's rotational flag says nothing)", name, backing))
	}
	fd, err := w.r.fileDevice(backing)
	if err != nil {
		return fallback("", fmt.Sprintf("%s is a loop device backed by %s, which cannot be found (%v)", name, backing, unwrapAll(err)))
	}
	d := w.device(fd.major, fd.minor, fd.fsType, depth+1, stack)
	fs := fd.fsType
	if fs == "" {
		fs = "a file system"
	}
	d.Reason = fmt.Sprintf("%s is a loop device backed by %s on %s (%d:%d); %s", name, backing, fs, fd.major, fd.minor, d.Reason)
	return d
}

// stacked classifies a device-mapper or md device by its slaves: the
// slowest of them decides.
func (w *walk) stacked(path, name string, slaves []string, depth int, stack []string) Detection {
	what := name + " is stacked"
	if dmName, err := readAttr(filepath.Join(path, "dm", "name")); err == nil {
		what = fmt.Sprintf("%s (%s) is device-mapper", name, dmName)
	} else if exists(filepath.Join(path, "dm")) {
		what = name + " is device-mapper"
	} else if level, err := readAttr(filepath.Join(path, "md", "level")); err == nil {
		what = fmt.Sprintf("%s is md %s", name, level)
	}
	var best Detection
	for i, s := range slaves {
		var d Detection
		target, err := filepath.EvalSymlinks(filepath.Join(path, "slaves", s))
		if err != nil {
			d = fallback("", fmt.Sprintf("its slave %s cannot be resolved (%v)", s, unwrapAll(err)))
		} else {
			d = w.classify(target, depth+1, stack)
		}
		if i == 0 || slower(d.Class, best.Class) {
			best = d
		}
	}
	listed := strings.Join(slaves[:min(len(slaves), maxListed)], ", ")
	if len(slaves) > maxListed {
		listed += fmt.Sprintf(" and %d more", len(slaves)-maxListed)
	}
	if len(slaves) == 1 {
		best.Reason = fmt.Sprintf("%s over %s; %s", what, listed, best.Reason)
	} else {
		best.Reason = fmt.Sprintf("%s over %s, the slowest of which decides; %s", what, listed, best.Reason)
	}
	return best
}

// maxAttr bounds a sysfs attribute read (they are at most a page; a
// backing_file is at most PATH_MAX).
const maxAttr = 4096

// readAttr reads a small sysfs attribute, trimmed of its newline.
func readAttr(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAttr))
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// listDir lists the names in a folder, sorted; nil if it cannot be read.
func listDir(path string) []string {
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// unwrapAll drops the path context of an error (the Reason names the path
// already), keeping the innermost cause.
func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
