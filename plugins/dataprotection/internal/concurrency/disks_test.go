package concurrency

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeSys builds a sysfs tree under a temporary folder: sda with
// partitions sda1 and sda2, sdb, nvme0n1, dm-0 over sda2 and sdb, dm-1
// over dm-0, and loop9 whose slaves lead back to itself. extra adds
// dev/block links (MAJ:MIN to a path under devices/).
func fakeSys(t testing.TB, extra map[string]string) string {
	t.Helper()
	root := t.TempDir()
	mkdir := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	touch := func(p string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, p), []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, at string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(root, at)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{
		"devices/pci/block/sda/sda1", "devices/pci/block/sda/sda2", "devices/pci/block/sdb",
		"devices/pci/nvme/block/nvme0n1", "devices/virtual/block/dm-0/slaves",
		"devices/virtual/block/dm-1/slaves", "devices/virtual/block/loop9/slaves", "dev/block",
	} {
		mkdir(d)
	}
	touch("devices/pci/block/sda/sda1/partition")
	touch("devices/pci/block/sda/sda2/partition")
	link("../../../../pci/block/sda/sda2", "devices/virtual/block/dm-0/slaves/sda2")
	link("../../../../pci/block/sdb", "devices/virtual/block/dm-0/slaves/sdb")
	link("../../dm-0", "devices/virtual/block/dm-1/slaves/dm-0")
	link("..", "devices/virtual/block/loop9/slaves/loop9")
	links := map[string]string{
		"8:0": "pci/block/sda", "8:1": "pci/block/sda/sda1", "8:2": "pci/block/sda/sda2",
		"8:16": "pci/block/sdb", "259:0": "pci/nvme/block/nvme0n1",
		"253:0": "virtual/block/dm-0", "253:1": "virtual/block/dm-1", "7:9": "virtual/block/loop9",
	}
	for k, v := range extra {
		links[k] = v
	}
	for k, v := range links {
		if !strings.HasPrefix(v, "/") {
			mkdir("devices/" + v)
			v = "../../devices/" + v
		}
		link(v, "dev/block/"+k)
	}
	return root
}

func TestWatchDevices(t *testing.T) {
	sys := fakeSys(t, nil)
	tests := []struct {
		name      string
		devs      []Dev
		wantDisks []string
		wantNotes []string
	}{
		{name: "whole disk", devs: []Dev{{8, 0}}, wantDisks: []string{"sda"}},
		{name: "partition stands for its disk", devs: []Dev{{8, 1}}, wantDisks: []string{"sda"}},
		{name: "two partitions of one disk are one disk", devs: []Dev{{8, 1}, {8, 2}, {8, 1}}, wantDisks: []string{"sda"}},
		{name: "distinct disks sorted", devs: []Dev{{259, 0}, {8, 16}, {8, 1}}, wantDisks: []string{"nvme0n1", "sda", "sdb"}},
		{name: "device-mapper over a partition and a disk", devs: []Dev{{253, 0}}, wantDisks: []string{"sda", "sdb"}},
		{name: "dm over dm", devs: []Dev{{253, 1}, {8, 0}}, wantDisks: []string{"sda", "sdb"}},
		{name: "anonymous device", devs: []Dev{{0, 45}}, wantNotes: []string{"device 0:45 is anonymous"}},
		{name: "not in sysfs", devs: []Dev{{8, 32}, {8, 0}}, wantDisks: []string{"sda"}, wantNotes: []string{"device 8:32 is not in"}},
		{name: "slaves cycle is bounded", devs: []Dev{{7, 9}}, wantNotes: []string{"stopped at loop9"}},
		{name: "nothing", devs: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := WatchDevices(sys, tt.devs)
			if !slices.Equal(w.Disks, tt.wantDisks) {
				t.Errorf("disks = %q, want %q (notes %q)", w.Disks, tt.wantDisks, w.Notes)
			}
			if len(w.Notes) != len(tt.wantNotes) {
				t.Fatalf("notes = %q, want %d containing %q", w.Notes, len(tt.wantNotes), tt.wantNotes)
			}
			for i, want := range tt.wantNotes {
				if !strings.Contains(w.Notes[i], want) {
					t.Errorf("note %d = %q, want it to contain %q", i, w.Notes[i], want)
				}
			}
		})
	}
}

// TestWatchFolders resolves real folders: the test's temporary folder, on
// whatever device it is, over a fake sysfs tree that names that device.
func TestWatchFolders(t *testing.T) {
	dir := t.TempDir()
	d, err := DeviceOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.Major == 0 {
		t.Skipf("%s is on an anonymous device (%s): no disk to find", dir, d)
	}
	sys := fakeSys(t, map[string]string{d.String(): "virtual/block/testdisk"})
	missing := filepath.Join(dir, "missing")
	w := WatchFolders(sys, []string{dir, dir, missing})
	if !slices.Equal(w.Disks, []string{"testdisk"}) {
		t.Errorf("disks = %q, want [testdisk]", w.Disks)
	}
	if len(w.Notes) != 1 || !strings.Contains(w.Notes[0], missing) {
		t.Errorf("notes = %q, want one naming %s", w.Notes, missing)
	}
}
