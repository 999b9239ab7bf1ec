package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
)

// logWrites makes the database of dsn record, in test_log, the table and
// the transaction of every row written to the dw_ tables.
func logWrites(t *testing.T, dsn string) {
	t.Helper()
	execSQL(t, dsn, `CREATE TABLE test_log (n bigserial, tbl text, op text, xid bigint)`)
	execSQL(t, dsn, `CREATE FUNCTION test_log_write() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO test_log (tbl, op, xid) VALUES (TG_TABLE_NAME, TG_OP, txid_current());
			RETURN NULL;
		END $$`)
	for _, tbl := range []string{"dw_objects", "dw_chunks", "dw_uploads", "dw_garbage"} {
		execSQL(t, dsn, fmt.Sprintf(`CREATE TRIGGER test_log AFTER INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION test_log_write()`, tbl))
	}
}

// takeLog returns the writes logged since the last call, as "table op"
// strings, and how many transactions made them.
func takeLog(t *testing.T, s *Store) (writes []string, transactions int) {
	t.Helper()
	ctx := testContext(t)
	xids := map[int64]bool{}
	err := s.withConn(ctx, "read the log", func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `WITH d AS (DELETE FROM test_log RETURNING n, tbl, op, xid)
			SELECT tbl, op, xid FROM d ORDER BY n`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var tbl, op string
			var xid int64
			if err := rows.Scan(&tbl, &op, &xid); err != nil {
				return err
			}
			writes = append(writes, tbl+" "+op)
			xids[xid] = true
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return writes, len(xids)
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestSmallPutOneTransaction: an object of one chunk (size announced or
// not, exactly one chunk long, empty) is written in one transaction, with
// no uploads row; a larger one still goes through an upload.
func TestSmallPutOneTransaction(t *testing.T) {
	s, dsn := openTest(t, testChunkSize, defaultTuning)
	ctx := testContext(t)
	if err := s.Ping(ctx); err != nil { // the schema
		t.Fatal(err)
	}
	logWrites(t, dsn)
	cases := []struct {
		name       string
		key        string
		size       int
		announce   bool
		wantWrites []string
	}{
		{"new key, size announced", "a", 100, true, []string{"dw_objects INSERT", "dw_chunks INSERT"}},
		{"replacement, size unknown", "a", 200, false, []string{"dw_objects UPDATE", "dw_chunks INSERT", "dw_garbage INSERT"}},
		{"one whole chunk, size announced", "b", testChunkSize, true, []string{"dw_objects INSERT", "dw_chunks INSERT"}},
		{"empty replacement", "b", 0, false, []string{"dw_objects UPDATE", "dw_garbage INSERT"}},
	}
	for _, c := range cases {
		data := bytes.Repeat([]byte{byte(c.size)}, c.size)
		req := store.PutRequest{Key: c.key, Size: -1}
		if c.announce {
			req.Size = int64(c.size)
		}
		obj, err := s.Put(ctx, req, bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if obj.Size != int64(c.size) || obj.SHA256 != hexSum(data) {
			t.Fatalf("%s: put returned %+v", c.name, obj)
		}
		writes, txs := takeLog(t, s)
		if fmt.Sprint(sorted(writes)) != fmt.Sprint(sorted(c.wantWrites)) || txs != 1 {
			t.Fatalf("%s: writes %v in %d transactions; want %v in one", c.name, writes, txs, c.wantWrites)
		}
		if got := readAll(t, s, c.key); !bytes.Equal(got, data) {
			t.Fatalf("%s: read %d bytes back; want %d", c.name, len(got), c.size)
		}
	}
	// More than a chunk: uploads row, chunk transactions, publish.
	data := bytes.Repeat([]byte("L"), testChunkSize+1)
	if _, err := s.Put(ctx, store.PutRequest{Key: "large", Size: int64(len(data))}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	writes, txs := takeLog(t, s)
	if txs < 3 || writes[0] != "dw_uploads INSERT" {
		t.Fatalf("large put: writes %v in %d transactions; want an upload first and at least 3 transactions", writes, txs)
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ChunkRows(ctx); err != nil || n != 1+2 {
		t.Fatalf("%d chunk rows, %v; want 3", n, err)
	}
}

// sorted returns a sorted copy of ss.
func sorted(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return out
}

// TestSmallPutChecks: a small object failing its size or SHA-256 check
// writes nothing and leaves the object it would replace intact.
func TestSmallPutChecks(t *testing.T) {
	s, _ := openTest(t, testChunkSize, defaultTuning)
	ctx := testContext(t)
	old := []byte("old")
	oldObj, err := s.Put(ctx, store.PutRequest{Key: "k", Size: -1}, bytes.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("new data")
	for _, req := range []store.PutRequest{
		{Key: "k", Size: -1, SHA256: hexSum(old)},
		{Key: "k", Size: int64(len(data)), SHA256: hexSum(old)},
		{Key: "k", Size: int64(len(data)) - 1},
		{Key: "k", Size: int64(len(data)) + 1},
		{Key: "fresh", Size: int64(len(data)) + 1},
	} {
		if _, err := s.Put(ctx, req, bytes.NewReader(data)); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Fatalf("put %+v: %v; want sdk.ErrInvalidArgument", req, err)
		}
	}
	got, err := s.Stat(ctx, "k")
	if err != nil || got.SHA256 != oldObj.SHA256 || !got.ModifiedAt.Equal(oldObj.ModifiedAt) {
		t.Fatalf("stat after failed puts: %+v, %v; want %+v", got, err, oldObj)
	}
	if _, err := s.Stat(ctx, "fresh"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("stat of a key whose put failed: %v; want not found", err)
	}
	if n, err := s.ChunkRows(ctx); err != nil || n != 1 {
		t.Fatalf("%d chunk rows, %v; want the old object's one", n, err)
	}
}

// TestConcurrentSmallPuts: small Puts racing on one new key, one existing
// key and many others, with Deletes of the existing key among them, all
// succeed; each key ends with one put's data, created_at of an existing
// key is kept unless it was deleted, and no chunk is left behind.
func TestConcurrentSmallPuts(t *testing.T) {
	s, _ := openTest(t, testChunkSize, defaultTuning)
	ctx := testContext(t)
	if _, err := s.Put(ctx, store.PutRequest{Key: "existing", Size: 1}, bytes.NewReader([]byte("0"))); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				for _, key := range []string{"new", "existing", fmt.Sprintf("own/%d", w)} {
					data := bytes.Repeat([]byte{byte(w)}, 1+(w*rounds+i)%100)
					if _, err := s.Put(ctx, store.PutRequest{Key: key, Size: int64(len(data))}, bytes.NewReader(data)); err != nil {
						errs <- fmt.Errorf("put %q: %w", key, err)
						return
					}
				}
				if i%5 == 4 {
					if _, err := s.Delete(ctx, "existing"); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	keys := []string{"new", "existing"}
	for w := range workers {
		keys = append(keys, fmt.Sprintf("own/%d", w))
	}
	var objects int64
	for _, key := range keys {
		obj, err := s.Stat(ctx, key)
		if errors.Is(err, sdk.ErrNotFound) && key == "existing" {
			continue
		}
		if err != nil {
			t.Fatalf("stat %q: %v", key, err)
		}
		objects++
		got := readAll(t, s, key)
		if int64(len(got)) != obj.Size || hexSum(got) != obj.SHA256 || !bytes.Equal(got, bytes.Repeat(got[:1], len(got))) {
			t.Fatalf("%q reads %d bytes, stat says %d: not one put's data", key, len(got), obj.Size)
		}
	}
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ChunkRows(ctx); err != nil || n != objects {
		t.Fatalf("%d chunk rows, %v; want one per object (%d)", n, err, objects)
	}
}

// TestSmallPutRacesInsert: a small Put whose key is inserted by another
// transaction after the Put's statement began (it waits for that
// transaction, then finds the row it could not see) runs again and
// replaces that row, queuing its version as garbage.
func TestSmallPutRacesInsert(t *testing.T) {
	s, dsn := openTest(t, testChunkSize, defaultTuning)
	ctx := testContext(t)
	if err := s.Ping(ctx); err != nil { // the schema
		t.Fatal(err)
	}
	other, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO dw_objects (key, version, size, sha256, content_type, metadata, chunk_size, created_at, modified_at)
		VALUES ('race', 'other', 1, $1, '', '{}', 1024, 1, 1)`, hexSum([]byte{0})); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO dw_chunks (version, seq, data) VALUES ('other', 0, '\x00')`); err != nil {
		t.Fatal(err)
	}
	data := []byte("mine")
	type result struct {
		obj store.Object
		err error
	}
	done := make(chan result, 1)
	go func() {
		obj, err := s.Put(ctx, store.PutRequest{Key: "race", Size: int64(len(data))}, bytes.NewReader(data))
		done <- result{obj, err}
	}()
	// Wait until the Put waits for the other transaction's row lock.
	for {
		var waiting int
		if err := other.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("put returned before the other insert committed: %+v, %v", r.obj, r.err)
		case <-ctx.Done():
			t.Fatal("the put never waited for the other insert")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("put racing an insert: %v", r.err)
	}
	if !r.obj.CreatedAt.Equal(fromNanos(1)) {
		t.Fatalf("created %v; want the other row's (it was replaced)", r.obj.CreatedAt)
	}
	if got := readAll(t, s, "race"); !bytes.Equal(got, data) {
		t.Fatalf("read %q; want %q", got, data)
	}
	// The other row's chunk went with its version to the garbage.
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ChunkRows(ctx); err != nil || n != 1 {
		t.Fatalf("%d chunk rows, %v; want the put's 1", n, err)
	}
}
