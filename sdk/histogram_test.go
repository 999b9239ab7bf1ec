package sdk

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// consistent fails t unless s is what Snapshot promises: one cumulative
// count per bound, never decreasing, none above Count.
func consistent(t testing.TB, s HistogramSnapshot) {
	t.Helper()
	if len(s.CumulativeCounts) != len(s.UpperBounds) {
		t.Fatalf("%d counts for %d bounds", len(s.CumulativeCounts), len(s.UpperBounds))
	}
	for i, c := range s.CumulativeCounts {
		if (i > 0 && c < s.CumulativeCounts[i-1]) || c > s.Count {
			t.Fatalf("counts %v are not cumulative up to count %d", s.CumulativeCounts, s.Count)
		}
	}
}

func TestHistogramObserve(t *testing.T) {
	h := NewHistogram([]float64{1, 2, 5})
	// A value equal to a bound falls in that bound's bucket (le is
	// inclusive); below the first bound, in the first; above the last,
	// only in +Inf.
	for _, v := range []float64{-3, 0.5, 1, 1.5, 2, 4.5, 5, 7, math.NaN(), 100} {
		h.Observe(v)
	}
	s := h.Snapshot()
	consistent(t, s)
	if want := []uint64{3, 5, 7}; !slices.Equal(s.CumulativeCounts, want) {
		t.Errorf("cumulative counts = %v, want %v", s.CumulativeCounts, want)
	}
	if s.Count != 9 {
		t.Errorf("count = %d, want 9 (NaN is ignored)", s.Count)
	}
	if want := -3 + 0.5 + 1 + 1.5 + 2 + 4.5 + 5 + 7 + 100.0; s.Sum != want {
		t.Errorf("sum = %v, want %v", s.Sum, want)
	}
	if !slices.Equal(s.UpperBounds, []float64{1, 2, 5}) {
		t.Errorf("bounds = %v", s.UpperBounds)
	}

	// +Inf is counted in the +Inf bucket and makes the sum +Inf, as in
	// Prometheus' own client.
	h.Observe(math.Inf(1))
	if s := h.Snapshot(); s.Count != 10 || s.CumulativeCounts[2] != 7 || !math.IsInf(s.Sum, 1) {
		t.Errorf("after +Inf: %+v", s)
	}
}

func TestHistogramEmpty(t *testing.T) {
	s := NewHistogram(LatencyBuckets).Snapshot()
	consistent(t, s)
	if s.Count != 0 || s.Sum != 0 || len(s.UpperBounds) != len(LatencyBuckets) {
		t.Fatalf("empty histogram: %+v", s)
	}
	for _, c := range s.CumulativeCounts {
		if c != 0 {
			t.Fatalf("empty histogram counts %v", s.CumulativeCounts)
		}
	}
}

// TestHistogramCopies checks that neither the bounds given to
// NewHistogram nor a snapshot share memory with the histogram.
func TestHistogramCopies(t *testing.T) {
	bounds := []float64{1, 2}
	h := NewHistogram(bounds)
	bounds[0] = 1.5
	h.Observe(1.2)
	s := h.Snapshot()
	if s.UpperBounds[0] != 1 || s.CumulativeCounts[0] != 0 {
		t.Fatalf("the histogram follows the caller's slice: %+v", s)
	}
	s.UpperBounds[0], s.CumulativeCounts[0] = 99, 99
	if s2 := h.Snapshot(); s2.UpperBounds[0] != 1 || s2.CumulativeCounts[0] != 0 {
		t.Fatalf("a snapshot shares memory with the histogram: %+v", s2)
	}
}

func TestHistogramObserveSince(t *testing.T) {
	h := NewHistogram(LatencyBuckets)
	h.ObserveSince(time.Now().Add(-30 * time.Millisecond))
	s := h.Snapshot()
	if s.Count != 1 || s.Sum < 0.03 || s.Sum > 10 {
		t.Fatalf("ObserveSince 30ms ago: %+v", s)
	}
	// 30 ms and more: not in the buckets up to 25 ms, in the one of 50 ms
	// unless the machine stalled.
	i := slices.Index(LatencyBuckets, 0.025)
	if s.CumulativeCounts[i] != 0 {
		t.Errorf("30 ms counted at or under 25 ms: %v", s.CumulativeCounts)
	}
}

