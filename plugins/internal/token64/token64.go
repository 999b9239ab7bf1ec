// Package token64 decodes the page tokens of the plugins' listings
// (dbstorage objects, filesystem files, fabric nodes): unpadded base64url
// (RFC 4648 §5), and only its canonical form.
//
// encoding/base64 is lenient where a token must not be: it skips '\r' and
// '\n' anywhere in the input, and without Strict it accepts non-zero bits
// after the last full byte, so that many strings decode to the same bytes.
// A token is an opaque value that a client must pass back unchanged; one
// that is not exactly what the server issued is refused, so that a token
// has one spelling (logs, caches and comparisons see the same string) and
// a mangled one fails loudly instead of working by accident. Decode
// accepts a string exactly when encoding its result gives the string back.
package token64

import (
	"encoding/base64"
	"errors"
	"fmt"
)

// enc is the encoding of the tokens.
var enc = base64.RawURLEncoding.Strict()

// Encode returns the token of b.
func Encode(b []byte) string { return enc.EncodeToString(b) }

// Decode returns the bytes of a canonical unpadded base64url token. The
// error says what is wrong (the first byte outside the alphabet and its
// offset, a length no encoding has, or stray bits at the end); callers
// wrap it in their listing's invalid-argument error.
func Decode(tok string) ([]byte, error) {
	for i := 0; i < len(tok); i++ {
		if !inAlphabet(tok[i]) {
			return nil, fmt.Errorf("byte %s at offset %d is not base64url (A-Z a-z 0-9 - _, no padding)", describe(tok[i]), i)
		}
	}
	if len(tok)%4 == 1 {
		return nil, fmt.Errorf("length %d is not the length of any base64url encoding", len(tok))
	}
	b, err := enc.DecodeString(tok)
	if err != nil || Encode(b) != tok {
		// With the alphabet and the length checked, only stray low bits in
		// the last character are left: another spelling of the same bytes.
		return nil, errors.New("not canonical base64url: the last character has bits set that encode nothing")
	}
	return b, nil
}

func inAlphabet(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// describe shows a byte as a quoted character when it is ASCII ('\r',
// '=', '\x00'), else in hex.
func describe(c byte) string {
	if c < 0x80 {
		return fmt.Sprintf("%q", c)
	}
	return fmt.Sprintf("0x%02x", c)
}
