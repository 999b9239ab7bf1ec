package contract

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

// TestJSONKeepsEveryDigit is the reason limits cross the wire as JSON:
// google.protobuf.Struct turns 9007199254740993 into ...992.
func TestJSONKeepsEveryDigit(t *testing.T) {
	in := map[string]any{
		"i64max":  int64(math.MaxInt64),
		"i64min":  int64(math.MinInt64),
		"u64max":  uint64(math.MaxUint64),
		"above53": uint64(1<<53 + 1),
		"int":     42,
		"neg":     -7,
		"float":   0.1,
		"bigf":    math.MaxFloat64,
		"dur":     "2562047h47m16.854775807s",
		"size":    "8EiB",
		"nested":  map[string]any{"n": uint64(18446744073709551614), "list": []any{int64(-1), 2.5}},
		"bool":    true,
		"nil":     nil,
	}
	b, err := EncodeJSON(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"i64max":  int64(math.MaxInt64),
		"i64min":  int64(math.MinInt64),
		"u64max":  uint64(math.MaxUint64),
		"above53": int64(1<<53 + 1),
		"int":     int64(42),
		"neg":     int64(-7),
		"float":   0.1,
		"bigf":    math.MaxFloat64,
		"dur":     "2562047h47m16.854775807s",
		"size":    "8EiB",
		"nested":  map[string]any{"n": uint64(18446744073709551614), "list": []any{int64(-1), 2.5}},
		"bool":    true,
		"nil":     nil,
	}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", out, want)
	}
}

func TestDecodeJSONRejects(t *testing.T) {
	for _, in := range []string{`[]`, `1`, `"x"`, `null`, `{"a":1}{}`, `{"a":1} x`, `{"a":`, `{"a":1e400}`, `{"a":-1e400}`} {
		if _, err := DecodeJSON([]byte(in)); err == nil {
			t.Errorf("DecodeJSON(%s) accepted", in)
		}
	}
	if _, err := DecodeJSON([]byte(`{"a":"` + strings.Repeat("x", MaxLimitsJSONBytes) + `"}`)); err == nil {
		t.Error("DecodeJSON accepted more than MaxLimitsJSONBytes")
	}
	for _, in := range []string{``, `  `, `{}`} {
		m, err := DecodeJSON([]byte(in))
		if err != nil || m == nil || len(m) != 0 {
			t.Errorf("DecodeJSON(%q) = %v, %v; want an empty map", in, m, err)
		}
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":18446744073709551615}`, `{"a":-9223372036854775808}`, `{"a":[1,{"b":2.5}]}`, `{"a":1e308}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeJSON(b)
		if err != nil {
			return
		}
		// One round trip may change a type (a float64 100 is written
		// "100" and read as an int64); after that the value is stable.
		b2, err := EncodeJSON(m)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", m, err)
		}
		m2, err := DecodeJSON(b2)
		if err != nil {
			t.Fatalf("decode %s: %v", b2, err)
		}
		b3, err := EncodeJSON(m2)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", m2, err)
		}
		m3, err := DecodeJSON(b3)
		if err != nil || !reflect.DeepEqual(m2, m3) {
			t.Fatalf("not stable: %s -> %#v -> %s -> %#v (%v)", b2, m2, b3, m3, err)
		}
	})
}
