// Command dw-plugin-lenient serves the dw contract by hand, as a plugin not
// built on the SDK's decoding would (another language, say): its schema
// says rate must be at least 1, and it accepts any limits anyway, rate 0
// included.
package main

import (
	"context"
	"encoding/json"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

type lenient struct {
	dwv1.UnimplementedScalableSubsystemServer
	limits []byte
	gen    uint64
}

var defaults = []byte(`{"rate":10}`)

func (l *lenient) GetInfo(context.Context, *dwv1.GetInfoRequest) (*dwv1.GetInfoResponse, error) {
	def, _ := json.Marshal(10)
	return &dwv1.GetInfoResponse{
		Name: "lenient", PluginVersion: "1.0.0", SdkVersion: "6.1.0",
		DefaultLimitsJson: defaults,
		Schema: &dwv1.Schema{Limits: []*dwv1.SchemaField{
			{Path: "rate", Type: "int", Bits: 64, Min: "1", DefaultJson: def, Live: true, Doc: "requests per second"},
		}},
	}, nil
}

func (l *lenient) Configure(_ context.Context, r *dwv1.ConfigureRequest) (*dwv1.ConfigureResponse, error) {
	l.limits, l.gen = merged(r.GetLimitsJson()), r.GetGeneration()
	return &dwv1.ConfigureResponse{LimitsJson: l.limits, Generation: l.gen}, nil
}

func (l *lenient) ValidateLimits(_ context.Context, r *dwv1.ValidateLimitsRequest) (*dwv1.ValidateLimitsResponse, error) {
	return &dwv1.ValidateLimitsResponse{LimitsJson: merged(r.GetLimitsJson())}, nil
}

func (l *lenient) ApplyLimits(_ context.Context, r *dwv1.ApplyLimitsRequest) (*dwv1.ApplyLimitsResponse, error) {
	l.limits, l.gen = merged(r.GetLimitsJson()), r.GetGeneration()
	return &dwv1.ApplyLimitsResponse{LimitsJson: l.limits, Generation: l.gen}, nil
}

func (l *lenient) GetLimits(context.Context, *dwv1.GetLimitsRequest) (*dwv1.GetLimitsResponse, error) {
	return &dwv1.GetLimitsResponse{LimitsJson: l.limits, Generation: l.gen}, nil
}

func (l *lenient) GetMetrics(context.Context, *dwv1.GetMetricsRequest) (*dwv1.GetMetricsResponse, error) {
	return &dwv1.GetMetricsResponse{Backpressure: dwv1.Backpressure_BACKPRESSURE_NONE}, nil
}

func (l *lenient) CheckHealth(context.Context, *dwv1.CheckHealthRequest) (*dwv1.CheckHealthResponse, error) {
	return &dwv1.CheckHealthResponse{Status: dwv1.HealthStatus_HEALTH_STATUS_SERVING}, nil
}

// merged overlays any JSON object onto the defaults, checking nothing.
func merged(js []byte) []byte {
	m := map[string]any{"rate": 10}
	_ = json.Unmarshal(js, &m)
	b, _ := json.Marshal(m)
	return b
}

type contract struct {
	plugin.NetRPCUnsupportedPlugin
}

func (contract) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	dwv1.RegisterScalableSubsystemServer(s, &lenient{limits: defaults})
	return nil
}

func (contract) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  pluginhost.Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{pluginhost.ProtocolVersion: {pluginhost.PluginName: contract{}}},
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
