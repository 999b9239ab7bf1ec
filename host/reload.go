package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host/api"
	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/host/tlsreload"
	"github.com/datawarehouse/dw/sdk/v6"
)

// ValidateTimeout bounds the ValidateLimits round of a reload or a dry run.
const ValidateTimeout = 5 * time.Second

// Problem is one reason a candidate configuration was rejected.
type Problem struct {
	// Path is the key path at fault (subsystems.kvcache.limits.max_entries),
	// if there is one.
	Path string `json:"path,omitempty"`
	// Plugin is the plugin that refused, if one did.
	Plugin string `json:"plugin,omitempty"`
	// Source is where the value came from, for problems found while parsing
	// (the file, "environment", "defaults").
	Source string `json:"source,omitempty"`
	// Message says what is wrong and what is allowed.
	Message string `json:"message"`
}

// String is "path: message", or the message alone.
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// ReloadResult is the outcome of one reload.
type ReloadResult struct {
	// At is when the reload began.
	At time.Time `json:"at"`
	// OK is true when the candidate is the running configuration now.
	OK bool `json:"ok"`
	// Error says why the reload was rejected; empty when OK.
	Error string `json:"error,omitempty"`
	// Problems are the reasons, one per key path or plugin; empty when OK.
	Problems []Problem `json:"problems,omitempty"`
	// ChangedKeys are the key paths the candidate changes (config.Diff),
	// applied or not.
	ChangedKeys []string `json:"changed_keys"`
	// Restarted are the plugins whose process the reload started, stopped
	// or restarted (on failure: also to restore them).
	Restarted []string `json:"restarted"`
	// Warnings report plugins that were down before the reload, were tried
	// again with their new section, and are still down.
	Warnings []string `json:"warnings,omitempty"`
	// DurationMS is how long the reload took, in milliseconds.
	DurationMS float64 `json:"duration_ms"`
	// Source says what asked for the reload (e.g. "api (caller admin)",
	// "SIGHUP", "file watcher").
	Source string `json:"source"`
	// Generation, Hash and FileHash are those of the configuration in
	// force after the reload (unchanged when it failed).
	Generation uint64 `json:"generation"`
	Hash       string `json:"hash"`
	FileHash   string `json:"file_hash,omitempty"`
}

// ValidateResult is the verdict of a dry run.
type ValidateResult struct {
	// OK is true when a reload of the candidate would be accepted by the
	// checks and the running plugins (a restart with new settings can still
	// fail; only a real reload tries it).
	OK bool `json:"ok"`
	// Problems are the reasons it would be rejected.
	Problems []Problem `json:"problems"`
	// ChangedKeys are the key paths it changes.
	ChangedKeys []string `json:"changed_keys"`
	// Restarts are the plugins a reload would start, stop or restart.
	Restarts []string `json:"restarts"`
	// Generation is the running generation it was checked against.
	Generation uint64 `json:"generation"`
}

// ConfigInfo describes the running configuration (GET /v1/config).
type ConfigInfo struct {
	// Generation counts the configurations applied: 1 at start, +1 per
	// successful reload that changed something.
	Generation uint64 `json:"generation"`
	// File is the config file ("" when running on the embedded defaults).
	File string `json:"file"`
	// Hash identifies the content in force (see Reload).
	Hash string `json:"hash"`
	// FileHash is the hex SHA-256 of the config file's bytes the
	// configuration in force was parsed from (config.HashContent; what
	// sha256sum prints for that content). Empty when not known: no config
	// file, or a configuration given to Reload directly.
	FileHash string `json:"file_hash,omitempty"`
	// LoadedAt is when this generation was put in force.
	LoadedAt time.Time `json:"loaded_at"`
	// LastReload is the last reload attempt, successful or not; nil before
	// the first.
	LastReload *ReloadResult `json:"last_reload"`
	// TLS is the certificate served and the last rejected change of its
	// files; nil without server.tls.
	TLS *tlsreload.Status `json:"tls,omitempty"`
}

// reloadState is the Host's live-configuration state.
type reloadState struct {
	// sem is the reload lock (capacity 1), taken with a context.
	sem chan struct{}
	// cur is the running configuration; replaced whole, never modified.
	cur     atomic.Pointer[configSnapshot]
	metrics *reloadMetrics
	// beforeParse, when set (by tests, before Start), is called by every
	// reload of file content with the lock held, just before the content is
	// parsed: what the reload applies is content, whatever the file holds
	// by then.
	beforeParse func(source string, content []byte)
}

// configSnapshot is the running configuration and what is shown about it.
type configSnapshot struct {
	cfg        *config.Config
	generation uint64
	hash       string
	// fileHash is config.HashContent of the file bytes cfg was parsed from,
	// "" when not known (see ConfigInfo.FileHash).
	fileHash string
	loadedAt time.Time
	last     *ReloadResult
}

// reloadMetrics are the reload metrics on the host registry.
type reloadMetrics struct {
	successful  prometheus.Gauge
	successTime prometheus.Gauge
	generation  prometheus.Gauge
	total       *prometheus.CounterVec
}

