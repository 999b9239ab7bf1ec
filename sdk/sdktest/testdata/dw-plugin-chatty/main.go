// Command dw-plugin-chatty is a correct plugin that prints to stdout before
// sdk.Serve, which breaks the go-plugin handshake.
package main

import (
	"context"
	"fmt"

	"github.com/datawarehouse/dw/sdk/v6"
)

type limits struct {
	Workers int `dw:"workers" min:"1"`
}

type chatty struct{}

func (chatty) Info() sdk.Info                               { return sdk.Info{Name: "chatty", Version: "1.0.0"} }
func (chatty) Configure(context.Context, sdk.Config) error  { return nil }
func (chatty) DefaultLimits() limits                        { return limits{Workers: 4} }
func (chatty) ApplyLimits(context.Context, limits) error    { return nil }
func (chatty) Metrics(context.Context) (sdk.Metrics, error) { return sdk.Metrics{}, nil }
func (chatty) Health(context.Context) sdk.Health            { return sdk.Health{Status: sdk.HealthServing} }

func main() {
	fmt.Println("starting the chatty plugin")
	sdk.Serve[limits](chatty{})
}
