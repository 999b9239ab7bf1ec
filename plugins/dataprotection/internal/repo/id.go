package repo

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// ID names a blob by the SHA-256 of its plaintext, and a pack by the SHA-256
// of its file.
type ID [32]byte

// Hash returns the ID of data.
func Hash(data []byte) ID { return sha256.Sum256(data) }

// String returns the ID in lowercase hex (64 characters).
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero ID (which names nothing).
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses 64 lowercase or uppercase hex characters.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return ID{}, fmt.Errorf("parse id %q: want %d hex characters, got %d", s, 2*len(id), len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, fmt.Errorf("parse id %q: %w", s, err)
	}
	return id, nil
}

// MarshalText encodes the ID as lowercase hex (for JSON).
func (id ID) MarshalText() ([]byte, error) {
	b := make([]byte, 2*len(id))
	hex.Encode(b, id[:])
	return b, nil
}

// UnmarshalText parses hex written by MarshalText.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// BlobType says what a blob holds. It is stored in packs and indexes as
// one byte.
type BlobType uint8

// Blob types. The zero value is invalid so that an unset type is caught.
const (
	DataBlob BlobType = 1 // a chunk of file content
	TreeBlob BlobType = 2 // an encoded Tree
)

// String returns "data", "tree" or "blobtype(N)".
func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}

func (t BlobType) valid() bool { return t == DataBlob || t == TreeBlob }
