// Command echoplugin is the admin API's test plugin: a dw plugin serving the
// small domain service dw.echo.v1.Echo, with limits that steer what its
// metrics and health report, so that tests can drive every admin endpoint
// against a real plugin process.
package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	echov1 "github.com/datawarehouse/dw/host/api/testdata/echoplugin/proto/dw/echo/v1"
	"github.com/datawarehouse/dw/sdk/v6"
)

// Limits are the echo plugin's limits.
type Limits struct {
	// MaxRepeat caps Repeat's times.
	MaxRepeat int `dw:"max_repeat" min:"1" max:"1000000"`
	// Backpressure is the state Metrics reports.
	Backpressure string `dw:"backpressure" enum:"none,elevated,saturated"`
	// Health is the status Health reports.
	Health string `dw:"health" enum:"serving,degraded,not_serving"`
	// MetricsDelay makes Metrics slow, to test scrape timeouts.
	MetricsDelay time.Duration `dw:"metrics_delay"`
}

type echo struct {
	echov1.UnimplementedEchoServer

	limits  atomic.Pointer[Limits]
	calls   atomic.Int64
	streams atomic.Int64 // Repeat calls in progress
}

var (
	_ sdk.Subsystem[Limits] = (*echo)(nil)
	_ sdk.GRPCRegistrar     = (*echo)(nil)
	_ echov1.EchoServer     = (*echo)(nil)
)

func (e *echo) Info() sdk.Info {
	return sdk.Info{Name: "echo", Version: "0.1.0", Capabilities: []string{"echo"}}
}

func (e *echo) Configure(context.Context, sdk.Config) error { return nil }

func (e *echo) DefaultLimits() Limits {
	return Limits{MaxRepeat: 100000, Backpressure: "none", Health: "serving"}
}

func (e *echo) ApplyLimits(_ context.Context, l Limits) error {
	e.limits.Store(&l)
	return nil
}

func (e *echo) current() Limits {
	if l := e.limits.Load(); l != nil {
		return *l
	}
	return e.DefaultLimits()
}

func (e *echo) Metrics(ctx context.Context) (sdk.Metrics, error) {
	l := e.current()
	if l.MetricsDelay > 0 {
		select {
		case <-time.After(l.MetricsDelay):
		case <-ctx.Done():
			return sdk.Metrics{}, ctx.Err()
		}
	}
	m := sdk.Metrics{
		Values: []sdk.Metric{
			sdk.Counter("calls_total", "Echo calls served.", float64(e.calls.Load())),
			sdk.Gauge("streams_open", "Repeat calls in progress.", float64(e.streams.Load())),
			sdk.Gauge("queue-depth", "Queued requests by class.", 3, "class", "fast"),
			sdk.Gauge("queue-depth", "Queued requests by class.", 5, "class", "slow"),
			// The next two collide with the ones above once sanitized or by
			// kind; the host must drop them without failing the scrape.
			sdk.Gauge("queue_depth", "Queued requests by class.", 7, "class", "fast"),
			sdk.Counter("queue_depth", "Same name, other kind.", 1, "class", "other"),
			sdk.Gauge("ratio", "", 0.5, "bad-label", "x"),
		},
	}
	switch l.Backpressure {
	case "elevated":
		m.Backpressure, m.Reason = sdk.BackpressureElevated, "told so by its limits"
	case "saturated":
		m.Backpressure, m.Reason = sdk.BackpressureSaturated, "told so by its limits"
	}
	return m, nil
}

func (e *echo) Health(context.Context) sdk.Health {
	l := e.current()
	h := sdk.Health{Message: "health set by limits: " + l.Health}
	switch l.Health {
	case "degraded":
		h.Status = sdk.HealthDegraded
	case "not_serving":
		h.Status = sdk.HealthNotServing
	}
	h.Components = []sdk.ComponentHealth{{Name: "core", Status: h.Status, Message: "ok", CheckedAt: time.Now()}}
	return h
}

func (e *echo) RegisterGRPC(s *grpc.Server) { echov1.RegisterEchoServer(s, e) }

func caller(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	return strings.Join(md.Get("dw-caller"), ",")
}

func (e *echo) Echo(ctx context.Context, req *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	e.calls.Add(1)
	return &echov1.EchoResponse{Request: req, Caller: caller(ctx)}, nil
}

func (e *echo) Repeat(req *echov1.RepeatRequest, stream grpc.ServerStreamingServer[echov1.RepeatResponse]) error {
	e.calls.Add(1)
	e.streams.Add(1)
	defer e.streams.Add(-1)
	times := int(req.GetTimes())
	if max := e.current().MaxRepeat; times > max {
		return fmt.Errorf("repeat: %w: times %d is over max_repeat %d", sdk.ErrInvalidArgument, times, max)
	}
	pad := make([]byte, max(0, int(req.GetPad())))
	for i := range times {
		if fa := int(req.GetFailAfter()); fa > 0 && i == fa {
			return fmt.Errorf("repeat: %w: failing after %d replies as asked", sdk.ErrUnavailable, fa)
		}
		if err := stream.Send(&echov1.RepeatResponse{Message: req.GetMessage(), Index: int32(i), Pad: pad}); err != nil {
			return err
		}
	}
	if req.GetHold() {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	return nil
}

func (e *echo) Fail(_ context.Context, req *echov1.FailRequest) (*echov1.FailResponse, error) {
	var err error
	switch req.GetKind() {
	case "not_found":
		err = sdk.ErrNotFound
	case "invalid_argument":
		err = sdk.ErrInvalidArgument
	case "backpressure":
		err = sdk.ErrBackpressure
	case "quota_exceeded":
		err = sdk.ErrQuotaExceeded
	case "unavailable":
		err = sdk.ErrUnavailable
	case "permission_denied":
		err = sdk.ErrPermissionDenied
	case "panic":
		panic("echo asked to panic")
	default:
		err = fmt.Errorf("internal failure %q", req.GetKind())
	}
	err = fmt.Errorf("fail as asked: %w", err)
	if ms := req.GetRetryAfterMs(); ms > 0 {
		err = sdk.WithRetryAfter(err, time.Duration(ms)*time.Millisecond)
	}
	return nil, err
}

func main() { sdk.Serve[Limits](&echo{}) }
