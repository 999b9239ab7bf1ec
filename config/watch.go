package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"
)

// Watcher defaults and bounds. See [Watcher] for what each one is for.
const (
	// DefaultSettle is the default quiet time after the last event before
	// the file is read.
	DefaultSettle = 30 * time.Millisecond
	// DefaultPollInterval is the default period of the checksum poll.
	DefaultPollInterval = 2 * time.Second

	// settleCapFactor bounds how long a steady stream of events can delay a
	// read: at most settleCapFactor settle windows after the first event.
	settleCapFactor = 10
	// pollHashEvery makes every pollHashEvery-th poll read and hash the file
	// even when its size, mtime and inode did not change.
	pollHashEvery = 10
	// rearmBackoffMin and rearmBackoffMax bound the wait between attempts
	// to re-create the fsnotify watcher or its watches.
	rearmBackoffMin = 50 * time.Millisecond
	rearmBackoffMax = 2 * time.Second
	// maxSymlinks is how many symbolic links a path may go through, as in
	// Linux (MAXSYMLINKS).
	maxSymlinks = 40
)

// WatchOptions configure a [Watcher].
type WatchOptions struct {
	// Path is the config file. It may be a symbolic link, or go through
	// some (as Kubernetes' dw.yaml -> ..data/dw.yaml, ..data ->
	// ..2026_11_27_xxx); the chain is resolved again on every event. A
	// relative path is made absolute against the working directory by
	// [NewWatcher].
	Path string
	// Settle is the quiet time after the last event before the file is
	// read: a burst of events is read once, after it ends. 0 means
	// [DefaultSettle] (30 ms). A never-ending stream of events still gets
	// the file read every 10 settle windows.
	Settle time.Duration
	// PollInterval is the period of the fallback poll that notices changes
	// on file systems without events (NFS, FUSE) and events lost in any
	// way. 0 means [DefaultPollInterval] (2 s); a negative value disables
	// polling.
	PollInterval time.Duration
	// InitialHash is the [HashContent] of the content already running: that
	// content is not delivered. Empty means none, so the content found when
	// Run starts is delivered (with Cause "start").
	InitialHash string
	// Logger receives the watcher's log; nil means no log.
	Logger hclog.Logger
}

// Change is one settled, changed content of the config file: the bytes the
// watcher read, in one read, and their hash. Act on Content, never on the
// file: by the time a Change is handled the file may hold another save, or
// be empty in the middle of one (the host parses and applies exactly
// Content).
type Change struct {
	// Content is the whole file as one read returned it ([ReadFile]), never
	// empty and at most [MaxFileSize] bytes. It is the receiver's: the
	// watcher keeps no reference to it.
	Content []byte
	// Hash is [HashContent] of Content (hex SHA-256): the very bytes
	// delivered are the ones hashed, and the ones compared with the last
	// delivered content.
	Hash string
	// Cause says what made the watcher read the file: "start" (the first
	// read of Run), "write" (an in-place write), "rename" (a file renamed
	// over the config file), "create" (the file created again, after a
	// delete or a rename away), "symlink swap" (a link of the path's chain
	// now points elsewhere), "chmod" (only attributes changed; a content
	// change seen then was missed before), "poll" (the fallback poll) or
	// "rearm" (the read after re-creating the fsnotify watcher).
	Cause string
}

