package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
)

// DefaultPollInterval is the default of DirWatchOptions.PollInterval.
const DefaultPollInterval = 10 * time.Second

// rearmInterval is how often a watcher that lost its watch (plugins.dir
// removed, a watcher error) tries to set it up again.
const rearmInterval = time.Second

// busyRetries bounds the retries of a plugin refused because its binary
// was open for writing when it was executed (ETXTBSY); busyRetryMax caps
// the wait between two of them and between two checks of a file still
// open for writing.
const (
	busyRetries  = 5
	busyRetryMax = 5 * time.Second
)

// DirWatchOptions configure Manager.WatchDir.
type DirWatchOptions struct {
	// Settle is how long a changed dw-plugin-<name> must stay unchanged
	// (size, mtime, ctime, inode, mode; or absent) before the plugin is
	// loaded, swapped or stopped. Zero means DefaultSettle. A shorter
	// window speeds up swaps by rename, which are atomic; a binary written
	// in place is still not loaded before its mtime is DefaultSettle old
	// and unchanged (discovery's own rule), so for those the wait is at
	// least DefaultSettle whatever Settle says.
	Settle time.Duration
	// PollInterval is how often the folder is listed and stat'ed even
	// without events (file systems that send none: NFS, FUSE, some
	// container mounts), and the watch checked and re-armed. Zero means
	// DefaultPollInterval; negative disables polling (the watch is then
	// still re-armed after errors).
	PollInterval time.Duration
	// Logger receives the watcher's logs; nil means the manager's.
	Logger hclog.Logger

	// noEvents makes the watcher rely on polling alone (tests of the
	// fallback).
	noEvents bool
	// beforeCatchUp and afterCatchUp, if set, run around the catch-up
	// Rescan at the start (tests of changes racing it).
	beforeCatchUp, afterCatchUp func()
}

