package blockdev

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
		dev, err := ReadAttr(filepath.Join(classDir, e.Name(), "dev"))
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

// backingOn returns a Backing hook that places /images/disk.img on dev.
func backingOn(dev Dev, fsType string) func(string) (Location, error) {
	return func(file string) (Location, error) {
		if file != "/images/disk.img" {
			return Location{}, fmt.Errorf("unexpected backing file %q", file)
		}
		return Location{Path: file, Dev: dev, StatDev: dev, FSType: fsType}, nil
	}
}

func TestWalkerResolve(t *testing.T) {
	tests := []struct {
		name     string
		dev      Dev
		fsType   string
		backing  func(string) (Location, error)
		kind     Kind
		disks    []string
		problems []string // substrings, one per problem
		err      error    // Resolution.Err, when there is no node
	}{
		{name: "whole disk", dev: Dev{8, 0}, fsType: "ext4", kind: Disk, disks: []string{"sda"}},
		{name: "partition stands for its disk", dev: Dev{8, 2}, fsType: "xfs", kind: Partition, disks: []string{"sda"}},
		{name: "nvme partition", dev: Dev{259, 2}, kind: Partition, disks: []string{"nvme0n1"}},
		{name: "virtio partition", dev: Dev{254, 1}, kind: Partition, disks: []string{"vda"}},
		{name: "disk without rotational flag", dev: Dev{8, 48}, kind: Disk, disks: []string{"sdd"}},
		{name: "zram is a disk", dev: Dev{251, 0}, kind: Disk, disks: []string{"zram0"}},
		{name: "dm over a partition and a disk", dev: Dev{253, 0}, kind: Stacked, disks: []string{"nvme0n1", "sda"}},
		{name: "dm over dm", dev: Dev{253, 4}, kind: Stacked, disks: []string{"nvme0n1", "sda"}},
		{name: "md raid1", dev: Dev{9, 0}, kind: Stacked, disks: []string{"sdb", "sdc"}},
		{name: "slaves cycle", dev: Dev{253, 1}, kind: Stacked,
			problems: []string{"dm-1 is reached again through its own slaves (a cycle)"}},
		{name: "slave symlink loop", dev: Dev{253, 3}, kind: Stacked,
			problems: []string{"dm-3: its slave sdx cannot be resolved"}},
		{name: "loop not followed", dev: Dev{7, 0}, kind: Loop,
			problems: []string{"loop0 is a loop device backed by /images/disk.img, which is not followed here"}},
		{name: "loop on an hdd", dev: Dev{7, 0}, backing: backingOn(Dev{8, 0}, "ext4"), kind: Loop, disks: []string{"sda"}},
		{name: "loop on a dm volume", dev: Dev{7, 0}, backing: backingOn(Dev{253, 0}, "ext4"), kind: Loop, disks: []string{"nvme0n1", "sda"}},
		{name: "loop on tmpfs: memory, no disk", dev: Dev{7, 0}, backing: backingOn(Dev{0, 22}, "tmpfs"), kind: Loop},
		{name: "loop backing file gone", dev: Dev{7, 0}, kind: Loop,
			backing: func(p string) (Location, error) {
				return Location{}, &os.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
			},
			problems: []string{"loop0 is a loop device backed by /images/disk.img, which cannot be found (file does not exist)"}},
		{name: "loop unbound", dev: Dev{7, 1}, kind: Loop, problems: []string{"loop1 is a loop device without a backing file"}},
		{name: "tmpfs: memory, no disk", dev: Dev{0, 22}, fsType: "tmpfs", err: ErrAnonymous},
		{name: "overlay: anonymous", dev: Dev{0, 50}, fsType: "overlay", err: ErrAnonymous,
			problems: []string{"device 0:50 is an anonymous device"}},
		{name: "not in sysfs", dev: Dev{8, 99}, fsType: "ext4", err: ErrNotInSysfs,
			problems: []string{"no block device 8:99 in "}},
	}
	for layout, sysRoot := range layouts(t) {
		for _, tt := range tests {
			t.Run(layout+"/"+tt.name, func(t *testing.T) {
				res := Walker{SysRoot: sysRoot, Backing: tt.backing}.Resolve(tt.dev, tt.fsType)
				if res.Dev != tt.dev || res.FSType != tt.fsType {
					t.Errorf("resolution of %s %s, want %s %s", res.Dev, res.FSType, tt.dev, tt.fsType)
				}
				if tt.err != nil {
					if res.Node != nil || !errors.Is(res.Err, tt.err) {
						t.Fatalf("node %+v, err %v; want no node and %v", res.Node, res.Err, tt.err)
					}
				} else if res.Node == nil || res.Node.Kind != tt.kind {
					t.Fatalf("node %+v (err %v); want kind %d", res.Node, res.Err, tt.kind)
				}
				disks, problems := res.Disks()
				checkDisks(t, disks, problems, tt.disks, tt.problems)
			})
		}
	}
}

