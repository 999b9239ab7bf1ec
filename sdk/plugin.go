package sdk

import (
	"context"
	"strings"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// grpcPlugin is the plugin side's go-plugin glue: it registers the
// contract and the plugin's services on the server go-plugin makes. The
// host's side is in package pluginhost.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	register func(broker *plugin.GRPCBroker, s *grpc.Server) error
}

var _ plugin.GRPCPlugin = (*grpcPlugin)(nil)

func (p *grpcPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	return p.register(broker, s)
}

// GRPCClient is never used by a plugin; this package's tests, which serve
// a plugin in process, dispense the raw connection through it.
func (p *grpcPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &dispensed{conn: conn, broker: broker}, nil
}

// dispensed is a plugin connection as the tests of this package see it.
type dispensed struct {
	conn   *grpc.ClientConn
	broker *plugin.GRPCBroker
}

// internalService reports whether a gRPC service is part of the plumbing
// (go-plugin, health, reflection, the contract itself) rather than a domain
// service of the plugin.
func internalService(name string) bool {
	return name == dwv1.ScalableSubsystem_ServiceDesc.ServiceName ||
		strings.HasPrefix(name, "plugin.") ||
		strings.HasPrefix(name, "grpc.")
}
