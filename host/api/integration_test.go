package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

var (
	echoOnce sync.Once
	echoDir  string
	echoBin  string
	echoErr  error
)

// echoBinary builds testdata/echoplugin once per test run.
func echoBinary(t testing.TB) string {
	t.Helper()
	echoOnce.Do(func() {
		echoDir, echoErr = os.MkdirTemp("", "dw-api-test-")
		if echoErr != nil {
			return
		}
		echoBin = filepath.Join(echoDir, "dw-plugin-echo")
		cmd := exec.Command("go", "build", "-o", echoBin, "./testdata/echoplugin")
		out, err := cmd.CombinedOutput()
		if err != nil {
			echoErr = fmt.Errorf("build echo plugin: %w\n%s", err, out)
		}
	})
	if echoErr != nil {
		t.Fatal(echoErr)
	}
	return echoBin
}

func cleanupEchoBinary() {
	if echoDir != "" {
		_ = os.RemoveAll(echoDir)
	}
}

// livePlugins is Plugins over one real plugin process.
type livePlugins struct {
	client *pluginhost.Client
	status supervisor.Status
}

func (l *livePlugins) Statuses() []supervisor.Status { return []supervisor.Status{l.status} }

func (l *livePlugins) Client(name string) (*pluginhost.Client, error) {
	if name != l.status.Name {
		return nil, fmt.Errorf("no plugin %s: %w", name, sdk.ErrNotFound)
	}
	return l.client, nil
}

func (l *livePlugins) Restart(context.Context, string) error {
	return fmt.Errorf("restart: %w in this test", sdk.ErrUnimplemented)
}

// echoEnv is a real echo plugin behind the admin API on a real HTTP server.
type echoEnv struct {
	plugin   *plugin.Client
	client   *pluginhost.Client
	server   *httptest.Server
	registry *prometheus.Registry
}

const testToken = "tok-alice-0123456789"

func startEcho(t testing.TB, opts Options) *echoEnv {
	t.Helper()
	bin := echoBinary(t)
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginhost.Handshake(),
		VersionedPlugins: pluginhost.VersionedPlugins(),
		Cmd:              exec.Command(bin),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		GRPCDialOptions:  pluginhost.DialOptions(),
		Logger:           hclog.NewNullLogger(),
		StartTimeout:     30 * time.Second,
	})
	t.Cleanup(pc.Kill)
	rpc, err := pc.Client()
	if err != nil {
		t.Fatalf("start echo plugin: %v", err)
	}
	raw, err := rpc.Dispense(pluginhost.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(*pluginhost.Client)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Configure(ctx, sdk.Config{Subsystem: "echo", DataDir: t.TempDir(), HostVersion: "test"}, nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyLimits(ctx, map[string]any{"max_repeat": 5000}, 7); err != nil {
		t.Fatal(err)
	}
	live := &livePlugins{client: c, status: supervisor.Status{
		Name: "echo", State: supervisor.StateServing, Version: info.Version, SDKVersion: info.SDKVersion,
		ProtocolVersion: pc.NegotiatedVersion(), Generation: 7, Services: info.Services,
	}}
	opts.Plugins = live
	opts.Registry = prometheus.NewRegistry()
	if opts.Credentials == nil {
		opts.Credentials = adminTokens(map[string]string{testToken: "alice"})
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		srv.Client().CloseIdleConnections()
		srv.Close()
	})
	return &echoEnv{plugin: pc, client: c, server: srv, registry: opts.Registry}
}

func (e *echoEnv) applyLimits(t testing.TB, limits map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.client.ApplyLimits(ctx, limits, 8); err != nil {
		t.Fatal(err)
	}
}

