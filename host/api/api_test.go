package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// fakePlugins is a Plugins with function fields.
type fakePlugins struct {
	StatusesFunc func() []supervisor.Status
	ClientFunc   func(name string) (*pluginhost.Client, error)
	RestartFunc  func(ctx context.Context, name string) error
}

func (f *fakePlugins) Statuses() []supervisor.Status {
	if f.StatusesFunc == nil {
		return nil
	}
	return f.StatusesFunc()
}

func (f *fakePlugins) Client(name string) (*pluginhost.Client, error) {
	if f.ClientFunc == nil {
		return nil, fmt.Errorf("plugin %s: %w", name, sdk.ErrNotFound)
	}
	return f.ClientFunc(name)
}

func (f *fakePlugins) Restart(ctx context.Context, name string) error {
	if f.RestartFunc == nil {
		return fmt.Errorf("plugin %s: %w", name, sdk.ErrNotFound)
	}
	return f.RestartFunc(ctx, name)
}

// adminTokens turns token value → caller name into admin credentials.
func adminTokens(tokens map[string]string) []config.Credential {
	var out []config.Credential
	for value, name := range tokens {
		out = append(out, config.Credential{Token: config.Token{Name: name, Policy: config.PolicyAdmin}, Value: value})
	}
	return out
}

// tok is a token of the tests.
const tok = "tok-0123456789abcdef"

