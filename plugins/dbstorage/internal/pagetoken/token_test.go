package pagetoken

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

func testCodec(t testing.TB, now *time.Time) *Codec {
	t.Helper()
	c, err := New(bytes.Repeat([]byte{7}, SecretSize))
	if err != nil {
		t.Fatal(err)
	}
	c.Now = func() time.Time { return *now }
	return c
}

func TestRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := testCodec(t, &now)
	q := Query{Strategy: "primary", Prefix: "logs/"}
	for _, key := range []string{"a", "logs/2026/11/27", strings.Repeat("é", 512), "\U0010FFFF"} {
		tok := c.Encode(q, key)
		got, err := c.Decode(q, tok)
		if err != nil {
			t.Fatalf("Decode(Encode(%q)): %v", key, err)
		}
		if got != key {
			t.Fatalf("Decode(Encode(%q)) = %q", key, got)
		}
		if len(tok) > MaxTokenLen {
			t.Fatalf("token of a %d-byte key is %d bytes, over MaxTokenLen", len(key), len(tok))
		}
	}
}

func TestRefusals(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := testCodec(t, &now)
	q := Query{Strategy: "primary", Prefix: "logs/"}
	good := c.Encode(q, "logs/x")
	raw, _ := base64.RawURLEncoding.DecodeString(good)

	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	other, _ := New(bytes.Repeat([]byte{8}, SecretSize))
	v2 := bytes.Clone(raw)
	v2[0] = 2

	tests := []struct {
		name  string
		q     Query
		token string
		want  string
	}{
		{"not base64", q, "!!!", "malformed"},
		{"empty", q, "", "empty"},
		{"truncated", q, base64.RawURLEncoding.EncodeToString(raw[:20]), "truncated"},
		{"other version", q, base64.RawURLEncoding.EncodeToString(v2), "format version 2"},
		{"flipped key byte", q, flip(len(raw) - macSize - 1), "altered"},
		{"flipped expiry", q, flip(3), "altered"},
		{"flipped mac", q, flip(len(raw) - 1), "altered"},
		{"other secret", q, other.Encode(q, "logs/x"), "altered"},
		{"other prefix", Query{Strategy: "primary", Prefix: "log"}, good, "another query"},
		{"other strategy", Query{Strategy: "archive", Prefix: "logs/"}, good, "another query"},
		{"oversized", q, strings.Repeat("A", MaxTokenLen+1), "longer than"},
		{"at the size bound", q, strings.Repeat("A", MaxTokenLen), "format version 0"},
		{"CR inserted", q, good[:10] + "\r" + good[10:], `'\r' at offset 10`},
		{"LF inserted", q, good[:10] + "\n" + good[10:], `'\n' at offset 10`},
		{"CRLF appended", q, good + "\r\n", "not base64url"},
		{"NUL", q, good[:5] + "\x00" + good[5:], `'\x00' at offset 5`},
		{"padded", q, base64.URLEncoding.EncodeToString(raw), `'=' at offset`},
		{"standard alphabet", q, strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/", "not base64url"},
		{"stray bits", q, strayBits(t, c, q), "not canonical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Decode(tt.q, tt.token)
			if err == nil {
				t.Fatalf("Decode accepted %q", tt.token)
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("error %v does not wrap sdk.ErrInvalidArgument", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "without page_token") {
				t.Fatalf("error %q does not say how to recover", err)
			}
		})
	}
}

// strayBits returns a token of q whose length leaves spare bits in its
// last character, with the lowest of them set: the same bytes, spelled
// differently.
func strayBits(t *testing.T, c *Codec, q Query) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for key := "logs/x"; len(key) < 16; key += "x" {
		tok := c.Encode(q, key)
		if len(tok)%4 != 0 {
			last := strings.IndexByte(alphabet, tok[len(tok)-1])
			return tok[:len(tok)-1] + string(alphabet[last|1])
		}
	}
	t.Fatal("no token length with spare bits")
	return ""
}

func TestExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := testCodec(t, &now)
	c.TTL = time.Minute
	q := Query{Prefix: "p"}
	tok := c.Encode(q, "p1")
	now = now.Add(59 * time.Second)
	if _, err := c.Decode(q, tok); err != nil {
		t.Fatalf("token refused before its expiry: %v", err)
	}
	now = now.Add(time.Second)
	_, err := c.Decode(q, tok)
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: got %v", err)
	}
}

func TestNewRejectsBadSecret(t *testing.T) {
	for _, n := range []int{0, 16, 33} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Fatalf("New accepted a %d-byte secret", n)
		}
	}
}

// FuzzDecode: no input panics, and anything accepted was issued by Encode
// for the same query (so it must re-encode to the same key).
func FuzzDecode(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	c := testCodec(f, &now)
	q := Query{Strategy: "s", Prefix: "a/"}
	f.Add(c.Encode(q, "a/b"))
	f.Add(c.Encode(q, strings.Repeat("x", 1024)))
	f.Add("")
	f.Add("AQ")
	f.Add(strings.Repeat("_", 100))
	f.Fuzz(func(t *testing.T, token string) {
		key, err := c.Decode(q, token)
		if err != nil {
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("error %v does not wrap sdk.ErrInvalidArgument", err)
			}
			return
		}
		if c.Encode(q, key) != token {
			t.Fatalf("accepted token %q is not what Encode makes for key %q", token, key)
		}
	})
}
