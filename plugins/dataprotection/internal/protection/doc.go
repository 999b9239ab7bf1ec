// Package protection is the dataprotection plugin: it serves
// dw.sdk.v1.Backup over the repository (package repo), runs backups and
// restores (package engine) as jobs, adapts how many run at once (package
// concurrency) and applies retention (package retention).
//
// # Jobs
//
// A job is recorded in the host KV store at dw://internal/backup/<jobId>
// when it is accepted (state queued), again when it starts running, at
// every checkpoint of a backup (at least every checkpoint_interval: the
// engine flushes the repository first, so everything the checkpoint names
// is durable), and when it ends. The 500 newest finished jobs are kept.
//
// Jobs wait for the concurrency limit in a FIFO queue (visible as
// queued). A backup's parent is chosen when it starts running, not when
// it is accepted: an incremental extends the newest complete snapshot of
// its source at that moment; without one it runs as a full backup (and its
// snapshot says so).
//
// # Crash recovery
//
// When the plugin (or the host) dies, running and queued jobs stay
// recorded as such. At the next start the plugin resumes each of them in
// the order they were accepted: a backup continues from its last
// checkpoint — the files done are not read again, a file in progress
// continues at its last chunk boundary — and keeps its snapshot id, so
// the snapshot appears once, when complete. A checkpoint that cannot be
// used (damaged, or the source changed so that its position is gone)
// makes the backup start again from the beginning; chunks already stored
// are still reused. A restore starts again into an emptied target (the
// target was created by that job: a restore never writes into a folder
// with content). A stopping plugin (Shutdown) leaves its jobs the same
// way, so a restart for a settings change resumes them too.
//
// Data a failed or cancelled backup wrote is referenced by no snapshot;
// the retention run that follows every backup prunes it. Interrupted
// backups waiting to resume keep what their checkpoint names
// (engine.UsedByCheckpoint), so pruning never breaks a resume.
//
// # Pruning and running backups
//
// A backup's new chunks belong to no snapshot until it completes, so a
// prune must not run beside one: backups hold the repository lock shared,
// retention and forget take it exclusively (a prune waits for running
// backups; backups queued meanwhile wait for the prune).
//
// # Restores
//
// A target is a FileStore-style relative path (sdk.ValidateFilePath: no
// "..", no absolute path) inside restore_root; its parent folders are
// made through os.Root on the restore root, so that a symlink cannot lead
// them out, and the resolved target must lie inside the root. A target
// that exists and is not an empty folder is refused (409). restore_root
// itself is made again (mode 0700, as at start) by every restore that
// finds it missing, so removing it while the host runs costs nothing; a
// file in its place, or a restore_root that cannot be made, is refused
// with 409 naming restore_root and what to do.
//
// # Retention
//
// retention.keep_last, keep_within and max_total_bytes (package
// retention), after every backup, every retention_interval, and on
// POST /v1/backups/prune (dry_run lists what would go). Forgetting
// re-bases the snapshots that named a forgotten one as parent or chain
// start (the manifests are rewritten before the forgotten ones go), then
// the repository drops the blobs no kept snapshot uses (repo.Prune).
package protection
