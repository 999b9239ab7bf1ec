package sdk

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// testClient is a minimal host side for the tests of this package, over
// the generated client (the real one, pluginhost.Client, imports this
// package and cannot be used here). Its connection has the host's
// interceptors (see serveInProcess): its errors came through FromStatus.
type testClient struct {
	conn   *grpc.ClientConn
	rpc    dwv1.ScalableSubsystemClient
	broker *plugin.GRPCBroker
}

type testInfo struct {
	Name, Version, SDKVersion string
	DefaultLimits             map[string]any
	Schema                    *dwv1.Schema
}

func (c *testClient) Info(ctx context.Context) (testInfo, error) {
	r, err := c.rpc.GetInfo(ctx, &dwv1.GetInfoRequest{})
	if err != nil {
		return testInfo{}, err
	}
	def, err := contract.DecodeJSON(r.GetDefaultLimitsJson())
	if err != nil {
		return testInfo{}, err
	}
	return testInfo{Name: r.GetName(), Version: r.GetPluginVersion(), SDKVersion: r.GetSdkVersion(), DefaultLimits: def, Schema: r.GetSchema()}, nil
}

// Configure sends cfg with no limits (the defaults) and serves cfg.KV.
func (c *testClient) Configure(ctx context.Context, cfg Config) error {
	_, err := c.ConfigureWith(ctx, cfg, nil, 0)
	return err
}

func (c *testClient) ConfigureWith(ctx context.Context, cfg Config, limits map[string]any, gen uint64) (map[string]any, error) {
	settings, err := contract.EncodeJSON(cfg.Settings)
	if err != nil {
		return nil, err
	}
	js, err := contract.EncodeJSON(limits)
	if err != nil {
		return nil, err
	}
	req := &dwv1.ConfigureRequest{Subsystem: cfg.Subsystem, SettingsJson: settings, DataDir: cfg.DataDir, LimitsJson: js, Generation: gen}
	if cfg.KV != nil {
		req.HostServicesBrokerId = c.broker.NextId()
		kv := cfg.KV
		go c.broker.AcceptAndServe(req.HostServicesBrokerId, func(opts []grpc.ServerOption) *grpc.Server {
			s := grpc.NewServer(append(opts, hostServerOptions()...)...)
			dwv1.RegisterHostKVServer(s, &testKVServer{kv: kv})
			return s
		})
	}
	r, err := c.rpc.Configure(ctx, req)
	if err != nil {
		return nil, err
	}
	return contract.DecodeJSON(r.GetLimitsJson())
}

func (c *testClient) ValidateLimits(ctx context.Context, limits map[string]any) (map[string]any, error) {
	js, err := contract.EncodeJSON(limits)
	if err != nil {
		return nil, err
	}
	r, err := c.rpc.ValidateLimits(ctx, &dwv1.ValidateLimitsRequest{LimitsJson: js})
	if err != nil {
		return nil, err
	}
	return contract.DecodeJSON(r.GetLimitsJson())
}

func (c *testClient) ApplyLimits(ctx context.Context, limits map[string]any, gen uint64) (map[string]any, error) {
	js, err := contract.EncodeJSON(limits)
	if err != nil {
		return nil, err
	}
	r, err := c.rpc.ApplyLimits(ctx, &dwv1.ApplyLimitsRequest{LimitsJson: js, Generation: gen})
	if err != nil {
		return nil, err
	}
	return contract.DecodeJSON(r.GetLimitsJson())
}

func (c *testClient) Limits(ctx context.Context) (map[string]any, uint64, error) {
	r, err := c.rpc.GetLimits(ctx, &dwv1.GetLimitsRequest{})
	if err != nil {
		return nil, 0, err
	}
	m, err := contract.DecodeJSON(r.GetLimitsJson())
	return m, r.GetGeneration(), err
}

func (c *testClient) Metrics(ctx context.Context) (*dwv1.GetMetricsResponse, error) {
	return c.rpc.GetMetrics(ctx, &dwv1.GetMetricsRequest{})
}

func (c *testClient) Health(ctx context.Context) (*dwv1.CheckHealthResponse, error) {
	return c.rpc.CheckHealth(ctx, &dwv1.CheckHealthRequest{})
}

// testKVServer serves a KV as HostKV (what the host does with
// pluginhost.RegisterHostKV).
type testKVServer struct {
	dwv1.UnimplementedHostKVServer
	kv KV
}

func (s *testKVServer) Put(ctx context.Context, r *dwv1.KVPutRequest) (*dwv1.KVPutResponse, error) {
	return &dwv1.KVPutResponse{}, s.kv.Put(ctx, r.GetKey(), r.GetValue())
}

func (s *testKVServer) Get(ctx context.Context, r *dwv1.KVGetRequest) (*dwv1.KVGetResponse, error) {
	v, err := s.kv.Get(ctx, r.GetKey())
	if err != nil {
		return nil, err
	}
	return &dwv1.KVGetResponse{Value: v}, nil
}

func (s *testKVServer) Delete(ctx context.Context, r *dwv1.KVDeleteRequest) (*dwv1.KVDeleteResponse, error) {
	return &dwv1.KVDeleteResponse{}, s.kv.Delete(ctx, r.GetKey())
}

func (s *testKVServer) List(r *dwv1.KVListRequest, stream dwv1.HostKV_ListServer) error {
	return s.kv.List(stream.Context(), r.GetPrefix(), func(k string, v []byte) error {
		return stream.Send(&dwv1.KVEntry{Key: k, Value: v})
	})
}