// WatchDir watches plugins.dir and applies what changes in it, live, until
// ctx ends (it returns ctx.Err()) or the manager stops (it returns nil).
// Call it after Start, once per Manager. It fails at once only for bad
// options or a manager that was not started; every other trouble (no
// folder yet, a watcher error, an event overflow) is logged and recovered
// from.
//
// # What it does
//
//   - A new dw-plugin-<name> is loaded, with its subsystems.<name> section
//     or, without one, empty settings and the plugin's default limits.
//   - A replaced binary (new SHA-256) is swapped: the old process is
//     stopped gracefully, then the new file is started with the current
//     settings and limits (those last applied, as after a crash). The log
//     says "plugin swapped" with took (first event to serving), settle
//     (first event to rescan) and swap (rescan to serving). If the new
//     binary is refused — incompatible SDK or protocol, a checksum pinned
//     to another hash, a crash at start — the old one is not brought
//     back: the subsystem stays down, refused, with last_error saying why,
//     and the log says "replaced plugin binary refused" at error level.
//     Installing a good binary (or Restart) brings it back. A swapped-in
//     binary is a new plugin instance: its Restarts count and crash
//     history start from zero.
//   - A removed binary stops its plugin; a configured subsystem becomes
//     missing, an unconfigured plugin disappears from Statuses.
//   - A binary whose content did not change (touch, chmod, the same file
//     copied again) restarts nothing, except that a plugin left refused or
//     quarantined is tried again: a settled change of its file is the
//     operator's way of saying "try again".
//
// All of it goes through Manager.Rescan, which does the diffing, stopping
// and starting, and is serialised with every other Rescan (SIGHUP, the
// API, a config reload). WatchDir runs one Rescan as it starts, to catch
// up with what changed since Start. At most one Rescan of the watcher runs
// at a time (it returns once the plugins it started have settled, so a
// start that hangs delays the next by up to plugins.start_timeout); events
// arriving meanwhile are collected for the next one.
//
// # Which names count
//
// Only dw-plugin-<name> with a valid name (see ValidName) is watched.
// Hidden files (.dw-plugin-x.tmp, as rsync and most installers write) and
// names that are not valid plugin names (dw-plugin-x.tmp,
// dw-plugin-x.partial, dw-plugin-x~) never trigger anything, so the safe
// ways to install are all fine: copy to a temporary name, then rename it
// into place (atomic; the recommended way); cp or install -m755 straight
// into the folder; go build -o straight into the folder. A visible
// dw-plugin-* name that is not a valid plugin name is reported once as a
// warning by the next scan that sees it (a typo must not go unnoticed);
// use a hidden temporary name to avoid even that.
//
// # A binary still being copied is never launched
//
// A file counts as settled when a stat of it (size, mtime, ctime, inode,
// mode) has not changed for Settle, checked again when the window ends;
// every event on the name restarts the window, even when the stat looks
// the same (time stamps are coarse). Bursts — the dozens of events of one
// copy, or many replacements in a row — thus end in one Rescan, for the
// last state. A settled file that some process still has open for writing
// (a copy paused longer than Settle) is not loaded: it is checked again
// after Settle, doubling up to 5s, and loaded once closed (Linux read
// leases; see openForWriting). Discovery has rules of its own (see
// discover): it does not load a file whose mtime is less than
// DefaultSettle old unless it saw it unchanged for that long, nor one
// open for writing, so a Rescan from elsewhere (SIGHUP, a poll, a Start
// racing a copy) does not launch a half-written file either. Every
// PollInterval, binaries that look loadable but that the manager has not
// taken up as they are (discovery deferred them, and the writer closing
// the file sends no event) are checked again.
//
// If a half-written binary is launched anyway (a file system without
// leases and a writer pausing longer than Settle), the failure does not
// stick: exec fails with ETXTBSY while the file is open for writing, and
// a plugin refused for that is retried up to 5 times (Settle, doubling,
// up to 5s apart) once the file is no longer open for writing; a file
// that was closed half-written (ENOEXEC, or a crash at start) gets a new
// SHA-256 when it is completed, which the next settled change swaps in.
//
// # Keeping the watch alive
//
// The watch is on the folder, not on files (an atomic rename replaces the
// inode). An event overflow makes the watcher list and stat the whole
// folder again; any other watcher error, or the folder itself being
// removed or renamed, drops the watch and sets it up again (every second
// until the folder exists again; its files are then treated as new). Every
// PollInterval the folder is listed and stat'ed regardless, and the watch
// is re-armed if the path now leads to another folder (a symlinked
// plugins.dir whose target was swapped) or the kernel dropped it (the
// file system was unmounted). Symlinked binaries are followed: a change
// of a link is an event, a change of its target outside the folder is
// seen by the poll.
func (m *Manager) WatchDir(ctx context.Context, opts DirWatchOptions) error {
	if opts.Settle < 0 {
		return fmt.Errorf("watch plugins.dir: settle %s: must not be negative", opts.Settle)
	}
	if opts.Settle == 0 {
		opts.Settle = DefaultSettle
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Logger == nil {
		opts.Logger = m.log
	}
	m.mu.Lock()
	started, stopped := m.started, m.stopped
	m.mu.Unlock()
	switch {
	case stopped:
		return nil
	case !started:
		return errors.New("watch plugins.dir: the manager is not started: call Start first")
	}

	// Run until ctx ends or the manager stops.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatch := context.AfterFunc(m.ctx, cancel)
	defer stopWatch()

	d := &dirWatcher{
		m:        m,
		dir:      m.opts.Dir,
		opts:     opts,
		log:      opts.Logger,
		files:    newSettler(opts.Settle),
		batch:    map[string]*pendingFile{},
		attempts: map[string]int{},
		deferred: map[string]string{},
		results:  make(chan applyResult, 1),
	}
	d.run(wctx)
	if err := ctx.Err(); err != nil {
		return err
	}
	return nil
}

// dirWatcher is the state of one WatchDir; only its loop touches it.
type dirWatcher struct {
	m    *Manager
	dir  string
	opts DirWatchOptions
	log  hclog.Logger

	w       *fsnotify.Watcher // nil while disarmed
	dirID   fileID            // device and inode of the folder watched
	rearmAt time.Time         // when to try arming again, if disarmed
	warned  bool              // the current failure to arm was logged
	// relost: a lost watch was logged ("re-arming"), so arming again must
	// be logged too — also when it works at once (the folder already came
	// back, a transient watcher error), or the log would end on "lost".
	relost bool

	files    *settler
	batch    map[string]*pendingFile // settled names waiting for a Rescan
	attempts map[string]int          // ETXTBSY retries per plugin
	deferred map[string]string       // name -> reason last logged for a deferral

	working bool // a Rescan of ours runs
	results chan applyResult
	wg      sync.WaitGroup
}

func (d *dirWatcher) run(ctx context.Context) {
	defer d.wg.Wait()
	defer d.disarm()
	armed := d.arm(time.Now())
	d.baseline()
	// Catch up with what changed since Start, before taking events.
	if d.opts.beforeCatchUp != nil {
		d.opts.beforeCatchUp()
	}
	d.applied(d.apply(ctx, nil, nil), time.Now())
	if d.opts.afterCatchUp != nil {
		d.opts.afterCatchUp()
	}
	if armed {
		d.log.Debug("watching plugins.dir", "dir", d.dir, "settle", d.opts.Settle, "poll_interval", d.opts.PollInterval)
	}

	var pollC <-chan time.Time
	if d.opts.PollInterval > 0 {
		t := time.NewTicker(d.opts.PollInterval)
		defer t.Stop()
		pollC = t.C
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.startWork(ctx)
		now := time.Now()
		next, ok := d.files.next()
		if d.w == nil && (!ok || d.rearmAt.Before(next)) {
			next, ok = d.rearmAt, true
		}
		if ok {
			timer.Reset(max(next.Sub(now), 0))
		} else {
			timer.Stop()
		}
		var events <-chan fsnotify.Event
		var errs <-chan error
		if d.w != nil {
			events, errs = d.w.Events, d.w.Errors
		}
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				d.lost(time.Now(), "the watcher closed its event channel")
				continue
			}
			d.event(ev, time.Now())
		case err, ok := <-errs:
			if !ok {
				d.lost(time.Now(), "the watcher closed its error channel")
				continue
			}
			d.watchError(err, time.Now())
		case <-timer.C:
			now := time.Now()
			if d.w == nil && !now.Before(d.rearmAt) && d.arm(now) {
				d.resync(now) // what happened while nobody watched
			}
			d.due(now)
		case <-pollC:
			d.poll(time.Now())
		case res := <-d.results:
			d.working = false
			d.applied(res, time.Now())
		}
	}
}

