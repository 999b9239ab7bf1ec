package device

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeSys is the checked-in fake sysfs tree (made by testdata/mksys.sh).
const fakeSys = "testdata/sys"

// devBlockTree returns a sysfs root holding only dev/block/MAJ:MIN links to
// the devices of the checked-in tree, built from their class/block entries
// and dev files: the names the checked-in tree cannot hold (see doc.go).
func devBlockTree(tb testing.TB) string {
	tb.Helper()
	root := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "dev", "block"), 0o755); err != nil {
		tb.Fatal(err)
	}
	classDir := filepath.Join(fakeSys, "class", "block")
	entries, err := os.ReadDir(classDir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		dev, err := readAttr(filepath.Join(classDir, e.Name(), "dev"))
		if err != nil {
			tb.Fatalf("%s has no dev file: %v", e.Name(), err)
		}
		target, err := filepath.EvalSymlinks(filepath.Join(classDir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		target, err = filepath.Abs(target)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, "dev", "block", dev)); err != nil {
			tb.Fatal(err)
		}
	}
	return root
}

// layouts are the two ways a device number is found: the dev/block link and
// the class/block scan.
func layouts(tb testing.TB) map[string]string {
	tb.Helper()
	return map[string]string{"dev-block": devBlockTree(tb), "class-block": fakeSys}
}

