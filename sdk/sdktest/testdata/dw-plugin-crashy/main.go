// Command dw-plugin-crashy starts a worker in ApplyLimits that panics: a
// panic in a goroutine of its own, which no handler can recover, kills the
// process while the host waits for ApplyLimits to return.
package main

import (
	"context"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

type limits struct {
	Workers int `dw:"workers" min:"1" doc:"worker goroutines"`
}

type crashy struct{}

func (crashy) Info() sdk.Info                              { return sdk.Info{Name: "crashy", Version: "1.0.0"} }
func (crashy) Configure(context.Context, sdk.Config) error { return nil }
func (crashy) DefaultLimits() limits                       { return limits{Workers: 2} }

func (crashy) ApplyLimits(context.Context, limits) error {
	done := make(chan struct{})
	go startWorker(done)
	<-done
	time.Sleep(time.Second) // the runtime ends the process meanwhile
	return nil
}

func startWorker(done chan struct{}) {
	close(done)
	var pool map[string]int
	pool["worker"]++ // assignment to entry in nil map
}

func (crashy) Metrics(context.Context) (sdk.Metrics, error) { return sdk.Metrics{}, nil }
func (crashy) Health(context.Context) sdk.Health            { return sdk.Health{} }

func main() { sdk.Serve[limits](crashy{}) }
