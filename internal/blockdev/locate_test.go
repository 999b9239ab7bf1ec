package blockdev

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeStat returns a Stat hook giving each listed path its device; any
// other path does not exist.
func fakeStat(devs map[string]Dev) func(string) (Dev, error) {
	return func(path string) (Dev, error) {
		if d, ok := devs[path]; ok {
			return d, nil
		}
		return Dev{}, &os.PathError{Op: "stat", Path: path, Err: fs.ErrNotExist}
	}
}

// noNodes is a NodeDev hook for a system without /dev nodes: sources are
// found by name in sysfs.
func noNodes(node string) (Dev, error) {
	return Dev{}, &os.PathError{Op: "stat", Path: node, Err: fs.ErrNotExist}
}

// writeMountinfo writes a mountinfo file and returns its path.
func writeMountinfo(tb testing.TB, lines ...string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "mountinfo")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestLocate(t *testing.T) {
	mountinfo := writeMountinfo(t,
		"26 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
		"40 26 8:2 / /data rw - ext4 /dev/sda2 rw",
		"41 26 0:77 / /btr rw - btrfs /dev/sda2 rw,subvol=/",
		"42 26 0:78 / /crypt rw - btrfs /dev/mapper/vg0-data rw",
		"43 26 0:79 / /gone rw - btrfs /dev/sdz9 rw",
		"44 26 0:50 / /ovl rw - overlay overlay rw,lowerdir=/a",
		"45 26 0:22 / /shm rw - tmpfs tmpfs rw",
	)
	stat := fakeStat(map[string]Dev{
		"/data/x": {8, 2}, "/btr/x": {0, 77}, "/btr/subvol/x": {0, 91}, "/crypt/x": {0, 78},
		"/gone/x": {0, 79}, "/ovl/x": {0, 50}, "/shm/x": {0, 22},
	})
	tests := []struct {
		name    string
		path    string
		nodeDev func(string) (Dev, error)
		dev     Dev
		fsType  string
		mount   string
		note    []string // substrings of Note, in order; nil: Note is ""
		disks   []string
		problem string // substring of the only problem; "" for none
	}{
		{name: "ext4 on a partition", path: "/data/x", dev: Dev{8, 2}, fsType: "ext4", mount: "/data", disks: []string{"sda"}},
		{name: "btrfs: anonymous st_dev, source found in sysfs", path: "/btr/x", nodeDev: noNodes,
			dev: Dev{8, 2}, fsType: "btrfs", mount: "/btr",
			note: []string{"/btr/x is on btrfs from /dev/sda2 (8:2) over anonymous device 0:77"}, disks: []string{"sda"}},
		{name: "btrfs: source node stat'ed", path: "/btr/x",
			nodeDev: func(n string) (Dev, error) {
				if n != "/dev/sda2" {
					t.Errorf("NodeDev(%q), want /dev/sda2", n)
				}
				return Dev{8, 16}, nil
			},
			dev: Dev{8, 16}, fsType: "btrfs", mount: "/btr", note: []string{"from /dev/sda2 (8:16)"}, disks: []string{"sdb"}},
		{name: "btrfs subvolume with a device no mount names", path: "/btr/subvol/x", nodeDev: noNodes,
			dev: Dev{8, 2}, fsType: "btrfs", mount: "/btr", note: []string{"over anonymous device 0:91"}, disks: []string{"sda"}},
		{name: "btrfs on /dev/mapper: the dm device of that name", path: "/crypt/x", nodeDev: noNodes,
			dev: Dev{253, 0}, fsType: "btrfs", mount: "/crypt", note: []string{"from /dev/mapper/vg0-data (253:0)"},
			disks: []string{"nvme0n1", "sda"}},
		{name: "source in neither /dev nor sysfs", path: "/gone/x", nodeDev: noNodes,
			dev: Dev{0, 79}, fsType: "btrfs", mount: "/gone",
			note:    []string{"over anonymous device 0:79, and /dev/sdz9 cannot be resolved", "no block device sdz9"},
			problem: "device 0:79 is an anonymous device"},
		{name: "overlay: no device to resolve", path: "/ovl/x", dev: Dev{0, 50}, fsType: "overlay", mount: "/ovl",
			problem: "device 0:50 is an anonymous device"},
		{name: "tmpfs: memory, no disk, no problem", path: "/shm/x", dev: Dev{0, 22}, fsType: "tmpfs", mount: "/shm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Resolver{SysRoot: fakeSys, Mountinfo: mountinfo, Stat: stat, NodeDev: tt.nodeDev}
			mounts, err := r.Mounts()
			if err != nil {
				t.Fatal(err)
			}
			loc, res, err := r.Resolve(tt.path, mounts)
			if err != nil {
				t.Fatal(err)
			}
			if loc.Dev != tt.dev || loc.FSType != tt.fsType || !loc.Mounted || loc.Mount.MountPoint != tt.mount || loc.Path != tt.path {
				t.Errorf("Locate(%s) = %+v; want device %s, %s mounted on %s", tt.path, loc, tt.dev, tt.fsType, tt.mount)
			}
			rest := loc.Note
			if tt.note == nil && rest != "" {
				t.Errorf("note %q, want none", rest)
			}
			for _, want := range tt.note {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Errorf("note %q does not hold %q (after the earlier parts)", loc.Note, want)
					break
				}
				rest = rest[i+len(want):]
			}
			var problems []string
			if tt.problem != "" {
				problems = []string{tt.problem}
			}
			disks, got := res.Disks()
			checkDisks(t, disks, got, tt.disks, problems)
		})
	}
}