// HashContent returns the hex SHA-256 of b, the hash of [Change.Hash] and
// [WatchOptions.InitialHash].
func HashContent(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Watcher watches the config file and delivers every settled, changed
// content of it. It keeps working, with no restart, through every way people
// and tools change a file, in any order and any number of times.
//
// # Events
//
// It watches folders, never the file itself (an editor's save replaces the
// inode): the folder of the file, the folder of every symbolic link on the
// way to it, and the folder the chain ends in, and filters events by the
// names on that chain. Every event for one of those names resolves the chain
// again and moves the watches when it changed, as after a Kubernetes
// ..data swap. When a folder on the way is missing (deleted), the nearest
// existing ancestor is watched for the missing name, so the folder's return
// is an event too. After moving watches the chain is resolved once more, so
// that a folder and its file created together (mkdir -p, then a write) are
// not missed between resolving and watching. An ancestor folder renamed
// away (the watch then follows the folder to its new name) is noticed at the
// next event or poll.
//
// # Settling and reading
//
// An event starts (or restarts) a settle window ([WatchOptions.Settle],
// 30 ms by default); the file is read when the window passes with no new
// event, or at the latest 10 windows after the first event of a burst, so a
// burst of writes is read once and the last content wins. The read is
// bounded by [MaxFileSize]; a bigger file is logged and not delivered. When
// the file's size or mtime changed while it was read, it is read again
// after another window, so a file being written is normally seen whole. A
// content whose hash equals the last delivered one (or
// [WatchOptions.InitialHash]) is not delivered: a touch, a chmod or a write
// of the same bytes changes nothing.
//
// # Empty files
//
// An empty file is never delivered: it is logged and the watcher waits for
// the next change. A truncate-then-write save (shell "> file", many
// programs' write path) shows an empty file for a moment, and delivering it
// would reload the defaults ([Load] reads an empty file as the defaults
// alone) between two real configurations. To run on the defaults alone, write
// a comment ("# defaults") or "{}" instead. A half-written YAML file that
// gets past the settle window is delivered; the host's parse fails and
// keeps the running configuration, and the end of the write is another event.
//
// # Missing files
//
// A missing file (deleted, or renamed away by an editor's save) is logged
// and nothing is delivered: the running configuration stays. When the file
// comes back, its content is delivered if it differs from the last one
// delivered.
//
// # Errors, overflow and polling
//
// An error from fsnotify, fsnotify.ErrEventOverflow included, closes the
// fsnotify watcher and creates a new one (a re-arm); then the file is read
// and delivered if it changed (Cause "rearm"), since events may have been
// lost. When creating the watcher or a watch fails (a folder vanishing
// between resolving and watching, inotify limits), the re-arm is retried
// after 50 ms, doubling up to 2 s, for as long as Run runs; the same backoff
// applies to a watcher that fails again within 2 s of being armed, so that
// one failing over and over costs little. Meanwhile the poll goes on.
//
// Besides, every [WatchOptions.PollInterval] (2 s by default) the chain is
// resolved again and the file stat'ed: when its size, mtime or identity
// (device and inode) changed since the last read, it is read; every 10th
// poll it is read and hashed anyway, for file systems whose mtime is coarse.
// So a file system without events (NFS, FUSE) still reloads, within a poll
// interval, and an unchanged file costs a few lstat calls per poll.
//
// # Delivery
//
// onChange runs on Run's goroutine, one call at a time; events arriving
// meanwhile wait in the kernel's queue (an overflow there is handled as
// above). A slow onChange delays the next read, and the reads after it see
// the latest content. Each [Change] carries the content read and its hash:
// the receiver acts on those bytes and does not read the file again, which
// could return a later save, or a file emptied by a save in progress.
//
// A Watcher holds no state of a run: Run may be called again after it
// returns, and starts again from InitialHash.
type Watcher struct {
	path         string
	settle       time.Duration
	pollInterval time.Duration
	initialHash  string
	log          hclog.Logger

	// Test hooks; set before Run.
	noNotify    bool                              // poll only: no fsnotify watcher
	injectErr   chan error                        // errors handled as fsnotify's
	newNotifier func() (*fsnotify.Watcher, error) // creates the fsnotify watcher
	started     func()                            // called once the first read is done

	// rearms counts the fsnotify watchers created after the first.
	rearms atomic.Int64
}

// NewWatcher returns a watcher of opts.Path. It checks the options; it does
// not touch the file system (Run does).
func NewWatcher(opts WatchOptions) (*Watcher, error) {
	if opts.Path == "" {
		return nil, errors.New("config watch: path is empty")
	}
	path, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("config watch %s: make absolute: %w", opts.Path, err)
	}
	if opts.Settle < 0 {
		return nil, fmt.Errorf("config watch %s: settle must be 0 (default %s) or more, got %s", path, DefaultSettle, opts.Settle)
	}
	if opts.InitialHash != "" {
		if b, err := hex.DecodeString(opts.InitialHash); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("config watch %s: initial hash must be a hex SHA-256 (64 hex digits) as from HashContent, got %q", path, opts.InitialHash)
		}
	}
	w := &Watcher{
		path:         path,
		settle:       opts.Settle,
		pollInterval: opts.PollInterval,
		initialHash:  strings.ToLower(opts.InitialHash),
		log:          opts.Logger,
		newNotifier:  fsnotify.NewWatcher,
	}
	if w.settle == 0 {
		w.settle = DefaultSettle
	}
	if w.pollInterval == 0 {
		w.pollInterval = DefaultPollInterval
	}
	if w.log == nil {
		w.log = hclog.NewNullLogger()
	}
	w.log = w.log.With("path", path)
	return w, nil
}

