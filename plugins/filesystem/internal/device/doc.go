// Package device decides the class (nvme, ssd or hdd) of the device under
// the filesystem plugin's root folder, which chooses the scheduler's
// dispatch depth (queue_depth.{nvme,ssd,hdd}), and says how it decided.
//
// # Resolution
//
// Package blockdev (internal/blockdev) finds the device: stat(dir).Dev
// gives MAJ:MIN, /proc/self/mountinfo the file system's type and source (a
// major-0 file system mounted from a block device node, as btrfs is, is
// resolved through that node), and a walk of /sys from
// /sys/dev/block/MAJ:MIN gives a tree: partitions lead to their disk,
// device-mapper and md devices to their slaves, loop devices to their
// backing file's device (Detect only; DetectIn reads nothing outside the
// sysfs tree). This package decides the class over that tree:
//
//   - a partition has its disk's class;
//   - a device-mapper (LVM, dm-crypt, multipath) or md RAID device has
//     the slowest class among its slaves (hdd < ssd < nvme): a volume
//     spanning an HDD is as slow as the HDD;
//   - a loop device has its backing file's file system's class;
//   - zram and RAM disks are memory: nvme;
//   - a disk named nvme* is an NVMe namespace: nvme;
//   - a virtio disk (named vd*, driven by virtio_blk, or below a virtioN
//     device, which catches virtio-scsi sd* disks) is ssd whatever its
//     rotational flag says: virtio disks report rotational=1 (these
//     machines' vda does) because the guest cannot know the host's
//     storage. ssd is the middle class — a cloud volume is flash far more
//     often than a spinning disk, and the ssd queue depth neither
//     overruns an HDD badly nor starves a fast device badly — and the
//     Reason tells the operator to set device_class when the host's
//     storage is known;
//   - otherwise queue/rotational: 1 is hdd, 0 is ssd.
//
// File systems without a disk: tmpfs, ramfs and devtmpfs are memory-backed
// and get nvme (highest parallelism). Other file systems on an anonymous
// device (major 0: overlay, NFS, FUSE, ZFS) get ssd with a Reason asking for
// device_class, except that a major-0 file system mounted from a block
// device node (btrfs reports anonymous device numbers but mountinfo names
// /dev/sda2) is resolved through that node.
//
// # Never failing hard
//
// Detect returns an error only when the folder cannot be stat'ed. Missing
// sysfs entries, unreadable attributes, broken or cyclic slaves links and
// loop devices without a backing file all give ssd with a Reason that says
// what was missing and names the device_class setting. The walk is bounded
// by blockdev (8 levels, 64 nodes, a cycle check on the path being
// followed), so a malformed tree cannot loop; a walk it stopped gives ssd.
//
// # Setting
//
// FromSetting maps subsystems.filesystem.device_class: auto (or empty)
// detects; nvme, ssd and hdd override detection (Source "setting").
//
// # Test trees
//
// The tests classify over package blockdev's fake sysfs tree
// (internal/blockdev/testdata/sys, made by its mksys.sh), which holds the
// attributes the class decision reads (queue/rotational, virtio driver
// links, dm/name, md/level) beside the ones the walk reads.
package device
