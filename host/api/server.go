package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host/rpcgateway"
	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// Plugins is what the API needs of the plugin manager.
type Plugins interface {
	// Statuses returns every plugin the host knows of, sorted by name,
	// including missing, disabled and refused ones.
	Statuses() []supervisor.Status
	// Client returns the connection to a serving plugin. An unknown name
	// wraps sdk.ErrNotFound; a plugin that is not serving wraps
	// sdk.ErrUnavailable.
	Client(name string) (*pluginhost.Client, error)
	// Restart restarts a plugin now (an operator's request), also one that
	// is quarantined or refused. An unknown name wraps sdk.ErrNotFound.
	Restart(ctx context.Context, name string) error
}

// Defaults of Options.
const (
	DefaultRequestTimeout  = 10 * time.Second
	DefaultScrapeTimeout   = 2 * time.Second
	DefaultRestartTimeout  = time.Minute
	DefaultMaxRequestBytes = 4 << 20
)

// Options configure a Server.
type Options struct {
	// Plugins is the plugin manager. Required.
	Plugins Plugins
	// Credentials are the accepted bearer tokens with their names,
	// policies and subsystems (config.Config.Credentials). With none
	// there is no authentication, which the host allows only on a loopback
	// listener. Tokens shorter than config.MinTokenBytes are refused.
	Credentials []config.Credential
	// Audit is where the audit log goes (see audit.go); its zero value
	// writes it to Logger, named "audit". MaxSize may be below the
	// config's minimum here (tests of rotation).
	Audit config.Audit
	// Logger logs requests (at debug level), server errors and operator
	// actions. Tokens are never logged. Nil means no logging.
	Logger hclog.Logger
	// Registry is the host's metrics registry: the server adds its
	// collectors to it and serves it on GET /metrics. Nil means a new,
	// private registry.
	Registry *prometheus.Registry
	// Version is the host's version, for dw_build_info.
	Version string
	// RequestTimeout bounds each plugin call of the admin endpoints and
	// each unary gateway call; 0 means DefaultRequestTimeout. Streaming
	// gateway calls last as long as the client reads.
	RequestTimeout time.Duration
	// ScrapeTimeout bounds each plugin's metrics call during a scrape of
	// GET /metrics; 0 means DefaultScrapeTimeout.
	ScrapeTimeout time.Duration
	// RestartTimeout bounds POST /v1/plugins/{name}/restart; 0 means
	// DefaultRestartTimeout.
	RestartTimeout time.Duration
	// MaxRequestBytes bounds request bodies of the gateway; 0 means
	// DefaultMaxRequestBytes. Larger bodies get 413.
	MaxRequestBytes int64
	// MaxGatewayConnections bounds how many plugin connections' gRPC
	// descriptors the gateway caches; 0 means rpcgateway's default.
	MaxGatewayConnections int
	// LoopbackHosts, while no tokens are configured, answers only requests
	// whose Host names the loopback (127.0.0.0/8, ::1, localhost), so that
	// a DNS-rebound name cannot reach the API (see browserGuard). The host
	// sets it: without tokens it listens on loopback only.
	LoopbackHosts bool
}

// Server is the admin HTTP API. It is an http.Handler.
type Server struct {
	plugins        Plugins
	loopbackHosts  bool
	logger         hclog.Logger
	registry       *prometheus.Registry
	requestTimeout time.Duration
	restartTimeout time.Duration
	maxBody        int64
	auth           atomic.Pointer[authenticator] // nil: no authentication; replaced by SetTokens
	fails          *failTable                    // refused tokens by remote address (failtable.go)
	audit          *auditor
	gateway        *rpcgateway.Gateway
	duration       *prometheus.HistogramVec
	mux            *http.ServeMux

	mu     sync.RWMutex
	routes map[string]*Route // by pattern
}

