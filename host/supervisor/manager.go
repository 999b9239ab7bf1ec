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
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// DefaultStartTimeout is used when Options.StartTimeout is zero.
const DefaultStartTimeout = 10 * time.Second

// Spec is one subsystem's section of the config (subsystems.<name>).
type Spec struct {
	// Name is the subsystem's name; the key of Options.Specs wins if they
	// differ.
	Name string
	// Enabled says whether the plugin is started.
	Enabled bool
	// Settings are the section's keys other than enabled and limits; they
	// are handed to Configure.
	Settings map[string]any
	// Limits are applied after Configure and on every restart.
	Limits map[string]any
}

// Options configure a Manager.
type Options struct {
	// Dir is plugins.dir, absolute.
	Dir string
	// StartTimeout bounds the handshake and each start-up call (GetInfo,
	// Configure, ApplyLimits); zero means DefaultStartTimeout.
	StartTimeout time.Duration
	// Checksums pins binaries: "dw-plugin-<name>" to the lowercase hex
	// SHA-256 the file must have.
	Checksums map[string]string
	// DataDir is the host's data folder, handed to plugins.
	DataDir string
	// HostVersion is the dw version, handed to plugins.
	HostVersion string
	// HostAPIAddress is the host's HTTP API address as bound, handed to
	// plugins.
	HostAPIAddress string
	// LogLevel is passed to plugins in pluginhost.EnvLogLevel; empty means the
	// level of Logger.
	LogLevel string
	// Logger receives the supervisor's logs and, named after each plugin,
	// the plugins' own (their stderr).
	Logger hclog.Logger
	// KV returns the host KV bound to one plugin's key space; nil offers
	// plugins no KV.
	KV func(name string) sdk.KV
	// Specs are the subsystems of the config, by name.
	Specs map[string]Spec
	// Generation is the config generation of Specs.
	Generation uint64
	// Backoff tunes restarts after crashes; the zero value takes the
	// defaults (see Backoff).
	Backoff Backoff
	// HiddenEnv names environment variables of the host that plugins must
	// not inherit (the API tokens' variables). Everything else of the host's
	// environment is passed on, as plugins may be configured to read their
	// own secrets from it.
	HiddenEnv []string
}

// Manager discovers, starts and supervises the plugins. Its methods are
// safe for concurrent use.
type Manager struct {
	opts     Options
	log      hclog.Logger
	backoff  Backoff
	logLevel string

	ctx    context.Context // the plugins' lifetime: cancelled by Stop
	cancel context.CancelFunc

	rescanMu sync.Mutex // serialises the scans of Start and Rescan (not their waits)

	mu       sync.Mutex
	plugins  map[string]*instance
	started  bool
	stopped  bool
	spawn    *spawner
	execDir  string
	warned   map[string]string // path -> reason already logged
	wg       sync.WaitGroup    // one per supervision loop
	stopDone chan struct{}
}

// instance is one plugin the manager knows: from plugins.dir, from the
// config, or both. Its fields are guarded by Manager.mu; a supervision loop
// (run) owns its process.
type instance struct {
	name    string
	spec    Spec
	hasSpec bool
	bin     *binary // nil: missing from plugins.dir

	// The limits given at every start, and a revision bumped whenever
	// they are replaced.
	limits    map[string]any
	gen       uint64
	limitsRev uint64

	st   Status
	proc *process    // while serving
	run  *procRunner // the current process, while there is one

	cmds    chan command
	done    chan struct{} // closed when the loop returned; nil: no loop
	settled chan struct{} // closed when the first start attempt settled
}

// command is sent to a supervision loop.
type command struct {
	// remove ends the loop (the binary went away or was replaced).
	remove bool
	// settled, if not nil, is closed when the start attempt that follows
	// has settled (or the loop has ended).
	settled chan struct{}
}

