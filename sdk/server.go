package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

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
	// dialKV connects to the host's KV service for a broker id; the
	// returned closer ends the connection.
	dialKV  func(id uint32) (KV, func() error, error)
	closeKV func() error

	mu         sync.Mutex // serialises Configure and ApplyLimits
	configured bool
	current    L
	currentMap map[string]any
	generation uint64
}

var _ dwv1.ScalableSubsystemServer = (*subsystemServer[struct{}])(nil)

func newSubsystemServer[L any](impl Subsystem[L], logger hclog.Logger) *subsystemServer[L] {
	s := &subsystemServer[L]{impl: impl, logger: logger}
	s.current = impl.DefaultLimits()
	return s
}

// invalid wraps a decode or validation error with its sentinel.
func invalid(sentinel, err error) error {
	if errors.Is(err, sentinel) {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// decodeLimits overlays m onto the plugin's default limits and runs every
// check: field rules, Validate, and the plugin's own ValidateLimits.
func (s *subsystemServer[L]) decodeLimits(ctx context.Context, m map[string]any) (L, map[string]any, error) {
	l := s.impl.DefaultLimits()
	if err := Decode(&l, m, "limits"); err != nil {
		var zero L
		return zero, nil, invalid(ErrInvalidLimits, err)
	}
	if v, ok := s.impl.(LimitsValidator[L]); ok {
		if err := v.ValidateLimits(ctx, l); err != nil {
			var zero L
			return zero, nil, invalid(ErrInvalidLimits, err)
		}
	}
	enc, err := Encode(l)
	if err != nil {
		var zero L
		return zero, nil, fmt.Errorf("encode limits: %w", err)
	}
	return l, enc, nil
}

func structOf(m map[string]any) (*structpb.Struct, error) {
	st, err := structpb.NewStruct(m)
	if err != nil {
		return nil, fmt.Errorf("encode as protobuf struct: %w", err)
	}
	return st, nil
}

func (s *subsystemServer[L]) GetInfo(context.Context, *dwv1.GetInfoRequest) (*dwv1.GetInfoResponse, error) {
	info := s.impl.Info()
	def, err := Encode(s.impl.DefaultLimits())
	if err != nil {
		return nil, ToStatus(fmt.Errorf("encode default limits: %w", err))
	}
	defStruct, err := structOf(def)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &dwv1.GetInfoResponse{
		Name:          info.Name,
		PluginVersion: info.Version,
		SdkVersion:    sdkVersionReported(),
		Capabilities:  info.Capabilities,
		Services:      s.services,
		DefaultLimits: defStruct,
	}, nil
}

func (s *subsystemServer[L]) Configure(ctx context.Context, req *dwv1.ConfigureRequest) (*dwv1.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.configured {
		return nil, ToStatus(fmt.Errorf("configure %s: %w: already configured; a settings change restarts the plugin", req.GetSubsystem(), ErrFailedPrecondition))
	}
	cfg := Config{
		Subsystem:      req.GetSubsystem(),
		Settings:       req.GetSettings().AsMap(),
		DataDir:        req.GetDataDir(),
		HostVersion:    req.GetHostVersion(),
		HostAPIAddress: req.GetHostApiAddress(),
		Logger:         s.logger,
	}
	if id := req.GetHostServicesBrokerId(); id != 0 && s.dialKV != nil {
		kv, closeKV, err := s.dialKV(id)
		if err != nil {
			return nil, ToStatus(fmt.Errorf("configure %s: connect to host services: %w", cfg.Subsystem, err))
		}
		cfg.KV, s.closeKV = kv, closeKV
	}
	if err := s.impl.Configure(ctx, cfg); err != nil {
		return nil, ToStatus(err)
	}
	s.configured = true
	// Defaults are in force until the host applies its limits.
	if err := s.impl.ApplyLimits(ctx, s.current); err != nil {
		return nil, ToStatus(fmt.Errorf("configure %s: apply default limits: %w", cfg.Subsystem, err))
	}
	return &dwv1.ConfigureResponse{}, nil
}

func (s *subsystemServer[L]) ValidateLimits(ctx context.Context, req *dwv1.ValidateLimitsRequest) (*dwv1.ValidateLimitsResponse, error) {
	_, enc, err := s.decodeLimits(ctx, req.GetLimits().AsMap())
	if err != nil {
		return nil, ToStatus(err)
	}
	st, err := structOf(enc)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &dwv1.ValidateLimitsResponse{Limits: st}, nil
}

func (s *subsystemServer[L]) ApplyLimits(ctx context.Context, req *dwv1.ApplyLimitsRequest) (*dwv1.ApplyLimitsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.configured {
		return nil, ToStatus(fmt.Errorf("apply limits: %w: Configure has not been called", ErrFailedPrecondition))
	}
	l, enc, err := s.decodeLimits(ctx, req.GetLimits().AsMap())
	if err != nil {
		return nil, ToStatus(err)
	}
	if err := s.impl.ApplyLimits(ctx, l); err != nil {
		return nil, ToStatus(err)
	}
	s.current, s.currentMap, s.generation = l, enc, req.GetGeneration()
	st, err := structOf(enc)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &dwv1.ApplyLimitsResponse{Limits: st, Generation: s.generation}, nil
}

func (s *subsystemServer[L]) GetLimits(context.Context, *dwv1.GetLimitsRequest) (*dwv1.GetLimitsResponse, error) {
	s.mu.Lock()
	enc, gen := s.currentMap, s.generation
	if enc == nil {
		var err error
		if enc, err = Encode(s.current); err != nil {
			s.mu.Unlock()
			return nil, ToStatus(fmt.Errorf("encode limits: %w", err))
		}
	}
	s.mu.Unlock()
	st, err := structOf(enc)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &dwv1.GetLimitsResponse{Limits: st, Generation: gen}, nil
}

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
		return nil, ToStatus(err)
	}
	if m.Backpressure < BackpressureNone || m.Backpressure > BackpressureSaturated {
		return nil, ToStatus(fmt.Errorf("plugin bug: backpressure %d is not none, elevated or saturated", m.Backpressure))
	}
	return metricsToProto(m), nil
}

