// Package quota holds per-caller byte-rate and operation-rate quotas of the
// filesystem plugin: two token buckets per caller (golang.org/x/time/rate),
// one counting bytes and one counting operations.
//
// # Admission and transfers
//
// Admit takes one operation token and the first bytes of a request (capped
// at the byte burst) from the caller's buckets. If both can be had within
// limits.max_throttle_wait (and within the request's deadline, when it has
// one) Admit waits for them; otherwise it takes nothing back out — its
// reservations are cancelled, so a following Admit at the same instant sees
// the same delay — and returns an error wrapping sdk.ErrQuotaExceeded with a
// Retry-After of the needed delay rounded up to whole seconds (at least 1 s).
// The message names the caller, the quota (bytes or operations), its rate and
// its key path (limits.quota.callers.<name> or limits.quota.default).
//
// Bytes takes the rest of a transfer after admission, when the response can
// no longer be refused: it waits as long as the rate needs, bounded only by
// the context. rate.Limiter.WaitN fails at once when n exceeds the burst, so
// Bytes reserves burst-sized pieces one after the other, re-reading the
// caller's bucket before each piece so that a live limit change applies
// mid-transfer (and going unlimited ends the waiting).
//
// # Bursts
//
// The byte burst is one second of rate, but at least 64 KiB (so that a read
// chunk is never split absurdly small); the operation burst is one second of
// rate, at least 1 (max(1, floor(ops_per_second))). Buckets of callers seen
// for the first time start full. With 1 MiB/s (burst 1 MiB), 5 MiB therefore
// take 4 s of waiting for a rested caller — the first MiB is the burst — and
// 5 s for a caller whose bucket is empty (one that has just been busy, or
// one of the empty starts below). "About 5 s for 5 MiB" means this: the
// sustained rate is exactly the configured one, and a transfer of N seconds'
// worth of rate takes between N-1 and N seconds.
//
// # Overrides
//
// A caller's override (limits.quota.callers.<name>) replaces the whole
// default Rate, not field by field: 0 means unlimited, so an unset field
// cannot be told from an unlimited one. An override of Rate{} makes a caller
// unlimited whatever the default.
//
// # Live changes
//
// Update installs a new configuration and retunes every known bucket with
// SetLimitAt/SetBurstAt at the instant of the update: tokens accrue at the
// old rate up to that instant, tokens already spent (or reserved into the
// future) stay spent, and a bucket holding more than the new burst is capped
// to it. A change therefore never hands out a burst of free tokens. Going to
// unlimited drops the bucket (its counters are kept).
//
// A caller going from unlimited to limited starts with an EMPTY bucket: its
// bucket is made as if it had been created empty at the instant of the update
// and had refilled at the new rate since. Unlimited callers are not tracked,
// so this is recorded per key path (the default and each override) rather
// than per caller, and it only matters for one refill period (burst/rate)
// after the update; after that such a bucket is full, as it would be anyway.
// We chose this because an unlimited caller has just been running at any
// speed: a full bucket would add one more burst on top.
//
// # Cost and bounds
//
// The configuration is an immutable snapshot behind an atomic pointer: an
// unlimited caller costs one atomic load and one map lookup, no lock and no
// allocation (BenchmarkAdmitUnlimited; an RWMutex around the same lookup was
// slower under parallel load, because every reader writes the mutex's reader
// count). Limited callers' buckets live in a hashicorp/golang-lru cache of at
// most MaxCallers entries, so caller names (which come from the host's auth
// tokens) cannot grow memory without bound. An evicted caller comes back
// with a fresh bucket that is never a free burst: when a bucket that was not
// full is evicted, every bucket created in the following refill period starts
// as if emptied at the eviction instant (a returning caller cannot be told
// from a new one once its entry is gone). Its counters go with it.
//
// # Counters
//
// Stats reports, per tracked (limited) caller: admissions, throttles (an
// admission or byte take that had to wait), refusals and seconds spent
// throttled. Unlimited callers never wait and are not counted, which keeps
// their path free of shared writes.
//
// Nothing here starts a goroutine; waiting happens on the caller's goroutine
// with a timer that is stopped on return.
package quota
