package concurrency

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/internal/blockdev"
)

// fakeDevice is one block device of a fake sysfs tree.
type fakeDevice struct {
	path    string // under devices/
	dev     string // MAJ:MIN
	part    bool   // a partition (of the parent folder)
	slaves  []string
	backing string // a loop device's backing file
}

// fakeSys builds a sysfs tree under a temporary folder, with the
// dev/block/MAJ:MIN and class/block/NAME links and dev files the kernel
// has: sda with partitions sda1 and sda2, sdb with partition sdb2,
// nvme0n1, dm-0 over sda2 and sdb, dm-1 (dm/name vg-lv) over dm-0, dm-2
// and dm-3 each other's slave (a cycle), loop0 backed by /images/disk.img
// and zram0.
func fakeSys(tb testing.TB) string {
	tb.Helper()
	root := tb.TempDir()
	write := func(p, content string) {
		tb.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(content+"\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	link := func(target, at string) {
		tb.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, at)), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, at)); err != nil {
			tb.Fatal(err)
		}
	}
	devices := []fakeDevice{
		{path: "pci/block/sda", dev: "8:0"},
		{path: "pci/block/sda/sda1", dev: "8:1", part: true},
		{path: "pci/block/sda/sda2", dev: "8:2", part: true},
		{path: "pci/block/sdb", dev: "8:16"},
		{path: "pci/block/sdb/sdb2", dev: "8:18", part: true},
		{path: "pci/nvme/block/nvme0n1", dev: "259:0"},
		{path: "virtual/block/dm-0", dev: "253:0", slaves: []string{"pci/block/sda/sda2", "pci/block/sdb"}},
		{path: "virtual/block/dm-1", dev: "253:1", slaves: []string{"virtual/block/dm-0"}},
		{path: "virtual/block/dm-2", dev: "253:2", slaves: []string{"virtual/block/dm-3"}},
		{path: "virtual/block/dm-3", dev: "253:3", slaves: []string{"virtual/block/dm-2"}},
		{path: "virtual/block/loop0", dev: "7:0", backing: "/images/disk.img"},
		{path: "virtual/block/zram0", dev: "251:0"},
	}
	for _, d := range devices {
		name := filepath.Base(d.path)
		write("devices/"+d.path+"/dev", d.dev)
		if d.part {
			write("devices/"+d.path+"/partition", "1")
		}
		for _, s := range d.slaves {
			link("../../../../"+s, "devices/"+d.path+"/slaves/"+filepath.Base(s))
		}
		if d.backing != "" {
			write("devices/"+d.path+"/loop/backing_file", d.backing)
		}
		link("../../devices/"+d.path, "dev/block/"+d.dev)
		link("../../devices/"+d.path, "class/block/"+name)
	}
	write("devices/virtual/block/dm-1/dm/name", "vg-lv")
	return root
}

