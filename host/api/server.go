package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/datawarehouse/dw/host/rpcgateway"
	"github.com/datawarehouse/dw/host/supervisor"
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
	// Tokens maps bearer token values to caller names. Empty means no
	// authentication, which the host allows only on a loopback listener.
	Tokens map[string]string
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
	gateway        *rpcgateway.Gateway
	duration       *prometheus.HistogramVec
	mux            *http.ServeMux

	mu     sync.RWMutex
	routes map[string]bool // registered pattern → public
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
		mux:            http.NewServeMux(),
		routes:         make(map[string]bool),
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
	auth, err := newAuthenticator(opts.Tokens)
	if err != nil {
		return nil, fmt.Errorf("new admin api: %w", err)
	}
	s.auth.Store(auth)

	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "dw_http_request_duration_seconds",
		Help:    "Duration of admin API requests by route pattern and status code.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route", "code"})
	collector := newPluginCollector(opts.Plugins, orDefault(opts.ScrapeTimeout, DefaultScrapeTimeout), s.logger)
	for _, c := range []prometheus.Collector{newBuildInfo(opts.Version), s.duration, collector} {
		if err := s.registry.Register(c); err != nil {
			return nil, fmt.Errorf("new admin api: register metrics: %w", err)
		}
	}

	s.handle("GET /healthz", http.HandlerFunc(s.healthz), true)
	s.handle("GET /readyz", http.HandlerFunc(s.readyz), true)
	s.handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promLogger{s.logger},
	}), false)
	s.handle("GET /v1/plugins", http.HandlerFunc(s.listPlugins), false)
	s.handle("POST /v1/plugins/{name}/restart", http.HandlerFunc(s.restartPlugin), false)
	s.handle("GET /v1/subsystems/{name}/limits", http.HandlerFunc(s.subsystemLimits), false)
	s.handle("GET /v1/subsystems/{name}/metrics", http.HandlerFunc(s.subsystemMetrics), false)
	s.handle("GET /v1/subsystems/{name}/health", http.HandlerFunc(s.subsystemHealth), false)
	s.handle("POST /v1/subsystems/{name}/rpc/{service}/{method}", http.HandlerFunc(s.rpc), false)
	s.registerDirectRoutes(objectPatterns, s.objectRoute)
	s.registerDirectRoutes(filePatterns, s.fileRoute)
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

// Handle registers h for a ServeMux pattern ("POST /v1/config/reload"). The
// route gets what every built-in route gets: bearer authentication (when
// tokens are configured), the caller in the context, panic recovery,
// request metrics and logging. Use WriteError and WriteJSON in h to answer
// like the rest of the API. Like http.ServeMux.Handle it panics on an
// invalid or conflicting pattern.
func (s *Server) Handle(pattern string, h http.Handler) { s.handle(pattern, h, false) }

func (s *Server) handle(pattern string, h http.Handler, public bool) {
	s.mux.Handle(pattern, h)
	s.mu.Lock()
	s.routes[pattern] = public
	s.mu.Unlock()
}

// route returns the registered pattern that r matches, if any. direct
// means h serves r itself, bypassing the ServeMux: the object and file
// routes, whose keys and paths the ServeMux's path cleaning would change
// (see objectRoute and fileRoute).
func (s *Server) route(r *http.Request) (h http.Handler, pattern string, public, ok, direct bool) {
	if h, pattern, found := s.objectRoute(r); found {
		return h, pattern, false, pattern != "", true
	}
	if h, pattern, found := s.fileRoute(r); found {
		return h, pattern, false, pattern != "", true
	}
	h, pattern = s.mux.Handler(r)
	s.mu.RLock()
	public, ok = s.routes[pattern]
	s.mu.RUnlock()
	return h, pattern, public, ok, false
}

// ServeHTTP authenticates, dispatches, recovers, measures and logs.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &responseRecorder{ResponseWriter: w}
	h, pattern, public, matched, direct := s.route(r)
	caller := anonymous
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.logger.Error("panic in admin api handler", "method", r.Method, "path", r.URL.Path, "panic", v)
			if !rec.wroteHeader {
				WriteError(rec, fmt.Errorf("internal error while serving %s %s", r.Method, r.URL.Path))
			}
		}
		route := pattern
		if !matched {
			route = "unmatched"
		}
		code := rec.code()
		elapsed := time.Since(start)
		s.duration.WithLabelValues(route, strconv.Itoa(code)).Observe(elapsed.Seconds())
		switch {
		case code >= 500:
			s.logger.Warn("admin api request failed", "method", r.Method, "path", r.URL.Path, "status", code,
				"caller", caller, "duration", elapsed, "error", rec.errMessage())
		case s.logger.IsDebug():
			s.logger.Debug("admin api request", "method", r.Method, "path", r.URL.Path, "status", code,
				"caller", caller, "duration", elapsed)
		}
	}()

	auth := s.auth.Load() // once: SetTokens may swap it meanwhile
	if err := browserGuard(r, s.loopbackHosts && auth == nil); err != nil {
		WriteError(rec, err)
		return
	}
	if auth != nil && !(matched && public) {
		name, err := auth.authenticate(r)
		if err != nil {
			rec.Header().Set("WWW-Authenticate", err.challenge)
			WriteError(rec, err)
			return
		}
		caller = name
	}
	r = r.WithContext(withCaller(r.Context(), caller))
	if !matched {
		serveUnmatched(rec, r, h)
		return
	}
	if direct {
		h.ServeHTTP(rec, r)
		return
	}
	s.mux.ServeHTTP(rec, r)
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

// responseRecorder remembers the status and the error of a response.
type responseRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
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
	return r.ResponseWriter.Write(b)
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