// NewManager checks opts and returns a Manager; Start starts the plugins.
func NewManager(opts Options) (*Manager, error) {
	if opts.Dir == "" || !filepath.IsAbs(opts.Dir) {
		return nil, fmt.Errorf("plugins.dir %q: must be an absolute path", opts.Dir)
	}
	opts.Dir = filepath.Clean(opts.Dir)
	if opts.StartTimeout < 0 {
		return nil, fmt.Errorf("plugins.start_timeout %s: must not be negative", opts.StartTimeout)
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	sums, err := normalizeChecksums(opts.Checksums)
	if err != nil {
		return nil, err
	}
	opts.Checksums = sums
	for name := range opts.Specs {
		if err := ValidName(name); err != nil {
			return nil, fmt.Errorf("subsystems.%s: %w", name, err)
		}
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	level := opts.LogLevel
	if level == "" {
		level = opts.Logger.GetLevel().String()
	}
	m := &Manager{
		opts:     opts,
		log:      opts.Logger.Named("supervisor"),
		backoff:  opts.Backoff.withDefaults(),
		logLevel: level,
		plugins:  map[string]*instance{},
		warned:   map[string]string{},
		stopDone: make(chan struct{}),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Start discovers the plugins in Dir and starts every enabled one (and
// every binary without a config section) in parallel. It returns when each
// has settled — serving, refused, missing or disabled — or when ctx ends;
// the plugins keep running either way until Stop. A plugin that is refused
// is not an error of Start: see Statuses.
func (m *Manager) Start(ctx context.Context) error {
	m.rescanMu.Lock()
	locked := true
	defer func() {
		if locked {
			m.rescanMu.Unlock()
		}
	}()
	m.mu.Lock()
	switch {
	case m.stopped:
		m.mu.Unlock()
		return errors.New("start plugins: the manager is stopped")
	case m.started:
		m.mu.Unlock()
		return errors.New("start plugins: already started")
	}
	m.started = true
	m.spawn = newSpawner()
	m.mu.Unlock()

	found, skips, err := discover(m.opts.Dir, nil)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("start plugins: %w", err)
		}
		m.log.Warn("plugins.dir does not exist: no plugins loaded", "dir", m.opts.Dir)
	}
	m.warnSkips(skips)

	m.mu.Lock()
	for name, spec := range m.opts.Specs {
		m.plugins[name] = m.newInstance(name, &spec)
	}
	for name, bin := range found {
		p := m.plugins[name]
		if p == nil {
			p = m.newInstance(name, nil)
			m.plugins[name] = p
		}
		p.bin = bin
	}
	var settle []chan struct{}
	for _, name := range slices.Sorted(maps.Keys(m.plugins)) {
		if ch := m.activateLocked(m.plugins[name]); ch != nil {
			settle = append(settle, ch)
		}
	}
	m.mu.Unlock()
	m.rescanMu.Unlock()
	locked = false
	return waitAll(ctx, "start plugins", settle)
}

// normalizeChecksums checks plugins.checksums and returns it with the sums
// lower-cased.
func normalizeChecksums(in map[string]string) (map[string]string, error) {
	sums := make(map[string]string, len(in))
	for file, sum := range in {
		if !strings.HasPrefix(file, BinaryPrefix) || ValidName(strings.TrimPrefix(file, BinaryPrefix)) != nil {
			return nil, fmt.Errorf("plugins.checksums: key %q: want a binary name dw-plugin-<name>, name: a lowercase letter followed by up to 62 of a-z, 0-9, '_' and '-'", file)
		}
		sum = strings.ToLower(strings.TrimSpace(sum))
		if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
			return nil, fmt.Errorf("plugins.checksums.%s: %q is not a sha256: want 64 hex digits (sha256sum %s)", file, in[file], file)
		}
		sums[file] = sum
	}
	return sums, nil
}

func waitAll(ctx context.Context, what string, chans []chan struct{}) error {
	for _, ch := range chans {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
	}
	return nil
}

func (m *Manager) newInstance(name string, spec *Spec) *instance {
	p := &instance{name: name, gen: m.opts.Generation}
	if spec != nil {
		p.spec, p.hasSpec = *spec, true
		p.spec.Name = name
		p.limits = spec.Limits
	}
	p.st = Status{Name: name}
	return p
}

// successor is a fresh instance in old's place (its binary changed or went
// away), keeping its config and limits.
func (m *Manager) successor(old *instance) *instance {
	p := &instance{
		name: old.name, spec: old.spec, hasSpec: old.hasSpec,
		limits: old.limits, gen: old.gen, limitsRev: old.limitsRev,
	}
	p.st = Status{Name: old.name}
	return p
}

// activateLocked settles a new instance's state and starts its
// supervision loop if it is to run; it returns the channel closed when the
// first start attempt settled, or nil.
func (m *Manager) activateLocked(p *instance) chan struct{} {
	if p.bin != nil {
		p.st.Path, p.st.SHA256 = p.bin.path, p.bin.sha256
	} else {
		p.st.Path, p.st.SHA256 = "", ""
	}
	switch {
	case p.hasSpec && !p.spec.Enabled:
		p.st.State = StateDisabled
		p.st.LastError = ""
		return nil
	case p.bin == nil:
		p.st.State = StateMissing
		p.st.LastError = fmt.Sprintf("subsystems.%s is enabled but plugins.dir %s has no %s%s", p.name, m.opts.Dir, BinaryPrefix, p.name)
		m.log.Warn("plugin missing", "plugin", p.name, "error", p.st.LastError)
		return nil
	case m.stopped:
		p.st.State = StateStopped
		return nil
	}
	p.st.State = StateStarting
	p.cmds = make(chan command)
	p.done = make(chan struct{})
	p.settled = make(chan struct{})
	m.wg.Add(1)
	go m.run(p)
	return p.settled
}

func (m *Manager) warnSkips(skips []skipped) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for _, s := range skips {
		seen[s.path] = true
		if m.warned[s.path] == s.reason {
			continue
		}
		m.warned[s.path] = s.reason
		if s.pending {
			// Still being written: normal during an install, not a warning.
			m.log.Debug("plugin binary not ready; deferring", "path", s.path, "reason", s.reason)
			continue
		}
		m.log.Warn("skipping file in plugins.dir", "path", s.path, "reason", s.reason)
	}
	for path := range m.warned {
		if !seen[path] {
			delete(m.warned, path)
		}
	}
}

// Stop stops every plugin gracefully (go-plugin's shutdown request, then a
// hard kill after about two seconds), kills each plugin's process group,
// and waits until every process is reaped and every goroutine of the
// manager has returned. If ctx ends first, the remaining process groups are
// killed at once and Stop still waits for them. Stop is idempotent; the
// Manager cannot be started again.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	first := !m.stopped
	m.stopped = true
	m.mu.Unlock()
	if first {
		m.cancel()
		go func() {
			m.wg.Wait()
			m.mu.Lock()
			sp, dir := m.spawn, m.execDir
			m.mu.Unlock()
			if sp != nil {
				sp.close()
			}
			if dir != "" {
				_ = os.RemoveAll(dir)
			}
			close(m.stopDone)
		}()
	}
	select {
	case <-m.stopDone:
		return nil
	case <-ctx.Done():
	}
	m.mu.Lock()
	for _, p := range m.plugins {
		if p.run != nil {
			_ = p.run.Kill(context.Background())
		}
	}
	m.mu.Unlock()
	<-m.stopDone
	return fmt.Errorf("stop plugins: %w: killed the plugins that had not stopped yet", ctx.Err())
}