// arm sets up the watch on the folder and reports whether it worked; if
// not, it schedules another try in rearmInterval and warns (once until it
// works again). Once it works after a failure or a lost watch, it logs
// "watching plugins.dir again".
//
// The folder is stat'ed before and after the watch is added, and the two
// must agree: the watch is on the inode the path led to when it was added,
// and dirID must be that inode, or a path swapped in between (a symlinked
// plugins.dir whose target changed) would leave the watch on the old
// folder while every poll found the path unchanged.
func (d *dirWatcher) arm(now time.Time) bool {
	if d.opts.noEvents {
		d.rearmAt = now.Add(100 * 365 * 24 * time.Hour)
		return false
	}
	fail := func(err error) bool {
		d.rearmAt = now.Add(rearmInterval)
		if !d.warned {
			d.warned = true
			if errors.Is(err, fs.ErrNotExist) {
				d.log.Warn("plugins.dir does not exist; waiting for it to appear", "dir", d.dir)
			} else {
				d.log.Warn("cannot watch plugins.dir; retrying every second", "dir", d.dir, "error", err, "poll_interval", d.opts.PollInterval)
			}
		}
		return false
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fail(fmt.Errorf("create a file system watcher: %w", err))
	}
	var id fileID
	for try := 0; ; try++ {
		before, err := os.Stat(d.dir)
		if err == nil {
			err = w.Add(d.dir)
		}
		var after os.FileInfo
		if err == nil {
			after, err = os.Stat(d.dir)
		}
		if err != nil {
			_ = w.Close()
			return fail(err)
		}
		if id = dirIdentity(after); id == dirIdentity(before) {
			break
		}
		// The path changed under us: watch what it leads to now.
		_ = w.Remove(d.dir)
		if try == 2 {
			_ = w.Close()
			return fail(errors.New("the folder was replaced while the watch was set up"))
		}
	}
	d.w, d.dirID = w, id
	if d.warned || d.relost {
		d.warned, d.relost = false, false
		d.log.Info("watching plugins.dir again", "dir", d.dir)
	}
	return true
}

