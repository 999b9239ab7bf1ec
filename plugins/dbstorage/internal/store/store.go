// Package store holds the storage strategies of the dbstorage plugin: the
// Strategy interface every database driver implements, the types it speaks,
// and the rules all drivers share (see doc.go for the on-disk design).
package store

import (
	"context"
	"io"
	"time"
)

// Object is the metadata of a stored object.
type Object struct {
	Key         string
	Size        int64
	SHA256      string // lowercase hex
	ContentType string
	Metadata    map[string]string
	CreatedAt   time.Time // first PUT of this key (kept across replacements)
	ModifiedAt  time.Time // last PUT
}

// PutRequest is what Put stores besides the data.
type PutRequest struct {
	Key         string
	ContentType string
	Metadata    map[string]string
	// Size is the announced size, or -1 if unknown. When >= 0, data of any
	// other length fails the Put with sdk.ErrInvalidArgument and nothing is
	// stored.
	Size int64
	// SHA256, when not empty, is the lowercase hex digest the data must
	// have; a mismatch fails the Put with sdk.ErrInvalidArgument and
	// nothing is stored.
	SHA256 string
}

// ListQuery selects one page of keys in byte order.
type ListQuery struct {
	Prefix string
	// After, when not empty, starts the page after this key (keyset
	// pagination).
	After string
	// Offset skips this many matches (after After, if both are set).
	Offset int64
	// Limit is the most items returned; >= 1.
	Limit int
}

// Reader streams one object's bytes from a consistent snapshot: a Put or
// Delete that commits while it reads is not seen by it.
type Reader interface {
	// Next returns the next piece of the requested range, at most one
	// chunk long. The slice is valid until the next call to Next or Close.
	// After the last piece it returns io.EOF.
	Next(ctx context.Context) ([]byte, error)
	// Close releases the snapshot and its connection. Idempotent.
	Close() error
}

// Strategy is one database holding objects. Implementations are safe for
// concurrent use. Errors wrap the sdk sentinels: sdk.ErrNotFound for a
// missing key, sdk.ErrOutOfRange for a range outside the object,
// sdk.ErrInvalidArgument for bad input, sdk.ErrUnavailable when the
// database cannot be reached.
type Strategy interface {
	// Put reads data to EOF into a new version of req.Key and then, in one
	// transaction, makes it the object's content. Readers see the old
	// object or the new one, never a mix. If data fails, ctx ends or the
	// checks of req fail, nothing of the new version remains and the old
	// object is untouched.
	Put(ctx context.Context, req PutRequest, data io.Reader) (Object, error)
	// Get opens [offset, offset+length) of key; length < 0 means to the end,
	// a length past the end is cut at the end. offset > size (or offset ==
	// size on a non-empty object) is sdk.ErrOutOfRange. It returns the
	// object's metadata, the offset and length served, and the reader,
	// which the caller must Close. Reading starts at the chunk holding
	// offset: nothing before it is read.
	Get(ctx context.Context, key string, offset, length int64) (obj Object, servedOffset, servedLength int64, r Reader, err error)
	// Stat returns the object's metadata.
	Stat(ctx context.Context, key string) (Object, error)
	// Delete removes key; a missing key is not an error (existed false).
	Delete(ctx context.Context, key string) (existed bool, err error)
	// List returns up to q.Limit objects matching q in key byte order.
	List(ctx context.Context, q ListQuery) ([]Object, error)
	// Count returns how many objects have the prefix.
	Count(ctx context.Context, prefix string) (int64, error)
	// Ping checks that the database answers a query; used by health checks
	// under a deadline.
	Ping(ctx context.Context) error
	// Close releases the database. Readers still open fail afterwards.
	Close() error
}

// Space is what a strategy that keeps its database in local files knows
// about their volume.
type Space struct {
	// FreeBytes is what the volume of the database folder has free for
	// unprivileged writers (statfs).
	FreeBytes int64
	// LogBytes is the size of the database's write-ahead log.
	LogBytes int64
	// WritesFailing is, while writes fail for lack of space (since the
	// last one refused, no Put has succeeded), the error of the last one;
	// empty otherwise. Reads go on meanwhile.
	WritesFailing string
}

// SpaceReporter is implemented by strategies on local files (SQLite);
// PostgreSQL's storage is the server's business and is not reported.
type SpaceReporter interface {
	Space(ctx context.Context) (Space, error)
}