// Statuses returns every plugin and subsystem the manager knows, sorted by
// name: binaries found in Dir (with or without a config section) and
// subsystems of the config (missing or disabled ones too).
func (m *Manager) Statuses() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.plugins))
	for _, name := range slices.Sorted(maps.Keys(m.plugins)) {
		out = append(out, m.plugins[name].statusLocked())
	}
	return out
}

// Status returns one plugin's status.
func (m *Manager) Status(name string) (Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.plugins[name]
	if !ok {
		return Status{}, false
	}
	return p.statusLocked(), true
}

func (p *instance) statusLocked() Status {
	st := p.st
	st.Services = slices.Clone(p.st.Services)
	if st.Services == nil {
		st.Services = []string{}
	}
	return st
}

func (m *Manager) notFound(name string) error {
	return fmt.Errorf("plugin %q: %w: plugins.dir %s has no %s%s and the config has no subsystems.%s", name, sdk.ErrNotFound, m.opts.Dir, BinaryPrefix, name, name)
}

// Client returns the connection to a serving plugin. It is valid until the
// plugin stops or restarts (its calls then fail with sdk.ErrPluginShutdown);
// ask again rather than keeping it. An unknown name gives an error wrapping
// sdk.ErrNotFound; a known plugin that is not serving one wrapping
// sdk.ErrUnavailable that says its state and last error.
func (m *Manager) Client(name string) (*pluginhost.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.plugins[name]
	if !ok {
		return nil, m.notFound(name)
	}
	if p.st.State == StateServing && p.proc != nil {
		return p.proc.client, nil
	}
	return nil, unavailable(p.st)
}

