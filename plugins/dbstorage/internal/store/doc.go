// Storage design of the dbstorage plugin
//
// Every driver (sqlite, postgres) stores objects the same way, in chunked
// rows, because chunked rows stream with any database/sql or pgx driver:
// SQLite's database/sql drivers and PostgreSQL's bytea read a value whole,
// and the databases' own streaming blob APIs (sqlite3_blob_open, large
// objects) need a fixed size up front or cleanup outside the row's
// lifecycle. Four tables, all prefixed dw_:
//
//	dw_objects  key (bytes), version, size, sha256 (lowercase hex),
//	            content_type, metadata (JSON object), chunk_size,
//	            created_at, modified_at (unix nanoseconds)
//	dw_chunks   version, seq, data; primary key (version, seq)
//	dw_uploads  version, started_at, touched_at: uploads in progress
//	dw_garbage  version and when it became garbage: versions no object
//	            references any more
//
// (Column details may differ by driver: the SQLite driver also records an
// upload's key, for diagnostics.)
//
// Keys are stored as bytes (SQLite BLOB, PostgreSQL bytea), so the database
// orders them bytewise (memcmp), which for UTF-8 is code point order and is
// Go's string order. ValidateKey is the one key rule: 1 to 1024 bytes of
// valid UTF-8 without NUL; the service and every driver call it.
//
// Chunk n of a version holds bytes [n*chunk_size, (n+1)*chunk_size) of the
// object; every chunk but the last is full (Chunker guarantees it). The
// chunk size is stored per object, so changing a driver's configured chunk
// size later affects only new objects.
//
// # Put
//
// A Put gets a new random version id (NewVersion), registers it in
// dw_uploads, and reads the data one chunk at a time into one buffer per
// upload (Chunker), hashing SHA-256 and counting bytes on the way. Each
// chunk is written in a short transaction of its own: the write lock is
// never held while waiting for the client, so other writers interleave
// (SQLite has one writer at a time). At the end the announced size and the
// expected SHA-256 are checked, and then ONE transaction points the object
// row at the new version (keeping created_at of the object it replaces),
// moves the replaced version to dw_garbage and drops the uploads row. That
// transaction is the atomic replace: a reader sees the old object or the
// new one, never a mix. An object shorter than one chunk skips dw_uploads:
// its chunk is written in the publishing transaction itself.
//
// On any failure (a read error of the data, the size or digest checks, the
// context ending, a database error) the new version is moved from
// dw_uploads to dw_garbage, under a fresh short context if the request's
// has ended; its chunks go with garbage collection. A process killed
// mid-Put (kill -9) leaves an uploads row behind: the SQLite driver, whose
// file belongs to one process, hands every leftover upload to garbage
// collection at Open.
//
// # Delete and garbage collection
//
// Delete removes the object row and moves its version to dw_garbage in one
// transaction; deleting a missing key is not an error. A background
// goroutine owned by the Store (started by Open, stopped and waited for by
// Close) deletes the chunks of garbage versions a few at a time (16 chunks
// per transaction) and then their garbage rows; it is woken after each
// replace, delete and failed upload, and at Open. Readers are unaffected:
// they read from a snapshot in which the chunks still exist.
//
// # Get
//
// A Get opens a read transaction (a snapshot) that the Reader holds until
// it is closed or reaches the end: it reads the object row, checks the range
// (ValidateRange), and runs one query for just the chunks the range needs
// (seq BETWEEN first AND last ORDER BY seq, from ChunkSpan), trimming the
// first and last piece. Nothing before the offset is read. Each Next
// returns at most one chunk, so a Reader holds about two chunks of memory
// whatever the object's size. A chunk of the wrong length or sequence is
// reported as damage, never served as a short object.
//
// # List and Count
//
// A prefix is the key range [prefix, PrefixEnd(prefix)), which an index on
// the key serves as one range scan (no LIKE, so '%' and '_' are ordinary
// characters). List adds key > After for keyset pagination and
// ORDER BY key LIMIT/OFFSET; Count is count(*) over the same range.
//
// # Chunk size
//
// The default chunk size is 1 MiB (DefaultChunkSize). Measured with the
// sqlite driver's benchmarks on the 2-core VM (ext4 on virtio, 64 KiB SQLite
// pages, a 128 MiB object; five runs on a machine shared with other builds,
// so median and best):
//
//	go test -run '^$' -bench 'PutGet|BenchmarkGet' -benchtime 3x \
//	    ./plugins/dbstorage/internal/store/sqlite/
//
//	chunk     put MB/s      get MB/s right after put   get MB/s checkpointed
//	256 KiB   120 (155)     376 (645)                  522 (1027)
//	1 MiB     165 (228)     454 (900)                  679 (1744)
//	4 MiB      81 (128)     910 (1166)                 876 (1633)
//
// 1 MiB writes fastest by a clear margin and reads about as fast as 4 MiB
// once the data is checkpointed. 4 MiB chunks write at half the rate (each
// chunk is copied more and holds the one write lock longer) and quadruple
// the memory each upload and each Reader holds; 256 KiB chunks cost four
// times the rows and statements per byte. With 1 MiB, an upload holds one
// 1 MiB buffer and a Reader about two (the driver's copy and the row).
//
// Small objects are bound by the disk's fsync: a 4 KiB Put is one durable
// commit (about 4 ms here, where one fsync takes about 2.7 ms) and a 4 KiB
// Get about 0.1 ms.
package store
