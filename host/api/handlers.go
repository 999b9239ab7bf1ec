package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// NamePattern is the rule for {name} path values: subsystem and plugin
// names.
const NamePattern = `^[a-z][a-z0-9_-]{0,62}$`

var nameRE = regexp.MustCompile(NamePattern)

// ValidateName checks a subsystem or plugin name; the error wraps
// sdk.ErrInvalidArgument and states the rule.
func ValidateName(name string) error {
	if nameRE.MatchString(name) {
		return nil
	}
	shown := name
	if len(shown) > 80 {
		shown = shown[:80] + "…"
	}
	return fmt.Errorf("subsystem name %q: %w: must match %s (a lowercase letter, then up to 62 lowercase letters, digits, '_' or '-')",
		shown, sdk.ErrInvalidArgument, NamePattern)
}

// pluginError marks an error of a plugin call as sdk.ErrPluginShutdown
// when it reads as canceled although the HTTP client did not cancel: the
// host closed the plugin's connection (grpc "the client connection is
// closing"), so the plugin is down, not the caller gone.
func pluginError(r *http.Request, err error) error {
	if errors.Is(err, context.Canceled) && r.Context().Err() == nil && !errors.Is(err, sdk.ErrPluginShutdown) {
		return &connClosedError{err: err}
	}
	return err
}

type connClosedError struct{ err error }

func (e *connClosedError) Error() string { return e.err.Error() + " (the plugin is shut down)" }
func (e *connClosedError) Unwrap() []error {
	return []error{sdk.ErrPluginShutdown, e.err}
}

// pathName returns the validated {name} of r, or answers 400 and returns
// false.
func pathName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if err := ValidateName(name); err != nil {
		WriteError(w, err)
		return "", false
	}
	return name, true
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// notReady is one plugin that keeps the host from being ready.
type notReady struct {
	Name      string           `json:"name"`
	State     supervisor.State `json:"state"`
	LastError string           `json:"last_error,omitempty"`
}

type readyzBody struct {
	Status   string       `json:"status"`
	Error    *ErrorDetail `json:"error,omitempty"`
	NotReady []notReady   `json:"not_ready,omitempty"`
}

// readiness lists the plugins that are neither serving nor meant to be
// down (disabled or stopped on purpose).
func readiness(statuses []supervisor.Status) []notReady {
	var out []notReady
	for _, st := range statuses {
		switch st.State {
		case supervisor.StateServing, supervisor.StateDisabled, supervisor.StateStopped:
			continue
		}
		out = append(out, notReady{Name: st.Name, State: st.State, LastError: st.LastError})
	}
	return out
}

// readyz answers whether every plugin that should serve does. The
// detail (which plugins, their states and last errors, which may hold
// paths) goes only to a valid token of any policy, or to everyone when
// the API runs without tokens (loopback only); a caller without a token
// learns ready or not ready, nothing more.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	bad := readiness(s.plugins.Statuses())
	detail := s.auth.Load() == nil
	if st := stateOf(r.Context()); st != nil && st.grant != nil {
		detail = true
	}
	if len(bad) == 0 {
		WriteJSON(w, http.StatusOK, readyzBody{Status: "ready"})
		return
	}
	if !detail {
		WriteJSON(w, http.StatusServiceUnavailable, readyzBody{Status: "not_ready"})
		return
	}
	parts := make([]string, len(bad))
	for i, b := range bad {
		parts[i] = fmt.Sprintf("%s (%s)", b.Name, b.State)
	}
	WriteJSON(w, http.StatusServiceUnavailable, readyzBody{
		Status: "not_ready",
		Error: &ErrorDetail{Code: "not_ready",
			Message: "plugins not serving: " + strings.Join(parts, ", ")},
		NotReady: bad,
	})
}

// PluginList is GET /v1/plugins: every plugin's status, Services never
// null.
type PluginList struct {
	Plugins []supervisor.Status `json:"plugins"`
}

func normalized(st supervisor.Status) supervisor.Status {
	if st.Services == nil {
		st.Services = []string{}
	}
	return st
}

func (s *Server) listPlugins(w http.ResponseWriter, _ *http.Request) {
	statuses := s.plugins.Statuses()
	out := PluginList{Plugins: make([]supervisor.Status, len(statuses))}
	for i, st := range statuses {
		out.Plugins[i] = normalized(st)
	}
	WriteJSON(w, http.StatusOK, out)
}

// status returns the status of the named plugin.
func (s *Server) status(name string) (supervisor.Status, bool) {
	for _, st := range s.plugins.Statuses() {
		if st.Name == name {
			return st, true
		}
	}
	return supervisor.Status{}, false
}

func (s *Server) restartPlugin(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.restartTimeout)
	defer cancel()
	s.logger.Info("restart requested", "plugin", name, "caller", Caller(r.Context()))
	if err := s.plugins.Restart(ctx, name); err != nil {
		WriteError(w, fmt.Errorf("restart plugin %s: %w", name, err))
		return
	}
	st, ok := s.status(name)
	if !ok {
		WriteError(w, fmt.Errorf("restart plugin %s: %w: it is no longer known to the host", name, sdk.ErrNotFound))
		return
	}
	WriteJSON(w, http.StatusOK, normalized(st))
}

// client returns the serving plugin's client and a context bounded by the
// request timeout, or answers the error.
func (s *Server) client(w http.ResponseWriter, r *http.Request) (*pluginhost.Client, string, context.Context, context.CancelFunc, bool) {
	name, ok := pathName(w, r)
	if !ok {
		return nil, "", nil, nil, false
	}
	c, err := s.plugins.Client(name)
	if err != nil {
		WriteError(w, fmt.Errorf("subsystem %s: %w", name, err))
		return nil, "", nil, nil, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.requestTimeout)
	return c, name, ctx, cancel, true
}

