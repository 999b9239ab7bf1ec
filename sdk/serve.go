package sdk

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// Shutdown deadlines. The host gives a plugin about two seconds between its
// graceful shutdown request and a hard kill, and a plugin whose host died
// must be gone within two seconds.
const (
	shutdownTimeout = 1500 * time.Millisecond
	orphanExitAfter = 1800 * time.Millisecond
)

// Serve runs impl as a dw plugin and returns when the host has stopped it.
// It performs the go-plugin handshake (protocol version negotiation, AutoMTLS
// when the host asks for it), serves ScalableSubsystem, gRPC reflection and
// any services impl registers through [GRPCRegistrar] on one connection, logs
// through hclog to the host, and makes the process exit when its host dies,
// however it dies: it stops serving, runs Shutdown (if impl has one, with
// the same deadline as a host-requested stop), kills its own process group
// (children the plugin started; the dw host makes each plugin a group
// leader) and exits, within about two seconds in all. Call it from main
// and nothing else: a plugin must not write to stdout before Serve, as
// that breaks the handshake. Once Serve runs, os.Stdout and os.Stderr are
// pipes that go-plugin forwards to the host, and a write just before the
// process exits can be lost: log through Config.Logger (it writes to the
// real stderr) instead.
//
// Every handler Serve serves, the plugin's own services included, returns
// its errors through [ToStatus] and has its panics recovered: the call fails
// with [ErrPanicked] and the plugin keeps serving. Calls of the plugin's own
// services fail with [ErrUnavailable] until Configure has succeeded.
func Serve[L any](impl Subsystem[L]) {
	info := impl.Info()
	level := hclog.LevelFromString(os.Getenv(contract.EnvLogLevel))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       info.Name,
		Level:      level,
		Output:     os.Stderr,
		JSONFormat: true,
	})

	srv := newSubsystemServer(impl, logger)

	var (
		grpcMu     sync.Mutex
		grpcServer *grpc.Server
		stopped    bool
	)
	// orphaned is set once the host is gone: then no one else kills our
	// process group, so every way out kills it (exit does).
	var orphaned atomic.Bool
	exit := func() {
		if orphaned.Load() {
			killOwnGroup()
		}
		os.Exit(3)
	}
	stop := func(reason string) {
		orphaned.Store(true)
		logger.Warn("stopping plugin", "reason", reason)
		// Whatever happens below, the process is gone soon.
		time.AfterFunc(orphanExitAfter, func() {
			logger.Error("plugin did not stop in time; exiting", "reason", reason)
			exit()
		})
		grpcMu.Lock()
		s := grpcServer
		stopped = true
		grpcMu.Unlock()
		if s != nil {
			s.Stop()
		}
		if s == nil {
			exit()
		}
	}
	unwatch := watchHost(logger, stop)
	defer unwatch()

	p := newServerPlugin(impl, srv)

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: contract.Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{
			protocolVersionServed(): {contract.PluginName: p},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			s := grpc.NewServer(append(opts, serverOptions(logger, info.Name, srv.isReady)...)...)
			grpcMu.Lock()
			grpcServer = s
			if stopped {
				defer s.Stop()
			}
			grpcMu.Unlock()
			return s
		},
		Logger: logger,
	})

	// However Shutdown behaves, the process ends soon: the host hard-kills
	// after about two seconds anyway, and an exit of our own is cleaner.
	time.AfterFunc(shutdownTimeout+250*time.Millisecond, func() {
		logger.Error("shutdown overran its deadline; exiting")
		exit()
	})
	if sd, ok := impl.(Shutdowner); ok {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := sd.Shutdown(ctx); err != nil {
			logger.Error("shutdown", "error", err)
		}
	}
	srv.close()
	if orphaned.Load() {
		// The host that would have killed our process group is gone.
		killOwnGroup()
	}
}

// newServerPlugin is the plugin-side go-plugin glue: it registers the
// contract, the host-services dialer and impl's own services.
func newServerPlugin[L any](impl Subsystem[L], srv *subsystemServer[L]) *grpcPlugin {
	return &grpcPlugin{register: func(broker *plugin.GRPCBroker, s *grpc.Server) error {
		srv.dialKV = func(id uint32) (KV, func() error, error) {
			conn, err := broker.DialWithOptions(id, clientOptions()...)
			if err != nil {
				return nil, nil, fmt.Errorf("dial host kv (broker id %d): %w", id, err)
			}
			return newKVClient(conn), conn.Close, nil
		}
		dwv1.RegisterScalableSubsystemServer(s, srv)
		if r, ok := impl.(GRPCRegistrar); ok {
			r.RegisterGRPC(s)
		}
		for name := range s.GetServiceInfo() {
			if !internalService(name) {
				srv.services = append(srv.services, name)
			}
		}
		slices.Sort(srv.services)
		return nil
	}}
}
