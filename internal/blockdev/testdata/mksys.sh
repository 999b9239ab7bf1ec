#!/bin/sh
# mksys.sh rebuilds testdata/sys, a fake /sys tree for the blockdev tests
# (and the filesystem plugin's device-class tests, which read it too):
# directories, small files and relative symlinks laid out as the kernel lays
# them out, holding only the entries the detection reads. Run it from
# testdata/; it replaces sys/ whole.
#
# No file name here contains ':' — the Go module zip rejects such names,
# which would make the whole module unfetchable through the module proxy.
# So the tree has /sys/class/block/NAME links and each device's `dev` file
# ("8:0") but no /sys/dev/block/MAJ:MIN links (and PCI folders are named
# without colons); the tests add those links in a temporary folder.
set -eu
rm -rf sys
mkdir sys
cd sys

# file PATH CONTENT: a small sysfs attribute file.
file() { mkdir -p "$(dirname "$1")"; printf '%s\n' "$2" >"$1"; }
# link PATH TARGET: a relative symlink, as sysfs has them.
link() { mkdir -p "$(dirname "$1")"; ln -s "$2" "$1"; }
# blockdev PATH MAJ:MIN: a block device folder under devices/ with its dev
# file, and its class/block link.
blockdev() {
	file "devices/$1/dev" "$2"
	link "class/block/$(basename "$1")" "../../devices/$1"
}

# The folder a virtio_blk device's driver link points at.
file bus/virtio/drivers/virtio_blk/uevent 'DRIVER=virtio_blk'

# sda: SATA hard disk (rotational 1), with partition sda2.
blockdev pci0/ata1/block/sda 8:0
file devices/pci0/ata1/block/sda/queue/rotational 1
blockdev pci0/ata1/block/sda/sda2 8:2
file devices/pci0/ata1/block/sda/sda2/partition 2

# sdb, sdc: SATA SSDs (rotational 0).
blockdev pci0/ata2/block/sdb 8:16
file devices/pci0/ata2/block/sdb/queue/rotational 0
blockdev pci0/ata3/block/sdc 8:32
file devices/pci0/ata3/block/sdc/queue/rotational 0

# sdd: a disk whose queue/rotational is missing.
blockdev pci0/ata4/block/sdd 8:48

# sde: a virtio-scsi disk (sd name, virtio in its path) saying rotational 1.
blockdev pci0/virtio2/host0/target0/block/sde 8:64
file devices/pci0/virtio2/host0/target0/block/sde/queue/rotational 1

# nvme0n1: NVMe namespace with partition nvme0n1p2.
blockdev pci0/nvme/nvme0/nvme0n1 259:0
file devices/pci0/nvme/nvme0/nvme0n1/queue/rotational 0
blockdev pci0/nvme/nvme0/nvme0n1/nvme0n1p2 259:2
file devices/pci0/nvme/nvme0/nvme0n1/nvme0n1p2/partition 2

# vda: virtio_blk disk saying rotational 1 (as on these machines), with vda1.
blockdev pci0/virtio1/block/vda 254:0
file devices/pci0/virtio1/block/vda/queue/rotational 1
link devices/pci0/virtio1/block/vda/device ../../../virtio1
link devices/pci0/virtio1/driver ../../../bus/virtio/drivers/virtio_blk
blockdev pci0/virtio1/block/vda/vda1 254:1
file devices/pci0/virtio1/block/vda/vda1/partition 1

# vdb: a virtio_blk disk found by its driver link only (no virtio folder in
# its path), saying rotational 1.
blockdev platform/mmio0/block/vdb 254:16
file devices/platform/mmio0/block/vdb/queue/rotational 1
link devices/platform/mmio0/block/vdb/device ../..
link devices/platform/mmio0/driver ../../../bus/virtio/drivers/virtio_blk

# dm-0: LVM volume over sda2 (hdd) and nvme0n1 (nvme).
blockdev virtual/block/dm-0 253:0
file devices/virtual/block/dm-0/dm/name vg0-data
file devices/virtual/block/dm-0/queue/rotational 0
link devices/virtual/block/dm-0/slaves/sda2 ../../../../pci0/ata1/block/sda/sda2
link devices/virtual/block/dm-0/slaves/nvme0n1 ../../../../pci0/nvme/nvme0/nvme0n1

# dm-1 and dm-2: each other's slave (a cycle).
blockdev virtual/block/dm-1 253:1
file devices/virtual/block/dm-1/queue/rotational 0
link devices/virtual/block/dm-1/slaves/dm-2 ../../dm-2
blockdev virtual/block/dm-2 253:2
file devices/virtual/block/dm-2/queue/rotational 0
link devices/virtual/block/dm-2/slaves/dm-1 ../../dm-1

# dm-3: its only slave entry is a symlink to itself (ELOOP).
blockdev virtual/block/dm-3 253:3
file devices/virtual/block/dm-3/queue/rotational 0
link devices/virtual/block/dm-3/slaves/sdx sdx

# dm-4: dm-crypt over dm-0 (stacked device-mapper).
blockdev virtual/block/dm-4 253:4
file devices/virtual/block/dm-4/dm/name luks-data
link devices/virtual/block/dm-4/slaves/dm-0 ../../dm-0

# md0: RAID 1 over sdb and sdc (both ssd).
blockdev virtual/block/md0 9:0
file devices/virtual/block/md0/md/level raid1
file devices/virtual/block/md0/queue/rotational 0
link devices/virtual/block/md0/slaves/sdb ../../../../pci0/ata2/block/sdb
link devices/virtual/block/md0/slaves/sdc ../../../../pci0/ata3/block/sdc

# loop0: bound to /images/disk.img (rotational 0, as loop devices say);
# loop1: not bound.
blockdev virtual/block/loop0 7:0
file devices/virtual/block/loop0/loop/backing_file /images/disk.img
file devices/virtual/block/loop0/queue/rotational 0
blockdev virtual/block/loop1 7:1
file devices/virtual/block/loop1/queue/rotational 0

# zram0: compressed RAM disk.
blockdev virtual/block/zram0 251:0
file devices/virtual/block/zram0/queue/rotational 0
