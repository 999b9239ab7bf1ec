package sdktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

func TestGenerateInvalid(t *testing.T) {
	defaults := map[string]any{
		"max_entries": float64(10),
		"max_bytes":   "64MiB",
		"enabled":     false,
		"peers":       []any{"a"},
		"callers":     nil,
		"quota":       map[string]any{"default": map[string]any{"ops": float64(0)}},
		"empty":       map[string]any{},
		"odd key":     float64(1),
	}
	got := map[string]string{}
	for _, c := range generateInvalid(defaults) {
		got[c.path] = jsonText(c.limits) + " " + c.why
	}
	want := map[string]string{
		"limits.sdktest_no_such_limit": `{"sdktest_no_such_limit":1} an unknown key`,
		"limits.max_entries":           `{"max_entries":true} a boolean instead of a number`,
		"limits.max_bytes":             `{"max_bytes":true} a boolean instead of a string`,
		"limits.enabled":               `{"enabled":"true"} a string instead of a boolean`,
		"limits.peers":                 `{"peers":true} a boolean instead of a list`,
		"limits.callers":               `{"callers":true} a boolean instead of an object or a list`,
		"limits.quota.default.ops":     `{"quota":{"default":{"ops":true}}} a boolean instead of a number`,
		"limits.empty":                 `{"empty":true} a boolean instead of an object`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("generateInvalid:\n got %v\nwant %v", got, want)
	}
}

func TestNormalize(t *testing.T) {
	got, err := normalize(map[string]any{"n": 5, "l": []string{"a"}, "m": map[string]int{"x": 1}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"n": float64(5), "l": []any{"a"}, "m": map[string]any{"x": float64(1)}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("normalize = %#v, want %#v", got, want)
	}
	if _, err := normalize(map[string]any{"f": func() {}}); err == nil {
		t.Error("normalize accepted a func")
	}
	if got, _ := normalize(nil); got == nil || len(got) != 0 {
		t.Errorf("normalize(nil) = %#v, want an empty map", got)
	}
}

func TestExplainStartError(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Unrecognized remote plugin message: hello world\nThis usually means…", `wrote to stdout before the handshake: "hello world"`},
		{"Unrecognized remote plugin message: \nFailed to read any lines from plugin's stdout", "exited or closed stdout before the handshake"},
		{"incompatible API version with plugin. Plugin version: 2, Client versions: [1]", "the plugin speaks go-plugin protocol version 2, this harness (sdk 6.1.0) speaks 1"},
		{"timeout while waiting for plugin to start", "no handshake within the start timeout of 10s"},
		{"plugin exited before we could connect", "the plugin exited before the handshake"},
		{"something else", "start: something else"},
	}
	for _, tt := range tests {
		if got := explainStartError(errors.New(tt.in), 10*time.Second).Error(); !strings.Contains(got, tt.want) {
			t.Errorf("explainStartError(%q) = %q, want it to contain %q", tt.in, got, tt.want)
		}
	}
}

func TestTail(t *testing.T) {
	tl := newTail(20)
	if tl.section() != "" {
		t.Error("an empty tail has a section")
	}
	for i := range 10 {
		fmt.Fprintf(tl, "line %d\n", i)
	}
	if got := strings.Join(tl.lines(5), "|"); got != "line 8|line 9" {
		t.Errorf("lines = %q, want the complete lines kept: line 8|line 9", got)
	}
	if tl.written() != 70 {
		t.Errorf("written = %d, want 70", tl.written())
	}
}

func TestMemKV(t *testing.T) {
	ctx := context.Background()
	kv := NewMemKV()
	for _, k := range []string{"b/2", "a", "b/1", "c"} {
		if err := kv.Put(ctx, k, []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Get(ctx, "zzz"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want sdk.ErrNotFound", err)
	}
	if err := kv.Put(ctx, "", nil); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Put(empty key) = %v, want sdk.ErrInvalidArgument", err)
	}
	if err := kv.Put(ctx, "big", make([]byte, sdk.MaxKVValueBytes+1)); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Put(too big) = %v, want sdk.ErrInvalidArgument", err)
	}
	var keys []string
	err := kv.List(ctx, "b/", func(k string, v []byte) error {
		keys = append(keys, k+"="+string(v))
		return kv.Delete(ctx, k) // the store may be used from fn
	})
	if err != nil || strings.Join(keys, " ") != "b/1=vb/1 b/2=vb/2" {
		t.Errorf("List(b/) = %v, %v", keys, err)
	}
	stop := errors.New("stop")
	n := 0
	if err := kv.List(ctx, "", func(string, []byte) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("List with a failing fn = %v after %d calls, want stop after 1", err, n)
	}
	if v, err := kv.Get(ctx, "a"); err != nil || string(v) != "va" {
		t.Errorf("Get(a) = %q, %v", v, err)
	}
	if _, err := kv.Get(ctx, "b/1"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("deleted key: %v", err)
	}
}

