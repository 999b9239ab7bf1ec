package pluginhost

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// Client is the host side of a plugin connection: the ScalableSubsystem
// calls in Go types, plus the raw connection for domain services. It is what
// dispensing PluginName from a go-plugin client returns. Every error it
// returns has been through sdk.FromStatus (the interceptors of DialOptions
// apply it to every call on the connection, Conn's included), so errors.Is
// works with the sdk sentinels, errors.As finds the *sdk.DecodeError of
// refused limits or settings, and a dead plugin reads as
// sdk.ErrPluginShutdown.
//
// Call Info first: it learns the plugin's SDK version, and with it the wire
// encoding of limits the plugin speaks.
type Client struct {
	conn   *grpc.ClientConn
	rpc    dwv1.ScalableSubsystemClient
	broker *plugin.GRPCBroker
	// legacy is set by Info for a plugin of sdk 6.0.x: limits go as
	// google.protobuf.Struct, and Configure is followed by ApplyLimits.
	legacy atomic.Bool
}

func newClient(conn *grpc.ClientConn, broker *plugin.GRPCBroker) *Client {
	return &Client{conn: conn, rpc: dwv1.NewScalableSubsystemClient(conn), broker: broker}
}

// NewClient returns a Client on an established plugin connection, for
// tests that connect host and plugin without go-plugin's process handling
// (sdktest.ServeInProcess makes such a connection). Dial conn with
// DialOptions: the Client relies on its interceptors to turn errors into
// sdk errors. broker may be nil: then Configure serves no host services.
func NewClient(conn *grpc.ClientConn, broker *plugin.GRPCBroker) *Client {
	return newClient(conn, broker)
}

// Conn is the plugin's gRPC connection, for its domain services and for
// reflection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Info is GetInfo's answer: who the plugin is, as sdk.Info, and what the SDK
// adds.
type Info struct {
	sdk.Info
	// SDKVersion is the SDK version the plugin was built with.
	SDKVersion string
	// Services are the gRPC services the plugin serves besides the
	// contract, e.g. "dw.kvcache.v1.Cache".
	Services []string
	// DefaultLimits are the limits the plugin runs with when none are
	// configured, in config key names.
	DefaultLimits map[string]any
	// Schema describes the plugin's limits and settings; nil for a plugin
	// of sdk 6.0, which does not report one.
	Schema *Schema
}

// Info asks the plugin who it is.
func (c *Client) Info(ctx context.Context) (Info, error) {
	r, err := c.rpc.GetInfo(ctx, &dwv1.GetInfoRequest{})
	if err != nil {
		return Info{}, fmt.Errorf("get info: %w", err)
	}
	info := Info{
		Info:       sdk.Info{Name: r.GetName(), Version: r.GetPluginVersion(), Capabilities: r.GetCapabilities()},
		SDKVersion: r.GetSdkVersion(),
		Services:   r.GetServices(),
		Schema:     schemaFromProto(r.GetSchema()),
	}
	v, verr := ParseSemVer(info.SDKVersion)
	c.legacy.Store(verr == nil && v.Major == 6 && v.Minor == 0)
	if js := r.GetDefaultLimitsJson(); len(js) > 0 {
		if info.DefaultLimits, err = contract.DecodeJSON(js); err != nil {
			return Info{}, fmt.Errorf("get info: default limits: %w", err)
		}
	} else {
		info.DefaultLimits = r.GetDefaultLimits().AsMap()
	}
	return info, nil
}

