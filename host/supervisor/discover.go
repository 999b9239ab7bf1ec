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
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
	// pending marks a file that is not ready yet — still being written or
	// open for writing — rather than wrong: a later scan picks it up, so
	// it deserves a debug line, not a warning.
	pending bool
}

// DefaultSettle is how long a plugin binary must have stayed unchanged
// before it is loaded: discovery does not load a file whose content
// changed more recently without first seeing it unchanged for that long
// (see scanRules.discover), and it is the default of
// DirWatchOptions.Settle.
const DefaultSettle = 250 * time.Millisecond

// scanRules are discovery's settle window and clock; tests replace them.
type scanRules struct {
	settle time.Duration
	now    func() time.Time
	sleep  func(time.Duration)
}

var defaultScanRules = scanRules{settle: DefaultSettle, now: time.Now, sleep: time.Sleep}

// discover lists the plugin binaries in dir with the default rules (see
// scanRules.discover).
func discover(dir string, prev map[string]*binary) (map[string]*binary, []skipped, error) {
	return defaultScanRules.discover(dir, prev)
}

// pluginFileName tells what a file name of plugins.dir is. For
// dw-plugin-<name> with a valid name it returns name and ok. For other
// names starting with dw-plugin- (dw-plugin-Bad, dw-plugin-x.tmp) it
// returns why they are not plugin binaries in invalid; for names without
// the prefix (hidden temporaries such as .dw-plugin-x.tmp included) both
// are empty: they are none of dw's business.
func pluginFileName(base string) (name string, ok bool, invalid string) {
	if !strings.HasPrefix(base, BinaryPrefix) {
		return "", false, ""
	}
	name = strings.TrimPrefix(base, BinaryPrefix)
	if ValidName(name) != nil {
		return "", false, fmt.Sprintf("%q is not a valid plugin name (want dw-plugin-<name>, name: a lowercase letter followed by up to 62 of a-z, 0-9, '_' and '-')", name)
	}
	return name, true, ""
}

