// Package concurrency decides how many dataprotection jobs run at once and
// queues the others.
//
// # Pieces
//
//   - Limiter: a FIFO queue of jobs with a live limit. Acquire waits for a
//     slot in arrival order; SetLimit raising the limit starts waiting jobs
//     at once, lowering it lets running jobs finish. Stats counts the
//     running and waiting jobs (the plugin's metrics; each job's own state,
//     "queued" or "running", is the plugin's record). JobTime sums the jobs' running time, from which the controller gets the mean
//     number of jobs running.
//   - Controller: the decision rule below. Its Step takes one interval's
//     Sample and reads no clock and no file, so tests script utilisation
//     series; Run is the thin loop that fills samples from a Sampler
//     (/proc/diskstats), the Limiter and the jobs' byte counter, once per
//     adjust_interval, in the caller's goroutine until its context ends.
//   - WatchFolders: the whole disks under the repository and the sources,
//     found by package blockdev (st_dev, or for btrfs and other file
//     systems on an anonymous device the block device their mountinfo
//     source names; then partitions to their disk, device-mapper and md
//     devices to their slaves, loop devices to their backing file's
//     disks). Their count bounds the limit. A folder whose disks cannot be
//     resolved (overlay, NFS, FUSE, missing, not in sysfs) is reported in
//     Watch.Unresolved, Watch.Err and the Notes, and every physical disk
//     is watched as well: watching nothing would read utilisation 0 and
//     let the limit climb whatever the load, while watching every disk at
//     worst runs fewer jobs. tmpfs folders have no disk and add none.
//
// # Utilisation
//
// A device's utilisation over an interval is the growth of field 13 of its
// /proc/diskstats line (milliseconds with at least one request in flight)
// over the interval's wall milliseconds, capped at 100% (kernels before
// 2024 could count more). The controller takes the busiest watched device
// and smooths it with an exponential moving average:
// smoothed = ema_alpha × raw + (1 − ema_alpha) × smoothed (the first
// sample is taken as is). A sample that could not be measured holds the
// limit and leaves the average alone.
//
// # Decision rule
//
// Every interval, in adaptive mode (max_concurrent_operations 0), in order:
//
//  1. a limit above the upper bound (4 × the distinct disks, at least 4)
//     is lowered to it;
//  2. the verdict on the last raise (throughput signal, below): a raise
//     that did not pay off is undone;
//  3. smoothed above utilization_high: the limit drops by one (not below
//     1), unless the last raise paid off (below);
//  4. smoothed below utilization_low: the limit rises by one, but only
//     when a job waits for a slot (a limit nobody is held back by proves
//     nothing, and would let a later burst start all at once), not past
//     the upper bound, and not past a level where raising gave
//     diminishing returns;
//  5. otherwise it holds.
//
// The limit starts at 1. max_concurrent_operations > 0 fixes the limit
// instead (applied at once, also on a live change); setting it back to 0
// resumes adapting from the current limit. Limits change live through
// SetLimits. They are checked once, where they are decoded
// (protection.Limits.Validate names the offending key); the controller
// only clamps values outside 0 <= low < high <= 1, 0 < ema_alpha <= 1 and
// adjust_interval > 0 back to the defaults, so that it never runs on
// undefined limits.
//
// # The second signal: job throughput
//
// Utilisation only says whether a device had a request in flight. On a
// device that serves many requests in parallel (NVMe, virtio, a RAID or
// cloud volume) it reads near 100% long before the device is saturated,
// and a job bound by the CPU (chunking, hashing, compressing) leaves the
// disk idle although more jobs would only slow each other. So each raise
// is checked against what the jobs achieved: the bytes they processed per
// second, from a counter the jobs advance, and the mean number running
// (JobTime growth / interval).
//
// The interval after a raise from n to n+1 is compared with the one before
// it. If jobs used the new slot (mean running jobs grew by at least 0.5),
// the raise pays off when the total throughput grew by at least half of
// what a job processed per second before the raise, times the extra
// running jobs; per-job throughput may fall, but the added job must add
// something real.
//
//   - It did not pay off (diminishing returns: the bottleneck is the CPU,
//     the device or something else): the limit goes back to n at once, and
//     no raise goes past n for the next 12 intervals.
//   - It paid off: in that interval and the 12 after it, a smoothed utilisation above
//     utilization_high does not lower the limit under n+1: the device took
//     the extra job with more throughput, so its utilisation is not
//     saturation. This stops the n ⇄ n+1 oscillation a parallel device
//     causes when one more job pushes its utilisation over the band.
//   - No job used the slot, or the throughput is unknown (no byte counter,
//     no job ran): no verdict; the utilisation rule alone decides.
//
// Request latency (the growth of field 14, weighted milliseconds, over the
// requests completed) is measured and recorded with each decision, but
// does not decide: it depends on request sizes, which change with the mix
// of files being read, so a rise says little on its own.
//
// What this does not do: a device that reads 100% busy with a single job
// is never probed with a second one, so an NVMe that one job keeps "busy"
// stays at limit 1 (a backup job is CPU-heavy, so this is rare); set
// max_concurrent_operations when the device is known.
//
// # Records
//
// Every decision (time, raw and smoothed utilisation, busiest device,
// throughput, old and new limit, kind, reason) is kept in a ring of the
// last Options.History and counted by kind (raise, lower, hold, fixed) for
// metrics; OnLimit passes each new limit on (to Limiter.SetLimit).
package concurrency
