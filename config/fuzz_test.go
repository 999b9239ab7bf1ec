package config

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse as a config file. Parse must not
// panic; it either succeeds with a valid configuration or fails with an
// [*Error] whose every problem names its source (and a key path unless the
// problem is with the file as a whole); and it gives the same answer twice.
// The seed corpus is testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parse(b, "fuzz.yaml", noEnv)
		c2, err2 := parse(b, "fuzz.yaml", noEnv)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, want *Error: %v", err, err)
			}
			if len(ce.Problems) == 0 {
				t.Fatal("*Error without problems")
			}
			for _, p := range ce.Problems {
				if p.Source != "fuzz.yaml" {
					t.Errorf("problem %q: source %q, want fuzz.yaml", p, p.Source)
				}
				if p.Message == "" {
					t.Errorf("problem %q: no message", p)
				}
			}
			if !strings.HasPrefix(err.Error(), "config fuzz.yaml: ") {
				t.Errorf("error does not start with the source: %v", err)
			}
			if err2 == nil || err2.Error() != err.Error() {
				t.Errorf("second parse gave another error:\n%v\n%v", err, err2)
			}
			return
		}
		if issues := c.check(environLookup(noEnv)); len(issues) > 0 {
			t.Errorf("parse accepted a config that does not validate: %v", issues)
		}
		if !reflect.DeepEqual(c, c2) || err2 != nil {
			t.Errorf("second parse gave another result: %v", err2)
		}
		if _, err := json.Marshal(c.Redacted()); err != nil {
			t.Errorf("Redacted() does not encode as JSON: %v", err)
		}
	})
}

// FuzzEnvValue checks that reading any environment variable value neither
// panics nor changes a value that is not YAML.
func FuzzEnvValue(f *testing.F) {
	for _, s := range []string{"100", "64MiB", "[a, b]", "{a: 1}", "[::1]:7070", "~", `"x"`, "&a [*a]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := envValue(s)
		if str, ok := v.(string); ok && str != s && !strings.HasPrefix(strings.TrimSpace(s), `"`) && !strings.HasPrefix(strings.TrimSpace(s), "'") {
			t.Errorf("envValue(%q) = %q: an unquoted string must stay as written", s, str)
		}
	})
}
