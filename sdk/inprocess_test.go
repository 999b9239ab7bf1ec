package sdk

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// serveInProcess serves impl with the options Serve gives its gRPC server
// (the interceptors included) on a unix socket of this process, and
// connects to it with the host's dial options (interceptors included).
// plugin.TestPluginGRPCConn, which takes no options, provides the go-plugin
// broker of both sides, for the host services.
func serveInProcess[L any](t testing.TB, impl Subsystem[L], logger hclog.Logger) *testClient {
	t.Helper()
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	srv := newSubsystemServer(impl, logger)

	var pluginBroker *plugin.GRPCBroker
	brokers := &grpcPlugin{register: func(b *plugin.GRPCBroker, _ *grpc.Server) error {
		pluginBroker = b
		return nil
	}}
	gc, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{contract.PluginName: brokers})
	raw, err := gc.Dispense(contract.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	hostBroker := raw.(*dispensed).broker

	// A short folder: a unix socket path is limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "dwsdk")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "p.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(serverOptions(logger, impl.Info().Name, srv.isReady)...)
	if err := newServerPlugin(impl, srv).GRPCServer(pluginBroker, s); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(ln)
	}()
	conn, err := grpc.NewClient("unix://"+sock, append(hostDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.close()
		_ = conn.Close()
		s.Stop()
		<-served
		// Close asks go-plugin's server to stop (its controller's
		// Shutdown); calling its Stop as well races inside go-plugin.
		_ = gc.Close()
		_ = os.RemoveAll(dir)
	})
	return &testClient{conn: conn, rpc: dwv1.NewScalableSubsystemClient(conn), broker: hostBroker}
}

// hostDialOptions are pluginhost.DialOptions (which this package's tests
// cannot import).
func hostDialOptions() []grpc.DialOption {
	return append(contract.DialOptions(), contract.ClientErrors(FromStatus)...)
}

// hostServerOptions are pluginhost.ServerOptions.
func hostServerOptions() []grpc.ServerOption {
	return contract.ServerErrors{ToStatus: ToStatus, Panicked: ErrPanicked, Logger: hclog.NewNullLogger()}.Options()
}