func unavailable(st Status) error {
	if st.LastError != "" {
		return fmt.Errorf("plugin %s is %s (last error: %s): %w", st.Name, st.State, st.LastError, sdk.ErrUnavailable)
	}
	return fmt.Errorf("plugin %s is %s: %w", st.Name, st.State, sdk.ErrUnavailable)
}

// Restart stops a plugin gracefully (if it runs) and starts it again,
// forgetting its crash history; it also takes a plugin out of quarantine
// or refusal. It returns when the new start attempt has settled: nil if the
// plugin is serving, else an error wrapping sdk.ErrUnavailable with the
// reason. Missing and disabled subsystems cannot be restarted
// (sdk.ErrFailedPrecondition).
func (m *Manager) Restart(ctx context.Context, name string) error {
	m.mu.Lock()
	p, ok := m.plugins[name]
	switch {
	case !ok:
		m.mu.Unlock()
		return fmt.Errorf("restart: %w", m.notFound(name))
	case m.stopped:
		m.mu.Unlock()
		return fmt.Errorf("restart plugin %s: the manager is stopped: %w", name, sdk.ErrFailedPrecondition)
	case p.done == nil:
		st := p.st
		m.mu.Unlock()
		hint := ""
		switch st.State {
		case StateDisabled:
			hint = fmt.Sprintf(" (subsystems.%s.enabled is false)", name)
		case StateMissing:
			hint = fmt.Sprintf(" (put %s%s into %s)", BinaryPrefix, name, m.opts.Dir)
		}
		return fmt.Errorf("restart plugin %s: it is %s%s: %w", name, st.State, hint, sdk.ErrFailedPrecondition)
	}
	cmds, done := p.cmds, p.done
	m.mu.Unlock()

	settled := make(chan struct{})
	select {
	case cmds <- command{settled: settled}:
	case <-done:
		return fmt.Errorf("restart plugin %s: it was stopped or replaced meanwhile: %w", name, sdk.ErrUnavailable)
	case <-ctx.Done():
		return fmt.Errorf("restart plugin %s: %w", name, ctx.Err())
	}
	select {
	case <-settled:
	case <-ctx.Done():
		return fmt.Errorf("restart plugin %s: %w", name, ctx.Err())
	}
	m.mu.Lock()
	st := p.st
	m.mu.Unlock()
	if st.State != StateServing {
		return fmt.Errorf("restart: %w", unavailable(st))
	}
	m.log.Info("plugin restarted by request", "plugin", name, "pid", st.PID)
	return nil
}

// ApplyLimits applies limits (config generation gen) to a serving plugin
// and, once it accepted them, makes them the limits it gets on every later
// (re)start. For a plugin that is not serving they are only recorded, to
// be applied at its next start. It returns the limits as the plugin applied
// them (as given, when only recorded).
func (m *Manager) ApplyLimits(ctx context.Context, name string, limits map[string]any, gen uint64) (map[string]any, error) {
	for {
		m.mu.Lock()
		p, ok := m.plugins[name]
		if !ok {
			m.mu.Unlock()
			return nil, fmt.Errorf("apply limits: %w", m.notFound(name))
		}
		cur := p.proc
		if cur == nil {
			p.limits, p.gen = limits, gen
			p.limitsRev++
			m.mu.Unlock()
			return limits, nil
		}
		m.mu.Unlock()

		applied, err := cur.client.ApplyLimits(ctx, limits, gen)

		m.mu.Lock()
		switch {
		case p.proc == cur:
			if err == nil {
				p.limits, p.gen = limits, gen
				p.limitsRev++
				p.st.Generation = gen
			}
			m.mu.Unlock()
			if err != nil {
				return nil, fmt.Errorf("apply limits to %s: %w", name, err)
			}
			return applied, nil
		case p.proc == nil:
			// It stopped meanwhile.
			if err == nil {
				p.limits, p.gen = limits, gen
				p.limitsRev++
			}
			m.mu.Unlock()
			if err != nil {
				return nil, fmt.Errorf("apply limits to %s: %w", name, err)
			}
			return applied, nil
		}
		// It restarted meanwhile with the limits it had: apply to the new
		// process too.
		m.mu.Unlock()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("apply limits to %s: %w", name, ctx.Err())
		}
	}
}

