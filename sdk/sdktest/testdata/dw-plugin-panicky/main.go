// Command dw-plugin-panicky panics in ApplyLimits when asked for more than
// 100 workers: the SDK recovers it, the call fails, and the plugin keeps
// serving.
package main

import (
	"context"
	"fmt"

	"github.com/datawarehouse/dw/sdk/v6"
)

type limits struct {
	Workers int `dw:"workers" min:"1" doc:"worker goroutines"`
}

type panicky struct{}

func (panicky) Info() sdk.Info                              { return sdk.Info{Name: "panicky", Version: "1.0.0"} }
func (panicky) Configure(context.Context, sdk.Config) error { return nil }
func (panicky) DefaultLimits() limits                       { return limits{Workers: 2} }

func (panicky) ApplyLimits(_ context.Context, l limits) error {
	if l.Workers > 100 {
		panic(fmt.Sprintf("pool of %d workers does not fit", l.Workers))
	}
	return nil
}

func (panicky) Metrics(context.Context) (sdk.Metrics, error) { return sdk.Metrics{}, nil }
func (panicky) Health(context.Context) sdk.Health            { return sdk.Health{} }

func main() { sdk.Serve[limits](panicky{}) }
