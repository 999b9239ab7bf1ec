package device

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/internal/blockdev"
)

// fakeSys is the fake sysfs tree of package blockdev (made by its
// testdata/mksys.sh), which the walk below the class decision reads. Its
// tests run the walk over both ways of finding a device number (dev/block
// links and the class/block scan); these run over the tree as it is.
const fakeSys = "../../../../internal/blockdev/testdata/sys"

func TestDetectIn(t *testing.T) {
	on := func(major, minor uint32, fsType string) func(string) (blockdev.Location, error) {
		return func(path string) (blockdev.Location, error) {
			if path != "/images/disk.img" {
				return blockdev.Location{}, fmt.Errorf("unexpected backing file %q", path)
			}
			return blockdev.Location{Path: path, Dev: blockdev.Dev{Major: major, Minor: minor}, FSType: fsType}, nil
		}
	}
	tests := []struct {
		name         string
		major, minor uint32
		fsType       string
		backing      func(string) (blockdev.Location, error)
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
		{name: "loop on hdd", major: 7, minor: 0, fsType: "ext4", backing: on(8, 0, "ext4"),
			class: HDD, device: "sda", reason: []string{"loop0 is a loop device backed by /images/disk.img on ext4 (8:0); sda has rotational flag 1: hdd"}},
		{name: "loop on virtio partition", major: 7, minor: 0, fsType: "ext4", backing: on(254, 1, "ext4"),
			class: SSD, device: "vda", reason: []string{"loop0 is a loop device", "vda1 is a partition of vda; vda is a virtio disk"}},
		{name: "loop on tmpfs", major: 7, minor: 0, fsType: "ext4",
			backing: on(0, 22, "tmpfs"),
			class:   NVMe, device: "", reason: []string{"backed by /images/disk.img on tmpfs (0:22); no disk: tmpfs is memory-backed"}},
		{name: "loop backing file gone", major: 7, minor: 0, fsType: "ext4",
			backing: func(p string) (blockdev.Location, error) {
				return blockdev.Location{}, &os.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Detection
			if tt.backing == nil {
				d = DetectIn(fakeSys, tt.major, tt.minor, tt.fsType)
			} else {
				dev := blockdev.Dev{Major: tt.major, Minor: tt.minor}
				d = detect(blockdev.Walker{SysRoot: fakeSys, Backing: tt.backing}.Resolve(dev, tt.fsType))
			}
			checkDetection(t, d, tt.class, tt.device, tt.reason...)
		})
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
