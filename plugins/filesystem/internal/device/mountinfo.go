package device

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// mount is one line of /proc/self/mountinfo (proc(5)), the fields we use.
type mount struct {
	major, minor uint32
	root         string // the folder of the file system mounted here
	mountPoint   string
	fsType       string
	source       string
}

// maxMountinfoLine bounds one mountinfo line (overlay lowerdir lists make
// long ones); a longer line fails the read rather than growing the buffer.
const maxMountinfoLine = 1 << 20

func readMountinfo(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	ms, err := parseMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("read mounts from %s: %w", path, err)
	}
	return ms, nil
}

// parseMountinfo parses mountinfo lines; any malformed line is an error.
func parseMountinfo(r io.Reader) ([]mount, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxMountinfoLine)
	var ms []mount
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

var errMountinfoLine = errors.New("malformed mountinfo line")

// parseMountinfoLine parses one line:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	(1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//
// Fields are separated by single spaces; (7) is zero or more optional fields
// ended by "-". A line ending at the source, without (11), is accepted: the
// fields used are all there. The kernel escapes space, tab, newline and backslash in
// paths as octal (\040, \011, \012, \134); they are unescaped here.
func parseMountinfoLine(line string) (mount, error) {
	f := strings.Split(line, " ")
	for _, s := range f {
		if s == "" {
			return mount{}, fmt.Errorf("%w: empty field in %q", errMountinfoLine, line)
		}
	}
	if len(f) < 9 {
		return mount{}, fmt.Errorf("%w: %d fields, want at least 9", errMountinfoLine, len(f))
	}
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+3 {
		return mount{}, fmt.Errorf("%w: no \"-\" followed by type and source", errMountinfoLine)
	}
	majS, minS, ok := strings.Cut(f[2], ":")
	if !ok {
		return mount{}, fmt.Errorf("%w: device %q is not major:minor", errMountinfoLine, f[2])
	}
	maj, err1 := strconv.ParseUint(majS, 10, 32)
	min, err2 := strconv.ParseUint(minS, 10, 32)
	if err1 != nil || err2 != nil {
		return mount{}, fmt.Errorf("%w: device %q is not major:minor", errMountinfoLine, f[2])
	}
	return mount{
		major:      uint32(maj),
		minor:      uint32(min),
		root:       unescapeOctal(f[3]),
		mountPoint: unescapeOctal(f[4]),
		fsType:     unescapeOctal(f[sep+1]),
		source:     unescapeOctal(f[sep+2]),
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

// findMount picks the mount holding path (absolute, symlinks resolved) on
// device major:minor: among the mounts of that device, the one whose mount
// point is the longest prefix of path (bind mounts share a device); if no
// mount has that device (a btrfs subvolume has its own anonymous device),
// the longest prefix of any device.
func findMount(ms []mount, major, minor uint32, path string) (mount, bool) {
	best, bestLen := -1, -1
	sameDev := false
	for i, m := range ms {
		dev := m.major == major && m.minor == minor
		if sameDev && !dev {
			continue
		}
		l := -1
		if under(path, m.mountPoint) {
			l = len(m.mountPoint)
		}
		if dev && !sameDev {
			// The first mount of the device beats any other device's.
			sameDev, best, bestLen = true, i, l
			continue
		}
		if l > bestLen {
			best, bestLen = i, l
		}
	}
	if best < 0 || (!sameDev && bestLen < 0) {
		return mount{}, false
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
