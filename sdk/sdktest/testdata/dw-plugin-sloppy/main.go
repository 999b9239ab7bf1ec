// Command dw-plugin-sloppy breaks most rules of the dw plugin contract that
// a plugin built on sdk.Serve can break.
package main

import (
	"context"
	"errors"
	"sync"

	"github.com/datawarehouse/dw/sdk/v6"
)

// limits has no rules: negative workers are accepted.
type limits struct {
	Workers int `dw:"workers"`
}

type sloppy struct {
	mu      sync.Mutex
	started bool
}

// Info has no version and a name that does not match the binary.
func (*sloppy) Info() sdk.Info                              { return sdk.Info{Name: "sloppy-plugin"} }
func (*sloppy) Configure(context.Context, sdk.Config) error { return nil }
func (*sloppy) DefaultLimits() limits                       { return limits{Workers: 4} }

// ValidateLimits rejects without naming the key.
func (*sloppy) ValidateLimits(_ context.Context, l limits) error {
	if l.Workers > 100 {
		return errors.New("too many workers")
	}
	return nil
}

// ApplyLimits starts a worker pool and cannot be called twice.
func (s *sloppy) ApplyLimits(context.Context, limits) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("worker pool already started")
	}
	s.started = true
	return nil
}

func (*sloppy) Metrics(context.Context) (sdk.Metrics, error) {
	return sdk.Metrics{
		Backpressure: sdk.BackpressureElevated,
		Values: []sdk.Metric{
			sdk.Gauge("QueueDepth", "not snake_case", 1),
			sdk.Counter("jobs", "", 1, "kind", "x"),
			sdk.Counter("jobs", "", 2, "kind", "x"),
		},
	}, nil
}

func (*sloppy) Health(context.Context) sdk.Health { return sdk.Health{Status: sdk.HealthStatus(9)} }

func main() { sdk.Serve[limits](&sloppy{}) }