// Run watches until ctx ends, calling onChange (never concurrently, always on
// Run's goroutine) for every settled content whose hash differs from the
// last delivered one, or from [WatchOptions.InitialHash] before the first
// delivery. It reads the file once at the start. It returns ctx.Err() when
// ctx ends, or an error when it cannot start: the file's folder does not
// exist or is not a folder. Everything after the start is recovered from
// (see [Watcher]). Every goroutine Run starts has ended when it returns.
func (w *Watcher) Run(ctx context.Context, onChange func(Change)) error {
	if onChange == nil {
		return fmt.Errorf("config watch %s: onChange is nil", w.path)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(w.path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("config watch %s: folder: %w", w.path, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("config watch %s: %s is not a folder", w.path, dir)
	}

	r := &watchRun{
		w:        w,
		onChange: onChange,
		lastHash: w.initialHash,
		settle:   stoppedTimer(),
		rearm:    stoppedTimer(),
	}
	defer r.close()

	r.arm()
	r.read("start")
	if w.started != nil {
		w.started()
	}

	var pollC <-chan time.Time
	if w.pollInterval > 0 {
		t := time.NewTicker(w.pollInterval)
		defer t.Stop()
		pollC = t.C
	}
	for {
		var events <-chan fsnotify.Event
		var errs <-chan error
		if r.notifier != nil {
			events, errs = r.notifier.Events, r.notifier.Errors
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-events:
			if !ok {
				r.fail(errors.New("event channel closed"))
				continue
			}
			r.event(ev)
		case err, ok := <-errs:
			if !ok {
				err = errors.New("error channel closed")
			}
			r.fail(err)
		case err := <-w.injectErr:
			r.fail(err)
		case <-r.settle.C:
			r.settled()
		case <-r.rearm.C:
			if r.arm() {
				r.schedule("rearm")
			}
		case <-pollC:
			r.poll()
		}
	}
}

// stoppedTimer returns a timer that has not been started.
func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// watchRun is the state of one Run.
type watchRun struct {
	w        *Watcher
	onChange func(Change)

	notifier *fsnotify.Watcher // nil when closed, disabled or not created
	created  bool              // a notifier was created before
	chain    chain             // the current resolution of the path
	failing  bool              // the last arm attempt failed
	armedAt  time.Time         // of the last successful arm
	backoff  time.Duration     // the last wait before an arm attempt
	rearm    *time.Timer       // the next arm attempt

	lastHash string    // of the last delivered content (or the initial hash)
	lastFile fileState // the file as last read (or found missing)
	polls    int

	// The pending read.
	pending      bool
	pendingSince time.Time
	ops          fsnotify.Op // of the events since the last read
	swapped      bool        // the chain's target changed since the last read
	cause        string      // an explicit cause: start, poll, rearm
	settle       *time.Timer

	note    string // the last problem logged about the file, to log it once
	armNote string // the last re-arm problem logged
}

// close closes the fsnotify watcher, ending its goroutine, and stops the
// timers.
func (r *watchRun) close() {
	r.settle.Stop()
	r.rearm.Stop()
	if r.notifier != nil {
		_ = r.notifier.Close()
		r.notifier = nil
	}
}

// arm resolves the chain and, unless fsnotify is disabled, creates the
// fsnotify watcher when there is none and watches the chain's folders. On a
// failure it schedules another attempt with backoff and returns false.
func (r *watchRun) arm() bool {
	if r.w.noNotify {
		r.follow(false)
		return true
	}
	if r.notifier == nil {
		n, err := r.w.newNotifier()
		if err != nil {
			r.armFailed(fmt.Errorf("create fsnotify watcher: %w", err))
			return false
		}
		if r.created {
			r.w.rearms.Add(1)
		}
		r.notifier, r.created = n, true
	}
	if err := r.follow(true); err != nil {
		r.armFailed(err)
		return false
	}
	r.armed()
	return true
}

// follow resolves the chain again and, when sync is set and there is a
// notifier, moves the watches to the chain's folders, then resolves again,
// until the folders stay the same: a name created between a resolve and the
// watch of its folder (mkdir -p, a folder and its file created at once) is
// seen. The loop is bounded; a path that keeps changing brings events that
// call follow again.
func (r *watchRun) follow(sync bool) error {
	r.resolveChain()
	if !sync || r.notifier == nil {
		return nil
	}
	for range maxSymlinks {
		if err := r.syncWatches(); err != nil {
			return err
		}
		dirs := r.chain.dirs
		r.resolveChain()
		if slices.Equal(dirs, r.chain.dirs) {
			break
		}
	}
	return nil
}

// resolveChain resolves the chain again, noting a changed target.
func (r *watchRun) resolveChain() {
	prev := r.chain.target
	r.chain = resolve(r.w.path)
	if prev != "" && r.chain.target != prev {
		r.swapped = true
	}
}

// armed records a successful arm.
func (r *watchRun) armed() {
	if r.armNote != "" {
		r.w.log.Info("config watch re-armed")
		r.armNote = ""
	}
	r.failing = false
	r.armedAt = time.Now()
	r.rearm.Stop()
}

// syncWatches makes the notifier's watches the folders of the chain.
func (r *watchRun) syncWatches() error {
	have := map[string]bool{}
	for _, d := range r.notifier.WatchList() {
		have[d] = true
	}
	for d := range have {
		if !slices.Contains(r.chain.dirs, d) {
			_ = r.notifier.Remove(d) // may be gone already with its folder
		}
	}
	for _, d := range r.chain.dirs {
		if !have[d] {
			if err := r.notifier.Add(d); err != nil {
				return fmt.Errorf("watch folder %s: %w", d, err)
			}
		}
	}
	return nil
}

// armFailed logs err (once per different error) and schedules the next
// arm attempt.
func (r *watchRun) armFailed(err error) {
	r.retryArm()
	if msg := err.Error(); msg != r.armNote {
		r.w.log.Warn("config watch cannot arm; retrying with backoff", "error", err, "retry_in", r.backoff)
		r.armNote = msg
	} else {
		r.w.log.Debug("config watch cannot arm; retrying with backoff", "error", err, "retry_in", r.backoff)
	}
}

// retryArm schedules the next arm attempt: after rearmBackoffMin, doubling
// up to rearmBackoffMax while attempts keep failing or the fsnotify watcher
// keeps failing within rearmBackoffMax of being armed.
func (r *watchRun) retryArm() {
	if !r.failing && time.Since(r.armedAt) >= rearmBackoffMax {
		r.backoff = 0
	}
	r.failing = true
	r.backoff = min(max(2*r.backoff, rearmBackoffMin), rearmBackoffMax)
	r.rearm.Reset(r.backoff)
}

// fail handles an error of the fsnotify watcher: it closes the watcher and
// creates a new one, then the file is read after a settle window. A watcher
// that fails within rearmBackoffMax of being armed is re-created after a
// backoff instead, so that a watcher failing over and over costs little.
func (r *watchRun) fail(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		r.w.log.Warn("config watch: event queue overflowed, events were lost; re-arming and reading the file")
	} else {
		r.w.log.Warn("config watch: watcher error; re-arming and reading the file", "error", err)
	}
	if r.notifier != nil {
		_ = r.notifier.Close()
		r.notifier = nil
	}
	if !r.failing && time.Since(r.armedAt) >= rearmBackoffMax {
		r.backoff = 0
		if r.arm() {
			r.schedule("rearm")
		}
		return
	}
	r.retryArm()
}

// event handles one fsnotify event: one for a name of the chain (or one of
// its watched folders) resolves the chain again, moves the watches when it
// changed, and (re)starts the settle window.
func (r *watchRun) event(ev fsnotify.Event) {
	name := filepath.Clean(ev.Name)
	if !slices.Contains(r.chain.names, name) && !slices.Contains(r.chain.dirs, name) {
		return
	}
	r.w.log.Trace("config watch event", "event", ev.String())
	r.resync()
	r.ops |= ev.Op
	r.schedule("")
}

// resync resolves the chain again and moves the watches to its folders,
// unless an arm attempt is due anyway.
func (r *watchRun) resync() {
	if err := r.follow(!r.failing); err != nil {
		r.armFailed(err)
	}
}

// schedule starts or extends the settle window of a pending read. cause is
// the read's cause when no event says better.
func (r *watchRun) schedule(cause string) {
	now := time.Now()
	if !r.pending {
		r.pending = true
		r.pendingSince = now
	}
	if r.cause == "" {
		r.cause = cause
	}
	deadline := now.Add(r.w.settle)
	if limit := r.pendingSince.Add(settleCapFactor * r.w.settle); limit.Before(deadline) {
		deadline = limit
	}
	r.settle.Reset(time.Until(deadline))
}

// settled reads the file at the end of a settle window.
func (r *watchRun) settled() {
	if !r.pending {
		return
	}
	r.resync() // the chain may have moved since the last event
	cause := r.eventCause()
	r.pending, r.ops, r.swapped, r.cause = false, 0, false, ""
	r.read(cause)
}

// eventCause names the cause of the pending read.
func (r *watchRun) eventCause() string {
	switch {
	case r.swapped:
		return "symlink swap"
	case r.ops.Has(fsnotify.Create):
		// A file moved over an existing one yields only a Create.
		if r.lastFile.exists && !r.ops.Has(fsnotify.Remove) && !r.ops.Has(fsnotify.Rename) {
			return "rename"
		}
		return "create"
	case r.ops.Has(fsnotify.Write):
		return "write"
	case r.ops.Has(fsnotify.Rename), r.ops.Has(fsnotify.Remove):
		return "rename"
	case r.cause != "":
		return r.cause
	case r.ops.Has(fsnotify.Chmod):
		return "chmod"
	default:
		return "write"
	}
}

// poll resolves the chain again (moving the watches when it changed) and
// reads the file when its stat changed since the last read, or every
// pollHashEvery polls.
func (r *watchRun) poll() {
	r.polls++
	r.resync()
	if r.pending {
		return // a read is coming anyway
	}
	if r.swapped || r.polls%pollHashEvery == 0 || !r.lastFile.same(statFile(r.w.path)) {
		r.schedule("poll")
	}
}

// fileState is what a poll compares to know whether the file changed.
type fileState struct {
	exists bool
	info   os.FileInfo
}

// statFile stats path, following symbolic links.
func statFile(path string) fileState {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{}
	}
	return fileState{exists: true, info: fi}
}