func TestDetectIn(t *testing.T) {
	ext4On := func(major, minor uint32) func(string) (fileDevice, error) {
		return func(path string) (fileDevice, error) {
			if path != "/images/disk.img" {
				return fileDevice{}, fmt.Errorf("unexpected backing file %q", path)
			}
			return fileDevice{major: major, minor: minor, fsType: "ext4"}, nil
		}
	}
	tests := []struct {
		name         string
		major, minor uint32
		fsType       string
		fileDevice   func(string) (fileDevice, error)
		class        Class
		device       string
		reason       []string // substrings of Reason, in order
	}{
		{name: "sata hdd", major: 8, minor: 0, fsType: "ext4",
			class: HDD, device: "sda", reason: []string{"sda has rotational flag 1: hdd"}},
		{name: "hdd partition", major: 8, minor: 2, fsType: "xfs",
			class: HDD, device: "sda", reason: []string{"sda2 is a partition of sda; sda has rotational flag 1: hdd"}},
		{name: "sata ssd", major: 8, minor: 16, fsType: "ext4",
			class: SSD, device: "sdb", reason: []string{"sdb has rotational flag 0: ssd"}},
		{name: "nvme namespace partition", major: 259, minor: 2, fsType: "ext4",
			class: NVMe, device: "nvme0n1", reason: []string{"nvme0n1p2 is a partition of nvme0n1; nvme0n1 is an NVMe namespace: nvme"}},
		{name: "nvme namespace", major: 259, minor: 0, fsType: "ext4",
			class: NVMe, device: "nvme0n1", reason: []string{"nvme0n1 is an NVMe namespace"}},
		{name: "virtio disk", major: 254, minor: 0, fsType: "ext4",
			class: SSD, device: "vda", reason: []string{"vda is a virtio disk, whose rotational flag (1) is unreliable: treated as ssd", SettingKey}},
		{name: "virtio partition", major: 254, minor: 1, fsType: "ext4",
			class: SSD, device: "vda", reason: []string{"vda1 is a partition of vda; vda is a virtio disk"}},
		{name: "virtio-scsi disk", major: 8, minor: 64, fsType: "ext4",
			class: SSD, device: "sde", reason: []string{"sde is a virtio disk, whose rotational flag (1)"}},
		{name: "dm over hdd partition and nvme", major: 253, minor: 0, fsType: "ext4",
			class: HDD, device: "sda", reason: []string{
				"dm-0 (vg0-data) is device-mapper over nvme0n1, sda2, the slowest of which decides",
				"sda2 is a partition of sda; sda has rotational flag 1: hdd"}},
		{name: "dm over dm", major: 253, minor: 4, fsType: "ext4",
			class: HDD, device: "sda", reason: []string{"dm-4 (luks-data) is device-mapper over dm-0; dm-0 (vg0-data)", "hdd"}},
		{name: "md raid1", major: 9, minor: 0, fsType: "ext4",
			class: SSD, device: "sdb", reason: []string{"md0 is md raid1 over sdb, sdc, the slowest of which decides; sdb has rotational flag 0"}},
		{name: "slaves cycle", major: 253, minor: 1, fsType: "ext4",
			class: SSD, device: "", reason: []string{"dm-1 is stacked over dm-2", "dm-1 is reached again through its own slaves (a cycle): treated as ssd", SettingKey}},
		{name: "slave symlink loop", major: 253, minor: 3, fsType: "ext4",
			class: SSD, device: "", reason: []string{"its slave sdx cannot be resolved", SettingKey}},
		{name: "loop not followed", major: 7, minor: 0, fsType: "ext4",
			class: SSD, device: "", reason: []string{"loop0 is a loop device backed by /images/disk.img, which is not followed here", SettingKey}},
		{name: "loop on hdd", major: 7, minor: 0, fsType: "ext4", fileDevice: ext4On(8, 0),
			class: HDD, device: "sda", reason: []string{"loop0 is a loop device backed by /images/disk.img on ext4 (8:0); sda has rotational flag 1: hdd"}},
		{name: "loop on virtio partition", major: 7, minor: 0, fsType: "ext4", fileDevice: ext4On(254, 1),
			class: SSD, device: "vda", reason: []string{"loop0 is a loop device", "vda1 is a partition of vda; vda is a virtio disk"}},
		{name: "loop on tmpfs", major: 7, minor: 0, fsType: "ext4",
			fileDevice: func(string) (fileDevice, error) { return fileDevice{major: 0, minor: 22, fsType: "tmpfs"}, nil },
			class:      NVMe, device: "", reason: []string{"backed by /images/disk.img on tmpfs (0:22); no disk: tmpfs is memory-backed"}},
		{name: "loop backing file gone", major: 7, minor: 0, fsType: "ext4",
			fileDevice: func(p string) (fileDevice, error) {
				return fileDevice{}, &os.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
			},
			class: SSD, device: "", reason: []string{"which cannot be found (file does not exist)", SettingKey}},
		{name: "loop unbound", major: 7, minor: 1, fsType: "ext4",
			class: SSD, device: "", reason: []string{"loop1 is a loop device without a backing file", SettingKey}},
		{name: "zram", major: 251, minor: 0, fsType: "ext4",
			class: NVMe, device: "zram0", reason: []string{"zram0 is a compressed RAM disk: memory-backed"}},
		{name: "tmpfs", major: 0, minor: 22, fsType: "tmpfs",
			class: NVMe, device: "", reason: []string{"no disk: tmpfs is memory-backed, highest parallelism"}},
		{name: "ramfs", major: 0, minor: 30, fsType: "ramfs",
			class: NVMe, device: "", reason: []string{"no disk: ramfs is memory-backed"}},
		{name: "overlay", major: 0, minor: 50, fsType: "overlay",
			class: SSD, device: "", reason: []string{"no disk: overlay is on anonymous device 0:50", SettingKey}},
		{name: "anonymous, type unknown", major: 0, minor: 51, fsType: "",
			class: SSD, device: "", reason: []string{"no disk: the file system is on anonymous device 0:51"}},
		{name: "device missing from sysfs", major: 8, minor: 99, fsType: "ext4",
			class: SSD, device: "", reason: []string{"no block device 8:99", SettingKey}},
		{name: "rotational missing", major: 8, minor: 48, fsType: "ext4",
			class: SSD, device: "sdd", reason: []string{"sdd has no readable queue/rotational: treated as ssd", SettingKey}},
	}
	for layout, sysRoot := range layouts(t) {
		for _, tt := range tests {
			t.Run(layout+"/"+tt.name, func(t *testing.T) {
				var d Detection
				if tt.fileDevice == nil {
					d = DetectIn(sysRoot, tt.major, tt.minor, tt.fsType)
				} else {
					d = resolver{sysRoot: sysRoot, fileDevice: tt.fileDevice}.detect(tt.major, tt.minor, tt.fsType)
				}
				checkDetection(t, d, tt.class, tt.device, tt.reason...)
			})
		}
	}
}