func TestReportText(t *testing.T) {
	rep := Report{
		Plugin:          "foo",
		Path:            "/bin/dw-plugin-foo",
		Info:            pluginhost.Info{Info: sdk.Info{Name: "foo", Version: "1.0.0"}, SDKVersion: "6.0.0"},
		ProtocolVersion: 1,
		Checks: []CheckResult{
			{Name: CheckHandshake, Passed: true, Detail: "fine", Duration: 1500 * time.Microsecond},
			{Name: CheckGetInfo, Detail: "broken\nreally", Duration: time.Millisecond},
			{Name: CheckHostDeath, Skipped: true, Detail: "not here"},
		},
	}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `plugin foo 1.0.0, sdk 6.0.0, protocol 1
  /bin/dw-plugin-foo
✓ handshake (2ms)
    fine
✗ get_info (1ms)
    broken
    really
- host_death (0s) skipped
    not here
FAIL: 1 passed, 1 failed, 1 skipped
`
	if b.String() != want {
		t.Errorf("WriteText:\n%s\nwant:\n%s", b.String(), want)
	}
	if rep.Passed() {
		t.Error("a report with a failed check passed")
	}
	rep.Checks[1].Passed = true
	if !rep.Passed() {
		t.Error("a report with passed and skipped checks failed")
	}
	if (Report{}).Passed() || (Report{Checks: rep.Checks[2:]}).Passed() {
		t.Error("a report without a passed check passed")
	}
}

func TestHistogramProblem(t *testing.T) {
	for _, tc := range []struct {
		h    *dwv1.Histogram
		want string // "" for none
	}{
		{&dwv1.Histogram{UpperBounds: []float64{0.1, 1}, CumulativeCounts: []uint64{1, 2}, Count: 3, Sum: 4}, ""},
		{&dwv1.Histogram{Count: 3}, ""},
		{nil, "no histogram data"},
		{&dwv1.Histogram{UpperBounds: []float64{1}, CumulativeCounts: []uint64{1, 2}, Count: 2}, "1 bounds and 2 counts"},
		{&dwv1.Histogram{UpperBounds: []float64{1, 1}, CumulativeCounts: []uint64{0, 0}}, "strictly ascending"},
		{&dwv1.Histogram{UpperBounds: []float64{1, 2}, CumulativeCounts: []uint64{2, 1}, Count: 2}, "cumulative"},
		{&dwv1.Histogram{UpperBounds: []float64{1}, CumulativeCounts: []uint64{3}, Count: 2}, "at most count 2"},
	} {
		got := histogramProblem(tc.h)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("histogramProblem(%v) = %q, want %q", tc.h, got, tc.want)
		}
	}
}

func TestSeriesCollisions(t *testing.T) {
	got := seriesCollisions(map[string]dwv1.MetricKind{
		"latency":        dwv1.MetricKind_METRIC_KIND_HISTOGRAM,
		"latency_count":  dwv1.MetricKind_METRIC_KIND_COUNTER,
		"latency_sum":    dwv1.MetricKind_METRIC_KIND_GAUGE,
		"latency_total":  dwv1.MetricKind_METRIC_KIND_COUNTER,
		"queue_count":    dwv1.MetricKind_METRIC_KIND_GAUGE, // no histogram queue
		"sizes":          dwv1.MetricKind_METRIC_KIND_HISTOGRAM,
		"sizes_bucket_x": dwv1.MetricKind_METRIC_KIND_GAUGE,
	})
	want := []string{
		`counter "latency_count" is also a series of histogram "latency"; rename one of them`,
		`gauge "latency_sum" is also a series of histogram "latency"; rename one of them`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("seriesCollisions = %q, want %q", got, want)
	}
}
