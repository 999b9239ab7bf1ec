package sdktest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// run is the state of one Check.
type run struct {
	ctx    context.Context
	path   string
	opts   Options
	report Report

	proc       *started // the plugin process of the first eight checks
	stopped    bool
	info       *pluginhost.Info // nil until GetInfo answered
	configured bool
	tmp        tempDir

	stderrShown int64 // how much of the plugin's stderr a detail showed

	// crashedIn names the check during which the plugin process died, and
	// crash says how; the later checks are skipped.
	crashedIn, crash string

	valid   []candidate // normalized Options.ValidLimits
	invalid []candidate // generated and Options.InvalidLimits
}

// candidate is one set of limits to try.
type candidate struct {
	limits map[string]any
	// why says what is wrong with an invalid candidate.
	why string
	// path is the key path the rejection must name.
	path string
	// leaf is the value at path, when the candidate probes one key.
	leaf    any
	hasLeaf bool
}

// String names the key and the value for a probe of one key
// ("limits.rate = 0 (below its minimum 1)"), else shows the limits.
func (c candidate) String() string {
	s := jsonText(c.limits)
	if c.hasLeaf {
		s = c.path + " = " + jsonText(c.leaf)
	}
	if c.why != "" {
		s += " (" + c.why + ")"
	}
	return s
}

// cleanup makes sure nothing the run started outlives it.
func (r *run) cleanup() {
	if r.proc != nil && !r.stopped {
		_, _, _ = r.proc.stop(r.opts.ShutdownWithin)
	}
	_ = os.RemoveAll(r.tmp.root)
}

// stderr returns the last lines of the plugin's stderr for a detail, or ""
// when the plugin wrote nothing since a detail last showed them.
func (r *run) stderr() string {
	if r.proc == nil {
		return ""
	}
	n := r.proc.stderr.written()
	if n == r.stderrShown {
		return ""
	}
	r.stderrShown = n
	return r.proc.stderr.section()
}

// rpcError explains an error of a ScalableSubsystem call.
func rpcError(err error) string {
	if errors.Is(err, sdk.ErrUnimplemented) {
		return fmt.Sprintf("%v (the plugin does not serve dw.sdk.v1.ScalableSubsystem or this method: is it built on sdk.Serve?)", err)
	}
	return err.Error()
}

// namesPath reports whether a rejection names the key path (or a path
// under it, for a path ending in "."): among its field problems, which a
// plugin of sdk 6.1 sends, or in its message.
func namesPath(err error, path string) bool {
	var de *sdk.DecodeError
	if errors.As(err, &de) {
		for _, p := range de.Problems {
			if p.Path == path || strings.HasSuffix(path, ".") && strings.HasPrefix(p.Path, path) {
				return true
			}
		}
	}
	return strings.Contains(err.Error(), path)
}

// client returns the sdk client, or a skip outcome when there is none.
func (r *run) client() (*pluginhost.Client, *outcome) {
	if r.proc == nil || r.proc.sdk == nil {
		o := skip("no connection to the plugin (see %s)", CheckHandshake)
		return nil, &o
	}
	if r.stopped {
		o := skip("the plugin was stopped")
		return nil, &o
	}
	return r.proc.sdk, nil
}

func (r *run) handshake() outcome {
	s, err := launch(r.path, r.tmp.sockets, r.opts.StartTimeout)
	r.proc = s
	if err != nil {
		return fail("%v%s", err, r.stderr())
	}
	if v := s.client.NegotiatedVersion(); v != pluginhost.ProtocolVersion {
		return fail("negotiated go-plugin protocol version %d, want %d (sdk %s)", v, pluginhost.ProtocolVersion, sdk.Version)
	}
	r.report.ProtocolVersion = s.client.NegotiatedVersion()
	return pass("protocol version %d over gRPC with AutoMTLS; pid %d", r.report.ProtocolVersion, s.pid())
}

