package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// gathered flattens a registry into "name{l="v",...} value" lines, sorted.
func gathered(t testing.TB, reg prometheus.Gatherer) []string {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather failed: %v", err)
	}
	var out []string
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out = append(out, fmt.Sprintf("%s{%s} %v", f.GetName(), strings.Join(labels, ","), v))
		}
	}
	sort.Strings(out)
	return out
}

func has(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func hasPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestPluginCollector(t *testing.T) {
	statuses := []supervisor.Status{
		{Name: "a", State: supervisor.StateServing},
		{Name: "alpha", State: supervisor.StateServing, Restarts: 2},
		{Name: "a-b", State: supervisor.StateServing},
		{Name: "broken", State: supervisor.StateServing},
		{Name: "slow", State: supervisor.StateServing},
		{Name: "down", State: supervisor.StateRestarting, Restarts: 5},
		{Name: "plugin", State: supervisor.StateServing},
	}
	p := &fakePlugins{StatusesFunc: func() []supervisor.Status { return statuses }}
	c := newPluginCollector(p, 50*time.Millisecond, hclog.NewNullLogger())
	var mu sync.Mutex
	var names []string
	c.fetch = func(ctx context.Context, name string) (sdk.Metrics, error) {
		mu.Lock()
		names = append(names, name)
		mu.Unlock()
		switch name {
		case "alpha":
			return sdk.Metrics{Backpressure: sdk.BackpressureElevated, Reason: "busy", Values: []sdk.Metric{
				sdk.Gauge("queue-depth", "Depth.", 3, "class", "fast"),
				sdk.Gauge("queue-depth", "Depth.", 4, "class", "slow"),
				sdk.Gauge("queue_depth", "Other help.", 99, "class", "fast"), // same after sanitizing
				sdk.Counter("queue_depth", "Depth.", 1, "class", "x"),        // other kind
				sdk.Counter("ops_total", "", 10),
				sdk.Gauge("weird", "bad\xffhelp", math.NaN(), "9lives", "v\xff", "__reserved", "r", "a.b", "1", "a_b", "2"),
				sdk.Gauge("", "no name", 1),
			}}, nil
		case "a":
			// dw_a_b_x, as plugin a-b's x: the first plugin in order wins.
			return sdk.Metrics{Values: []sdk.Metric{sdk.Gauge("b_x", "B x.", 2)}}, nil
		case "a-b":
			return sdk.Metrics{Values: []sdk.Metric{sdk.Gauge("x", "X.", 1)}}, nil
		case "broken":
			return sdk.Metrics{}, fmt.Errorf("get metrics: %w", sdk.ErrPluginShutdown)
		case "slow":
			<-ctx.Done()
			return sdk.Metrics{}, ctx.Err()
		case "plugin":
			// dw_plugin_up is the host's.
			return sdk.Metrics{Values: []sdk.Metric{sdk.Gauge("up", "fake", 1), sdk.Gauge("fine", "ok", 1)}}, nil
		}
		return sdk.Metrics{}, errors.New("unexpected plugin " + name)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)

	lines := gathered(t, reg)
	mu.Lock()
	sort.Strings(names)
	mu.Unlock()
	if fmt.Sprint(names) != "[a a-b alpha broken plugin slow]" {
		t.Errorf("fetched %v; want only serving plugins", names)
	}

	for _, want := range []string{
		`dw_plugin_up{plugin="alpha"} 1`,
		`dw_plugin_up{plugin="down"} 0`,
		`dw_plugin_restarts_total{plugin="down"} 5`,
		`dw_plugin_state{plugin="down",state="restarting"} 1`,
		`dw_plugin_state{plugin="down",state="serving"} 0`,
		`dw_plugin_state{plugin="alpha",state="serving"} 1`,
		`dw_plugin_backpressure{plugin="alpha"} 1`,
		`dw_plugin_backpressure_state{plugin="alpha",state="elevated"} 1`,
		`dw_plugin_backpressure_state{plugin="alpha",state="none"} 0`,
		`dw_plugin_backpressure{plugin="a-b"} 0`,
		`dw_alpha_queue_depth{class="fast"} 3`,
		`dw_alpha_queue_depth{class="slow"} 4`,
		`dw_alpha_ops_total{} 10`,
		`dw_a_b_x{} 2`,
		`dw_plugin_metrics_dropped{plugin="a-b"} 1`,
		`dw_plugin_fine{} 1`,
		`dw_plugin_scrape_errors_total{plugin="broken"} 1`,
		`dw_plugin_scrape_errors_total{plugin="slow"} 1`,
		`dw_plugin_scrape_errors_total{plugin="alpha"} 0`,
		`dw_plugin_scrape_errors_total{plugin="down"} 0`,
		`dw_plugin_metrics_dropped{plugin="alpha"} 3`,
		`dw_plugin_metrics_dropped{plugin="plugin"} 1`,
	} {
		if !has(lines, want) {
			t.Errorf("missing %s in\n%s", want, strings.Join(lines, "\n"))
		}
	}
	for _, unwanted := range []string{
		`dw_alpha_queue_depth{class="fast"} 99`,
		`dw_alpha_queue_depth{class="x"}`,
		`dw_plugin_up{}`,
		`dw_broken_`,
		`dw_slow_`,
		`dw_plugin_backpressure{plugin="broken"}`,
	} {
		if hasPrefix(lines, unwanted) {
			t.Errorf("unexpected %s", unwanted)
		}
	}
	// Labels sanitized: 9lives → _9lives, __reserved → label__reserved,
	// a.b and a_b collide (a.b sorts first and wins).
	if !hasPrefix(lines, `dw_alpha_weird{_9lives="v`+"\uFFFD"+`",a_b="1",label__reserved="r"} NaN`) {
		t.Errorf("sanitized labels wrong:\n%s", strings.Join(lines, "\n"))
	}

	// Errors accumulate over scrapes.
	lines = gathered(t, reg)
	if !has(lines, `dw_plugin_scrape_errors_total{plugin="broken"} 2`) {
		t.Errorf("second scrape: %v", lines)
	}
}

func TestMetricsEndpointServesEverything(t *testing.T) {
	p := &fakePlugins{StatusesFunc: func() []supervisor.Status {
		return []supervisor.Status{{Name: "down", State: supervisor.StateQuarantined}}
	}}
	s, _ := newTestServer(t, p, nil)
	do(t, s.Handler(), "GET", "/healthz", "", "")
	r := do(t, s.Handler(), "GET", "/metrics", "", "")
	if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %s", r.code, r.header.Get("Content-Type"))
	}
	for _, want := range []string{
		`dw_build_info{go_version="`,
		`sdk_version="` + sdk.Version + `",version="1.2.3"} 1`,
		`dw_plugin_state{plugin="down",state="quarantined"} 1`,
		`dw_http_request_duration_seconds_count{code="200",route="GET /healthz"} 1`,
		"# TYPE dw_plugin_restarts_total counter",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, r.body)
		}
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{"a-b.c d": "a_b_c_d", "ok_1": "ok_1", "é": "_"} {
		if got := sanitizeName(in); got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"": "", "1x": "_1x", "__x": "label__x", "a-b": "a_b", "_x": "_x"} {
		if got := sanitizeLabel(in); got != want {
			t.Errorf("sanitizeLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJSONFloat(t *testing.T) {
	for v, want := range map[float64]string{1.5: "1.5", math.Inf(1): `"+Inf"`, math.Inf(-1): `"-Inf"`, 0: "0"} {
		b, err := jsonFloat(v).MarshalJSON()
		if err != nil || string(b) != want {
			t.Errorf("%v: %s %v", v, b, err)
		}
	}
	if b, _ := jsonFloat(math.NaN()).MarshalJSON(); string(b) != `"NaN"` {
		t.Errorf("NaN: %s", b)
	}
}

// hist is a histogram metric with the given snapshot.
func hist(name string, h *sdk.HistogramSnapshot, labels ...string) sdk.Metric {
	m := sdk.Gauge(name, "Latency of "+name+".", 0, labels...)
	m.Kind, m.Histogram = sdk.KindHistogram, h
	return m
}

func TestPluginCollectorHistograms(t *testing.T) {
	good := sdk.NewHistogram([]float64{0.1, 1})
	for _, v := range []float64{0.05, 0.5, 0.5, 3} {
		good.Observe(v)
	}
	p := &fakePlugins{StatusesFunc: func() []supervisor.Status {
		return []supervisor.Status{{Name: "db", State: supervisor.StateServing}}
	}}
	c := newPluginCollector(p, time.Second, hclog.NewNullLogger())
	c.fetch = func(context.Context, string) (sdk.Metrics, error) {
		return sdk.Metrics{Values: []sdk.Metric{
			good.Metric("latency_seconds", "Latency.", "operation", "get"),
			sdk.NewHistogram([]float64{0.1, 1}).Metric("latency_seconds", "Latency.", "operation", "put"),
			// le names the buckets: a plugin's own le label is renamed.
			good.Metric("sizes", "Sizes.", "le", "x"),
			// Inconsistent histograms (sdk 6.1 refuses to send them) are
			// left out; the others stay.
			hist("bad_counts", &sdk.HistogramSnapshot{UpperBounds: []float64{1, 2}, CumulativeCounts: []uint64{3, 1}, Count: 3}),
			hist("bad_count", &sdk.HistogramSnapshot{UpperBounds: []float64{1}, CumulativeCounts: []uint64{5}, Count: 4}),
			hist("bad_bounds", &sdk.HistogramSnapshot{UpperBounds: []float64{2, math.NaN()}, CumulativeCounts: []uint64{0, 0}}),
			hist("bad_lengths", &sdk.HistogramSnapshot{UpperBounds: []float64{1, 2}, CumulativeCounts: []uint64{1}, Count: 1}),
			hist("no_snapshot", nil),
			// Names that collide with a histogram's series.
			sdk.Gauge("latency_seconds_count", "Other.", 1),
			sdk.Counter("latency_seconds_bucket", "Other.", 1),
			sdk.Gauge("queue_sum", "A gauge first.", 2),
			hist("queue", &sdk.HistogramSnapshot{}),
			sdk.Counter("latency_seconds", "Same name, other kind.", 1, "operation", "stat"),
		}}, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}

	f := byName["dw_db_latency_seconds"]
	if f.GetType() != dto.MetricType_HISTOGRAM || f.GetHelp() != "Latency." || len(f.GetMetric()) != 2 {
		t.Fatalf("dw_db_latency_seconds = %v", f)
	}
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		var got []string
		for _, b := range h.GetBucket() {
			got = append(got, fmt.Sprintf("%g:%d", b.GetUpperBound(), b.GetCumulativeCount()))
		}
		switch op := m.GetLabel()[0].GetValue(); op {
		case "get":
			if fmt.Sprint(got) != "[0.1:1 1:3]" || h.GetSampleCount() != 4 || h.GetSampleSum() != 4.05 {
				t.Errorf("get: buckets %v, count %d, sum %v", got, h.GetSampleCount(), h.GetSampleSum())
			}
		case "put":
			if fmt.Sprint(got) != "[0.1:0 1:0]" || h.GetSampleCount() != 0 {
				t.Errorf("put: buckets %v, count %d", got, h.GetSampleCount())
			}
		default:
			t.Errorf("unexpected operation %q", op)
		}
	}
	if l := byName["dw_db_sizes"].GetMetric()[0].GetLabel(); len(l) != 1 || l[0].GetName() != "label_le" || l[0].GetValue() != "x" {
		t.Errorf("dw_db_sizes labels = %v", l)
	}
	if byName["dw_db_queue_sum"].GetType() != dto.MetricType_GAUGE {
		t.Errorf("dw_db_queue_sum = %v", byName["dw_db_queue_sum"])
	}
	for _, name := range []string{"dw_db_bad_counts", "dw_db_bad_count", "dw_db_bad_bounds", "dw_db_bad_lengths", "dw_db_no_snapshot",
		"dw_db_latency_seconds_count", "dw_db_latency_seconds_bucket", "dw_db_queue"} {
		if byName[name] != nil {
			t.Errorf("%s exported: %v", name, byName[name])
		}
	}
	if d := byName["dw_plugin_metrics_dropped"].GetMetric()[0].GetGauge().GetValue(); d != 9 {
		t.Errorf("dw_plugin_metrics_dropped = %v, want 9", d)
	}

	// The text format has the classic series, +Inf being the count.
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		"# TYPE dw_db_latency_seconds histogram",
		`dw_db_latency_seconds_bucket{operation="get",le="0.1"} 1`,
		`dw_db_latency_seconds_bucket{operation="get",le="1"} 3`,
		`dw_db_latency_seconds_bucket{operation="get",le="+Inf"} 4`,
		`dw_db_latency_seconds_sum{operation="get"} 4.05`,
		`dw_db_latency_seconds_count{operation="get"} 4`,
		`dw_db_latency_seconds_count{operation="put"} 0`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, rec.Body.String())
		}
	}
}

