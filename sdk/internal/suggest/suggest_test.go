package suggest

import (
	"strings"
	"testing"
)

func TestKey(t *testing.T) {
	known := []string{"listen", "auth", "max_entries", "max_bytes", "heartbeat_interval", "topology"}
	for _, tt := range []struct{ in, want string }{
		{"lisen", "listen"},
		{"lsiten", "listen"}, // a swap is one edit
		{"LISTEN", "listen"},
		{"max_entires", "max_entries"},
		{"max_byte", "max_bytes"},
		{"heartbeat_intervall", "heartbeat_interval"},
		{"topolgy", "topology"},
		{"bogus", ""},
		{"x", ""},
		{"", ""},
		{"au", "auth"},
		{strings.Repeat("a", 1000), ""},
	} {
		if got := Key(tt.in, known); got != tt.want {
			t.Errorf("Key(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"kitten", "sitting", 3}, {"ab", "ba", 1}, {"abc", "acb", 1}, {"ca", "abc", 3},
	} {
		if got := Distance([]rune(tt.a), []rune(tt.b)); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func FuzzKey(f *testing.F) {
	f.Add("lisen", "listen")
	f.Add("", "")
	f.Add("é", "e")
	f.Fuzz(func(t *testing.T, key, known string) {
		got := Key(key, []string{known})
		if got != "" && got != known {
			t.Fatalf("Key(%q, [%q]) = %q", key, known, got)
		}
		if d := Distance([]rune(key), []rune(known)); d < 0 || d > max(len([]rune(key)), len([]rune(known))) {
			t.Fatalf("Distance(%q, %q) = %d", key, known, d)
		}
	})
}