// TestHistogramConcurrent observes from many goroutines while others take
// snapshots: every snapshot is consistent, and no observation is lost.
// Run it with -race.
func TestHistogramConcurrent(t *testing.T) {
	h := NewHistogram([]float64{0.25, 0.5, 1})
	// Sums of these values are exact in float64, so the total sum can be
	// compared exactly whatever the order of the additions.
	values := []float64{0.125, 0.5, 0.75, 2}
	const writers, perWriter = 8, 5000
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// check holds Snapshot's promises (consistent's, which
				// may not run here: it stops the test).
				s := h.Snapshot()
				m := Metric{Name: "x", Kind: KindHistogram, Histogram: &s}
				if err := m.check(); err != nil {
					t.Errorf("snapshot taken during observations fails check: %v", err)
					return
				}
			}
		}()
	}
	var writersWG sync.WaitGroup
	for w := range writers {
		writersWG.Add(1)
		go func() {
			defer writersWG.Done()
			for i := range perWriter {
				h.Observe(values[(w+i)%len(values)])
			}
		}()
	}
	writersWG.Wait()
	close(stop)
	readers.Wait()

	s := h.Snapshot()
	consistent(t, s)
	const total = writers * perWriter
	if s.Count != total {
		t.Fatalf("count = %d, want %d", s.Count, total)
	}
	per := uint64(total / len(values)) // each value observed this often
	if want := []uint64{per, 2 * per, 3 * per}; !slices.Equal(s.CumulativeCounts, want) {
		t.Errorf("cumulative counts = %v, want %v", s.CumulativeCounts, want)
	}
	if want := float64(per) * (0.125 + 0.5 + 0.75 + 2); s.Sum != want {
		t.Errorf("sum = %v, want %v", s.Sum, want)
	}
}

func TestNewHistogramPanicsOnBadBounds(t *testing.T) {
	many := make([]float64, maxHistogramBuckets+1)
	for i := range many {
		many[i] = float64(i)
	}
	for name, bounds := range map[string][]float64{
		"nil":         nil,
		"empty":       {},
		"too many":    many,
		"NaN":         {1, math.NaN(), 3},
		"+Inf":        {1, math.Inf(1)},
		"-Inf":        {math.Inf(-1), 1},
		"descending":  {2, 1},
		"equal":       {1, 1, 2},
		"not ordered": {1, 3, 2},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil {
					t.Fatalf("NewHistogram(%v) did not panic", bounds)
				}
				if msg := fmt.Sprint(r); !strings.HasPrefix(msg, "sdk.NewHistogram: ") {
					t.Errorf("panic %q does not name sdk.NewHistogram", msg)
				}
			}()
			NewHistogram(bounds)
		})
	}
	// The limits themselves are fine: one bound, 64 bounds, negative
	// bounds.
	NewHistogram([]float64{0})
	NewHistogram(many[:maxHistogramBuckets])
	NewHistogram([]float64{-10, -1, 0, 1})
}

func TestHistogramMetric(t *testing.T) {
	h := NewHistogram([]float64{0.1, 1})
	h.Observe(0.05)
	h.Observe(3)
	m := h.Metric("request_duration_seconds", "Request latency.", "operation", "get", "strategy", "primary")
	if m.Name != "request_duration_seconds" || m.Help != "Request latency." || m.Kind != KindHistogram || m.Value != 0 {
		t.Fatalf("metric = %+v", m)
	}
	if len(m.Labels) != 2 || m.Labels["operation"] != "get" || m.Labels["strategy"] != "primary" {
		t.Errorf("labels = %v", m.Labels)
	}
	if m.Histogram == nil || m.Histogram.Count != 2 || m.Histogram.Sum != 3.05 || !slices.Equal(m.Histogram.CumulativeCounts, []uint64{1, 1}) {
		t.Fatalf("histogram = %+v", m.Histogram)
	}
	if err := m.check(); err != nil {
		t.Errorf("check: %v", err)
	}
	// The metric is a snapshot: later observations do not change it.
	h.Observe(0.5)
	if m.Histogram.Count != 2 {
		t.Errorf("the metric follows the histogram: %+v", m.Histogram)
	}
}