// Rescan re-reads Dir: binaries that appeared are started, binaries that
// disappeared are stopped (their subsystem, if configured, becomes
// missing), and binaries whose sha256 changed are stopped and started
// again from the new file — which also ends a quarantine or refusal. It
// returns when the plugins it started have settled.
func (m *Manager) Rescan(ctx context.Context) error {
	m.rescanMu.Lock()
	locked := true
	defer func() {
		if locked {
			m.rescanMu.Unlock()
		}
	}()
	m.mu.Lock()
	if !m.started || m.stopped {
		m.mu.Unlock()
		return errors.New("rescan plugins: the manager is not running")
	}
	prev := map[string]*binary{}
	for name, p := range m.plugins {
		if p.bin != nil {
			prev[name] = p.bin
		}
	}
	m.mu.Unlock()

	found, skips, err := discover(m.opts.Dir, prev)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rescan plugins: %w", err)
		}
		m.log.Warn("plugins.dir does not exist: no plugins loaded", "dir", m.opts.Dir)
	}
	m.warnSkips(skips)

	type change struct {
		name string
		old  *instance
		bin  *binary // nil: gone
	}
	var changes []change
	m.mu.Lock()
	for _, name := range slices.Sorted(maps.Keys(found)) {
		bin := found[name]
		p := m.plugins[name]
		switch {
		case p == nil || p.bin == nil || p.bin.path != bin.path || p.bin.sha256 != bin.sha256:
			changes = append(changes, change{name: name, old: p, bin: bin})
		default:
			p.bin = bin // same content; keep the newer identity
		}
	}
	for name, p := range m.plugins {
		if p.bin != nil && found[name] == nil {
			changes = append(changes, change{name: name, old: p})
		}
	}
	m.mu.Unlock()

	// Stop the old processes before starting new ones under the same name.
	for _, c := range changes {
		if c.old != nil {
			m.retire(c.old)
		}
	}

	var settle []chan struct{}
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return errors.New("rescan plugins: the manager stopped meanwhile")
	}
	for _, c := range changes {
		var p *instance
		switch {
		case c.old != nil:
			p = m.successor(c.old)
		case c.bin != nil:
			p = m.newInstance(c.name, nil)
		}
		switch {
		case c.bin == nil && !p.hasSpec:
			delete(m.plugins, c.name)
			m.log.Info("plugin binary removed", "plugin", c.name)
			continue
		case c.bin == nil:
			m.log.Info("plugin binary removed", "plugin", c.name)
		case c.old == nil || c.old.bin == nil:
			m.log.Info("plugin binary appeared", "plugin", c.name, "path", c.bin.path, "sha256", c.bin.sha256)
		default:
			m.log.Info("plugin binary changed", "plugin", c.name, "path", c.bin.path, "sha256", c.bin.sha256, "previous_sha256", c.old.bin.sha256)
		}
		p.bin = c.bin
		m.plugins[c.name] = p
		if ch := m.activateLocked(p); ch != nil {
			settle = append(settle, ch)
		}
	}
	m.mu.Unlock()
	m.rescanMu.Unlock()
	locked = false
	return waitAll(ctx, "rescan plugins", settle)
}

// retire ends p's supervision loop (stopping its process gracefully) and
// waits for it.
func (m *Manager) retire(p *instance) {
	m.mu.Lock()
	cmds, done := p.cmds, p.done
	if p.st.State == StateStarting && p.run != nil {
		// Do not wait for the start of a binary that is going away (a
		// hanging handshake could take plugins.start_timeout).
		_ = p.run.Kill(context.Background())
	}
	m.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case cmds <- command{remove: true}:
	case <-done:
	}
	<-done
}

// execDirectory returns the manager's private folder for pinned copies of
// plugin binaries, creating it on first use.
func (m *Manager) execDirectory() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.execDir != "" {
		return m.execDir, nil
	}
	base := os.TempDir()
	if m.opts.DataDir != "" {
		base = filepath.Join(m.opts.DataDir, "host")
		if err := os.MkdirAll(base, 0o700); err != nil {
			return "", fmt.Errorf("create %s: %w", base, err)
		}
	}
	dir, err := os.MkdirTemp(base, "plugin-exec-")
	if err != nil {
		return "", fmt.Errorf("create a private folder for pinned plugin binaries: %w", err)
	}
	m.execDir = dir
	return dir, nil
}