func dirIdentity(fi os.FileInfo) fileID {
	id := idOf(fi)
	return fileID{dev: id.dev, ino: id.ino}
}

// disarm drops the watch.
func (d *dirWatcher) disarm() {
	if d.w != nil {
		_ = d.w.Close()
		d.w = nil
	}
}

// lost drops a watch that stopped working, sets it up again at once (or
// every second until that works), and stats the folder again, as events
// may have been lost. Every "lost" is followed by "watching plugins.dir
// again" once the watch works, even if that is at once: a folder removed
// and recreated before the loop got to the removal event is watched again
// without ever being missing to arm.
func (d *dirWatcher) lost(now time.Time, why string) {
	d.log.Warn("watch on plugins.dir lost; re-arming", "dir", d.dir, "reason", why)
	d.relost = true
	d.disarm()
	d.arm(now)
	d.resync(now)
}

// watchError handles an error from the watcher: an overflow lost events,
// so everything is stat'ed again; anything else re-arms.
func (d *dirWatcher) watchError(err error, now time.Time) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		d.log.Warn("plugins.dir watcher overflowed: events were lost; checking every file again", "dir", d.dir)
		d.resync(now)
		return
	}
	d.lost(now, err.Error())
}

// event handles one fsnotify event.
func (d *dirWatcher) event(ev fsnotify.Event, now time.Time) {
	if filepath.Clean(ev.Name) == d.dir {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			d.lost(now, "plugins.dir itself was removed or renamed")
		}
		return
	}
	if filepath.Dir(ev.Name) != d.dir {
		return
	}
	name, ok, _ := pluginFileName(filepath.Base(ev.Name))
	if !ok {
		return // temporaries, hidden files, other files
	}
	d.log.Trace("plugins.dir event", "file", filepath.Base(ev.Name), "op", ev.Op.String())
	if d.files.pending[name] == nil {
		d.log.Debug("plugin binary changed; waiting for it to settle", "plugin", name, "op", ev.Op.String(), "settle", d.opts.Settle)
	}
	d.files.touch(name, statFile(d.path(name)), now)
	d.noteInstance(name)
}

// noteInstance records, for a change of name that has just begun, the
// plugin instance it found.
func (d *dirWatcher) noteInstance(name string) {
	p := d.files.pending[name]
	if p == nil || p.instSet {
		return
	}
	p.instSet = true
	if d.m == nil {
		return
	}
	d.m.mu.Lock()
	p.inst = d.m.plugins[name]
	d.m.mu.Unlock()
}

func (d *dirWatcher) path(name string) string {
	return filepath.Join(d.dir, BinaryPrefix+name)
}

// poll lists the folder (a fallback for file systems without events),
// checks that the watch still watches the folder the path leads to, and
// looks for plugins refused with ETXTBSY by someone else's Rescan.
func (d *dirWatcher) poll(now time.Time) {
	if d.w != nil {
		fi, err := os.Stat(d.dir)
		switch {
		case err != nil:
			d.lost(now, fmt.Sprintf("cannot stat plugins.dir: %v", err))
		case dirIdentity(fi) != d.dirID:
			d.lost(now, "plugins.dir now leads to another folder (a symlink swapped?)")
		case len(d.w.WatchList()) == 0:
			d.lost(now, "the kernel dropped the watch (file system unmounted?)")
		}
	}
	cur := d.list() // one listing serves the three comparisons
	d.resyncWith(cur, now)
	d.retryBusy(now)
	if d.working {
		return // the names of the Rescan under way are not taken up yet
	}
	for name, st := range d.unaccepted(cur) {
		d.log.Debug("plugin binary not taken up yet; checking it again", "plugin", name)
		d.files.retry(name, st, now, 0, false)
		d.noteInstance(name)
	}
	for _, name := range d.vanished(cur) {
		d.log.Debug("plugin binary gone but the plugin still loaded; checking it again", "plugin", name)
		d.files.retry(name, fileState{}, now, 0, false)
		d.noteInstance(name)
	}
}

