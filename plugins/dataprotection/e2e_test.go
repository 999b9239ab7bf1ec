package main_test

// End-to-end tests: the real dw host (`dw serve`) with the real
// dw-plugin-dataprotection process, over HTTP and through `dw backup`, on
// real folders. Every comparison of a restore with its source goes through
// manifest: a walk that records each entry's type, permission bits,
// size, SHA-256, mtime (ns) and symlink target.

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/datawarehouse/dw/host/api"
	"github.com/datawarehouse/dw/internal/hosttest"
)

func TestMain(m *testing.M) { hosttest.Main(m) }

// jobWait bounds every wait for a job: generous, for -race on 2 cores.
const jobWait = 3 * time.Minute

// dpConfig is the subsystems part of a config whose only plugin is
// dataprotection, with the given sources (name → folder) and limits (a
// YAML flow map, or "").
func dpConfig(sources map[string]string, limits string) string {
	var b strings.Builder
	b.WriteString("subsystems:\n  dataprotection:\n    enabled: true\n    sources: {")
	for i, name := range slices.Sorted(maps.Keys(sources)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %s", name, strconv.Quote(sources[name]))
	}
	b.WriteString("}\n")
	if limits != "" {
		b.WriteString("    limits: " + limits + "\n")
	}
	return b.String()
}

// startDP starts a host whose only plugin is dataprotection.
func startDP(tb testing.TB, sources map[string]string, limits string) *hosttest.Host {
	tb.Helper()
	dir := tb.TempDir()
	hosttest.Plugin(tb, dir, "dataprotection")
	h := hosttest.Start(tb, dir, dpConfig(sources, limits))
	h.WaitServing(tb, "dataprotection", 60*time.Second)
	return h
}

// call sends a request with an optional body (a string is sent as
// written) and returns the status and the body.
func call(tb testing.TB, h *hosttest.Host, method, path string, body any) (int, []byte) {
	tb.Helper()
	return h.Call(tb, method, path, body)
}

// errorMessage is the message of an error answer.
func errorMessage(body []byte) string {
	var e api.ErrorBody
	if json.Unmarshal(body, &e) != nil {
		return string(body)
	}
	return e.Error.Message
}

// startBackup starts a backup job and returns it.
func startBackup(tb testing.TB, h *hosttest.Host, source, kind string) api.BackupJob {
	tb.Helper()
	code, body := call(tb, h, "POST", "/v1/backups", map[string]string{"source": source, "kind": kind})
	var out api.StartedJob
	if code != http.StatusAccepted || json.Unmarshal(body, &out) != nil || out.JobID == "" {
		tb.Fatalf("start %s backup of %s: %d %s", kind, source, code, body)
	}
	return out.Job
}

// startRestore asks for a restore and returns the status and body.
func startRestore(tb testing.TB, h *hosttest.Host, snapshot, target string) (int, []byte) {
	tb.Helper()
	return call(tb, h, "POST", "/v1/backups/restores", map[string]string{"snapshot": snapshot, "target": target})
}

// getJob returns a job, and false while the plugin cannot answer (it
// restarts).
func getJob(tb testing.TB, h *hosttest.Host, id string) (api.BackupJob, bool) {
	tb.Helper()
	code, body := call(tb, h, "GET", "/v1/backups/jobs/"+id, nil)
	var j api.BackupJob
	if code != 200 || json.Unmarshal(body, &j) != nil {
		return j, false
	}
	return j, true
}

func finished(state string) bool {
	return state == "succeeded" || state == "failed" || state == "cancelled"
}

// waitJob waits for a job to end and returns it.
func waitJob(tb testing.TB, h *hosttest.Host, id string) api.BackupJob {
	tb.Helper()
	var j api.BackupJob
	hosttest.WaitFor(tb, jobWait, "job "+id+" to end", func() bool {
		var ok bool
		j, ok = getJob(tb, h, id)
		return ok && finished(j.State)
	})
	return j
}

// waitSucceeded waits for a job to end and fails unless it succeeded.
func waitSucceeded(tb testing.TB, h *hosttest.Host, id string) api.BackupJob {
	tb.Helper()
	j := waitJob(tb, h, id)
	if j.State != "succeeded" {
		tb.Fatalf("job %s (%s) %s: %s", id, j.Kind, j.State, j.Error)
	}
	return j
}

// chains lists the snapshots by chain.
func chains(tb testing.TB, h *hosttest.Host) []api.Chain {
	tb.Helper()
	var c api.Chains
	if code := h.JSON(tb, "GET", "/v1/backups/snapshots", nil, &c); code != 200 {
		tb.Fatalf("GET /v1/backups/snapshots: %d", code)
	}
	return c.Chains
}

// snapshots lists every snapshot, chain by chain.
func snapshots(tb testing.TB, h *hosttest.Host) []api.Snapshot {
	tb.Helper()
	var out []api.Snapshot
	for _, c := range chains(tb, h) {
		out = append(out, c.Snapshots...)
	}
	return out
}

// snapshot returns the listed snapshot id.
func snapshot(tb testing.TB, h *hosttest.Host, id string) api.Snapshot {
	tb.Helper()
	for _, s := range snapshots(tb, h) {
		if s.ID == id {
			return s
		}
	}
	tb.Fatalf("snapshot %s is not listed", id)
	return api.Snapshot{}
}

// backup runs a backup to success and returns the job and its snapshot.
func backup(tb testing.TB, h *hosttest.Host, source, kind string) (api.BackupJob, api.Snapshot) {
	tb.Helper()
	j := waitSucceeded(tb, h, startBackup(tb, h, source, kind).ID)
	if j.Snapshot == "" {
		tb.Fatalf("backup job %s succeeded without a snapshot", j.ID)
	}
	return j, snapshot(tb, h, j.Snapshot)
}

// restore restores a snapshot into target (under the restore root) to
// success and returns the restored folder.
func restore(tb testing.TB, h *hosttest.Host, snap, target string) string {
	tb.Helper()
	code, body := startRestore(tb, h, snap, target)
	var started api.StartedJob
	if code != http.StatusAccepted || json.Unmarshal(body, &started) != nil {
		tb.Fatalf("restore %s into %s: %d %s", snap, target, code, body)
	}
	waitSucceeded(tb, h, started.JobID)
	return filepath.Join(h.DataDir, "restores", filepath.FromSlash(target))
}

// metrics returns the plugin's metrics by name (labels ignored: the
// first value of a name wins).
func metrics(tb testing.TB, h *hosttest.Host) map[string]float64 {
	tb.Helper()
	return h.Metrics(tb, "dataprotection")
}

// --- trees ---

// entry is what a restore must give back of one file system entry.
type entry struct {
	Type   string      // file, dir or symlink
	Mode   fs.FileMode // permission bits with setuid, setgid and sticky
	Size   int64       // files
	Hash   [32]byte    // files: SHA-256 of the content
	MTime  int64       // unix ns
	Target string      // symlinks
}

func (e entry) String() string {
	s := fmt.Sprintf("%s %v mtime %d", e.Type, e.Mode, e.MTime)
	switch e.Type {
	case "file":
		s += fmt.Sprintf(" %d B sha256 %x", e.Size, e.Hash[:6])
	case "symlink":
		s += " → " + e.Target
	}
	return s
}

