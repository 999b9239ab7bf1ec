package api

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// allStates are the plugin states dw_plugin_state reports, each 0 or 1.
var allStates = []supervisor.State{
	supervisor.StateStarting, supervisor.StateServing, supervisor.StateRestarting,
	supervisor.StateQuarantined, supervisor.StateRefused, supervisor.StateStopping,
	supervisor.StateStopped, supervisor.StateDisabled, supervisor.StateMissing,
}

var allBackpressure = []sdk.Backpressure{sdk.BackpressureNone, sdk.BackpressureElevated, sdk.BackpressureSaturated}

// Host metric descriptions. Their names are reserved: a plugin metric that
// would be exported under one of them is dropped.
var (
	descUp = prometheus.NewDesc("dw_plugin_up",
		"1 when the plugin is serving, else 0.", []string{"plugin"}, nil)
	descRestarts = prometheus.NewDesc("dw_plugin_restarts_total",
		"Restarts of the plugin since the host started.", []string{"plugin"}, nil)
	descState = prometheus.NewDesc("dw_plugin_state",
		"1 for the plugin's current state, 0 for the others.", []string{"plugin", "state"}, nil)
	descBackpressure = prometheus.NewDesc("dw_plugin_backpressure",
		"Backpressure the plugin reports: 0 none, 1 elevated, 2 saturated.", []string{"plugin"}, nil)
	descBackpressureState = prometheus.NewDesc("dw_plugin_backpressure_state",
		"1 for the plugin's current backpressure state, 0 for the others.", []string{"plugin", "state"}, nil)
	descScrapeErrors = prometheus.NewDesc("dw_plugin_scrape_errors_total",
		"Scrapes in which the plugin's metrics could not be fetched (error or timeout).", []string{"plugin"}, nil)
	descScrapeDuration = prometheus.NewDesc("dw_plugin_scrape_duration_seconds",
		"How long fetching the plugin's metrics took in the last scrape.", []string{"plugin"}, nil)
	descDropped = prometheus.NewDesc("dw_plugin_metrics_dropped",
		"Plugin metrics left out of the last scrape: invalid names or histograms, or colliding with another metric by name, labels or kind.", []string{"plugin"}, nil)
)

var reservedNames = map[string]bool{
	"dw_plugin_up": true, "dw_plugin_restarts_total": true, "dw_plugin_state": true,
	"dw_plugin_backpressure": true, "dw_plugin_backpressure_state": true,
	"dw_plugin_scrape_errors_total": true, "dw_plugin_scrape_duration_seconds": true,
	"dw_plugin_metrics_dropped": true, "dw_build_info": true,
	"dw_http_request_duration_seconds": true, "dw_http_request_duration_seconds_bucket": true,
	"dw_http_request_duration_seconds_sum": true, "dw_http_request_duration_seconds_count": true,
}

// newBuildInfo returns dw_build_info{version,sdk_version,go_version} 1.
func newBuildInfo(version string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dw_build_info",
		Help: "Always 1; the labels say which dw host this is.",
		ConstLabels: prometheus.Labels{
			"version":     version,
			"sdk_version": sdk.Version,
			"go_version":  runtime.Version(),
		},
	})
	g.Set(1)
	return g
}

// pluginCollector exports the plugins' states and, fetched at scrape time
// and in parallel, every serving plugin's own metrics. It is an unchecked
// collector: what it exports depends on the plugins.
type pluginCollector struct {
	plugins Plugins
	timeout time.Duration
	logger  hclog.Logger
	// fetch gets a plugin's metrics; tests replace it.
	fetch func(ctx context.Context, name string) (sdk.Metrics, error)

	mu           sync.Mutex
	scrapeErrors map[string]float64
	warned       map[string]bool // plugin + metric already logged as dropped
}

var _ prometheus.Collector = (*pluginCollector)(nil)

// maxWarned bounds the memory of which dropped metrics were logged.
const maxWarned = 1000

func newPluginCollector(plugins Plugins, timeout time.Duration, logger hclog.Logger) *pluginCollector {
	c := &pluginCollector{plugins: plugins, timeout: timeout, logger: logger,
		scrapeErrors: make(map[string]float64), warned: make(map[string]bool)}
	c.fetch = func(ctx context.Context, name string) (sdk.Metrics, error) {
		client, err := plugins.Client(name)
		if err != nil {
			return sdk.Metrics{}, err
		}
		return client.Metrics(ctx)
	}
	return c
}

// Describe describes nothing: the collector is unchecked.
func (c *pluginCollector) Describe(chan<- *prometheus.Desc) {}

type scrapeResult struct {
	metrics  sdk.Metrics
	err      error
	duration time.Duration
}

