package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// process is one running, handshaken plugin process.
type process struct {
	file   string // dw-plugin-x
	pc     *plugin.Client
	client *pluginhost.Client
	run    *procRunner
	tail   *tailWriter
	// startTimeout is plugins.start_timeout as of this start.
	startTimeout time.Duration
}

// release waits for go-plugin to let go of the process (asking it to stop
// gracefully if it still runs, killing it after ~2s) and for the runner to
// be done, so that no goroutine of it is left.
func (pr *process) release() {
	pr.pc.Kill()
	<-pr.run.finished
}

// run is the supervision loop of one plugin: start it, watch it, restart it
// after a crash with backoff, quarantine it after too many crashes, and
// obey commands (restart, remove) until the manager stops.
func (m *Manager) run(p *instance) {
	defer m.wg.Done()
	ctx := m.ctx
	var (
		crashes    crashHistory
		afterCrash bool // the next start follows a crash
		waiters    []chan struct{}
		first      = true
	)
	settle := func() {
		if first {
			close(p.settled)
			first = false
		}
		for _, w := range waiters {
			close(w)
		}
		waiters = nil
	}
	defer func() {
		if first {
			close(p.settled)
		}
		for _, w := range waiters {
			close(w)
		}
		close(p.done)
	}()
	// take obeys a command and reports whether the loop goes on.
	take := func(c command) bool {
		if c.settled != nil {
			waiters = append(waiters, c.settled)
		}
		crashes.reset()
		afterCrash = false
		return !c.remove
	}
	// await waits, while the plugin is down, for a command.
	await := func() bool {
		select {
		case c := <-p.cmds:
			return take(c)
		case <-ctx.Done():
			return false
		}
	}

	for {
		proc, err := m.launch(ctx, p)
		if ctx.Err() != nil {
			if proc != nil {
				m.shutdown(p, proc)
			}
			m.setStopped(p)
			return
		}
		var reason string
		if err == nil {
			settle()
			select {
			case <-proc.run.exited:
				proc.release()
				m.clearRun(p, proc.run)
				if ctx.Err() != nil { // exited as the manager stopped
					m.setStopped(p)
					return
				}
				reason = fmt.Sprintf("%s (pid %d) exited unexpectedly (%s)%s",
					proc.file, proc.run.PID(), describeExit(proc.run.exitErr), stderrSuffix(proc.tail.Lines()))
			case c := <-p.cmds:
				m.shutdown(p, proc)
				if !take(c) {
					m.setStopped(p)
					return
				}
				continue
			case <-ctx.Done():
				m.shutdown(p, proc)
				m.setStopped(p)
				return
			}
		} else {
			var le *launchError
			if !errors.As(err, &le) {
				le = transient(err, "%s", err.Error())
			}
			if !afterCrash || le.permanent {
				m.setDown(p, StateRefused, le.msg, false)
				m.log.Error("plugin refused", "plugin", p.name, "error", le.msg)
				settle()
				if !await() {
					return
				}
				continue
			}
			reason = le.msg
		}

		// It crashed, after serving or while starting again after a crash.
		n := crashes.record(time.Now(), m.backoff.Window)
		if n >= m.backoff.QuarantineAfter {
			msg := fmt.Sprintf("quarantined after %d crashes within %s; last: %s. It stays down until it is restarted by hand or its binary changes",
				n, m.backoff.Window, reason)
			m.setDown(p, StateQuarantined, msg, false)
			m.log.Error("plugin quarantined", "plugin", p.name, "crashes", n, "window", m.backoff.Window, "error", reason)
			settle()
			if !await() {
				return
			}
			continue
		}
		delay := m.backoff.delay(n, randJitter())
		m.setDown(p, StateRestarting, reason, true)
		m.log.Warn("plugin crashed; restarting after backoff", "plugin", p.name, "error", reason, "delay", delay, "crashes_in_window", n)
		settle()
		t := time.NewTimer(delay)
		select {
		case <-t.C:
			afterCrash = true
		case c := <-p.cmds:
			t.Stop()
			if !take(c) {
				m.setStopped(p)
				return
			}
		case <-ctx.Done():
			t.Stop()
			m.setStopped(p)
			return
		}
	}
}

// setDown records a plugin that is not running.
func (m *Manager) setDown(p *instance, state State, lastErr string, restarting bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.st.State = state
	p.st.LastError = lastErr
	p.st.PID = 0
	p.st.StartedAt = time.Time{}
	p.proc = nil
	if restarting {
		p.st.Restarts++
	}
}