// Configure hands the plugin cfg (its settings; cfg.Logger is not sent: it
// logs the panics the host key-value service recovers) with the limits to start with, for config
// generation gen, and returns the limits in force afterwards. If cfg.KV is
// set, it is served to the plugin over the go-plugin broker as its host
// key-value store: pass a store bound to this plugin's key space, as the
// plugin can reach nothing else through it.
//
// A plugin of sdk 6.1 applies the limits inside Configure, once; one of sdk
// 6.0 starts on its defaults and gets the limits in an ApplyLimits that
// Configure sends right after.
func (c *Client) Configure(ctx context.Context, cfg sdk.Config, limits map[string]any, gen uint64) (map[string]any, error) {
	req := &dwv1.ConfigureRequest{
		Subsystem:      cfg.Subsystem,
		DataDir:        cfg.DataDir,
		HostVersion:    cfg.HostVersion,
		HostApiAddress: cfg.HostAPIAddress,
		Generation:     gen,
	}
	legacy := c.legacy.Load()
	var err error
	if legacy {
		if req.Settings, err = structpb.NewStruct(cfg.Settings); err != nil {
			return nil, fmt.Errorf("configure %s: encode settings: %w", cfg.Subsystem, err)
		}
	} else {
		// Settings and limits as exact JSON.
		if req.SettingsJson, err = contract.EncodeJSON(cfg.Settings); err != nil {
			return nil, fmt.Errorf("configure %s: %w: %w", cfg.Subsystem, sdk.ErrInvalidSettings, err)
		}
		if req.LimitsJson, err = contract.EncodeJSON(limits); err != nil {
			return nil, fmt.Errorf("configure %s: %w: %w", cfg.Subsystem, sdk.ErrInvalidLimits, err)
		}
	}
	if cfg.KV != nil && c.broker != nil {
		req.HostServicesBrokerId = c.broker.NextId()
		kv := cfg.KV
		logger := cfg.Logger
		go c.broker.AcceptAndServe(req.HostServicesBrokerId, func(opts []grpc.ServerOption) *grpc.Server {
			s := grpc.NewServer(append(opts, ServerOptions(logger)...)...)
			RegisterHostKV(s, kv)
			return s
		})
	}
	r, err := c.rpc.Configure(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("configure: %w", err)
	}
	if legacy {
		applied, err := c.ApplyLimits(ctx, limits, gen)
		if err != nil {
			return nil, fmt.Errorf("configure: %w", err)
		}
		return applied, nil
	}
	applied, err := contract.DecodeJSON(r.GetLimitsJson())
	if err != nil {
		return nil, fmt.Errorf("configure: limits in force: %w", err)
	}
	return applied, nil
}

// ValidateLimits asks the plugin whether limits would be accepted, changing
// nothing. It returns the limits as they would be applied. Before Configure
// (a briefly started plugin, to check a config file) the plugin checks the
// rules of its limits struct only.
func (c *Client) ValidateLimits(ctx context.Context, limits map[string]any) (map[string]any, error) {
	req := &dwv1.ValidateLimitsRequest{}
	if err := c.encode(limits, &req.LimitsJson, &req.Limits); err != nil {
		return nil, fmt.Errorf("validate limits: %w", err)
	}
	r, err := c.rpc.ValidateLimits(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("validate limits: %w", err)
	}
	out, err := decode(r.GetLimitsJson(), r.GetLimits())
	if err != nil {
		return nil, fmt.Errorf("validate limits: %w", err)
	}
	return out, nil
}

// ApplyLimits puts limits in force for config generation gen and returns
// them as applied.
func (c *Client) ApplyLimits(ctx context.Context, limits map[string]any, gen uint64) (map[string]any, error) {
	req := &dwv1.ApplyLimitsRequest{Generation: gen}
	if err := c.encode(limits, &req.LimitsJson, &req.Limits); err != nil {
		return nil, fmt.Errorf("apply limits: %w", err)
	}
	r, err := c.rpc.ApplyLimits(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("apply limits: %w", err)
	}
	out, err := decode(r.GetLimitsJson(), r.GetLimits())
	if err != nil {
		return nil, fmt.Errorf("apply limits: %w", err)
	}
	return out, nil
}

// Limits returns the limits in force and the generation they came with.
func (c *Client) Limits(ctx context.Context) (map[string]any, uint64, error) {
	r, err := c.rpc.GetLimits(ctx, &dwv1.GetLimitsRequest{})
	if err != nil {
		return nil, 0, fmt.Errorf("get limits: %w", err)
	}
	out, err := decode(r.GetLimitsJson(), r.GetLimits())
	if err != nil {
		return nil, 0, fmt.Errorf("get limits: %w", err)
	}
	return out, r.GetGeneration(), nil
}

// Metrics returns the plugin's metrics and backpressure state.
func (c *Client) Metrics(ctx context.Context) (sdk.Metrics, error) {
	r, err := c.rpc.GetMetrics(ctx, &dwv1.GetMetricsRequest{})
	if err != nil {
		return sdk.Metrics{}, fmt.Errorf("get metrics: %w", err)
	}
	return metricsFromProto(r), nil
}

// Health returns the plugin's health.
func (c *Client) Health(ctx context.Context) (sdk.Health, error) {
	r, err := c.rpc.CheckHealth(ctx, &dwv1.CheckHealthRequest{})
	if err != nil {
		return sdk.Health{}, fmt.Errorf("check health: %w", err)
	}
	return healthFromProto(r), nil
}