// manifest walks root (without following symlinks) and returns every
// entry below it by '/'-separated relative path; root itself is left out
// (a restore creates its target, it does not restore the source folder's
// own metadata).
func manifest(tb testing.TB, root string) map[string]entry {
	tb.Helper()
	m := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		e := entry{Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), MTime: fi.ModTime().UnixNano()}
		switch {
		case fi.Mode().IsRegular():
			e.Type, e.Size = "file", fi.Size()
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			copy(e.Hash[:], h.Sum(nil))
		case fi.IsDir():
			e.Type = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = "symlink"
			if e.Target, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected type %v", p, fi.Mode().Type())
		}
		m[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		tb.Fatalf("manifest of %s: %v", root, err)
	}
	return m
}

// diffManifests lists the differences of got from want, sorted.
func diffManifests(want, got map[string]entry) []string {
	var d []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("%s: missing (want %v)", p, w))
		case g != w:
			d = append(d, fmt.Sprintf("%s: got %v, want %v", p, g, w))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			d = append(d, fmt.Sprintf("%s: unexpected %v", p, g))
		}
	}
	sort.Strings(d)
	return d
}

// assertSameTree fails unless dir holds exactly want.
func assertSameTree(tb testing.TB, want map[string]entry, dir string) {
	tb.Helper()
	if d := diffManifests(want, manifest(tb, dir)); len(d) > 0 {
		tb.Errorf("%s differs from its source in %d entries:\n  %s", dir, len(d), strings.Join(d[:min(len(d), 25)], "\n  "))
	}
}

// counts returns the files, folders, symlinks and file bytes of a manifest.
func counts(m map[string]entry) (files, dirs, symlinks, bytes int64) {
	for _, e := range m {
		switch e.Type {
		case "file":
			files++
			bytes += e.Size
		case "dir":
			dirs++
		case "symlink":
			symlinks++
		}
	}
	return
}

// randomBytes returns n reproducible random bytes.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 'd', 'p'})
	_, _ = r.Read(b)
	return b
}

// writeRandomFile writes size reproducible random bytes to path, 1 MiB at a
// time.
func writeRandomFile(tb testing.TB, path string, size int64, seed uint64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 'r', 'f'})
	if _, err := io.CopyBuffer(f, io.LimitReader(r, size), make([]byte, 1<<20)); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// compressible returns n bytes of log-like text.
func compressible(n int, seed int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "2024-05-%02d 12:%02d:%02d INFO request %d of worker %d served in %d ms\n", i%28+1, i%60, (i*7)%60, i, seed, (i*31)%997)
	}
	return b.Bytes()[:n]
}

// treeWriter builds a source tree. Each entry it touches gets a distinct
// mtime with nanoseconds at finish; folders get theirs last, deepest first,
// since creating their content changes them.
type treeWriter struct {
	tb      testing.TB
	root    string
	gen     int      // distinguishes the mtimes of later edits
	touched []string // files and symlinks whose mtime finish sets
}

func (w *treeWriter) abs(rel string) string { return filepath.Join(w.root, filepath.FromSlash(rel)) }

func (w *treeWriter) dir(rel string, mode fs.FileMode) {
	w.tb.Helper()
	if err := os.MkdirAll(w.abs(rel), 0o755); err != nil {
		w.tb.Fatal(err)
	}
	if err := os.Chmod(w.abs(rel), mode); err != nil {
		w.tb.Fatal(err)
	}
}

func (w *treeWriter) file(rel string, data []byte, mode fs.FileMode) {
	w.tb.Helper()
	if err := os.MkdirAll(filepath.Dir(w.abs(rel)), 0o755); err != nil {
		w.tb.Fatal(err)
	}
	if err := os.WriteFile(w.abs(rel), data, 0o600); err != nil {
		w.tb.Fatal(err)
	}
	if err := os.Chmod(w.abs(rel), mode); err != nil {
		w.tb.Fatal(err)
	}
	w.touched = append(w.touched, rel)
}

func (w *treeWriter) randomFile(rel string, size int64, seed uint64) {
	w.tb.Helper()
	if err := os.MkdirAll(filepath.Dir(w.abs(rel)), 0o755); err != nil {
		w.tb.Fatal(err)
	}
	writeRandomFile(w.tb, w.abs(rel), size, seed)
	w.touched = append(w.touched, rel)
}

func (w *treeWriter) symlink(rel, target string) {
	w.tb.Helper()
	_ = os.Remove(w.abs(rel))
	if err := os.MkdirAll(filepath.Dir(w.abs(rel)), 0o755); err != nil {
		w.tb.Fatal(err)
	}
	if err := os.Symlink(target, w.abs(rel)); err != nil {
		w.tb.Fatal(err)
	}
	w.touched = append(w.touched, rel)
}

// touch marks rel for a new mtime without changing it otherwise.
func (w *treeWriter) touch(rel string) { w.touched = append(w.touched, rel) }

// mtime is a distinct time with nanoseconds for the i-th entry of a
// generation.
func (w *treeWriter) mtime(i int) time.Time {
	return time.Unix(1_600_000_000+int64(w.gen)*10_000_000+int64(i)*61, int64(i)*7919%1_000_000_000+int64(w.gen)+1)
}

// finish sets the mtimes: touched files and symlinks, then every folder,
// deepest first.
func (w *treeWriter) finish() {
	w.tb.Helper()
	for i, rel := range w.touched {
		ts := unix.NsecToTimespec(w.mtime(i).UnixNano())
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, w.abs(rel), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			w.tb.Fatalf("set mtime of %s: %v", rel, err)
		}
	}
	var dirs []string
	err := filepath.WalkDir(w.root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != w.root {
			dirs = append(dirs, p)
		}
		return err
	})
	if err != nil {
		w.tb.Fatal(err)
	}
	sort.Slice(dirs, func(a, b int) bool { return strings.Count(dirs[a], "/") > strings.Count(dirs[b], "/") })
	for i, d := range dirs {
		t := w.mtime(len(w.touched) + i)
		if err := os.Chtimes(d, t, t); err != nil {
			w.tb.Fatal(err)
		}
	}
	w.touched = nil
	w.gen++
}