// writeFile writes content to a new file in a temporary folder.
func writeFile(tb testing.TB, name, content string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// fakeDiskstats writes a diskstats file listing the devices, idle.
func fakeDiskstats(tb testing.TB, names ...string) string {
	tb.Helper()
	var b strings.Builder
	for i, n := range names {
		fmt.Fprintf(&b, "%4d %7d %s 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n", 8, i, n)
	}
	return writeFile(tb, "diskstats", b.String())
}

// fakeStat gives each listed path its device; any other does not exist.
func fakeStat(devs map[string]blockdev.Dev) func(string) (blockdev.Dev, error) {
	return func(path string) (blockdev.Dev, error) {
		if d, ok := devs[path]; ok {
			return d, nil
		}
		return blockdev.Dev{}, &os.PathError{Op: "stat", Path: path, Err: fs.ErrNotExist}
	}
}

// noNodes stands for a /dev without nodes: mount sources are found by
// name in sysfs (a test machine may have a real /dev/sdb2).
func noNodes(node string) (blockdev.Dev, error) {
	return blockdev.Dev{}, &os.PathError{Op: "stat", Path: node, Err: fs.ErrNotExist}
}

var testMountinfo = strings.Join([]string{
	"26 1 8:1 / / rw - ext4 /dev/sda1 rw",
	"40 26 0:77 / /btr rw - btrfs /dev/sdb2 rw,subvol=/",
	"41 26 253:1 / /lvm rw - xfs /dev/mapper/vg-lv rw",
	"42 26 0:50 / /ovl rw - overlay overlay rw,lowerdir=/a",
	"43 26 0:22 / /shm rw - tmpfs tmpfs rw",
	"44 26 253:2 / /cyc rw - ext4 /dev/dm-2 rw",
	"45 26 7:0 / /img rw - ext4 /dev/loop0 rw",
}, "\n") + "\n"

var testStat = fakeStat(map[string]blockdev.Dev{
	"/repo": {Major: 8, Minor: 1}, "/btr/repo": {Major: 0, Minor: 77}, "/btr/sub/src": {Major: 0, Minor: 91},
	"/lvm/src": {Major: 253, Minor: 1}, "/ovl/src": {Major: 0, Minor: 50}, "/shm/src": {Major: 0, Minor: 22},
	"/cyc/src": {Major: 253, Minor: 2}, "/img/src": {Major: 7, Minor: 0}, "/images/disk.img": {Major: 8, Minor: 1},
})

// physical is what the fallback watches over fakeSys and the diskstats of
// TestWatcherFolders.
var physical = []string{"nvme0n1", "sda", "sdb"}

func TestWatcherFolders(t *testing.T) {
	sys := fakeSys(t)
	mountinfo := writeFile(t, "mountinfo", testMountinfo)
	diskstats := fakeDiskstats(t, "sda", "sda1", "sda2", "sdb", "sdb2", "nvme0n1", "dm-0", "dm-1", "loop0", "zram0")
	tests := []struct {
		name       string
		folders    []string
		disks      []string
		unresolved []string
		notes      []string // substrings, one per note, in order
	}{
		{name: "ext4 on a partition", folders: []string{"/repo"}, disks: []string{"sda"}},
		{name: "btrfs: anonymous st_dev, source /dev/sdb2", folders: []string{"/btr/repo"}, disks: []string{"sdb"},
			notes: []string{"/btr/repo is on btrfs from /dev/sdb2 (8:18) over anonymous device 0:77"}},
		{name: "btrfs subvolume no mount names", folders: []string{"/btr/sub/src"}, disks: []string{"sdb"},
			notes: []string{"over anonymous device 0:91"}},
		{name: "lvm over dm over a partition and a disk", folders: []string{"/lvm/src"}, disks: []string{"sda", "sdb"}},
		{name: "loop device: its backing file's disk", folders: []string{"/img/src"}, disks: []string{"sda"}},
		{name: "repository and sources, distinct disks", folders: []string{"/repo", "/btr/repo", "/repo", "/lvm/src"},
			disks: []string{"sda", "sdb"}, notes: []string{"/btr/repo is on btrfs"}},
		{name: "tmpfs: no disk, not unresolved", folders: []string{"/shm/src"},
			notes: []string{"/shm/src is on tmpfs, memory-backed: no disk to watch"}},
		{name: "overlay: unresolvable, every physical disk", folders: []string{"/ovl/src"},
			disks: physical, unresolved: []string{"/ovl/src"},
			notes: []string{
				"disks of /ovl/src (overlay on device 0:50): device 0:50 is an anonymous device",
				"the disks under /ovl/src cannot be resolved: watching every physical disk in " + diskstats + " (nvme0n1, sda, sdb)"}},
		{name: "missing folder: unresolvable", folders: []string{"/gone"},
			disks: physical, unresolved: []string{"/gone"},
			notes: []string{"disks of /gone: stat /gone: file does not exist", "watching every physical disk"}},
		{name: "slaves cycle: unresolvable", folders: []string{"/cyc/src"},
			disks: physical, unresolved: []string{"/cyc/src"},
			notes: []string{"disks of /cyc/src (ext4 on device 253:2): dm-2 is reached again through its own slaves (a cycle)", "watching every physical disk"}},
		{name: "one resolved, one not: the resolved ones and every physical disk", folders: []string{"/btr/repo", "/ovl/src", "/shm/src"},
			disks: physical, unresolved: []string{"/ovl/src"},
			notes: []string{"/btr/repo is on btrfs", "disks of /ovl/src", "/shm/src is on tmpfs", "the disks under /ovl/src cannot be resolved"}},
		{name: "no folders", folders: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wr := Watcher{Resolver: blockdev.Resolver{SysRoot: sys, Mountinfo: mountinfo, Stat: testStat, NodeDev: noNodes}, Diskstats: diskstats}
			w := wr.Folders(tt.folders)
			checkWatch(t, w, tt.disks, tt.unresolved, tt.notes)
		})
	}
}