// vanished returns, sorted, the plugins the manager runs from a binary of
// the folder that is no longer there, and that no check is pending for: a
// binary that came and went while a Rescan took it up (between the
// baseline and the first poll, or between events) is never seen gone by
// comparing listings. cur is the folder's listing.
func (d *dirWatcher) vanished(cur map[string]fileState) []string {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	var out []string
	for name, p := range d.m.plugins {
		if _, ok := cur[name]; ok || p.bin == nil || d.files.pending[name] != nil || d.batch[name] != nil {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// unaccepted returns the binaries of the folder that look loadable but
// that the manager has not taken up as they are now, and that no check is
// pending for: discovery deferred them (open for writing, say) and no
// event will come when that ends — closing a file is none. cur is the
// folder's listing.
func (d *dirWatcher) unaccepted(cur map[string]fileState) map[string]fileState {
	out := map[string]fileState{}
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	for name, st := range cur {
		if !st.exists || !st.mode.IsRegular() || st.mode.Perm()&0o111 == 0 || st.id.size == 0 ||
			d.files.pending[name] != nil || d.batch[name] != nil {
			continue
		}
		if p := d.m.plugins[name]; p == nil || p.bin == nil || p.bin.id != st.id {
			out[name] = st
		}
	}
	return out
}

// baseline records the folder as it is, without treating anything as
// changed.
func (d *dirWatcher) baseline() {
	for name, st := range d.list() {
		d.files.known[name] = st
	}
}

// resync lists and stats the folder and records what differs from what
// was known (a missing folder holds nothing).
func (d *dirWatcher) resync(now time.Time) { d.resyncWith(d.list(), now) }

// resyncWith is resync over a listing already made.
func (d *dirWatcher) resyncWith(seen map[string]fileState, now time.Time) {
	for name, st := range seen {
		if d.files.observe(name, st, now) {
			d.log.Debug("plugins.dir scan: binary changed", "plugin", name, "working", d.working)
			d.noteInstance(name)
		}
	}
	for name := range d.files.known {
		if _, ok := seen[name]; !ok && d.files.observe(name, fileState{}, now) {
			d.log.Debug("plugins.dir scan: binary gone", "plugin", name, "working", d.working)
			d.noteInstance(name)
		}
	}
}

// list stats every dw-plugin-<name> of the folder.
func (d *dirWatcher) list() map[string]fileState {
	out := map[string]fileState{}
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return out
	}
	for _, e := range entries {
		if name, ok, _ := pluginFileName(e.Name()); ok {
			out[name] = statFile(d.path(name))
		}
	}
	return out
}

// due checks the names whose settle window has passed: unchanged ones go
// to the next Rescan, unless still open for writing.
func (d *dirWatcher) due(now time.Time) {
	for _, name := range d.files.due(now) {
		st := statFile(d.path(name))
		p, settled := d.files.confirm(name, st, now)
		if !settled {
			continue
		}
		if st.exists && pathOpenForWriting(d.path(name)) {
			wait := min(d.opts.Settle<<min(p.deferrals, 5), busyRetryMax)
			reason := "open for writing by another process (still being copied?)"
			if d.deferred[name] != reason {
				d.deferred[name] = reason
				d.log.Debug("plugin binary not ready; deferring", "plugin", name, "path", d.path(name), "reason", reason, "check_again_in", wait)
			}
			d.files.postpone(name, p, now, wait)
			continue
		}
		delete(d.deferred, name)
		d.log.Debug("plugins.dir change settled; queued for a rescan", "plugin", name, "exists", st.exists, "working", d.working)
		if q := d.batch[name]; q != nil {
			p.first, p.inst, p.instSet = q.first, q.inst, q.instSet
			p.restart = p.restart || q.restart
		}
		d.batch[name] = p
	}
}

// startWork starts a Rescan for the collected names, if there are any and
// none of ours runs.
func (d *dirWatcher) startWork(ctx context.Context) {
	if d.working || len(d.batch) == 0 || ctx.Err() != nil {
		return
	}
	batch := d.batch
	d.batch = map[string]*pendingFile{}
	// The Rescan may take up files still settling too (discovery has its
	// own rules): their first change times let it report how long they
	// took.
	firsts := map[string]time.Time{}
	for name, p := range d.files.pending {
		firsts[name] = p.first
	}
	d.working = true
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.results <- d.apply(ctx, batch, firsts)
	}()
}

// applyResult is what a Rescan of the watcher left behind.
type applyResult struct {
	busy []string // plugins refused with ETXTBSY
}

// apply runs one Rescan for batch, reports what it changed, and tries
// again the plugins that a settled change left refused or quarantined.
func (d *dirWatcher) apply(ctx context.Context, batch map[string]*pendingFile, firsts map[string]time.Time) applyResult {
	m := d.m
	type snap struct {
		p   *instance
		bin *binary
		st  Status
	}
	snapshot := func() map[string]snap {
		m.mu.Lock()
		defer m.mu.Unlock()
		out := make(map[string]snap, len(m.plugins))
		for name, p := range m.plugins {
			out[name] = snap{p, p.bin, p.statusLocked()}
		}
		return out
	}
	before := snapshot()
	t0 := time.Now()
	err := m.Rescan(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("rescan of plugins.dir failed; retrying at the next change or poll", "dir", d.dir, "error", err)
		}
		return applyResult{}
	}
	after := snapshot()
	// Report the names of the batch, and any other whose binary this
	// Rescan changed (found by the first Rescan or a poll). A config
	// reload may replace instances meanwhile, but keeps their binary.
	names := slices.Collect(maps.Keys(batch))
	for name, b := range before {
		if _, ok := after[name]; !ok && b.bin != nil {
			names = append(names, name)
		}
	}
	for name, a := range after {
		if b := before[name]; !sameBinary(a.bin, b.bin) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	for _, name := range names {
		first := firsts[name]
		if c := batch[name]; c != nil {
			first = c.first
		}
		d.report(ctx, name, before[name].p, before[name].st, after[name].p, after[name].st, first, batch[name], t0)
	}

	var res applyResult
	m.mu.Lock()
	for _, name := range slices.Sorted(maps.Keys(m.plugins)) {
		st := m.plugins[name].st
		if st.State == StateRefused && strings.Contains(st.LastError, syscall.ETXTBSY.Error()) {
			res.busy = append(res.busy, name)
		}
	}
	m.mu.Unlock()
	return res
}

// sameBinary reports whether a and b are the same file content at the
// same path (or both none).
func sameBinary(a, b *binary) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.path == b.path && a.sha256 == b.sha256
}