// same reports whether s and o are the same file with the same size and
// mtime, or both missing.
func (s fileState) same(o fileState) bool {
	if !s.exists || !o.exists {
		return s.exists == o.exists
	}
	return os.SameFile(s.info, o.info) && s.info.Size() == o.info.Size() && s.info.ModTime().Equal(o.info.ModTime())
}

// read reads the file and delivers its content if it is not empty, not too
// large and differs from the last delivered content.
func (r *watchRun) read(cause string) {
	b, st, err := readWatched(r.w.path)
	if st.exists || errors.Is(err, fs.ErrNotExist) {
		r.lastFile = st
	}
	switch {
	case errors.Is(err, ErrFileChanging):
		r.w.log.Debug("config file changed while read; reading again after the settle window")
		r.schedule(cause)
		return
	case errors.Is(err, fs.ErrNotExist):
		r.problem("missing", "config file is missing; keeping the running configuration until it reappears")
		return
	case err != nil:
		r.problem(err.Error(), "config file not read; keeping the running configuration", "error", err)
		return
	case len(b) == 0:
		r.problem("empty", "config file is empty; taken as a save in progress, keeping the running configuration until it has content")
		return
	}
	r.note = ""
	h := HashContent(b)
	if h == r.lastHash {
		r.w.log.Trace("config file unchanged", "cause", cause)
		return
	}
	r.lastHash = h
	r.w.log.Debug("config file changed", "cause", cause, "hash", h, "bytes", len(b))
	r.onChange(Change{Content: b, Hash: h, Cause: cause})
}

