package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/datawarehouse/dw/sdk/v6"
)

// MaxKeyBytes is the longest key, in bytes.
const MaxKeyBytes = sdk.MaxObjectKeyBytes

// DefaultChunkSize is the chunk size of new objects unless a driver is
// configured otherwise (see doc.go for the measurement behind it).
const DefaultChunkSize = 1 << 20

// MaxChunkSize is the largest chunk size a driver accepts; it bounds the
// memory one upload or one reader holds.
const MaxChunkSize = 16 << 20

// ValidateKey reports whether key is a valid object key: 1 to 1024 bytes of
// valid UTF-8 without NUL. The error wraps sdk.ErrInvalidArgument and names
// the rule that was broken. The service and every driver use this function.
func ValidateKey(key string) error { return sdk.ValidateObjectKey(key) }

// ValidateSHA256 reports whether s is a SHA-256 digest as the store writes
// it: 64 lowercase hex digits. The error wraps sdk.ErrInvalidArgument.
func ValidateSHA256(s string) error {
	if len(s) != 2*sha256.Size {
		return fmt.Errorf("sha256 %q is %d characters long; it must be 64 lowercase hex digits: %w", s, len(s), sdk.ErrInvalidArgument)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("sha256 %q has %q at position %d; it must be 64 lowercase hex digits: %w", s, c, i, sdk.ErrInvalidArgument)
		}
	}
	return nil
}

// ValidatePutRequest checks req before any data is read: the key, the
// announced size (-1 or >= 0) and, when set, the expected SHA-256. Errors
// wrap sdk.ErrInvalidArgument.
func ValidatePutRequest(req PutRequest) error {
	if err := ValidateKey(req.Key); err != nil {
		return err
	}
	if req.Size < -1 {
		return fmt.Errorf("put %q: announced size %d is negative; it is -1 (unknown) or >= 0: %w", req.Key, req.Size, sdk.ErrInvalidArgument)
	}
	if req.SHA256 != "" {
		if err := ValidateSHA256(req.SHA256); err != nil {
			return fmt.Errorf("put %q: %w", req.Key, err)
		}
	}
	return nil
}

// PrefixEnd returns the smallest byte string greater than every string that
// starts with prefix, so that the keys with the prefix are exactly
// prefix <= key < end in bytewise (memcmp) order. It increments the last
// byte that is not 0xFF and drops the bytes after it. ok is false when there
// is no such bound: the prefix is empty or all 0xFF bytes (valid UTF-8 never
// holds 0xFF, so for keys only the empty prefix has no bound).
func PrefixEnd(prefix string) (end []byte, ok bool) {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xFF {
			end = []byte(prefix[:i+1])
			end[i]++
			return end, true
		}
	}
	return nil, false
}

// ValidateRange applies Get's range rules to an object of size bytes:
// length < 0 means to the end, a length past the end is cut at the end,
// offset > size or offset == size on a non-empty object is
// sdk.ErrOutOfRange, and a negative offset is sdk.ErrInvalidArgument.
// Offset 0 of an empty object is served, with length 0.
func ValidateRange(size, offset, length int64) (servedOffset, servedLength int64, err error) {
	if offset < 0 {
		return 0, 0, fmt.Errorf("range offset %d is negative; it is 0 or more: %w", offset, sdk.ErrInvalidArgument)
	}
	if offset > size || (offset == size && size > 0) {
		return 0, 0, fmt.Errorf("range offset %d is outside the object of %d bytes; it must be below the size: %w", offset, size, sdk.ErrOutOfRange)
	}
	rest := size - offset
	if length < 0 || length > rest {
		length = rest
	}
	return offset, length, nil
}

// ChunkSpan returns the sequence numbers of the first and last chunk that
// hold the bytes [offset, offset+length) of an object stored in chunks of
// chunkSize bytes, chunk n holding bytes [n*chunkSize, (n+1)*chunkSize).
// When length <= 0 no chunk is needed and it returns (0, -1). The bytes to
// skip at the start of the first chunk are offset - first*chunkSize.
// chunkSize must be > 0.
func ChunkSpan(offset, length, chunkSize int64) (first, last int64) {
	if length <= 0 {
		return 0, -1
	}
	return offset / chunkSize, (offset + length - 1) / chunkSize
}

// ChunkCount returns how many chunks an object of size bytes has.
func ChunkCount(size, chunkSize int64) int64 {
	return (size + chunkSize - 1) / chunkSize
}

// NewVersion returns a new random version id: 32 lowercase hex digits
// (128 random bits), so versions of concurrent Puts never collide.
func NewVersion() string {
	var b [16]byte
	// crypto/rand.Read never returns an error (Go 1.24+); it crashes the
	// program if the system cannot provide randomness.
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// EncodeMetadata encodes user metadata as the JSON object stored in the
// metadata column; nil and empty maps give "{}".
func EncodeMetadata(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode metadata: %w", err)
	}
	return string(b), nil
}