// Live reconfiguration. A config reload (package host) drives these: it
// validates first, then applies limits (ApplyLimits), replaces sections
// that need a restart (Reconfigure) or none (UpdateSpec), changes the
// start options (SetLiveOptions) and finally moves every plugin to the new
// generation (SetGeneration). The Manager does not judge a config; it does
// what it is told and reports how each plugin ended up.

// LiveOptions are the Options a config reload may change while the Manager
// runs. They apply to every plugin start that follows (a restart, a crash
// recovery, a new binary); running plugins are not restarted for them.
type LiveOptions struct {
	// StartTimeout is plugins.start_timeout; zero means DefaultStartTimeout.
	StartTimeout time.Duration
	// Checksums is plugins.checksums (see Options.Checksums).
	Checksums map[string]string
	// LogLevel is handed to plugins in pluginhost.EnvLogLevel; empty means the
	// level of Options.Logger.
	LogLevel string
	// HiddenEnv names variables plugins must not inherit (see
	// Options.HiddenEnv).
	HiddenEnv []string
}

// LiveOptions returns the options currently in force.
func (m *Manager) LiveOptions() LiveOptions {
	m.mu.Lock()
	defer m.mu.Unlock()
	return LiveOptions{
		StartTimeout: m.opts.StartTimeout,
		Checksums:    maps.Clone(m.opts.Checksums),
		LogLevel:     m.logLevel,
		HiddenEnv:    slices.Clone(m.opts.HiddenEnv),
	}
}

