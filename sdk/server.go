package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// subsystemServer adapts a Subsystem[L] to the generated gRPC server. It owns
// the limits in force, decodes candidates, and serialises Configure and
// ApplyLimits.
type subsystemServer[L any] struct {
	dwv1.UnimplementedScalableSubsystemServer

	impl     Subsystem[L]
	logger   hclog.Logger
	services []string
	// schema describes the limits and settings; derived once at start.
	schema *dwv1.Schema
	// dialKV connects to the host's KV service for a broker id; the
	// returned closer ends the connection.
	dialKV  func(id uint32) (KV, func() error, error)
	closeKV func() error

	mu sync.Mutex // serialises Configure and ApplyLimits
	// configured is set once the plugin's Configure has succeeded: then
	// Configure may not run again and ApplyLimits may.
	configured bool
	// ready is set once the SDK's Configure has succeeded as a whole (the
	// starting limits applied): the plugin's own services are served from
	// then on.
	ready      atomic.Bool
	current    L
	currentMap map[string]any
	generation uint64
}

var _ dwv1.ScalableSubsystemServer = (*subsystemServer[struct{}])(nil)

func newSubsystemServer[L any](impl Subsystem[L], logger hclog.Logger) *subsystemServer[L] {
	s := &subsystemServer[L]{impl: impl, logger: logger}
	s.current = impl.DefaultLimits()
	schema, err := schemaOf[L](impl)
	if err != nil {
		// A programming error (a field type Decode does not support): the
		// plugin could never be configured. Stop before the handshake, with
		// a log line the host shows, rather than fail at every call.
		logger.Error("plugin bug: cannot describe the limits or settings", "error", err)
		panic("sdk: plugin bug: " + err.Error())
	}
	s.schema = schema
	return s
}

// invalid wraps a decode or validation error with its sentinel.
func invalid(sentinel, err error) error {
	if errors.Is(err, sentinel) {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// overlay decodes m onto the plugin's default limits and checks the rules
// of the limits struct (tags and Validate).
func (s *subsystemServer[L]) overlay(m map[string]any) (L, error) {
	l := s.impl.DefaultLimits()
	if err := Decode(&l, m, "limits"); err != nil {
		var zero L
		return zero, invalid(ErrInvalidLimits, err)
	}
	return l, nil
}

// accept runs the plugin's own ValidateLimits, if it has one, on limits
// that passed overlay, and encodes them in config key names.
func (s *subsystemServer[L]) accept(ctx context.Context, l L) (map[string]any, error) {
	if v, ok := s.impl.(LimitsValidator[L]); ok {
		if err := v.ValidateLimits(ctx, l); err != nil {
			return nil, invalid(ErrInvalidLimits, err)
		}
	}
	enc, err := Encode(l)
	if err != nil {
		return nil, fmt.Errorf("encode limits: %w", err)
	}
	return enc, nil
}

// decodeLimits overlays m onto the plugin's default limits and runs every
// check: field rules, Validate, and the plugin's own ValidateLimits.
func (s *subsystemServer[L]) decodeLimits(ctx context.Context, m map[string]any) (L, map[string]any, error) {
	l, err := s.overlay(m)
	if err != nil {
		return l, nil, err
	}
	enc, err := s.accept(ctx, l)
	if err != nil {
		var zero L
		return zero, nil, err
	}
	return l, enc, nil
}

// limitsIn reads the limits of a request: the exact JSON object of sdk
// 6.1, or else sdk 6.0's Struct (numbers as doubles) from an older caller.
func limitsIn(js []byte, st *structpb.Struct) (map[string]any, error) {
	if len(js) > 0 {
		m, err := contract.DecodeJSON(js)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidLimits, err)
		}
		return m, nil
	}
	return st.AsMap(), nil
}

func (s *subsystemServer[L]) GetInfo(context.Context, *dwv1.GetInfoRequest) (*dwv1.GetInfoResponse, error) {
	info := s.impl.Info()
	def, err := Encode(s.impl.DefaultLimits())
	if err != nil {
		return nil, fmt.Errorf("encode default limits: %w", err)
	}
	defJSON, err := contract.EncodeJSON(def)
	if err != nil {
		return nil, err
	}
	return &dwv1.GetInfoResponse{
		Name:              info.Name,
		PluginVersion:     info.Version,
		SdkVersion:        sdkVersionReported(),
		Capabilities:      info.Capabilities,
		Services:          s.services,
		DefaultLimitsJson: defJSON,
		Schema:            s.schema,
	}, nil
}