var reSubsystemName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func (r *run) getInfo() outcome {
	c, o := r.client()
	if o != nil {
		return *o
	}
	ctx, cancel := r.callCtx()
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil {
		return fail("GetInfo: %s%s", rpcError(err), r.stderr())
	}
	r.info = &info
	r.report.Info = info
	if r.report.Plugin == "" {
		r.report.Plugin = info.Name
	}

	var problems, warnings []string
	if info.Name == "" {
		problems = append(problems, "name is empty: report the subsystem the plugin implements (sdk.Info.Name)")
	}
	if info.Version == "" {
		problems = append(problems, "version is empty: report the plugin's own version, e.g. \"1.2.0\" (sdk.Info.Version)")
	}
	switch {
	case info.SDKVersion == "":
		problems = append(problems, "sdk_version is empty")
	default:
		if _, err := pluginhost.ParseSemVer(info.SDKVersion); err != nil {
			problems = append(problems, fmt.Sprintf("sdk_version: %v", err))
		} else if err := pluginhost.Compatible(sdk.Version, info.SDKVersion); err != nil {
			problems = append(problems, fmt.Sprintf("a host with sdk %s refuses this plugin: %v", sdk.Version, err))
		}
	}
	if info.DefaultLimits == nil {
		problems = append(problems, "default_limits is missing")
	}
	base := filepath.Base(r.path)
	switch want := subsystemFromBinary(r.path); {
	case want == "":
		warnings = append(warnings, fmt.Sprintf("warning: the binary is named %q; the host loads only binaries named %s<subsystem>, e.g. %s%s", base, binaryPrefix, binaryPrefix, info.Name))
	case info.Name != "" && info.Name != want:
		warnings = append(warnings, fmt.Sprintf("warning: the binary %s is loaded as subsystem %q, but the plugin says its name is %q", base, want, info.Name))
	}
	if info.Name != "" && !reSubsystemName.MatchString(info.Name) {
		warnings = append(warnings, fmt.Sprintf("warning: name %q is not snake_case; metric names are built from it (dw_<name>_<metric>)", info.Name))
	}
	if len(problems) > 0 {
		return fail("%s", strings.Join(append(problems, warnings...), "\n"))
	}
	summary := fmt.Sprintf("%s %s built with sdk %s", info.Name, info.Version, info.SDKVersion)
	if len(info.Services) > 0 {
		summary += "; services " + strings.Join(info.Services, ", ")
	}
	return pass("%s", strings.Join(append([]string{summary}, warnings...), "\n"))
}

func (r *run) configure() outcome {
	c, o := r.client()
	if o != nil {
		return *o
	}
	settings, err := normalize(r.opts.Settings)
	if err != nil {
		return fail("Options.Settings cannot be sent as JSON-like values: %v", err)
	}
	dir := r.tmp.data
	name := r.report.Plugin
	ctx, cancel := r.callCtx()
	defer cancel()
	_, err = c.Configure(ctx, sdk.Config{
		Subsystem:   name,
		Settings:    settings,
		DataDir:     dir,
		HostVersion: hostVersion,
		KV:          NewMemKV(),
	}, nil, 0)
	if err != nil {
		return fail("Configure(subsystem %q, settings %s): %s%s", name, jsonText(settings), rpcError(err), r.stderr())
	}
	r.configured = true
	limits, gen, err := c.Limits(ctx)
	if err != nil {
		return fail("GetLimits after Configure: %v", err)
	}
	if r.info != nil && !reflect.DeepEqual(limits, r.info.DefaultLimits) {
		return fail("after Configure the limits in force are %s (generation %d), want the defaults from GetInfo %s", jsonText(limits), gen, jsonText(r.info.DefaultLimits))
	}
	return pass("settings %s accepted, with a temporary data folder and an in-memory host KV; default limits in force: %s", jsonText(settings), jsonText(limits))
}

// prepareCandidates normalizes the valid candidates and builds the invalid
// ones. It returns problems with the options.
func (r *run) prepareCandidates() []string {
	var problems []string
	r.valid, r.invalid = nil, nil
	for i, l := range r.opts.ValidLimits {
		n, err := normalize(l)
		if err != nil {
			problems = append(problems, fmt.Sprintf("Options.ValidLimits[%d] cannot be sent as JSON-like values: %v", i, err))
			continue
		}
		r.valid = append(r.valid, candidate{limits: n})
	}
	var defaults map[string]any
	if r.info != nil {
		defaults = r.info.DefaultLimits
	}
	r.invalid = generateInvalid(defaults)
	if r.info != nil {
		// The edges of every limit the plugin's schema describes.
		r.invalid = append(r.invalid, schemaProbes(r.info.Schema)...)
	}
	for i, l := range r.opts.InvalidLimits {
		n, err := normalize(l)
		if err != nil {
			problems = append(problems, fmt.Sprintf("Options.InvalidLimits[%d] cannot be sent as JSON-like values: %v", i, err))
			continue
		}
		r.invalid = append(r.invalid, candidate{limits: n, why: fmt.Sprintf("Options.InvalidLimits[%d]", i), path: "limits."})
	}
	return problems
}