// encode puts limits into a request in the plugin's encoding.
func (c *Client) encode(limits map[string]any, js *[]byte, st **structpb.Struct) error {
	if c.legacy.Load() {
		s, err := structpb.NewStruct(limits)
		if err != nil {
			return fmt.Errorf("%w: %w", sdk.ErrInvalidLimits, err)
		}
		*st = s
		return nil
	}
	b, err := contract.EncodeJSON(limits)
	if err != nil {
		return fmt.Errorf("%w: %w", sdk.ErrInvalidLimits, err)
	}
	*js = b
	return nil
}

// decode reads limits from an answer: JSON when the plugin sent it, else
// the Struct of sdk 6.0.
func decode(js []byte, st *structpb.Struct) (map[string]any, error) {
	if len(js) > 0 {
		return contract.DecodeJSON(js)
	}
	return st.AsMap(), nil
}

// Schema describes a plugin's limits and settings (see the proto message
// dw.sdk.v1.Schema), as the SDK derives it from the plugin's structs with
// the analysis Decode uses. Fields come depth first with keys sorted at
// each level: an object, map or list comes before the keys inside it.
//
// Its methods serve the host and tools: CheckLimits and CheckSettings
// check a config section offline, JSONSchema describes it for editors,
// Markdown documents it. A nil *Schema (a plugin of sdk 6.0) is valid for
// all of them. Schema and Field are part of the SDK's 6.x compatibility
// promise: fields may be added, none removed or changed in meaning.
type Schema struct {
	// Limits are the keys under subsystems.<name>.limits, in key order.
	Limits []Field `json:"limits"`
	// Settings are the other keys of the subsystem's section.
	Settings []Field `json:"settings"`
	// SettingsDeclared is false when the plugin declared no settings
	// struct (sdk.SettingsDeclarer): its settings cannot be checked without
	// configuring it.
	SettingsDeclared bool `json:"settings_declared"`
}

// Field describes one key of limits or settings.
type Field struct {
	// Path is the dotted key path below limits (or the subsystem's
	// section); "*" is any key of a map, "[]" any element of a list:
	// "quota.callers.*.bytes_per_second", "strategies[].name", "join[]".
	// Keys are made of letters, digits, '_' and '-'.
	Path string `json:"path"`
	// Type is one of the Type* constants: bool, int, uint, float, string,
	// duration, size, text (a string a type of the plugin parses), object,
	// map or list.
	Type string `json:"type"`
	// Doc is one line saying what the key does (the field's doc tag);
	// empty when the plugin gave none.
	Doc string `json:"doc,omitempty"`
	// Default is the default value as JSON (an object's holds its keys);
	// nil inside maps and lists, where a key left out holds the zero value
	// of its type. Durations and sizes are strings ("5s", "64MiB").
	Default json.RawMessage `json:"default,omitempty"`
	// Min and Max are the bounds in the key's own notation ("1", "0.5",
	// "1s", "1KiB"); empty when unbounded. On a map or list they sit on
	// the element they apply to.
	Min string `json:"min,omitempty"`
	Max string `json:"max,omitempty"`
	// Enum lists the allowed strings; empty when any string is allowed.
	Enum []string `json:"enum,omitempty"`
	// Live reports whether a change applies without a restart: true for
	// every limit, false for every setting.
	Live bool `json:"live"`
	// Bits is the size of an int or uint key (8, 16, 32 or 64), which
	// bounds it besides Min and Max; 0 otherwise.
	Bits int `json:"bits,omitempty"`
}

func schemaFromProto(p *dwv1.Schema) *Schema {
	if p == nil {
		return nil
	}
	s := &Schema{SettingsDeclared: p.GetSettingsDeclared()}
	conv := func(fs []*dwv1.SchemaField) []Field {
		out := make([]Field, 0, len(fs))
		for _, f := range fs {
			field := Field{
				Path: f.GetPath(), Type: f.GetType(), Doc: f.GetDoc(),
				Min: f.GetMin(), Max: f.GetMax(), Enum: f.GetEnum(), Live: f.GetLive(), Bits: int(f.GetBits()),
			}
			if d := f.GetDefaultJson(); len(d) > 0 {
				field.Default = json.RawMessage(d)
			}
			out = append(out, field)
		}
		return out
	}
	s.Limits = conv(p.GetLimits())
	s.Settings = conv(p.GetSettings())
	return s
}
