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
