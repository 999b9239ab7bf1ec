package filestore

import (
	"errors"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/sdk/v6"
)

func TestPageTokenRoundTrip(t *testing.T) {
	for _, tc := range []struct{ dir, after string }{{"", "a"}, {"x/y", "名前"}, {"d", strings.Repeat("n", 255)}} {
		got, err := parsePageToken(pageToken(tc.dir, tc.after), tc.dir)
		if err != nil || got != tc.after {
			t.Errorf("round trip of (%q, %q): %q, %v", tc.dir, tc.after, got, err)
		}
	}
	for _, tok := range []string{"!", "djE", pageToken("other", "a"), pageToken("", ""), pageToken("", "a/b"), strings.Repeat("A", 20000)} {
		if _, err := parsePageToken(tok, ""); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("token %.40q: %v, want ErrInvalidArgument", tok, err)
		}
	}
}

// TestPageTokenCanonical: only the exact token a listing issued is
// accepted; encoding/base64 alone would skip CR and LF and ignore stray
// bits.
func TestPageTokenCanonical(t *testing.T) {
	good := pageToken("d", "name")
	bound := 2 * (sdk.MaxFilePathBytes + sdk.MaxFileNameBytes)
	for _, tc := range []struct{ name, tok, want string }{
		{"CR/LF inserted", good[:4] + "\r\n" + good[4:], `'\r' at offset 4`},
		{"LF appended", good + "\n", `'\n' at offset`},
		{"NUL", good[:2] + "\x00" + good[2:], `'\x00' at offset 2`},
		{"padded", good + "=", `'=' at offset`},
		{"standard alphabet", "+/" + good, `'+' at offset 0`},
		{"stray bits", pageToken("d", "nam")[:len(pageToken("d", "nam"))-1] + "B", "not canonical"},
		{"impossible length", good + "A", "length"},
		{"over the size bound", strings.Repeat("A", bound+1), "too long"},
		{"at the size bound", strings.Repeat("A", bound), "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePageToken(tc.tok, "d")
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("token %.60q: %v; want ErrInvalidArgument saying %q", tc.tok, err, tc.want)
			}
		})
	}
}

// FuzzParsePageToken: any token either fails with ErrInvalidArgument or
// gives a single name (no '/') to start after in the folder asked for.
func FuzzParsePageToken(f *testing.F) {
	for _, seed := range []string{pageToken("", "a"), pageToken("d/e", "f"), "", "!!", "djEAAGE"} {
		f.Add(seed, "")
	}
	f.Fuzz(func(t *testing.T, tok, dir string) {
		after, err := parsePageToken(tok, dir)
		if err != nil {
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("error %v does not wrap ErrInvalidArgument", err)
			}
			return
		}
		if tok != "" && (after == "" || strings.Contains(after, "/")) {
			t.Fatalf("token %q gave start name %q", tok, after)
		}
		if tok != "" && pageToken(dir, after) != tok {
			// Another encoding of the same cursor is harmless, but the codec
			// should be canonical.
			t.Fatalf("token %q is not the canonical %q", tok, pageToken(dir, after))
		}
	})
}
