package blockdev

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Bounds of one walk: how deep stacked devices are followed (dm over dm
// over a partition is 3), and how many sysfs nodes are visited in all.
const (
	MaxDepth = 8
	MaxNodes = 64
)

// Errors of a Resolution without a sysfs node.
var (
	// ErrAnonymous: the device is anonymous (major 0) and has no node.
	ErrAnonymous = errors.New("anonymous device")
	// ErrNotInSysfs: the sysfs tree has no node for the device number.
	ErrNotInSysfs = errors.New("no block device")
)

// Walker follows device numbers down a sysfs tree to their whole disks.
type Walker struct {
	// SysRoot is the sysfs tree; "" is DefaultSysRoot.
	SysRoot string
	// Backing locates a loop device's backing file; nil: backing files
	// are not followed (the walk reads nothing outside SysRoot).
	Backing func(file string) (Location, error)
}

// Resolution is a device number followed down the sysfs tree.
type Resolution struct {
	Dev Dev
	// FSType is the type of the file system on Dev, as given ("" when
	// unknown).
	FSType string
	// Node is Dev's sysfs node; nil when Err says why there is none
	// (ErrAnonymous, ErrNotInSysfs).
	Node *Node
	Err  error
}

// Kind is what a sysfs block device node is.
type Kind int

// The kinds of nodes.
const (
	// Disk is a whole disk (the walk ends there).
	Disk Kind = iota
	// Partition is a partition (it has a partition file); Node.Parent is
	// its disk.
	Partition
	// Stacked is a device-mapper (LVM, dm-crypt, multipath) or md RAID
	// device: Node.Slaves are the devices below it.
	Stacked
	// Loop is a loop device: Node.Backing is its backing file.
	Loop
	// Stopped ends a walk that went too deep, visited too many nodes or
	// met a node again through slaves (a cycle); Node.Reason says which.
	Stopped
)

// Node is one sysfs block device folder and what lies below it.
type Node struct {
	// Name is the device's name, as /proc/diskstats and /sys/block name
	// it ("sda2", "dm-0").
	Name string
	// Path is the node's sysfs folder, symlinks resolved.
	Path    string
	Kind    Kind
	Parent  *Node    // Partition: the disk holding it
	Slaves  []Slave  // Stacked: the devices below it, by name
	Backing *Backing // Loop
	Reason  string   // Stopped: why the walk stopped here, one sentence
}

// Slave is one entry of a stacked device's slaves folder.
type Slave struct {
	Name string
	// Node is the slave followed down; nil when Err says why its link
	// does not resolve.
	Node *Node
	Err  error
}

// Backing is a loop device's backing file.
type Backing struct {
	// File is the backing file's path ("" when the loop device is not
	// bound; a " (deleted)" suffix is dropped).
	File string
	// Followed is false when the Walker does not follow backing files.
	Followed bool
	// Location is where File is and Device its device followed down, when
	// followed and located; Err says why File could not be located.
	Location Location
	Device   *Resolution
	Err      error
}

// Resolve follows the device dev, holding a file system of type fsType
// ("" if unknown), down the sysfs tree. It never fails: what could not be
// followed is recorded in the Resolution and its nodes.
func (w Walker) Resolve(dev Dev, fsType string) *Resolution {
	if w.SysRoot == "" {
		w.SysRoot = DefaultSysRoot
	}
	wk := &walk{w: w}
	return wk.resolve(dev, fsType, 0, nil)
}

// walk is one resolution: it counts visited nodes against MaxNodes.
type walk struct {
	w     Walker
	nodes int
}

func (wk *walk) resolve(dev Dev, fsType string, depth int, stack []string) *Resolution {
	r := &Resolution{Dev: dev, FSType: fsType}
	if dev.Anonymous() {
		r.Err = fmt.Errorf("device %s is an %w (tmpfs, overlay, network, FUSE or btrfs file system): it has no sysfs node", dev, ErrAnonymous)
		return r
	}
	path, err := NodeOf(wk.w.SysRoot, dev)
	if err != nil {
		r.Err = err
		return r
	}
	r.Node = wk.node(path, depth, stack)
	return r
}

// NodeOf finds the sysfs folder of block device dev under sysRoot: the
// dev/block/MAJ:MIN link, else the class/block entry whose dev file holds
// MAJ:MIN. The error matches ErrNotInSysfs.
func NodeOf(sysRoot string, dev Dev) (string, error) {
	want := dev.String()
	if p, err := filepath.EvalSymlinks(filepath.Join(sysRoot, "dev", "block", want)); err == nil {
		return p, nil
	}
	classDir := filepath.Join(sysRoot, "class", "block")
	entries, err := os.ReadDir(classDir)
	if err == nil {
		for _, e := range entries {
			d, err := ReadAttr(filepath.Join(classDir, e.Name(), "dev"))
			if err != nil || d != want {
				continue
			}
			if p, err := filepath.EvalSymlinks(filepath.Join(classDir, e.Name())); err == nil {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w %s in %s (neither dev/block/%s nor a class/block entry)", ErrNotInSysfs, want, sysRoot, want)
}

// node follows the sysfs folder path; stack holds the nodes being followed
// above it (a node met again on its own path is a cycle).
func (wk *walk) node(path string, depth int, stack []string) *Node {
	n := &Node{Name: filepath.Base(path), Path: path}
	wk.nodes++
	if depth > MaxDepth || wk.nodes > MaxNodes {
		n.Kind = Stopped
		n.Reason = fmt.Sprintf("stopped at %s: stacked deeper than %d levels or more than %d devices", n.Name, MaxDepth, MaxNodes)
		return n
	}
	if slices.Contains(stack, path) {
		n.Kind = Stopped
		n.Reason = fmt.Sprintf("%s is reached again through its own slaves (a cycle)", n.Name)
		return n
	}
	stack = append(stack[:len(stack):len(stack)], path)

	if exists(filepath.Join(path, "partition")) {
		n.Kind = Partition
		n.Parent = wk.node(filepath.Dir(path), depth+1, stack)
		return n
	}
	if strings.HasPrefix(n.Name, "loop") {
		n.Kind = Loop
		n.Backing = wk.loop(path, depth, stack)
		return n
	}
	if slaves := listDir(filepath.Join(path, "slaves")); len(slaves) > 0 {
		n.Kind = Stacked
		for _, s := range slaves {
			sl := Slave{Name: s}
			target, err := filepath.EvalSymlinks(filepath.Join(path, "slaves", s))
			if err != nil {
				sl.Err = err
			} else {
				sl.Node = wk.node(target, depth+1, stack)
			}
			n.Slaves = append(n.Slaves, sl)
		}
		return n
	}
	n.Kind = Disk
	return n
}

// loop reads a loop device's backing file and, if the Walker follows
// them, follows the file's device.
func (wk *walk) loop(path string, depth int, stack []string) *Backing {
	b := &Backing{Followed: wk.w.Backing != nil}
	file, err := ReadAttr(filepath.Join(path, "loop", "backing_file"))
	if err != nil {
		return b
	}
	b.File = strings.TrimSuffix(file, " (deleted)")
	if b.File == "" || !b.Followed {
		return b
	}
	loc, err := wk.w.Backing(b.File)
	if err != nil {
		b.Err = err
		return b
	}
	b.Location = loc
	b.Device = wk.resolve(loc.Dev, loc.FSType, depth+1, stack)
	return b
}

// Disks lists the whole disks below the resolution (names as in
// /proc/diskstats), sorted and distinct, and, one sentence each, what
// could not be followed to a disk. A memory-backed file system (see
// MemoryBacked) has no disk and no problem; an anonymous device otherwise
// is a problem (its disks are unknown).
func (r *Resolution) Disks() (disks, problems []string) {
	r.disks(&disks, &problems)
	slices.Sort(disks)
	return slices.Compact(disks), problems
}

func (r *Resolution) disks(disks, problems *[]string) {
	if r.Node == nil {
		if !MemoryBacked(r.FSType) {
			*problems = append(*problems, r.Err.Error())
		}
		return
	}
	r.Node.disks(disks, problems)
}

func (n *Node) disks(disks, problems *[]string) {
	switch n.Kind {
	case Disk:
		*disks = append(*disks, n.Name)
	case Partition:
		n.Parent.disks(disks, problems)
	case Stacked:
		for _, s := range n.Slaves {
			if s.Node == nil {
				*problems = append(*problems, fmt.Sprintf("%s: its slave %s cannot be resolved (%v)", n.Name, s.Name, UnwrapAll(s.Err)))
				continue
			}
			s.Node.disks(disks, problems)
		}
	case Loop:
		b := n.Backing
		switch {
		case b.File == "":
			*problems = append(*problems, fmt.Sprintf("%s is a loop device without a backing file", n.Name))
		case !b.Followed:
			*problems = append(*problems, fmt.Sprintf("%s is a loop device backed by %s, which is not followed here", n.Name, b.File))
		case b.Err != nil:
			*problems = append(*problems, fmt.Sprintf("%s is a loop device backed by %s, which cannot be found (%v)", n.Name, b.File, UnwrapAll(b.Err)))
		default:
			b.Device.disks(disks, problems)
		}
	case Stopped:
		*problems = append(*problems, n.Reason)
	}
}

// PhysicalDisks lists the whole disks of the sysfs tree at sysRoot that
// are not virtual, sorted: the class/block entries that are not
// partitions and do not live under devices/virtual (where loop, RAM, zram,
// device-mapper, md and nbd devices are).
func PhysicalDisks(sysRoot string) ([]string, error) {
	classDir := filepath.Join(sysRoot, "class", "block")
	entries, err := os.ReadDir(classDir)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	virtual := filepath.Join(sysRoot, "devices", "virtual")
	if v, err := filepath.EvalSymlinks(virtual); err == nil {
		virtual = v
	}
	var disks []string
	for _, e := range entries {
		p, err := filepath.EvalSymlinks(filepath.Join(classDir, e.Name()))
		if err != nil || exists(filepath.Join(p, "partition")) || p == virtual || strings.HasPrefix(p, virtual+string(filepath.Separator)) {
			continue
		}
		disks = append(disks, e.Name())
	}
	slices.Sort(disks)
	return disks, nil
}

// maxAttr bounds a sysfs attribute read (they are at most a page; a
// backing_file is at most PATH_MAX).
const maxAttr = 4096

// ReadAttr reads a small sysfs attribute (at most 4 KiB), trimmed of its
// newline.
func ReadAttr(path string) (string, error) {
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

// UnwrapAll drops the path context of an error (a message that names the
// path already), keeping the innermost cause.
func UnwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