// initReload sets up the reload state once the host's config is running
// and registers the reload metrics on reg.
func (h *Host) initReload(reg *prometheus.Registry) error {
	now := time.Now()
	m := &reloadMetrics{
		successful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dw_config_last_reload_successful",
			Help: "Whether the last config reload succeeded (1) or was rejected (0); 1 before the first.",
		}),
		successTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dw_config_last_reload_success_timestamp_seconds",
			Help: "When the running config was last loaded or reloaded successfully, in seconds since the epoch.",
		}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dw_config_generation",
			Help: "Generation of the running config: 1 at start, +1 per successful reload that changed it.",
		}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dw_config_reloads_total",
			Help: "Config reloads by result (success or failure).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.successful, m.successTime, m.generation, m.total} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register reload metrics: %w", err)
		}
	}
	m.successful.Set(1)
	m.successTime.Set(float64(now.UnixNano()) / 1e9)
	m.generation.Set(1)
	m.total.WithLabelValues("success")
	m.total.WithLabelValues("failure")
	h.reload.metrics = m
	h.reload.sem = make(chan struct{}, 1)
	snap := &configSnapshot{cfg: h.cfg, generation: 1, hash: configHash(h.cfg), loadedAt: now}
	if h.opts.ConfigPath != "" {
		snap.fileHash = h.opts.ConfigFileHash
	}
	h.reload.cur.Store(snap)
	return nil
}