// limitsBody is GET /v1/subsystems/{name}/limits.
type limitsBody struct {
	Subsystem  string         `json:"subsystem"`
	Generation uint64         `json:"generation"`
	Limits     map[string]any `json:"limits"`
}

func (s *Server) subsystemLimits(w http.ResponseWriter, r *http.Request) {
	c, name, ctx, cancel, ok := s.client(w, r)
	if !ok {
		return
	}
	defer cancel()
	limits, gen, err := c.Limits(ctx)
	if err != nil {
		WriteError(w, pluginError(r, fmt.Errorf("subsystem %s: %w", name, err)))
		return
	}
	if limits == nil {
		limits = map[string]any{}
	}
	WriteJSON(w, http.StatusOK, limitsBody{Subsystem: name, Generation: gen, Limits: limits})
}

// jsonFloat is a float64 that encodes NaN and the infinities as the strings
// "NaN", "+Inf" and "-Inf" (as Prometheus writes them) instead of failing.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return json.Marshal(v)
}

type metricJSON struct {
	Name   string            `json:"name"`
	Kind   string            `json:"kind"`
	Value  jsonFloat         `json:"value"`
	Labels map[string]string `json:"labels"`
	Help   string            `json:"help"`
	// Histogram is set for kind "histogram" (whose value is 0).
	Histogram *histogramJSON `json:"histogram,omitempty"`
}

// histogramJSON is a histogram as the plugin reported it: cumulative
// counts per upper bound, the +Inf bucket being count.
type histogramJSON struct {
	UpperBounds      []jsonFloat `json:"upper_bounds"`
	CumulativeCounts []uint64    `json:"cumulative_counts"`
	Count            uint64      `json:"count"`
	Sum              jsonFloat   `json:"sum"`
	// Problem says why GET /metrics leaves this histogram out (it is
	// inconsistent); empty when it is exported.
	Problem string `json:"problem,omitempty"`
}

func toHistogramJSON(h *sdk.HistogramSnapshot) *histogramJSON {
	if h == nil {
		return nil
	}
	out := &histogramJSON{UpperBounds: make([]jsonFloat, len(h.UpperBounds)), CumulativeCounts: h.CumulativeCounts, Count: h.Count, Sum: jsonFloat(h.Sum)}
	for i, b := range h.UpperBounds {
		out.UpperBounds[i] = jsonFloat(b)
	}
	if out.CumulativeCounts == nil {
		out.CumulativeCounts = []uint64{}
	}
	if err := pluginhost.CheckHistogram(h); err != nil {
		out.Problem = err.Error()
	}
	return out
}

// metricsBody is GET /v1/subsystems/{name}/metrics.
type metricsBody struct {
	Subsystem    string       `json:"subsystem"`
	Backpressure string       `json:"backpressure"`
	Reason       string       `json:"reason"`
	Metrics      []metricJSON `json:"metrics"`
}

func kindName(k sdk.MetricKind) string {
	switch k {
	case sdk.KindCounter:
		return "counter"
	case sdk.KindHistogram:
		return "histogram"
	}
	return "gauge"
}

func (s *Server) subsystemMetrics(w http.ResponseWriter, r *http.Request) {
	c, name, ctx, cancel, ok := s.client(w, r)
	if !ok {
		return
	}
	defer cancel()
	m, err := c.Metrics(ctx)
	if err != nil {
		WriteError(w, pluginError(r, fmt.Errorf("subsystem %s: %w", name, err)))
		return
	}
	out := metricsBody{Subsystem: name, Backpressure: m.Backpressure.String(), Reason: m.Reason,
		Metrics: make([]metricJSON, len(m.Values))}
	for i, v := range m.Values {
		labels := v.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		out.Metrics[i] = metricJSON{Name: v.Name, Kind: kindName(v.Kind), Value: jsonFloat(v.Value), Labels: labels, Help: v.Help}
		if v.Kind == sdk.KindHistogram {
			out.Metrics[i].Histogram = toHistogramJSON(v.Histogram)
		}
	}
	WriteJSON(w, http.StatusOK, out)
}

type componentJSON struct {
	Name      string    `json:"name"`
	Status    string    `json:"status"`
	Message   string    `json:"message"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
}

// healthBody is GET /v1/subsystems/{name}/health.
type healthBody struct {
	Subsystem  string          `json:"subsystem"`
	Status     string          `json:"status"`
	Message    string          `json:"message"`
	Components []componentJSON `json:"components"`
}

func (s *Server) subsystemHealth(w http.ResponseWriter, r *http.Request) {
	c, name, ctx, cancel, ok := s.client(w, r)
	if !ok {
		return
	}
	defer cancel()
	h, err := c.Health(ctx)
	if err != nil {
		WriteError(w, pluginError(r, fmt.Errorf("subsystem %s: %w", name, err)))
		return
	}
	out := healthBody{Subsystem: name, Status: h.Status.String(), Message: h.Message,
		Components: make([]componentJSON, len(h.Components))}
	for i, c := range h.Components {
		out.Components[i] = componentJSON{Name: c.Name, Status: c.Status.String(), Message: c.Message, CheckedAt: c.CheckedAt.UTC()}
	}
	code := http.StatusOK
	if h.Status == sdk.HealthNotServing {
		code = http.StatusServiceUnavailable
	}
	WriteJSON(w, code, out)
}
