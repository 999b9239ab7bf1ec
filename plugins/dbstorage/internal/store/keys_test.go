package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/datawarehouse/dw/sdk/v6"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		key  string
		ok   bool
		rule string // a word the error must hold
	}{
		{"a", true, ""},
		{"a/b/c.txt", true, ""},
		{"日本語/é", true, ""},
		{"\U0010FFFF", true, ""},
		{strings.Repeat("k", 1024), true, ""},
		{strings.Repeat("é", 512), true, ""},
		{"", false, "empty"},
		{strings.Repeat("k", 1025), false, "1025 bytes"},
		{strings.Repeat("é", 512) + "x", false, "at most 1024"},
		{"a\x00b", false, "NUL"},
		{"\xff", false, "UTF-8"},
		{"\xed\xa0\x80", false, "UTF-8"}, // a surrogate
		{"\xe2\x82", false, "UTF-8"},     // truncated
	}
	for _, tc := range tests {
		err := ValidateKey(tc.key)
		if tc.ok {
			if err != nil {
				t.Errorf("ValidateKey(%.20q): %v; want nil", tc.key, err)
			}
			continue
		}
		if !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("ValidateKey(%.20q): %v; want ErrInvalidArgument", tc.key, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.rule) {
			t.Errorf("ValidateKey(%.20q): %q does not name the rule %q", tc.key, err, tc.rule)
		}
	}
}

func TestValidateSHA256(t *testing.T) {
	good := strings.Repeat("0123456789abcdef", 4)
	if err := ValidateSHA256(good); err != nil {
		t.Fatalf("ValidateSHA256(%q): %v", good, err)
	}
	for _, s := range []string{"", "abc", good + "0", strings.ToUpper(good), good[:63] + "g"} {
		if err := ValidateSHA256(s); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("ValidateSHA256(%q): %v; want ErrInvalidArgument", s, err)
		}
	}
}

func TestValidatePutRequest(t *testing.T) {
	good := PutRequest{Key: "k", Size: -1}
	if err := ValidatePutRequest(good); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	for _, req := range []PutRequest{
		{Key: "", Size: -1},
		{Key: "k", Size: -2},
		{Key: "k", Size: 1, SHA256: "x"},
	} {
		if err := ValidatePutRequest(req); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("ValidatePutRequest(%+v): %v; want ErrInvalidArgument", req, err)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct {
		prefix string
		end    string
		ok     bool
	}{
		{"", "", false},
		{"a", "b", true},
		{"a/", "a0", true},
		{"az", "a{", true},
		{"\x7f", "\x80", true},
		{"é", "\xc3\xaa", true},                    // U+00E9 → C3 AA (ê)
		{"\U0010FFFF", "\xf4\x8f\xbf\xc0", true},   // F4 8F BF BF
		{"a\U0010FFFF", "a\xf4\x8f\xbf\xc0", true}, // last byte is not FF
		{"a\xff", "b", true},                       // trailing FF dropped
		{"a\xff\xff", "b", true},                   // several
		{"\xff", "", false},                        // no bound
		{"\xff\xff", "", false},                    // no bound
		{"\x00", "\x01", true},                     // bytes, not keys
		{strings.Repeat("z", 1024), strings.Repeat("z", 1023) + "{", true},
	}
	for _, tc := range tests {
		end, ok := PrefixEnd(tc.prefix)
		if ok != tc.ok || string(end) != tc.end {
			t.Errorf("PrefixEnd(%q) = %q, %v; want %q, %v", tc.prefix, end, ok, tc.end, tc.ok)
		}
	}
	// The bound holds: every extension of the prefix sorts below it, and
	// the next strings above.
	for _, p := range []string{"a", "é", "\U0010FFFF", "日本"} {
		end, _ := PrefixEnd(p)
		for _, ext := range []string{"", "\x00", "z", "\U0010FFFF\U0010FFFF", strings.Repeat("\xff", 8)} {
			if !(p+ext < string(end)) {
				t.Errorf("%q + %q is not below PrefixEnd %q", p, ext, end)
			}
		}
		if strings.HasPrefix(string(end), p) {
			t.Errorf("PrefixEnd(%q) = %q has the prefix", p, end)
		}
	}
}

func TestValidateRange(t *testing.T) {
	tests := []struct {
		size, offset, length int64
		wantOff, wantLen     int64
		wantErr              error
	}{
		{100, 0, -1, 0, 100, nil},
		{100, 0, 10, 0, 10, nil},
		{100, 90, 50, 90, 10, nil},
		{100, 99, -1, 99, 1, nil},
		{100, 10, 0, 10, 0, nil},
		{100, 0, 1 << 62, 0, 100, nil},
		{100, 100, -1, 0, 0, sdk.ErrOutOfRange},
		{100, 100, 0, 0, 0, sdk.ErrOutOfRange},
		{100, 101, 1, 0, 0, sdk.ErrOutOfRange},
		{0, 0, -1, 0, 0, nil},
		{0, 0, 10, 0, 0, nil},
		{0, 1, -1, 0, 0, sdk.ErrOutOfRange},
		{100, -1, 10, 0, 0, sdk.ErrInvalidArgument},
	}
	for _, tc := range tests {
		off, n, err := ValidateRange(tc.size, tc.offset, tc.length)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("ValidateRange(%d, %d, %d): %v; want %v", tc.size, tc.offset, tc.length, err, tc.wantErr)
			}
			continue
		}
		if err != nil || off != tc.wantOff || n != tc.wantLen {
			t.Errorf("ValidateRange(%d, %d, %d) = %d, %d, %v; want %d, %d", tc.size, tc.offset, tc.length, off, n, err, tc.wantOff, tc.wantLen)
		}
	}
}

