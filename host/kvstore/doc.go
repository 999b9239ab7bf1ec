// Package kvstore is the dw host's persistent key-value store, the host
// service that every plugin reaches as [sdk.KV] in its Configure.
//
// The store is one bbolt file (data_dir/host/kv.db). Every plugin has its own
// key space: a bucket named after the plugin inside the top-level "plugins"
// bucket. [Store.ForPlugin] returns an sdk.KV bound to one such bucket, and
// nothing it is given — a key that looks like a path
// ("dw://internal/backup/x", "../other/x"), a prefix, an empty prefix — can
// reach a key of another plugin, because the bucket is chosen by the host
// and keys are only ever looked up inside it.
//
// Durability: every Put and Delete is its own bbolt read-write transaction,
// committed with fsync before it returns (NoSync is never set). bbolt's
// Batch is not used on purpose: it delays a lone writer by its batch window
// (10 ms) to coalesce concurrent ones.
//
// Listing: List reads at most [ListBatch] entries (and at most
// [ListBatchBytes] of values) per read-only transaction, calls the callback
// outside that transaction, and resumes after the last key seen in a fresh
// transaction. So memory is bounded whatever the key space holds, a slow
// callback never pins an old database snapshot (which would make the file
// grow), and the callback may itself Put and Delete. A listing sees every
// key that exists for its whole duration exactly once, in key order; a key
// added or removed during the listing may or may not be seen.
//
// A second process opening the same file fails after a short lock timeout
// with an error saying the store is in use by another dw process.
package kvstore
