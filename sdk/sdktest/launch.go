package sdktest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// hostVersion is the host version the harness reports to plugins.
const hostVersion = "sdktest"

// started is a plugin process launched the way the host launches plugins.
type started struct {
	client *plugin.Client
	cmd    *exec.Cmd
	stderr *tail
	sdk    *pluginhost.Client // nil when the handshake failed
}

// pluginEnv is the environment a plugin is started with: ours, without
// anything of go-plugin's handshake or the dw host (which the caller sets),
// plus extra.
func pluginEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == pluginhost.EnvHostPID || k == pluginhost.MagicCookieKey || strings.HasPrefix(k, "PLUGIN_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// launch starts the plugin at path with go-plugin as the dw host does
// (handshake, VersionedPlugins, AutoMTLS, gRPC only, its own process
// group) and dispenses the sdk client. The process is started even when the
// returned error is not nil; call stop.
// The plugin creates its unix socket in socketDir.
func launch(path, socketDir string, startTimeout time.Duration) (*started, error) {
	cmd := exec.Command(path)
	cmd.Env = pluginEnv(
		pluginhost.EnvHostPID+"="+strconv.Itoa(os.Getpid()),
		plugin.EnvUnixSocketDir+"="+socketDir,
	)
	setProcessGroup(cmd)
	s := &started{cmd: cmd, stderr: newTail(64 << 10)}
	s.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginhost.Handshake(),
		VersionedPlugins: pluginhost.VersionedPlugins(),
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     startTimeout,
		GRPCDialOptions:  pluginhost.DialOptions(),
		Stderr:           s.stderr,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:   "sdktest",
			Level:  hclog.Off,
			Output: io.Discard,
		}),
	})
	rpc, err := s.client.Client()
	if err != nil {
		return s, explainStartError(err, startTimeout)
	}
	raw, err := rpc.Dispense(pluginhost.PluginName)
	if err != nil {
		return s, fmt.Errorf("dispense %q: %w", pluginhost.PluginName, err)
	}
	c, ok := raw.(*pluginhost.Client)
	if !ok {
		return s, fmt.Errorf("dispense %q: got %T, want *pluginhost.Client", pluginhost.PluginName, raw)
	}
	s.sdk = c
	return s, nil
}

// pid returns the plugin's pid, or 0 if it never started.
func (s *started) pid() int {
	if s == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// stop ends the plugin: go-plugin's Kill (graceful shutdown, then a hard
// kill after two seconds), bounded by within plus a grace period after
// which the process group is killed. It reports how long Kill took and
// whether the harness had to step in. After stop, nothing of the plugin
// runs.
func (s *started) stop(within time.Duration) (took time.Duration, forced bool, err error) {
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.client.Kill()
	}()
	pid := s.pid()
	select {
	case <-done:
	case <-time.After(within + 5*time.Second):
		forced = true
		if pid > 0 {
			killGroup(pid)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			return time.Since(start), true, fmt.Errorf("go-plugin Kill did not return 10s after the plugin's process group was killed")
		}
	}
	return time.Since(start), forced, nil
}

var (
	reUnrecognized = regexp.MustCompile(`Unrecognized remote plugin message: ([^\n]*)`)
	rePluginProto  = regexp.MustCompile(`Plugin version: (\S+?),`)
)

// explainStartError turns go-plugin's start errors into messages a plugin
// author can act on.
func explainStartError(err error, startTimeout time.Duration) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Unrecognized remote plugin message"):
		line := ""
		if m := reUnrecognized.FindStringSubmatch(msg); m != nil {
			line = m[1]
		}
		if line == "" {
			return fmt.Errorf("the plugin exited or closed stdout before the handshake (go-plugin: %s)", firstLine(msg))
		}
		return fmt.Errorf("wrote to stdout before the handshake: %q: a plugin must print nothing to stdout before sdk.Serve (log to stderr or through hclog); go-plugin reads the first line of stdout as the handshake", line)
	case strings.Contains(msg, "incompatible API version"):
		v := "?"
		if m := rePluginProto.FindStringSubmatch(msg); m != nil {
			v = m[1]
		}
		return fmt.Errorf("protocol version mismatch: the plugin speaks go-plugin protocol version %s, this harness (sdk %s) speaks %d: rebuild the plugin with a matching dw sdk", v, sdk.Version, pluginhost.ProtocolVersion)
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("no handshake within the start timeout of %v: the plugin must call sdk.Serve promptly", startTimeout)
	case strings.Contains(msg, "plugin exited before we could connect"):
		return fmt.Errorf("the plugin exited before the handshake")
	}
	return fmt.Errorf("start: %w", err)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// Start launches the plugin at path as the host does and configures it with
