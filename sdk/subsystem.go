package sdk

import (
	"context"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
)

// Subsystem is what a dw plugin implements; L is the plugin's limits struct.
//
// Lifecycle, in order:
//
//  1. The host starts the binary; [Serve] performs the go-plugin handshake.
//     Before it, the SDK derives the schema of the limits (from
//     DefaultLimits) and, if the Subsystem is a [SettingsDeclarer], of the
//     settings: every key with its type, default, bounds, enum and doc tag.
//     A field of a type [Decode] does not support is a programming error:
//     Serve logs it and panics, so the plugin never starts.
//  2. Info is asked (GetInfo, which also carries the schema); the host
//     checks the SDK version. A host that only checks a config file (dw
//     config validate) or documents the plugin (dw plugin docs) stops here,
//     after at most a ValidateLimits, which before Configure checks the
//     rules of the limits struct only.
//  3. Configure is called once with the start-time settings and the host
//     services. A settings change restarts the plugin, so Configure is never
//     called twice in one process.
//  4. ApplyLimits is called once at start, right after Configure returned
//     (the host's Configure request carries the limits; since sdk 6.1 it is
//     not first called with the defaults), with DefaultLimits overlaid by
//     the host's limits; then again on every configuration reload that
//     changes them — live, with no restart. Candidates are first checked by ValidateLimits, which never
//     changes anything; the SDK does the decoding and range checks.
//  5. Metrics and Health are called at any time, concurrently with each other.
//  6. On shutdown (host stop, host death, or a settings change) Shutdown is
//     called if the plugin implements [Shutdowner].
//
// The SDK serialises Configure and ApplyLimits; Metrics and Health may run
// concurrently with them and with each other. The plugin's own gRPC
// services (see [GRPCRegistrar]) are served from the moment Configure
// (step 3, the first ApplyLimits included) has succeeded; before, the SDK
// answers their calls with ErrUnavailable. A panic in any method, or in a
// handler of the plugin's services, fails that call with ErrPanicked; the
// SDK releases its locks, a panicking ApplyLimits leaves the limits in
// force as they were, and the plugin keeps serving.
//
// Optional interfaces, each found by type assertion: [LimitsValidator],
// [SettingsDeclarer], [GRPCRegistrar], [Shutdowner].
type Subsystem[L any] interface {
	// Info says who the plugin is.
	Info() Info
	// Configure receives the settings and host services. An error here is
	// reported to the operator and the plugin is not started.
	Configure(ctx context.Context, cfg Config) error
	// DefaultLimits returns the limits in force when none are configured.
	DefaultLimits() L
	// ApplyLimits puts validated limits in force. It must be idempotent.
	ApplyLimits(ctx context.Context, limits L) error
	// Metrics returns the plugin's scaling metrics and backpressure state.
	Metrics(ctx context.Context) (Metrics, error)
	// Health returns overall and per-component health.
	Health(ctx context.Context) Health
}

// LimitsValidator is an optional interface for a Subsystem whose limits must
// also be checked against its state (for example, a maximum that may not go
// below what is in use). It is called after decoding and range checks.
type LimitsValidator[L any] interface {
	ValidateLimits(ctx context.Context, limits L) error
}

// GRPCRegistrar is an optional interface for a Subsystem that serves domain
// gRPC services (object store, file store, …) on the plugin connection.
type GRPCRegistrar interface {
	RegisterGRPC(s *grpc.Server)
}

// Shutdowner is an optional interface for a Subsystem that must release
// resources (flush, close files, leave a cluster) before the process exits.
// The context carries the shutdown deadline.
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}

// Validator is an optional interface for a limits (or settings) struct with
// cross-field rules. Decode calls it after every field was decoded; return a
// *DecodeError to name the offending key paths.
type Validator interface {
	Validate() error
}

// Info identifies a plugin.
type Info struct {
	// Name is the subsystem implemented, e.g. "dbstorage".
	Name string
	// Version is the plugin's own version.
	Version string
	// Capabilities are free-form feature names.
	Capabilities []string
}

// Config is what Configure receives.
type Config struct {
	// Subsystem is the name the host knows this plugin by.
	Subsystem string
	// Settings is the plugin's config section without "enabled" and
	// "limits". Use DecodeSettings to decode it strictly.
	Settings map[string]any
	// DataDir is the host's data folder (absolute).
	DataDir string
	// HostVersion is the dw host's version.
	HostVersion string
	// HostAPIAddress is the host's HTTP API address as bound (host:port);
	// empty when the host serves no API.
	HostAPIAddress string
	// KV is the host's persistent key-value store, in this plugin's own key
	// space. It is nil when the host offers no host services (some tests).
	KV KV
	// Logger logs through the host, under the plugin's name.
	Logger hclog.Logger
}

