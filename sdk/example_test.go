package sdk_test

import (
	"context"
	"sync/atomic"

	"github.com/datawarehouse/dw/sdk/v6"
)

// RateLimits are the plugin's limits: the operator sets them under
// subsystems.ratelimit.limits and the host applies a change live. The SDK
// enforces the tags before ApplyLimits sees a value.
type RateLimits struct {
	Rate  int      `dw:"rate" min:"1"`                 // requests per second
	Burst sdk.Size `dw:"burst" min:"1KiB" max:"64MiB"` // bytes at once
}

// RateLimiter is the plugin. Metrics and Health may run concurrently with
// ApplyLimits, so the limits in force are kept in an atomic pointer.
type RateLimiter struct {
	limits atomic.Pointer[RateLimits]
}

var _ sdk.Subsystem[RateLimits] = (*RateLimiter)(nil)

func (*RateLimiter) Info() sdk.Info {
	return sdk.Info{Name: "ratelimit", Version: "0.1.0"}
}

// Configure refuses every setting: this plugin has none, and a typo in the
// config file is an error rather than a silent no-op.
func (*RateLimiter) Configure(_ context.Context, cfg sdk.Config) error {
	return cfg.DecodeSettings(&struct{}{})
}

func (*RateLimiter) DefaultLimits() RateLimits {
	return RateLimits{Rate: 100, Burst: 64 * sdk.KiB}
}

// ApplyLimits is idempotent: applying the same limits twice changes nothing.
func (r *RateLimiter) ApplyLimits(_ context.Context, l RateLimits) error {
	r.limits.Store(&l)
	return nil
}

func (r *RateLimiter) Metrics(context.Context) (sdk.Metrics, error) {
	l := r.limits.Load()
	if l == nil {
		return sdk.Metrics{}, nil
	}
	return sdk.Metrics{Values: []sdk.Metric{
		sdk.Gauge("rate_limit", "Requests per second allowed.", float64(l.Rate)),
		sdk.Gauge("burst_bytes", "Bytes allowed at once.", float64(l.Burst)),
	}}, nil
}

func (*RateLimiter) Health(context.Context) sdk.Health {
	return sdk.Health{Status: sdk.HealthServing}
}

// Example is the main function of a plugin binary, dw-plugin-ratelimit:
// Serve performs the handshake with the host that started the binary and
// serves until the host stops it. (It is compiled here, not run: it needs
// a host.)
func Example() {
	sdk.Serve[RateLimits](&RateLimiter{})
}