// configHash is the content hash of c (see Reload).
func configHash(c *config.Config) string {
	b, err := json.Marshal(c.Redacted())
	if err != nil {
		// Redacted holds only YAML values and strings; this cannot happen.
		b = []byte(err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Config returns the running configuration. It must not be modified; it is
// replaced whole by a successful reload.
func (h *Host) Config() *config.Config {
	if s := h.reload.cur.Load(); s != nil {
		return s.cfg
	}
	return h.cfg
}

// ConfigInfo describes the running configuration and the last reload.
func (h *Host) ConfigInfo() ConfigInfo {
	s := h.reload.cur.Load()
	if s == nil {
		return ConfigInfo{File: h.opts.ConfigPath}
	}
	info := ConfigInfo{Generation: s.generation, File: h.opts.ConfigPath, Hash: s.hash, FileHash: s.fileHash, LoadedAt: s.loadedAt}
	if s.last != nil {
		last := *s.last
		info.LastReload = &last
	}
	if h.tls != nil {
		st := h.tls.Status()
		info.TLS = &st
	}
	return info
}

// errNotStarted is returned by the reload functions before Start.
var errNotStarted = errors.New("the host is not started")

// ReloadFile reloads the host's config file (Options.ConfigPath; the
// embedded defaults and the environment when it is "") now. It reads the
// file once (config.ReadFile), and those bytes are what is parsed,
// validated and applied, and what ConfigInfo.FileHash records the hash of,
// so that the file watcher, delivering the same content later, reloads
// nothing. A read that overlaps a save (the file's size or mtime changed
// during it) is done again after config.DefaultSettle, at most
// fileReadAttempts times in all. A file that cannot be read, is empty (a
// truncate-then-write caught in the middle: it is never taken as "the
// defaults alone" here, as the watcher never delivers it either; write
// "{}" for that) or does not parse is a failed reload, recorded and
// reported like any other. SIGHUP, POST /v1/config/reload and `dw config
// reload` call this; the file watcher does not (see Watch).
func (h *Host) ReloadFile(ctx context.Context, source string) ReloadResult {
	return h.reloadContent(ctx, nil, "", source, false, true)
}

// errEmptyFile refuses to reload an empty config file.
func errEmptyFile(path string) error {
	return &config.Error{Problems: []config.Problem{{Source: path, Message: "the file is empty: taken as a save in progress, " +
		`the running configuration stays; to run on the defaults alone, write "{}" or a comment`}}}
}

// fileReadAttempts bounds the reads of ReloadFile when each overlaps a save.
const fileReadAttempts = 3

// readConfigFile reads the config file with config.ReadFile, again after
// config.DefaultSettle when a read overlapped a save, up to
// fileReadAttempts reads, or until ctx ends.
func readConfigFile(ctx context.Context, path string) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		b, err := config.ReadFile(path)
		if !errors.Is(err, config.ErrFileChanging) || attempt == fileReadAttempts {
			return b, err
		}
		t := time.NewTimer(config.DefaultSettle)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// reloadChange reloads the content the file watcher delivered: exactly
// c.Content, never the file again (by now it may hold another save, or be
// empty in the middle of one). A content whose hash is that of the file in
// force (read first by a SIGHUP or API reload, or at start) reloads nothing
// and is not recorded: the result is OK, with the running generation. After
// a failed reload it does run (and changes nothing), so that reverting a
// rejected edit is recorded as a successful reload.
func (h *Host) reloadChange(ctx context.Context, c config.Change) ReloadResult {
	return h.reloadContent(ctx, c.Content, c.Hash, "file change ("+c.Cause+")", true, false)
}

// reloadContent parses content, the config file's bytes whose hash is
// fileHash (nil and "" for no config file: the defaults and the
// environment), and applies it as Reload does. With skipInForce, a
// fileHash equal to the one in force reloads nothing, unless the last
// reload failed.
func (h *Host) reloadContent(ctx context.Context, content []byte, fileHash, source string, skipInForce, readFile bool) ReloadResult {
	begin := time.Now()
	release, err := h.lockReload(ctx)
	if err != nil {
		return lockFailed(begin, source, err)
	}
	defer release()
	snap := h.reload.cur.Load()
	path := h.opts.ConfigPath
	var readErr error
	if readFile && path != "" {
		// Read under the reload lock: a reload that waited for another
		// (the watcher's, applying a newer save) reads the file as it is
		// now, never bytes older than what is in force.
		if content, readErr = readConfigFile(ctx, path); readErr == nil {
			fileHash = config.HashContent(content)
			// An empty file is a save in progress, unless it is what the
			// host started on (dw serve takes an empty file as the
			// defaults alone): then there is nothing to reload.
			if len(content) == 0 && fileHash != snap.fileHash {
				readErr = errEmptyFile(path)
			}
		}
	}
	emptyInForce := readFile && readErr == nil && len(content) == 0 && path != ""
	if (skipInForce || emptyInForce) && fileHash != "" && fileHash == snap.fileHash && (snap.last == nil || snap.last.OK) {
		h.logger.Debug("config file content already in force; nothing to reload", "source", source, "file_hash", fileHash)
		return ReloadResult{At: begin, OK: true, Source: source, ChangedKeys: []string{}, Restarted: []string{},
			Generation: snap.generation, Hash: snap.hash, FileHash: snap.fileHash}
	}
	if h.reload.beforeParse != nil && readErr == nil {
		h.reload.beforeParse(source, content)
	}
	var candidate *config.Config
	switch {
	case readErr != nil:
		err = readErr
	case path == "":
		candidate, err = config.Load("") // the defaults and the environment: no file
	default:
		candidate, err = config.Parse(content, path)
	}
	if err != nil {
		res := ReloadResult{At: begin, Source: source, ChangedKeys: []string{}, Restarted: []string{},
			Generation: snap.generation, Hash: snap.hash, FileHash: snap.fileHash, Problems: problemsOf(err)}
		h.finish(snap, nil, "", &res)
		return res
	}
	return h.transact(ctx, begin, snap, candidate, fileHash, source)
}

// lockFailed is the result of a reload that ended waiting for the lock:
// nothing was attempted, nothing is recorded.
func lockFailed(begin time.Time, source string, err error) ReloadResult {
	return ReloadResult{At: begin, Source: source, Error: err.Error(), Problems: []Problem{{Message: err.Error()}},
		ChangedKeys: []string{}, Restarted: []string{}}
}

// problemsOf turns a parse error into problems.
func problemsOf(err error) []Problem {
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) == 0 {
		return []Problem{{Message: err.Error()}}
	}
	out := make([]Problem, len(ce.Problems))
	for i, p := range ce.Problems {
		out[i] = Problem{Path: p.Path, Source: p.Source, Message: p.Message}
	}
	return out
}

// lockReload takes the reload lock, or fails when ctx ends first.
func (h *Host) lockReload(ctx context.Context) (release func(), err error) {
	if h.reload.sem == nil {
		return nil, fmt.Errorf("reload config: %w", errNotStarted)
	}
	select {
	case h.reload.sem <- struct{}{}:
		return func() { <-h.reload.sem }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("reload config: waiting for the reload in progress: %w", ctx.Err())
	}
}

// Reload applies candidate, a configuration parsed and validated by
// config.Load or config.Parse, as one transaction: on success it is the
// running configuration, with the next generation; on failure everything
// stays as it was. source says what asked for it (for the log and the
// result). The result is also recorded for ConfigInfo and the metrics —
// unless ctx ended while waiting for another reload, in which case nothing
// was attempted.
//
// # The transaction
//
// Reload takes a candidate configuration that config.Load or config.Parse
// has already parsed and validated, and applies it all or nothing. Reloads
// are serialised (one at a time); the running
// configuration, its generation, hash and last reload are one snapshot
// swapped atomically, so a reader (ConfigInfo, GET /v1/config) sees either
// the old or the new one, never a mix.
//
//  1. Diff (config.Compare) the candidate against the running config.
//  2. Check what no plugin is asked about. server.listen, data_dir,
//     plugins.dir and log.format cannot change while dw runs: the reload
//     is rejected with a message naming the key, the old and the new value
//     ("restart dw to apply"). (log.format is one of them because hclog
//     fixes a logger's format when it is created, and every component
//     holds a logger derived from the host's.) Changed server.auth.tokens
//     must all be readable (their variables set, non-empty, distinct). A
//     changed server.audit path must be in an existing folder (the file
//     is opened, and the audit log switched, first thing in step 4). A
//     new or changed pin in plugins.checksums must match the binary of a
//     plugin that is running, else the reload would have to stop it.
//  3. ValidateLimits on every serving plugin whose limits change — also
//     those that will restart for a settings change, asking the running
//     process — in parallel, within ValidateTimeout. Any refusal rejects
//     the whole reload; the problem names the key path the plugin
//     complained about (subsystems.<name>.limits.<key>) and the plugin.
//     A plugin that is not serving cannot be asked: its limits are
//     checked when it next starts.
//
// Nothing has changed so far; Validate (the dry run, POST
// /v1/config/validate) stops here. A candidate equal to the running
// config ends here too: a successful reload that keeps the generation.
// Otherwise, with the next generation number g:
//
//  4. The plugin start options (plugins.start_timeout, plugins.checksums,
//     the log level handed to plugins, the token variables hidden from
//     them) take effect for the starts that follow.
//  5. ApplyLimits(g) on every plugin whose limits change and which is not
//     restarted, in parallel. If one fails, those already applied get their
//     previous limits and generation back, and the reload fails. (A plugin
//     that is not serving only has them recorded for its next start.)
//  6. Every subsystem whose plugin must start, stop or restart — settings
//     changed, enabled, disabled, a section added or removed that changes
//     one of these — is reconfigured (supervisor.Manager.Reconfigure), in
//     parallel: the plugin restarts with the new settings and limits. If a
//     plugin that was serving before does not serve again (Configure
//     rejected the settings, it crashed at start, ApplyLimits refused), or
//     a subsystem being enabled cannot start, the reload fails: every
//     plugin reconfigured in this step gets its previous section back and
//     is restarted with it, the limits of step 5 are rolled back, and the
//     previous configuration keeps running.
//     A plugin that was already down before the reload (refused,
//     quarantined, waiting to restart after a crash) is tried again with its
//     new section whenever its section or its pin changes; if it stays down
//     that is reported as a warning, not a failure: there was nothing
//     running to keep.
//  7. Commit: the sections that needed no restart are recorded, every
//     plugin acknowledges generation g (Status.Generation; the untouched
//     ones run it too), the API tokens, the host log level and
//     server.max_connections_per_address (for connections accepted from
//     then on) are replaced, and the new snapshot is swapped in.
//
// Failures are logged at error with the key paths and plugins, shown in
// GET /v1/config (last_reload) and counted in the metrics; successes are
// logged at info with the changed keys. Once step 4 has begun, the
// transaction runs to its end (success or rollback) even if ctx is
// cancelled: ctx bounds only the wait for the reload lock and the
// validation round.
//
// # Drop-in subsystems
//
// A binary in plugins.dir without a config section runs with its default
// limits and no settings, so a missing section is treated as
// {enabled: true} (see config.Diff). Removing the section of a plugin
// whose binary stays therefore resets its limits (live) and settings (a
// restart, if it had any); to stop a plugin, disable it or remove its
// binary.
//
// # Content hash
//
// A configuration's hash is the hex SHA-256 of its canonical JSON form
// with secrets redacted (config.Config.Redacted, keys sorted): it is safe
// to show, and identifies the content in force — defaults and environment
// overrides included. A change of a secret alone (a password in a DSN)
// still reloads (the diff compares the real values) and gets a new
// generation, but keeps the hash.
//
// The file hash (ConfigInfo.FileHash) is another thing: the hex SHA-256 of
// the config file's bytes the configuration in force was parsed from. A
// reload of the file (ReloadFile, or a change the watcher delivered)
// records the hash of the very bytes it parsed, also when they change
// nothing; Reload, given a candidate that changes the configuration, leaves
// none.
func (h *Host) Reload(ctx context.Context, candidate *config.Config, source string) ReloadResult {
	begin := time.Now()
	release, err := h.lockReload(ctx)
	if err != nil {
		return lockFailed(begin, source, err)
	}
	defer release()
	return h.transact(ctx, begin, h.reload.cur.Load(), candidate, "", source)
}

// transact is the transaction of Reload, with the reload lock held, from
// the running snapshot snap. fileHash is the hash of the file bytes
// candidate was parsed from ("" when it was not parsed from the file): on
// success it becomes the snapshot's, and a candidate from elsewhere that
// changes the configuration leaves no file hash.
func (h *Host) transact(ctx context.Context, begin time.Time, snap *configSnapshot, candidate *config.Config, fileHash, source string) ReloadResult {
	res := ReloadResult{At: begin, Source: source, ChangedKeys: []string{}, Restarted: []string{},
		Generation: snap.generation, Hash: snap.hash, FileHash: snap.fileHash}
	if candidate == nil {
		res.Problems = []Problem{{Message: "no candidate configuration"}}
		h.finish(snap, nil, "", &res)
		return res
	}
	if err := candidate.Validate(); err != nil {
		res.Problems = problemsOf(err)
		h.finish(snap, nil, "", &res)
		return res
	}
	d := config.Compare(snap.cfg, candidate)
	res.ChangedKeys = append(res.ChangedKeys, d.ChangedKeys()...)
	p, problems := h.plan(ctx, snap.cfg, candidate, d)
	if len(problems) > 0 {
		res.Problems = problems
		h.finish(snap, nil, "", &res)
		return res
	}
	if d.Empty() {
		// Nothing to apply; the file's bytes (a comment changed, say) are
		// still the ones in force now.
		if fileHash != "" {
			res.FileHash = fileHash
		}
		h.finish(snap, nil, res.FileHash, &res)
		return res
	}
	gen := snap.generation + 1
	res.Problems, res.Warnings, res.Restarted = h.apply(context.WithoutCancel(ctx), p, snap.generation, gen)
	if len(res.Problems) == 0 {
		res.Generation, res.Hash, res.FileHash = gen, configHash(candidate), fileHash
		h.finish(snap, candidate, fileHash, &res)
		return res
	}
	h.finish(snap, nil, "", &res)
	return res
}

// finish completes res and swaps in the new snapshot: on success, with
// fileHash as the file hash in force and candidate, when not nil, as the
// running config. It updates the metrics and the log.
func (h *Host) finish(snap *configSnapshot, candidate *config.Config, fileHash string, res *ReloadResult) {
	res.OK = len(res.Problems) == 0
	if !res.OK {
		msgs := make([]string, len(res.Problems))
		for i, p := range res.Problems {
			msgs[i] = p.String()
		}
		res.Error = "reload rejected: " + strings.Join(msgs, "; ")
	}
	end := time.Now()
	res.DurationMS = float64(end.Sub(res.At).Microseconds()) / 1000
	next := *snap
	last := *res
	next.last = &last
	if res.OK {
		next.fileHash = fileHash
	}
	if candidate != nil {
		next.cfg, next.generation, next.hash, next.loadedAt = candidate, res.Generation, res.Hash, end
	}
	h.reload.cur.Store(&next)

	m := h.reload.metrics
	if res.OK {
		m.successful.Set(1)
		m.successTime.Set(float64(end.UnixNano()) / 1e9)
		m.generation.Set(float64(next.generation))
		m.total.WithLabelValues("success").Inc()
		if candidate == nil {
			h.logger.Info("config reloaded: nothing changed", "source", res.Source, "generation", res.Generation, "file_hash", res.FileHash)
		} else {
			h.logger.Info("config reloaded", "source", res.Source, "generation", res.Generation, "hash", res.Hash, "file_hash", res.FileHash,
				"changed_keys", res.ChangedKeys, "restarted", res.Restarted, "took", end.Sub(res.At).Round(time.Millisecond))
		}
		for _, w := range res.Warnings {
			h.logger.Warn("config reloaded, but a plugin is still down", "source", res.Source, "warning", w)
		}
		return
	}
	m.successful.Set(0)
	m.total.WithLabelValues("failure").Inc()
	var paths, plugins []string
	for _, p := range res.Problems {
		if p.Path != "" {
			paths = append(paths, p.Path)
		}
		if p.Plugin != "" && !slices.Contains(plugins, p.Plugin) {
			plugins = append(plugins, p.Plugin)
		}
	}
	h.logger.Error("config reload rejected; the previous configuration keeps running", "source", res.Source,
		"error", res.Error, "keys", paths, "plugins", plugins, "generation", res.Generation)
}

// Validate is the dry run of Reload: the same diff and checks, including
// ValidateLimits on the running plugins, changing nothing. It does not wait
// for a reload in progress; it checks against the configuration running
// when it is called.
func (h *Host) Validate(ctx context.Context, candidate *config.Config) ValidateResult {
	snap := h.reload.cur.Load()
	if snap == nil {
		return ValidateResult{Problems: []Problem{{Message: "validate config: " + errNotStarted.Error()}},
			ChangedKeys: []string{}, Restarts: []string{}}
	}
	res := ValidateResult{Problems: []Problem{}, ChangedKeys: []string{}, Restarts: []string{}, Generation: snap.generation}
	if candidate == nil {
		res.Problems = []Problem{{Message: "no candidate configuration"}}
		return res
	}
	if err := candidate.Validate(); err != nil {
		res.Problems = problemsOf(err)
		return res
	}
	d := config.Compare(snap.cfg, candidate)
	res.ChangedKeys = append([]string{}, d.ChangedKeys()...)
	p, problems := h.plan(ctx, snap.cfg, candidate, d)
	if problems != nil {
		res.Problems = problems
	}
	res.Restarts = p.processChanges(p.restart)
	res.OK = len(res.Problems) == 0
	return res
}

// reloadPlan is what a reload will do, worked out before anything changes.
type reloadPlan struct {
	old, new *config.Config
	diff     config.Diff
	// before is every plugin's status when the plan was made.
	before map[string]supervisor.Status
	// tokens are the new API tokens when they change.
	tokens []config.Credential
	// tls are the checked new server.tls files when they change.
	tls *tlsreload.Candidate
	// validate are the serving plugins asked to ValidateLimits.
	validate []string
	// limits are the subsystems, not restarted, whose limits change and
	// whose plugin the Manager knows.
	limits []string
	// restart are the subsystems reconfigured (started, stopped, restarted
	// or tried again).
	restart []string
	// mustServe are the subsystems of restart whose plugin must serve
	// afterwards, or the reload fails: those serving before, and those
	// being enabled.
	mustServe map[string]bool
	// update are the changed subsystems not in restart: their section is
	// recorded at commit.
	update []string
}

// processChanges returns those of names whose plugin has a binary, i.e.
// whose process a reconfiguration starts, stops or restarts.
func (p *reloadPlan) processChanges(names []string) []string {
	out := []string{}
	for _, n := range names {
		if st, ok := p.before[n]; ok && st.Path != "" {
			out = append(out, n)
		}
	}
	return out
}

// Host keys that cannot change while dw runs.
var fixedKeys = []struct {
	key string
	get func(*config.Config) string
}{
	{"server.listen", func(c *config.Config) string { return c.Server.Listen }},
	{"data_dir", func(c *config.Config) string { return c.DataDir }},
	{"plugins.dir", func(c *config.Config) string { return c.Plugins.Dir }},
	{"log.format", func(c *config.Config) string { return c.Log.Format }},
}

// planTLS checks a change of server.tls: new file paths or min_version
// apply live (the new files are checked now), turning TLS on or off needs
// a restart (the listener would change what it speaks).
func (h *Host) planTLS(old, new config.TLS) (*tlsreload.Candidate, *Problem) {
	if !old.Enabled() && !new.Enabled() {
		return nil, nil // min_version alone, with TLS off: nothing to apply
	}
	if old.Enabled() != new.Enabled() || h.tls == nil {
		verb := "turning TLS on"
		if old.Enabled() {
			verb = "turning TLS off"
		}
		return nil, &Problem{Path: "server.tls", Message: verb + " cannot be done while dw runs (the listener would change what it speaks); restart dw to apply"}
	}
	c, err := h.tls.Prepare(new)
	if err != nil {
		var fe *tlsreload.Error
		if errors.As(err, &fe) {
			return nil, &Problem{Path: fe.Key, Message: fmt.Sprintf("%s: %v", fe.Path, fe.Err)}
		}
		return nil, &Problem{Path: "server.tls", Message: err.Error()}
	}
	return c, nil
}

// plan checks the candidate (steps 1–3 of the transaction) and works out
// the steps that follow. It changes nothing.
func (h *Host) plan(ctx context.Context, old, new *config.Config, d config.Diff) (*reloadPlan, []Problem) {
	p := &reloadPlan{old: old, new: new, diff: d, before: map[string]supervisor.Status{}, mustServe: map[string]bool{}}
	for _, st := range h.plugins.Statuses() {
		p.before[st.Name] = st
	}
	var problems []Problem

	for _, f := range fixedKeys {
		if d.HostChanged(f.key) {
			problems = append(problems, Problem{Path: f.key, Message: fmt.Sprintf(
				"cannot change while dw runs (%s → %s); restart dw to apply", f.get(old), f.get(new))})
		}
	}
	if d.HostChanged("server.tls") {
		var problem *Problem
		p.tls, problem = h.planTLS(old.Server.TLS, new.Server.TLS)
		if problem != nil {
			problems = append(problems, *problem)
		}
	}
	if d.HostChanged("server.auth.tokens") {
		tokens, err := new.Credentials()
		if err == nil {
			err = api.ValidateTokens(tokens)
		}
		if err != nil {
			problems = append(problems, Problem{Path: "server.auth.tokens", Message: strings.TrimPrefix(err.Error(), "config: ")})
		}
		p.tokens = tokens
	}
	if d.HostChanged("server.audit") {
		if err := checkAuditPath(new.Server.Audit.Path); err != nil {
			problems = append(problems, Problem{Path: "server.audit.path", Message: err.Error()})
		}
	}

	retry := map[string]bool{} // down plugins tried again
	for _, key := range d.Host {
		bin, ok := strings.CutPrefix(key, "plugins.checksums.")
		if !ok {
			continue
		}
		name := strings.TrimPrefix(bin, supervisor.BinaryPrefix)
		st, known := p.before[name]
		if !known || st.Path == "" {
			continue
		}
		switch st.State {
		case supervisor.StateRefused, supervisor.StateQuarantined:
			retry[name] = true
		case supervisor.StateServing, supervisor.StateStarting, supervisor.StateRestarting:
			if pin, pinned := new.Plugins.Checksums[bin]; pinned && !strings.EqualFold(pin, st.SHA256) {
				problems = append(problems, Problem{Path: key, Plugin: name, Message: fmt.Sprintf(
					"pins sha256 %s, but plugin %s runs %s with sha256 %s; put the pinned binary into plugins.dir first, or correct the pin",
					pin, name, st.Path, st.SHA256)})
			}
		}
	}

	for _, s := range d.Subsystems {
		st, known := p.before[s.Name]
		serving := known && st.State == supervisor.StateServing
		down := known && (st.State == supervisor.StateRefused || st.State == supervisor.StateQuarantined)
		switch {
		case s.Restart() || (down && s.NowEnabled):
			p.restart = append(p.restart, s.Name)
			if serving || s.Enabled {
				p.mustServe[s.Name] = true
			}
			delete(retry, s.Name)
		default:
			p.update = append(p.update, s.Name)
			if len(s.Limits) > 0 && known {
				p.limits = append(p.limits, s.Name)
			}
		}
		if len(s.Limits) > 0 && serving && s.NowEnabled {
			p.validate = append(p.validate, s.Name)
		}
	}
	for name := range retry {
		if sec, ok := new.Subsystems[name]; !ok || sec.Enabled {
			p.restart = append(p.restart, name)
		}
	}
	slices.Sort(p.restart)

	problems = append(problems, h.validateLimits(ctx, p)...)
	slices.SortStableFunc(problems, func(a, b Problem) int { return strings.Compare(a.Path, b.Path) })
	return p, problems
}

// validateLimits asks the plugins of p.validate, in parallel and within
// ValidateTimeout, whether they accept their new limits.
func (h *Host) validateLimits(ctx context.Context, p *reloadPlan) []Problem {
	ctx, cancel := context.WithTimeout(ctx, ValidateTimeout)
	defer cancel()
	var (
		mu       sync.Mutex
		problems []Problem
		wg       sync.WaitGroup
	)
	for _, name := range p.validate {
		c, err := h.plugins.Client(name)
		if err != nil {
			continue // not serving any more: its limits are checked at its next start
		}
		wg.Go(func() {
			_, err := c.ValidateLimits(ctx, limitsOf(p.new, name))
			if err == nil {
				return
			}
			prs := ValidateLimitsProblems(ctx, name, "refused the new limits", err)
			mu.Lock()
			problems = append(problems, prs...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return problems
}

// limitsProblems makes problems of a plugin's limits error: one per field
// problem the plugin sent (structured, since sdk 6.1: errors.As finds the
// *sdk.DecodeError), at its full key path (subsystems.<name>.limits.<key>),
// or else one at subsystems.<name>.limits with the error's message (a
// plugin of sdk 6.0, or a refusal that names no key).
// ValidateLimitsProblems explains an error of plugin name's ValidateLimits
// called under ctx (bounded by ValidateTimeout): one problem per refused
// key, from the structured field problems the SDK sends ("plugin <name>
// <refused>: <message>"), or a timeout or a cancellation said as such.
// Reloads and dw config validate use it.
func ValidateLimitsProblems(ctx context.Context, name, refused string, err error) []Problem {
	switch {
	case errors.Is(err, sdk.ErrInvalidLimits), errors.Is(err, sdk.ErrInvalidArgument):
		return limitsProblems(name, refused, err)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return []Problem{{Path: "subsystems." + name + ".limits", Plugin: name, Message: fmt.Sprintf(
			"plugin %s did not answer ValidateLimits within %s: %v", name, ValidateTimeout, err)}}
	case ctx.Err() != nil:
		return []Problem{{Path: "subsystems." + name + ".limits", Plugin: name, Message: fmt.Sprintf(
			"validating the limits of plugin %s was cancelled: %v", name, ctx.Err())}}
	}
	return limitsProblems(name, "could not validate the new limits", err)
}

// limitsProblems turns a plugin's refusal of limits into problems.
func limitsProblems(name, what string, err error) []Problem {
	var de *sdk.DecodeError
	if errors.As(err, &de) && len(de.Problems) > 0 {
		out := make([]Problem, 0, len(de.Problems))
		for _, fp := range de.Problems {
			out = append(out, Problem{Path: limitsKeyPath(name, fp.Path), Plugin: name,
				Message: fmt.Sprintf("plugin %s %s: %s", name, what, fp.Message)})
		}
		return out
	}
	msg := err.Error()
	for _, p := range []string{"apply limits to " + name + ": ", "validate limits: ", "apply limits: ", "invalid limits: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return []Problem{{Path: "subsystems." + name + ".limits", Plugin: name, Message: fmt.Sprintf("plugin %s %s: %s", name, what, msg)}}
}

// limitsKeyPath is the config key path of a field problem's path: the SDK
// names limits keys under "limits" ("limits.max_items"); a path a plugin
// wrote itself may leave that out ("max_items").
func limitsKeyPath(name, p string) string {
	prefix := "subsystems." + name + "."
	switch {
	case p == "" || p == "limits":
		return prefix + "limits"
	case strings.HasPrefix(p, "limits.") || strings.HasPrefix(p, "limits["):
		return prefix + p
	case strings.HasPrefix(p, "["):
		return prefix + "limits" + p
	}
	return prefix + "limits." + p
}

// specOf returns the supervisor spec of a subsystem's section in c, nil
// when c has none.
func specOf(c *config.Config, name string) *supervisor.Spec {
	s, ok := c.Subsystems[name]
	if !ok {
		return nil
	}
	return &supervisor.Spec{Name: name, Enabled: s.Enabled, Settings: s.Settings, Limits: s.Limits}
}

// limitsOf returns the limits of a subsystem in c ({} without a section:
// the plugin's defaults).
func limitsOf(c *config.Config, name string) map[string]any {
	if s, ok := c.Subsystems[name]; ok && s.Limits != nil {
		return s.Limits
	}
	return map[string]any{}
}

// liveOptions returns the supervisor's live options for c.
func liveOptions(c *config.Config) supervisor.LiveOptions {
	return supervisor.LiveOptions{
		StartTimeout: c.Plugins.StartTimeout,
		Checksums:    maps.Clone(c.Plugins.Checksums),
		LogLevel:     c.Log.Level,
		HiddenEnv:    TokenEnvNames(c),
	}
}

// apply carries out steps 4–7 of the transaction for generation gen (prev
// is the running one). It returns the problems (none: committed; else
// everything was rolled back), warnings, and the plugins whose process it
// started, stopped or restarted.
func (h *Host) apply(ctx context.Context, p *reloadPlan, prev, gen uint64) (problems []Problem, warnings, restarted []string) {
	m := h.plugins
	restarted = []string{}
	// The audit log switches first, so that a file that cannot be opened
	// rejects the reload before anything changed; a later failure switches
	// back.
	if p.diff.HostChanged("server.audit") {
		if err := h.api.SetAudit(p.new.Server.Audit); err != nil {
			return []Problem{{Path: "server.audit.path", Message: err.Error()}}, nil, restarted
		}
		defer func() {
			if len(problems) > 0 {
				if err := h.api.SetAudit(p.old.Server.Audit); err != nil {
					h.logger.Error("config reload: switching back to the previous audit log failed", "error", err)
				}
			}
		}()
	}
	oldOpts := m.LiveOptions()
	if err := m.SetLiveOptions(liveOptions(p.new)); err != nil {
		return []Problem{{Path: "plugins", Message: err.Error()}}, nil, restarted
	}
	restoreOpts := func() {
		if err := m.SetLiveOptions(oldOpts); err != nil {
			h.logger.Error("config reload: restoring the plugin start options failed", "error", err)
		}
	}
	timeout := p.new.Plugins.StartTimeout

	// Step 5: limits, live.
	applied, problems := h.applyLimits(ctx, p, p.limits, p.new, gen, timeout)
	if len(problems) > 0 {
		if len(applied) > 0 {
			for i := range problems {
				problems[i].Message += fmt.Sprintf("; the plugins that had applied their new limits (%s) got their previous ones back", strings.Join(applied, ", "))
			}
			_, rb := h.applyLimits(ctx, p, applied, p.old, prev, timeout)
			problems = append(problems, rollbackProblems(rb)...)
		}
		restoreOpts()
		return problems, nil, restarted
	}

	// Step 6: restarts.
	errs := h.reconfigure(ctx, p.restart, p.new, gen)
	restarted = p.processChanges(p.restart)
	for _, name := range p.restart {
		err := errs[name]
		if err == nil {
			continue
		}
		if p.mustServe[name] {
			problems = append(problems, restartProblem(p, name, err))
		} else {
			warnings = append(warnings, fmt.Sprintf("plugin %s was down before the reload and is still down with its new section: %v", name, err))
		}
	}
	if len(problems) > 0 {
		rerrs := h.reconfigure(ctx, p.restart, p.old, prev)
		for _, name := range p.restart {
			before := p.before[name]
			if err := rerrs[name]; err != nil && before.State == supervisor.StateServing {
				problems = append(problems, Problem{Path: "subsystems." + name, Plugin: name, Message: fmt.Sprintf(
					"rolling back: plugin %s did not serve again with its previous settings: %v", name, err)})
			}
		}
		if len(applied) > 0 {
			_, rb := h.applyLimits(ctx, p, applied, p.old, prev, timeout)
			problems = append(problems, rollbackProblems(rb)...)
		}
		restoreOpts()
		return problems, nil, restarted
	}

	// Step 7: commit.
	for _, name := range p.update {
		if err := m.UpdateSpec(name, specOf(p.new, name)); err != nil {
			h.logger.Warn("config reload: recording a subsystem section failed", "subsystem", name, "error", err)
		}
	}
	m.SetGeneration(gen)
	if p.tokens != nil {
		if err := h.api.SetTokens(p.tokens); err != nil {
			// Checked in plan; cannot happen.
			h.logger.Error("config reload: replacing the api tokens failed", "error", err)
		}
	}
	if p.tls != nil {
		h.tls.Use(p.tls)
	}
	if p.old.Log.Level != p.new.Log.Level {
		h.logger.SetLevel(hclog.LevelFromString(p.new.Log.Level))
	}
	if h.conns != nil {
		// Connections open past a lowered limit stay; new ones are refused.
		h.conns.SetLimit(p.new.Server.MaxConnsPerAddress)
	}
	return nil, warnings, restarted
}

// rollbackProblems rewords the problems of a rollback.
func rollbackProblems(ps []Problem) []Problem {
	for i := range ps {
		ps[i].Message = "rolling back: " + ps[i].Message + "; the plugin may run the new limits: restart it"
	}
	return ps
}

// applyLimits applies the limits of c to the plugins of names, in
// parallel, with generation gen; it returns those that applied them and
// the problems of the others.
func (h *Host) applyLimits(ctx context.Context, p *reloadPlan, names []string, c *config.Config, gen uint64, timeout time.Duration) (applied []string, problems []Problem) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, name := range names {
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			_, err := h.plugins.ApplyLimits(actx, name, limitsOf(c, name), gen)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				applied = append(applied, name)
			case errors.Is(err, sdk.ErrNotFound):
				// Gone from plugins.dir meanwhile: nothing runs; the
				// section is recorded at commit.
			default:
				prs := limitsProblems(name, "failed to apply the new limits", err)
				if len(prs) == 1 && prs[0].Path == "subsystems."+name+".limits" {
					// No key named: the first changed one is the likeliest.
					if s, ok := p.diff.Subsystem(name); ok && len(s.Limits) > 0 {
						prs[0].Path = s.Limits[0]
					}
				}
				problems = append(problems, prs...)
			}
		})
	}
	wg.Wait()
	slices.Sort(applied)
	slices.SortFunc(problems, func(a, b Problem) int { return strings.Compare(a.Path, b.Path) })
	return applied, problems
}

// reconfigure gives each subsystem of names its section of c
// (Manager.Reconfigure), in parallel, and returns the errors by name.
func (h *Host) reconfigure(ctx context.Context, names []string, c *config.Config, gen uint64) map[string]error {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs = map[string]error{}
	)
	for _, name := range names {
		wg.Go(func() {
			err := h.plugins.Reconfigure(ctx, name, specOf(c, name), gen)
			mu.Lock()
			errs[name] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return errs
}

// restartProblem describes a plugin that did not serve after its
// reconfiguration, at the key path that made it restart.
func restartProblem(p *reloadPlan, name string, err error) Problem {
	path := "subsystems." + name
	what := "did not start with its new section"
	if s, ok := p.diff.Subsystem(name); ok {
		switch {
		case s.Added || s.Removed:
		case s.Enabled:
			path, what = path+".enabled", "could not be started"
		case len(s.Settings) > 0:
			path, what = s.Settings[0], "did not start with the new settings"
		}
	}
	return Problem{Path: path, Plugin: name, Message: fmt.Sprintf(
		"plugin %s %s; its previous section was restored: %v", name, what, err)}
}

// configAPI serves the config endpoints of the admin API.
type configAPI struct{ h *Host }

var _ api.ConfigSource = configAPI{}

func (c configAPI) ConfigInfo() any { return c.h.ConfigInfo() }

// ReloadFile reloads without the request's cancellation: a client that
// goes away must not turn into a rejected reload.
func (c configAPI) ReloadFile(ctx context.Context, source string) (any, error) {
	res := c.h.ReloadFile(context.WithoutCancel(ctx), source)
	if !res.OK {
		return res, errors.New(res.Error)
	}
	return res, nil
}

func (c configAPI) ValidateConfig(ctx context.Context, yaml []byte) any {
	candidate, err := config.Parse(yaml, "request")
	if err != nil {
		snap := c.h.reload.cur.Load()
		res := ValidateResult{Problems: problemsOf(err), ChangedKeys: []string{}, Restarts: []string{}}
		if snap != nil {
			res.Generation = snap.generation
		}
		return res
	}
	return c.h.Validate(ctx, candidate)
}

// checkAuditPath checks, changing nothing, that the audit file path can
// be opened: it is not a folder, and its folder exists or can be made
// (the nearest existing ancestor is a folder; the audit log makes the
// rest, 0700, when it opens the file).
func checkAuditPath(path string) error {
	if path == "" {
		return nil
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if errors.Is(err, fs.ErrNotExist) && dir != filepath.Dir(dir) {
			continue
		}
		if err != nil {
			return fmt.Errorf("folder of the audit log: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("folder of the audit log: %s is not a folder", dir)
		}
		break
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a folder; name a file", path)
	}
	return nil
}