// DecodeSettings decodes c.Settings onto dst (a pointer to a struct holding
// defaults) with the same strict rules as limits; errors name the key path
// under "subsystems.<name>" and wrap ErrInvalidSettings.
func (c Config) DecodeSettings(dst any) error {
	if err := Decode(dst, c.Settings, "subsystems."+c.Subsystem); err != nil {
		return invalid(ErrInvalidSettings, err)
	}
	return nil
}

// ResolvePath makes a path from the settings absolute: relative paths are
// resolved against DataDir.
func (c Config) ResolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.DataDir, p)
}

// KV is the host's persistent key-value store as a plugin sees it. Keys are
// free-form UTF-8 strings of 1 to 1024 bytes within the plugin's own key
// space; values are at most MaxKVValueBytes. Every Put is durable when it
// returns.
type KV interface {
	// Put stores value at key.
	Put(ctx context.Context, key string, value []byte) error
	// Get returns the value at key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for every key with the prefix, in key order, without
	// holding all entries in memory. An error from fn stops the listing and
	// is returned.
	List(ctx context.Context, prefix string, fn func(key string, value []byte) error) error
}

// Backpressure is how loaded a plugin is.
type Backpressure int

// Backpressure states.
const (
	// BackpressureNone: accepting work normally.
	BackpressureNone Backpressure = iota
	// BackpressureElevated: accepting work but nearing a limit; callers
	// should slow down.
	BackpressureElevated
	// BackpressureSaturated: refusing or parking new work.
	BackpressureSaturated
)

// String returns none, elevated or saturated.
func (b Backpressure) String() string {
	switch b {
	case BackpressureNone:
		return "none"
	case BackpressureElevated:
		return "elevated"
	case BackpressureSaturated:
		return "saturated"
	}
	return "unknown"
}

// MetricKind tells gauges, counters and histograms apart.
type MetricKind int

// Metric kinds.
const (
	// KindGauge is a value that goes up and down.
	KindGauge MetricKind = iota
	// KindCounter only goes up (until the process restarts).
	KindCounter
	// KindHistogram is a distribution of observations (see [Histogram]):
	// Metric.Histogram holds it and Value is unused. Since sdk 6.1.
	KindHistogram
)

// Metric is one named value.
type Metric struct {
	// Name is snake_case without the subsystem prefix, e.g. "entries"; the
	// host exports it as dw_<subsystem>_<name>.
	Name   string
	Help   string
	Kind   MetricKind
	Value  float64
	Labels map[string]string
	// Histogram is the distribution of a KindHistogram metric.
	Histogram *HistogramSnapshot
}

// Gauge returns a gauge metric. labels are key, value pairs.
func Gauge(name, help string, value float64, labels ...string) Metric {
	return Metric{Name: name, Help: help, Kind: KindGauge, Value: value, Labels: pairs(labels)}
}

// Counter returns a counter metric. labels are key, value pairs.
func Counter(name, help string, value float64, labels ...string) Metric {
	return Metric{Name: name, Help: help, Kind: KindCounter, Value: value, Labels: pairs(labels)}
}

func pairs(kv []string) map[string]string {
	if len(kv) == 0 {
		return nil
	}
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Metrics is a plugin's answer to GetMetrics.
type Metrics struct {
	Backpressure Backpressure
	// Reason says why backpressure is not none.
	Reason string
	Values []Metric
}

// HealthStatus is the health of a plugin or one of its components.
type HealthStatus int

// Health states.
const (
	// HealthServing: working normally.
	HealthServing HealthStatus = iota
	// HealthDegraded: working, with reduced capacity or a failed component.
	HealthDegraded
	// HealthNotServing: not working.
	HealthNotServing
)

// String returns serving, degraded or not_serving.
func (h HealthStatus) String() string {
	switch h {
	case HealthServing:
		return "serving"
	case HealthDegraded:
		return "degraded"
	case HealthNotServing:
		return "not_serving"
	}
	return "unknown"
}

func (h HealthStatus) valid() bool { return h >= HealthServing && h <= HealthNotServing }

// Health is a plugin's answer to CheckHealth.
type Health struct {
	Status     HealthStatus
	Message    string
	Components []ComponentHealth
}

// ComponentHealth is the health of one part of a plugin (a database
// strategy, a disk, a peer).
type ComponentHealth struct {
	Name      string
	Status    HealthStatus
	Message   string
	CheckedAt time.Time
}