func (m *Manager) setStopped(p *instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.st.State = StateStopped
	p.st.PID = 0
	p.st.StartedAt = time.Time{}
	p.proc = nil
}

// shutdown stops a running plugin on purpose and waits until it is gone.
func (m *Manager) shutdown(p *instance, proc *process) {
	m.mu.Lock()
	p.st.State = StateStopping
	p.proc = nil
	m.mu.Unlock()
	start := time.Now()
	proc.release()
	m.mu.Lock()
	if p.run == proc.run {
		p.run = nil
	}
	m.mu.Unlock()
	m.log.Info("plugin stopped", "plugin", p.name, "pid", proc.run.PID(), "exit", describeExit(proc.run.exitErr), "took", time.Since(start).Round(time.Millisecond))
}

// launch starts p's binary, performs the handshake, checks the SDK version,
// configures it and applies its limits. On success p is serving. On failure
// nothing of the attempt is left running and the error is a *launchError.
func (m *Manager) launch(ctx context.Context, p *instance) (*process, error) {
	m.mu.Lock()
	bin := p.bin
	spec := p.spec
	// The options a config reload may change (SetLiveOptions), as of this
	// start.
	startTimeout, checksums, logLevel, hiddenEnv := m.opts.StartTimeout, m.opts.Checksums, m.logLevel, m.opts.HiddenEnv
	p.st.State = StateStarting
	p.st.PID = 0
	p.st.Path = bin.path
	m.mu.Unlock()
	file := filepath.Base(bin.path)

	// Pinned binaries are copied to a private folder while hashed, and the
	// copy is executed: what runs is exactly what was checked.
	execPath, sum := bin.path, bin.sha256
	if want, pinned := checksums[file]; pinned {
		dir, err := m.execDirectory()
		if err != nil {
			return nil, transient(err, "check the checksum of %s: %v", file, err)
		}
		cp, got, err := privateCopy(dir, bin.path)
		if err != nil {
			return nil, transient(err, "check the checksum of %s: %v", file, err)
		}
		defer os.RemoveAll(filepath.Dir(cp))
		m.mu.Lock()
		p.st.SHA256 = got
		m.mu.Unlock()
		if got != want {
			return nil, permanent(nil, "checksum mismatch for %s: file has sha256 %s, plugins.checksums pins %s", file, got, want)
		}
		execPath, sum = cp, got
	}
	m.mu.Lock()
	p.st.SHA256 = sum
	m.mu.Unlock()

	env := pluginEnv(logLevel)
	tail := &tailWriter{}
	plog := m.opts.Logger.Named(p.name)
	var r *procRunner // set by the runner func, under m.mu
	pc := plugin.NewClient(clientConfig(startTimeout, plog, clientIO{
		stderr: tail,
		// After the handshake go-plugin forwards the plugin's os.Stdout and
		// os.Stderr over gRPC; without these they would be discarded.
		syncStdout: &lineLogger{log: plog, stream: "stdout"},
		syncStderr: io.MultiWriter(tail, &lineLogger{log: plog, stream: "stderr"}),
	}, func(l hclog.Logger, cmd *exec.Cmd, tmpDir string) (runner.Runner, error) {
		rr, err := newProcRunner(m.spawn, l, append(withoutEnv(cmd.Env, hiddenEnv), env...), execPath, bin.path, tmpDir)
		if err != nil {
			_ = os.RemoveAll(tmpDir)
			return nil, err
		}
		m.mu.Lock()
		r, p.run = rr, rr
		m.mu.Unlock()
		if ctx.Err() != nil {
			_ = rr.Kill(context.Background()) // Stop came first: do not start it
		}
		return rr, nil
	}))
	// Stop kills a plugin that is still starting rather than waiting for
	// its handshake to time out.
	stopKill := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		rr := r
		m.mu.Unlock()
		if rr != nil {
			_ = rr.Kill(context.Background())
		}
	})
	defer stopKill()

	t0 := time.Now()
	rpc, err := pc.Client()
	tHandshake := time.Since(t0)
	if err != nil {
		pc.Kill()
		facts := handshakeFacts{file: file, err: err, startTimeout: startTimeout}
		if r != nil && r.PID() != 0 {
			<-r.finished
			facts.started = true
			facts.exitErr = r.exitErr
		}
		facts.stderr = tail.Lines()
		m.clearRun(p, r)
		return nil, explainHandshake(facts)
	}
	proc := &process{file: file, pc: pc, run: r, tail: tail, startTimeout: startTimeout}
	abort := func(le *launchError) (*process, error) {
		proc.release()
		m.clearRun(p, r)
		return nil, le
	}

	raw, err := rpc.Dispense(pluginhost.PluginName)
	if err != nil {
		return abort(permanent(err, "%s offers no %q plugin: %v", file, pluginhost.PluginName, err))
	}
	client, ok := raw.(*pluginhost.Client)
	if !ok {
		return abort(permanent(nil, "%s: dispensed %T, not *pluginhost.Client", file, raw))
	}
	proc.client = client

	call := func(f func(ctx context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, startTimeout)
		defer cancel()
		return f(cctx)
	}

	t1 := time.Now()
	var info pluginhost.Info
	if err := call(func(ctx context.Context) (err error) { info, err = client.Info(ctx); return err }); err != nil {
		return abort(m.callFailed(proc, "answering GetInfo", err))
	}
	m.mu.Lock()
	p.st.Version = info.Version
	p.st.SDKVersion = info.SDKVersion
	p.st.ProtocolVersion = pc.NegotiatedVersion()
	p.st.PID = r.PID()
	p.st.Services = info.Services
	m.mu.Unlock()
	if err := CheckSDK(file, info.SDKVersion); err != nil {
		return abort(permanent(err, "%v", err))
	}
	if info.Name != "" && info.Name != p.name {
		m.log.Warn("plugin reports another subsystem name than its binary's; it is known by the binary's", "plugin", p.name, "reported", info.Name)
	}

	tInfo := time.Since(t1)
	t2 := time.Now()
	var kv sdk.KV
	if m.opts.KV != nil {
		kv = m.opts.KV(p.name)
	}
	settings := spec.Settings
	if settings == nil {
		settings = map[string]any{}
	}
	// Configure carries the limits to start with (a plugin of sdk 6.0 gets
	// them in an ApplyLimits the client sends right after).
	m.mu.Lock()
	limits, gen, rev := p.limits, p.gen, p.limitsRev
	m.mu.Unlock()
	if limits == nil {
		limits = map[string]any{}
	}
	err = call(func(ctx context.Context) error {
		_, err := client.Configure(ctx, sdk.Config{
			Subsystem: p.name, Settings: settings, DataDir: m.opts.DataDir, HostVersion: m.opts.HostVersion,
			HostAPIAddress: m.opts.HostAPIAddress, KV: kv,
		}, limits, gen)
		return err
	})
	if err != nil {
		what := fmt.Sprintf("configuring it (its settings are subsystems.%s, its limits subsystems.%[1]s.limits)", p.name)
		switch {
		case errors.Is(err, sdk.ErrInvalidSettings):
			what = fmt.Sprintf("configuring it (its settings are subsystems.%s)", p.name)
		case errors.Is(err, sdk.ErrInvalidLimits):
			what = fmt.Sprintf("configuring it with its limits (subsystems.%s.limits)", p.name)
		}
		return abort(m.callFailed(proc, what, err))
	}

	tConfigure := time.Since(t2)
	t3 := time.Now()
	// If the limits were replaced meanwhile (ApplyLimits on the manager),
	// apply the new ones.
	for {
		m.mu.Lock()
		if p.limitsRev == rev {
			p.st.State = StateServing
			p.st.LastError = ""
			// p.gen, not gen: SetGeneration may have moved the generation
			// on meanwhile without changing the limits (the plugin runs it).
			p.st.Generation = p.gen
			p.st.StartedAt = time.Now()
			p.proc = proc
			m.mu.Unlock()
			break
		}
		limits, gen, rev = p.limits, p.gen, p.limitsRev
		m.mu.Unlock()
		if limits == nil {
			limits = map[string]any{}
		}
		err := call(func(ctx context.Context) error {
			_, err := client.ApplyLimits(ctx, limits, gen)
			return err
		})
		if err != nil {
			return abort(m.callFailed(proc, fmt.Sprintf("applying its limits (subsystems.%s.limits)", p.name), err))
		}
	}
	m.log.Info("plugin serving", "plugin", p.name, "pid", r.PID(), "version", info.Version, "sdk_version", info.SDKVersion,
		"protocol_version", pc.NegotiatedVersion(), "services", info.Services,
		"took", time.Since(t0).Round(time.Millisecond), "handshake", tHandshake.Round(time.Millisecond),
		"get_info", tInfo.Round(time.Millisecond), "configure", tConfigure.Round(time.Millisecond),
		"apply_limits", time.Since(t3).Round(time.Millisecond))
	return proc, nil
}