// genTree writes the round-trip source tree into root: nested folders,
// an empty folder, files of 0 B, 1 B, a few KiB and bigSize random bytes
// (several chunks), compressible files, modes with setuid, setgid and
// sticky bits, symlinks relative, absolute, dangling and to a folder,
// awkward names, and smallFiles small files in one folder.
func genTree(tb testing.TB, root string, bigSize int64, smallFiles int) *treeWriter {
	tb.Helper()
	w := &treeWriter{tb: tb, root: root}
	w.dir("empty", 0o755)
	w.dir("a", 0o750)
	w.dir("a/b", 0o700)
	w.file("a/b/c/deep.txt", []byte("deep down\n"), 0o644)
	w.file("zero", nil, 0o644)
	w.file("one", []byte{'1'}, 0o644)
	w.file("kib.bin", randomBytes(5000, 1), 0o644)
	w.randomFile("big.bin", bigSize, 2)
	for i := range 3 {
		w.file(fmt.Sprintf("text/log-%d.txt", i), compressible(300<<10+i, i), 0o644)
	}
	w.file("modes/m600", []byte("secret\n"), 0o600)
	w.file("modes/m640", []byte("group\n"), 0o640)
	w.file("modes/m755", []byte("#!/bin/sh\necho hi\n"), 0o755)
	w.file("modes/setuid", []byte("#!/bin/sh\n"), 0o4755)
	w.dir("modes/sticky", 0o1777)
	w.dir("modes/setgid-dir", 0o2755)
	w.symlink("links/rel", "../a/b/c/deep.txt")
	w.symlink("links/abs", filepath.Join(root, "kib.bin"))
	w.symlink("links/outside", "/etc/passwd")
	w.symlink("links/dangling", "nowhere/at/all")
	w.symlink("links/dir", "../a")
	w.file("names/with space.txt", []byte("space\n"), 0o644)
	w.file("names/ünïcödé ✓.txt", []byte("unicode\n"), 0o644)
	w.file("names/-dash", []byte("dash\n"), 0o644)
	w.file("names/.hidden", []byte("hidden\n"), 0o644)
	w.dir("many", 0o755)
	for i := range smallFiles {
		w.file(fmt.Sprintf("many/f%05d.txt", i), bytes.Repeat([]byte(fmt.Sprintf("small file %d\n", i)), i%9+1), 0o644)
	}
	w.finish()
	return w
}

