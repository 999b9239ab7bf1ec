package sdk

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// Client is the host side of a plugin connection: the ScalableSubsystem
// calls in Go types, plus the raw connection for domain services. It is what
// dispensing PluginName from a go-plugin client returns. Every error it
// returns has been through FromStatus, so errors.Is works with the sdk
// sentinels and a dead plugin reads as ErrPluginShutdown.
type Client struct {
	conn   *grpc.ClientConn
	rpc    dwv1.ScalableSubsystemClient
	broker *plugin.GRPCBroker
}

func newClient(conn *grpc.ClientConn, broker *plugin.GRPCBroker) *Client {
	return &Client{conn: conn, rpc: dwv1.NewScalableSubsystemClient(conn), broker: broker}
}

// Conn is the plugin's gRPC connection, for its domain services and for
// reflection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// PluginInfo is GetInfo's answer.
type PluginInfo struct {
	Name          string
	Version       string
	SDKVersion    string
	Capabilities  []string
	Services      []string
	DefaultLimits map[string]any
}

// Info asks the plugin who it is.
func (c *Client) Info(ctx context.Context) (PluginInfo, error) {
	r, err := c.rpc.GetInfo(ctx, &dwv1.GetInfoRequest{})
	if err != nil {
		return PluginInfo{}, fmt.Errorf("get info: %w", FromStatus(err))
	}
	return PluginInfo{
		Name:          r.GetName(),
		Version:       r.GetPluginVersion(),
		SDKVersion:    r.GetSdkVersion(),
		Capabilities:  r.GetCapabilities(),
		Services:      r.GetServices(),
		DefaultLimits: r.GetDefaultLimits().AsMap(),
	}, nil
}

// ConfigureRequest is what Configure sends.
type ConfigureRequest struct {
	Subsystem   string
	Settings    map[string]any
	DataDir     string
	HostVersion string
	// HostAPIAddress is the host's HTTP API address as bound (host:port).
	HostAPIAddress string
	// KV, if not nil, is served to the plugin over the go-plugin broker as
	// its host key-value store. Pass a store bound to this plugin's key
	// space: the plugin can reach nothing else through it.
	KV KV
}

// Configure hands the plugin its settings and, if req.KV is set, starts
// serving it the host services.
func (c *Client) Configure(ctx context.Context, req ConfigureRequest) error {
	settings, err := structpb.NewStruct(req.Settings)
	if err != nil {
		return fmt.Errorf("configure %s: encode settings: %w", req.Subsystem, err)
	}
	var brokerID uint32
	if req.KV != nil && c.broker != nil {
		brokerID = c.broker.NextId()
		kv := req.KV
		go c.broker.AcceptAndServe(brokerID, func(opts []grpc.ServerOption) *grpc.Server {
			s := grpc.NewServer(opts...)
			RegisterHostKV(s, kv)
			return s
		})
	}
	_, err = c.rpc.Configure(ctx, &dwv1.ConfigureRequest{
		Subsystem:            req.Subsystem,
		Settings:             settings,
		DataDir:              req.DataDir,
		HostServicesBrokerId: brokerID,
		HostVersion:          req.HostVersion,
		HostApiAddress:       req.HostAPIAddress,
	})
	if err != nil {
		return fmt.Errorf("configure: %w", FromStatus(err))
	}
	return nil
}

// ValidateLimits asks the plugin whether limits would be accepted, changing
// nothing. It returns the limits as they would be applied.
func (c *Client) ValidateLimits(ctx context.Context, limits map[string]any) (map[string]any, error) {
	st, err := structpb.NewStruct(limits)
	if err != nil {
		return nil, fmt.Errorf("validate limits: %w: %w", ErrInvalidLimits, err)
	}
	r, err := c.rpc.ValidateLimits(ctx, &dwv1.ValidateLimitsRequest{Limits: st})
	if err != nil {
		return nil, fmt.Errorf("validate limits: %w", FromStatus(err))
	}
	return r.GetLimits().AsMap(), nil
}

// ApplyLimits puts limits in force for config generation gen and returns
// them as applied.
func (c *Client) ApplyLimits(ctx context.Context, limits map[string]any, gen uint64) (map[string]any, error) {
	st, err := structpb.NewStruct(limits)
	if err != nil {
		return nil, fmt.Errorf("apply limits: %w: %w", ErrInvalidLimits, err)
	}
	r, err := c.rpc.ApplyLimits(ctx, &dwv1.ApplyLimitsRequest{Limits: st, Generation: gen})
	if err != nil {
		return nil, fmt.Errorf("apply limits: %w", FromStatus(err))
	}
	return r.GetLimits().AsMap(), nil
}

// Limits returns the limits in force and the generation they came with.
func (c *Client) Limits(ctx context.Context) (map[string]any, uint64, error) {
	r, err := c.rpc.GetLimits(ctx, &dwv1.GetLimitsRequest{})
	if err != nil {
		return nil, 0, fmt.Errorf("get limits: %w", FromStatus(err))
	}
	return r.GetLimits().AsMap(), r.GetGeneration(), nil
}

// Metrics returns the plugin's metrics and backpressure state.
func (c *Client) Metrics(ctx context.Context) (Metrics, error) {
	r, err := c.rpc.GetMetrics(ctx, &dwv1.GetMetricsRequest{})
	if err != nil {
		return Metrics{}, fmt.Errorf("get metrics: %w", FromStatus(err))
	}
	return metricsFromProto(r), nil
}

// Health returns the plugin's health.
func (c *Client) Health(ctx context.Context) (Health, error) {
	r, err := c.rpc.CheckHealth(ctx, &dwv1.CheckHealthRequest{})
	if err != nil {
		return Health{}, fmt.Errorf("check health: %w", FromStatus(err))
	}
	return healthFromProto(r), nil
}