func TestMetricCheck(t *testing.T) {
	hist := func(bounds []float64, counts []uint64, count uint64) Metric {
		return Metric{Name: "h", Kind: KindHistogram, Histogram: &HistogramSnapshot{UpperBounds: bounds, CumulativeCounts: counts, Count: count, Sum: 1}}
	}
	tooMany := make([]float64, maxHistogramBuckets+1)
	for i := range tooMany {
		tooMany[i] = float64(i)
	}
	for _, tc := range []struct {
		name   string
		metric Metric
		want   string // "" for valid
	}{
		{"gauge without histogram", Gauge("g", "", 1), ""},
		{"counter without histogram", Counter("c", "", 1), ""},
		{"valid", hist([]float64{1, 2}, []uint64{1, 3}, 4), ""},
		{"all in the last bucket", hist([]float64{1, 2}, []uint64{0, 0}, 4), ""},
		{"count equal to the last bucket", hist([]float64{1, 2}, []uint64{2, 4}, 4), ""},
		{"no buckets, only +Inf", hist(nil, nil, 3), ""},
		{"histogram kind without histogram", Metric{Name: "h", Kind: KindHistogram}, "histogram h has no buckets"},
		{"fewer counts than bounds", hist([]float64{1, 2}, []uint64{1}, 1), "2 bounds and 1 counts"},
		{"more counts than bounds", hist([]float64{1}, []uint64{1, 2}, 2), "1 bounds and 2 counts"},
		{"too many buckets", hist(tooMany, make([]uint64, len(tooMany)), 0), "at most 64"},
		{"NaN bound", hist([]float64{1, math.NaN()}, []uint64{0, 0}, 0), "finite and strictly ascending"},
		{"infinite bound", hist([]float64{1, math.Inf(1)}, []uint64{0, 0}, 0), "finite and strictly ascending"},
		{"equal bounds", hist([]float64{1, 1}, []uint64{0, 0}, 0), "finite and strictly ascending"},
		{"descending bounds", hist([]float64{2, 1}, []uint64{0, 0}, 0), "finite and strictly ascending"},
		{"counts not cumulative", hist([]float64{1, 2}, []uint64{3, 1}, 3), "counts must be cumulative"},
		{"a bucket above count", hist([]float64{1, 2}, []uint64{1, 5}, 4), "at most count 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.metric.check()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("check: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("check: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// histogramSubsystem reports the metrics its metrics field holds.
type histogramSubsystem struct {
	testSubsystem
	metrics []Metric
}

func (s *histogramSubsystem) Metrics(context.Context) (Metrics, error) {
	return Metrics{Values: s.metrics}, nil
}

// TestHistogramOverTheWire checks what GetMetrics sends for a histogram,
// and that it refuses an invalid one as a plugin bug rather than send it.
func TestHistogramOverTheWire(t *testing.T) {
	h := NewHistogram([]float64{0.1, 1})
	h.Observe(0.05)
	h.Observe(0.5)
	h.Observe(2)
	impl := &histogramSubsystem{metrics: []Metric{
		h.Metric("latency_seconds", "Latency.", "operation", "get"),
		Gauge("items", "Items.", 4),
	}}
	srv := &subsystemServer[wireLimits]{impl: impl, configured: true}
	resp, err := srv.GetMetrics(context.Background(), &dwv1.GetMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetMetrics()) != 2 {
		t.Fatalf("metrics = %v", resp.GetMetrics())
	}
	pm := resp.GetMetrics()[0]
	ph := pm.GetHistogram()
	if pm.GetKind() != dwv1.MetricKind_METRIC_KIND_HISTOGRAM || pm.GetValue() != 0 || pm.GetLabels()["operation"] != "get" ||
		!slices.Equal(ph.GetUpperBounds(), []float64{0.1, 1}) || !slices.Equal(ph.GetCumulativeCounts(), []uint64{1, 2}) ||
		ph.GetCount() != 3 || ph.GetSum() != 2.55 {
		t.Fatalf("histogram on the wire = %v", pm)
	}
	if g := resp.GetMetrics()[1]; g.GetKind() != dwv1.MetricKind_METRIC_KIND_GAUGE || g.GetHistogram() != nil || g.GetValue() != 4 {
		t.Fatalf("gauge on the wire = %v", g)
	}

	impl.metrics = append(impl.metrics, Metric{Name: "broken", Kind: KindHistogram,
		Histogram: &HistogramSnapshot{UpperBounds: []float64{1, 2}, CumulativeCounts: []uint64{2, 1}, Count: 2}})
	_, err = srv.GetMetrics(context.Background(), &dwv1.GetMetricsRequest{})
	if err == nil || status.Code(err) == codes.OK || !strings.Contains(err.Error(), "plugin bug: histogram broken") {
		t.Fatalf("GetMetrics with an invalid histogram: %v, want an error naming it", err)
	}
}
