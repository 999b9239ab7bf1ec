// Command dw-plugin-kvcache is an example third-party dw plugin: an
// in-memory LRU cache whose bounds are live limits, with its own gRPC
// service dw.kvcache.v1.Cache. See README.md.
package main

import (
	"github.com/datawarehouse/dw/examples/kvcache/cache"
	"github.com/datawarehouse/dw/sdk/v6"
)

func main() { sdk.Serve[cache.Limits](cache.New()) }