// editTree changes the tree genTree wrote: content edits (same size and
// appended), a deleted file and folder, renamed file and folder, new
// files, a mode-only change, an mtime-only change, a symlink re-pointed
// and a file replaced by a folder.
func editTree(w *treeWriter) {
	tb := w.tb
	tb.Helper()
	w.file("kib.bin", randomBytes(5000, 3), 0o644)
	f, err := os.OpenFile(w.abs("text/log-0.txt"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	f.Write(compressible(10<<10, 9))
	f.Close()
	for _, rm := range []string{"one", "a/b/c"} {
		if err := os.RemoveAll(w.abs(rm)); err != nil {
			tb.Fatal(err)
		}
	}
	w.dir("moved", 0o755)
	for _, mv := range [][2]string{{"zero", "moved/zero"}, {"text", "text-renamed"}, {"many/f00007.txt", "many/renamed-7.txt"}} {
		if err := os.Rename(w.abs(mv[0]), w.abs(mv[1])); err != nil {
			tb.Fatal(err)
		}
	}
	w.touch("text-renamed/log-0.txt")
	w.randomFile("new/fresh.bin", 1<<20+3, 4)
	w.file("many/new-file.txt", []byte("new\n"), 0o644)
	if err := os.Chmod(w.abs("modes/m640"), 0o604); err != nil {
		tb.Fatal(err)
	}
	w.touch("modes/m755")
	w.symlink("links/dangling", "now/elsewhere")
	if err := os.Remove(w.abs("names/-dash")); err != nil {
		tb.Fatal(err)
	}
	w.file("names/-dash/inside", []byte("was a file\n"), 0o644)
	w.finish()
}

// --- tests ---

// TestRoundTrip backs up a varied tree with a full backup and restores it
// identical: names, types, content, modes, mtimes of files, folders and
// symlinks, symlink targets, empty folders.
func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	genTree(t, src, 20<<20, 2000)
	want := manifest(t, src)
	h := startDP(t, map[string]string{"src": src}, "{checkpoint_interval: 200ms}")
	job, snap := backup(t, h, "src", "full")
	if job.Kind != "backup" || job.BackupKind != "full" || job.Source != "src" || job.Progress.Percent != 100 {
		t.Errorf("job: %+v", job)
	}
	c := chains(t, h)
	if len(c) != 1 || c[0].ID != snap.ID || c[0].Source != "src" || len(c[0].Snapshots) != 1 {
		t.Fatalf("chains: %+v", c)
	}
	if snap.Kind != "full" || snap.Parent != "" || snap.Chain != snap.ID || snap.JobID != job.ID || snap.CompletedAt == nil {
		t.Errorf("snapshot: %+v", snap)
	}
	files, dirs, links, size := counts(want)
	if snap.Files != files || snap.Dirs != dirs || snap.Symlinks != links || snap.Bytes != size {
		t.Errorf("snapshot counts files %d dirs %d symlinks %d bytes %d; the source has %d, %d, %d, %d",
			snap.Files, snap.Dirs, snap.Symlinks, snap.Bytes, files, dirs, links, size)
	}
	if snap.AddedBytes <= 20<<20 {
		t.Errorf("added_bytes %d for a source holding %d random bytes", snap.AddedBytes, 20<<20)
	}
	assertSameTree(t, want, restore(t, h, snap.ID, "r1"))
	// The symlinks were restored as symlinks, not followed.
	if target, err := os.Readlink(filepath.Join(h.DataDir, "restores", "r1", "links", "outside")); err != nil || target != "/etc/passwd" {
		t.Errorf("links/outside: %q %v", target, err)
	}
	// Nested targets are created inside the restore root.
	assertSameTree(t, want, restore(t, h, snap.ID, "nested/deeper/r2"))
}

// TestIncrementalAfterEdits makes a full backup, edits the tree, makes an
// incremental one and restores both: each gives back its own tree.
func TestIncrementalAfterEdits(t *testing.T) {
	src := t.TempDir()
	w := genTree(t, src, 20<<20, 300)
	original := manifest(t, src)
	h := startDP(t, map[string]string{"src": src}, "{checkpoint_interval: 200ms}")
	_, full := backup(t, h, "src", "full")
	editTree(w)
	edited := manifest(t, src)
	if len(diffManifests(original, edited)) < 10 {
		t.Fatal("the edits changed almost nothing")
	}
	incJob, inc := backup(t, h, "src", "incremental")
	if incJob.BackupKind != "incremental" {
		t.Errorf("job backup_kind %q", incJob.BackupKind)
	}
	c := chains(t, h)
	if len(c) != 1 || len(c[0].Snapshots) != 2 || c[0].ID != full.ID {
		t.Fatalf("chains: %+v", c)
	}
	if s := c[0].Snapshots; s[0].ID != full.ID || s[1].ID != inc.ID {
		t.Fatalf("chain order: %s, %s; want %s, %s", s[0].ID, s[1].ID, full.ID, inc.ID)
	}
	if inc.Kind != "incremental" || inc.Parent != full.ID || inc.Chain != full.ID {
		t.Errorf("incremental: kind %q parent %q chain %q; want incremental, %s, %s", inc.Kind, inc.Parent, inc.Chain, full.ID, full.ID)
	}
	files, dirs, links, size := counts(edited)
	if inc.Files != files || inc.Dirs != dirs || inc.Symlinks != links || inc.Bytes != size {
		t.Errorf("incremental counts files %d dirs %d symlinks %d bytes %d; the edited source has %d, %d, %d, %d",
			inc.Files, inc.Dirs, inc.Symlinks, inc.Bytes, files, dirs, links, size)
	}
	// What the incremental stored: the API does not show the bytes a job
	// read (the engine's Progress.BytesRead), so added_bytes, the new
	// stored bytes, stands for it: the 20 MiB file was not stored again.
	t.Logf("added_bytes: full %d, incremental %d", full.AddedBytes, inc.AddedBytes)
	if inc.AddedBytes*4 > full.AddedBytes || inc.AddedBytes < 1<<20 {
		t.Errorf("the incremental added %d bytes (the full %d; the edits add a 1 MiB random file)", inc.AddedBytes, full.AddedBytes)
	}
	assertSameTree(t, original, restore(t, h, full.ID, "full"))
	assertSameTree(t, edited, restore(t, h, inc.ID, "inc"))
	// A second incremental with nothing changed adds (almost) nothing and
	// extends the chain.
	_, again := backup(t, h, "src", "incremental")
	if again.Parent != inc.ID || again.Chain != full.ID || again.AddedBytes > 64<<10 {
		t.Errorf("unchanged incremental: parent %q chain %q added %d", again.Parent, again.Chain, again.AddedBytes)
	}
	assertSameTree(t, edited, restore(t, h, again.ID, "again"))
}

// bigSource writes parts random files of 25 MiB and smalls small text
// files (contents from seed) into a new folder; it returns the folder and
// its manifest.
func bigSource(tb testing.TB, parts, smalls int, seed uint64) (string, map[string]entry) {
	tb.Helper()
	src := tb.TempDir()
	for i := range parts {
		writeRandomFile(tb, filepath.Join(src, fmt.Sprintf("part-%d.bin", i)), 25<<20, seed+uint64(i))
	}
	w := &treeWriter{tb: tb, root: src}
	for i := range smalls {
		w.file(fmt.Sprintf("small/s%02d.txt", i), compressible(1000+i*97, i+int(seed)), 0o644)
	}
	w.finish()
	return src, manifest(tb, src)
}

// TestKilledMidBackupResumes kills the plugin with SIGKILL twice in the
// middle of a full backup of 200 MiB: each restarted plugin resumes the
// same job from its checkpoint (checkpoint_interval 200ms), which succeeds
// with one snapshot that restores identical.
func TestKilledMidBackupResumes(t *testing.T) {
	src, want := bigSource(t, 8, 50, 100)
	h := startDP(t, map[string]string{"big": src}, "{checkpoint_interval: 200ms}")
	job := startBackup(t, h, "big", "full")
	// The first kill comes past 40%. The second comes at the first report
	// of progress of the resumed run, if it is still running then: the
	// job reports every 250 ms, a good part of this source on a fast
	// machine.
	kills := 0
	kill := func(at api.BackupJob) {
		t.Helper()
		pid := h.Plugin(t, "dataprotection").PID
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		kills++
		t.Logf("killed the plugin at %.1f%% (%d of %d bytes)", at.Progress.Percent, at.Progress.BytesDone, at.Progress.BytesTotal)
		hosttest.WaitFor(t, 90*time.Second, "the plugin to serve again", func() bool {
			st := h.Plugin(t, "dataprotection")
			return st.State == "serving" && st.PID != pid
		})
	}
	var at api.BackupJob
	hosttest.WaitFor(t, jobWait, "the backup to pass 40%", func() bool {
		j, ok := getJob(t, h, job.ID)
		at = j
		return ok && (j.Progress.Percent >= 40 || finished(j.State))
	})
	if at.State != "running" {
		t.Fatalf("the backup is %s at %.1f%%; want running (make the source bigger)", at.State, at.Progress.Percent)
	}
	kill(at)
	from, _ := getJob(t, h, job.ID)
	hosttest.WaitFor(t, jobWait, "the resumed run to progress", func() bool {
		j, ok := getJob(t, h, job.ID)
		at = j
		return ok && (j.Progress.BytesDone > from.Progress.BytesDone || finished(j.State))
	})
	if at.State == "running" {
		kill(at)
	} else {
		t.Logf("the resumed run %s before a second kill", at.State)
	}
	done := waitSucceeded(t, h, job.ID)
	if int(done.Resumed) != kills || done.Snapshot == "" {
		t.Fatalf("the job after %d crashes: resumed %d, snapshot %q", kills, done.Resumed, done.Snapshot)
	}
	files, dirs, _, size := counts(want)
	if p := done.Progress; p.BytesDone != size || p.BytesTotal != size || p.FilesDone != files || p.FilesTotal != files {
		t.Errorf("the job's final progress %+v; the source has %d files, %d bytes", p, files, size)
	}
	snaps := snapshots(t, h)
	if len(snaps) != 1 || snaps[0].ID != done.Snapshot || snaps[0].JobID != job.ID || snaps[0].Kind != "full" {
		t.Fatalf("snapshots after the resumed backup: %+v; want only %s", snaps, done.Snapshot)
	}
	if snaps[0].Files != files || snaps[0].Dirs != dirs || snaps[0].Bytes != size {
		t.Errorf("snapshot: %d files, %d dirs, %d bytes; the source has %d, %d, %d", snaps[0].Files, snaps[0].Dirs, snaps[0].Bytes, files, dirs, size)
	}
	// Each resume used its checkpoint (an unusable one would restart the
	// backup and count in jobs_restarted_total).
	m := metrics(t, h)
	if m["jobs_resumed_total"] != 1 || m["jobs_restarted_total"] != 0 {
		t.Errorf("after the second restart: jobs_resumed_total %v, jobs_restarted_total %v; want 1 and 0", m["jobs_resumed_total"], m["jobs_restarted_total"])
	}
	for _, line := range strings.Split(h.Logs(), "\n") {
		if strings.Contains(line, "resuming a job a crash interrupted") && strings.Contains(line, `"checkpoint_bytes"`) {
			var l struct {
				Checkpoint float64 `json:"checkpoint_bytes"`
			}
			_ = json.Unmarshal([]byte(line), &l)
			t.Logf("resumed with a checkpoint of %.0f bytes", l.Checkpoint)
		}
	}
	assertSameTree(t, want, restore(t, h, done.Snapshot, "resumed"))
	var v api.VerifyResult
	if code := h.JSON(t, "POST", "/v1/backups/verify", nil, &v); code != 200 || !v.OK || v.Snapshots != 1 {
		t.Errorf("verify after the crashes: %d %+v", code, v)
	}
	// Nothing of the interrupted runs is left half-written.
	if names, _ := os.ReadDir(filepath.Join(h.DataDir, "backups", "tmp")); len(names) != 0 {
		t.Errorf("the repository's tmp folder holds %d entries", len(names))
	}
}

// TestHostKilledMidBackupResumes kills the whole host with SIGKILL in the
// middle of a full backup (its plugins exit with it), then starts the host
// again on the same config and data_dir, as an operator would: the new
// plugin finds the job in the host KV and resumes it from its checkpoint,
// and the one snapshot restores identical.
func TestHostKilledMidBackupResumes(t *testing.T) {
	src, want := bigSource(t, 6, 30, 300)
	h := startDP(t, map[string]string{"big": src}, "{checkpoint_interval: 200ms}")
	job := startBackup(t, h, "big", "full")
	var at api.BackupJob
	hosttest.WaitFor(t, jobWait, "the backup to pass 40%", func() bool {
		j, ok := getJob(t, h, job.ID)
		at = j
		return ok && (j.Progress.Percent >= 40 || finished(j.State))
	})
	if at.State != "running" {
		t.Fatalf("the backup is %s at %.1f%%; want running (make the source bigger)", at.State, at.Progress.Percent)
	}
	pluginPID := h.Plugin(t, "dataprotection").PID
	h.Kill()
	t.Logf("killed the host at %.1f%% (%d of %d bytes)", at.Progress.Percent, at.Progress.BytesDone, at.Progress.BytesTotal)
	// The orphaned plugin exits by itself (the host's pipe closed); the
	// new host's plugin would wait on the repository lock otherwise.
	hosttest.WaitFor(t, 30*time.Second, "the old plugin to exit", func() bool {
		return syscall.Kill(pluginPID, 0) != nil
	})
	h2 := h.Restart(t)
	done := waitSucceeded(t, h2, job.ID)
	if done.Resumed != 1 || done.Snapshot == "" {
		t.Fatalf("the job after the host's crash: resumed %d, snapshot %q; want resumed 1 and a snapshot", done.Resumed, done.Snapshot)
	}
	m := metrics(t, h2)
	if m["jobs_resumed_total"] != 1 || m["jobs_restarted_total"] != 0 {
		t.Errorf("jobs_resumed_total %v, jobs_restarted_total %v; want 1 and 0 (resumed from its checkpoint)", m["jobs_resumed_total"], m["jobs_restarted_total"])
	}
	files, _, _, size := counts(want)
	if p := done.Progress; p.BytesDone != size || p.FilesDone != files {
		t.Errorf("the job's final progress %+v; the source has %d files, %d bytes", p, files, size)
	}
	snaps := snapshots(t, h2)
	if len(snaps) != 1 || snaps[0].ID != done.Snapshot || snaps[0].JobID != job.ID {
		t.Fatalf("snapshots after the resumed backup: %+v; want only %s", snaps, done.Snapshot)
	}
	assertSameTree(t, want, restore(t, h2, done.Snapshot, "after-host-crash"))
}

// smallBackup starts a host with a source of two files, backs it up in
// full and returns the host, the snapshot and the source's manifest.
func smallBackup(t *testing.T) (*hosttest.Host, api.Snapshot, map[string]entry) {
	t.Helper()
	src := t.TempDir()
	w := &treeWriter{tb: t, root: src}
	w.file("f.txt", []byte("content\n"), 0o644)
	w.file("d/g.txt", []byte("more\n"), 0o600)
	w.finish()
	want := manifest(t, src)
	h := startDP(t, map[string]string{"src": src}, "")
	_, snap := backup(t, h, "src", "full")
	return h, snap, want
}

// TestRestoreTargetsCannotEscape sends restore targets that try to leave
// the restore root: refused, nothing written outside it.
func TestRestoreTargetsCannotEscape(t *testing.T) {
	h, snap, want := smallBackup(t)
	root := filepath.Join(h.DataDir, "restores")
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"out": outside, "rel": "../../../../../../../../.." + outside} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "full"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "full", "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "afile"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := manifest(t, root)
	for _, tc := range []struct {
		target string
		code   int
	}{
		{"../x", 400}, {"/abs", 400}, {"/" + outside, 400}, {"a/../../x", 400}, {"..", 400}, {".", 400},
		{"a/..", 400}, {"./a", 400}, {"a//b", 400}, {"a/", 400}, {"", 400}, {"..\\x", 400},
		{"a\x00b", 400}, {"a\nb", 400}, {strings.Repeat("n", 300), 400},
		{"out/x", 400}, {"out/x/y", 400}, {"rel/x", 400},
		{"full", 409}, {"afile", 409},
	} {
		code, body := startRestore(t, h, snap.ID, tc.target)
		if code != tc.code {
			t.Errorf("target %q: %d %s; want %d", tc.target, code, body, tc.code)
		}
	}
	// A target that is itself a symlink (to a folder outside) is refused:
	// 409 as "exists and is not a folder", or 400.
	for _, target := range []string{"out", "rel"} {
		if code, body := startRestore(t, h, snap.ID, target); code != 400 && code != 409 {
			t.Errorf("target %q, a symlink leading outside: %d %s; want 400 or 409", target, code, body)
		} else {
			t.Logf("target %q, a symlink leading outside: %d %s", target, code, errorMessage(body))
		}
	}
	// An unknown snapshot is 404; a malformed id 400.
	if code, body := startRestore(t, h, "0123456789abcdef", "new"); code != 404 {
		t.Errorf("unknown snapshot: %d %s", code, body)
	}
	if code, body := startRestore(t, h, "../"+snap.ID, "new"); code != 400 {
		t.Errorf("malformed snapshot id: %d %s", code, body)
	}
	// A body that is not the documented JSON.
	for _, raw := range []string{`{"snapshot":"` + snap.ID + `","target":"x","extra":1}`, `{"snapshot":"` + snap.ID + `","target":["x"]}`, `{"snapshot":"` + snap.ID + `"}`, `[]`} {
		if code, body := call(t, h, "POST", "/v1/backups/restores", raw); code != 400 {
			t.Errorf("body %s: %d %s", raw, code, body)
		}
	}
	if got := manifest(t, outside); len(got) != 1 {
		t.Errorf("the folder outside holds %v", got)
	}
	if d := diffManifests(before, manifest(t, root)); len(d) > 0 {
		t.Errorf("refused restores changed the restore root: %v", d)
	}
	// Percent signs are not decoded: "%2e%2e" is a name like any other.
	assertSameTree(t, want, restore(t, h, snap.ID, "%2e%2e"))
	if _, err := os.Stat(filepath.Join(root, "%2e%2e", "f.txt")); err != nil {
		t.Error(err)
	}
	// An empty folder is a valid target.
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, want, restore(t, h, snap.ID, "empty"))
	if got := manifest(t, outside); len(got) != 1 {
		t.Errorf("the folder outside holds %v", got)
	}
}

