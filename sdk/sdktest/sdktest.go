package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// Names of the checks, in the order they run.
const (
	CheckHandshake      = "handshake"
	CheckGetInfo        = "get_info"
	CheckConfigure      = "configure"
	CheckValidateLimits = "validate_limits"
	CheckApplyLimits    = "apply_limits"
	CheckMetrics        = "metrics"
	CheckHealth         = "health"
	CheckShutdown       = "shutdown"
	CheckHostDeath      = "host_death"
)

// Defaults of Options.
const (
	DefaultShutdownWithin = 3 * time.Second
	DefaultOrphanWithin   = 2 * time.Second
	DefaultStartTimeout   = 10 * time.Second
)

// callTimeout bounds each RPC the harness makes.
const callTimeout = 10 * time.Second

// Options tune the checks. The zero value checks a plugin that needs no
// settings with its default limits.
type Options struct {
	// Settings are given to Configure (the plugin's config section without
	// enabled and limits), as decoded from YAML: strings for sizes and
	// durations, map[string]any for objects, []any for lists.
	Settings map[string]any
	// ValidLimits are candidate limits the plugin must accept, in the same
	// form. Default: {} (the plugin's default limits). The default limits
	// GetInfo reports are always checked as well.
	ValidLimits []map[string]any
	// InvalidLimits are candidate limits the plugin must reject, e.g. a
	// value out of range. They add to a generated set that is always
	// checked: an unknown key and, for every key of the default limits
	// (nested ones included), a value of the wrong type.
	InvalidLimits []map[string]any
	// ShutdownWithin is how long the plugin may take to exit after the
	// host asks it to stop. Default 3s.
	ShutdownWithin time.Duration
	// OrphanWithin is how long the plugin may outlive its host. Default 2s.
	OrphanWithin time.Duration
	// StartTimeout bounds the start and handshake. Default 10s.
	StartTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if len(o.ValidLimits) == 0 {
		o.ValidLimits = []map[string]any{{}}
	}
	if o.ShutdownWithin <= 0 {
		o.ShutdownWithin = DefaultShutdownWithin
	}
	if o.OrphanWithin <= 0 {
		o.OrphanWithin = DefaultOrphanWithin
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	return o
}

// CheckResult is the outcome of one check.
type CheckResult struct {
	// Name is one of the Check* constants.
	Name string
	// Passed is true when the check passed; a skipped check has neither
	// Passed nor a failure.
	Passed bool
	// Skipped is true when the check could not run; Detail says why.
	Skipped bool
	// Detail says what was found: on failure, what is wrong and what was
	// expected; on success a summary and any warnings.
	Detail string
	// Duration is how long the check took.
	Duration time.Duration
}

// Report is the outcome of all checks on one plugin binary.
type Report struct {
	// Plugin is the subsystem name: from the binary's name dw-plugin-<name>,
	// else the name the plugin reports.
	Plugin string
	// Path is the absolute path of the binary.
	Path string
	// Info is the plugin's GetInfo answer (zero if it never answered).
	Info pluginhost.Info
	// ProtocolVersion is the negotiated go-plugin protocol version (0 if
	// the handshake failed).
	ProtocolVersion int
	// Checks are the results in the order the checks ran.
	Checks []CheckResult
}

// Passed reports whether every check passed or was skipped, and at least
// one passed.
func (r Report) Passed() bool {
	passed := false
	for _, c := range r.Checks {
		if !c.Passed && !c.Skipped {
			return false
		}
		passed = passed || c.Passed
	}
	return passed
}

// Check runs the conformance checks against the plugin binary at path and
// returns the report. It returns an error only when the harness cannot run
// at all (path missing, not a regular file, not executable, no temporary
// folder); a plugin that
// fails is a report with failed checks. Every process it starts is gone when
// it returns.
func Check(ctx context.Context, path string, opts Options) (Report, error) {
	abs, err := pluginPath(path)
	if err != nil {
		return Report{}, err
	}
	tmp, err := newTempDir()
	if err != nil {
		return Report{}, err
	}
	r := &run{ctx: ctx, path: abs, opts: opts.withDefaults(), tmp: tmp, report: Report{Path: abs}}
	r.report.Plugin = subsystemFromBinary(abs)
	defer r.cleanup()

	r.do(CheckHandshake, r.handshake)
	r.do(CheckGetInfo, r.getInfo)
	r.do(CheckConfigure, r.configure)
	r.do(CheckValidateLimits, r.validateLimits)
	r.do(CheckApplyLimits, r.applyLimits)
	r.do(CheckMetrics, r.metrics)
	r.do(CheckHealth, r.health)
	r.do(CheckShutdown, r.shutdown)
	r.do(CheckHostDeath, r.hostDeath)
	return r.report, nil
}

// Run runs Check and reports each check as a subtest of t, named after the
// check: a failed check fails its subtest with the detail, a skipped one is
// skipped. It fails t at once if the harness cannot run.
func Run(t *testing.T, path string, opts Options) {
	t.Helper()
	rep, err := Check(t.Context(), path, opts)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	t.Logf("plugin %s %s (sdk %s) at %s", rep.Plugin, rep.Info.Version, rep.Info.SDKVersion, rep.Path)
	for _, c := range rep.Checks {
		t.Run(c.Name, func(t *testing.T) {
			switch {
			case c.Skipped:
				t.Skip(c.Detail)
			case !c.Passed:
				t.Errorf("%s failed after %v:\n%s", c.Name, c.Duration.Round(time.Millisecond), c.Detail)
			case c.Detail != "":
				t.Log(c.Detail)
			}
		})
	}
}

// pluginPath checks that path names an executable regular file and makes it
// absolute.
func pluginPath(path string) (string, error) {
	if path == "" {
		return "", errors.New("sdktest: no plugin path given")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("sdktest: plugin %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("sdktest: plugin %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("sdktest: plugin %s: not a regular file (mode %s)", path, fi.Mode())
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("sdktest: plugin %s: %w: not executable (mode %s); chmod +x it", path, fs.ErrPermission, fi.Mode().Perm())
	}
	return abs, nil
}

// binaryPrefix starts the name of every plugin binary.
const binaryPrefix = "dw-plugin-"

// subsystemFromBinary returns <name> of a binary named dw-plugin-<name>,
// or "".
func subsystemFromBinary(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), ".exe")
	if name, ok := strings.CutPrefix(base, binaryPrefix); ok {
		return name
	}
	return ""
}

