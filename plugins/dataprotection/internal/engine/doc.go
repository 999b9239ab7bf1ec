// Package engine backs up a folder into a repository (package repo),
// restores a snapshot, verifies snapshots and enumerates the blobs they use.
//
// # Backup pipeline
//
// One walker goroutine walks the source in sorted, depth-first order
// through an os.Root per folder (the walk cannot leave the source; a
// symlink is stored as a symlink and never followed; a regular file is
// opened and then fstat'ed, and skipped with a warning if it is no longer
// the file that was listed). It reads each file and cuts it with
// restic/chunker (the repository's polynomial; 512 KiB min, 8 MiB max,
// 1 MiB average). Options.Workers goroutines hash each chunk (SHA-256) and
// compress+store it (repo.Writer.Add deduplicates). The assembler (the
// goroutine that called Backup) receives the walker's events in walk order,
// waits for each chunk's worker, so each file's Content is in file order,
// and builds the tree blobs bottom-up. Memory is bounded: 2×Workers+2 chunk
// buffers (allocated lazily at the size needed, at most 8 MiB each), a
// bounded event queue, and the nodes of the open folders. A pre-walk
// running beside the backup counts files and bytes for Progress totals.
//
// # Incremental
//
// Every snapshot lists the whole source. With meta.Kind "incremental" and a
// parent, a regular file whose size, mtime (ns) and inode equal those of the
// parent's node at the same path (and whose chunks the repository still
// has) takes the parent's Content without being read. A renamed file is
// read again (its chunks deduplicate). The device number is recorded but
// not compared: some file systems renumber devices at each mount.
//
// # Files that change, files that cannot be read
//
// A file whose size or mtime changed while it was read (or whose length
// read differs from its listed size) is stored as read, and reported as
// WarnFileChanged; not read again, since a file that is always being
// written would never finish. Its node keeps the mtime from before the
// read and the size read, so the next incremental backup reads it again.
// A file or folder that cannot be opened or read (permission, I/O error)
// fails the backup with an error naming it: a backup that silently misses
// files is worse than one that fails. Entries that vanish between listing
// and opening, and special files (devices, FIFOs, sockets), are skipped
// with WarnSkipped. Hard links are stored as separate files (their chunks
// deduplicate). Owners are not stored.
//
// # Checkpoints and resume
//
// Options.Checkpoint is called at least every CheckpointEvery while events
// flow (so also in the middle of a large file), and after every
// CheckpointBytes of source read (16 MiB by default), so that what a crash
// costs is bounded in bytes as well as in time. A checkpoint first stores,
// for each open folder, the entries done since the previous checkpoint as a
// segment blob pointing to the previous segment (so no checkpoint stores an
// entry twice), and likewise the chunk IDs of the file in progress; then it
// flushes the Writer, so that every blob it names is durable; then it
// encodes the walk position: the stack of open folders (name, last
// segment), the file in progress (name, size, mtime, inode when its reading
// began, offset of its last chunk boundary, last segment) and the snapshot
// totals. Its size is bounded by the depth of the walk, not the number of
// files. The encoding is versioned JSON (cpVersion).
//
// Backup with resume rebuilds the open folders from their segments and
// walks again, skipping every entry the checkpoint says is done without
// stat'ing it; the file in progress continues at its last chunk boundary if
// its size, mtime and inode are unchanged (a chunker started at a boundary
// cuts the same chunks as one that ran from the start, since the Rabin
// state resets at every boundary), else it is read again. A checkpoint that
// is corrupt, of another version, of another job, names a blob the
// repository lacks, or whose open folders are gone from the source, is not
// used: the backup starts from scratch and reports WarnResumeRestarted.
// The kind and parent may differ from the interrupted run's (a newer
// snapshot may have completed meanwhile): they only decide which files are
// read, and the entries done stay valid.
// Segments are named by no snapshot: Prune removes them after the job;
// while a job is interrupted, UsedByCheckpoint lists what to keep.
//
// # Restore
//
// A restore writes only through an os.Root: OpenTarget opens the target, a
// path inside the caller's restore root, from an os.Root on that root
// (creating it, mode 0700, and its missing parents through that Root, so
// no symlink leads them out), refuses a target that is not a folder or is
// a symlink to one, and checks that the folder opened is the one checked.
// Restore takes that Root, not a path, and opens every sub-folder from it:
// a path component swapped for a symlink after the checks cannot send a
// write anywhere else. The target must be empty (else
// ErrTargetNotEmpty). Every tree is decoded and checked (repo.DecodeTree)
// before any of its entries is created: a name that is empty, ".", "..",
// holds '/' or NUL, or appears twice is repo.ErrCorrupt, so a hostile
// repository cannot name a path outside the target either. Files are
// written under a temporary name, chunk by chunk (bounded memory),
// chmod'ed, renamed, then given their mtime; folders get their mode and
// mtime after their content; symlinks are created as stored and never
// followed (mtimes are set with utimensat and AT_SYMLINK_NOFOLLOW relative
// to the folder's descriptor). Options.Workers files are written at once
// (default at least 8: creating files waits on the file system more than
// on the CPU). Restored files are not fsync'ed one by one: one syncfs of
// the target's file system makes the restore durable before Restore
// returns success. A failed restore leaves what it wrote.
//
// # Progress and warnings
//
// OnProgress is called from one goroutine at most every ProgressEvery and
// once at the end (with the totals equal to what was done). FilesDone and
// BytesDone include what a resumed checkpoint had done; BytesRead and
// BytesAdded are this run's (the snapshot's AddedBytes sums all runs).
// OnWarning receives what does not fail a backup (WarningKind).
//
// # Verify and Used
//
// Verify reads every pack once (repo.VerifyPacks: the pack's own checks,
// and every blob decompressed and hashed as a stream), then walks every
// snapshot loading only tree blobs; a data chunk is checked against the
// index and the set of damaged blobs the pack pass found. Each problem is
// reported once, with the snapshot and path that reached it (a damaged
// blob no snapshot uses, by its pack). Used enumerates the same blobs without
// loading data, for Prune and for retention's size accounting. Both keep a
// set of the distinct blob IDs seen (trees and data apart, since a chunk
// may hold exactly a tree's bytes): memory grows with the number of
// distinct blobs, about 100 bytes each (1 TiB of 1 MiB chunks: ~100 MiB).
package engine
