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
//     transaction is short (one chunk, one publish, one delete, 16 chunks
//     of garbage), so writers interleave. No lock is held while a Put
//     waits for its data.
//   - Durability: a Put's chunks are committed with synchronous=NORMAL
//     (no fsync), and the transaction that publishes the object, like a
//     Delete's, with synchronous=FULL. In WAL mode FULL syncs the WAL file
//     at commit, which makes every frame written before it durable as well,
//     the chunks included. So an acknowledged Put or Delete survives kill -9
//     and power loss, while a large upload pays one fsync rather than one
//     per chunk. WAL recovery keeps a prefix of the commits, so chunks never
//     survive without the uploads row that lets Open remove them.
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
//     (64 MiB) after the next checkpoint. A Reader gives its snapshot back
//     as soon as it reaches the end of its range.
//
// Store also implements storetest.Inspector (ChunkSize, ChunkRows,
// WaitIdle) for the conformance suite and for diagnostics.
package sqlite