// call does one HTTP request with the test token and reads the answer.
func (e *echoEnv) call(t testing.TB, method, path, body string) response {
	t.Helper()
	r, err := e.try(method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// try is call for goroutines other than the test's: it returns the error.
func (e *echoEnv) try(method, path, body string) (response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.server.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.server.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

func TestIntegrationLimits(t *testing.T) {
	e := startEcho(t, Options{})
	r := e.call(t, "GET", "/v1/subsystems/echo/limits", "")
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var body struct {
		Subsystem  string
		Generation uint64
		Limits     map[string]any
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatal(err)
	}
	if body.Subsystem != "echo" || body.Generation != 7 || body.Limits["max_repeat"] != 5000.0 || body.Limits["backpressure"] != "none" {
		t.Errorf("limits %s", r.body)
	}
	if _, ok := body.Limits["metrics_delay"]; !ok {
		t.Errorf("limits lack metrics_delay (config key names expected): %s", r.body)
	}
	if r := e.call(t, "GET", "/v1/subsystems/other/limits", ""); r.code != 404 {
		t.Errorf("unknown subsystem: %d %s", r.code, r.body)
	}
}

func TestIntegrationSubsystemMetrics(t *testing.T) {
	e := startEcho(t, Options{})
	r := e.call(t, "GET", "/v1/subsystems/echo/metrics", "")
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var body struct {
		Subsystem, Backpressure, Reason string
		Metrics                         []struct {
			Name, Kind, Help string
			Value            float64
			Labels           map[string]string
		}
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatal(err)
	}
	if body.Subsystem != "echo" || body.Backpressure != "none" || len(body.Metrics) == 0 {
		t.Fatalf("metrics %s", r.body)
	}
	m := body.Metrics[2]
	if m.Name != "queue-depth" || m.Kind != "gauge" || m.Value != 3 || m.Labels["class"] != "fast" || m.Help == "" {
		t.Errorf("metric %+v", m)
	}
	if c := body.Metrics[0]; c.Name != "calls_total" || c.Kind != "counter" {
		t.Errorf("counter %+v", c)
	}

	e.applyLimits(t, map[string]any{"backpressure": "saturated"})
	r = e.call(t, "GET", "/v1/subsystems/echo/metrics", "")
	if !strings.Contains(r.body, `"backpressure":"saturated","reason":"told so by its limits"`) {
		t.Errorf("after saturating: %s", r.body)
	}
}

func TestIntegrationHealth(t *testing.T) {
	e := startEcho(t, Options{})
	for _, tt := range []struct {
		health string
		code   int
	}{{"serving", 200}, {"degraded", 200}, {"not_serving", 503}} {
		e.applyLimits(t, map[string]any{"health": tt.health})
		r := e.call(t, "GET", "/v1/subsystems/echo/health", "")
		if r.code != tt.code {
			t.Errorf("%s: %d %s", tt.health, r.code, r.body)
		}
		var body struct {
			Subsystem, Status, Message string
			Components                 []struct {
				Name, Status, Message string
				CheckedAt             time.Time `json:"checked_at"`
			}
		}
		if err := json.Unmarshal([]byte(r.body), &body); err != nil {
			t.Fatal(err)
		}
		if body.Status != tt.health || len(body.Components) != 1 || body.Components[0].Name != "core" ||
			body.Components[0].Status != tt.health || body.Components[0].CheckedAt.IsZero() {
			t.Errorf("%s: %s", tt.health, r.body)
		}
	}
}

func TestIntegrationPrometheus(t *testing.T) {
	e := startEcho(t, Options{ScrapeTimeout: 300 * time.Millisecond})
	r := e.call(t, "GET", "/metrics", "")
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	for _, want := range []string{
		"# HELP dw_echo_calls_total Echo calls served.",
		"# TYPE dw_echo_calls_total counter",
		"dw_echo_calls_total 0",
		"# TYPE dw_echo_queue_depth gauge",
		`dw_echo_queue_depth{class="fast"} 3`,
		`dw_echo_queue_depth{class="slow"} 5`,
		`dw_echo_ratio{bad_label="x"} 0.5`,
		`dw_plugin_up{plugin="echo"} 1`,
		`dw_plugin_state{plugin="echo",state="serving"} 1`,
		`dw_plugin_backpressure{plugin="echo"} 0`,
		`dw_plugin_backpressure_state{plugin="echo",state="none"} 1`,
		`dw_plugin_metrics_dropped{plugin="echo"} 2`,
		`dw_plugin_scrape_errors_total{plugin="echo"} 0`,
	} {
		if !strings.Contains(r.body, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(r.body, `dw_echo_queue_depth{class="fast"} 7`) || strings.Contains(r.body, `class="other"`) {
		t.Error("colliding plugin metrics were exported")
	}

	// A plugin slower than the scrape timeout is counted, not fatal.
	e.applyLimits(t, map[string]any{"metrics_delay": "5s"})
	start := time.Now()
	r = e.call(t, "GET", "/metrics", "")
	if r.code != 200 || !strings.Contains(r.body, `dw_plugin_scrape_errors_total{plugin="echo"} 1`) ||
		strings.Contains(r.body, "dw_echo_calls_total") || !strings.Contains(r.body, `dw_plugin_up{plugin="echo"} 1`) {
		t.Errorf("slow plugin scrape: %d\n%s", r.code, r.body)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("scrape took %v with a 300ms plugin timeout", d)
	}
}

func TestIntegrationRPCUnary(t *testing.T) {
	e := startEcho(t, Options{})
	r := e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Echo",
		`{"message":"hello","count":3,"kind":"KIND_SMALL","at":"2025-01-01T00:00:00Z","any":{"@type":"type.googleapis.com/dw.echo.v1.Nested","label":"n"}}`)
	if r.code != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatal(err)
	}
	req, _ := body["request"].(map[string]any)
	if body["caller"] != "alice" || req["message"] != "hello" || req["count"] != "3" || req["kind"] != "KIND_SMALL" {
		t.Errorf("reply %s", r.body)
	}
	if any, _ := req["any"].(map[string]any); any["label"] != "n" {
		t.Errorf("Any lost: %s", r.body)
	}
	// Empty body is the empty request.
	r = e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Echo", "")
	if r.code != 200 || !jsonSame(r.body, `{"request":{},"caller":"alice"}`) {
		t.Errorf("empty body: %d %s", r.code, r.body)
	}
}

func TestIntegrationRPCStreaming(t *testing.T) {
	e := startEcho(t, Options{})
	const n = 2000
	req, _ := http.NewRequest("POST", e.server.URL+"/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Repeat",
		strings.NewReader(fmt.Sprintf(`{"message":"m","times":%d,"pad":1024}`, n)))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := e.server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	i := 0
	for sc.Scan() {
		var line struct {
			Message string
			Index   int
			Pad     []byte
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, sc.Bytes())
		}
		if line.Message != "m" || line.Index != i || len(line.Pad) != 1024 {
			t.Fatalf("line %d: %s", i, sc.Bytes())
		}
		i++
	}
	if sc.Err() != nil || i != n {
		t.Fatalf("read %d lines, want %d (%v)", i, n, sc.Err())
	}

	// An error mid-stream ends it with an error line.
	r := e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Repeat", `{"message":"m","times":10,"fail_after":3}`)
	lines := strings.Split(strings.TrimSpace(r.body), "\n")
	if r.code != 200 || len(lines) != 4 {
		t.Fatalf("failing stream: %d %q", r.code, r.body)
	}
	var last ErrorBody
	if err := json.Unmarshal([]byte(lines[3]), &last); err != nil || last.Error.Code != "unavailable" ||
		!strings.Contains(last.Error.Message, "failing after 3") {
		t.Errorf("last line %s (%v)", lines[3], err)
	}

	// An error before the first reply is a plain error response.
	r = e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Repeat", `{"times":999999}`)
	if e := errorOf(t, r); r.code != 400 || !strings.Contains(e.Message, "max_repeat") {
		t.Errorf("stream refused at once: %d %+v", r.code, e)
	}

	// An empty stream is 200 with no lines.
	r = e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Repeat", `{"times":0}`)
	if r.code != 200 || r.body != "" {
		t.Errorf("empty stream: %d %q", r.code, r.body)
	}
}

func TestIntegrationRPCStreamFlushesAndFollowsClient(t *testing.T) {
	e := startEcho(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.server.URL+"/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Repeat",
		strings.NewReader(`{"message":"first","times":1,"hold":true}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := e.server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// The stream stays open after one reply; the reply must arrive anyway,
	// flushed on its own.
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, `"first"`) {
		t.Fatalf("first line %q: %v", line, err)
	}
	if n := streamsOpen(t, e); n != 1 {
		t.Fatalf("streams open in the plugin: %v, want 1", n)
	}
	// The client going away ends the plugin call.
	resp.Body.Close()
	deadline := time.Now().Add(20 * time.Second)
	for streamsOpen(t, e) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("plugin stream still open 20s after the client left")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamsOpen reads the echo plugin's streams_open gauge through the API.
func streamsOpen(t testing.TB, e *echoEnv) float64 {
	t.Helper()
	r := e.call(t, "GET", "/v1/subsystems/echo/metrics", "")
	var body struct {
		Metrics []struct {
			Name  string
			Value float64
		}
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("%d %s", r.code, r.body)
	}
	for _, m := range body.Metrics {
		if m.Name == "streams_open" {
			return m.Value
		}
	}
	t.Fatalf("no streams_open in %s", r.body)
	return 0
}

func TestIntegrationConcurrentRequests(t *testing.T) {
	e := startEcho(t, Options{})
	paths := []struct{ method, path, body string }{
		{"GET", "/v1/subsystems/echo/limits", ""},
		{"GET", "/v1/subsystems/echo/metrics", ""},
		{"GET", "/v1/subsystems/echo/health", ""},
		{"GET", "/metrics", ""},
		{"GET", "/v1/plugins", ""},
		{"POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Echo", `{"message":"x"}`},
		{"POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Repeat", `{"message":"x","times":20}`},
	}
	var wg sync.WaitGroup
	errs := make(chan string, 1000)
	for g := range 8 {
		wg.Go(func() {
			for i := range 15 {
				p := paths[(g+i)%len(paths)]
				r, err := e.try(p.method, p.path, p.body)
				if err != nil || r.code != 200 {
					errs <- fmt.Sprintf("%s %s: %d %s %v", p.method, p.path, r.code, r.body, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestIntegrationRPCRefusedAndUnknown(t *testing.T) {
	e := startEcho(t, Options{})
	tests := []struct {
		path string
		code int
		msg  string
	}{
		{"dw.sdk.v1.ScalableSubsystem/ApplyLimits", 403, "bypass the config transaction"},
		{"dw.sdk.v1.ScalableSubsystem/GetLimits", 403, "plugin contract"},
		{"grpc.health.v1.Health/Check", 403, "gRPC plumbing"},
		{"grpc.reflection.v1.ServerReflection/ServerReflectionInfo", 403, "gRPC plumbing"},
		{"plugin.GRPCController/Shutdown", 403, "go-plugin plumbing"},
		{"dw.echo.v1.Echo/Nope", 404, "the service has Collect, Echo, Fail, Repeat"},
		{"dw.other.v1.Other/Call", 404, "the plugin offers dw.echo.v1.Echo"},
		{"dw.echo.v1.Echo/Collect", 501, "client-streaming"},
		{"not..valid/Echo", 400, "fully qualified"},
	}
	for _, tt := range tests {
		r := e.call(t, "POST", "/v1/subsystems/echo/rpc/"+tt.path, "{}")
		if er := errorOf(t, r); r.code != tt.code || !strings.Contains(er.Message, tt.msg) {
			t.Errorf("%s: %d %+v, want %d with %q", tt.path, r.code, er, tt.code, tt.msg)
		}
	}
}

func TestIntegrationRPCBadInput(t *testing.T) {
	e := startEcho(t, Options{MaxRequestBytes: 1 << 20})
	r := e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Echo", "{\n  \"message\": \"x\",\n  \"count\": \"nan\"\n}")
	if er := errorOf(t, r); r.code != 400 || er.Code != "invalid_argument" || !strings.Contains(er.Message, "line 3") ||
		!strings.Contains(er.Message, "dw.echo.v1.EchoRequest") {
		t.Errorf("malformed JSON: %d %+v", r.code, er)
	}
	r = e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Echo", `{"message":"x"`)
	if er := errorOf(t, r); r.code != 400 || !strings.Contains(er.Message, "ends at byte") {
		t.Errorf("truncated JSON: %d %+v", r.code, er)
	}
	r = e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Echo", `{"mesage":"x"}`)
	if er := errorOf(t, r); r.code != 400 || !strings.Contains(er.Message, `unknown field "mesage"`) {
		t.Errorf("unknown field: %d %+v", r.code, er)
	}
	big := `{"message":"` + strings.Repeat("a", 2<<20) + `"}`
	r = e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Echo", big)
	if er := errorOf(t, r); r.code != 413 || er.Code != "payload_too_large" || !strings.Contains(er.Message, "1048576 bytes") {
		t.Errorf("oversized body: %d %+v", r.code, er)
	}
	// Under the limit passes.
	r = e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Echo", `{"message":"`+strings.Repeat("a", 512<<10)+`"}`)
	if r.code != 200 {
		t.Errorf("512 KiB body: %d", r.code)
	}
}

func TestIntegrationRPCPluginErrors(t *testing.T) {
	e := startEcho(t, Options{})
	tests := []struct {
		body       string
		code       int
		errCode    string
		retryAfter string
	}{
		{`{"kind":"backpressure","retry_after_ms":1500}`, 429, "backpressure", "2"},
		{`{"kind":"quota_exceeded"}`, 429, "quota_exceeded", "1"},
		{`{"kind":"not_found"}`, 404, "not_found", ""},
		{`{"kind":"invalid_argument"}`, 400, "invalid_argument", ""},
		{`{"kind":"permission_denied"}`, 403, "permission_denied", ""},
		{`{"kind":"unavailable"}`, 503, "unavailable", ""},
		{`{"kind":"something"}`, 500, "internal", ""},
	}
	for _, tt := range tests {
		r := e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Fail", tt.body)
		er := errorOf(t, r)
		if r.code != tt.code || er.Code != tt.errCode || r.header.Get("Retry-After") != tt.retryAfter ||
			!strings.Contains(er.Message, "fail as asked") {
			t.Errorf("%s: %d %+v Retry-After=%q", tt.body, r.code, er, r.header.Get("Retry-After"))
		}
	}

	// A panic in the plugin's handler is a 500 that says where; the plugin
	// keeps serving.
	r := e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Fail", `{"kind":"panic"}`)
	if er := errorOf(t, r); r.code != 500 || er.Code != "plugin_panicked" ||
		!strings.Contains(er.Message, "panicked in Fail: echo asked to panic (echoplugin/main.go:") {
		t.Errorf("panic: %d %+v", r.code, er)
	}
	if r := e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Echo", `{"message":"still here"}`); r.code != 200 {
		t.Errorf("echo after the panic: %d %s", r.code, r.body)
	}
}

func TestIntegrationPluginGone(t *testing.T) {
	e := startEcho(t, Options{})
	if r := e.call(t, "GET", "/v1/subsystems/echo/limits", ""); r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	e.plugin.Kill()
	for _, path := range []string{"/v1/subsystems/echo/limits", "/v1/subsystems/echo/metrics", "/v1/subsystems/echo/health"} {
		r := e.call(t, "GET", path, "")
		if er := errorOf(t, r); r.code != 503 || er.Code != "plugin_shutdown" {
			t.Errorf("%s after kill: %d %+v", path, r.code, er)
		}
	}
	r := e.call(t, "POST", "/v1/subsystems/echo/rpc/dw.echo.v1.Echo/Echo", "{}")
	if r.code != 503 {
		t.Errorf("rpc after kill: %d %s", r.code, r.body)
	}
	// The scrape still works and counts the failure.
	r = e.call(t, "GET", "/metrics", "")
	if r.code != 200 || !strings.Contains(r.body, `dw_plugin_scrape_errors_total{plugin="echo"} 1`) {
		t.Errorf("scrape after kill: %d", r.code)
	}
}

// BenchmarkAdminLimitsRoundTrip measures GET /v1/subsystems/echo/limits
// through a real HTTP server to a real plugin process and back ("http"),
// and, for comparison, the bare gRPC call it makes ("grpc-direct") and the
// HTTP floor, GET /healthz, which does not reach the plugin ("http-healthz").
func BenchmarkAdminLimitsRoundTrip(b *testing.B) {
	e := startEcho(b, Options{})
	httpGet := func(path string) func(b *testing.B) {
		return func(b *testing.B) {
			req, _ := http.NewRequest("GET", e.server.URL+path, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			client := e.server.Client()
			measure(b, func() error {
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return nil
			})
		}
	}
	b.Run("http", httpGet("/v1/subsystems/echo/limits"))
	b.Run("http-healthz", httpGet("/healthz"))
	b.Run("grpc-direct", func(b *testing.B) {
		ctx := context.Background()
		measure(b, func() error {
			_, _, err := e.client.Limits(ctx)
			return err
		})
	})
}

// measure runs op b.N times and reports its p50 and p99 latency.
func measure(b *testing.B, op func() error) {
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sorted := append([]time.Duration(nil), lat...)
	slices.Sort(sorted)
	p := func(q float64) float64 {
		return float64(sorted[int(q*float64(len(sorted)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(p(0.50), "p50-µs")
	b.ReportMetric(p(0.99), "p99-µs")
}

// jsonSame reports whether two JSON texts hold the same value.
func jsonSame(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}
