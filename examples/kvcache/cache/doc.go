// Package cache is the logic of the kvcache example plugin: an in-memory LRU
// cache of byte values whose bounds are dw limits, applied live.
//
// [Cache] implements sdk.Subsystem[Limits] and serves the
// dw.kvcache.v1.Cache gRPC service (see the proto folder beside main.go).
// It is written the way a third-party plugin author would write one: it
// imports the dw SDK and nothing else of dw.
//
// Limits:
//
//   - max_entries (int, >= 1, default 10000): the most entries kept.
//   - max_bytes (size, >= 1KiB, default 64MiB): the most bytes kept, counting
//     len(key) + len(value) for every entry.
//
// Lowering either limit evicts the least recently used entries at once until
// both hold. Metrics: gauges entries and bytes, counters evictions, hits and
// misses. Backpressure is elevated while the cache holds at least 90 % of
// either bound (further puts will evict), none otherwise; it is never
// saturated, as a cache makes room instead of refusing work.
package cache