func newTestServer(t testing.TB, p Plugins, tokens map[string]string) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(Options{Plugins: p, Credentials: adminTokens(tokens), Registry: reg, Version: "1.2.3", ScrapeTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

type response struct {
	code   int
	header http.Header
	body   string
}

func do(t testing.TB, h http.Handler, method, path, token, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return response{code: w.Code, header: w.Header(), body: w.Body.String()}
}

// errorOf decodes an error body, failing the test if it is not one.
func errorOf(t testing.TB, r response) ErrorDetail {
	t.Helper()
	var b ErrorBody
	if err := json.Unmarshal([]byte(r.body), &b); err != nil || b.Error.Code == "" {
		t.Fatalf("not an error body (%d): %s", r.code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	return b.Error
}

func TestHealthz(t *testing.T) {
	s, _ := newTestServer(t, &fakePlugins{}, map[string]string{tok: "alice"})
	r := do(t, s.Handler(), "GET", "/healthz", "", "")
	if r.code != 200 || strings.TrimSpace(r.body) != `{"status":"ok"}` {
		t.Errorf("healthz = %d %s", r.code, r.body)
	}
	if r := do(t, s.Handler(), "HEAD", "/healthz", "", ""); r.code != 200 {
		t.Errorf("HEAD healthz = %d", r.code)
	}
}

func TestReadyz(t *testing.T) {
	tests := []struct {
		name     string
		statuses []supervisor.Status
		code     int
		notReady []string
	}{
		{"no plugins", nil, 200, nil},
		{"all serving or meant to be down", []supervisor.Status{
			{Name: "a", State: supervisor.StateServing},
			{Name: "b", State: supervisor.StateDisabled},
			{Name: "c", State: supervisor.StateStopped},
		}, 200, nil},
		{"some not serving", []supervisor.Status{
			{Name: "a", State: supervisor.StateServing},
			{Name: "b", State: supervisor.StateRestarting, LastError: "exit status 2"},
			{Name: "c", State: supervisor.StateRefused, LastError: "sdk 7.0.0 is not accepted"},
			{Name: "d", State: supervisor.StateMissing},
			{Name: "e", State: supervisor.StateStarting},
			{Name: "f", State: supervisor.StateQuarantined},
			{Name: "g", State: supervisor.StateStopping},
			{Name: "h", State: supervisor.StateDisabled},
		}, 503, []string{"b", "c", "d", "e", "f", "g"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t, &fakePlugins{StatusesFunc: func() []supervisor.Status { return tt.statuses }},
				map[string]string{tok: "alice"})
			// Without a token: ready or not, nothing more.
			r := do(t, s.Handler(), "GET", "/readyz", "", "")
			want := `{"status":"ready"}`
			if tt.code == 503 {
				want = `{"status":"not_ready"}`
			}
			if r.code != tt.code || strings.TrimSpace(r.body) != want {
				t.Errorf("readyz without a token = %d %s, want %d %s", r.code, r.body, tt.code, want)
			}
			// A wrong token is refused, as on every route.
			if r := do(t, s.Handler(), "GET", "/readyz", "wrong-0123456789abcdef", ""); r.code != 401 {
				t.Errorf("readyz with a wrong token = %d %s, want 401", r.code, r.body)
			}
			// With a valid token (any policy): the detail.
			r = do(t, s.Handler(), "GET", "/readyz", tok, "")
			if r.code != tt.code {
				t.Fatalf("readyz = %d %s, want %d", r.code, r.body, tt.code)
			}
			var body struct {
				Status   string
				Error    *ErrorDetail
				NotReady []struct {
					Name, State string
					LastError   string `json:"last_error"`
				} `json:"not_ready"`
			}
			if err := json.Unmarshal([]byte(r.body), &body); err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, n := range body.NotReady {
				names = append(names, n.Name)
			}
			if fmt.Sprint(names) != fmt.Sprint(tt.notReady) {
				t.Errorf("not ready %v, want %v", names, tt.notReady)
			}
			if tt.code == 503 {
				if body.Status != "not_ready" || body.Error == nil || !strings.Contains(body.Error.Message, "b (restarting)") {
					t.Errorf("body %s", r.body)
				}
				if body.NotReady[0].LastError != "exit status 2" || body.NotReady[0].State != "restarting" {
					t.Errorf("first not ready %+v", body.NotReady[0])
				}
			} else if body.Status != "ready" {
				t.Errorf("status %q", body.Status)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	s, _ := newTestServer(t, &fakePlugins{}, nil)
	h := s.Handler()
	r := do(t, h, "GET", "/nope", "", "")
	if e := errorOf(t, r); r.code != 404 || e.Code != "not_found" || !strings.Contains(e.Message, "GET /nope") {
		t.Errorf("unknown path: %d %+v", r.code, e)
	}
	r = do(t, h, "DELETE", "/v1/plugins", "", "")
	if e := errorOf(t, r); r.code != 405 || e.Code != "method_not_allowed" || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("wrong method: %d %+v Allow=%q", r.code, e, r.header.Get("Allow"))
	}
	r = do(t, h, "GET", "/v1/plugins/echo/restart", "", "")
	if e := errorOf(t, r); r.code != 405 || r.header.Get("Allow") != "POST" || !strings.Contains(e.Message, "allowed: POST") {
		t.Errorf("GET on restart: %d %+v Allow=%q", r.code, e, r.header.Get("Allow"))
	}
	r = do(t, h, "GET", "/v1/subsystems/echo/rpc/a.B/C", "", "")
	if r.code != 405 {
		t.Errorf("GET on rpc: %d", r.code)
	}
	// Unclean paths redirect, as ServeMux does.
	r = do(t, h, "GET", "/v1//plugins", "", "")
	if r.code/100 != 3 || r.header.Get("Location") != "/v1/plugins" {
		t.Errorf("unclean path: %d Location=%q", r.code, r.header.Get("Location"))
	}
}

func TestStatusOfEverySentinel(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{sdk.ErrNotFound, 404, "not_found"},
		{sdk.ErrInvalidArgument, 400, "invalid_argument"},
		{sdk.ErrInvalidLimits, 400, "invalid_limits"},
		{sdk.ErrInvalidSettings, 400, "invalid_settings"},
		{sdk.ErrAlreadyExists, 409, "already_exists"},
		{sdk.ErrFailedPrecondition, 409, "failed_precondition"},
		{sdk.ErrPermissionDenied, 403, "permission_denied"},
		{sdk.ErrUnimplemented, 501, "unimplemented"},
		{sdk.ErrBackpressure, 429, "backpressure"},
		{sdk.ErrQuotaExceeded, 429, "quota_exceeded"},
		{sdk.ErrOutOfRange, 416, "range_not_satisfiable"},
		{sdk.ErrUnavailable, 503, "unavailable"},
		{sdk.ErrPluginShutdown, 503, "plugin_shutdown"},
		{sdk.ErrPanicked, 500, "plugin_panicked"},
		{context.DeadlineExceeded, 504, "deadline_exceeded"},
		{context.Canceled, 499, "canceled"},
		{&http.MaxBytesError{Limit: 10}, 413, "payload_too_large"},
		{errors.New("boom"), 500, "internal"},
	}
	for _, tt := range tests {
		forms := map[string]error{
			"bare":    tt.err,
			"wrapped": fmt.Errorf("subsystem x: call y: %w", tt.err),
		}
		// Sentinels also arrive over gRPC from a plugin.
		if tt.status != 413 && tt.code != "internal" && tt.status != 499 {
			forms["over grpc"] = sdk.FromStatus(sdk.ToStatus(fmt.Errorf("in plugin: %w", tt.err)))
		}
		for form, err := range forms {
			status, code := StatusOf(err)
			if status != tt.status || code != tt.code {
				t.Errorf("%s %v: got %d %s, want %d %s", form, tt.err, status, code, tt.status, tt.code)
			}
			w := httptest.NewRecorder()
			WriteError(w, err)
			if w.Code != tt.status {
				t.Errorf("%s %v: WriteError wrote %d", form, tt.err, w.Code)
			}
			var body ErrorBody
			if jerr := json.Unmarshal(w.Body.Bytes(), &body); jerr != nil || body.Error.Code != tt.code || body.Error.Message == "" {
				t.Errorf("%s %v: body %s", form, tt.err, w.Body)
			}
			if ra := w.Header().Get("Retry-After"); (tt.status == 429) != (ra != "") {
				t.Errorf("%s %v: Retry-After %q", form, tt.err, ra)
			}
		}
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{sdk.ErrBackpressure, "1"},
		{sdk.WithRetryAfter(sdk.ErrBackpressure, 0), "1"},
		{sdk.WithRetryAfter(sdk.ErrBackpressure, 200*time.Millisecond), "1"},
		{sdk.WithRetryAfter(sdk.ErrQuotaExceeded, 1500*time.Millisecond), "2"},
		{sdk.WithRetryAfter(sdk.ErrQuotaExceeded, 3*time.Second), "3"},
		{fmt.Errorf("x: %w", sdk.WithRetryAfter(sdk.ErrBackpressure, 2001*time.Millisecond)), "3"},
		{sdk.FromStatus(sdk.ToStatus(sdk.WithRetryAfter(sdk.ErrBackpressure, 4500*time.Millisecond))), "5"},
		{sdk.WithRetryAfter(sdk.ErrBackpressure, 1000*time.Hour), "86400"},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		WriteError(w, tt.err)
		if got := w.Header().Get("Retry-After"); got != tt.want || w.Code != 429 {
			t.Errorf("%v: %d Retry-After %q, want 429 %q", tt.err, w.Code, got, tt.want)
		}
	}
}

func TestWriteErrorMaxBytesMessage(t *testing.T) {
	w := httptest.NewRecorder()
	WriteError(w, fmt.Errorf("read body: %w", &http.MaxBytesError{Limit: 4 << 20}))
	var body ErrorBody
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code != 413 || !strings.Contains(body.Error.Message, "4194304 bytes") {
		t.Errorf("%d %s", w.Code, w.Body)
	}
}

func TestAuth(t *testing.T) {
	s, _ := newTestServer(t, &fakePlugins{StatusesFunc: func() []supervisor.Status { return nil }},
		map[string]string{"s3cret-alice-0123456789": "alice", "s3cret-bob-0123456789": "bob"})
	s.Handle("GET /whoami", ScopeRead, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, 200, map[string]string{"caller": Caller(r.Context())})
	}))
	h := s.Handler()

	for _, path := range []string{"/v1/plugins", "/metrics", "/whoami", "/no/such/route"} {
		r := do(t, h, "GET", path, "", "")
		e := errorOf(t, r)
		if r.code != 401 || e.Code != "unauthenticated" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") ||
			!strings.Contains(e.Message, "missing bearer token") {
			t.Errorf("%s without token: %d %+v %q", path, r.code, e, r.header.Get("WWW-Authenticate"))
		}
		r = do(t, h, "GET", path, "s3cret-carol-0123456789", "")
		if e := errorOf(t, r); r.code != 401 || e.Message != "invalid bearer token" ||
			!strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s with wrong token: %d %+v", path, r.code, e)
		}
		if strings.Contains(r.body, "s3cret") {
			t.Errorf("%s: response shows a token: %s", path, r.body)
		}
	}
	for _, header := range []string{"Basic czNjcmV0", "Bearer", "Bearer ", "s3cret-alice-0123456789"} {
		req := httptest.NewRequest("GET", "/whoami", nil)
		req.Header.Set("Authorization", header)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 401 || !strings.Contains(w.Body.String(), "malformed Authorization header") {
			t.Errorf("Authorization %q: %d %s", header, w.Code, w.Body)
		}
	}

	for token, name := range map[string]string{"s3cret-alice-0123456789": "alice", "s3cret-bob-0123456789": "bob"} {
		r := do(t, h, "GET", "/whoami", token, "")
		if r.code != 200 || !strings.Contains(r.body, `"caller":"`+name+`"`) {
			t.Errorf("right token of %s: %d %s", name, r.code, r.body)
		}
	}
	// The scheme is case-insensitive.
	req := httptest.NewRequest("GET", "/whoami", nil)
	req.Header.Set("Authorization", "bearer s3cret-bob-0123456789")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 {
		t.Errorf("lowercase scheme: %d", w.Code)
	}
	// Probes need no token.
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := do(t, h, "GET", path, "", ""); r.code != 200 {
			t.Errorf("%s without token: %d", path, r.code)
		}
	}
}