// New returns a Server with every built-in route registered.
func New(opts Options) (*Server, error) {
	if opts.Plugins == nil {
		return nil, errors.New("new admin api: Options.Plugins is required")
	}
	s := &Server{
		plugins:        opts.Plugins,
		loopbackHosts:  opts.LoopbackHosts,
		logger:         opts.Logger,
		registry:       opts.Registry,
		requestTimeout: orDefault(opts.RequestTimeout, DefaultRequestTimeout),
		restartTimeout: orDefault(opts.RestartTimeout, DefaultRestartTimeout),
		maxBody:        opts.MaxRequestBytes,
		gateway:        rpcgateway.New(rpcgateway.Options{MaxConnections: opts.MaxGatewayConnections}),
		fails:          newFailTable(failTableSize),
		mux:            http.NewServeMux(),
		routes:         make(map[string]*Route),
	}
	if s.logger == nil {
		s.logger = hclog.NewNullLogger()
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxRequestBytes
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	auth, err := newAuthenticator(opts.Credentials)
	if err != nil {
		return nil, fmt.Errorf("new admin api: %w", err)
	}
	s.auth.Store(auth)
	sink, err := newAuditSink(opts.Audit, s.logger)
	if err != nil {
		return nil, fmt.Errorf("new admin api: %w", err)
	}
	s.audit = &auditor{logger: s.logger, sink: sink, errors: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dw_audit_write_errors_total",
		Help: "Audit log lines that could not be written (admin requests among them were refused with 500 audit_failed).",
	})}

	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "dw_http_request_duration_seconds",
		Help:    "Duration of admin API requests by route pattern and status code.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route", "code"})
	collector := newPluginCollector(opts.Plugins, orDefault(opts.ScrapeTimeout, DefaultScrapeTimeout), s.logger)
	for _, c := range []prometheus.Collector{newBuildInfo(opts.Version), s.duration, collector, s.audit.errors} {
		if err := s.registry.Register(c); err != nil {
			s.audit.sink.close()
			return nil, fmt.Errorf("new admin api: register metrics: %w", err)
		}
	}

	s.handle(Route{"GET /healthz", ScopePublic, ""}, http.HandlerFunc(s.healthz))
	s.handle(Route{"GET /readyz", ScopePublic, ""}, http.HandlerFunc(s.readyz))
	s.handle(Route{"GET /metrics", ScopeRead, ""}, promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promLogger{s.logger},
	}))
	s.handle(Route{"GET /v1/plugins", ScopeRead, ""}, http.HandlerFunc(s.listPlugins))
	s.handle(Route{"POST /v1/plugins/{name}/restart", ScopeAdmin, subsystemFromPath}, http.HandlerFunc(s.restartPlugin))
	s.handle(Route{"GET /v1/subsystems/{name}/limits", ScopeRead, subsystemFromPath}, http.HandlerFunc(s.subsystemLimits))
	s.handle(Route{"GET /v1/subsystems/{name}/metrics", ScopeRead, subsystemFromPath}, http.HandlerFunc(s.subsystemMetrics))
	s.handle(Route{"GET /v1/subsystems/{name}/health", ScopeRead, subsystemFromPath}, http.HandlerFunc(s.subsystemHealth))
	s.handle(Route{"POST /v1/subsystems/{name}/rpc/{service}/{method}", ScopeWrite, subsystemFromPath}, http.HandlerFunc(s.rpc))
	s.registerDirectRoutes(objectPatterns, ObjectsSubsystem, s.objectRoute)
	s.registerDirectRoutes(filePatterns, FilesSubsystem, s.fileRoute)
	s.registerBackupRoutes()
	s.registerFabricRoutes()
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Handler returns the API's handler (the Server itself).
func (s *Server) Handler() http.Handler { return s }

// Handle registers h for a ServeMux pattern ("POST /v1/config/reload")
// with the scope a token needs to call it (see Scope): a host-wide route,
// open to tokens limited to some subsystems as their policy allows. The
// route gets what every built-in route gets: bearer authentication and
// the scope check (when tokens are configured), the caller in the
// context, the audit log, panic recovery, request metrics and logging.
// Use WriteError and WriteJSON in h to answer like the rest of the API.
// Like http.ServeMux.Handle it panics on an invalid or conflicting
// pattern, and on an invalid scope.
func (s *Server) Handle(pattern string, scope Scope, h http.Handler) {
	s.handle(Route{Pattern: pattern, Scope: scope}, h)
}

func (s *Server) handle(rt Route, h http.Handler) {
	if rt.Scope < ScopePublic || rt.Scope > ScopeAdmin {
		panic(fmt.Sprintf("api: route %q registered without a valid scope (%v)", rt.Pattern, rt.Scope))
	}
	r := &rt
	s.mux.Handle(rt.Pattern, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.serveRoute(r, h, w, req)
	}))
	s.mu.Lock()
	s.routes[rt.Pattern] = r
	s.mu.Unlock()
}

