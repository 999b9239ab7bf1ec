// Package filestore is the filesystem plugin: files under a root folder,
// served as dw.sdk.v1.FileStore, with every operation going through a
// priority I/O queue, per-caller quotas and an I/O path chosen from what
// the kernel offers.
//
// # Files
//
// Every name is opened through an os.Root on the root folder, so no name —
// "..", absolute paths, symlinks pointing out — reaches outside it; the
// lexical rule (sdk.ValidateFilePath) refuses the obvious forms before any
// system call, and os.Root refuses the rest (a symlink inside the root
// that points out fails with "path escapes from parent"). Both are
// INVALID_ARGUMENT, logged with the caller, and counted in
// refused_paths_total.
//
// Symlinks inside the root that stay inside are followed for reads,
// listings and as parent folders. A Put whose final name is a symlink
// replaces the link with the new file (the rename does): it never writes
// through a link.
//
// A Put writes into the staging folder .dw-staging under the root, fsyncs,
// renames into place and fsyncs the folder: readers see the old file or the
// new one, and an acknowledged Put survives a crash. An aborted Put removes
// its staging file; the debris of a crash is removed at the next start.
// The staging folder is reserved (no request may name it) and hidden from
// listings of the root. It must be on the root's file system (a separate
// mount under the root is not supported for it).
//
// Listing reads the folder in batches and keeps only the page's smallest
// names after the cursor (a heap of limit+1 entries): a folder of any size
// is listed in memory bounded by the page, in byte order of names, at the
// cost of reading the whole folder for each page. The page token is the
// folder and the last name served; it holds no secret, because it can only
// name a place to start in a folder the caller may list anyway. Pages are
// 100 entries by default and at most 1000.
//
// # Admission, in order
//
//  1. The caller's quota (package quota): one operation and the first 64 KiB
//     of data, waiting up to max_throttle_wait, else QUOTA_EXCEEDED with a
//     retry hint (429 + Retry-After at the host). A throttled caller holds
//     no place in the I/O queue while it waits.
//  2. The I/O queue (package scheduler): refused at once with BACKPRESSURE
//     and a retry hint when max_queue_depth operations already wait.
//  3. Dispatch: each metadata operation, and each 1 MiB chunk of a
//     transfer, runs in one dispatch slot; at most queue_depth.<class> run
//     at once, the class being the root's device class (package device).
//     A transfer releases its slot between chunks, so a high-priority
//     request waits for at most one chunk of each running transfer, and a
//     slow client never holds the device. Further chunks are charged to the
//     byte quota as they go (after admission the response cannot be
//     refused any more, so they wait as long as the rate needs).
//  4. Low priority is background work: while high-priority work is
//     present, and for 100 ms after it, low steps are dispatched at most one
//     per 20 ms (scheduler.Queue.SetBackground), which keeps high-priority
//     latency near its unloaded value under a low-priority flood (README,
//     BenchmarkHighPriorityLatency).
//
// # Memory
//
// Chunk buffers come from a pool of 64 buffers of 1 MiB (aligned for
// O_DIRECT), so all transfers together hold at most 64 MiB of file data
// whatever their number; a transfer that finds the pool empty waits. Put
// data is written from the received gRPC message without a copy on the
// buffered path.
//
// # I/O path
//
// At start and every redetect_interval the plugin probes io_uring (a real
// io_uring_setup) and O_DIRECT (a real probe file in the staging folder);
// see package probe. The page cache is the default: normal- and
// high-priority transfers of any size are buffered, so a hot file is
// served from memory as any file server serves it (with O_DIRECT a cached
// 1 GiB file was read from the disk every time: 0.33x http.FileServer).
// When O_DIRECT is available, low-priority transfers of 8 MiB and more —
// bulk work whose data would push hot files out of the cache — use it,
// with aligned buffers and offsets (a ranged read starts at the aligned
// block below its offset; a write's unaligned tail is written as one
// padded block and the file cut to size); smaller ones are buffered, as
// the page cache serves small and repeated reads better (useDirect).
// When a probe's answer changes, the path switches at once for new
// transfers (running ones finish on theirs), and the switch is logged and
// counted.
//
// io_uring is probed and reported but no data path uses it: no Go
// io_uring library is available to us, and Go's runtime already runs
// blocking file I/O on its own threads; a hand-written ring on
// golang.org/x/sys/unix would be kept only if a benchmark showed it pays,
// and with 1 MiB chunks a system call per chunk is not where a transfer's
// time goes (the gRPC stream to the host is).
//
// # Metrics and health
//
// Metrics: queue length, waiters, admissions, refusals, dispatches, wait
// and service time per class; in-flight; backpressure from queue fill;
// quota admissions, throttles and refusals per caller; the device class
// with how it was decided (device_info); each capability, the probe's time
// and the path in use; request_duration_seconds, a latency histogram
// (sdk.LatencyBuckets, 0.5 ms to 10 s) of every request by operation (put,
// get, stat, delete, list) and priority (high, normal, low; "" for a
// priority that is none of them), timed from the handler's start to its
// end: quota and queue waits, refusals and, for put and get, the whole
// transfer included. The host exports it as
// dw_filesystem_request_duration_seconds_bucket{le}, _sum and _count, from
// which histogram_quantile gives each operation's p99. Health has
// components root, device, io_uring, o_direct and io_path, each saying
// what was found.
package filestore