func TestAuthComparesEveryTokenInConstantTime(t *testing.T) {
	s, _ := newTestServer(t, &fakePlugins{}, map[string]string{"t1-0123456789abcdef": "a", "t2-0123456789abcdef": "b", "t3-0123456789abcdef": "c"})
	s.Handle("GET /whoami", ScopeRead, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, 200, map[string]string{"caller": Caller(r.Context())})
	}))
	orig := constantTimeCompare
	t.Cleanup(func() { constantTimeCompare = orig })
	calls := 0
	constantTimeCompare = func(x, y []byte) int {
		calls++
		if len(x) != 32 || len(y) != 32 {
			t.Errorf("compared %d with %d bytes; want two 32-byte digests", len(x), len(y))
		}
		return orig(x, y)
	}
	for _, token := range []string{"t1-0123456789abcdef", "t2-0123456789abcdef", "t3-0123456789abcdef", "nope-0123456789abcdef"} {
		calls = 0
		do(t, s.Handler(), "GET", "/whoami", token, "")
		if calls != 3 {
			t.Errorf("token %s: %d constant-time comparisons, want 3 (every token, no early exit)", token, calls)
		}
	}
}

func TestNewRejectsBadTokens(t *testing.T) {
	for _, tokens := range []map[string]string{
		{"": "alice"},
		{"   ": "alice"},
		{" padded-s3cret ": "alice"},
		{"good-s3cret-0123456789": ""},
		{"short-s3cret": "alice"},
	} {
		_, err := New(Options{Plugins: &fakePlugins{}, Credentials: adminTokens(tokens)})
		if err == nil {
			t.Errorf("tokens %q accepted", tokens)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error shows the token: %v", err)
		}
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New without Plugins succeeded")
	}
}

