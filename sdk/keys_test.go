package sdk

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateObjectKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		rule string // "" = valid
	}{
		{"a", ""},
		{strings.Repeat("k", MaxObjectKeyBytes), ""},
		{"", "empty"},
		{strings.Repeat("k", MaxObjectKeyBytes+1), "1025 bytes, at most 1024"},
		{"\xff", "not valid UTF-8"},
		{"a\x00", "contains NUL at byte 1"},
	} {
		err := ValidateObjectKey(tc.key)
		if tc.rule == "" {
			if err != nil {
				t.Errorf("ValidateObjectKey(%.20q) = %v", tc.key, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.rule) || !strings.Contains(err.Error(), "1 to 1024 bytes") {
			t.Errorf("ValidateObjectKey(%.20q) = %v, want the rule %q", tc.key, err, tc.rule)
		}
	}
	if err := ValidateKVKey(strings.Repeat("k", MaxKVKeyBytes+1)); !errors.Is(err, ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "kv key") {
		t.Errorf("ValidateKVKey(long) = %v", err)
	}
}

func TestValidateFilePath(t *testing.T) {
	long := strings.Repeat("a/", MaxFilePathBytes/2) // 4096 bytes, trailing '/'
	for _, tc := range []struct {
		path string
		ok   bool
		want string // part of the error
	}{
		{"a", true, ""},
		{"a/b/c.txt", true, ""},
		{"dir/.hidden", true, ""},
		{"...", true, ""},
		{"%2e%2e", true, ""}, // encoded forms are names, decoded once by the host
		{"名前/ファイル", true, ""},
		{long[:MaxFilePathBytes-1], true, ""},
		{strings.Repeat("x", MaxFileNameBytes), true, ""},
		{"", false, "is empty"},
		{"/etc/passwd", false, "is absolute"},
		{"..", false, `contains ".."`},
		{"../x", false, `contains ".."`},
		{"a/../../x", false, `contains ".."`},
		{"a/./b", false, `contains "."`},
		{".", false, `contains "."`},
		{"a//b", false, "empty name"},
		{"a/", false, "empty name"},
		{`..\..\x`, false, `'\'`},
		{"a\x00b", false, "control character U+0000"},
		{"a\nb", false, "control character U+000A"},
		{"a\u0085b", false, "control character U+0085"},
		{"\xff", false, "not valid UTF-8"},
		{long + "x", false, "at most 4096"},
		{strings.Repeat("x", MaxFileNameBytes+1), false, "name of 256 bytes"},
	} {
		err := ValidateFilePath(tc.path)
		if tc.ok {
			if err != nil {
				t.Errorf("ValidateFilePath(%.40q) = %v, want nil", tc.path, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateFilePath(%.40q) = %v, want ErrInvalidArgument containing %q", tc.path, err, tc.want)
		}
	}
}

func FuzzValidateFilePath(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "a//b", "/x", "a\x00", "\xff", "名前"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidateFilePath(p) != nil {
			return
		}
		// An accepted path stays inside any root, lexically.
		if strings.HasPrefix(p, "/") || !utf8.ValidString(p) || len(p) > MaxFilePathBytes {
			t.Fatalf("accepted %q", p)
		}
		if c := path.Clean(p); c != p || c == ".." || strings.HasPrefix(c, "../") {
			t.Fatalf("accepted %q, which cleans to %q", p, c)
		}
	})
}

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		name, id string
		shown    string // "" = valid; else the quoted id the error shows
	}{
		{"one letter", "a", ""},
		{"mixed", "A_b-c09", ""},
		{"hex", "0123456789abcdef0123456789abcdef", ""},
		{"128 bytes", strings.Repeat("x", MaxIDBytes), ""},
		{"empty", "", `""`},
		{"129 bytes", strings.Repeat("x", MaxIDBytes+1), `"` + strings.Repeat("x", 64) + `"... (129 bytes)`},
		{"dot dot", "../x", `"../x"`},
		{"slash", "a/b", `"a/b"`},
		{"space", "a b", `"a b"`},
		{"dot", "a.b", `"a.b"`},
		{"colon", "a:b", `"a:b"`},
		{"NUL", "a\x00b", `"a\x00b"`},
		{"unicode", "été", `"été"`},
		{"invalid UTF-8", "a\xff", `"a\xff"`},
		{"long unicode cut at a rune start", "a" + strings.Repeat("é", 40), `"a` + strings.Repeat("é", 31) + `"... (81 bytes)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateID("job id", tc.id)
			if tc.shown == "" {
				if err != nil {
					t.Fatalf("ValidateID(%q) = %v, want nil", tc.id, err)
				}
				return
			}
			want := "job id " + tc.shown + ": invalid argument: " + idRule
			if !errors.Is(err, ErrInvalidArgument) || err.Error() != want {
				t.Fatalf("ValidateID(%.20q) = %v, want %s", tc.id, err, want)
			}
		})
	}
}

func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"a", "A_b-c", "", "../x", "a/b", "a b", "a\x00", "\xff", "été", strings.Repeat("x", MaxIDBytes+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := ValidateID("id", id)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) || !utf8.ValidString(err.Error()) {
				t.Fatalf("ValidateID(%q) = %v", id, err)
			}
			return
		}
		// An accepted id is a non-empty, bounded, single path element
		// that needs no escaping anywhere.
		if id == "" || len(id) > MaxIDBytes || strings.ContainsAny(id, "/.\\%?#") || url.PathEscape(id) != id {
			t.Fatalf("accepted %q", id)
		}
	})
}