// inspect stats a candidate binary, following symlinks, and says why it
// cannot be loaded (a warning), or "" if it may be.
func inspect(path string) (os.FileInfo, string) {
	fi, err := os.Stat(path) // follows symlinks: a link to an executable is fine
	if err != nil {
		return nil, fmt.Sprintf("cannot stat it: %v", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Sprintf("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o111 == 0 || unix.Access(path, unix.X_OK) != nil {
		return nil, fmt.Sprintf("not executable (mode %s): chmod +x it to load it", fi.Mode().Perm())
	}
	return fi, ""
}

// changedAt is the last time the file's content changed: its mtime. The
// ctime is not used: a hard link, a rename into place or a chmod changes
// it without touching the content, and tools that give a file an old
// mtime (cp -p, rsync, tar) do so only after writing all of it.
func (id fileID) changedAt() time.Time {
	return time.Unix(0, id.mtimeNs)
}

// discover lists the plugin binaries in dir. prev, the result of an
// earlier scan (nil for the first), lets it keep the hash of files whose
// identity (device, inode, size, mtime, ctime) has not changed. Files whose
// names do not start with dw-plugin- are ignored; others that cannot be
// loaded are returned in skips. A dir that does not exist gives an error
// wrapping fs.ErrNotExist along with an empty result: it holds no plugins.
//
// A binary still being written is never returned:
//
//   - One whose content changed (mtime) less than r.settle ago, and is not
//     the very file prev already knows, is waited for: discover sleeps
//     once, until the youngest such file is r.settle old (at most
//     r.settle), and stats them again. Those that changed meanwhile are
//     still being written. A time stamp in the future (clock skew) counts
//     as "just now", so such a file is observed unchanged for a whole
//     r.settle.
//   - One that some process has open for writing is still being written
//     (Linux: a read lease cannot be taken on it; see openForWriting).
//     exec would fail on it with ETXTBSY anyway.
//   - An empty one is skipped with a warning (a copy that has not begun).
//
// A file still being written is returned in skips marked pending; if prev
// knew a binary of that name, prev's entry is kept in the result, so the
// running plugin is neither stopped nor restarted until the new file has
// settled. Otherwise it is left out, and a later scan (the plugins.dir
// watcher's, after the file settled) loads it.
func (r scanRules) discover(dir string, prev map[string]*binary) (map[string]*binary, []skipped, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*binary{}, nil, fmt.Errorf("plugins.dir %s: %w", dir, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read plugins.dir %s: %w", dir, err)
	}
	type candidate struct {
		name, path string
		id         fileID
		young      bool
	}
	found := map[string]*binary{}
	var skips []skipped
	pending := func(c candidate, reason string) {
		if old := prev[c.name]; old != nil && old.path == c.path {
			found[c.name] = old
			reason += "; the plugin keeps its current binary until then"
		}
		skips = append(skips, skipped{path: c.path, reason: reason, pending: true})
	}
	var cands []candidate
	now := r.now()
	var wait time.Duration
	for _, e := range entries {
		name, ok, invalid := pluginFileName(e.Name())
		path := filepath.Join(dir, e.Name())
		if !ok {
			if invalid != "" {
				skips = append(skips, skipped{path: path, reason: invalid})
			}
			continue
		}
		fi, reason := inspect(path)
		if reason != "" {
			skips = append(skips, skipped{path: path, reason: reason})
			continue
		}
		c := candidate{name: name, path: path, id: idOf(fi)}
		if old := prev[name]; old == nil || old.path != path || old.id != c.id || old.sha256 == "" {
			if age := max(now.Sub(c.id.changedAt()), 0); age < r.settle {
				c.young = true
				wait = max(wait, r.settle-age)
			}
		}
		cands = append(cands, c)
	}
	if wait > 0 {
		r.sleep(wait)
	}
	var toHash []candidate
	for _, c := range cands {
		if c.young {
			fi, reason := inspect(c.path)
			if reason != "" || idOf(fi) != c.id {
				pending(c, fmt.Sprintf("still being written (it changed within the last %s): it is loaded once it has stayed unchanged for %s", r.settle, r.settle))
				continue
			}
		}
		if c.id.size == 0 {
			skips = append(skips, skipped{path: c.path, reason: "empty file: not a plugin binary (yet)"})
			continue
		}
		if old := prev[c.name]; old != nil && old.path == c.path && old.id == c.id && old.sha256 != "" {
			found[c.name] = old
			continue
		}
		toHash = append(toHash, c)
	}
	// Hashing is most of a scan (a plugin binary is 20–35 MB: about 20 ms
	// each here), and the host's start waits for it: the files are hashed
	// in parallel, as many at once as there are CPUs, and the results taken
	// in order.
	type hashed struct {
		sum string
		id  fileID
		err error
	}
	results := make([]hashed, len(toHash))
	var wg sync.WaitGroup
	slots := make(chan struct{}, max(runtime.GOMAXPROCS(0), 1))
	for i, c := range toHash {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			sum, id, err := hashBinary(c.path)
			results[i] = hashed{sum, id, err}
		}()
	}
	wg.Wait()
	for i, c := range toHash {
		switch res := results[i]; {
		case errors.Is(res.err, errOpenForWriting):
			pending(c, "open for writing by another process (still being copied?): it is loaded once it is closed and unchanged")
		case res.err != nil:
			skips = append(skips, skipped{path: c.path, reason: fmt.Sprintf("cannot read it: %v", res.err)})
		default:
			found[c.name] = &binary{path: c.path, sha256: res.sum, id: res.id}
		}
	}
	sort.Slice(skips, func(i, j int) bool { return skips[i].path < skips[j].path })
	return found, skips, nil
}

// errOpenForWriting says a file is open for writing by some process.
var errOpenForWriting = errors.New("open for writing")

// hashBinary is hashFile for a plugin binary: it fails with
// errOpenForWriting, before reading, if some process has the file open
// for writing.
func hashBinary(path string) (string, fileID, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fileID{}, err
	}
	defer f.Close()
	if openForWriting(f) {
		return "", fileID{}, errOpenForWriting
	}
	return hashOpen(f)
}

// writersCheck turns openForWriting on; tests turn it off to exercise the
// paths of file systems without leases.
var writersCheck atomic.Bool

func init() { writersCheck.Store(true) }

// openForWriting reports whether some process (this one included) has f's
// file open for writing. Linux grants a read lease (F_SETLEASE F_RDLCK)
// only on a file nobody has open for writing, and answers EAGAIN
// otherwise; the lease is released at once. Where the answer is unknown —
// a file system without leases (NFS, some FUSE), a file of another user
// without CAP_LEASE, leases disabled — it reports false, and the settle
// rule, ETXTBSY on exec and the watcher's retries are what is left. While
// the lease is held (microseconds) a writer's open blocks and the kernel
// sends this process SIGIO, which the Go runtime ignores unless asked.
func openForWriting(f *os.File) bool {
	if !writersCheck.Load() {
		return false
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return false
	}
	busy := false
	_ = raw.Control(func(fd uintptr) {
		_, err := unix.FcntlInt(fd, unix.F_SETLEASE, unix.F_RDLCK)
		if err == nil {
			_, _ = unix.FcntlInt(fd, unix.F_SETLEASE, unix.F_UNLCK)
			return
		}
		busy = errors.Is(err, unix.EAGAIN)
	})
	return busy
}

// pathOpenForWriting is openForWriting for a path; false if it cannot be
// opened.
func pathOpenForWriting(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return openForWriting(f)
}

// hashFile streams path through SHA-256 and returns the lowercase hex sum
// and the identity of the file it read.
func hashFile(path string) (string, fileID, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fileID{}, err
	}
	defer f.Close()
	return hashOpen(f)
}

func hashOpen(f *os.File) (string, fileID, error) {
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