func (s *subsystemServer[L]) CheckHealth(ctx context.Context, _ *dwv1.CheckHealthRequest) (*dwv1.CheckHealthResponse, error) {
	if !s.isConfigured() {
		return &dwv1.CheckHealthResponse{Status: dwv1.HealthStatus_HEALTH_STATUS_NOT_SERVING, Message: "waiting for Configure"}, nil
	}
	h := s.impl.Health(ctx)
	if !h.Status.valid() {
		return nil, ToStatus(fmt.Errorf("plugin bug: health status %d is not serving, degraded or not_serving", h.Status))
	}
	for _, c := range h.Components {
		if !c.Status.valid() {
			return nil, ToStatus(fmt.Errorf("plugin bug: component %q has health status %d, not serving, degraded or not_serving", c.Name, c.Status))
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
		kind := dwv1.MetricKind_METRIC_KIND_GAUGE
		if v.Kind == KindCounter {
			kind = dwv1.MetricKind_METRIC_KIND_COUNTER
		}
		out.Metrics = append(out.Metrics, &dwv1.Metric{Name: v.Name, Help: v.Help, Kind: kind, Value: v.Value, Labels: v.Labels})
	}
	return out
}

func metricsFromProto(p *dwv1.GetMetricsResponse) Metrics {
	m := Metrics{Reason: p.GetBackpressureReason(), Values: make([]Metric, 0, len(p.GetMetrics()))}
	switch p.GetBackpressure() {
	case dwv1.Backpressure_BACKPRESSURE_ELEVATED:
		m.Backpressure = BackpressureElevated
	case dwv1.Backpressure_BACKPRESSURE_SATURATED:
		m.Backpressure = BackpressureSaturated
	}
	for _, v := range p.GetMetrics() {
		kind := KindGauge
		if v.GetKind() == dwv1.MetricKind_METRIC_KIND_COUNTER {
			kind = KindCounter
		}
		m.Values = append(m.Values, Metric{Name: v.GetName(), Help: v.GetHelp(), Kind: kind, Value: v.GetValue(), Labels: v.GetLabels()})
	}
	return m
}

func healthStatusToProto(h HealthStatus) dwv1.HealthStatus {
	return dwv1.HealthStatus(h + 1)
}

func healthStatusFromProto(h dwv1.HealthStatus) HealthStatus {
	switch h {
	case dwv1.HealthStatus_HEALTH_STATUS_SERVING:
		return HealthServing
	case dwv1.HealthStatus_HEALTH_STATUS_DEGRADED:
		return HealthDegraded
	}
	return HealthNotServing
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

func healthFromProto(p *dwv1.CheckHealthResponse) Health {
	h := Health{Status: healthStatusFromProto(p.GetStatus()), Message: p.GetMessage()}
	for _, c := range p.GetComponents() {
		ch := ComponentHealth{Name: c.GetName(), Status: healthStatusFromProto(c.GetStatus()), Message: c.GetMessage()}
		if c.GetCheckedAt() != nil {
			ch.CheckedAt = c.GetCheckedAt().AsTime()
		}
		h.Components = append(h.Components, ch)
	}
	return h
}