// route returns the registered route that r matches (nil if none) and
// its handler. direct means h serves r itself, bypassing the ServeMux:
// the object and file routes, whose keys and paths the ServeMux's path
// cleaning would change (see objectRoute and fileRoute).
func (s *Server) route(r *http.Request) (h http.Handler, rt *Route, direct bool) {
	h, pattern, found := s.objectRoute(r)
	if !found {
		h, pattern, found = s.fileRoute(r)
	}
	direct = found
	if !found {
		h, pattern = s.mux.Handler(r)
	}
	s.mu.RLock()
	rt = s.routes[pattern]
	s.mu.RUnlock()
	return h, rt, direct
}

// ServeHTTP authenticates, dispatches, recovers, measures, logs and
// audits.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &responseRecorder{ResponseWriter: w}
	h, rt, direct := s.route(r)
	st := &requestState{route: rt}
	var body *countingBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingBody{ReadCloser: r.Body}
		r.Body = body
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				s.auditAfter(st, r, rec, body, start)
				panic(v)
			}
			s.logger.Error("panic in admin api handler", "method", r.Method, "path", r.URL.Path, "panic", v)
			if !rec.wroteHeader {
				WriteError(rec, fmt.Errorf("internal error while serving %s %s", r.Method, r.URL.Path))
			}
		}
		route := "unmatched"
		if rt != nil {
			route = rt.Pattern
		}
		code := rec.code()
		elapsed := time.Since(start)
		s.duration.WithLabelValues(route, strconv.Itoa(code)).Observe(elapsed.Seconds())
		caller := anonymous
		if st.grant != nil {
			caller = st.grant.name
		}
		switch {
		case code >= 500:
			s.logger.Warn("admin api request failed", "method", r.Method, "path", r.URL.Path, "status", code,
				"caller", caller, "duration", elapsed, "error", rec.errMessage())
		case s.logger.IsDebug():
			s.logger.Debug("admin api request", "method", r.Method, "path", r.URL.Path, "status", code,
				"caller", caller, "duration", elapsed)
		}
		s.auditAfter(st, r, rec, body, start)
	}()

	auth := s.auth.Load() // once: SetTokens may swap it meanwhile
	if err := browserGuard(r, s.loopbackHosts && auth == nil); err != nil {
		s.refuse(rec, r, st, err)
		return
	}
	// A public route (the probes) needs no token, but one sent is checked:
	// /readyz shows more to a valid token, so it must not become a way to
	// guess tokens that skips the slowdown.
	if auth != nil && !(rt != nil && rt.Scope == ScopePublic && r.Header.Get("Authorization") == "") {
		g, err := s.authenticate(auth, r)
		if err != nil {
			s.refuse(rec, r, st, err)
			return
		}
		st.grant = g
	}
	caller := anonymous
	if st.grant != nil {
		caller = st.grant.name
	}
	r = r.WithContext(context.WithValue(withCaller(r.Context(), caller), stateKey{}, st))
	switch {
	case rt == nil:
		serveUnmatched(rec, r, h)
	case direct:
		s.serveRoute(rt, h, rec, r)
	default:
		s.mux.ServeHTTP(rec, r)
	}
}

// authenticate checks r's bearer token; a wrong one waits as the refused
// token slowdown says (failtable.go), or gets 429 at once.
func (s *Server) authenticate(auth *authenticator, r *http.Request) (*grant, error) {
	g, guess, err := auth.authenticate(r)
	if err == nil || !guess {
		if err != nil {
			return nil, err
		}
		return g, nil
	}
	k, ok := failKeyOf(r.RemoteAddr)
	if !ok {
		return nil, err
	}
	delay, busy := s.fails.fail(k)
	if busy {
		s.logger.Warn("refused bearer tokens: too many waiting from one address", "remote", r.RemoteAddr)
		return nil, sdk.WithRetryAfter(&httpError{status: http.StatusTooManyRequests, code: "too_many_refused_tokens",
			msg: "too many requests with wrong bearer tokens from your address are waiting; retry later with a valid token"}, delay)
	}
	if delay > 0 {
		wait(r.Context(), delay)
		s.fails.done(k)
	}
	return nil, err
}

