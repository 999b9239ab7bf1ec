package kvstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/datawarehouse/dw/sdk/v6"
)

// Listing bounds: List reads at most ListBatch entries and at most
// ListBatchBytes bytes of values (but always at least one entry) per read
// transaction.
const (
	ListBatch      = 256
	ListBatchBytes = 4 << 20
)

// lockTimeout is how long Open waits for the file lock before deciding that
// another process holds the store.
const lockTimeout = time.Second

// pluginsBucket is the top-level bucket holding one bucket per plugin.
var pluginsBucket = []byte("plugins")

// pluginName is the rule for plugin names, the same as for plugin binaries
// (dw-plugin-<name>).
var pluginName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// ValidatePluginName checks a plugin name: a lowercase letter, then up to 62
// lowercase letters, digits, '_' or '-'.
func ValidatePluginName(name string) error {
	if !pluginName.MatchString(name) {
		return fmt.Errorf("kv store: plugin name %q: %w: want a lowercase letter followed by up to 62 of a-z, 0-9, '_' and '-'", name, sdk.ErrInvalidArgument)
	}
	return nil
}

// Store is the host's key-value store. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens (creating if needed) the store at path. Missing folders are
// created with mode 0700 and the file with 0600. If another process holds
// the file, Open fails within about a second.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open kv store: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open kv store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("kv store %s is in use by another dw process (its file lock was not released within %s): %w", path, lockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open kv store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(pluginsBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open kv store %s: %w", path, err)
	}
	return &Store{db: db, path: path}, nil
}

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// Close closes the store. Calls on KVs obtained from it fail afterwards.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close kv store %s: %w", s.path, err)
	}
	return nil
}

// ForPlugin returns the key space of the plugin name. Nothing done through
// it can reach another plugin's keys. If name is not a valid plugin name,
// every call on the returned KV fails with an error saying so.
func (s *Store) ForPlugin(name string) sdk.KV {
	return &pluginKV{db: s.db, name: name, bucket: []byte(name), err: ValidatePluginName(name)}
}

// pluginKV is one plugin's key space.
type pluginKV struct {
	db     *bolt.DB
	name   string
	bucket []byte
	err    error // invalid plugin name
}

var _ sdk.KV = (*pluginKV)(nil)

func (kv *pluginKV) check(ctx context.Context) error {
	if kv.err != nil {
		return kv.err
	}
	return ctx.Err()
}

// bucketOf returns the plugin's bucket, nil if it has none yet.
func (kv *pluginKV) bucketOf(tx *bolt.Tx) *bolt.Bucket {
	root := tx.Bucket(pluginsBucket)
	if root == nil {
		return nil
	}
	return root.Bucket(kv.bucket)
}

func validateValue(key string, v []byte) error {
	if len(v) > sdk.MaxKVValueBytes {
		return fmt.Errorf("kv put %q: %w: value is %d bytes, at most %d allowed", key, sdk.ErrInvalidArgument, len(v), sdk.MaxKVValueBytes)
	}
	return nil
}

// Put stores value at key, durably.
func (kv *pluginKV) Put(ctx context.Context, key string, value []byte) error {
	if err := kv.check(ctx); err != nil {
		return err
	}
	if err := sdk.ValidateKVKey(key); err != nil {
		return err
	}
	if err := validateValue(key, value); err != nil {
		return err
	}
	err := kv.db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(pluginsBucket)
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists(kv.bucket)
		if err != nil {
			return err
		}
		if value == nil {
			value = []byte{}
		}
		return b.Put([]byte(key), value)
	})
	if err != nil {
		return fmt.Errorf("kv put %q for plugin %s: %w", key, kv.name, err)
	}
	return nil
}

// Get returns a copy of the value at key, or an error wrapping
// sdk.ErrNotFound.
func (kv *pluginKV) Get(ctx context.Context, key string) ([]byte, error) {
	if err := kv.check(ctx); err != nil {
		return nil, err
	}
	if err := sdk.ValidateKVKey(key); err != nil {
		return nil, err
	}
	var out []byte
	found := false
	err := kv.db.View(func(tx *bolt.Tx) error {
		b := kv.bucketOf(tx)
		if b == nil {
			return nil
		}
		k, v := b.Cursor().Seek([]byte(key))
		if k == nil || !bytes.Equal(k, []byte(key)) || v == nil {
			return nil
		}
		found = true
		out = bytes.Clone(v)
		if out == nil {
			out = []byte{}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kv get %q for plugin %s: %w", key, kv.name, err)
	}
	if !found {
		return nil, fmt.Errorf("kv get %q: %w", key, sdk.ErrNotFound)
	}
	return out, nil
}

// Delete removes key, durably; a missing key is not an error.
func (kv *pluginKV) Delete(ctx context.Context, key string) error {
	if err := kv.check(ctx); err != nil {
		return err
	}
	if err := sdk.ValidateKVKey(key); err != nil {
		return err
	}
	err := kv.db.Update(func(tx *bolt.Tx) error {
		b := kv.bucketOf(tx)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("kv delete %q for plugin %s: %w", key, kv.name, err)
	}
	return nil
}

type entry struct {
	key   string
	value []byte
}

// List calls fn for every key with prefix, in key order, reading in batches
// with a fresh read transaction each (see the package comment).
func (kv *pluginKV) List(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	if err := kv.check(ctx); err != nil {
		return err
	}
	if prefix != "" {
		if len(prefix) > sdk.MaxKVKeyBytes {
			return fmt.Errorf("kv list: prefix: %w: %d bytes, at most %d allowed", sdk.ErrInvalidArgument, len(prefix), sdk.MaxKVKeyBytes)
		}
		if err := sdk.ValidateKVKey(prefix); err != nil {
			return fmt.Errorf("kv list: prefix: %w", err)
		}
	}
	pfx := []byte(prefix)
	var after []byte // last key handed to fn
	batch := make([]entry, 0, ListBatch)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch = batch[:0]
		more := false
		err := kv.db.View(func(tx *bolt.Tx) error {
			b := kv.bucketOf(tx)
			if b == nil {
				return nil
			}
			c := b.Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.Seek(pfx)
			} else {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			size := 0
			for ; k != nil && bytes.HasPrefix(k, pfx); k, v = c.Next() {
				if v == nil { // a nested bucket; never created, skip
					continue
				}
				if len(batch) == ListBatch || (len(batch) > 0 && size+len(v) > ListBatchBytes) {
					more = true
					break
				}
				size += len(v)
				batch = append(batch, entry{key: string(k), value: bytes.Clone(v)})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("kv list %q for plugin %s: %w", prefix, kv.name, err)
		}
		for i := range batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			v := batch[i].value
			if v == nil {
				v = []byte{}
			}
			if err := fn(batch[i].key, v); err != nil {
				return err
			}
			batch[i].value = nil
		}
		if !more {
			return nil
		}
		after = []byte(batch[len(batch)-1].key)
	}
}
