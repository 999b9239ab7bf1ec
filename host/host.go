package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host/api"
	"github.com/datawarehouse/dw/host/internal/netguard"
	"github.com/datawarehouse/dw/host/kvstore"
	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/host/tlsreload"
	"github.com/datawarehouse/dw/sdk/v6"
)

// Version is the dw host's version, set at build time with
// -ldflags "-X github.com/datawarehouse/dw/host.Version=…".
var Version = "0.1.0-dev"

// DefaultDrainTimeout bounds how long shutdown waits for in-flight HTTP
// requests before it stops the plugins anyway.
const DefaultDrainTimeout = 10 * time.Second

// Options tune a Host beyond its config.
type Options struct {
	// ConfigPath is the file the config was loaded from ("" for the
	// embedded defaults); it is shown by the API.
	ConfigPath string
	// ConfigFileHash is config.HashContent of the bytes of ConfigPath the
	// config was parsed from (config.ReadFile, then config.Parse), or ""
	// when not known. It is ConfigInfo.FileHash until the first reload,
	// and the file watcher's initial hash: that content is not reloaded
	// again when Watch starts.
	ConfigFileHash string
	// Logger is the host logger; nil makes one from the config.
	Logger hclog.Logger
	// DrainTimeout bounds the HTTP drain at shutdown; 0 means
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Backoff overrides the supervisor's restart policy (tests).
	Backoff supervisor.Backoff
}

// Host is one running dw host.
type Host struct {
	cfg    *config.Config
	opts   Options
	logger hclog.Logger

	kv       *kvstore.Store
	plugins  *supervisor.Manager
	api      *api.Server
	registry *prometheus.Registry // the host's metrics, served on GET /metrics
	reload   reloadState          // the running config and its reloads (reload.go)
	listener net.Listener
	conns    *netguard.Listener  // the raw TCP listener, limiting connections per address
	tls      *tlsreload.Reloader // serves server.tls; nil without TLS
	http     *http.Server
	served   chan struct{} // closed when the HTTP server has returned
	serveErr error         // its error, readable once served is closed

	stopOnce sync.Once
	stopErr  error
}

// NewLogger returns the host logger the config asks for.
func NewLogger(c config.Log) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "dw",
		Level:      hclog.LevelFromString(c.Level),
		JSONFormat: c.Format == "json",
		Output:     os.Stderr,
	})
}

// New checks cfg and prepares a host; Start runs it.
func New(cfg *config.Config, opts Options) (*Host, error) {
	if opts.Logger == nil {
		opts.Logger = NewLogger(cfg.Log)
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Host{cfg: cfg, opts: opts, logger: opts.Logger}, nil
}

// Start opens the store, starts the plugins and the API. It returns once
// the listener is bound and every plugin has settled (serving or a clear
// failure state); plugins that fail never make Start fail. On error,
// everything already started is stopped again.
func (h *Host) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			h.Shutdown(context.Background())
		}
	}()
	creds, err := h.cfg.Credentials()
	if err != nil {
		return fmt.Errorf("start host: %w", err)
	}
	if err := os.MkdirAll(h.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("start host: data_dir: %w", err)
	}
	h.kv, err = kvstore.Open(filepath.Join(h.cfg.DataDir, "host", "kv.db"))
	if err != nil {
		return fmt.Errorf("start host: %w", err)
	}

	// Bind before starting plugins, so a port in use fails fast.
	h.listener, err = net.Listen("tcp", h.cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("start host: listen on %s (server.listen): %w", h.cfg.Server.Listen, err)
	}
	// The connection cap counts raw TCP connections, under TLS: a refused
	// connection costs no handshake.
	h.conns = netguard.NewListener(h.listener, h.cfg.Server.MaxConnsPerAddress)
	h.listener = h.conns
	if err := h.startTLS(); err != nil {
		return fmt.Errorf("start host: %w", err)
	}
	bodyPolicy, testWindow, err := netguard.PolicyFromEnv(os.Getenv)
	if err != nil {
		return fmt.Errorf("start host: %w", err)
	}
	if testWindow {
		h.logger.Warn("the body rate window is shortened for tests", "variable", netguard.TestWindowEnv, "window", bodyPolicy.Window)
	}

	specs := make(map[string]supervisor.Spec, len(h.cfg.Subsystems))
	for name, s := range h.cfg.Subsystems {
		specs[name] = supervisor.Spec{Name: name, Enabled: s.Enabled, Settings: s.Settings, Limits: s.Limits}
	}
	h.plugins, err = supervisor.NewManager(supervisor.Options{
		Dir:          h.cfg.Plugins.Dir,
		StartTimeout: h.cfg.Plugins.StartTimeout,
		Checksums:    h.cfg.Plugins.Checksums,
		DataDir:      h.cfg.DataDir,
		HostVersion:  Version,
		// The bound address, so that ":0" is reported as the real port.
		HostAPIAddress: h.listener.Addr().String(),
		LogLevel:       h.cfg.Log.Level,
		Logger:         h.logger.Named("plugins"),
		KV:             func(name string) sdk.KV { return h.kv.ForPlugin(name) },
		Specs:          specs,
		Generation:     1,
		Backoff:        h.opts.Backoff,
		HiddenEnv:      TokenEnvNames(h.cfg),
	})
	if err != nil {
		return fmt.Errorf("start host: %w", err)
	}
	begin := time.Now()
	if err := h.plugins.Start(ctx); err != nil {
		return fmt.Errorf("start host: plugins: %w", err)
	}
	h.logPluginSummary(time.Since(begin))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(h.conns.Collectors()...)
	h.registry = reg
	if h.tls != nil {
		if err := h.tls.Register(reg); err != nil {
			return fmt.Errorf("start host: %w", err)
		}
	}
	h.api, err = api.New(api.Options{
		Plugins:     h.plugins,
		Credentials: creds,
		Audit:       h.cfg.Server.Audit,
		Logger:      h.logger.Named("api"),
		Registry:    reg,
		Version:     Version,
		// Without tokens the host listens on loopback only.
		LoopbackHosts: true,
	})
	if err != nil {
		return fmt.Errorf("start host: api: %w", err)
	}
	h.api.HandleConfig(configAPI{h})
	if err := h.initReload(reg); err != nil {
		return fmt.Errorf("start host: %w", err)
	}
	h.http = &http.Server{
		// Bodies keep a minimum rate both ways (netguard): no fixed
		// ReadTimeout or WriteTimeout, which would cut large transfers.
		Handler:           netguard.BodyDeadlines(h.api.Handler(), bodyPolicy),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    netguard.MaxHeaderBytes,
		ErrorLog:          h.logger.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	h.served = make(chan struct{})
	go h.conns.ReclaimAfterSurges(h.served)
	go func() {
		defer close(h.served)
		if err := h.http.Serve(h.listener); !errors.Is(err, http.ErrServerClosed) {
			h.serveErr = err
		}
	}()
	h.logger.Info("dw host serving", "listen", h.listener.Addr().String(), "tls", h.tls != nil, "pid", os.Getpid(), "version", Version,
		"config", h.configName(), "data_dir", h.cfg.DataDir, "plugins_dir", h.cfg.Plugins.Dir)
	return nil
}

