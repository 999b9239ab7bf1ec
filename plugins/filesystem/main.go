// Command dw-plugin-filesystem is dw's file store: files under a root,
// behind a priority I/O queue with per-device depths, live re-detection of
// O_DIRECT and io_uring, and per-caller quotas. See package filestore.
package main

import (
	"github.com/datawarehouse/dw/plugins/filesystem/internal/filestore"
	"github.com/datawarehouse/dw/sdk/v6"
)

func main() {
	sdk.Serve[filestore.Limits](filestore.New())
}