func (s *subsystemServer[L]) Configure(ctx context.Context, req *dwv1.ConfigureRequest) (*dwv1.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.configured {
		return nil, fmt.Errorf("configure %s: %w: already configured; a settings change restarts the plugin", req.GetSubsystem(), ErrFailedPrecondition)
	}
	settings := req.GetSettings().AsMap()
	if js := req.GetSettingsJson(); len(js) > 0 {
		var err error
		if settings, err = contract.DecodeJSON(js); err != nil {
			return nil, fmt.Errorf("configure %s: %w: %w", req.GetSubsystem(), ErrInvalidSettings, err)
		}
	}
	cfg := Config{
		Subsystem:      req.GetSubsystem(),
		Settings:       settings,
		DataDir:        req.GetDataDir(),
		HostVersion:    req.GetHostVersion(),
		HostAPIAddress: req.GetHostApiAddress(),
		Logger:         s.logger,
	}
	if id := req.GetHostServicesBrokerId(); id != 0 && s.dialKV != nil {
		kv, closeKV, err := s.dialKV(id)
		if err != nil {
			return nil, fmt.Errorf("configure %s: connect to host services: %w", cfg.Subsystem, err)
		}
		cfg.KV, s.closeKV = kv, closeKV
		defer func() {
			// Unless the plugin took them (its Configure succeeded), the
			// host services are released: a Configure that is retried
			// dials them again.
			if !s.configured && s.closeKV != nil {
				_ = s.closeKV()
				s.closeKV = nil
			}
		}()
	}
	// The limits to start with are checked before the plugin is
	// configured: a host that sends bad ones learns it without side effects.
	// The plugin's own ValidateLimits runs on its configured state, after
	// Configure.
	m, err := contract.DecodeJSON(req.GetLimitsJson())
	if err != nil {
		return nil, fmt.Errorf("configure %s: %w: %w", cfg.Subsystem, ErrInvalidLimits, err)
	}
	l, err := s.overlay(m)
	if err != nil {
		return nil, err
	}
	if err := s.impl.Configure(ctx, cfg); err != nil {
		return nil, err
	}
	s.configured = true
	enc, err := s.accept(ctx, l)
	if err != nil {
		return nil, fmt.Errorf("configure %s: %w", cfg.Subsystem, err)
	}
	// ApplyLimits runs once at start, with the limits the host configured.
	if err := s.applyAtStart(ctx, l); err != nil {
		return nil, fmt.Errorf("configure %s: apply limits: %w", cfg.Subsystem, err)
	}
	s.current, s.currentMap, s.generation = l, enc, req.GetGeneration()
	js, err := contract.EncodeJSON(enc)
	if err != nil {
		return nil, err
	}
	s.ready.Store(true)
	return &dwv1.ConfigureResponse{LimitsJson: js, Generation: s.generation}, nil
}

func (s *subsystemServer[L]) ValidateLimits(ctx context.Context, req *dwv1.ValidateLimitsRequest) (*dwv1.ValidateLimitsResponse, error) {
	m, err := limitsIn(req.GetLimitsJson(), req.GetLimits())
	if err != nil {
		return nil, err
	}
	l, err := s.overlay(m)
	if err != nil {
		return nil, err
	}
	var enc map[string]any
	if s.isConfigured() {
		enc, err = s.accept(ctx, l)
	} else {
		// Before Configure (an offline check of a config file) only the
		// rules of the limits struct apply: the plugin's own
		// ValidateLimits may need state it does not have yet.
		enc, err = Encode(l)
	}
	if err != nil {
		return nil, err
	}
	js, err := contract.EncodeJSON(enc)
	if err != nil {
		return nil, err
	}
	return &dwv1.ValidateLimitsResponse{LimitsJson: js}, nil
}

func (s *subsystemServer[L]) ApplyLimits(ctx context.Context, req *dwv1.ApplyLimitsRequest) (*dwv1.ApplyLimitsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.configured {
		return nil, fmt.Errorf("apply limits: %w: Configure has not been called", ErrFailedPrecondition)
	}
	m, err := limitsIn(req.GetLimitsJson(), req.GetLimits())
	if err != nil {
		return nil, err
	}
	l, enc, err := s.decodeLimits(ctx, m)
	if err != nil {
		return nil, err
	}
	if err := s.impl.ApplyLimits(ctx, l); err != nil {
		return nil, err
	}
	s.current, s.currentMap, s.generation = l, enc, req.GetGeneration()
	js, err := contract.EncodeJSON(enc)
	if err != nil {
		return nil, err
	}
	return &dwv1.ApplyLimitsResponse{LimitsJson: js, Generation: s.generation}, nil
}

func (s *subsystemServer[L]) GetLimits(context.Context, *dwv1.GetLimitsRequest) (*dwv1.GetLimitsResponse, error) {
	enc, gen, err := s.limitsInForce()
	if err != nil {
		return nil, err
	}
	js, err := contract.EncodeJSON(enc)
	if err != nil {
		return nil, err
	}
	return &dwv1.GetLimitsResponse{LimitsJson: js, Generation: gen}, nil
}