func TestCallerWithoutAuth(t *testing.T) {
	if got := Caller(context.Background()); got != "anonymous" {
		t.Errorf("Caller of a bare context = %q", got)
	}
	s, _ := newTestServer(t, &fakePlugins{}, nil)
	s.Handle("GET /whoami", ScopeRead, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, 200, map[string]string{"caller": Caller(r.Context())})
	}))
	if r := do(t, s.Handler(), "GET", "/whoami", "", ""); !strings.Contains(r.body, `"anonymous"`) {
		t.Errorf("no auth: %s", r.body)
	}
}

func TestNameValidation(t *testing.T) {
	good := []string{"a", "echo", "db-storage", "fs_2", "a" + strings.Repeat("b", 62)}
	bad := []string{"Echo", "1abc", "-a", "_a", "a.b", "a%2Fb", "a%20b", "ä", "a" + strings.Repeat("b", 63)}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v", n, err)
		}
	}
	p := &fakePlugins{
		ClientFunc: func(name string) (*pluginhost.Client, error) {
			return nil, fmt.Errorf("plugin %s: %w", name, sdk.ErrNotFound)
		},
		RestartFunc: func(_ context.Context, name string) error { return fmt.Errorf("plugin %s: %w", name, sdk.ErrNotFound) },
	}
	s, _ := newTestServer(t, p, nil)
	paths := []struct{ method, format string }{
		{"GET", "/v1/subsystems/%s/limits"},
		{"GET", "/v1/subsystems/%s/metrics"},
		{"GET", "/v1/subsystems/%s/health"},
		{"POST", "/v1/subsystems/%s/rpc/dw.echo.v1.Echo/Echo"},
		{"POST", "/v1/plugins/%s/restart"},
	}
	for _, path := range paths {
		for _, n := range bad {
			r := do(t, s.Handler(), path.method, fmt.Sprintf(path.format, n), "", "")
			e := errorOf(t, r)
			if r.code != 400 || e.Code != "invalid_argument" || !strings.Contains(e.Message, NamePattern) {
				t.Errorf("%s %s: %d %+v", path.method, fmt.Sprintf(path.format, n), r.code, e)
			}
		}
		for _, n := range good {
			r := do(t, s.Handler(), path.method, fmt.Sprintf(path.format, n), "", "")
			if r.code != 404 {
				t.Errorf("%s %s: %d %s, want 404 from the fake", path.method, fmt.Sprintf(path.format, n), r.code, r.body)
			}
		}
	}
}