// checkDisks compares disks exactly and problems by substring, in order.
func checkDisks(tb testing.TB, disks, problems, wantDisks, wantProblems []string) {
	tb.Helper()
	if !slices.Equal(disks, wantDisks) {
		tb.Errorf("disks = %q, want %q (problems %q)", disks, wantDisks, problems)
	}
	if len(problems) != len(wantProblems) {
		tb.Fatalf("problems = %q, want %d holding %q", problems, len(wantProblems), wantProblems)
	}
	for i, want := range wantProblems {
		if !strings.Contains(problems[i], want) {
			tb.Errorf("problem %d = %q, want it to hold %q", i, problems[i], want)
		}
	}
}

func TestWalkerTree(t *testing.T) {
	res := Walker{SysRoot: fakeSys}.Resolve(Dev{253, 4}, "ext4")
	n := res.Node
	if n == nil || n.Name != "dm-4" || n.Kind != Stacked || len(n.Slaves) != 1 || n.Slaves[0].Name != "dm-0" {
		t.Fatalf("dm-4 resolved to %+v", n)
	}
	dm0 := n.Slaves[0].Node
	if dm0.Kind != Stacked || len(dm0.Slaves) != 2 || dm0.Slaves[0].Name != "nvme0n1" || dm0.Slaves[1].Name != "sda2" {
		t.Fatalf("dm-0 resolved to %+v", dm0)
	}
	sda2 := dm0.Slaves[1].Node
	if sda2.Kind != Partition || sda2.Parent == nil || sda2.Parent.Name != "sda" || sda2.Parent.Kind != Disk {
		t.Fatalf("sda2 resolved to %+v", sda2)
	}
	if rot, err := ReadAttr(filepath.Join(sda2.Parent.Path, "queue", "rotational")); err != nil || rot != "1" {
		t.Errorf("sda's node %s: rotational %q, %v; want the node's folder", sda2.Parent.Path, rot, err)
	}
}

func TestResolveMissingSysfs(t *testing.T) {
	res := Walker{SysRoot: filepath.Join(t.TempDir(), "no-sys")}.Resolve(Dev{8, 0}, "ext4")
	if res.Node != nil || !errors.Is(res.Err, ErrNotInSysfs) || !strings.Contains(res.Err.Error(), "no block device 8:0") {
		t.Fatalf("resolution over no sysfs: %+v", res)
	}
}

// TestResolveDeepStack builds a chain of device-mapper devices deeper than
// MaxDepth: the walk stops instead of following it all.
func TestResolveDeepStack(t *testing.T) {
	root := t.TempDir()
	const n = MaxDepth + 4
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
	disks, problems := Walker{SysRoot: root}.Resolve(Dev{253, 0}, "ext4").Disks()
	checkDisks(t, disks, problems, nil, []string{fmt.Sprintf("stopped at dm-%d: stacked deeper than %d levels", MaxDepth+1, MaxDepth)})
}

func TestPhysicalDisks(t *testing.T) {
	got, err := PhysicalDisks(fakeSys)
	want := []string{"nvme0n1", "sda", "sdb", "sdc", "sdd", "sde", "vda", "vdb"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("PhysicalDisks = %q, %v; want %q (no partitions, nothing under devices/virtual)", got, err, want)
	}
	if got, err := PhysicalDisks(filepath.Join(t.TempDir(), "no-sys")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("PhysicalDisks over no sysfs = %q, %v; want a not-exist error", got, err)
	}
}

// TestPhysicalDisksReal lists this machine's disks: none of them virtual.
func TestPhysicalDisksReal(t *testing.T) {
	got, err := PhysicalDisks(DefaultSysRoot)
	if err != nil {
		t.Skipf("no sysfs here: %v", err)
	}
	for _, d := range got {
		for _, virtual := range []string{"loop", "zram", "ram", "dm-", "md"} {
			if strings.HasPrefix(d, virtual) {
				t.Errorf("physical disks %q hold the virtual %s", got, d)
			}
		}
	}
	t.Logf("physical disks: %q", got)
}
