package supervisor

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// BinaryPrefix starts the name of every plugin binary: dw-plugin-<name>.
const BinaryPrefix = "dw-plugin-"

// nameRE is the rule for plugin (subsystem) names.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// ValidName checks a plugin name: a lowercase letter, then up to 62 of a-z,
// 0-9, '_' and '-'.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid plugin name %q: want a lowercase letter followed by up to 62 of a-z, 0-9, '_' and '-'", name)
	}
	return nil
}

// fileID tells whether a file changed without reading it.
type fileID struct {
	dev, ino uint64
	size     int64
	mtimeNs  int64
	ctimeNs  int64
}

func idOf(fi os.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtimeNs: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
		id.ctimeNs = st.Ctim.Nano()
	}
	return id
}

// binary is a plugin executable found in plugins.dir.
type binary struct {
	path   string
	sha256 string
	id     fileID
}

// skipped is a file of plugins.dir that is not loaded, and why.
type skipped struct {
	path, reason string
}

// discover lists the plugin binaries in dir. prev, the result of an earlier
// scan, lets it keep the hash of files whose identity (device, inode, size,
// mtime, ctime) has not changed. Files whose names do not start with
// dw-plugin- are ignored; others that cannot be loaded are returned in skips.
// A dir that does not exist gives an error wrapping fs.ErrNotExist along
// with an empty result: it holds no plugins.
func discover(dir string, prev map[string]*binary) (map[string]*binary, []skipped, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*binary{}, nil, fmt.Errorf("plugins.dir %s: %w", dir, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read plugins.dir %s: %w", dir, err)
	}
	found := map[string]*binary{}
	var skips []skipped
	for _, e := range entries {
		base := e.Name()
		if !strings.HasPrefix(base, BinaryPrefix) {
			continue
		}
		path := filepath.Join(dir, base)
		name := strings.TrimPrefix(base, BinaryPrefix)
		if err := ValidName(name); err != nil {
			skips = append(skips, skipped{path, fmt.Sprintf("%q is not a valid plugin name (want dw-plugin-<name>, name: a lowercase letter followed by up to 62 of a-z, 0-9, '_' and '-')", name)})
			continue
		}
		fi, err := os.Stat(path) // follows symlinks: a link to an executable is fine
		if err != nil {
			skips = append(skips, skipped{path, fmt.Sprintf("cannot stat it: %v", err)})
			continue
		}
		if !fi.Mode().IsRegular() {
			skips = append(skips, skipped{path, fmt.Sprintf("not a regular file (%s)", fi.Mode().Type())})
			continue
		}
		if fi.Mode().Perm()&0o111 == 0 || unix.Access(path, unix.X_OK) != nil {
			skips = append(skips, skipped{path, fmt.Sprintf("not executable (mode %s): chmod +x it to load it", fi.Mode().Perm())})
			continue
		}
		id := idOf(fi)
		if old := prev[name]; old != nil && old.path == path && old.id == id && old.sha256 != "" {
			found[name] = old
			continue
		}
		sum, id2, err := hashFile(path)
		if err != nil {
			skips = append(skips, skipped{path, fmt.Sprintf("cannot read it: %v", err)})
			continue
		}
		found[name] = &binary{path: path, sha256: sum, id: id2}
	}
	sort.Slice(skips, func(i, j int) bool { return skips[i].path < skips[j].path })
	return found, skips, nil
}

// hashFile streams path through SHA-256 and returns the lowercase hex sum
// and the identity of the file it read.
func hashFile(path string) (string, fileID, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fileID{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fileID{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fileID{}, err
	}
	return hex.EncodeToString(h.Sum(nil)), idOf(fi), nil
}

// privateCopy copies src into a new folder under dir, as a file named like
// src that only this user can write, hashing the bytes as they are written.
// It returns the copy's path and sha256; remove the copy's folder with
// os.RemoveAll(filepath.Dir(path)).
func privateCopy(dir, src string) (string, string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", "", err
	}
	defer in.Close()
	sub, err := os.MkdirTemp(dir, "exec-")
	if err != nil {
		return "", "", err
	}
	dst := filepath.Join(sub, filepath.Base(src))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o700)
	if err != nil {
		_ = os.RemoveAll(sub)
		return "", "", err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.RemoveAll(sub)
		return "", "", fmt.Errorf("copy %s: %w", src, err)
	}
	return dst, hex.EncodeToString(h.Sum(nil)), nil
}