// outcome is what a check function decides.
type outcome struct {
	passed, skipped bool
	detail          string
}

func pass(format string, args ...any) outcome {
	return outcome{passed: true, detail: fmt.Sprintf(format, args...)}
}

func fail(format string, args ...any) outcome {
	return outcome{detail: fmt.Sprintf(format, args...)}
}

func skip(format string, args ...any) outcome {
	return outcome{skipped: true, detail: fmt.Sprintf(format, args...)}
}

// failList fails with one problem per line, or passes with summary when
// there are none.
func failList(problems []string, summary string) outcome {
	if len(problems) == 0 {
		return pass("%s", summary)
	}
	return fail("%s", strings.Join(problems, "\n"))
}

func (r *run) do(name string, fn func() outcome) {
	start := time.Now()
	var o outcome
	// Checks of the first plugin process; host_death starts its own.
	ownProcess := name != CheckHandshake && name != CheckHostDeath
	if r.crashedIn != "" && ownProcess {
		o = skip("the plugin crashed in %s: %s", r.crashedIn, r.crash)
	} else {
		o = fn()
		// A plugin that died is reported as a crash, with its panic,
		// not as the connection errors the crash caused; the checks
		// of the same process after it are skipped.
		if ownProcess && r.proc != nil && r.proc.sdk != nil && r.exited(!o.passed && !o.skipped) {
			r.crashedIn = name
			r.crash = crashDetail(r.proc.stderr.lines(200))
			o = fail("the plugin crashed: %s%s", r.crash, r.stderr())
		}
	}
	r.report.Checks = append(r.report.Checks, CheckResult{
		Name:     name,
		Passed:   o.passed,
		Skipped:  o.skipped,
		Detail:   o.detail,
		Duration: time.Since(start),
	})
}

// callCtx bounds one RPC.
func (r *run) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.ctx, callTimeout)
}

// batchCtx bounds a check that makes about n RPCs.
func (r *run) batchCtx(n int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.ctx, callTimeout+time.Duration(n)*time.Second)
}

// jsonText shows a value compactly, map keys sorted.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

// normalize turns candidate limits or settings into the plain JSON shapes
// that cross the connection (map[string]any, []any, float64, string, bool,
// nil), as the host sends them.
func normalize(m map[string]any) (map[string]any, error) {
	if m == nil {
		return map[string]any{}, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	if out == nil {
		out = map[string]any{}
	}
	return out, nil
}