func TestChunkSpan(t *testing.T) {
	tests := []struct {
		offset, length, cs int64
		first, last        int64
	}{
		{0, 1, 10, 0, 0},
		{0, 10, 10, 0, 0},
		{0, 11, 10, 0, 1},
		{9, 2, 10, 0, 1},
		{10, 10, 10, 1, 1},
		{15, 100, 10, 1, 11},
		{5, 0, 10, 0, -1},
		{5, -1, 10, 0, -1},
	}
	for _, tc := range tests {
		first, last := ChunkSpan(tc.offset, tc.length, tc.cs)
		if first != tc.first || last != tc.last {
			t.Errorf("ChunkSpan(%d, %d, %d) = %d, %d; want %d, %d", tc.offset, tc.length, tc.cs, first, last, tc.first, tc.last)
		}
	}
	for _, tc := range []struct{ size, cs, n int64 }{{0, 10, 0}, {1, 10, 1}, {10, 10, 1}, {11, 10, 2}} {
		if n := ChunkCount(tc.size, tc.cs); n != tc.n {
			t.Errorf("ChunkCount(%d, %d) = %d; want %d", tc.size, tc.cs, n, tc.n)
		}
	}
}

func TestNewVersion(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		v := NewVersion()
		if len(v) != 32 || strings.Trim(v, "0123456789abcdef") != "" {
			t.Fatalf("NewVersion() = %q; want 32 lowercase hex digits", v)
		}
		if seen[v] {
			t.Fatalf("NewVersion() repeated %q", v)
		}
		seen[v] = true
	}
}

func TestMetadata(t *testing.T) {
	for _, m := range []map[string]string{nil, {}, {"a": "b"}, {"zoë": "日本\x00\"", "": ""}} {
		s, err := EncodeMetadata(m)
		if err != nil {
			t.Fatalf("EncodeMetadata(%v): %v", m, err)
		}
		back, err := DecodeMetadata(s)
		if err != nil {
			t.Fatalf("DecodeMetadata(%q): %v", s, err)
		}
		if len(back) != len(m) {
			t.Fatalf("metadata %v came back as %v", m, back)
		}
		for k, v := range m {
			if back[k] != v {
				t.Fatalf("metadata %v came back as %v", m, back)
			}
		}
		if len(m) == 0 && (s != "{}" || back != nil) {
			t.Fatalf("empty metadata encodes as %q and decodes as %v; want {} and nil", s, back)
		}
	}
	if _, err := DecodeMetadata(`{"a":1}`); err == nil {
		t.Fatal("DecodeMetadata of a non-string value succeeded")
	}
}

// chunkAll runs a Chunker over data and returns its chunks and error.
func chunkAll(req PutRequest, data io.Reader, cs int) ([][]byte, int64, string, error) {
	c := NewChunker(req, data, cs)
	var chunks [][]byte
	for {
		seq, chunk, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return chunks, 0, "", err
		}
		if seq != int64(len(chunks)) {
			return chunks, 0, "", errors.New("sequence numbers out of order")
		}
		chunks = append(chunks, bytes.Clone(chunk))
	}
	size, sum, err := c.Finish()
	return chunks, size, sum, err
}