// dirSize is the total size of the regular files under dir.
func dirSize(tb testing.TB, dir string) int64 {
	tb.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestRetentionOverChains keeps the last 2 snapshots of a chain of three:
// the full goes, the first incremental becomes the chain's start, both
// kept ones restore identical, and the data only the full held is pruned.
func TestRetentionOverChains(t *testing.T) {
	src := t.TempDir()
	w := &treeWriter{tb: t, root: src}
	w.randomFile("gone.bin", 6<<20, 10)
	w.randomFile("keep.bin", 2<<20, 11)
	w.file("dir/f1.txt", []byte("version 1\n"), 0o644)
	w.finish()
	m0 := manifest(t, src)
	h := startDP(t, map[string]string{"src": src}, "{checkpoint_interval: 200ms, retention: {keep_last: 2}}")
	_, full := backup(t, h, "src", "full")
	if err := os.Remove(filepath.Join(src, "gone.bin")); err != nil {
		t.Fatal(err)
	}
	w.file("new1.txt", []byte("new\n"), 0o644)
	w.finish()
	m1 := manifest(t, src)
	_, inc1 := backup(t, h, "src", "incremental")
	w.file("dir/f1.txt", []byte("version 2, longer\n"), 0o644)
	w.finish()
	m2 := manifest(t, src)
	_, inc2 := backup(t, h, "src", "incremental")
	// inc2 as listed may be re-based already: retention runs right after
	// each backup.
	if inc1.Parent != full.ID || inc1.Chain != full.ID || inc2.Parent != inc1.ID {
		t.Fatalf("the chain as made: inc1 parent %q chain %q, inc2 parent %q; want %s, %s, %s", inc1.Parent, inc1.Chain, inc2.Parent, full.ID, full.ID, inc1.ID)
	}
	hosttest.WaitFor(t, jobWait, "retention to keep 2 snapshots", func() bool { return len(snapshots(t, h)) == 2 })
	c := chains(t, h)
	if len(c) != 1 || len(c[0].Snapshots) != 2 || c[0].ID != inc1.ID {
		t.Fatalf("chains after retention: %+v; want one chain started by %s", c, inc1.ID)
	}
	first, second := c[0].Snapshots[0], c[0].Snapshots[1]
	if first.ID != inc1.ID || first.Kind != "incremental" || first.Parent != "" || first.Chain != inc1.ID {
		t.Errorf("the new chain start: %+v; want %s, incremental, no parent, chain itself", first, inc1.ID)
	}
	if second.ID != inc2.ID || second.Parent != inc1.ID || second.Chain != inc1.ID {
		t.Errorf("the second: %+v; want %s with parent and chain %s", second, inc2.ID, inc1.ID)
	}
	// The full's own data (gone.bin, 6 MiB) is pruned: what is left is
	// keep.bin's 2 MiB and a few small blobs.
	packs := filepath.Join(h.DataDir, "backups", "packs")
	hosttest.WaitFor(t, jobWait, "the prune of the forgotten full's data", func() bool { return dirSize(t, packs) < 3<<20 })
	assertSameTree(t, m1, restore(t, h, inc1.ID, "inc1"))
	assertSameTree(t, m2, restore(t, h, inc2.ID, "inc2"))
	_ = m0
	var v api.VerifyResult
	if code := h.JSON(t, "POST", "/v1/backups/verify", nil, &v); code != 200 || !v.OK || v.Snapshots != 2 {
		t.Errorf("verify: %d %+v", code, v)
	}
	// The forgotten snapshot cannot be restored.
	if code, body := startRestore(t, h, full.ID, "gone"); code != 404 {
		t.Errorf("restore of the forgotten full: %d %s", code, body)
	}
	// DELETE forgets the chain start: the second is re-based.
	var fr api.ForgetResult
	if code := h.JSON(t, "DELETE", "/v1/backups/snapshots/"+inc1.ID, nil, &fr); code != 200 || !slices.Equal(fr.Rebased, []string{inc2.ID}) {
		t.Fatalf("forget %s: %d %+v", inc1.ID, code, fr)
	}
	if s := snapshots(t, h); len(s) != 1 || s[0].ID != inc2.ID || s[0].Parent != "" || s[0].Chain != inc2.ID {
		t.Errorf("after forgetting the chain start: %+v", s)
	}
	assertSameTree(t, m2, restore(t, h, inc2.ID, "inc2-again"))
}

// TestPruneDryRun: with keep_last 1 and keep_within 8s, two snapshots made
// within seconds are both kept; once the older is past 8s, a dry run lists
// it and changes nothing (background retention runs only after backups,
// at limit changes and every retention_interval, here 1h), and a real
// prune forgets it and re-bases the other.
func TestPruneDryRun(t *testing.T) {
	t.Parallel()
	const within = 8 * time.Second
	src := t.TempDir()
	w := &treeWriter{tb: t, root: src}
	w.randomFile("a.bin", 3<<20, 20)
	w.finish()
	h := startDP(t, map[string]string{"src": src}, "{retention: {keep_last: 1, keep_within: 8s}, retention_interval: 1h}")
	_, full := backup(t, h, "src", "full")
	w.randomFile("b.bin", 1<<20, 21)
	w.finish()
	want := manifest(t, src)
	_, inc := backup(t, h, "src", "incremental")
	// Background retention runs after each backup (and when the limits
	// change); the one after the incremental, kicked at once, keeps both
	// snapshots since both are within keep_within.
	hosttest.WaitFor(t, jobWait, "the retention runs after the backups", func() bool {
		return metrics(t, h)["retention_runs_total"] >= 2
	})
	if s := snapshots(t, h); len(s) != 2 {
		t.Fatalf("both snapshots are within %v, yet %d are left: %+v", within, len(s), s)
	}
	completed, err := time.Parse(time.RFC3339Nano, *full.CompletedAt)
	if err != nil {
		t.Fatal(err)
	}
	hosttest.WaitFor(t, 2*within, "the full to age past keep_within", func() bool { return time.Since(completed) > within+time.Second })
	repoBefore := manifest(t, filepath.Join(h.DataDir, "backups"))
	var dry api.PruneResult
	if code := h.JSON(t, "POST", "/v1/backups/prune?dry_run=true", nil, &dry); code != 200 {
		t.Fatalf("dry run: %d", code)
	}
	if !dry.DryRun || len(dry.Forget) != 1 || dry.Forget[0].ID != full.ID || !strings.Contains(dry.Reasons[full.ID], "keep_last") {
		t.Fatalf("dry run: %+v; want %s forgotten", dry, full.ID)
	}
	if s := snapshots(t, h); len(s) != 2 {
		t.Errorf("the dry run left %d snapshots", len(s))
	}
	if d := diffManifests(repoBefore, manifest(t, filepath.Join(h.DataDir, "backups"))); len(d) > 0 {
		t.Errorf("the dry run changed the repository: %v", d)
	}
	var pr api.PruneResult
	if code := h.JSON(t, "POST", "/v1/backups/prune", nil, &pr); code != 200 || pr.DryRun || len(pr.Forget) != 1 || pr.Forget[0].ID != full.ID {
		t.Fatalf("prune: %d %+v", code, pr)
	}
	s := snapshots(t, h)
	if len(s) != 1 || s[0].ID != inc.ID || s[0].Parent != "" || s[0].Chain != inc.ID || s[0].Kind != "incremental" {
		t.Errorf("after the prune: %+v", s)
	}
	assertSameTree(t, want, restore(t, h, inc.ID, "after-prune"))
	// Query parameters are checked.
	for _, q := range []string{"dry_run=maybe", "dry_run=true&dry_run=false", "force=true"} {
		if code, body := call(t, h, "POST", "/v1/backups/prune?"+q, nil); code != 400 {
			t.Errorf("prune?%s: %d %s", q, code, body)
		}
	}
}

// packFiles lists the pack files of a repository, largest first.
func packFiles(tb testing.TB, repoDir string) []string {
	tb.Helper()
	var packs []string
	err := filepath.WalkDir(filepath.Join(repoDir, "packs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			packs = append(packs, p)
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			tb.Fatal(err)
		}
		return fi.Size()
	}
	sort.Slice(packs, func(a, b int) bool { return size(packs[a]) > size(packs[b]) })
	return packs
}

// flipMiddleByte inverts the byte in the middle of a file.
func flipMiddleByte(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	b := make([]byte, 1)
	off := fi.Size() / 2
	if _, err := f.ReadAt(b, off); err != nil {
		tb.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		tb.Fatal(err)
	}
}

// TestCorruptPack flips a byte in the middle of a pack: verify names the
// pack and the blob, and a restore fails saying the data is corrupt.
func TestCorruptPack(t *testing.T) {
	src := t.TempDir()
	w := &treeWriter{tb: t, root: src}
	w.randomFile("data.bin", 3<<20, 30)
	w.file("small.txt", []byte("small\n"), 0o644)
	w.finish()
	h := startDP(t, map[string]string{"src": src}, "")
	_, snap := backup(t, h, "src", "full")
	var v api.VerifyResult
	if code := h.JSON(t, "POST", "/v1/backups/verify", nil, &v); code != 200 || !v.OK || v.Snapshots != 1 || v.BlobsChecked < 3 || v.BytesChecked < 3<<20 {
		t.Fatalf("verify before the damage: %d %+v", code, v)
	}
	packs := packFiles(t, filepath.Join(h.DataDir, "backups"))
	if len(packs) == 0 {
		t.Fatal("no pack files")
	}
	flipMiddleByte(t, packs[0])
	packID := filepath.Base(packs[0])
	v = api.VerifyResult{}
	if code := h.JSON(t, "POST", "/v1/backups/verify", nil, &v); code != 200 || v.OK || len(v.Problems) == 0 {
		t.Fatalf("verify after the damage: %d %+v", code, v)
	}
	named := false
	for _, p := range v.Problems {
		named = named || (strings.Contains(p, packID) && strings.Contains(p, "blob") && strings.Contains(p, "corrupt"))
	}
	if !named {
		t.Errorf("no problem names pack %s, a blob and corruption: %q", packID, v.Problems)
	}
	t.Logf("verify: %q", v.Problems)
	code, body := startRestore(t, h, snap.ID, "damaged")
	var started api.StartedJob
	if code != 202 || json.Unmarshal(body, &started) != nil {
		t.Fatalf("restore: %d %s", code, body)
	}
	j := waitJob(t, h, started.JobID)
	if j.State != "failed" || !strings.Contains(j.Error, "corrupt") || !strings.Contains(j.Error, "data.bin") {
		t.Errorf("restore of the damaged snapshot: %s, error %q; want failed, naming the file and corruption", j.State, j.Error)
	}
	t.Logf("restore error: %s", j.Error)
	if m := metrics(t, h); m["verify_problems_total"] < 1 {
		t.Errorf("verify_problems_total = %v", m["verify_problems_total"])
	}
}

// jobsList returns the jobs, newest first.
func jobsList(tb testing.TB, h *hosttest.Host) []api.BackupJob {
	tb.Helper()
	var l api.BackupJobs
	if code := h.JSON(tb, "GET", "/v1/backups/jobs", nil, &l); code != 200 {
		tb.Fatalf("GET /v1/backups/jobs: %d", code)
	}
	return l.Jobs
}

// TestLiveConcurrencyLimit lowers max_concurrent_operations from 3 to 1
// without a restart: of the jobs started at once one runs and the others
// wait, queued. A restore that waits in the queue while its target's
// parent becomes a symlink leading outside fails without writing there.
func TestLiveConcurrencyLimit(t *testing.T) {
	big, other, small := t.TempDir(), t.TempDir(), t.TempDir()
	for i := range 4 {
		writeRandomFile(t, filepath.Join(big, fmt.Sprintf("p%d.bin", i)), 40<<20, uint64(40+i))
	}
	writeRandomFile(t, filepath.Join(other, "o.bin"), 4<<20, 50)
	if err := os.WriteFile(filepath.Join(small, "s.txt"), []byte("small\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{"big": big, "other": other, "small": small}
	h := startDP(t, sources, "{max_concurrent_operations: 3}")
	pid := h.Plugin(t, "dataprotection").PID
	hosttest.WaitFor(t, 30*time.Second, "the limit of 3", func() bool { return metrics(t, h)["concurrency_limit"] == 3 })
	_, smallSnap := backup(t, h, "small", "full")
	h.WriteConfig(t, dpConfig(sources, "{max_concurrent_operations: 1}"))
	hosttest.WaitFor(t, 30*time.Second, "the limit of 1", func() bool { return metrics(t, h)["concurrency_limit"] == 1 })
	a := startBackup(t, h, "big", "full")
	b := startBackup(t, h, "other", "full")
	code, body := startRestore(t, h, smallSnap.ID, "later/x")
	var r api.StartedJob
	if code != 202 || json.Unmarshal(body, &r) != nil {
		t.Fatalf("restore: %d %s", code, body)
	}
	hosttest.WaitFor(t, jobWait, "one job running while the others wait", func() bool {
		states := map[string]string{}
		for _, j := range jobsList(t, h) {
			states[j.ID] = j.State
		}
		running, queued := 0, 0
		for _, id := range []string{a.ID, b.ID, r.JobID} {
			switch states[id] {
			case "running":
				running++
			case "queued":
				queued++
			}
		}
		if running > 1 {
			t.Fatalf("%d jobs run at once under a limit of 1: %v", running, states)
		}
		return running == 1 && queued >= 1 && states[r.JobID] == "queued"
	})
	if q := metrics(t, h)["jobs_queued"]; q < 1 {
		t.Errorf("jobs_queued = %v while a job waits", q)
	}
	// The queued restore's target parent becomes a symlink to outside.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(h.DataDir, "restores", "later")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a.ID, b.ID} {
		waitSucceeded(t, h, id)
	}
	rj := waitJob(t, h, r.JobID)
	if rj.State != "failed" {
		t.Errorf("the restore through a symlink leading outside: %s %q", rj.State, rj.Error)
	}
	t.Logf("restore through the symlink: %s: %s", rj.State, rj.Error)
	if names, _ := os.ReadDir(outside); len(names) != 0 {
		t.Errorf("the restore wrote %d entries outside the restore root", len(names))
	}
	if p := h.Plugin(t, "dataprotection").PID; p != pid {
		t.Errorf("the plugin restarted for a limit change (pid %d → %d)", pid, p)
	}
	// An invalid limit is refused and the one in force stays.
	h.WriteConfig(t, dpConfig(sources, "{max_concurrent_operations: -1}"))
	hosttest.WaitFor(t, 30*time.Second, "the refused reload", func() bool {
		var c struct {
			LastReload struct {
				OK    bool   `json:"ok"`
				Error string `json:"error"`
			} `json:"last_reload"`
		}
		h.JSON(t, "GET", "/v1/config", nil, &c)
		return !c.LastReload.OK && strings.Contains(c.LastReload.Error, "max_concurrent_operations")
	})
	if l := metrics(t, h)["concurrency_limit"]; l != 1 {
		t.Errorf("concurrency_limit = %v after a refused reload, want 1", l)
	}
}

// TestCLIBackup drives `dw backup` against the real host and plugin.
func TestCLIBackup(t *testing.T) {
	src := t.TempDir()
	w := &treeWriter{tb: t, root: src}
	w.randomFile("data.bin", 2<<20, 60)
	w.file("sub/a.txt", []byte("a\n"), 0o640)
	w.symlink("link", "sub/a.txt")
	w.dir("empty", 0o755)
	w.finish()
	want := manifest(t, src)
	h := startDP(t, map[string]string{"docs": src}, "")
	dw := hosttest.Binary(t, "cmd/dw", "dw")
	run := func(wantOK bool, args ...string) string {
		t.Helper()
		cmd := exec.Command(dw, args...)
		cmd.Env = append(os.Environ(), "DW_ADDR="+h.Addr)
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("dw %s: %v (want success %v)\n%s", strings.Join(args, " "), err, wantOK, out)
		}
		return string(out)
	}
	var job api.BackupJob
	out := run(true, "backup", "create", "docs", "--kind", "full", "--wait", "--progress", "never", "-o", "json")
	if err := json.Unmarshal([]byte(out), &job); err != nil || job.State != "succeeded" || job.Snapshot == "" {
		t.Fatalf("create --wait -o json: %v %q", err, out)
	}
	if out := run(true, "backup", "create", "docs", "--wait", "--progress", "never"); !strings.Contains(out, "succeeded") || !strings.Contains(out, "snapshot ") {
		t.Errorf("create --wait: %q", out)
	}
	var c api.Chains
	if err := json.Unmarshal([]byte(run(true, "backup", "ls", "-o", "json")), &c); err != nil || len(c.Chains) != 1 || len(c.Chains[0].Snapshots) != 2 || c.Chains[0].ID != job.Snapshot {
		t.Fatalf("ls -o json: %v %+v", err, c)
	}
	inc := c.Chains[0].Snapshots[1]
	if inc.Kind != "incremental" || inc.Parent != job.Snapshot {
		t.Errorf("the second snapshot: %+v", inc)
	}
	if out := run(true, "backup", "ls"); !strings.Contains(out, job.Snapshot) || !strings.Contains(out, inc.ID) {
		t.Errorf("ls: %q", out)
	}
	if out := run(true, "backup", "jobs"); !strings.Contains(out, job.ID) {
		t.Errorf("jobs: %q", out)
	}
	var one api.BackupJob
	if err := json.Unmarshal([]byte(run(true, "backup", "jobs", job.ID, "-o", "json")), &one); err != nil || one.ID != job.ID || one.State != "succeeded" {
		t.Errorf("jobs ID -o json: %v %+v", err, one)
	}
	run(true, "backup", "restore", inc.ID, "cli/r1", "--wait", "--progress", "never")
	assertSameTree(t, want, filepath.Join(h.DataDir, "restores", "cli", "r1"))
	if out := run(false, "backup", "restore", inc.ID, "cli/r1", "--wait", "--progress", "never"); !strings.Contains(out, "not empty") {
		t.Errorf("restore into a non-empty folder: %q", out)
	}
	if out := run(false, "backup", "restore", inc.ID, "../escape"); !strings.Contains(out, "..") {
		t.Errorf("restore into ../escape: %q", out)
	}
	if out := run(true, "backup", "verify"); strings.Contains(strings.ToLower(out), "corrupt") {
		t.Errorf("verify of a sound repository: %q", out)
	}
	if out := run(true, "backup", "prune", "--dry-run"); out == "" {
		t.Error("prune --dry-run printed nothing")
	}
	flipMiddleByte(t, packFiles(t, filepath.Join(h.DataDir, "backups"))[0])
	if out := run(false, "backup", "verify"); !strings.Contains(out, "corrupt") {
		t.Errorf("verify of a damaged repository: %q", out)
	}
}

// TestCancelledBackupLeavesNothing cancels a running backup: the job ends
// cancelled, no snapshot appears, and the retention run after it prunes
// the data the job had stored.
func TestCancelledBackupLeavesNothing(t *testing.T) {
	src := t.TempDir()
	for i := range 4 {
		writeRandomFile(t, filepath.Join(src, fmt.Sprintf("p%d.bin", i)), 40<<20, uint64(80+i))
	}
	h := startDP(t, map[string]string{"src": src}, "{checkpoint_interval: 200ms}")
	job := startBackup(t, h, "src", "full")
	hosttest.WaitFor(t, jobWait, "the backup to store something", func() bool {
		j, ok := getJob(t, h, job.ID)
		return ok && (j.Progress.BytesDone > 0 || finished(j.State))
	})
	var cancelled api.BackupJob
	if code := h.JSON(t, "DELETE", "/v1/backups/jobs/"+job.ID, nil, &cancelled); code != 200 || cancelled.State != "cancelled" {
		t.Fatalf("cancel: %d %+v", code, cancelled)
	}
	if code, body := call(t, h, "DELETE", "/v1/backups/jobs/"+job.ID, nil); code != 409 {
		t.Errorf("cancel of a cancelled job: %d %s", code, body)
	}
	if j, _ := getJob(t, h, job.ID); j.State != "cancelled" || j.Snapshot != "" || j.FinishedAt == nil {
		t.Errorf("the cancelled job: %+v", j)
	}
	if s := snapshots(t, h); len(s) != 0 {
		t.Errorf("snapshots after a cancelled backup: %+v", s)
	}
	packs := filepath.Join(h.DataDir, "backups", "packs")
	hosttest.WaitFor(t, jobWait, "the cancelled job's data to be pruned", func() bool { return dirSize(t, packs) < 64<<10 })
	// The source still backs up whole.
	_, snap := backup(t, h, "src", "full")
	assertSameTree(t, manifest(t, src), restore(t, h, snap.ID, "after-cancel"))
}

// TestRestoreRootRemovedWhileRunning: an operator removes restore_root
// while the host runs; the next restore makes it again and succeeds. A
// regular file in its place is refused with a 409 that names restore_root
// and says what to do, not an internal error.
func TestRestoreRootRemovedWhileRunning(t *testing.T) {
	h, snap, want := smallBackup(t)
	root := filepath.Join(h.DataDir, "restores")
	assertSameTree(t, want, restore(t, h, snap.ID, "before"))

	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, want, restore(t, h, snap.ID, "after/removal"))
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("restore_root made again: %v %v, want a folder of mode 0700", fi, err)
	}

	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := startRestore(t, h, snap.ID, "onto/a/file")
	msg := errorMessage(body)
	if code != http.StatusConflict || !strings.Contains(msg, "restore_root") || !strings.Contains(msg, "not a folder") {
		t.Fatalf("restore with a file as restore_root: %d %s; want 409 naming restore_root", code, body)
	}
	// Once the file is gone, restores work again.
	if err := os.Remove(root); err != nil {
		t.Fatal(err)
	}
	assertSameTree(t, want, restore(t, h, snap.ID, "again"))
}
