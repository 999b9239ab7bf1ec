package sdktest

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// ServeInProcess serves the gRPC services register adds in this process,
// as sdk.Serve serves a plugin's own services, and returns a connection to
// them as the host makes it: errors a handler returns become gRPC statuses
// (sdk.ToStatus) and come back as sdk errors (sdk.FromStatus, through
// pluginhost.DialOptions), and a handler's panic fails its call with
// sdk.ErrPanicked, its stack logged to t. It is for fast unit tests of a
// plugin's domain services, without a plugin binary (see Run for the
// whole contract), over a unix socket as between host and plugin (without
// TLS); the plugin is taken to be configured. The server stops and the
// connection closes when the test ends: register a cleanup that must run
// after that (a Shutdown) before calling ServeInProcess.
func ServeInProcess(t testing.TB, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	logger := hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: testLog{t}, Level: hclog.Debug})
	errs := contract.ServerErrors{ToStatus: sdk.ToStatus, Panicked: sdk.ErrPanicked, Logger: logger}
	s := grpc.NewServer(append(contract.ServerOptions(), errs.Options()...)...)
	register(s)
	// A unix socket, as between host and plugin, in a short folder (a
	// socket's path is limited to about 100 bytes).
	dir, err := os.MkdirTemp("", "sdktest")
	if err != nil {
		t.Fatalf("serve in process: %v", err)
	}
	sock := filepath.Join(dir, "plugin.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("serve in process: %v", err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(lis)
	}()
	conn, err := grpc.NewClient("unix://"+sock, append(pluginhost.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		s.Stop()
		<-served
		_ = os.RemoveAll(dir)
		t.Fatalf("connect in process: %v", err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		s.Stop()
		<-served
		_ = os.RemoveAll(dir)
	})
	return conn
}

// testLog writes log lines to a test's log.
type testLog struct{ t testing.TB }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