// limitsInForce returns the limits in force, encoded, and their
// generation. (Encode may run the plugin's MarshalText, which may panic:
// the mutex is released by a defer.)
func (s *subsystemServer[L]) limitsInForce() (map[string]any, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.currentMap != nil {
		return s.currentMap, s.generation, nil
	}
	enc, err := Encode(s.current)
	if err != nil {
		return nil, 0, fmt.Errorf("encode limits: %w", err)
	}
	return enc, s.generation, nil
}

// isReady reports whether Configure has succeeded.
func (s *subsystemServer[L]) isReady() bool { return s.ready.Load() }

// close releases the host-services connection.
func (s *subsystemServer[L]) close() {
	s.mu.Lock()
	closeKV := s.closeKV
	s.closeKV = nil
	s.mu.Unlock()
	if closeKV != nil {
		_ = closeKV()
	}
}

func (s *subsystemServer[L]) isConfigured() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.configured
}

func (s *subsystemServer[L]) GetMetrics(ctx context.Context, _ *dwv1.GetMetricsRequest) (*dwv1.GetMetricsResponse, error) {
	if !s.isConfigured() {
		return &dwv1.GetMetricsResponse{Backpressure: dwv1.Backpressure_BACKPRESSURE_NONE}, nil
	}
	m, err := s.impl.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	if m.Backpressure < BackpressureNone || m.Backpressure > BackpressureSaturated {
		return nil, fmt.Errorf("plugin bug: backpressure %d is not none, elevated or saturated", m.Backpressure)
	}
	for _, v := range m.Values {
		if err := v.check(); err != nil {
			return nil, fmt.Errorf("plugin bug: %w", err)
		}
	}
	return metricsToProto(m), nil
}

func (s *subsystemServer[L]) CheckHealth(ctx context.Context, _ *dwv1.CheckHealthRequest) (*dwv1.CheckHealthResponse, error) {
	if !s.isConfigured() {
		return &dwv1.CheckHealthResponse{Status: dwv1.HealthStatus_HEALTH_STATUS_NOT_SERVING, Message: "waiting for Configure"}, nil
	}
	h := s.impl.Health(ctx)
	if !h.Status.valid() {
		return nil, fmt.Errorf("plugin bug: health status %d is not serving, degraded or not_serving", h.Status)
	}
	for _, c := range h.Components {
		if !c.Status.valid() {
			return nil, fmt.Errorf("plugin bug: component %q has health status %d, not serving, degraded or not_serving", c.Name, c.Status)
		}
	}
	return healthToProto(h), nil
}

func metricsToProto(m Metrics) *dwv1.GetMetricsResponse {
	out := &dwv1.GetMetricsResponse{
		Backpressure:       dwv1.Backpressure(m.Backpressure + 1),
		BackpressureReason: m.Reason,
		Metrics:            make([]*dwv1.Metric, 0, len(m.Values)),
	}
	for _, v := range m.Values {
		pm := &dwv1.Metric{Name: v.Name, Help: v.Help, Kind: dwv1.MetricKind_METRIC_KIND_GAUGE, Value: v.Value, Labels: v.Labels}
		switch v.Kind {
		case KindCounter:
			pm.Kind = dwv1.MetricKind_METRIC_KIND_COUNTER
		case KindHistogram:
			pm.Kind, pm.Value = dwv1.MetricKind_METRIC_KIND_HISTOGRAM, 0
			if h := v.Histogram; h != nil {
				pm.Histogram = &dwv1.Histogram{UpperBounds: h.UpperBounds, CumulativeCounts: h.CumulativeCounts, Count: h.Count, Sum: h.Sum}
			} else {
				pm.Histogram = &dwv1.Histogram{}
			}
		}
		out.Metrics = append(out.Metrics, pm)
	}
	return out
}

func healthStatusToProto(h HealthStatus) dwv1.HealthStatus {
	return dwv1.HealthStatus(h + 1)
}

func healthToProto(h Health) *dwv1.CheckHealthResponse {
	out := &dwv1.CheckHealthResponse{Status: healthStatusToProto(h.Status), Message: h.Message}
	for _, c := range h.Components {
		pc := &dwv1.ComponentHealth{Name: c.Name, Status: healthStatusToProto(c.Status), Message: c.Message}
		if !c.CheckedAt.IsZero() {
			pc.CheckedAt = timestamppb.New(c.CheckedAt)
		}
		out.Components = append(out.Components, pc)
	}
	return out
}

// applyAtStart runs the plugin's ApplyLimits inside Configure. A panic in
// it is recovered here, so that the error names ApplyLimits, where the
// plugin's code failed, rather than the Configure call that ran it.
func (s *subsystemServer[L]) applyAtStart(ctx context.Context, l L) (err error) {
	defer func() {
		if v := recover(); v != nil {
			h := contract.ServerErrors{ToStatus: ToStatus, Panicked: ErrPanicked, Logger: s.logger}
			err = h.Recovered(dwv1.ScalableSubsystem_ApplyLimits_FullMethodName, v)
		}
	}()
	return s.impl.ApplyLimits(ctx, l)
}
