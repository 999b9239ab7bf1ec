package blockdev

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseMountinfoLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Mount
		err  bool
	}{
		{name: "root ext4",
			line: "26 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard",
			want: Mount{Dev: Dev{254, 0}, Root: "/", MountPoint: "/", FSType: "ext4", Source: "/dev/vda"}},
		{name: "optional fields",
			line: "36 35 98:0 /mnt1 /mnt2 rw,noatime shared:1 master:1 - ext3 /dev/root rw,errors=continue",
			want: Mount{Dev: Dev{98, 0}, Root: "/mnt1", MountPoint: "/mnt2", FSType: "ext3", Source: "/dev/root"}},
		{name: "tmpfs anonymous",
			line: "24 23 0:22 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683620k",
			want: Mount{Dev: Dev{0, 22}, Root: "/", MountPoint: "/dev/shm", FSType: "tmpfs", Source: "tmpfs"}},
		{name: "escaped space tab newline backslash",
			line: `40 26 8:1 /a\040b /mnt/my\040disk\011x\012y\134z rw - xfs /dev/sd\040a1 rw`,
			want: Mount{Dev: Dev{8, 1}, Root: "/a b", MountPoint: "/mnt/my disk\tx\ny\\z", FSType: "xfs", Source: "/dev/sd a1"}},
		{name: "backslash not an escape",
			line: `40 26 8:1 / /mnt/a\b\12\999 rw - xfs /dev/sda1 rw`,
			want: Mount{Dev: Dev{8, 1}, Root: "/", MountPoint: `/mnt/a\b\12\999`, FSType: "xfs", Source: "/dev/sda1"}},
		{name: "octal above a byte kept",
			line: `40 26 8:1 / /mnt/\400 rw - xfs /dev/sda1 rw`,
			want: Mount{Dev: Dev{8, 1}, Root: "/", MountPoint: `/mnt/\400`, FSType: "xfs", Source: "/dev/sda1"}},
		{name: "no super options", // tolerated: the fields used are there
			line: "26 1 8:2 / / rw - btrfs /dev/sda2",
			want: Mount{Dev: Dev{8, 2}, Root: "/", MountPoint: "/", FSType: "btrfs", Source: "/dev/sda2"}},
		{name: "too few fields", line: "26 1 8:2 / / rw - ext4", err: true},
		{name: "no separator", line: "26 1 8:2 / / rw shared:1 ext4 /dev/sda2 rw", err: true},
		{name: "separator without source", line: "26 1 8:2 / / rw a b c - ext4", err: true},
		{name: "device not major:minor", line: "26 1 802 / / rw - ext4 /dev/sda2 rw", err: true},
		{name: "device not numbers", line: "26 1 8:x / / rw - ext4 /dev/sda2 rw", err: true},
		{name: "major too large", line: "26 1 4294967296:0 / / rw - ext4 /dev/sda2 rw", err: true},
		{name: "double space", line: "26 1 8:2  / / rw - ext4 /dev/sda2 rw", err: true},
		{name: "empty", line: "", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfoLine(tt.line)
			if tt.err {
				if !errors.Is(err, ErrMountinfoLine) {
					t.Fatalf("parseMountinfoLine(%q) = %+v, %v; want ErrMountinfoLine", tt.line, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseMountinfoLine(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
			}
		})
	}
}

func TestParseMountinfo(t *testing.T) {
	in := "21 26 0:20 / /proc rw,relatime - proc proc rw\n" +
		"\n" +
		"26 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
	ms, err := ParseMountinfo(strings.NewReader(in))
	if err != nil || len(ms) != 2 || ms[1].MountPoint != "/" || ms[1].Dev.Major != 254 {
		t.Fatalf("parseMountinfo = %+v, %v; want 2 mounts, the second / on 254:0", ms, err)
	}
	_, err = ParseMountinfo(strings.NewReader(in + "27 26 bad\n"))
	if !errors.Is(err, ErrMountinfoLine) || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("malformed line 4: error %v; want ErrMountinfoLine naming line 4", err)
	}
	long := "1 2 8:0 / /" + strings.Repeat("x", maxMountinfoLine) + " rw - ext4 /dev/sda rw\n"
	if _, err := ParseMountinfo(strings.NewReader(long)); err == nil {
		t.Fatal("a line longer than maxMountinfoLine was accepted")
	}
}

func TestReadMountinfoReal(t *testing.T) {
	ms, err := ReadMountinfo(DefaultMountinfo)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.MountPoint == "/" {
			return
		}
	}
	t.Fatalf("no mount of / among %d mounts", len(ms))
}

func TestFindMount(t *testing.T) {
	ms := []Mount{
		{Dev: Dev{254, 0}, MountPoint: "/", FSType: "ext4"},
		{Dev: Dev{0, 22}, MountPoint: "/dev/shm", FSType: "tmpfs"},
		{Dev: Dev{8, 1}, MountPoint: "/data", FSType: "xfs"},
		{Dev: Dev{8, 1}, Root: "/sub", MountPoint: "/srv/bind", FSType: "xfs"},
		{Dev: Dev{0, 40}, MountPoint: "/btr", FSType: "btrfs", Source: "/dev/sdb1"},
		{Dev: Dev{0, 41}, MountPoint: "/btr/snap", FSType: "btrfs", Source: "/dev/sdb1"},
	}
	tests := []struct {
		name string
		dev  Dev
		path string
		want string // the mount point found; "" for none
	}{
		{name: "root", dev: Dev{254, 0}, path: "/tmp/x", want: "/"},
		{name: "device first mount", dev: Dev{8, 1}, path: "/data/a", want: "/data"},
		{name: "bind mount of same device", dev: Dev{8, 1}, path: "/srv/bind/a", want: "/srv/bind"},
		{name: "device not under any of its mounts", dev: Dev{8, 1}, path: "/elsewhere", want: "/data"},
		{name: "prefix is not a folder boundary", dev: Dev{0, 99}, path: "/btrfs", want: "/"},
		{name: "subvolume: other device, longest prefix", dev: Dev{0, 77}, path: "/btr/snap/x", want: "/btr/snap"},
		{name: "tmpfs", dev: Dev{0, 22}, path: "/dev/shm", want: "/dev/shm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok := FindMount(ms, tt.dev, tt.path)
			if got := map[bool]string{true: m.MountPoint}[ok]; got != tt.want {
				t.Fatalf("FindMount(%s, %s) = %q; want %q", tt.dev, tt.path, got, tt.want)
			}
		})
	}
	if _, ok := FindMount(nil, Dev{8, 0}, "/x"); ok {
		t.Fatal("FindMount on no mounts found one")
	}
}

// escapeOctal is the kernel's escaping of mountinfo paths (mangle()).
func escapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzParseMountinfoLine: no input panics, and whatever parses comes back
// the same when written the way the kernel writes it and parsed again.
func FuzzParseMountinfoLine(f *testing.F) {
	f.Add("26 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard")
	f.Add(`40 26 8:1 /a\040b /mnt/my\040disk rw shared:1 - xfs /dev/sda1 rw`)
	f.Fuzz(func(t *testing.T, line string) {
		m, err := parseMountinfoLine(line)
		if err != nil {
			return
		}
		again := fmt.Sprintf("1 2 %s %s %s rw - %s %s rw", m.Dev,
			escapeOctal(m.Root), escapeOctal(m.MountPoint), escapeOctal(m.FSType), escapeOctal(m.Source))
		m2, err := parseMountinfoLine(again)
		if err != nil || m2 != m {
			t.Fatalf("%q parsed to %+v; written again as %q it parses to %+v, %v", line, m, again, m2, err)
		}
	})
}