func TestLocateUnmountedAndMissing(t *testing.T) {
	r := Resolver{SysRoot: fakeSys, Stat: fakeStat(map[string]Dev{"/x": {8, 0}})}
	loc, err := r.Locate("/x", nil)
	if err != nil || loc.Dev != (Dev{8, 0}) || loc.Mounted || loc.FSType != "" || loc.Note != "" {
		t.Fatalf("Locate without mounts = %+v, %v; want device 8:0 as stat'ed, no mount", loc, err)
	}
	_, err = r.Locate("/missing", nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/missing") {
		t.Fatalf("Locate of a missing path: %v; want a not-exist error naming it", err)
	}
}

// TestLocateReal locates real folders with the real stat and mount table.
func TestLocateReal(t *testing.T) {
	var r Resolver
	mounts, err := r.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	loc, res, err := r.Resolve(dir, mounts)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if loc.StatDev != DevOf(st.Dev) || !loc.Mounted || loc.FSType == "" {
		t.Errorf("Locate(%s) = %+v; want st_dev %s and a mount", dir, loc, DevOf(st.Dev))
	}
	disks, problems := res.Disks()
	t.Logf("%s: %s on %s (%s), disks %q, problems %q", dir, loc.FSType, loc.Mount.MountPoint, loc.Dev, disks, problems)
	missing := filepath.Join(dir, "gone")
	if _, err := r.Locate(missing, mounts); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Locate(%s): %v; want not exist", missing, err)
	}
}

// TestLocateRealNode resolves an anonymous file system through a real
// block device node taken from this machine's mounts (the NodeDev default).
func TestLocateRealNode(t *testing.T) {
	here, err := ReadMountinfo(DefaultMountinfo)
	if err != nil {
		t.Fatal(err)
	}
	var node string
	var rdev unix.Stat_t
	for _, m := range here {
		if strings.HasPrefix(m.Source, "/dev/") && unix.Stat(m.Source, &rdev) == nil && rdev.Mode&unix.S_IFMT == unix.S_IFBLK {
			node = m.Source
			break
		}
	}
	if node == "" {
		t.Skip("no mount from a block device node here")
	}
	mounts := []Mount{
		{Dev: Dev{0, 77}, MountPoint: "/", FSType: "btrfs", Source: node},
		{Dev: Dev{0, 78}, MountPoint: "/net", FSType: "nfs4", Source: "server:/export"},
	}
	r := Resolver{Stat: fakeStat(map[string]Dev{"/data": {0, 77}, "/net/x": {0, 78}})}
	loc, err := r.Locate("/data", mounts)
	if err != nil || loc.Dev != DevOf(rdev.Rdev) || loc.FSType != "btrfs" || !strings.Contains(loc.Note, "/data is on btrfs from "+node) {
		t.Fatalf("Locate over %s = %+v, %v; want its device %s and a note", node, loc, err, DevOf(rdev.Rdev))
	}
	if loc, err := r.Locate("/net/x", mounts); err != nil || loc.Dev != (Dev{0, 78}) || loc.FSType != "nfs4" || loc.Note != "" {
		t.Fatalf("Locate over nfs = %+v, %v; want 0:78 nfs4 unchanged, no note", loc, err)
	}
	if _, err := statNode(DefaultMountinfo); err == nil || !strings.Contains(err.Error(), "not a block device") {
		t.Errorf("statNode of a regular file: %v; want not a block device", err)
	}
}
