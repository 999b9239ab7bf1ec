package sdk

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
)

// LatencyBuckets are upper bounds, in seconds, for request latencies from
// half a millisecond to ten seconds: Prometheus' default buckets with
// 0.5 ms and 1 ms added, as local storage answers in under 5 ms.
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// maxHistogramBuckets bounds the buckets of one histogram: each is a time
// series on the host.
const maxHistogramBuckets = contract.MaxHistogramBuckets

// Histogram counts observations (latencies, sizes) into fixed buckets. It is
// safe for concurrent use, and Observe takes no lock. Report it from
// Metrics with [Histogram.Metric]; the host exports it as a Prometheus
// histogram (name_bucket{le=…}, name_sum, name_count), so operators get
// quantiles (histogram_quantile), not only averages.
type Histogram struct {
	bounds []float64
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum    atomic.Uint64   // float64 bits
}

// NewHistogram returns a histogram with the given inclusive upper bounds,
// which must be finite, strictly ascending and at most 64; it panics
// otherwise, as a wrong bucket list is a programming error. Use
// LatencyBuckets for durations in seconds.
func NewHistogram(upperBounds []float64) *Histogram {
	if len(upperBounds) == 0 || len(upperBounds) > maxHistogramBuckets {
		panic(fmt.Sprintf("sdk.NewHistogram: %d bounds, want 1 to %d", len(upperBounds), maxHistogramBuckets))
	}
	for i, b := range upperBounds {
		if math.IsNaN(b) || math.IsInf(b, 0) || (i > 0 && b <= upperBounds[i-1]) {
			panic(fmt.Sprintf("sdk.NewHistogram: bounds must be finite and strictly ascending, got %v", upperBounds))
		}
	}
	return &Histogram{bounds: slices.Clone(upperBounds), counts: make([]atomic.Uint64, len(upperBounds)+1)}
}

// Observe records one value. NaN is ignored.
func (h *Histogram) Observe(v float64) {
	if math.IsNaN(v) {
		return
	}
	i := sort.SearchFloat64s(h.bounds, v) // first bound >= v
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// ObserveSince records the seconds elapsed since start.
func (h *Histogram) ObserveSince(start time.Time) {
	h.Observe(time.Since(start).Seconds())
}

// Snapshot returns the counts so far. Observations that race with it may
// be missing from it, but its counts are always consistent (cumulative and
// Count equal to the last bucket's total).
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{
		UpperBounds:      slices.Clone(h.bounds),
		CumulativeCounts: make([]uint64, len(h.bounds)),
	}
	var total uint64
	for i := range h.counts {
		total += h.counts[i].Load()
		if i < len(h.bounds) {
			s.CumulativeCounts[i] = total
		}
	}
	s.Count = total
	s.Sum = math.Float64frombits(h.sum.Load())
	return s
}

// Metric returns a snapshot of h as a metric. labels are key, value pairs.
func (h *Histogram) Metric(name, help string, labels ...string) Metric {
	s := h.Snapshot()
	return Metric{Name: name, Help: help, Kind: KindHistogram, Histogram: &s, Labels: pairs(labels)}
}

// HistogramSnapshot is the state of a histogram at one moment, as it
// crosses the plugin connection.
type HistogramSnapshot struct {
	// UpperBounds are the buckets' inclusive upper bounds, finite and
	// strictly ascending; the +Inf bucket is implied.
	UpperBounds []float64
	// CumulativeCounts[i] counts the observations <= UpperBounds[i].
	CumulativeCounts []uint64
	// Count is the number of observations (the +Inf bucket).
	Count uint64
	// Sum is the sum of the observations.
	Sum float64
}

// check reports what makes m unexportable.
func (m Metric) check() error {
	if m.Kind != KindHistogram {
		return nil
	}
	h := m.Histogram
	if h == nil {
		return fmt.Errorf("histogram %s has no buckets", m.Name)
	}
	if err := contract.CheckHistogram(h.UpperBounds, h.CumulativeCounts, h.Count); err != nil {
		return fmt.Errorf("histogram %s: %w", m.Name, err)
	}
	return nil
}