// problem logs a problem with the file once, until a different one or a
// good read.
func (r *watchRun) problem(key, msg string, args ...any) {
	if key == r.note {
		return
	}
	r.note = key
	if key == "missing" || key == "empty" {
		r.w.log.Info(msg, args...)
	} else {
		r.w.log.Warn(msg, args...)
	}
}

// readWatched reads the regular file at path, of at most MaxFileSize bytes.
// It returns the state of the file it read (also when it refused it, so
// that a poll does not read it again until it changes) and ErrFileChanging when
// the file's size or mtime changed during the read.
func readWatched(path string) ([]byte, fileState, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fileState{}, err
	}
	st := fileState{exists: true, info: fi}
	if !fi.Mode().IsRegular() {
		// Not opened: opening a FIFO would block.
		return nil, st, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Size() > MaxFileSize {
		return nil, st, tooLarge(fi.Size())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fileState{}, err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return nil, fileState{}, fmt.Errorf("stat: %w", err)
	}
	st.info = before
	if before.Size() > MaxFileSize {
		return nil, st, tooLarge(before.Size())
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fileState{}, fmt.Errorf("read: %w", err)
	}
	if len(b) > MaxFileSize {
		return nil, st, tooLarge(int64(len(b)))
	}
	after, err := f.Stat()
	if err != nil {
		return nil, fileState{}, fmt.Errorf("stat: %w", err)
	}
	if after.Size() != before.Size() || int64(len(b)) != after.Size() || !after.ModTime().Equal(before.ModTime()) {
		return nil, fileState{}, ErrFileChanging
	}
	return b, st, nil
}

