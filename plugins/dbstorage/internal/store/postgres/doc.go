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
// unreachable or hung server cannot block the plugin's start (the pool,
// pgxpool, makes no connection before the first Acquire unless the DSN
// sets pool_min_conns, and then in the background). The first call that
// needs the database connects and creates the schema (CREATE TABLE IF NOT
// EXISTS, under an advisory lock so that several nodes can race) with that
// call's context; a failure is retried by the next call. Until it succeeds
// calls fail with sdk.ErrUnavailable wrapping the cause. Connection errors
// and timeouts against the server wrap sdk.ErrUnavailable too; a caller's
// cancelled context gives context.Canceled. Every call returns by its
// deadline, even against a server that accepts TCP and never answers.
// pgxpool lets a connection attempt that its caller gave up on finish in
// the background (the next call then finds the connection ready); the
// DSN's connect_timeout (default 10 s) bounds every attempt, and Close
// cancels those still running.
//
// # Connections
//
// pgxpool holds at most pool_max_conns connections (a DSN parameter,
// default DefaultMaxConns, at least 2), made on demand; idle ones are
// pinged after a second, closed after five minutes idle
// (pool_max_conn_idle_time) or an hour of life (pool_max_conn_lifetime),
// and a connection given back in a state other than idle is closed. A Put
// takes a connection once it has read its first chunk: a small one holds it
// for its one statement, a larger one until it ends. An open Reader holds
// one until it is closed or has read its last piece.
//
// A call that finds every connection in use waits at most AcquireWait
// (2 s) for one, or until its context ends if sooner, then fails with
// sdk.ErrBackpressure carrying a retry hint of RetryAfter (1 s; HTTP 429
// with Retry-After): a full pool means readers and uploads in progress,
// which may last minutes, so queueing a caller behind them for longer
// than a short burst would only hide the overload. A call that finds a
// connection free or room for a new one waits under its own context, so
// that a connection attempt is bounded by that context and connect_timeout
// alone.
//
// Close ends the calls in progress (their context ends, with the closed
// Store's sdk.ErrUnavailable as the cause) and waits up to 5 s for them to
// give their connections back; connections given back later are closed
// then.
//
// # Put
//
// A Put reads its first chunk before it takes a connection (an announced
// size that fits in one chunk reads into a buffer of that size, not a whole
// chunk). If the data ended within it — an empty object, a short chunk, or
// exactly one chunk of an announced size — the object is small and is
// written in ONE statement, so one transaction, one round trip and one WAL
// flush, with no uploads row since nothing is left behind if it aborts
// (publishSmallSQL): a SELECT ... FOR UPDATE of the current row, an UPDATE
// FROM it returning the replaced version and created_at, or an INSERT ... ON
// CONFLICT DO NOTHING when there was none, then, only if one of them wrote,
// the chunk and the replaced version's garbage row. If a concurrent Put
// inserted the key after the statement's snapshot (the INSERT waited for it
// and did nothing), nothing was written and the statement runs again, and
// then replaces that row. The size and SHA-256 checks run before it, with
// no connection held. PostgreSQL groups the WAL flushes of concurrent
// commits by itself, so small Puts scale with concurrency without a group
// commit of our own.
//
// A larger object registers a new random version in dw_uploads, then COPYs
// its chunks (hashing SHA-256 and counting bytes on the way, store.Chunker)
// in short transactions of about 8 MiB that also refresh the upload's
// touched_at; then it checks the announced size and the expected SHA-256.
// One transaction then ends the upload (failing if it was swept as stale),
// inserts or updates the object row (a replacement keeps created_at; a row
// racing in from another Put is locked and replaced) and queues the replaced
// version in dw_garbage. Readers see the old object or the new one.
//
// If anything fails in such an upload — the data, the checks, the
// context, the database — the upload row is turned into garbage on a fresh
// short context, in one statement that only does so while the upload row
// exists: commit deletes that row in its own transaction, so a commit whose
// answer was lost with the connection is never undone.
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
// Close), deletes garbage versions' chunks 64 rows per transaction, so no
// transaction grows with the object, and a version's garbage row in the
// transaction that deletes its last chunks. Each such transaction is one
// pipelined round trip (pgx.Batch: BEGIN, SET LOCAL synchronous_commit TO
// OFF, the deletes, COMMIT): the collector waits for no WAL flush and adds
// none to the Puts' — a crash can lose only deletions the next pass redoes,
// and since WAL replay keeps a prefix of the commits, a garbage row is never
// gone while chunks it covered remain. It is woken after every replacement,
// delete and failed upload, and sweeps every minute, when it also removes
// stale uploads.
//
// 4 KiB Puts with the size announced, from 1 and 16 goroutines, against a
// server with default settings (fsync and synchronous_commit on) on the
// 2-core VM, before (three transactions and about nine round trips per
// small Put) and after, run back to back:
//
//	go test -run '^$' -bench SmallPut -benchtime 2000x ./plugins/dbstorage/internal/store/postgres/
//
//	ops/s               before c1 / c16   after c1 / c16
//	new keys            287 / 543         1281 / 1902
//	replacing 100 keys  240 / 509         1179 / 1514
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
// cancel request (pgconn's CancelRequest, on a connection of its own) and
// drains only what was in flight; either way its connection goes back to
// the pool healthy, and the next call reuses it (after 5 s of draining it
// gives up, and the pool closes the connection). Close of the Store ends
// every open Reader, whose calls then fail.
//
// # List and Count
//
// key >= prefix AND key < store.PrefixEnd(prefix) AND key > after ORDER BY
// key LIMIT OFFSET: an index range scan on the primary key.
//
// # Full disk
//
// Unlike the SQLite strategy (see its package doc, Full disk), this one
// keeps no WAL or file of its own: the server owns its WAL and its disk.
// A write the server cannot make fails as the server reports it and is
// rolled back; there is no local checkpoint to run and no free space to
// report, so the Store does not implement store.SpaceReporter.
package postgres