// unknownKey is the key the generated unknown-key candidate uses.
const unknownKey = "sdktest_no_such_limit"

// maxGenerated bounds the wrong-type candidates generated from the defaults.
const maxGenerated = 200

// generateInvalid builds invalid candidates from the default limits: an
// unknown key, and a value of the wrong type for every key whose path can
// be named plainly (nested objects included, lists as a whole).
func generateInvalid(defaults map[string]any) []candidate {
	out := []candidate{{
		limits:  map[string]any{unknownKey: 1},
		why:     "an unknown key",
		path:    "limits." + unknownKey,
		leaf:    1,
		hasLeaf: true,
	}}
	var walk func(m map[string]any, path []string)
	walk = func(m map[string]any, path []string) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if len(out) > maxGenerated || !plainKey(k) {
				continue
			}
			p := append(slices.Clip(path), k)
			if sub, ok := m[k].(map[string]any); ok && len(sub) > 0 {
				walk(sub, p)
				continue
			}
			wrong, want := wrongValue(m[k])
			out = append(out, candidate{
				limits:  nest(p, wrong),
				why:     fmt.Sprintf("%s instead of %s", describe(wrong), want),
				path:    "limits." + strings.Join(p, "."),
				leaf:    wrong,
				hasLeaf: true,
			})
		}
	}
	walk(defaults, nil)
	return out
}