// report logs what one Rescan did to one plugin, and retries a plugin a
// settled change left refused or quarantined while its binary stayed the
// same.
func (d *dirWatcher) report(ctx context.Context, name string, bp *instance, bst Status, ap *instance, ast Status, first time.Time, change *pendingFile, t0 time.Time) {
	took := func(kv []any) []any {
		if first.IsZero() {
			return kv
		}
		end := time.Now()
		if !ast.StartedAt.IsZero() {
			end = ast.StartedAt
		}
		return append(kv, "took", end.Sub(first).Round(time.Millisecond),
			"settle", t0.Sub(first).Round(time.Millisecond), "swap", end.Sub(t0).Round(time.Millisecond))
	}
	hadBinary := bp != nil && bst.Path != ""
	switch {
	case ap == nil:
		if hadBinary {
			d.log.Info("plugin binary removed from plugins.dir; plugin stopped", took([]any{"plugin", name, "previous_pid", bst.PID})...)
		}
	case ap != bp && ast.Path == "":
		if hadBinary && ast.State == StateMissing {
			d.log.Warn("plugin binary removed from plugins.dir; plugin stopped, its subsystem is missing", took([]any{"plugin", name, "previous_pid", bst.PID})...)
		} else if hadBinary {
			d.log.Info("plugin binary removed from plugins.dir", "plugin", name, "state", ast.State)
		}
	case ap != bp:
		kv := []any{"plugin", name, "state", ast.State, "sha256", ast.SHA256}
		if hadBinary {
			kv = append(kv, "previous_pid", bst.PID, "previous_sha256", bst.SHA256)
		}
		switch {
		case ast.State == StateServing && hadBinary:
			d.log.Info("plugin swapped", took(append(kv, "pid", ast.PID))...)
		case ast.State == StateServing:
			d.log.Info("plugin loaded from plugins.dir", took(append(kv, "pid", ast.PID))...)
		case ast.State == StateDisabled:
			d.log.Info("plugin binary in plugins.dir, but its subsystem is disabled; not started", kv...)
		case hadBinary:
			d.log.Error("replaced plugin binary refused; the subsystem stays down until a good binary is installed or it is restarted", append(kv, "error", ast.LastError)...)
		default:
			d.log.Error("new plugin binary refused; it stays down until a good binary is installed or it is restarted", append(kv, "error", ast.LastError)...)
		}
	case change != nil && change.restart && ap == change.inst && (ast.State == StateRefused || ast.State == StateQuarantined):
		// Same binary as before (Rescan kept the instance): the operator
		// touched or rewrote the file, or it was refused while still open
		// for writing. Retry — but only the very file Rescan hashed, not
		// one that is being written again.
		d.m.mu.Lock()
		var id fileID
		if ap.bin != nil {
			id = ap.bin.id
		}
		d.m.mu.Unlock()
		if st := statFile(d.path(name)); !st.exists || st.id != id {
			return
		}
		d.log.Info("retrying a plugin left down, as its binary changed on disk", "plugin", name, "state", ast.State, "last_error", ast.LastError)
		if err := d.m.Restart(ctx, name); err != nil {
			if ctx.Err() == nil {
				d.log.Error("retried plugin still down", "plugin", name, "error", err)
			}
			return
		}
		st, _ := d.m.Status(name)
		d.log.Info("plugin loaded from plugins.dir", took([]any{"plugin", name, "state", st.State, "pid", st.PID, "sha256", st.SHA256})...)
	}
}