func (m *Manager) clearRun(p *instance, r *procRunner) {
	m.mu.Lock()
	if r != nil && p.run == r {
		p.run = nil
	}
	m.mu.Unlock()
}

// exitGrace is how long a failed start-up call waits for the process to
// exit, when the failure says the connection broke, to tell a crash from a
// rejection.
const exitGrace = time.Second

// callFailed explains a start-up call that failed: the plugin died (a
// crash, transient), rejected its settings or limits (permanent), or did
// not answer (transient).
func (m *Manager) callFailed(proc *process, doing string, err error) *launchError {
	exited := false
	select {
	case <-proc.run.exited:
		exited = true
	default:
		if errors.Is(err, sdk.ErrPluginShutdown) || errors.Is(err, context.DeadlineExceeded) {
			t := time.NewTimer(exitGrace)
			select {
			case <-proc.run.exited:
				exited = true
			case <-t.C:
			}
			t.Stop()
		}
	}
	if exited {
		<-proc.run.finished
		return transient(err, "%s exited during start (%s) while %s%s", proc.file, describeExit(proc.run.exitErr), doing, stderrSuffix(proc.tail.Lines()))
	}
	switch {
	case errors.Is(err, sdk.ErrInvalidSettings), errors.Is(err, sdk.ErrInvalidLimits),
		errors.Is(err, sdk.ErrInvalidArgument), errors.Is(err, sdk.ErrFailedPrecondition),
		errors.Is(err, sdk.ErrUnimplemented):
		return permanent(err, "%s failed while %s: %v", proc.file, doing, err)
	case errors.Is(err, context.DeadlineExceeded):
		return transient(err, "%s did not answer within %s (plugins.start_timeout) while %s", proc.file, proc.startTimeout, doing)
	}
	return transient(err, "%s failed while %s: %v", proc.file, doing, err)
}

