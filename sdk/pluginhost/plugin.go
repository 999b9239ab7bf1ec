package pluginhost

import (
	"context"
	"errors"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
)

// Names shared with plugins.
const (
	// ProtocolVersion is the go-plugin application protocol version of the
	// dw contract, negotiated in the handshake separately from the SDK
	// version.
	ProtocolVersion = contract.ProtocolVersion
	// PluginName is the name of the dw contract in go-plugin's plugin map:
	// dispense it to get a *Client.
	PluginName = contract.PluginName
	// MagicCookieKey is the environment variable of go-plugin's handshake
	// cookie.
	MagicCookieKey = contract.MagicCookieKey
	// EnvHostPID names the environment variable in which the host passes
	// its pid to a plugin, so that the plugin exits when its host dies.
	EnvHostPID = contract.EnvHostPID
	// EnvLogLevel names the environment variable in which the host passes
	// the log level plugins log at.
	EnvLogLevel = contract.EnvLogLevel
	// CallerMetadataKey is the gRPC metadata key that carries the API
	// caller's identity to plugins (see WithCaller).
	CallerMetadataKey = contract.CallerMetadataKey
	// StreamWindow is the flow-control window of one stream of a plugin
	// connection: what a receiver may hold unread per stream.
	StreamWindow = contract.StreamWindow
)

// Handshake returns the go-plugin handshake of dw plugins.
func Handshake() plugin.HandshakeConfig { return contract.Handshake() }

// VersionedPlugins is the host's plugin map for go-plugin's protocol
// negotiation: the protocol versions this SDK speaks, each with its plugin
// set. Dispensing PluginName yields a *Client.
func VersionedPlugins() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		contract.ProtocolVersion: {contract.PluginName: &grpcPlugin{}},
	}
}

// DialOptions are the gRPC dial options of plugin connections: flow-control
// windows and buffers matching the plugin's server, and interceptors that
// pass every error of a call (unary, or a stream's Recv, Send, Header and
// CloseSend; io.EOF stays io.EOF) through sdk.FromStatus, so that errors.Is
// works with the sdk sentinels on whatever the connection returns. Pass
// them as go-plugin's ClientConfig.GRPCDialOptions.
func DialOptions() []grpc.DialOption {
	return append(contract.DialOptions(), contract.ClientErrors(sdk.FromStatus)...)
}

// ServerOptions are the options of a gRPC server the host offers to a
// plugin (the host key-value service): interceptors that turn every error a
// handler returns into a gRPC status with sdk.ToStatus, and recover a
// handler's panic (the call fails with sdk.ErrPanicked; the stack goes to
// logger, or hclog's default logger if nil).
func ServerOptions(logger hclog.Logger) []grpc.ServerOption {
	return contract.ServerErrors{ToStatus: sdk.ToStatus, Panicked: sdk.ErrPanicked, Logger: logger}.Options()
}

// WithCaller returns a context whose outgoing gRPC calls carry caller as the
// identity of the API caller; plugins read it with sdk.Caller.
func WithCaller(ctx context.Context, caller string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, contract.CallerMetadataKey, caller)
}

// grpcPlugin is the host's go-plugin glue: it turns the plugin connection
// into a *Client.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

var _ plugin.GRPCPlugin = (*grpcPlugin)(nil)

func (p *grpcPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("the host side of a dw plugin serves no plugin")
}

func (p *grpcPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return newClient(conn, broker), nil
}