// applied takes the result of a Rescan of ours: plugins refused with
// ETXTBSY are scheduled for a retry.
func (d *dirWatcher) applied(res applyResult, now time.Time) {
	d.scheduleBusy(res.busy, now)
}

// retryBusy schedules retries for the plugins refused with ETXTBSY, also
// by Rescans not ours.
func (d *dirWatcher) retryBusy(now time.Time) {
	var busy []string
	d.m.mu.Lock()
	for name, p := range d.m.plugins {
		if p.st.State == StateRefused && strings.Contains(p.st.LastError, syscall.ETXTBSY.Error()) {
			busy = append(busy, name)
		}
	}
	d.m.mu.Unlock()
	d.scheduleBusy(busy, now)
}

func (d *dirWatcher) scheduleBusy(busy []string, now time.Time) {
	for name := range d.attempts {
		if !slices.Contains(busy, name) {
			delete(d.attempts, name)
		}
	}
	for _, name := range busy {
		if d.files.pending[name] != nil || d.batch[name] != nil {
			continue // a check is on its way
		}
		n := d.attempts[name]
		if n >= busyRetries {
			if n == busyRetries {
				d.attempts[name]++
				d.log.Warn("plugin still refused with ETXTBSY; no more automatic retries until its binary changes or it is restarted", "plugin", name, "retries", busyRetries)
			}
			continue
		}
		d.attempts[name] = n + 1
		wait := min(d.opts.Settle<<n, busyRetryMax)
		d.log.Info("plugin binary was busy (open for writing) when executed; retrying", "plugin", name, "attempt", n+1, "in", wait)
		d.files.retry(name, statFile(d.path(name)), now, wait, true)
		d.noteInstance(name)
	}
}

