package blockdev

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Mount is one line of /proc/self/mountinfo (proc(5)), the fields used
// here, unescaped.
type Mount struct {
	// Dev is the device number of the mounted file system, as stat(2)
	// reports it for its files (major 0 for anonymous devices: btrfs,
	// overlay, tmpfs, network file systems).
	Dev Dev
	// Root is the folder of the file system mounted here ("/" unless a
	// bind mount or a btrfs subvolume).
	Root       string
	MountPoint string
	FSType     string
	// Source is what was mounted: "/dev/sda2", "tmpfs", "server:/export".
	Source string
}

// maxMountinfoLine bounds one mountinfo line (overlay lowerdir lists make
// long ones); a longer line fails the read rather than growing the buffer.
const maxMountinfoLine = 1 << 20

// ReadMountinfo reads and parses the mountinfo file at path
// (DefaultMountinfo on the real system).
func ReadMountinfo(path string) ([]Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	ms, err := ParseMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("read mounts from %s: %w", path, err)
	}
	return ms, nil
}

// ParseMountinfo parses mountinfo lines; any malformed line is an error
// naming the line and matching ErrMountinfoLine (a line longer than 1 MiB
// is an error too).
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxMountinfoLine)
	var ms []Mount
	for n := 1; sc.Scan(); n++ {
		if sc.Text() == "" {
			continue
		}
		m, err := parseMountinfoLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		ms = append(ms, m)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return ms, nil
}

// ErrMountinfoLine is matched by the error of a malformed mountinfo line.
var ErrMountinfoLine = errors.New("malformed mountinfo line")

// parseMountinfoLine parses one line:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	(1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//
// Fields are separated by single spaces; (7) is zero or more optional fields
// ended by "-". A line ending at the source, without (11), is accepted: the
// fields used are all there. The kernel escapes space, tab, newline and backslash in
// paths as octal (\040, \011, \012, \134); they are unescaped here.
func parseMountinfoLine(line string) (Mount, error) {
	f := strings.Split(line, " ")
	for _, s := range f {
		if s == "" {
			return Mount{}, fmt.Errorf("%w: empty field in %q", ErrMountinfoLine, line)
		}
	}
	if len(f) < 9 {
		return Mount{}, fmt.Errorf("%w: %d fields, want at least 9", ErrMountinfoLine, len(f))
	}
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+3 {
		return Mount{}, fmt.Errorf("%w: no \"-\" followed by type and source", ErrMountinfoLine)
	}
	dev, err := ParseDev(f[2])
	if err != nil {
		return Mount{}, fmt.Errorf("%w: device %q is not major:minor", ErrMountinfoLine, f[2])
	}
	return Mount{
		Dev:        dev,
		Root:       unescapeOctal(f[3]),
		MountPoint: unescapeOctal(f[4]),
		FSType:     unescapeOctal(f[sep+1]),
		Source:     unescapeOctal(f[sep+2]),
	}, nil
}

// unescapeOctal replaces each backslash followed by three octal digits (at
// most \377) with that byte; any other backslash is kept as it is.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) && s[i+1] <= '3' {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// FindMount picks the mount holding path (absolute, symlinks resolved) on
// device dev: among the mounts of that device, the one whose mount point
// is the longest prefix of path (bind mounts share a device); if no mount
// has that device (a btrfs subvolume has its own anonymous device), the
// longest prefix of any device. ok is false when no mount holds path.
func FindMount(ms []Mount, dev Dev, path string) (m Mount, ok bool) {
	best, bestLen := -1, -1
	sameDev := false
	for i, m := range ms {
		same := m.Dev == dev
		if sameDev && !same {
			continue
		}
		l := -1
		if under(path, m.MountPoint) {
			l = len(m.MountPoint)
		}
		if same && !sameDev {
			// The first mount of the device beats any other device's.
			sameDev, best, bestLen = true, i, l
			continue
		}
		if l > bestLen {
			best, bestLen = i, l
		}
	}
	if best < 0 || (!sameDev && bestLen < 0) {
		return Mount{}, false
	}
	return ms[best], true
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}
