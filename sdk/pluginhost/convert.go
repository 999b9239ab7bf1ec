package pluginhost

import (
	"errors"
	"fmt"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

func metricsFromProto(p *dwv1.GetMetricsResponse) sdk.Metrics {
	m := sdk.Metrics{Reason: p.GetBackpressureReason(), Values: make([]sdk.Metric, 0, len(p.GetMetrics()))}
	switch p.GetBackpressure() {
	case dwv1.Backpressure_BACKPRESSURE_ELEVATED:
		m.Backpressure = sdk.BackpressureElevated
	case dwv1.Backpressure_BACKPRESSURE_SATURATED:
		m.Backpressure = sdk.BackpressureSaturated
	}
	for _, v := range p.GetMetrics() {
		metric := sdk.Metric{Name: v.GetName(), Help: v.GetHelp(), Kind: sdk.KindGauge, Value: v.GetValue(), Labels: v.GetLabels()}
		switch v.GetKind() {
		case dwv1.MetricKind_METRIC_KIND_COUNTER:
			metric.Kind = sdk.KindCounter
		case dwv1.MetricKind_METRIC_KIND_HISTOGRAM:
			h := v.GetHistogram()
			metric.Kind, metric.Value = sdk.KindHistogram, 0
			metric.Histogram = &sdk.HistogramSnapshot{
				UpperBounds:      h.GetUpperBounds(),
				CumulativeCounts: h.GetCumulativeCounts(),
				Count:            h.GetCount(),
				Sum:              h.GetSum(),
			}
		}
		m.Values = append(m.Values, metric)
	}
	return m
}

func healthStatusFromProto(h dwv1.HealthStatus) sdk.HealthStatus {
	switch h {
	case dwv1.HealthStatus_HEALTH_STATUS_SERVING:
		return sdk.HealthServing
	case dwv1.HealthStatus_HEALTH_STATUS_DEGRADED:
		return sdk.HealthDegraded
	}
	return sdk.HealthNotServing
}

func healthFromProto(p *dwv1.CheckHealthResponse) sdk.Health {
	h := sdk.Health{Status: healthStatusFromProto(p.GetStatus()), Message: p.GetMessage()}
	for _, c := range p.GetComponents() {
		ch := sdk.ComponentHealth{Name: c.GetName(), Status: healthStatusFromProto(c.GetStatus()), Message: c.GetMessage()}
		if c.GetCheckedAt() != nil {
			ch.CheckedAt = c.GetCheckedAt().AsTime()
		}
		h.Components = append(h.Components, ch)
	}
	return h
}

// MaxHistogramBuckets is the most buckets a plugin histogram may have.
const MaxHistogramBuckets = contract.MaxHistogramBuckets

// CheckHistogram reports what makes a plugin's histogram unexportable: the
// SDK refuses to send an inconsistent one, but a host does not rely on
// every plugin's SDK. The rules are the SDK's own (one cumulative count per
// finite, strictly ascending bound, at most 64, none above Count).
func CheckHistogram(h *sdk.HistogramSnapshot) error {
	if h == nil {
		return errors.New("the histogram has no buckets")
	}
	if err := contract.CheckHistogram(h.UpperBounds, h.CumulativeCounts, h.Count); err != nil {
		return fmt.Errorf("histogram: %w", err)
	}
	return nil
}
