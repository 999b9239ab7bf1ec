package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// ProbeOptions tune Probe.
type ProbeOptions struct {
	// StartTimeout bounds the handshake and GetInfo; zero means
	// DefaultStartTimeout.
	StartTimeout time.Duration
	// SHA256, when set, is the lowercase hex SHA-256 the file must have
	// (plugins.checksums): the file is copied to a private folder while
	// hashed, and the copy runs, so what runs is what was checked.
	SHA256 string
	// HiddenEnv names environment variables the plugin must not inherit
	// (the API tokens' variables), as Options.HiddenEnv of the supervisor.
	HiddenEnv []string
}

// Probed is a plugin process started by Probe: handshaken and asked
// GetInfo, never configured. Stop it once done.
type Probed struct {
	// Info is the plugin's GetInfo answer, with its schema (nil for a
	// plugin of sdk 6.0).
	Info pluginhost.Info
	// Client calls the plugin; before Configure, ValidateLimits checks the
	// rules of the limits struct only, and Metrics and Health say it waits
	// for Configure.
	Client *pluginhost.Client
	// PID is the plugin's process id.
	PID int

	stopOnce sync.Once
	stop     func()
}

// Stop kills the plugin's process group and waits until it is reaped and
// every goroutine of the probe has ended. It may be called more than once.
func (p *Probed) Stop() { p.stopOnce.Do(p.stop) }

// Probe starts the plugin binary at path briefly, to learn what it is: the
// go-plugin handshake, then GetInfo (name, versions, services, default
// limits and the schema of its limits and settings). It never calls
// Configure, so the plugin opens nothing (no database, no folder, no
// socket of its own): dw config validate, dw config schema and dw plugin
// docs use it on a machine where the host may be running with the same
// data_dir.
//
// The process is started as the supervisor starts plugins (runner.go): on
// a locked spawner thread with Pdeathsig, as the leader of its own process
// group, stdin /dev/null, AutoMTLS, and pluginhost.EnvHostPID naming this
// process, so that it exits if this process dies, however it dies. Stop
// kills the group at once with SIGKILL rather than asking for a graceful
// stop: a plugin that was never configured holds nothing to flush, and a
// kill cannot hang. The SDK version is not checked here; use
// pluginhost.Compatible on Info.SDKVersion.
//
// A failed start is explained as the supervisor explains it (not
// executable, checksum mismatch, protocol mismatch, stray stdout, crash
// with its last stderr lines, timeout); nothing of the attempt is left
// running.
func Probe(ctx context.Context, path string, opts ProbeOptions) (*Probed, error) {
	file := filepath.Base(path)
	if _, reason := inspect(path); reason != "" {
		return nil, fmt.Errorf("%s: %s", path, reason)
	}
	execPath := path
	if opts.SHA256 != "" {
		dir, err := os.MkdirTemp("", "dw-probe-")
		if err != nil {
			return nil, fmt.Errorf("check the checksum of %s: %w", file, err)
		}
		defer os.RemoveAll(dir)
		cp, got, err := privateCopy(dir, path)
		if err != nil {
			return nil, fmt.Errorf("check the checksum of %s: %w", file, err)
		}
		if got != opts.SHA256 {
			return nil, fmt.Errorf("checksum mismatch for %s: file has sha256 %s, plugins.checksums pins %s", file, got, opts.SHA256)
		}
		execPath = cp
	}
	startTimeout := opts.StartTimeout
	if startTimeout <= 0 {
		startTimeout = DefaultStartTimeout
	}
	// go-plugin's own logs are dropped; the last stderr lines explain a
	// failed start.
	logger := hclog.NewNullLogger()
	env := pluginEnv("warn")

	spawn := newSpawner()
	tail := &tailWriter{}
	var (
		mu sync.Mutex
		r  *procRunner
	)
	pc := plugin.NewClient(clientConfig(startTimeout, logger, clientIO{stderr: tail, syncStdout: io.Discard, syncStderr: tail},
		func(l hclog.Logger, cmd *exec.Cmd, tmpDir string) (runner.Runner, error) {
			rr, err := newProcRunner(spawn, l, append(withoutEnv(cmd.Env, opts.HiddenEnv), env...), execPath, path, tmpDir)
			if err != nil {
				_ = os.RemoveAll(tmpDir)
				return nil, err
			}
			mu.Lock()
			r = rr
			mu.Unlock()
			if ctx.Err() != nil {
				_ = rr.Kill(context.Background())
			}
			return rr, nil
		}))
	current := func() *procRunner {
		mu.Lock()
		defer mu.Unlock()
		return r
	}
	stopKill := context.AfterFunc(ctx, func() {
		if rr := current(); rr != nil {
			_ = rr.Kill(context.Background())
		}
	})
	stop := func() {
		stopKill()
		rr := current()
		if rr != nil {
			_ = rr.Kill(context.Background())
		}
		pc.Kill()
		if rr != nil {
			<-rr.finished
		}
		spawn.close()
	}

	rpc, err := pc.Client()
	if err != nil {
		facts := handshakeFacts{file: file, err: err, startTimeout: startTimeout}
		if rr := current(); rr != nil && rr.PID() != 0 {
			_ = rr.Kill(context.Background())
			<-rr.exited
			facts.started = true
			facts.exitErr = rr.exitErr
		}
		stop()
		facts.stderr = tail.Lines()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("start %s: %w", file, ctx.Err())
		}
		return nil, explainHandshake(facts)
	}
	fail := func(err error) (*Probed, error) {
		stop()
		return nil, err
	}
	raw, err := rpc.Dispense(pluginhost.PluginName)
	if err != nil {
		return fail(fmt.Errorf("%s offers no %q plugin: %w", file, pluginhost.PluginName, err))
	}
	client, ok := raw.(*pluginhost.Client)
	if !ok {
		return fail(fmt.Errorf("%s: dispensed %T, not *pluginhost.Client", file, raw))
	}
	cctx, cancel := context.WithTimeout(ctx, startTimeout)
	info, err := client.Info(cctx)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fail(fmt.Errorf("%s did not answer GetInfo within %s", file, startTimeout))
		}
		return fail(fmt.Errorf("%s: %w%s", file, err, stderrSuffix(tail.Lines())))
	}
	return &Probed{Info: info, Client: client, PID: current().PID(), stop: stop}, nil
}

// BinaryPath returns the path of the binary of subsystem name in the
// plugins folder dir (dir/dw-plugin-<name>), or an error saying why the
// host could not load it: missing, not a regular file, not executable.
func BinaryPath(dir, name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	path := filepath.Join(dir, BinaryPrefix+name)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no %s%s in plugins.dir %s", BinaryPrefix, name, dir)
	}
	if _, reason := inspect(path); reason != "" {
		return "", fmt.Errorf("%s: %s", path, reason)
	}
	return path, nil
}

// Binaries lists the plugin binaries of dir (name → path), without
// hashing them or waiting for files still being written, as dw config
// schema needs. Files named dw-plugin-* that the host would skip are
// returned in skipped (path → why), for the caller to report. A dir that
// does not exist holds none.
func Binaries(dir string) (found, skipped map[string]string, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, map[string]string{}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read plugins.dir %s: %w", dir, err)
	}
	found, skipped = map[string]string{}, map[string]string{}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		name, ok, invalid := pluginFileName(e.Name())
		if !ok {
			if invalid != "" {
				skipped[path] = invalid
			}
			continue
		}
		if _, reason := inspect(path); reason != "" {
			skipped[path] = reason
			continue
		}
		found[name] = path
	}
	return found, skipped, nil
}