// chain is the resolution of the config path through its symbolic links.
type chain struct {
	// target is where the chain ends: the file, or the first missing (or
	// unusable) component joined with the rest of the path.
	target string
	// names are the paths whose events matter, sorted: every symbolic link
	// on the way and the last component reached (the file, or the first
	// missing one).
	names []string
	// dirs are the folders of names, sorted: the folders to watch.
	dirs []string
}

// add records the name name in the real folder dir.
func (c *chain) add(dir, name string) {
	p := filepath.Join(dir, name)
	if i, found := slices.BinarySearch(c.names, p); !found {
		c.names = slices.Insert(c.names, i, p)
	}
	if i, found := slices.BinarySearch(c.dirs, dir); !found {
		c.dirs = slices.Insert(c.dirs, i, dir)
	}
}

// resolve walks the absolute path component by component, as the kernel
// does, following symbolic links (at most maxSymlinks), and records every
// link on the way and the last component reached. It never fails: a
// missing component, a loop or a component that is not a folder ends the
// walk there, and that name is watched so that its change is an event.
func resolve(path string) chain {
	var c chain
	cur := string(filepath.Separator) // a real folder: no links in it
	pending := splitPath(path)
	links := 0
	for len(pending) > 0 {
		name := pending[0]
		pending = pending[1:]
		if name == "." {
			continue
		}
		if name == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		rest := func() string { return filepath.Join(append([]string{next}, pending...)...) }
		fi, err := os.Lstat(next)
		if err != nil {
			c.add(cur, name)
			c.target = rest()
			return c
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			c.add(cur, name) // the link may be swapped
			links++
			link, err := os.Readlink(next)
			if err != nil || links > maxSymlinks {
				c.target = rest()
				return c
			}
			if filepath.IsAbs(link) {
				cur = string(filepath.Separator)
			}
			pending = append(splitPath(link), pending...)
			continue
		}
		if len(pending) == 0 || !fi.IsDir() {
			c.add(cur, name)
			c.target = rest()
			return c
		}
		cur = next
	}
	// The path ends in ".", ".." or a link to a folder: watch where it ends.
	c.add(filepath.Dir(cur), filepath.Base(cur))
	c.target = cur
	return c
}

// splitPath splits a path into its non-empty components.
func splitPath(p string) []string {
	return slices.DeleteFunc(strings.Split(p, string(filepath.Separator)), func(s string) bool { return s == "" })
}
