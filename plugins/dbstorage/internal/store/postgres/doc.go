// Package postgres is the PostgreSQL storage strategy of the dbstorage
// plugin (store.Strategy), on pgx v5. It behaves like the SQLite strategy;
// what follows is where PostgreSQL makes it differ, and why.
//
// # Storage: chunked bytea rows
//
// A bytea value is read and written whole and is capped at 1 GB; large
// objects stream but outlive their rows unless vacuumlo runs. So an object
// is cut into chunk rows (1 MiB by default, Config.ChunkSize) of one
// version, and every chunk but the last is exactly the chunk size, so that
// chunk n holds bytes [n*chunk_size, (n+1)*chunk_size). The tables, all
// prefixed dw_:
//
//   - dw_objects: key bytea PRIMARY KEY (bytewise order whatever the
//     collation), version, size, sha256, content_type, metadata (JSON text),
//     chunk_size, created_at and modified_at (Unix nanoseconds).
//   - dw_chunks: (version, seq) PRIMARY KEY, data bytea stored out of line
//     without compression (STORAGE EXTERNAL).
//   - dw_uploads: versions being written, with started_at and touched_at.
//   - dw_garbage: versions whose chunks are to be deleted.
//   - dw_schema: the schema version.
//
// # Lazy open
//
// Open parses the DSN and returns; it never touches the network, so an
// unreachable or hung server cannot block the plugin's start. The first call
// that needs the database connects and creates the schema (CREATE TABLE IF
// NOT EXISTS, under an advisory lock so that several nodes can race) with
// that call's context; a failure is retried by the next call. Until it
// succeeds calls fail with sdk.ErrUnavailable wrapping the cause.
// Connection errors and timeouts against the server wrap
// sdk.ErrUnavailable too; a caller's cancelled context gives
// context.Canceled. Every connection attempt and query honours the caller's
// deadline, even against a server that accepts TCP and never answers; the
// DSN's connect_timeout (default 10 s) bounds a connection attempt under a
// context without one.
//
// # Connections
//
// A small pool of its own (pool.go) stands in for pgxpool, whose puddle
// dependency this build does not carry: at most pool_max_conns connections
// (a DSN parameter, as in pgxpool; default DefaultMaxConns), made on demand,
// idle ones pinged after a second and closed after five minutes, and any
// connection given back in a state other than idle closed. A call that finds
// every connection taken until its context ends fails with
// sdk.ErrBackpressure. A Put holds one connection for its length, and an
// open Reader one until it is closed or has read its last piece.
//
// # Put
//
// A Put registers a new random version in dw_uploads, then COPYs its chunks
// (hashing SHA-256 and counting bytes on the way, store.Chunker) in short
// transactions of about 8 MiB that also refresh the upload's touched_at;
// then it checks the announced size and the expected SHA-256. One
// transaction then ends the upload (failing if it was swept as stale),
// inserts or updates the object row (a replacement keeps created_at; a row
// racing in from another Put is locked and replaced) and queues the replaced
// version in dw_garbage. Readers see the old object or the new one.
//
// If anything fails — the data, the checks, the context, the database — the
// upload row is turned into garbage on a fresh short context, in one
// statement that only does so while the upload row exists: commit deletes
// that row in its own transaction, so a commit whose answer was lost with
// the connection is never undone.
//
// Several dw nodes may share one database, so a node cannot tell another's
// live upload from one its owner abandoned (it crashed, or lost the
// database before it could clean up) except by age: the collector removes
// uploads whose touched_at is older than StaleUploadAge (15 minutes). A live
// upload refreshes touched_at with every batch; one that stalls longer fails
// when it resumes.
//
// # Delete and garbage collection
//
// Delete is one statement: it removes the object row and queues its version
// in dw_garbage; deleting a missing key is not an error. A collector
// goroutine, owned by the Store (started by Open, stopped and waited for by
// Close), deletes garbage versions' chunks 64 rows per statement, so no
// transaction grows with the object, then their garbage rows. It is woken
// after every replacement, delete and failed upload, and sweeps every
// minute, when it also removes stale uploads.
//
// # Get
//
// Get opens a REPEATABLE READ READ ONLY transaction, reads the object row,
// checks the range (sdk.ErrOutOfRange) and sends one query for just the
// chunks that hold it (seq BETWEEN first AND last ORDER BY seq). The Reader
// reads the rows one at a time as they arrive (pgx streams them), trims the
// first and last piece, and returns at most one chunk per Next, without
// copying it. Its snapshot keeps a replaced or deleted version readable —
// PostgreSQL keeps the deleted rows while a snapshot may see them — so the
// collector needs no reader bookkeeping. The Next call after the last
// piece ends the transaction and gives the connection back with io.EOF (not
// the last piece's call: ending the query reads into the buffer that piece
// points into). A Reader closed
// early with up to 4 MiB left drains them; with more, it sends the server a
// cancel request and drains only what was in flight; either way it keeps
// its connection (after 5 s of draining it gives up and closes it). Close
// of the Store ends every open Reader, whose calls then fail.
//
// # List and Count
//
// key >= prefix AND key < store.PrefixEnd(prefix) AND key > after ORDER BY
// key LIMIT OFFSET: an index range scan on the primary key.
package postgres
