// Command dw-plugin-dbstorage is dw's object store: objects of any size on
// SQLite or PostgreSQL strategies, streamed in bounded memory, listed page
// by page or as one stream. See package objectstore.
package main

import (
	"github.com/datawarehouse/dw/plugins/dbstorage/internal/objectstore"
	"github.com/datawarehouse/dw/sdk/v6"
)

func main() {
	objectstore.TuneGC()
	sdk.Serve[objectstore.Limits](objectstore.New())
}
