// Command testplugin is the dw host's test plugin. Tests build it once and
// copy (or link) it under several names; its behaviour is chosen by its own
// binary name, dw-plugin-<variant>:
//
//	good        a normal plugin: limits {max_items int min:1, mode enum fast|safe},
//	            metrics, health, and a start counter kept in the host KV
//	crashstart  writes a reason to stderr and exits 1 before Serve
//	crashlater  serves, then exits 2 once the file named by setting
//	            crash_file exists (checked every 20ms), or after setting
//	            crash_after (a duration) if set
//	hang        never calls Serve (the handshake times out)
//	stdout      prints "hello from plugin" to stdout, then Serve
//	badproto    serves go-plugin protocol version 2 directly
//	forker      like good, but starts `sleep 60` as a child at Configure;
//	            its pid is the metric child_pid
//	applyfail   like good, but ApplyLimits fails (ValidateLimits passes)
//	            whenever mode is "safe"
//
// Any other name behaves as good (the sdk7 and sdk699 builds are good
// plugins built with -ldflags "-X .../sdk.reportedSDKVersion=...").
//
// Settings understood by all serving variants:
//
//	reject: "<message>"   Configure fails with ErrInvalidSettings naming
//	                      subsystems.<name>.reject
//	crash_file, crash_after   as for crashlater, for any variant
//	shutdown_file: "<path>"   Shutdown writes "shutdown\n" to that file (a
//	                          test sees that the graceful path ran)
//
// It lives under testdata so that go build ./... and go vet ./... skip it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// Limits are the test plugin's limits.
type Limits struct {
	MaxItems int    `dw:"max_items" min:"1"`
	Mode     string `dw:"mode" enum:"fast,safe"`
}

type testPlugin struct {
	variant string

	mu       sync.Mutex
	limits   Limits
	applies  int
	starts   float64
	childPID int
	shutdown string
}

func (p *testPlugin) Info() sdk.Info {
	return sdk.Info{Name: p.variant, Version: "0.0.1-test", Capabilities: []string{"test"}}
}

func (p *testPlugin) DefaultLimits() Limits { return Limits{MaxItems: 100, Mode: "fast"} }

func (p *testPlugin) Configure(ctx context.Context, cfg sdk.Config) error {
	if msg, ok := cfg.Settings["reject"]; ok {
		return fmt.Errorf("%w: subsystems.%s.reject: %v", sdk.ErrInvalidSettings, cfg.Subsystem, msg)
	}
	if cfg.KV != nil {
		// Count starts in the host KV, to show it persists across restarts.
		n := 0
		v, err := cfg.KV.Get(ctx, "dw://internal/testplugin/starts")
		switch {
		case err == nil:
			n, _ = strconv.Atoi(string(v))
		case !errors.Is(err, sdk.ErrNotFound):
			return fmt.Errorf("read start counter: %w", err)
		}
		n++
		if err := cfg.KV.Put(ctx, "dw://internal/testplugin/starts", []byte(strconv.Itoa(n))); err != nil {
			return fmt.Errorf("write start counter: %w", err)
		}
		p.mu.Lock()
		p.starts = float64(n)
		p.mu.Unlock()
	}
	if f, ok := cfg.Settings["shutdown_file"].(string); ok {
		p.mu.Lock()
		p.shutdown = f
		p.mu.Unlock()
	}
	crashFile, _ := cfg.Settings["crash_file"].(string)
	var crashAfter time.Duration
	if s, ok := cfg.Settings["crash_after"].(string); ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%w: subsystems.%s.crash_after: %v", sdk.ErrInvalidSettings, cfg.Subsystem, err)
		}
		crashAfter = d
	}
	if p.variant == "crashlater" && crashFile == "" && crashAfter == 0 {
		crashAfter = 300 * time.Millisecond
	}
	if crashFile != "" || crashAfter > 0 {
		go crashWhen(crashFile, crashAfter)
	}
	if p.variant == "forker" {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start child: %w", err)
		}
		go func() { _ = cmd.Wait() }()
		p.mu.Lock()
		p.childPID = cmd.Process.Pid
		p.mu.Unlock()
	}
	return nil
}

// realStderr is the process's stderr. go-plugin's Serve points os.Stderr
// at a pipe it forwards over gRPC, which may not be flushed before an
// os.Exit; crash messages go straight to fd 2.
var realStderr = os.Stderr

func crashWhen(file string, after time.Duration) {
	start := time.Now()
	for {
		if file != "" {
			if _, err := os.Stat(file); err == nil {
				fmt.Fprintf(realStderr, "testplugin: crash file %s exists; exiting with status 2\n", file)
				os.Exit(2)
			}
		}
		if after > 0 && time.Since(start) >= after {
			fmt.Fprintf(realStderr, "testplugin: crashing after %s as asked; exiting with status 2\n", after)
			os.Exit(2)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *testPlugin) ValidateLimits(_ context.Context, l Limits) error { return nil }

func (p *testPlugin) ApplyLimits(_ context.Context, l Limits) error {
	if p.variant == "applyfail" && l.Mode == "safe" {
		return errors.New("applyfail: cannot switch to safe mode: device busy")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.limits = l
	p.applies++
	return nil
}

func (p *testPlugin) Metrics(context.Context) (sdk.Metrics, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := sdk.Metrics{Values: []sdk.Metric{
		sdk.Gauge("max_items", "max_items in force", float64(p.limits.MaxItems)),
		sdk.Counter("applies", "ApplyLimits calls", float64(p.applies)),
		sdk.Gauge("starts", "starts counted in the host KV", p.starts),
		sdk.Gauge("pid", "process id", float64(os.Getpid())),
	}}
	if p.childPID != 0 {
		m.Values = append(m.Values, sdk.Gauge("child_pid", "pid of the child process", float64(p.childPID)))
	}
	return m, nil
}

// Shutdown records that it ran, if shutdown_file is set.
func (p *testPlugin) Shutdown(context.Context) error {
	p.mu.Lock()
	f := p.shutdown
	p.mu.Unlock()
	if f == "" {
		return nil
	}
	return os.WriteFile(f, []byte("shutdown\n"), 0o600)
}

func (p *testPlugin) Health(context.Context) sdk.Health {
	return sdk.Health{Status: sdk.HealthServing, Components: []sdk.ComponentHealth{
		{Name: "core", Status: sdk.HealthServing, CheckedAt: time.Now()},
	}}
}

var (
	_ sdk.Subsystem[Limits]       = (*testPlugin)(nil)
	_ sdk.LimitsValidator[Limits] = (*testPlugin)(nil)
	_ sdk.Shutdowner              = (*testPlugin)(nil)
)

// nopPlugin serves nothing; badproto only needs the handshake.
type nopPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (nopPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }
func (nopPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

func main() {
	variant := strings.TrimPrefix(filepath.Base(os.Args[0]), "dw-plugin-")
	switch variant {
	case "crashstart":
		fmt.Fprintln(os.Stderr, "crashstart: cannot open /nonexistent/frobnicator.db: permission denied")
		os.Exit(1)
	case "hang":
		for {
			time.Sleep(time.Hour)
		}
	case "stdout":
		fmt.Println("hello from plugin")
	case "badproto":
		hs := pluginhost.Handshake()
		hs.ProtocolVersion = 2
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  hs,
			VersionedPlugins: map[int]plugin.PluginSet{2: {pluginhost.PluginName: nopPlugin{}}},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
		return
	}
	sdk.Serve[Limits](&testPlugin{variant: variant})
}
