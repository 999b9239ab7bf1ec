// Command dw-plugin-fabric is dw's cluster-membership plugin: dw nodes find
// each other over hashicorp/memberlist, watch each other with heartbeats
// laid out by a topology (star, mesh or federated), enforce a maximum node
// count per topology and switch topologies as the fabric grows or shrinks.
// See packages service and node.
package main

import (
	"github.com/datawarehouse/dw/plugins/fabric/internal/service"
	"github.com/datawarehouse/dw/sdk/v6"
)

func main() {
	sdk.Serve[service.Limits](service.New())
}