func TestSubsystemUnknownOrDown(t *testing.T) {
	p := &fakePlugins{ClientFunc: func(name string) (*pluginhost.Client, error) {
		switch name {
		case "down":
			return nil, fmt.Errorf("plugin %s is restarting: %w", name, sdk.ErrUnavailable)
		default:
			return nil, fmt.Errorf("no plugin %s: %w", name, sdk.ErrNotFound)
		}
	}}
	s, _ := newTestServer(t, p, nil)
	for _, suffix := range []string{"limits", "metrics", "health"} {
		r := do(t, s.Handler(), "GET", "/v1/subsystems/ghost/"+suffix, "", "")
		if e := errorOf(t, r); r.code != 404 || !strings.Contains(e.Message, "ghost") {
			t.Errorf("unknown %s: %d %+v", suffix, r.code, e)
		}
		r = do(t, s.Handler(), "GET", "/v1/subsystems/down/"+suffix, "", "")
		if e := errorOf(t, r); r.code != 503 || e.Code != "unavailable" || !strings.Contains(e.Message, "restarting") {
			t.Errorf("down %s: %d %+v", suffix, r.code, e)
		}
	}
	r := do(t, s.Handler(), "POST", "/v1/subsystems/down/rpc/dw.echo.v1.Echo/Echo", "", "{}")
	if r.code != 503 {
		t.Errorf("rpc to a down subsystem: %d %s", r.code, r.body)
	}
}

func TestListPlugins(t *testing.T) {
	started := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	p := &fakePlugins{StatusesFunc: func() []supervisor.Status {
		return []supervisor.Status{
			{Name: "a", Path: "/p/dw-plugin-a", Version: "1.0.0", SDKVersion: "6.0.0", ProtocolVersion: 1,
				State: supervisor.StateServing, PID: 42, Restarts: 2, SHA256: "ab", StartedAt: started,
				Generation: 3, Services: []string{"dw.a.v1.A"}},
			{Name: "b", State: supervisor.StateMissing, LastError: "no dw-plugin-b in ./bin/plugins"},
		}
	}}
	s, _ := newTestServer(t, p, nil)
	r := do(t, s.Handler(), "GET", "/v1/plugins", "", "")
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var body struct {
		Plugins []map[string]any
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Plugins) != 2 {
		t.Fatalf("%s", r.body)
	}
	a, b := body.Plugins[0], body.Plugins[1]
	for _, key := range []string{"name", "path", "version", "sdk_version", "protocol_version", "state", "pid", "restarts", "last_error", "sha256"} {
		if _, ok := a[key]; !ok {
			t.Errorf("plugin lacks %q: %v", key, a)
		}
	}
	if a["started_at"] != "2025-01-02T03:04:05Z" || a["state"] != "serving" {
		t.Errorf("a = %v", a)
	}
	if _, ok := b["started_at"]; ok {
		t.Errorf("zero started_at shown: %v", b)
	}
	if svc, ok := b["services"].([]any); !ok || len(svc) != 0 {
		t.Errorf("services of b = %#v, want []", b["services"])
	}
}