// withoutEnv returns env without the variables named in hidden.
func withoutEnv(env, hidden []string) []string {
	if len(hidden) == 0 {
		return env
	}
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(hidden, name) {
			out = append(out, kv)
		}
	}
	return out
}

// clientIO is where go-plugin writes a plugin's output: stderr before the
// handshake, and what the plugin's os.Stdout and os.Stderr forward after.
type clientIO struct {
	stderr, syncStdout, syncStderr io.Writer
}

// clientConfig is go-plugin's configuration of a dw plugin connection (the
// handshake, gRPC only, AutoMTLS, the SDK's dial options); run starts the
// process (a procRunner: own process group, parent-death signal).
func clientConfig(startTimeout time.Duration, logger hclog.Logger, out clientIO, run func(hclog.Logger, *exec.Cmd, string) (runner.Runner, error)) *plugin.ClientConfig {
	return &plugin.ClientConfig{
		HandshakeConfig:  pluginhost.Handshake(),
		VersionedPlugins: pluginhost.VersionedPlugins(),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     startTimeout,
		GRPCDialOptions:  pluginhost.DialOptions(),
		Logger:           logger,
		Stderr:           out.stderr,
		SyncStdout:       out.syncStdout,
		SyncStderr:       out.syncStderr,
		RunnerFunc:       run,
	}
}

// pluginEnv is what the host adds to a plugin's environment: its own pid
// (the plugin exits when it dies) and the log level.
func pluginEnv(logLevel string) []string {
	return []string{
		pluginhost.EnvHostPID + "=" + strconv.Itoa(os.Getpid()),
		pluginhost.EnvLogLevel + "=" + logLevel,
	}
}

// CheckSDK says why the plugin binary file, built with SDK version
// sdkVersion, cannot be loaded by this host, or nil when it can: the
// refusal the host gives, with the range it accepts and the go get command
// that fixes the plugin.
func CheckSDK(file, sdkVersion string) error {
	if err := pluginhost.Compatible(sdk.Version, sdkVersion); err != nil {
		return fmt.Errorf("%s was built with dw sdk %s, which this host (sdk %s, accepts %s) cannot load: %w",
			file, sdkVersion, sdk.Version, pluginhost.AcceptedRange(sdk.Version), err)
	}
	return nil
}
