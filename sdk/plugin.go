package sdk

import (
	"context"
	"strings"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// HandshakeConfig returns the go-plugin handshake shared by the dw host and
// its plugins. The protocol version is negotiated through VersionedPlugins.
func HandshakeConfig() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}

// VersionedPlugins is the host's plugin map for go-plugin's protocol
// negotiation: the protocol versions this SDK speaks, each with its plugin
// set. Dispensing PluginName yields a *Client.
func VersionedPlugins() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		ProtocolVersion: {PluginName: &grpcPlugin{}},
	}
}

// grpcPlugin is the go-plugin glue for both sides: on the plugin side it
// registers the server adapter, on the host side it builds a *Client.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	register func(broker *plugin.GRPCBroker, s *grpc.Server) error
}

var _ plugin.GRPCPlugin = (*grpcPlugin)(nil)

func (p *grpcPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	return p.register(broker, s)
}

func (p *grpcPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return newClient(conn, broker), nil
}

// internalService reports whether a gRPC service is part of the plumbing
// (go-plugin, health, reflection, the contract itself) rather than a domain
// service of the plugin.
func internalService(name string) bool {
	return name == dwv1.ScalableSubsystem_ServiceDesc.ServiceName ||
		strings.HasPrefix(name, "plugin.") ||
		strings.HasPrefix(name, "grpc.")
}