// checkDetection checks a detection's class, device, source and that its
// Reason holds the given substrings in order.
func checkDetection(tb testing.TB, d Detection, class Class, device string, reason ...string) {
	tb.Helper()
	if d.Class != class || d.Device != device || d.Source != SourceDetected {
		tb.Errorf("got class %q device %q source %q, want %q %q %q (reason: %s)",
			d.Class, d.Device, d.Source, class, device, SourceDetected, d.Reason)
	}
	rest := d.Reason
	for _, want := range reason {
		i := strings.Index(rest, want)
		if i < 0 {
			tb.Errorf("reason %q does not hold %q (after the earlier parts)", d.Reason, want)
			return
		}
		rest = rest[i+len(want):]
	}
}

func TestDetectInMissingSysfs(t *testing.T) {
	d := DetectIn(filepath.Join(t.TempDir(), "no-sys"), 8, 0, "ext4")
	checkDetection(t, d, SSD, "", "no block device 8:0", SettingKey)
}

// TestDetectInDeepStack builds a chain of device-mapper devices deeper than
// maxDepth: the walk stops with a fallback instead of following it all.
func TestDetectInDeepStack(t *testing.T) {
	root := t.TempDir()
	const n = maxDepth + 4
	for i := range n {
		dir := filepath.Join(root, "devices", "virtual", "block", fmt.Sprintf("dm-%d", i))
		if err := os.MkdirAll(filepath.Join(dir, "slaves"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "dev"), fmt.Appendf(nil, "253:%d\n", i), 0o644); err != nil {
			t.Fatal(err)
		}
		if i+1 < n {
			if err := os.Symlink(fmt.Sprintf("../../dm-%d", i+1), filepath.Join(dir, "slaves", fmt.Sprintf("dm-%d", i+1))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "class", "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../devices/virtual/block/dm-0", filepath.Join(root, "class", "block", "dm-0")); err != nil {
		t.Fatal(err)
	}
	d := DetectIn(root, 253, 0, "ext4")
	checkDetection(t, d, SSD, "", fmt.Sprintf("stopped at dm-%d: stacked deeper than %d levels", maxDepth+1, maxDepth), SettingKey)
}

// TestVirtioByDriver checks the driver link alone marks a disk as virtio
// (vdb's name would do too, so the name is hidden here).
func TestVirtioByDriver(t *testing.T) {
	vdb, err := filepath.EvalSymlinks(filepath.Join(fakeSys, "class", "block", "vdb"))
	if err != nil {
		t.Fatal(err)
	}
	if !virtio(vdb, "disk0") {
		t.Errorf("%s with driver virtio_blk is not seen as virtio", vdb)
	}
	sdb, err := filepath.EvalSymlinks(filepath.Join(fakeSys, "class", "block", "sdb"))
	if err != nil {
		t.Fatal(err)
	}
	if virtio(sdb, "sdb") {
		t.Errorf("%s is seen as virtio", sdb)
	}
}

func TestFromSetting(t *testing.T) {
	tests := []struct {
		in     string
		class  Class
		ok     bool
		errSub string
	}{
		{in: "auto"},
		{in: ""},
		{in: "nvme", class: NVMe, ok: true},
		{in: "ssd", class: SSD, ok: true},
		{in: "hdd", class: HDD, ok: true},
		{in: "NVMe", errSub: `unknown device class "NVMe"`},
		{in: "fast", errSub: `unknown device class "fast"`},
		{in: " ssd", errSub: `unknown device class " ssd"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, ok, err := FromSetting(tt.in)
			if tt.errSub != "" {
				if err == nil {
					t.Fatalf("FromSetting(%q) = %+v, %v, nil; want an error", tt.in, d, ok)
				}
				for _, want := range []string{tt.errSub, SettingKey, "allowed: auto, nvme, ssd, hdd"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not hold %q", err, want)
					}
				}
				return
			}
			if err != nil || ok != tt.ok || d.Class != tt.class {
				t.Fatalf("FromSetting(%q) = %+v, %v, %v; want class %q, ok %v", tt.in, d, ok, err, tt.class, tt.ok)
			}
			if ok && (d.Source != SourceSetting || !strings.Contains(d.Reason, SettingKey)) {
				t.Errorf("FromSetting(%q) = %+v: want source %q and a reason naming %s", tt.in, d, SourceSetting, SettingKey)
			}
		})
	}
}

// TestDetectReal runs Detect on this machine: whatever the disk, it gives a
// valid class and says why.
func TestDetectReal(t *testing.T) {
	dirs := []string{t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dirs = append(dirs, "/dev/shm")
	}
	for _, dir := range dirs {
		d, err := Detect(dir)
		if err != nil {
			t.Fatalf("Detect(%s): %v", dir, err)
		}
		switch d.Class {
		case NVMe, SSD, HDD:
		default:
			t.Errorf("Detect(%s): class %q", dir, d.Class)
		}
		if d.Reason == "" || d.Source != SourceDetected {
			t.Errorf("Detect(%s) = %+v: want a reason and source %q", dir, d, SourceDetected)
		}
		t.Logf("Detect(%s) = %s (device %q): %s", dir, d.Class, d.Device, d.Reason)
	}
}

func TestDetectMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gone")
	_, err := Detect(dir)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Detect(%s) error = %v; want one naming the folder and matching fs.ErrNotExist", dir, err)
	}
}

// TestLocateStatAnonymous: a file system on an anonymous device (btrfs)
// mounted from a block device node is resolved through that node. It needs
// a block device node on this machine, taken from the real mounts.
func TestLocateStatAnonymous(t *testing.T) {
	here, err := readMountinfo(realMountinfo)
	if err != nil {
		t.Fatal(err)
	}
	var node string
	var rdev unix.Stat_t
	for _, m := range here {
		if strings.HasPrefix(m.source, "/dev/") && unix.Stat(m.source, &rdev) == nil && rdev.Mode&unix.S_IFMT == unix.S_IFBLK {
			node = m.source
			break
		}
	}
	if node == "" {
		t.Skip("no mount from a block device node here")
	}
	mounts := []mount{
		{major: 0, minor: 77, mountPoint: "/", fsType: "btrfs", source: node},
		{major: 0, minor: 78, mountPoint: "/net", fsType: "nfs4", source: "server:/export"},
	}
	var st unix.Stat_t
	st.Dev = unix.Mkdev(0, 77)
	fd := locateStat("/data", st, mounts)
	if fd.major != unix.Major(rdev.Rdev) || fd.minor != unix.Minor(rdev.Rdev) || fd.fsType != "btrfs" ||
		!strings.Contains(fd.note, "/data is on btrfs from "+node) {
		t.Fatalf("locateStat over %s = %+v; want its device %d:%d and a note", node, fd, unix.Major(rdev.Rdev), unix.Minor(rdev.Rdev))
	}
	st.Dev = unix.Mkdev(0, 78)
	if fd := locateStat("/net/x", st, mounts); fd.major != 0 || fd.minor != 78 || fd.fsType != "nfs4" || fd.note != "" {
		t.Fatalf("locateStat over nfs = %+v; want 0:78 nfs4 unchanged", fd)
	}
}
