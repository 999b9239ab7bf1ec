// Command dw-plugin-immortal completes the go-plugin handshake without
// sdk.Serve, serves no dw service, and never exits by itself: not after the
// shutdown request, not when its host dies, not on SIGTERM.
package main

import (
	"context"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

type nothing struct {
	plugin.NetRPCUnsupportedPlugin
}

func (nothing) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }

func (nothing) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

func main() {
	signal.Ignore(syscall.SIGTERM)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  pluginhost.Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{pluginhost.ProtocolVersion: {pluginhost.PluginName: nothing{}}},
		GRPCServer:       plugin.DefaultGRPCServer,
	})
	for {
		time.Sleep(time.Hour)
	}
}