// DecodeMetadata decodes the metadata column written by EncodeMetadata. An
// empty object (or empty string) gives a nil map.
func DecodeMetadata(s string) (map[string]string, error) {
	if s == "" || s == "{}" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("decode metadata %.64q: %w", s, err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// Chunker cuts the data of a Put into chunks of a fixed size, hashing them
// with SHA-256 and enforcing the announced size as it goes. It holds one
// buffer, reused for every chunk, that grows as data comes up to the chunk
// size (a 4 KiB object never costs a megabyte). Every chunk but the last is
// exactly the chunk size, so chunk n starts at byte n*chunkSize.
type Chunker struct {
	req       PutRequest
	data      io.Reader
	buf       []byte
	chunkSize int
	hash      hash.Hash
	size      int64
	done      bool
	count     int64
}

// firstBuffer is the size the Chunker's buffer starts at (at most the
// chunk size, and at most the announced size plus one).
const firstBuffer = 64 << 10

// NewChunker returns a Chunker reading data for req in chunks of chunkSize
// bytes (> 0).
func NewChunker(req PutRequest, data io.Reader, chunkSize int) *Chunker {
	n := min(chunkSize, firstBuffer)
	if req.Size >= 0 && req.Size < int64(n) {
		n = int(req.Size) + 1 // one more byte: a longer body is seen at once
	}
	return &Chunker{req: req, data: data, buf: make([]byte, n), chunkSize: chunkSize, hash: sha256.New()}
}

// readChunk reads up to one chunk into c.buf, growing it (doubling, up to
// the chunk size) while the data goes on. Like io.ReadFull it returns
// io.EOF when nothing was read and io.ErrUnexpectedEOF for a short chunk.
func (c *Chunker) readChunk() (int, error) {
	n := 0
	for {
		limit := min(len(c.buf), c.chunkSize)
		m, err := io.ReadFull(c.data, c.buf[n:limit])
		n += m
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || (errors.Is(err, io.EOF) && n > 0) {
				return n, io.ErrUnexpectedEOF
			}
			return n, err
		}
		if n == c.chunkSize {
			return n, nil
		}
		grown := make([]byte, min(2*len(c.buf), c.chunkSize))
		copy(grown, c.buf[:n])
		c.buf = grown
	}
}

// Next returns the next chunk and its sequence number (0, 1, …). The slice is
// valid until the next call. At the end of the data it returns io.EOF (an
// empty object has no chunks). A read error of data is returned wrapped, and
// data longer than the announced size fails with sdk.ErrInvalidArgument as
// soon as the excess is read.
func (c *Chunker) Next() (seq int64, chunk []byte, err error) {
	if c.done {
		return 0, nil, io.EOF
	}
	n, err := c.readChunk()
	switch {
	case errors.Is(err, io.EOF) && n == 0:
		c.done = true
		return 0, nil, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		c.done = true
	case err != nil:
		return 0, nil, fmt.Errorf("put %q: read data at byte %d: %w", c.req.Key, c.size+int64(n), err)
	}
	c.size += int64(n)
	if c.req.Size >= 0 && c.size > c.req.Size {
		return 0, nil, fmt.Errorf("put %q: data is longer than the announced size of %d bytes: %w", c.req.Key, c.req.Size, sdk.ErrInvalidArgument)
	}
	c.hash.Write(c.buf[:n])
	seq = c.count
	c.count++
	return seq, c.buf[:n], nil
}

// Finish checks, after Next returned io.EOF, that the data had the
// announced size and the expected SHA-256, and returns its size and
// lowercase hex SHA-256. Mismatches wrap sdk.ErrInvalidArgument.
func (c *Chunker) Finish() (size int64, sum string, err error) {
	if !c.done {
		return 0, "", fmt.Errorf("put %q: finish before the end of the data", c.req.Key)
	}
	sum = hex.EncodeToString(c.hash.Sum(nil))
	if c.req.Size >= 0 && c.size != c.req.Size {
		return 0, "", fmt.Errorf("put %q: data is %d bytes, not the announced %d: %w", c.req.Key, c.size, c.req.Size, sdk.ErrInvalidArgument)
	}
	if c.req.SHA256 != "" && sum != c.req.SHA256 {
		return 0, "", fmt.Errorf("put %q: data has sha256 %s, not the expected %s: %w", c.req.Key, sum, c.req.SHA256, sdk.ErrInvalidArgument)
	}
	return c.size, sum, nil
}

// Done reports whether the data has ended: the chunk Next returned last was
// short (or Next returned io.EOF), so the next Next returns io.EOF. A
// driver may then write that chunk together with the object row in one
// transaction. When the data ends exactly at a chunk boundary, Done is
// false until Next returns io.EOF.
func (c *Chunker) Done() bool { return c.done }

// Chunks returns how many chunks Next has returned so far.
func (c *Chunker) Chunks() int64 { return c.count }