// startTLS wraps the listener in TLS when server.tls is set (the files
// are checked now: a pair that cannot be served fails the start, naming
// its key), and starts watching the files. Without TLS, it warns when
// server.insecure_http allows plain HTTP.
func (h *Host) startTLS() error {
	spec := h.cfg.Server.TLS
	if !spec.Enabled() {
		if h.cfg.Server.InsecureHTTP {
			h.logger.Warn("plain HTTP off loopback: tokens travel in clear text (server.insecure_http is set; set server.tls to serve HTTPS)",
				"listen", h.listener.Addr().String())
		}
		return nil
	}
	r, err := tlsreload.New(tlsreload.Options{TLS: spec, Logger: h.logger.Named("tls")})
	if err != nil {
		return err
	}
	h.tls = r
	h.listener = r.Listener(h.listener)
	r.Start()
	st := r.Status()
	h.logger.Info("serving HTTPS", "cert_file", st.CertFile, "serial", st.Serial, "names", st.Names,
		"not_after", st.NotAfter.UTC().Format(time.RFC3339), "min_version", st.MinVersion, "client_ca_file", st.ClientCAFile)
	return nil
}

// TokenEnvNames lists the variables holding API tokens: plugins must not
// see them (supervisor.Options.HiddenEnv, supervisor.ProbeOptions.HiddenEnv).
func TokenEnvNames(cfg *config.Config) []string {
	var names []string
	for _, t := range cfg.Server.Auth.Tokens {
		names = append(names, t.TokenEnv)
	}
	return append(names, "DW_TOKEN")
}

func (h *Host) configName() string {
	if h.opts.ConfigPath == "" {
		return "embedded defaults"
	}
	return h.opts.ConfigPath
}

func (h *Host) logPluginSummary(took time.Duration) {
	for _, st := range h.plugins.Statuses() {
		switch st.State {
		case supervisor.StateServing:
			h.logger.Info("plugin serving", "plugin", st.Name, "version", st.Version, "sdk", st.SDKVersion, "pid", st.PID)
		case supervisor.StateDisabled:
			h.logger.Debug("subsystem disabled", "plugin", st.Name)
		default:
			h.logger.Warn("plugin not serving", "plugin", st.Name, "state", st.State, "error", st.LastError)
		}
	}
	h.logger.Info("plugins settled", "took", took.Round(time.Millisecond))
}

// Addr is the address the API listens on (useful with port 0).
func (h *Host) Addr() string {
	if h.listener == nil {
		return ""
	}
	return h.listener.Addr().String()
}

// Plugins gives access to the plugin manager.
func (h *Host) Plugins() *supervisor.Manager { return h.plugins }

// Done is closed when the HTTP server has stopped, on its own (see Err) or
// by Shutdown.
func (h *Host) Done() <-chan struct{} { return h.served }

// Err is the HTTP server's error after Done is closed; nil after a normal
// Shutdown.
func (h *Host) Err() error {
	select {
	case <-h.served:
		return h.serveErr
	default:
		return nil
	}
}

// Shutdown stops the host: no new connections, in-flight requests drained
// up to the drain timeout (or ctx), plugins stopped, store closed. It is
// safe to call more than once.
func (h *Host) Shutdown(ctx context.Context) error {
	h.stopOnce.Do(func() {
		var errs []error
		if h.http != nil {
			dctx, cancel := context.WithTimeout(ctx, h.opts.DrainTimeout)
			if err := h.http.Shutdown(dctx); err != nil {
				h.logger.Warn("in-flight requests did not finish in time; closing them", "error", err)
				_ = h.http.Close()
			}
			cancel()
			<-h.served
		} else if h.listener != nil {
			_ = h.listener.Close()
		}
		if h.tls != nil {
			h.tls.Close()
		}
		if h.plugins != nil {
			if err := h.plugins.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop plugins: %w", err))
			}
		}
		if h.kv != nil {
			if err := h.kv.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close kv store: %w", err))
			}
		}
		h.stopErr = errors.Join(errs...)
		h.logger.Info("dw host stopped")
	})
	return h.stopErr
}