// Collect exports the host's view of every plugin, then fetches every
// serving plugin's metrics in parallel, each bounded by the scrape timeout.
// A plugin that fails or is slow is counted in dw_plugin_scrape_errors_total
// and left out; it never fails the scrape.
func (c *pluginCollector) Collect(ch chan<- prometheus.Metric) {
	statuses := c.plugins.Statuses()
	var serving []string
	for _, st := range statuses {
		up := 0.0
		if st.State == supervisor.StateServing {
			up = 1
			serving = append(serving, st.Name)
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, st.Name)
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(st.Restarts), st.Name)
		states := allStates
		if !slices.Contains(states, st.State) {
			states = append(slices.Clip(states), st.State)
		}
		for _, s := range states {
			v := 0.0
			if s == st.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, st.Name, string(s))
		}
	}

	results := make([]scrapeResult, len(serving))
	var wg sync.WaitGroup
	for i, name := range serving {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			defer cancel()
			start := time.Now()
			m, err := c.fetch(ctx, name)
			results[i] = scrapeResult{metrics: m, err: err, duration: time.Since(start)}
		})
	}
	wg.Wait()

	e := newExporter(ch)
	c.mu.Lock()
	for i, name := range serving {
		res := results[i]
		if res.err != nil {
			c.scrapeErrors[name]++
			c.logger.Warn("scrape plugin metrics", "plugin", name, "error", res.err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(descScrapeDuration, prometheus.GaugeValue, res.duration.Seconds(), name)
		bp := res.metrics.Backpressure
		ch <- prometheus.MustNewConstMetric(descBackpressure, prometheus.GaugeValue, float64(bp), name)
		for _, b := range allBackpressure {
			v := 0.0
			if b == bp {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descBackpressureState, prometheus.GaugeValue, v, name, b.String())
		}
		dropped := e.export(name, res.metrics.Values)
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.GaugeValue, float64(len(dropped)), name)
		for _, d := range dropped {
			key := name + "\x00" + d.metric
			if c.warned[key] || len(c.warned) >= maxWarned {
				continue
			}
			c.warned[key] = true
			c.logger.Warn("plugin metric left out of /metrics (logged once)", "plugin", name, "metric", d.metric, "reason", d.reason)
		}
	}
	for _, st := range statuses {
		if _, ok := c.scrapeErrors[st.Name]; !ok {
			c.scrapeErrors[st.Name] = 0
		}
	}
	for name, n := range c.scrapeErrors {
		ch <- prometheus.MustNewConstMetric(descScrapeErrors, prometheus.CounterValue, n, name)
	}
	c.mu.Unlock()
}

// family is what one exported metric name is already bound to in a scrape.
type family struct {
	kind sdk.MetricKind
	help string
}

// exporter turns plugin metrics into Prometheus metrics for one scrape,
// keeping the output consistent: one kind and help per name, no two metrics
// with the same name and labels, no host metric names, no metric named as
// a histogram's series (x_bucket, x_sum, x_count of histogram x).
type exporter struct {
	ch       chan<- prometheus.Metric
	families map[string]family
	seen     map[string]bool
}

type droppedMetric struct {
	metric string
	reason string
}

func newExporter(ch chan<- prometheus.Metric) *exporter {
	return &exporter{ch: ch, families: make(map[string]family), seen: make(map[string]bool)}
}

