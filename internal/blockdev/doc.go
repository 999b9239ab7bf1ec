// Package blockdev finds the block devices and whole disks under a path on
// Linux, for the plugins that size their I/O to the device (the filesystem
// plugin's device class, the dataprotection plugin's disk utilisation).
//
// # From a path to a device number
//
// stat(2) gives the file system's device number MAJ:MIN (st_dev). That is
// not always a block device: btrfs (every subvolume), overlayfs, tmpfs,
// network and FUSE file systems report an anonymous device (major 0), which
// has no sysfs node and no /proc/diskstats line. So Resolver.Locate also
// finds the path's mount in /proc/self/mountinfo (FindMount: the longest
// mount point holding the path, preferring mounts of its own device since
// bind mounts share one; a btrfs subvolume that is not mounted on its own
// has a device no mount names, and gets the longest mount point of any
// device). A file system on an anonymous device mounted from a /dev node
// (btrfs: /dev/sdb2) is resolved through that node: its st_rdev, or, where
// /dev lacks it (containers, tests), the sysfs entry of that name
// (class/block/NAME; /dev/mapper/NAME is the dm device whose dm/name is
// NAME). A multi-device btrfs resolves to the one device mountinfo names.
//
// # From a device number to whole disks
//
// Walker.Resolve turns MAJ:MIN into a tree of sysfs nodes: the node is
// /sys/dev/block/MAJ:MIN (a link into /sys/devices) or, failing that, the
// /sys/class/block entry whose dev file holds MAJ:MIN. From a node:
//
//   - a partition (it has a partition file) leads to its disk, the parent
//     folder;
//   - a loop device (named loop*) leads to its backing file's device, when
//     the Walker is given a way to locate files (Resolver.Walker is;
//     a Walker without one reads nothing outside its sysfs tree);
//   - a device with slaves/ (device-mapper: LVM, dm-crypt, multipath; md
//     RAID) leads to each slave;
//   - anything else is a whole disk.
//
// Resolution.Disks lists the whole disks at the leaves, as /proc/diskstats
// names them, and what could not be followed. The walk is bounded (MaxDepth
// levels, MaxNodes nodes, a cycle check on the path being followed), so a
// malformed tree cannot loop. Nothing here fails hard except stat of the
// path itself: a missing sysfs entry or an unreadable link is recorded in
// the tree for the caller to report or fall back on. What a device is
// (nvme, ssd, hdd, memory) is the caller's business; the tree keeps what
// it needs (names, sysfs paths).
//
// PhysicalDisks lists the non-virtual whole disks of the tree (not under
// /sys/devices/virtual, not partitions): the fallback of a caller whose
// path's disks cannot be resolved.
//
// # Roots and tests
//
// The sysfs root and the mountinfo file are fields of Resolver and Walker,
// and the two stat calls can be replaced, so tests run over fake trees.
// testdata/sys is a fake sysfs tree made by testdata/mksys.sh. It has no
// file named with ':' (the Go module zip refuses such names, which would
// make the module unfetchable), so it holds class/block links and dev files
// but not the dev/block/MAJ:MIN links; the tests run each walk both over
// the tree as it is (the class/block scan) and with dev/block links added
// in a temporary folder. The filesystem plugin's device tests read the
// same tree. testdata/fuzz holds the mountinfo parser's fuzz corpus.
package blockdev