// SetLiveOptions replaces the live options after checking them as
// NewManager does; on error nothing changes.
func (m *Manager) SetLiveOptions(o LiveOptions) error {
	if o.StartTimeout < 0 {
		return fmt.Errorf("plugins.start_timeout %s: must not be negative", o.StartTimeout)
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	sums, err := normalizeChecksums(o.Checksums)
	if err != nil {
		return err
	}
	if o.LogLevel == "" {
		o.LogLevel = m.opts.Logger.GetLevel().String()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opts.StartTimeout = o.StartTimeout
	m.opts.Checksums = sums
	m.logLevel = o.LogLevel
	m.opts.HiddenEnv = slices.Clone(o.HiddenEnv)
	return nil
}

// SetGeneration records that every plugin now runs config generation gen:
// the serving ones show it as their acknowledged generation (Status.Generation)
// and every later start hands it to the plugin with its limits. It changes
// no limits and calls no plugin, so a plugin whose limits did not change
// still reports, in its own GetLimits, the generation that last applied
// them. Call it once a reload has been applied everywhere.
func (m *Manager) SetGeneration(gen uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opts.Generation = gen
	for _, p := range m.plugins {
		p.gen = gen
		if p.proc != nil {
			p.st.Generation = gen
		}
	}
}

// UpdateSpec replaces the config section of subsystem name (nil: the config
// no longer has one) without touching its process: for changes that need
// no restart — settings of a disabled subsystem, a section added or removed
// without changing what the plugin gets. The new settings are those of the
// plugin's next start; the limits given at its next start are those last
// recorded by ApplyLimits (or, for a subsystem the Manager did not know, the
// section's). A subsystem the Manager does not know gets an entry (missing
// or disabled, as there is no binary for it); a removed section without a
// binary is forgotten. Use Reconfigure when the plugin must be started,
// stopped or restarted.
func (m *Manager) UpdateSpec(name string, spec *Spec) error {
	if err := ValidName(name); err != nil {
		return fmt.Errorf("subsystems.%s: %w", name, err)
	}
	m.rescanMu.Lock()
	defer m.rescanMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started || m.stopped {
		return fmt.Errorf("update subsystems.%s: the manager is not running", name)
	}
	p := m.plugins[name]
	switch {
	case p == nil && spec == nil:
		return nil
	case p == nil:
		p = m.newInstance(name, spec)
		m.plugins[name] = p
		m.activateLocked(p) // no binary: missing or disabled, no process
		return nil
	case spec == nil && p.bin == nil:
		delete(m.plugins, name)
		return nil
	}
	setSpecLocked(p, spec)
	if p.done == nil && p.bin == nil {
		m.activateLocked(p) // refresh missing or disabled
	}
	return nil
}

// setSpecLocked replaces p's config section (nil: none).
func setSpecLocked(p *instance, spec *Spec) {
	if spec == nil {
		p.spec, p.hasSpec = Spec{Name: p.name}, false
		return
	}
	p.spec, p.hasSpec = *spec, true
	p.spec.Name = p.name
}

// Reconfigure replaces the config section of subsystem name (nil: the
// config no longer has one) as of config generation gen — settings,
// enabled and limits — and brings the plugin in line with it, returning
// when it has settled:
//
//   - enabled (or no section) and its binary is in plugins.dir: the plugin
//     is restarted with the new settings and limits (started, if it was
//     disabled; tried again, if it was refused or quarantined). The result
//     is nil if it is serving afterwards, else an error wrapping
//     sdk.ErrUnavailable that carries its state and last error.
//   - disabled: its process, if any, is stopped gracefully; it shows as
//     disabled.
//   - enabled without a binary: it shows as missing (nil error); no
//     section and no binary: the Manager forgets it.
//
// The section is replaced whatever the outcome: to go back, call
// Reconfigure again with the previous section (and generation).
func (m *Manager) Reconfigure(ctx context.Context, name string, spec *Spec, gen uint64) error {
	if err := ValidName(name); err != nil {
		return fmt.Errorf("reconfigure subsystems.%s: %w", name, err)
	}
	m.rescanMu.Lock()
	locked := true
	defer func() {
		if locked {
			m.rescanMu.Unlock()
		}
	}()
	m.mu.Lock()
	if !m.started || m.stopped {
		m.mu.Unlock()
		return fmt.Errorf("reconfigure plugin %s: the manager is not running: %w", name, sdk.ErrFailedPrecondition)
	}
	p := m.plugins[name]
	if p == nil {
		if spec != nil {
			p = m.newInstance(name, spec)
			p.gen = gen
			m.plugins[name] = p
			m.activateLocked(p) // no binary: missing or disabled
		}
		m.mu.Unlock()
		return nil
	}
	setSpecLocked(p, spec)
	p.limits, p.gen = p.spec.Limits, gen
	p.limitsRev++
	run := p.bin != nil && (!p.hasSpec || p.spec.Enabled)
	switch {
	case p.bin == nil && !p.hasSpec:
		delete(m.plugins, name) // no binary, so no supervision loop either
		m.mu.Unlock()
		return nil

	case p.done == nil:
		// No supervision loop: disabled or missing until now.
		settled := m.activateLocked(p)
		m.mu.Unlock()
		m.rescanMu.Unlock()
		locked = false
		if settled == nil {
			return nil
		}
		if err := waitAll(ctx, "reconfigure plugin "+name, []chan struct{}{settled}); err != nil {
			return err
		}
		return m.servingOrError(p, "start")

	case run:
		cmds, done := p.cmds, p.done
		m.mu.Unlock()
		m.rescanMu.Unlock()
		locked = false
		settled := make(chan struct{})
		select {
		case cmds <- command{settled: settled}:
		case <-done:
			return fmt.Errorf("restart plugin %s with its new settings: it was stopped or replaced meanwhile: %w", name, sdk.ErrUnavailable)
		case <-ctx.Done():
			return fmt.Errorf("restart plugin %s with its new settings: %w", name, ctx.Err())
		}
		if err := waitAll(ctx, "restart plugin "+name+" with its new settings", []chan struct{}{settled}); err != nil {
			return err
		}
		return m.servingOrError(p, "restart")

	default:
		// Disabled now: stop its process and leave a disabled successor.
		m.mu.Unlock()
		m.retire(p)
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.plugins[name] != p {
			return nil // replaced meanwhile (the manager stopped)
		}
		q := m.successor(p)
		q.bin = p.bin
		m.plugins[name] = q
		m.activateLocked(q)
		m.log.Info("plugin stopped: its subsystem is disabled", "plugin", name)
		return nil
	}
}

// servingOrError returns nil if p is serving, else why not.
func (m *Manager) servingOrError(p *instance, what string) error {
	m.mu.Lock()
	st := p.st
	m.mu.Unlock()
	if st.State != StateServing {
		return fmt.Errorf("%s plugin %s: %w", what, p.name, unavailable(st))
	}
	return nil
}