// plainKey reports whether a key shows unquoted in a key path (as the SDK
// writes paths): ASCII letters, digits, '_' and '-', at most 128 bytes.
func plainKey(k string) bool {
	if k == "" || len(k) > 128 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// wrongValue returns a value no field with default v accepts: the SDK
// never turns strings into booleans, nor booleans into anything else.
func wrongValue(v any) (wrong any, want string) {
	switch v.(type) {
	case bool:
		return "true", "a boolean"
	case string:
		return true, "a string"
	case float64, int64, uint64, int:
		return true, "a number"
	case []any:
		return true, "a list"
	case map[string]any:
		return true, "an object"
	case nil:
		return true, "an object or a list"
	}
	return true, fmt.Sprintf("%T", v)
}

func describe(v any) string {
	switch v.(type) {
	case bool:
		return "a boolean"
	case string:
		return "a string"
	}
	return fmt.Sprintf("%T", v)
}

// nest builds {path[0]: {path[1]: … v}}.
func nest(path []string, v any) map[string]any {
	m := map[string]any{path[len(path)-1]: v}
	for i := len(path) - 2; i >= 0; i-- {
		m = map[string]any{path[i]: m}
	}
	return m
}

func (r *run) validateLimits() outcome {
	c, o := r.client()
	if o != nil {
		return *o
	}
	problems := r.prepareCandidates()
	ctx, cancel := r.batchCtx(len(r.valid) + len(r.invalid))
	defer cancel()
	before, genBefore, err := c.Limits(ctx)
	if err != nil {
		return fail("GetLimits: %s", rpcError(err))
	}

	valid := r.valid
	if r.info != nil && r.info.DefaultLimits != nil {
		valid = append(slices.Clip(valid), candidate{limits: r.info.DefaultLimits, why: "the default limits from GetInfo"})
	}
	for _, cand := range valid {
		got, err := c.ValidateLimits(ctx, cand.limits)
		if err != nil {
			problems = append(problems, fmt.Sprintf("rejected valid limits %s: %v", cand, err))
			continue
		}
		if len(cand.limits) == 0 && r.info != nil && !reflect.DeepEqual(got, r.info.DefaultLimits) {
			problems = append(problems, fmt.Sprintf("ValidateLimits({}) answered %s, but GetInfo's default limits are %s", jsonText(got), jsonText(r.info.DefaultLimits)))
		}
	}
	rejected := 0
	for _, cand := range r.invalid {
		_, err := c.ValidateLimits(ctx, cand.limits)
		switch {
		case err == nil:
			problems = append(problems, fmt.Sprintf("accepted invalid limits %s", cand))
		case !errors.Is(err, sdk.ErrInvalidLimits):
			problems = append(problems, fmt.Sprintf("rejected %s, but not with sdk.ErrInvalidLimits (gRPC INVALID_ARGUMENT with reason INVALID_LIMITS): %v", cand, err))
		case !namesPath(err, cand.path):
			problems = append(problems, fmt.Sprintf("rejected %s, but the error does not name the key path %q: %v", cand, cand.path, err))
		default:
			rejected++
		}
	}

	after, genAfter, err := c.Limits(ctx)
	if err != nil {
		return fail("GetLimits: %s", rpcError(err))
	}
	if !reflect.DeepEqual(before, after) || genBefore != genAfter {
		problems = append(problems, fmt.Sprintf("ValidateLimits changed the limits in force: before %s (generation %d), after %s (generation %d)", jsonText(before), genBefore, jsonText(after), genAfter))
	}
	return failList(problems, fmt.Sprintf("accepted %d valid candidates; rejected %d invalid ones, each with sdk.ErrInvalidLimits naming its key path; the limits in force did not change", len(valid), rejected))
}

func (r *run) applyLimits() outcome {
	c, o := r.client()
	if o != nil {
		return *o
	}
	if !r.configured {
		return skip("Configure failed, and ApplyLimits needs a configured plugin")
	}
	if r.valid == nil && r.invalid == nil {
		r.prepareCandidates()
	}
	ctx, cancel := r.batchCtx(3*len(r.valid) + len(r.invalid))
	defer cancel()

	var problems []string
	var gen uint64
	for _, cand := range r.valid {
		gen++
		inForce, _, err := c.Limits(ctx)
		if err != nil {
			return fail("GetLimits: %s", rpcError(err))
		}
		announced, err := c.ValidateLimits(ctx, cand.limits)
		if err != nil {
			problems = append(problems, fmt.Sprintf("ValidateLimits %s: %s", cand, rpcError(err)))
			continue
		}
		first, err := c.ApplyLimits(ctx, cand.limits, gen)
		if err != nil {
			hint := ""
			if reflect.DeepEqual(inForce, announced) {
				hint = " (these limits were already in force: ApplyLimits must be idempotent)"
			}
			problems = append(problems, fmt.Sprintf("ApplyLimits %s, generation %d: %v%s", cand, gen, err, hint))
			continue
		}
		second, err := c.ApplyLimits(ctx, cand.limits, gen)
		if err != nil {
			problems = append(problems, fmt.Sprintf("ApplyLimits %s succeeded once, then failed when applied again: %v (ApplyLimits must be idempotent)", cand, err))
			continue
		}
		if !reflect.DeepEqual(first, second) {
			problems = append(problems, fmt.Sprintf("applying %s twice gave different limits: first %s, then %s", cand, jsonText(first), jsonText(second)))
		}
		if !reflect.DeepEqual(first, announced) {
			problems = append(problems, fmt.Sprintf("ValidateLimits %s announced %s, but ApplyLimits applied %s", cand, jsonText(announced), jsonText(first)))
		}
		got, gotGen, err := c.Limits(ctx)
		if err != nil {
			return fail("GetLimits: %s", rpcError(err))
		}
		if !reflect.DeepEqual(got, second) || gotGen != gen {
			problems = append(problems, fmt.Sprintf("after ApplyLimits returned %s (generation %d), GetLimits answered %s (generation %d)", jsonText(second), gen, jsonText(got), gotGen))
		}
	}

	refused := 0
	for _, cand := range r.invalid {
		before, beforeGen, err := c.Limits(ctx)
		if err != nil {
			return fail("GetLimits: %s", rpcError(err))
		}
		_, err = c.ApplyLimits(ctx, cand.limits, gen+1)
		after, afterGen, gerr := c.Limits(ctx)
		if gerr != nil {
			return fail("GetLimits: %v", gerr)
		}
		switch {
		case err == nil:
			problems = append(problems, fmt.Sprintf("ApplyLimits accepted invalid limits %s", cand))
		case !errors.Is(err, sdk.ErrInvalidLimits):
			problems = append(problems, fmt.Sprintf("ApplyLimits refused %s, but not with sdk.ErrInvalidLimits: %v", cand, err))
		default:
			refused++
		}
		if !reflect.DeepEqual(before, after) || beforeGen != afterGen {
			problems = append(problems, fmt.Sprintf("ApplyLimits of invalid limits %s changed the limits in force from %s (generation %d) to %s (generation %d)", cand, jsonText(before), beforeGen, jsonText(after), afterGen))
			break
		}
	}
	return failList(problems, fmt.Sprintf("applied %d candidates twice each with the same result; GetLimits echoed them with their generation; refused %d invalid candidates without changing the limits in force", len(r.valid), refused))
}

var (
	reSnake     = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	reLabelName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

func (r *run) metrics() outcome {
	c, o := r.client()
	if o != nil {
		return *o
	}
	rpc := dwv1.NewScalableSubsystemClient(c.Conn())
	ctx, cancel := r.callCtx()
	defer cancel()
	first, err := rpc.GetMetrics(ctx, &dwv1.GetMetricsRequest{})
	if err != nil {
		return fail("GetMetrics: %s%s", rpcError(err), r.stderr())
	}
	second, err := rpc.GetMetrics(ctx, &dwv1.GetMetricsRequest{})
	if err != nil {
		return fail("second GetMetrics: %s%s", rpcError(err), r.stderr())
	}

	var problems []string
	switch bp := first.GetBackpressure(); bp {
	case dwv1.Backpressure_BACKPRESSURE_NONE, dwv1.Backpressure_BACKPRESSURE_ELEVATED, dwv1.Backpressure_BACKPRESSURE_SATURATED:
	default:
		problems = append(problems, fmt.Sprintf("backpressure is %s; want none, elevated or saturated (sdk.BackpressureNone, …)", backpressureText(bp)))
	}
	kinds := map[string]dwv1.MetricKind{}
	seen := map[string]bool{}
	counters := map[string]float64{}
	counts := map[string]uint64{} // of histograms
	var names []string
	for _, m := range first.GetMetrics() {
		name := m.GetName()
		id := name + labelText(m.GetLabels())
		if !reSnake.MatchString(name) {
			problems = append(problems, fmt.Sprintf("metric %q: name must be snake_case (lowercase letters and digits joined by single underscores, starting with a letter)", name))
		}
		for l := range m.GetLabels() {
			if !reLabelName.MatchString(l) {
				problems = append(problems, fmt.Sprintf("metric %s: label name %q must be snake_case", id, l))
			}
		}
		if seen[id] {
			problems = append(problems, fmt.Sprintf("metric %s appears more than once with the same labels", id))
			continue
		}
		seen[id] = true
		switch k := m.GetKind(); k {
		case dwv1.MetricKind_METRIC_KIND_GAUGE, dwv1.MetricKind_METRIC_KIND_COUNTER, dwv1.MetricKind_METRIC_KIND_HISTOGRAM:
			if prev, ok := kinds[name]; ok && prev != k {
				problems = append(problems, fmt.Sprintf("metric %q is both a %s and a %s", name, kindText(prev), kindText(k)))
			}
			kinds[name] = k
		default:
			problems = append(problems, fmt.Sprintf("metric %s has kind %s; want a gauge, a counter or a histogram (sdk.Gauge, sdk.Counter, (*sdk.Histogram).Metric)", id, k))
		}
		if m.GetKind() == dwv1.MetricKind_METRIC_KIND_HISTOGRAM {
			if p := histogramProblem(m.GetHistogram()); p != "" {
				problems = append(problems, fmt.Sprintf("histogram %s: %s", id, p))
			}
			counts[id] = m.GetHistogram().GetCount()
		}
		if m.GetKind() == dwv1.MetricKind_METRIC_KIND_COUNTER {
			if v := m.GetValue(); v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				problems = append(problems, fmt.Sprintf("counter %s is %v; a counter is a finite number >= 0", id, v))
			}
			counters[id] = m.GetValue()
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	seen = map[string]bool{}
	for _, m := range second.GetMetrics() {
		id := m.GetName() + labelText(m.GetLabels())
		if seen[id] {
			continue
		}
		seen[id] = true
		if prev, ok := counters[id]; ok && m.GetKind() == dwv1.MetricKind_METRIC_KIND_COUNTER && m.GetValue() < prev {
			problems = append(problems, fmt.Sprintf("counter %s went down from %v to %v between two GetMetrics calls", id, prev, m.GetValue()))
		}
		if prev, ok := counts[id]; ok && m.GetKind() == dwv1.MetricKind_METRIC_KIND_HISTOGRAM && m.GetHistogram().GetCount() < prev {
			problems = append(problems, fmt.Sprintf("histogram %s: count went down from %d to %d between two GetMetrics calls", id, prev, m.GetHistogram().GetCount()))
		}
	}
	problems = append(problems, seriesCollisions(kinds)...)
	summary := fmt.Sprintf("backpressure %s", backpressureText(first.GetBackpressure()))
	if reason := first.GetBackpressureReason(); reason != "" {
		summary += " (" + reason + ")"
	}
	sort.Strings(names)
	summary += fmt.Sprintf("; %d metrics: %s", len(first.GetMetrics()), strings.Join(names, ", "))
	return failList(problems, summary)
}

// histogramProblem says what is wrong with a histogram metric's data, or
// "" when nothing is.
func histogramProblem(h *dwv1.Histogram) string {
	if h == nil {
		return "no histogram data; report it with (*sdk.Histogram).Metric"
	}
	if err := contract.CheckHistogram(h.GetUpperBounds(), h.GetCumulativeCounts(), h.GetCount()); err != nil {
		return err.Error()
	}
	return ""
}

// seriesCollisions lists the metric names that are also a series of a
// histogram (x_bucket, x_sum, x_count of histogram x): the host exports
// only the first of the two.
func seriesCollisions(kinds map[string]dwv1.MetricKind) []string {
	var problems []string
	for name, k := range kinds {
		if k != dwv1.MetricKind_METRIC_KIND_HISTOGRAM {
			continue
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if other, ok := kinds[name+suffix]; ok {
				problems = append(problems, fmt.Sprintf("%s %q is also a series of histogram %q; rename one of them", kindText(other), name+suffix, name))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

func kindText(k dwv1.MetricKind) string {
	switch k {
	case dwv1.MetricKind_METRIC_KIND_GAUGE:
		return "gauge"
	case dwv1.MetricKind_METRIC_KIND_COUNTER:
		return "counter"
	case dwv1.MetricKind_METRIC_KIND_HISTOGRAM:
		return "histogram"
	}
	return k.String()
}

func backpressureText(b dwv1.Backpressure) string {
	switch b {
	case dwv1.Backpressure_BACKPRESSURE_NONE:
		return "none"
	case dwv1.Backpressure_BACKPRESSURE_ELEVATED:
		return "elevated"
	case dwv1.Backpressure_BACKPRESSURE_SATURATED:
		return "saturated"
	}
	return fmt.Sprintf("the unknown value %d", int32(b))
}

// labelText formats labels as {a="1",b="2"}, sorted, or "" without labels.
func labelText(labels map[string]string) string {
	if len(labels) == 0 {
		return ""
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, labels[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func knownHealth(s dwv1.HealthStatus) bool {
	switch s {
	case dwv1.HealthStatus_HEALTH_STATUS_SERVING, dwv1.HealthStatus_HEALTH_STATUS_DEGRADED, dwv1.HealthStatus_HEALTH_STATUS_NOT_SERVING:
		return true
	}
	return false
}

func healthText(s dwv1.HealthStatus) string {
	switch s {
	case dwv1.HealthStatus_HEALTH_STATUS_SERVING:
		return "serving"
	case dwv1.HealthStatus_HEALTH_STATUS_DEGRADED:
		return "degraded"
	case dwv1.HealthStatus_HEALTH_STATUS_NOT_SERVING:
		return "not_serving"
	}
	return fmt.Sprintf("the unknown value %d", int32(s))
}

func (r *run) health() outcome {
	c, o := r.client()
	if o != nil {
		return *o
	}
	rpc := dwv1.NewScalableSubsystemClient(c.Conn())
	ctx, cancel := r.callCtx()
	defer cancel()
	h, err := rpc.CheckHealth(ctx, &dwv1.CheckHealthRequest{})
	if err != nil {
		return fail("CheckHealth: %s%s", rpcError(err), r.stderr())
	}
	var problems []string
	if !knownHealth(h.GetStatus()) {
		problems = append(problems, fmt.Sprintf("status is %s; want serving, degraded or not_serving (sdk.HealthServing, …)", healthText(h.GetStatus())))
	}
	names := map[string]bool{}
	for i, comp := range h.GetComponents() {
		switch {
		case comp.GetName() == "":
			problems = append(problems, fmt.Sprintf("component %d has no name", i))
		case names[comp.GetName()]:
			problems = append(problems, fmt.Sprintf("component %q appears more than once", comp.GetName()))
		}
		names[comp.GetName()] = true
		if !knownHealth(comp.GetStatus()) {
			problems = append(problems, fmt.Sprintf("component %q: status is %s; want serving, degraded or not_serving", comp.GetName(), healthText(comp.GetStatus())))
		}
	}
	summary := healthText(h.GetStatus())
	if h.GetMessage() != "" {
		summary += ": " + h.GetMessage()
	}
	if n := len(h.GetComponents()); n > 0 {
		summary += fmt.Sprintf(" (%d components)", n)
	}
	return failList(problems, summary)
}

func (r *run) shutdown() outcome {
	if r.proc == nil || r.proc.pid() == 0 {
		return skip("the plugin did not start")
	}
	if r.proc.sdk == nil {
		_, _, _ = r.proc.stop(r.opts.ShutdownWithin)
		r.stopped = true
		return skip("no connection to the plugin, so no graceful shutdown to ask for (see %s)", CheckHandshake)
	}
	if r.proc.client.Exited() {
		_, _, _ = r.proc.stop(r.opts.ShutdownWithin)
		r.stopped = true
		status := "unknown status"
		if ps := r.proc.cmd.ProcessState; ps != nil {
			status = ps.String()
		}
		return fail("the plugin had exited (%s) before the host asked it to stop: did it crash?%s", status, r.stderr())
	}
	pid := r.proc.pid()
	took, forced, err := r.proc.stop(r.opts.ShutdownWithin)
	r.stopped = true
	var problems []string
	if err != nil {
		problems = append(problems, err.Error())
	}
	if forced {
		problems = append(problems, fmt.Sprintf("the process was still running %v after the shutdown request; the harness killed its process group", took.Round(timeUnit)))
	}
	if ps := r.proc.cmd.ProcessState; ps != nil && !forced {
		if sig, ok := signaled(ps); ok {
			if sig == os.Kill {
				problems = append(problems, fmt.Sprintf("the plugin did not exit within 2s of the shutdown request, so go-plugin killed it with SIGKILL after %v: return from Shutdown promptly and honour its context's deadline", took.Round(timeUnit)))
			} else {
				problems = append(problems, fmt.Sprintf("the plugin died of signal %v after the shutdown request", sig))
			}
		} else if code := ps.ExitCode(); code != 0 {
			problems = append(problems, fmt.Sprintf("the plugin exited with status %d after the shutdown request; want 0 (return from main after sdk.Serve returns)", code))
		}
	}
	if took > r.opts.ShutdownWithin {
		problems = append(problems, fmt.Sprintf("stopping took %v, more than ShutdownWithin %v", took.Round(timeUnit), r.opts.ShutdownWithin))
	}
	if left := leftInGroup(pid, r.opts.ShutdownWithin-took); len(left) > 0 {
		problems = append(problems, fmt.Sprintf("the plugin left processes of its process group running: pids %v (killed them); stop your child processes in Shutdown", left))
	}
	if len(problems) > 0 {
		return fail("%s%s", strings.Join(problems, "\n"), r.stderr())
	}
	return pass("exited with status 0 %v after the shutdown request", took.Round(timeUnit))
}
