package token64

import (
	"bytes"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	valid := Encode([]byte("fabric-nodes/v1\x00node-b"))
	for _, tc := range []struct {
		name, tok string
		want      []byte
		wantErr   string
	}{
		{"empty", "", []byte{}, ""},
		{"one byte", "AA", []byte{0}, ""},
		{"two bytes", "AAA", []byte{0, 0}, ""},
		{"three bytes", "AAAA", []byte{0, 0, 0}, ""},
		{"url alphabet", "-_-_", []byte{0xfb, 0xff, 0xbf}, ""},
		{"valid", valid, []byte("fabric-nodes/v1\x00node-b"), ""},
		{"CR inserted", valid[:4] + "\r" + valid[4:], nil, `'\r' at offset 4`},
		{"LF inserted", valid[:8] + "\n" + valid[8:], nil, `'\n' at offset 8`},
		{"CRLF at the end", valid + "\r\n", nil, `'\r' at offset`},
		{"NUL", "AA\x00A", nil, `'\x00' at offset 2`},
		{"padding", "AA==", nil, `'=' at offset 2`},
		{"std alphabet plus", "+/+/", nil, `'+' at offset 0`},
		{"std alphabet slash", "AA/A", nil, `'/' at offset 2`},
		{"space", "AA A", nil, `' ' at offset 2`},
		{"non-ASCII", "AAé", nil, `byte 0xc3 at offset 2`},
		{"length 1", "A", nil, "length 1"},
		{"length 5", "AAAAA", nil, "length 5"},
		{"stray bits, 2 chars", "AB", nil, "not canonical"},
		{"stray bits, 3 chars", "AAB", nil, "not canonical"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.tok)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Decode(%q) = %q, %v; want an error containing %q", tc.tok, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("Decode(%q) = %q, %v; want %q", tc.tok, got, err, tc.want)
			}
		})
	}
}

// FuzzDecode: a string that decodes is exactly the encoding of what it
// decodes to, and every byte string's encoding decodes back to it.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"", "AA", "AAB", "-_-_", "AA==", "AA\r\nAA", "+/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if b, err := Decode(tok); err == nil && Encode(b) != tok {
			t.Fatalf("accepted %q, which is not the canonical %q", tok, Encode(b))
		}
		b, err := Decode(Encode([]byte(tok)))
		if err != nil || string(b) != tok {
			t.Fatalf("round trip of %q: %q, %v", tok, b, err)
		}
	})
}
