package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/sdk/v6"
)

// Delete implements store.Strategy: one statement removes the object row
// and queues its version as garbage.
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	if err := store.ValidateKey(key); err != nil {
		return false, err
	}
	var existed bool
	err := s.withConn(ctx, fmt.Sprintf("delete %q", key), func(ctx context.Context, conn *pgx.Conn) error {
		tag, err := conn.Exec(ctx, `WITH gone AS (DELETE FROM dw_objects WHERE key = $1 RETURNING version)
			INSERT INTO dw_garbage (version, queued_at) SELECT version, $2 FROM gone ON CONFLICT DO NOTHING`,
			[]byte(key), time.Now().UnixNano())
		existed = tag.RowsAffected() > 0
		return err
	})
	if err != nil {
		return false, err
	}
	if existed {
		s.wake()
	}
	return existed, nil
}

// keyRange builds the WHERE clause selecting keys with prefix and, if after
// is not empty, greater than after: prefix <= key < PrefixEnd(prefix),
// bytewise, so that an index range scan serves it. args are the query's
// arguments so far; it returns them with its own appended.
func keyRange(prefix, after string, args []any) (string, []any) {
	var conds []string
	arg := func(v []byte) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if prefix != "" {
		conds = append(conds, "key >= "+arg([]byte(prefix)))
		if end, ok := store.PrefixEnd(prefix); ok {
			conds = append(conds, "key < "+arg(end))
		}
	}
	if after != "" {
		conds = append(conds, "key > "+arg([]byte(after)))
	}
	if len(conds) == 0 {
		return "", args
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// List implements store.Strategy.
func (s *Store) List(ctx context.Context, q store.ListQuery) ([]store.Object, error) {
	switch {
	case q.Limit < 1:
		return nil, fmt.Errorf("list: limit %d is below 1; it is 1 or more: %w", q.Limit, sdk.ErrInvalidArgument)
	case q.Offset < 0:
		return nil, fmt.Errorf("list: offset %d is negative; it is 0 or more: %w", q.Offset, sdk.ErrInvalidArgument)
	}
	where, args := keyRange(q.Prefix, q.After, nil)
	args = append(args, q.Limit, q.Offset)
	sql := `SELECT ` + objectColumns + ` FROM dw_objects` + where +
		` ORDER BY key LIMIT $` + strconv.Itoa(len(args)-1) + ` OFFSET $` + strconv.Itoa(len(args))
	var out []store.Object
	err := s.withConn(ctx, fmt.Sprintf("list prefix %q", q.Prefix), func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanObject(rows)
			if err != nil {
				return err
			}
			out = append(out, r.obj)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Count implements store.Strategy.
func (s *Store) Count(ctx context.Context, prefix string) (int64, error) {
	where, args := keyRange(prefix, "", nil)
	var n int64
	err := s.withConn(ctx, fmt.Sprintf("count prefix %q", prefix), func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT count(*) FROM dw_objects`+where, args...).Scan(&n)
	})
	return n, err
}