// checkWatch compares disks and unresolved folders exactly, notes by
// substring, and checks Err agrees with Unresolved.
func checkWatch(tb testing.TB, w Watch, disks, unresolved, notes []string) {
	tb.Helper()
	if !slices.Equal(w.Disks, disks) || !slices.Equal(w.Unresolved, unresolved) {
		tb.Errorf("disks %q, unresolved %q; want %q, %q (notes %q)", w.Disks, w.Unresolved, disks, unresolved, w.Notes)
	}
	if len(w.Notes) != len(notes) {
		tb.Fatalf("notes = %q, want %d holding %q", w.Notes, len(notes), notes)
	}
	for i, want := range notes {
		if !strings.Contains(w.Notes[i], want) {
			tb.Errorf("note %d = %q, want it to hold %q", i, w.Notes[i], want)
		}
	}
	err := w.Err()
	switch {
	case len(unresolved) == 0 && err != nil:
		tb.Errorf("Err() = %v with every folder resolved", err)
	case len(unresolved) > 0 && (err == nil || !strings.Contains(err.Error(), unresolved[0])):
		tb.Errorf("Err() = %v; want an error naming %s", err, unresolved[0])
	}
}

// TestWatcherFallback covers where the fallback finds physical disks when
// sysfs or diskstats is missing.
func TestWatcherFallback(t *testing.T) {
	sys := fakeSys(t)
	noSys := filepath.Join(t.TempDir(), "no-sys")
	mountinfo := writeFile(t, "mountinfo", testMountinfo)
	diskstats := fakeDiskstats(t, "loop0", "sda", "sda1", "sdb", "nvme0n1", "nvme0n1p1", "nvme0n1p2", "mmcblk0", "mmcblk0p1", "dm-0", "md127", "zram0", "sr0")
	noDiskstats := filepath.Join(t.TempDir(), "no-diskstats")
	tests := []struct {
		name      string
		sys       string
		diskstats string
		disks     []string
		how       string // the last note's
	}{
		{name: "sysfs and diskstats", sys: sys, diskstats: diskstats, disks: physical,
			how: "every physical disk in " + diskstats},
		{name: "sysfs only", sys: sys, diskstats: noDiskstats, disks: physical,
			how: "every physical disk of " + sys + " (nvme0n1, sda, sdb)"},
		{name: "diskstats only: whole disks by name", sys: noSys, diskstats: diskstats,
			disks: []string{"mmcblk0", "nvme0n1", "sda", "sdb"},
			how:   "neither virtual nor a partition by its name (mmcblk0, nvme0n1, sda, sdb), sysfs having none"},
		{name: "neither: nothing to watch, said so", sys: noSys, diskstats: noDiskstats,
			how: "no disk at all, since neither sysfs"},
		{name: "diskstats lists no physical disk", sys: noSys, diskstats: fakeDiskstats(t, "loop0", "zram0"),
			how: "lists no physical disk: utilisation cannot be measured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wr := Watcher{Resolver: blockdev.Resolver{SysRoot: tt.sys, Mountinfo: mountinfo, Stat: testStat, NodeDev: noNodes}, Diskstats: tt.diskstats}
			w := wr.Folders([]string{"/ovl/src"})
			checkWatch(t, w, tt.disks, []string{"/ovl/src"}, []string{"disks of /ovl/src", tt.how})
		})
	}
}

func TestWatcherMountsUnreadable(t *testing.T) {
	sys := fakeSys(t)
	wr := Watcher{Resolver: blockdev.Resolver{SysRoot: sys, Mountinfo: filepath.Join(t.TempDir(), "none"), Stat: testStat, NodeDev: noNodes},
		Diskstats: fakeDiskstats(t, "sda", "sdb", "nvme0n1")}
	// /repo is still found by its st_dev; btrfs is anonymous without the
	// mount table, so it falls back.
	w := wr.Folders([]string{"/repo", "/btr/repo"})
	checkWatch(t, w, physical, []string{"/btr/repo"}, []string{
		"mount table unreadable", "disks of /btr/repo (an unknown file system on device 0:77)", "watching every physical disk"})
}

// TestWatchFoldersReal resolves a real folder on this machine: it gives
// disks, or is memory-backed, or is reported as unresolved.
func TestWatchFoldersReal(t *testing.T) {
	dir := t.TempDir()
	w := WatchFolders(SysRoot, []string{dir, filepath.Join(dir, "missing")})
	if !slices.Contains(w.Unresolved, filepath.Join(dir, "missing")) || w.Err() == nil {
		t.Errorf("a missing folder is not reported: %+v", w)
	}
	w = WatchFolders(SysRoot, []string{dir})
	memory := len(w.Notes) > 0 && strings.Contains(w.Notes[len(w.Notes)-1], "memory-backed")
	if len(w.Disks) == 0 && !memory && len(w.Unresolved) == 0 {
		t.Errorf("%s: no disk, not memory-backed, not unresolved: %+v", dir, w)
	}
	t.Logf("%s: disks %q, unresolved %q, notes %q", dir, w.Disks, w.Unresolved, w.Notes)
}