// fileState is what a stat of a candidate says; the zero value is "absent".
type fileState struct {
	exists bool
	id     fileID
	mode   fs.FileMode
}

// statFile stats path, following symlinks; anything that cannot be
// stat'ed counts as absent.
func statFile(path string) fileState {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{}
	}
	return fileState{exists: true, id: idOf(fi), mode: fi.Mode()}
}

// pendingFile is a name whose file changed and has not settled yet.
type pendingFile struct {
	first     time.Time     // the first change not yet applied (for timings)
	since     time.Time     // the last change seen, or when a wait began
	wait      time.Duration // how long after since it must stay unchanged
	restart   bool          // retry the plugin if it is down and unchanged
	deferrals int           // times it was settled but still open for writing
	// inst is the plugin instance when the change was first seen. A
	// plugin down is retried only if it is still that instance: one a
	// Rescan made meanwhile (for this very change) was tried already.
	inst    *instance
	instSet bool
}

// settler decides when changed files have settled. It is pure: callers
// pass the time, so tests can drive it with a fake clock.
type settler struct {
	settle  time.Duration
	known   map[string]fileState    // last state seen per name
	pending map[string]*pendingFile // names changed and not settled
}

func newSettler(settle time.Duration) *settler {
	return &settler{settle: settle, known: map[string]fileState{}, pending: map[string]*pendingFile{}}
}

// touch records an event on name: its window restarts even if its state
// looks the same, as time stamps are coarser than writes.
func (s *settler) touch(name string, st fileState, now time.Time) {
	s.known[name] = st
	s.begin(name, now, s.settle, true)
}

// observe records the state a scan saw; only a change starts or restarts
// the window. It reports whether the state changed.
func (s *settler) observe(name string, st fileState, now time.Time) bool {
	if old, ok := s.known[name]; ok && old == st || !ok && !st.exists {
		return false
	}
	s.known[name] = st
	s.begin(name, now, s.settle, true)
	return true
}

// retry schedules a check of name after wait although nothing changed;
// restart says whether the plugin is to be retried if it is down.
func (s *settler) retry(name string, st fileState, now time.Time, wait time.Duration, restart bool) {
	s.known[name] = st
	s.begin(name, now, wait, restart)
}

func (s *settler) begin(name string, now time.Time, wait time.Duration, restart bool) {
	p := s.pending[name]
	if p == nil {
		p = &pendingFile{first: now}
		s.pending[name] = p
	}
	p.since, p.wait = now, wait
	p.restart = p.restart || restart
	p.deferrals = 0
}

// next returns when the earliest window ends.
func (s *settler) next() (time.Time, bool) {
	var at time.Time
	for _, p := range s.pending {
		if end := p.since.Add(p.wait); at.IsZero() || end.Before(at) {
			at = end
		}
	}
	return at, !at.IsZero()
}

// due returns, sorted, the names whose window has ended at now.
func (s *settler) due(now time.Time) []string {
	var out []string
	for name, p := range s.pending {
		if !now.Before(p.since.Add(p.wait)) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// confirm checks a due name against its state now: unchanged, it has
// settled and leaves the pending set (returned); changed, its window
// starts again.
func (s *settler) confirm(name string, st fileState, now time.Time) (*pendingFile, bool) {
	p := s.pending[name]
	if p == nil {
		return nil, false
	}
	if s.known[name] != st {
		s.known[name] = st
		p.since, p.wait = now, s.settle
		return nil, false
	}
	delete(s.pending, name)
	if !st.exists {
		delete(s.known, name)
	}
	return p, true
}

// postpone puts a settled name back to be checked again after wait (it is
// still open for writing).
func (s *settler) postpone(name string, p *pendingFile, now time.Time, wait time.Duration) {
	p.since, p.wait = now, wait
	p.deferrals++
	s.pending[name] = p
}
