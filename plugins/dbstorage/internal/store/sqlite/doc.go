// Package sqlite is the SQLite storage strategy of the dbstorage plugin:
// objects in chunked rows of one database file, through the pure-Go
// modernc.org/sqlite driver ("sqlite" for database/sql; no cgo). The
// design shared with the other drivers is in the package doc of store; what
// is particular to SQLite:
//
//   - WAL mode, so readers never block the writer nor the writer readers,
//     and a Reader keeps its snapshot while the object is replaced or
//     deleted and its chunks are garbage collected.
//   - One writer connection (*sql.DB with MaxOpenConns(1)) running
//     IMMEDIATE transactions, and a separate pool of query_only reader
//     connections (Config.MaxReaders): writes queue in Go for the one
//     connection instead of spinning on SQLITE_BUSY, and every write
//     transaction is short (one chunk, one group of publishes and deletes,
//     16 chunks of garbage), so writers interleave. No lock is held while a Put
//     waits for its data.
//   - Durability: a Put's chunks are committed with synchronous=NORMAL
//     (no fsync), and the transaction that publishes the object, like a
//     Delete's, with synchronous=FULL. In WAL mode FULL syncs the WAL file
//     at commit, which makes every frame written before it durable as well,
//     the chunks included. So an acknowledged Put or Delete survives kill -9
//     and power loss, while a large upload pays one fsync rather than one
//     per chunk. WAL recovery keeps a prefix of the commits, so chunks never
//     survive without the uploads row that lets Open remove them. Garbage
//     collection commits with NORMAL too: a crash loses at most deletions
//     that the next pass redoes. A 4 KiB Put is thus one fsync of the WAL
//     (strace -f -e fsync,fdatasync on BenchmarkSmallPut counts one per Put
//     at concurrency 1, checkpoints aside).
//   - Group commit: the publishing transactions and Deletes (the durable
//     writes) go through a committer goroutine owned by the Store (started
//     by Open, stopped and waited for by Close). Once it holds the writer
//     connection it takes every durable write queued at that moment (up to
//     128, and 16 MiB of inline chunks) and runs them in ONE transaction
//     committed with synchronous=FULL, so concurrent Puts share one fsync
//     instead of each paying its own behind the one writer. It never waits
//     for company: a lone Put is committed at once. Each write runs in a
//     SAVEPOINT of its own, and its checks (announced size, SHA-256) run
//     there too: a write that fails is rolled back to its savepoint and
//     fails alone, the others commit. Every caller gets its result only
//     after the shared COMMIT; if the COMMIT (or an error that undoes the
//     whole transaction) fails, every write of the group fails and nothing
//     of it is stored. Statements run under the committer's context, not
//     the callers' (an interrupted statement can roll back the whole
//     transaction): a caller whose context ends while its write is still
//     queued withdraws it and returns at once; once taken, it waits for the
//     outcome, so a write never commits after its caller was told it
//     failed. The savepoints' undo records stay in memory (temp_store =
//     MEMORY), bounded by the group's size. Writes of the same key in one
//     group apply in queue order, exactly as one after another would.
//   - Small objects: a Put whose announced size fits in one chunk reads into
//     a buffer of that size, not a whole chunk (a 4 KiB Put used to allocate
//     and clear 1 MiB), and an object of one chunk, exactly one chunk long
//     included, is written with its object row with no uploads row.
//     Garbage collection deletes up to 16 chunks of up to 16 garbage
//     versions, and the garbage rows of the versions it empties, per
//     transaction, so a replaced small object costs it one transaction.
//   - The file belongs to one process: Open takes an exclusive flock on
//     Path+".lock" (a second Open of the same file, in this process or
//     another, fails) and then hands the chunks of every upload left over by
//     a process that died mid-Put (kill -9) to garbage collection.
//   - Pages of 64 KiB for new files: a 1 MiB chunk is 16 overflow pages
//     instead of 256, which measured about 1.5 times faster writes and 2
//     times faster reads of large objects than 4 KiB pages, with small
//     objects no slower. An existing file keeps its page size.
//   - No mmap: pages read through a memory map count in the process's RSS,
//     and reading a large object must not grow it.
//   - The file does not shrink when objects go: SQLite reuses the freed
//     pages for later writes. A Reader held open for a long time keeps the
//     WAL from being checkpointed past its snapshot, so the WAL grows by
//     what is written meanwhile; it is truncated to journal_size_limit
//     (walCap) after the next checkpoint. A Reader gives its snapshot back
//     as soon as it reaches the end of its range.
//
// # Full disk
//
// A full volume must cost the failed write only. SQLite alone does not
// manage that: a failed large transaction leaves the WAL at its
// high-water mark, journal_size_limit only truncates after a checkpoint
// that succeeds, and a checkpoint needs room to grow the database file by
// the pages the WAL holds past its end. With the WAL checkpointed every
// 64 MiB (1000 pages of 64 KiB) a 100 MiB PUT on a tight volume left the
// WAL at 50-60 MiB for good: every later write failed, deletes and
// restarts did not help, and a restart failed to open the strategy (the
// schema write at open hit the full disk), so reads were gone too. Now:
//
//   - The WAL is capped at walCap (16 MiB): wal_autocheckpoint in pages of
//     the file's page size, and journal_size_limit. Measured on the 2-core
//     VM, 128 MiB objects, base and fix back to back: put 212 → 175 MB/s
//     (more checkpoints, each with its fsyncs), get unchanged (669 → 672);
//     a 4 MiB cap cost 126-134 MB/s.
//     go test -run '^$' -bench 'PutGet/chunk=1024KiB' -benchtime 5x ./plugins/dbstorage/internal/store/sqlite/
//   - Every write of data (an upload's registration with its announced
//     size, each chunk, an object of one chunk) checks the volume inside
//     its transaction (checkSpace: statfs of the folder, the file's free
//     pages, and the growth the pending checkpoint owes) and is refused
//     before writing when it could leave too little room to checkpoint.
//     A PUT whose announced size cannot fit is refused at once. The error
//     wraps sdk.ErrUnavailable (503, as the filesystem plugin answers
//     ENOSPC) and says how many bytes are free and needed. Deletes and
//     garbage collection are never refused: they free space.
//   - When a write fails for space all the same (another process filled
//     the volume: SQLITE_FULL), or is refused, the collector runs
//     PRAGMA wal_checkpoint(TRUNCATE) on the writer connection, outside
//     any transaction, waiting at most 250 ms for readers, after garbage
//     collection has dropped the failed upload; a checkpoint that fails
//     or is kept busy by a reader is retried every second until it
//     succeeds, so the WAL goes back to zero as soon as space allows.
//   - Open writes nothing to a file of the current schema (the schema
//     write only runs on a new or older file). The uploads a dead process
//     left are handed to garbage collection when there is room; on a full
//     volume Open goes on and the collector retries. So a restart on a
//     full volume serves reads, and writes as soon as there is room.
//   - Space reports the volume's free bytes, the WAL's size and, while
//     writes fail for space (since the last one refused no Put
//     succeeded), the error: the plugin's health shows the strategy
//     degraded ("read-only until space is freed") and its metrics
//     volume_free_bytes and wal_bytes.
//
// PostgreSQL strategies are not concerned: the server owns its WAL and its
// disk, and reports a full disk as an error of the write.
//
// Small Puts, 4 KiB with the size announced, from 1 and 16 goroutines, on
// the 2-core VM, the code before and after group commit run back to back
// (two rounds; the machine is shared, so figures vary from hour to hour):
//
//	go test -run '^$' -bench SmallPut -benchtime 2000x ./plugins/dbstorage/internal/store/sqlite/
//
//	ops/s               before c1 / c16     after c1 / c16
//	new keys            645-745 / 960-1014  961-1088 / 4500-4883
//	replacing 100 keys  403-421 / 887-942   570-577 / 3379-3960
//
// strace -f -c -e fsync counts one fsync per Put before and after at
// concurrency 1, and 141 instead of 1026 for 1000 Puts at 16.
//
// Store also implements storetest.Inspector (ChunkSize, ChunkRows,
// WaitIdle) for the conformance suite and for diagnostics.
package sqlite