// serveRoute serves r on the route rt with h: the scope check, the audit
// line of an admin route before it runs, then h.
func (s *Server) serveRoute(rt *Route, h http.Handler, w http.ResponseWriter, r *http.Request) {
	st := stateOf(r.Context())
	if st == nil { // not through ServeHTTP: cannot happen
		st = &requestState{route: rt}
	}
	sub, err := authorize(st.grant, rt, r)
	st.subsystem = sub
	if err != nil {
		s.refuse(w, r, st, err)
		return
	}
	if rt.Scope == ScopeAdmin {
		if err := s.audit.write(auditLineOf(st, r, auditStageRequest, time.Time{}), true); err != nil {
			st.auditFailed = true
			s.refuse(w, r, st, &httpError{status: http.StatusInternalServerError, code: "audit_failed",
				msg: "the audit log cannot be written, so admin requests are refused; see the host log"})
			return
		}
	}
	h.ServeHTTP(w, r)
}

// refuse answers err before the request's body is read (401, 403, 429,
// a browser guard's refusal) and closes the connection after the answer:
// net/http would otherwise read (drain) an unread body of up to 256 KiB
// first, with no deadline of its own — a client sending the headers of a
// PUT and no body would hold the connection and never see the answer.
// "Connection: close" makes the server skip that drain before the
// response (net/http server.go, chunkWriter.writeHeader: not with
// closeAfterReply); the read deadline in the past makes the body's Close
// after the handler (response.finishRequest, body.Close, which reads up
// to 256 KiB looking for EOF) return at once.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, st *requestState, err error) {
	st.refused = true
	w.Header().Set("Connection", "close")
	var he *httpError
	if errors.As(err, &he) && he.challenge != "" {
		w.Header().Set("WWW-Authenticate", he.challenge)
	}
	WriteError(w, err)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// auditAfter writes the audit line of a finished request, when it is
// audited (see audit.go).
func (s *Server) auditAfter(st *requestState, r *http.Request, rec *responseRecorder, body *countingBody, start time.Time) {
	code := rec.code()
	if st.auditFailed || !st.refused && !auditMutating(r.Method) && code != http.StatusUnauthorized && code != http.StatusForbidden {
		return
	}
	l := auditLineOf(st, r, auditStageResponse, start)
	l.Status = code
	l.BytesOut = rec.written
	if body != nil {
		l.BytesIn = body.n.Load()
	}
	if rec.err != nil {
		_, l.Error = StatusOf(rec.err)
	}
	_ = s.audit.write(l, false) // reported by write; the answer is out
}

// countingBody counts the bytes read from a request body.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// serveUnmatched answers a request no registered pattern matched: the
// ServeMux's own 404, 405 (with Allow) or redirect, the errors as JSON.
func serveUnmatched(w http.ResponseWriter, r *http.Request, h http.Handler) {
	c := &captureWriter{header: make(http.Header)}
	h.ServeHTTP(c, r)
	switch code := c.code; {
	case code == http.StatusMethodNotAllowed:
		allow := c.header.Get("Allow")
		w.Header().Set("Allow", allow)
		WriteError(w, &httpError{status: code, code: "method_not_allowed",
			msg: fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow)})
	case code >= 300 && code < 400:
		if loc := c.header.Get("Location"); loc != "" {
			w.Header().Set("Location", loc)
		}
		w.WriteHeader(code)
	default:
		WriteError(w, &httpError{status: http.StatusNotFound, code: "not_found",
			msg: fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)})
	}
}

// captureWriter records what a ServeMux fallback handler answers, dropping
// the plain-text body.
type captureWriter struct {
	header http.Header
	code   int
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return len(b), nil
}
func (c *captureWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}

// responseRecorder remembers the status, the size and the error of a
// response.
type responseRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	written     int64
	err         error
}

func (r *responseRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *responseRecorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = http.StatusOK, true
	}
	n, err := r.ResponseWriter.Write(b)
	r.written += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (Flush).
func (r *responseRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *responseRecorder) code() int {
	if !r.wroteHeader {
		return http.StatusOK
	}
	return r.status
}

func (r *responseRecorder) errMessage() string {
	if r.err == nil {
		return ""
	}
	return r.err.Error()
}

// promLogger sends promhttp's errors to hclog.
type promLogger struct{ l hclog.Logger }

func (p promLogger) Println(v ...any) { p.l.Warn("metrics scrape", "error", fmt.Sprint(v...)) }

type callerKey struct{}

const anonymous = "anonymous"

func withCaller(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, callerKey{}, name)
}

// Caller returns the name of the authenticated caller of a request, or
// "anonymous" when the API runs without tokens (or for the public probes).
func Caller(ctx context.Context) string {
	if name, ok := ctx.Value(callerKey{}).(string); ok && name != "" {
		return name
	}
	return anonymous
}
