// Package repo is the dataprotection repository: content-addressed blobs
// (file chunks and directory trees) compressed with zstd into pack files,
// one index file per pack, and snapshot manifests. FORMAT.md beside this
// file describes the layout byte by byte; this comment gives the decisions.
//
// # Blobs and packs
//
// A blob's ID is the SHA-256 of its plaintext; the caller hashes, Add does
// not hash again. Blobs are compressed one by one (one shared zstd Encoder,
// EncodeAll, safe for concurrent use) and appended to the open pack; a pack
// is finished when it reaches the target size (16 MiB) or 131072 blobs. A
// pack ends with a trailer naming each blob's type, ID, offset, length and
// raw length, protected by a CRC-32C; the pack's name is the SHA-256 of
// that trailer. So a pack describes itself: an orphan (a pack whose index
// was never written) is adopted at Open from its trailer. The index file
// repeats the trailer, so Open reads small files only.
//
// The blob type is recorded but not part of the key: the bytes are the ID,
// so a tree and a file chunk with the same bytes are one blob.
//
// # Durability
//
// Every file is written to tmp/, fsynced, renamed into place and its folder
// fsynced. A pack is durable under its name before its index is written;
// the in-memory index learns of a pack only after both. Writer.Flush
// finishes the open pack and waits for packs being finished elsewhere:
// afterwards everything added (also what this Writer deduplicated against
// other Writers' pending blobs) is durable and indexed. Snapshot manifests
// are written only for complete backups, and SaveSnapshot refuses one
// whose root tree is not yet indexed. Open clears tmp/, removes index files
// whose pack is missing or of another size, adopts orphan packs whose
// trailer is valid and hashes to their name, and removes the others
// (OpenReport lists all of it; Options.Logger logs it).
//
// # Concurrency
//
// Writers share the Repo's one open pack: compression runs in the callers'
// goroutines in parallel, appending is serialised. An Add reserves its ID
// first, so a blob added twice concurrently is compressed and stored once;
// the second Add waits until the first has appended it. When finishing a
// pack fails, its blobs are dropped from the pending set and every Writer
// made before the failure fails from then on (a Writer may have
// deduplicated against one of the lost blobs): the job fails rather than
// write a snapshot naming a lost blob. A new Writer works again.
//
// One process at a time: Open takes an exclusive flock on <repo>/lock.
//
// # Memory
//
// The in-memory index holds 52 bytes per distinct blob (ID, pack number,
// offset, length, raw length, type) in a sorted slice, plus a map of recent
// additions merged into it when it reaches 1/8 of the slice: 52–65 bytes
// per blob, where a Go map would take 80–120. Load reads only the blob
// (ReadAt) into a pooled buffer. Prune holds the set of used IDs and the
// index entries of the packs it removes or rewrites (each index file read
// once). VerifyPacks reads each pack once, front to back, through a 1 MiB
// buffer, at most four packs at once, and decompresses each blob as a
// stream into SHA-256 (the zstd window, 1 MiB as written, bounds the
// memory; a frame with a window above 8 MiB, which this package never
// writes, is decoded in memory as Load does). It returns the damaged
// blobs the index uses apart from the problems of the packs themselves,
// so that a caller reports each once; Stats.ReadBytes counts pack bytes
// read, which tests use to check that nothing is read twice.
//
// # Prune
//
// Packs holding only unused blobs are deleted; packs whose unused share of
// bytes exceeds 20% are rewritten (their used blobs copied, compressed
// bytes as they are, after checking each against its ID); others are kept.
// Order: new packs and their indexes, then the old index files, then the
// old packs. A crash after step one leaves duplicates (harmless: Open keeps
// one location per blob, the next Prune drops the other copy); after step
// two it leaves orphan packs that Open adopts again. A used blob is in an
// indexed pack at every moment. A pack to rewrite whose used blob fails its
// check is left alone and reported. The caller must not back up while
// pruning: a running backup may rely on a blob no kept snapshot uses yet.
//
// # Snapshots
//
// snapshots/<id>.json, written atomically. Snapshots lists complete
// manifests sorted by CompletedAt then ID, and skips (logs; ScanSnapshots
// reports) manifests it cannot read, so one damaged file does not hide the
// rest. IDs follow sdk.ValidateID (1 to 128 of letters, digits, '-' and
// '_').
//
// # Trees
//
// One JSON blob per directory with its entries sorted by name; EncodeTree
// sorts a copy and rejects invalid or duplicate names, so the same
// directory always gives the same bytes and ID. Names and symlink targets
// that are not valid UTF-8 are stored as base64 bytes (name_bytes,
// target_bytes) so that no file name is altered. DecodeTree validates
// names (one path element) and order, so a restore can trust them.
package repo