func TestChunker(t *testing.T) {
	const cs = 10
	for _, n := range []int{0, 1, cs - 1, cs, cs + 1, 3*cs + 4} {
		data := bytes.Repeat([]byte("x"), n)
		digest := sha256.Sum256(data)
		want := hex.EncodeToString(digest[:])
		// One byte per Read, to check that chunks are filled whole.
		chunks, size, sum, err := chunkAll(PutRequest{Key: "k", Size: int64(n), SHA256: want}, iotest.OneByteReader(bytes.NewReader(data)), cs)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if size != int64(n) || sum != want {
			t.Fatalf("%d bytes: size %d sha256 %s", n, size, sum)
		}
		if int64(len(chunks)) != ChunkCount(int64(n), cs) {
			t.Fatalf("%d bytes: %d chunks", n, len(chunks))
		}
		for i, c := range chunks {
			if i < len(chunks)-1 && len(c) != cs {
				t.Fatalf("%d bytes: chunk %d is %d bytes", n, i, len(c))
			}
		}
	}
	errBoom := errors.New("boom")
	tests := []struct {
		name string
		req  PutRequest
		data io.Reader
		want error
	}{
		{"too long", PutRequest{Key: "k", Size: 5}, strings.NewReader(strings.Repeat("x", 25)), sdk.ErrInvalidArgument},
		{"too long at a chunk boundary", PutRequest{Key: "k", Size: 10}, strings.NewReader(strings.Repeat("x", 11)), sdk.ErrInvalidArgument},
		{"too short", PutRequest{Key: "k", Size: 26}, strings.NewReader(strings.Repeat("x", 25)), sdk.ErrInvalidArgument},
		{"sha256 mismatch", PutRequest{Key: "k", Size: -1, SHA256: strings.Repeat("0", 64)}, strings.NewReader("x"), sdk.ErrInvalidArgument},
		{"read error", PutRequest{Key: "k", Size: -1}, io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(errBoom)), errBoom},
	}
	for _, tc := range tests {
		_, _, _, err := chunkAll(tc.req, tc.data, cs)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v; want %v", tc.name, err, tc.want)
		}
	}
	// Too long is noticed without reading everything.
	c := NewChunker(PutRequest{Key: "k", Size: 5}, io.MultiReader(strings.NewReader(strings.Repeat("x", 10)), iotest.ErrReader(errBoom)), cs)
	if _, _, err := c.Next(); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("first chunk past the announced size: %v; want ErrInvalidArgument", err)
	}
	// Finish before the end is an error.
	c = NewChunker(PutRequest{Key: "k", Size: -1}, strings.NewReader(strings.Repeat("x", 30)), cs)
	if _, _, err := c.Next(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Finish(); err == nil {
		t.Fatal("Finish before the end succeeded")
	}
}

// pieceReader returns at most n bytes per Read.
type pieceReader struct {
	r io.Reader
	n int
}

func (p pieceReader) Read(b []byte) (int, error) { return p.r.Read(b[:min(len(b), p.n)]) }

func TestChunkerGrowsItsBuffer(t *testing.T) {
	const chunk = 1 << 20
	data := make([]byte, 3*chunk+5)
	for i := range data {
		data[i] = byte(i * 31)
	}
	for _, size := range []int64{-1, int64(len(data))} {
		c := NewChunker(PutRequest{Key: "k", Size: size}, pieceReader{bytes.NewReader(data), 1000}, chunk)
		if len(c.buf) > firstBuffer {
			t.Fatalf("size %d: starts with a %d-byte buffer", size, len(c.buf))
		}
		var got []byte
		var lens []int
		for {
			_, p, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			lens = append(lens, len(p))
			got = append(got, p...)
		}
		if !bytes.Equal(got, data) || fmt.Sprint(lens) != fmt.Sprint([]int{chunk, chunk, chunk, 5}) {
			t.Fatalf("size %d: chunks %v, data equal %v", size, lens, bytes.Equal(got, data))
		}
		if _, _, err := c.Finish(); err != nil {
			t.Fatal(err)
		}
	}
	// A small announced object gets a buffer of its size (plus one byte).
	c := NewChunker(PutRequest{Key: "k", Size: 4096}, bytes.NewReader(data[:4096]), chunk)
	if len(c.buf) != 4097 {
		t.Fatalf("a 4 KiB object starts with a %d-byte buffer", len(c.buf))
	}
	// Data longer than announced still fails.
	c = NewChunker(PutRequest{Key: "k", Size: 10}, bytes.NewReader(data[:100]), chunk)
	if _, _, err := c.Next(); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("longer than announced: %v", err)
	}
}
