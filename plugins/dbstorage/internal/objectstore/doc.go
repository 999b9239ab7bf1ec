// Package objectstore is the dbstorage subsystem: it implements
// sdk.Subsystem (limits, metrics, health) and serves dw.sdk.v1.ObjectStore
// over the strategies of the store package.
//
// # Requests
//
// Every request names a strategy (empty: default_strategy). An unknown
// name is INVALID_ARGUMENT; a strategy whose last health check failed is
// UNAVAILABLE (HTTP 503) at once, so requests to it do not pile up, while
// the other strategies keep serving. A request that finds a strategy
// unreachable asks for a health check at once (at most one a second).
//
// # Memory
//
// Object data is never held whole. A Put holds one gRPC message and the
// strategy's one chunk; a Get holds one piece (at most a chunk) between
// the database and the gRPC stream. Each of these is first reserved from a
// buffer.Budget of max_buffer_bytes shared by all requests: when it is
// spent, transfers wait (backpressure, reported as saturated in metrics)
// and gRPC flow control carries the pressure to the clients. The budget is
// resized live.
//
// The SQLite driver (database/sql) hands over each chunk in a new slice, so
// a transfer makes a megabyte of garbage per chunk. With Go's default
// GOGC=100 and a small live heap the collector ran constantly and took a
// fifth of a large GET's throughput; the plugin runs with GOGC=400 under a
// soft memory limit (debug.SetMemoryLimit) of 48 MiB, so collections are
// rarer while the heap stays bounded. The limit is soft: when many
// transfers hold more than that (max_buffer_bytes allows 64 MiB by
// default), the collector works harder — Go caps it at half the CPU —
// rather than the heap growing past what is in use. GOGC and GOMEMLIMIT in
// the environment take precedence.
//
// # Listings
//
// List pages by key: a page token (package pagetoken) carries the last key
// of the page, so the next page is a range scan that starts after it —
// its cost does not grow with the position, and objects that exist
// throughout a listing are returned exactly once while others are added
// and removed. offset is offered for callers that need it (its cost grows
// with the offset) and does not mix with page_token. count=true adds
// total_count (a count of the prefix); without it nothing is counted.
// ListStream reads keyset batches of 1000 keys, so it holds no database
// snapshot for the whole stream and its memory is one batch.
//
// # Health
//
// At start, every health_interval, on CheckHealth (GET
// /v1/subsystems/dbstorage/health) and when a request finds a strategy
// unreachable, every strategy is pinged in parallel, each under
// health_timeout. Each strategy's result is recorded as soon as its own
// check ends: a hung strategy is reported unhealthy at its deadline, the
// others at once. Concurrent callers share the check in flight. Changes
// are logged (warn when a strategy becomes unhealthy, info when it
// recovers) and exported as strategy_healthy{strategy}. A SQLite strategy
// also reports its volume (store.SpaceReporter): the component's message
// carries free_bytes (statfs of the database folder) and wal_bytes, also
// exported as volume_free_bytes{strategy} and wal_bytes{strategy}, and
// while its writes fail for lack of space it is reported degraded,
// "read-only until space is freed", with the last refusal: it keeps
// serving reads and is not taken out of service like an unhealthy one.
//
// # Metrics
//
// request_duration_seconds is a latency histogram (sdk.LatencyBuckets,
// 0.5 ms to 10 s) of every request, by operation (put, get, stat, delete,
// list, list_stream) and strategy: from the handler's start to its end,
// refusals included, and for the streams (put, get, list_stream) until the
// stream ends, so a large object's transfer is in it. A request that names
// no configured strategy is counted with strategy "". The host exports it
// as dw_dbstorage_request_duration_seconds_bucket{le}, _sum and _count,
// from which histogram_quantile gives each operation's p99.
// queries_total, query_errors_total and query_seconds_total time the
// database operation alone (a get to its first byte, a put to its commit).
//
// # Limits
//
// max_buffer_bytes, health_timeout, health_interval, default_page_size and
// max_page_size apply live. Beyond each field's range, default_page_size
// may not exceed max_page_size, and health_timeout may not exceed
// health_interval.
package objectstore