func TestHistogramBuckets(t *testing.T) {
	b, err := histogramBuckets(&sdk.HistogramSnapshot{UpperBounds: []float64{-1, 0.5}, CumulativeCounts: []uint64{2, 2}, Count: 7})
	if err != nil || len(b) != 2 || b[-1] != 2 || b[0.5] != 2 {
		t.Fatalf("buckets = %v, %v", b, err)
	}
	if b, err := histogramBuckets(&sdk.HistogramSnapshot{Count: 3}); err != nil || len(b) != 0 {
		t.Fatalf("only +Inf: %v, %v", b, err)
	}
	many := make([]float64, pluginhost.MaxHistogramBuckets+1)
	for i := range many {
		many[i] = float64(i)
	}
	for name, h := range map[string]*sdk.HistogramSnapshot{
		"nil":             nil,
		"lengths":         {UpperBounds: []float64{1}, CumulativeCounts: nil},
		"too many":        {UpperBounds: many, CumulativeCounts: make([]uint64, len(many))},
		"+Inf bound":      {UpperBounds: []float64{math.Inf(1)}, CumulativeCounts: []uint64{0}},
		"equal bounds":    {UpperBounds: []float64{1, 1}, CumulativeCounts: []uint64{0, 0}},
		"not cumulative":  {UpperBounds: []float64{1, 2}, CumulativeCounts: []uint64{2, 1}, Count: 2},
		"above the count": {UpperBounds: []float64{1}, CumulativeCounts: []uint64{2}, Count: 1},
	} {
		if _, err := histogramBuckets(h); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestHistogramJSONSaysWhyItIsDropped: the JSON view shows an inconsistent
// histogram with the reason /metrics leaves it out, and a good one without.
func TestHistogramJSONSaysWhyItIsDropped(t *testing.T) {
	bad := toHistogramJSON(&sdk.HistogramSnapshot{UpperBounds: []float64{1, 2}, CumulativeCounts: []uint64{2, 1}, Count: 2})
	if bad == nil || !strings.Contains(bad.Problem, "cumulative") {
		t.Fatalf("inconsistent histogram: %+v", bad)
	}
	good := toHistogramJSON(&sdk.HistogramSnapshot{UpperBounds: []float64{1, 2}, CumulativeCounts: []uint64{1, 2}, Count: 3})
	if good == nil || good.Problem != "" {
		t.Fatalf("consistent histogram: %+v", good)
	}
}