// export sends the plugin's metrics as dw_<plugin>_<metric> and returns
// the ones it left out and why. Histograms become classic Prometheus
// histograms: dw_<plugin>_<metric>_bucket{le=…}, _sum and _count; an
// inconsistent one (which sdk 6.1 never sends) is left out, never passed
// on.
func (e *exporter) export(plugin string, values []sdk.Metric) []droppedMetric {
	var dropped []droppedMetric
	prefix := "dw_" + sanitizeName(plugin) + "_"
	for _, v := range values {
		if v.Name == "" {
			dropped = append(dropped, droppedMetric{"(empty)", "the metric has no name"})
			continue
		}
		name := prefix + sanitizeName(v.Name)
		if reservedNames[name] {
			dropped = append(dropped, droppedMetric{v.Name, "exported as " + name + ", which is a host metric"})
			continue
		}
		help := strings.ToValidUTF8(v.Help, "\uFFFD")
		if help == "" {
			help = fmt.Sprintf("Metric %s of plugin %s.", v.Name, plugin)
		}
		fam, ok := e.families[name]
		if !ok {
			if reason := e.collision(name, v.Kind); reason != "" {
				dropped = append(dropped, droppedMetric{v.Name, reason})
				continue
			}
			fam = family{kind: v.Kind, help: help}
			e.families[name] = fam
		} else if fam.kind != v.Kind {
			dropped = append(dropped, droppedMetric{v.Name, fmt.Sprintf("exported as %s, which is already a %s", name, kindName(fam.kind))})
			continue
		}

		keys := make([]string, 0, len(v.Labels))
		for k := range v.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		labelNames := make([]string, 0, len(v.Labels))
		labelValues := make(map[string]string, len(v.Labels))
		for _, k := range keys {
			val := v.Labels[k]
			ln := sanitizeLabel(k)
			if ln == "" {
				continue
			}
			if ln == "le" && v.Kind == sdk.KindHistogram {
				ln = "label_le" // le names a histogram's buckets
			}
			if _, dup := labelValues[ln]; dup {
				// Two labels sanitized to one name: the first key in
				// sorted order wins, for a stable result.
				continue
			}
			labelNames = append(labelNames, ln)
			labelValues[ln] = strings.ToValidUTF8(val, "\uFFFD")
		}
		slices.Sort(labelNames)
		values := make([]string, len(labelNames))
		var key strings.Builder
		key.WriteString(name)
		for i, ln := range labelNames {
			values[i] = labelValues[ln]
			key.WriteString("\xff" + ln + "\xfe" + values[i])
		}
		if e.seen[key.String()] {
			dropped = append(dropped, droppedMetric{v.Name, "exported as " + name + " with the same labels as another metric"})
			continue
		}
		desc := prometheus.NewDesc(name, fam.help, labelNames, nil)
		m, err := constMetric(desc, v, values)
		if err != nil {
			dropped = append(dropped, droppedMetric{v.Name, err.Error()})
			continue
		}
		e.seen[key.String()] = true
		e.ch <- m
	}
	return dropped
}

// constMetric is v as a Prometheus metric of desc with the label values
// given, or an error when v cannot be exported.
func constMetric(desc *prometheus.Desc, v sdk.Metric, labelValues []string) (prometheus.Metric, error) {
	switch v.Kind {
	case sdk.KindCounter:
		return prometheus.NewConstMetric(desc, prometheus.CounterValue, v.Value, labelValues...)
	case sdk.KindHistogram:
		buckets, err := histogramBuckets(v.Histogram)
		if err != nil {
			return nil, err
		}
		return prometheus.NewConstHistogram(desc, v.Histogram.Count, v.Histogram.Sum, buckets, labelValues...)
	}
	return prometheus.NewConstMetric(desc, prometheus.GaugeValue, v.Value, labelValues...)
}

// histogramBuckets returns a plugin histogram's buckets as client_golang
// takes them (upper bound → cumulative count; the +Inf bucket is Count),
// after pluginhost.CheckHistogram found it consistent.
func histogramBuckets(h *sdk.HistogramSnapshot) (map[float64]uint64, error) {
	if err := pluginhost.CheckHistogram(h); err != nil {
		return nil, err
	}
	buckets := make(map[float64]uint64, len(h.UpperBounds))
	for i, b := range h.UpperBounds {
		buckets[b] = h.CumulativeCounts[i]
	}
	return buckets, nil
}

// histogramSuffixes name the series of a histogram besides its buckets'
// le label: name_bucket, name_sum and name_count.
var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// collision says why a new metric name of kind k cannot be exported
// beside the histograms of the scrape (Prometheus refuses a scrape in
// which x_count is both a series of histogram x and a metric of its own),
// or "" when nothing collides.
func (e *exporter) collision(name string, k sdk.MetricKind) string {
	for _, suffix := range histogramSuffixes {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f, ok := e.families[base]; ok && f.kind == sdk.KindHistogram {
				return fmt.Sprintf("exported as %s, which is a series of histogram %s", name, base)
			}
		}
		if k != sdk.KindHistogram {
			continue
		}
		series := name + suffix
		if reservedNames[series] {
			return fmt.Sprintf("exported as histogram %s, whose series %s is a host metric", name, series)
		}
		if f, ok := e.families[series]; ok {
			return fmt.Sprintf("exported as histogram %s, whose series %s is already a %s", name, series, kindName(f.kind))
		}
	}
	return ""
}

// sanitizeName maps s onto the Prometheus metric name charset after a
// prefix: letters, digits and '_'; anything else becomes '_'.
func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// sanitizeLabel maps s onto a valid label name, or "" if nothing is left.
// Names starting with "__" are reserved by Prometheus and get a "label"
// prefix.
func sanitizeLabel(s string) string {
	if s == "" {
		return ""
	}
	n := sanitizeName(s)
	if n[0] >= '0' && n[0] <= '9' {
		n = "_" + n
	}
	if strings.HasPrefix(n, "__") {
		n = "label" + n
	}
	return n
}