func TestRestart(t *testing.T) {
	var restarted []string
	var hadDeadline bool
	p := &fakePlugins{
		StatusesFunc: func() []supervisor.Status {
			return []supervisor.Status{{Name: "echo", State: supervisor.StateServing, Restarts: len(restarted)}}
		},
		RestartFunc: func(ctx context.Context, name string) error {
			_, hadDeadline = ctx.Deadline()
			if name != "echo" {
				return fmt.Errorf("no plugin %s: %w", name, sdk.ErrNotFound)
			}
			restarted = append(restarted, name)
			return nil
		},
	}
	s, _ := newTestServer(t, p, map[string]string{tok: "operator"})
	r := do(t, s.Handler(), "POST", "/v1/plugins/echo/restart", tok, "")
	if r.code != 200 || !strings.Contains(r.body, `"restarts":1`) || !strings.Contains(r.body, `"name":"echo"`) {
		t.Errorf("restart: %d %s", r.code, r.body)
	}
	if !hadDeadline || len(restarted) != 1 {
		t.Errorf("restarted %v, deadline %v", restarted, hadDeadline)
	}
	r = do(t, s.Handler(), "POST", "/v1/plugins/ghost/restart", tok, "")
	if e := errorOf(t, r); r.code != 404 || !strings.Contains(e.Message, "ghost") {
		t.Errorf("restart unknown: %d %+v", r.code, e)
	}
	r = do(t, s.Handler(), "POST", "/v1/plugins/echo/restart", "", "")
	if r.code != 401 {
		t.Errorf("restart without token: %d", r.code)
	}
}

func TestHandleRouteGetsMiddleware(t *testing.T) {
	s, reg := newTestServer(t, &fakePlugins{}, map[string]string{tok: "alice"})
	s.Handle("POST /v1/config/reload", ScopeAdmin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, fmt.Errorf("reload: %w", sdk.ErrInvalidLimits))
	}))
	s.Handle("GET /panic", ScopeRead, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("oops") }))
	if r := do(t, s.Handler(), "POST", "/v1/config/reload", "", ""); r.code != 401 {
		t.Errorf("custom route without token: %d", r.code)
	}
	r := do(t, s.Handler(), "POST", "/v1/config/reload", tok, "")
	if e := errorOf(t, r); r.code != 400 || e.Code != "invalid_limits" {
		t.Errorf("custom route: %d %+v", r.code, e)
	}
	r = do(t, s.Handler(), "GET", "/panic", tok, "")
	if e := errorOf(t, r); r.code != 500 || e.Code != "internal" {
		t.Errorf("panic: %d %+v", r.code, e)
	}
	do(t, s.Handler(), "GET", "/nope", tok, "")

	counts := histogramCounts(t, reg)
	for _, want := range []string{"POST /v1/config/reload 401", "POST /v1/config/reload 400", "GET /panic 500", "unmatched 404"} {
		if counts[want] != 1 {
			t.Errorf("dw_http_request_duration_seconds{%s} count %d, want 1; have %v", want, counts[want], counts)
		}
	}
}

// histogramCounts returns the sample counts of dw_http_request_duration_seconds
// by "route code".
func histogramCounts(t testing.TB, reg *prometheus.Registry) map[string]uint64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, f := range fams {
		if f.GetName() != "dw_http_request_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			var route, code string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "route":
					route = l.GetValue()
				case "code":
					code = l.GetValue()
				}
			}
			out[route+" "+code] = m.GetHistogram().GetSampleCount()
		}
	}
	return out
}
