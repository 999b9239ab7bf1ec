// Package pagetoken makes and checks the page tokens of dbstorage listings.
//
// A token carries the last key of a page, so that the next page starts
// after it (keyset pagination: its cost does not grow with the position,
// and objects inserted or deleted meanwhile neither shift nor repeat
// others). It is:
//
//   - opaque: base64url, no promise about what is inside; only its
//     canonical spelling is accepted (package token64: no CR/LF, padding
//     or standard-alphabet bytes, no stray bits);
//   - versioned: the first byte is the format version (1); other versions
//     are refused with a message saying which one this server issues;
//   - tamper-evident: an HMAC-SHA256 over everything else, under a secret
//     key the plugin keeps in the host's key-value store (so tokens survive
//     a plugin restart and cannot be forged by clients);
//   - bound to its query: it holds a hash of the strategy and prefix it was
//     issued for, and a token presented with another query is refused
//     (AIP-158: INVALID_ARGUMENT);
//   - expiring: it holds its expiry time (TTL, 15 minutes by default).
//
// Every refusal wraps sdk.ErrInvalidArgument (HTTP 400) and says what to do:
// start the listing again without page_token.
//
// Layout, before base64url (no padding):
//
//	version    1 byte   = 1
//	expires    8 bytes  unix seconds, big endian
//	query      16 bytes first half of SHA-256(strategy 0x00 prefix)
//	keylen     uvarint
//	key        keylen bytes: the last key of the page
//	mac        32 bytes HMAC-SHA256(secret, all of the above)
package pagetoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/datawarehouse/dw/plugins/internal/token64"
	"github.com/datawarehouse/dw/sdk/v6"
)

// Version is the token format this package issues.
const Version = 1

// DefaultTTL is how long a token stays valid when Codec.TTL is 0.
const DefaultTTL = 15 * time.Minute

// SecretSize is the size of the HMAC secret.
const SecretSize = 32

// MaxTokenLen bounds the length of a token accepted by Decode: a key of
// 1024 bytes makes tokens of about 1.5 KiB.
const MaxTokenLen = 4096

// maxKeyLen is the longest key a token may carry (keys are 1–1024 bytes).
const maxKeyLen = 1024

const (
	queryHashSize = 16
	macSize       = sha256.Size
	headerSize    = 1 + 8 + queryHashSize
)

// Query is what a token is bound to.
type Query struct {
	Strategy string
	Prefix   string
}

func (q Query) hash() [queryHashSize]byte {
	h := sha256.New()
	h.Write([]byte(q.Strategy))
	h.Write([]byte{0})
	h.Write([]byte(q.Prefix))
	var out [queryHashSize]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Codec issues and checks tokens. The zero value is not usable: Secret must
// be SecretSize bytes.
type Codec struct {
	// Secret is the HMAC key.
	Secret []byte
	// TTL is how long an issued token stays valid; 0 means DefaultTTL.
	TTL time.Duration
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
}

// New returns a Codec with the given secret and the default TTL.
func New(secret []byte) (*Codec, error) {
	if len(secret) != SecretSize {
		return nil, fmt.Errorf("page token secret is %d bytes, want %d", len(secret), SecretSize)
	}
	return &Codec{Secret: secret}, nil
}

func (c *Codec) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Codec) ttl() time.Duration {
	if c.TTL > 0 {
		return c.TTL
	}
	return DefaultTTL
}

func (c *Codec) mac(b []byte) []byte {
	m := hmac.New(sha256.New, c.Secret)
	m.Write(b)
	return m.Sum(nil)
}

// Encode returns a token for the page after lastKey in q.
func (c *Codec) Encode(q Query, lastKey string) string {
	b := make([]byte, 0, headerSize+binary.MaxVarintLen64+len(lastKey)+macSize)
	b = append(b, Version)
	b = binary.BigEndian.AppendUint64(b, uint64(c.now().Add(c.ttl()).Unix()))
	qh := q.hash()
	b = append(b, qh[:]...)
	b = binary.AppendUvarint(b, uint64(len(lastKey)))
	b = append(b, lastKey...)
	b = append(b, c.mac(b)...)
	return token64.Encode(b)
}

// restart is the advice every refusal ends with.
const restart = "start the listing again without page_token"

// Decode checks token against q and returns the last key it carries. Every
// error wraps sdk.ErrInvalidArgument.
func (c *Codec) Decode(q Query, token string) (string, error) {
	if len(token) > MaxTokenLen {
		return "", fmt.Errorf("%w: page_token is %d bytes, longer than any token this server issues (at most %d); %s",
			sdk.ErrInvalidArgument, len(token), MaxTokenLen, restart)
	}
	b, err := token64.Decode(token)
	if err != nil {
		return "", fmt.Errorf("%w: page_token is malformed (%v; not a token this server issued); pass next_page_token unchanged or %s",
			sdk.ErrInvalidArgument, err, restart)
	}
	if len(b) < 1 {
		return "", fmt.Errorf("%w: page_token is empty; %s", sdk.ErrInvalidArgument, restart)
	}
	if b[0] != Version {
		return "", fmt.Errorf("%w: page_token has format version %d, this server issues version %d; %s",
			sdk.ErrInvalidArgument, b[0], Version, restart)
	}
	if len(b) < headerSize+1+macSize {
		return "", fmt.Errorf("%w: page_token is truncated; pass next_page_token unchanged or %s", sdk.ErrInvalidArgument, restart)
	}
	body, sum := b[:len(b)-macSize], b[len(b)-macSize:]
	if !hmac.Equal(sum, c.mac(body)) {
		return "", fmt.Errorf("%w: page_token was altered or issued by another server; %s", sdk.ErrInvalidArgument, restart)
	}
	// The MAC holds: the rest was made by Encode, but check it anyway.
	expires := time.Unix(int64(binary.BigEndian.Uint64(body[1:9])), 0)
	qh := q.hash()
	if !hmac.Equal(body[9:headerSize], qh[:]) {
		return "", fmt.Errorf("%w: page_token was issued for another query (a different prefix or strategy); use it only with the query that returned it, or %s",
			sdk.ErrInvalidArgument, restart)
	}
	if now := c.now(); !now.Before(expires) {
		return "", fmt.Errorf("%w: page_token expired at %s (tokens are valid for %s); %s",
			sdk.ErrInvalidArgument, expires.UTC().Format(time.RFC3339), c.ttl(), restart)
	}
	n, w := binary.Uvarint(body[headerSize:])
	if w <= 0 || n > maxKeyLen || uint64(len(body)-headerSize-w) != n {
		return "", errors.Join(sdk.ErrInvalidArgument, fmt.Errorf("page_token is corrupt; %s", restart))
	}
	return string(body[headerSize+w:]), nil
}
