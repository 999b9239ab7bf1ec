// Package device decides the class (nvme, ssd or hdd) of the device under
// the filesystem plugin's root folder, which chooses the scheduler's
// dispatch depth (queue_depth.{nvme,ssd,hdd}), and says how it decided.
//
// # Resolution
//
// stat(root).Dev gives the file system's device number MAJ:MIN and
// /proc/self/mountinfo its type (and source). The sysfs node of MAJ:MIN is
// /sys/dev/block/MAJ:MIN, a link into /sys/devices (or, failing that, the
// /sys/class/block entry whose dev file holds MAJ:MIN). From the node:
//
//   - a partition (the node has a partition file) is replaced by its disk,
//     the parent folder;
//   - a device-mapper (LVM, dm-crypt, multipath) or md RAID device is
//     followed through slaves/ down to its disks, and the slowest class
//     among them decides (hdd < ssd < nvme): a volume spanning an HDD is
//     as slow as the HDD;
//   - a loop device is followed to its backing file's file system (Detect
//     only; DetectIn reads nothing outside the sysfs tree);
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
// what was missing and names the device_class setting. Following slaves is
// bounded (8 levels, 64 nodes, a cycle check on the path being followed),
// so a malformed tree cannot loop.
//
// # Setting
//
// FromSetting maps subsystems.filesystem.device_class: auto (or empty)
// detects; nvme, ssd and hdd override detection (Source "setting").
//
// # Test trees
//
// testdata/sys is a fake sysfs tree made by testdata/mksys.sh. It has no
// file named with ':' (the Go module zip refuses such names, which would
// make the module unfetchable), so it holds class/block links and dev files
// but not the dev/block/MAJ:MIN links; the tests run every case both over
// the tree as it is (the class/block scan) and with dev/block links added
// in a temporary folder.
package device
