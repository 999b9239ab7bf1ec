// Command dw-plugin-dataprotection is dw's backup plugin: full and
// incremental backups of named folders into a deduplicating repository,
// restores, crash recovery of jobs, chain-aware retention and job
// concurrency adapted to the disks' utilisation. See package protection.
package main

import (
	"github.com/datawarehouse/dw/plugins/dataprotection/internal/protection"
	"github.com/datawarehouse/dw/sdk/v6"
)

func main() {
	sdk.Serve[protection.Limits](protection.New())
}