// opts.Settings, a temporary data folder and an in-memory host KV (a
// [MemKV]), for tests of a plugin's own gRPC services: call them on
// Client.Conn(). The plugin is stopped, and the folder removed, when the test
// ends. Start fails the test if the plugin does not start or configure.
func Start(t testing.TB, path string, opts Options) *pluginhost.Client {
	t.Helper()
	abs, err := pluginPath(path)
	if err != nil {
		t.Fatal(err)
	}
	opts = opts.withDefaults()
	// Not t.TempDir: a unix socket path must stay short (about 100 bytes).
	tmp, err := newTempDir()
	if err != nil {
		t.Fatal(err)
	}
	s, err := launch(abs, tmp.sockets, opts.StartTimeout)
	t.Cleanup(func() {
		if _, _, err := s.stop(opts.ShutdownWithin); err != nil {
			t.Errorf("stop plugin %s: %v", abs, err)
		}
		if err := os.RemoveAll(tmp.root); err != nil {
			t.Errorf("sdktest: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("start plugin %s: %v%s", abs, err, s.stderr.section())
	}
	settings, err := normalize(opts.Settings)
	if err != nil {
		t.Fatalf("sdktest: settings %v cannot be sent: %v", opts.Settings, err)
	}
	name := subsystemFromBinary(abs)
	if name == "" {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		info, err := s.sdk.Info(ctx)
		cancel()
		if err != nil {
			t.Fatalf("plugin %s: %v%s", abs, err, s.stderr.section())
		}
		name = info.Name
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	_, err = s.sdk.Configure(ctx, sdk.Config{
		Subsystem:   name,
		Settings:    settings,
		DataDir:     tmp.data,
		HostVersion: hostVersion,
		KV:          NewMemKV(),
	}, nil, 0)
	if err != nil {
		t.Fatalf("configure plugin %s: %v%s", abs, err, s.stderr.section())
	}
	return s.sdk
}

// tempDir is the temporary folder of a run: the plugin's data folder and
// the folder of its unix sockets.
type tempDir struct {
	root, data, sockets string
}

func newTempDir() (tempDir, error) {
	root, err := os.MkdirTemp("", "sdktest-")
	if err != nil {
		return tempDir{}, fmt.Errorf("sdktest: create a temporary folder: %w", err)
	}
	d := tempDir{root: root, data: filepath.Join(root, "data"), sockets: filepath.Join(root, "sockets")}
	for _, dir := range []string{d.data, d.sockets} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			_ = os.RemoveAll(root)
			return tempDir{}, fmt.Errorf("sdktest: create a temporary folder: %w", err)
		}
	}
	return d, nil
}

// tail keeps the last bytes written to it, for showing a plugin's stderr.
type tail struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	cut   bool
	total int64
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	t.total += int64(len(p))
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	return len(p), nil
}

// written returns how many bytes were written in all.
func (t *tail) written() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// lines returns the last n complete lines.
func (t *tail) lines(n int) []string {
	t.mu.Lock()
	s := string(t.buf)
	cut := t.cut
	t.mu.Unlock()
	if cut {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) == 1 && all[0] == "" {
		return nil
	}
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// section formats the last lines of stderr for appending to a detail, or
// returns "" when there are none.
func (t *tail) section() string {
	if t == nil {
		return ""
	}
	lines := t.lines(15)
	if len(lines) == 0 {
		return ""
	}
	return "\nlast lines of the plugin's stderr:\n  " + strings.Join(lines, "\n  ")
}
