package pluginhost

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/sdk/v6"
)

// testSchema is what the SDK derives for these structs (see sdk's
// TestSchemaOf for the derivation itself):
//
//	type Limits struct {
//		MaxEntries int                `dw:"max_entries" min:"1" max:"1000"`
//		Rate       float64            `dw:"rate" min:"0.5" max:"100"`
//		Small      int8               `dw:"small"`
//		U          uint16             `dw:"u"`
//		TTL        time.Duration      `dw:"ttl" min:"1s" max:"24h"`
//		Wait       time.Duration      `dw:"wait" max:"1h"`
//		Buf        sdk.Size           `dw:"buf" min:"1KiB"`
//		Mode       string             `dw:"mode" enum:"fast,safe"`
//		Callers    map[string]Caller  `dw:"callers"`
//		Tiers      map[string][]int8  `dw:"tiers" min:"-1" max:"9"`
//		Quota      struct{ Ops float64 `dw:"ops"` } `dw:"quota"`
//	}
//	type Caller struct {
//		Bytes sdk.Size `dw:"bytes" max:"1PiB"`
//		Name  string   `dw:"name" enum:"a,b"`
//	}
//	type Settings struct {
//		Root  string   `dw:"root"`
//		Peers []string `dw:"peers"`
//	}
func testSchema() *Schema {
	l := func(f Field) Field { f.Live = true; return f }
	return &Schema{
		Limits: []Field{
			l(Field{Path: "buf", Type: TypeSize, Doc: "buffer", Default: raw(`"64MiB"`), Min: "1KiB"}),
			l(Field{Path: "callers", Type: TypeMap, Doc: "per caller", Default: raw(`{}`)}),
			l(Field{Path: "callers.*", Type: TypeObject}),
			l(Field{Path: "callers.*.bytes", Type: TypeSize, Max: "1PiB"}),
			l(Field{Path: "callers.*.name", Type: TypeString, Enum: []string{"a", "b"}}),
			l(Field{Path: "max_entries", Type: TypeInt, Doc: "most entries | kept", Default: raw(`10`), Min: "1", Max: "1000", Bits: 64}),
			l(Field{Path: "mode", Type: TypeString, Default: raw(`"fast"`), Enum: []string{"fast", "safe"}}),
			l(Field{Path: "quota", Type: TypeObject, Default: raw(`{"ops":0}`)}),
			l(Field{Path: "quota.ops", Type: TypeFloat, Default: raw(`0`)}),
			l(Field{Path: "rate", Type: TypeFloat, Default: raw(`1`), Min: "0.5", Max: "100"}),
			l(Field{Path: "small", Type: TypeInt, Default: raw(`0`), Bits: 8}),
			l(Field{Path: "tiers", Type: TypeMap, Default: raw(`null`)}),
			l(Field{Path: "tiers.*", Type: TypeList}),
			l(Field{Path: "tiers.*[]", Type: TypeInt, Min: "-1", Max: "9", Bits: 8}),
			l(Field{Path: "ttl", Type: TypeDuration, Doc: "entry lifetime", Default: raw(`"1m0s"`), Min: "1s", Max: "24h"}),
			l(Field{Path: "u", Type: TypeUint, Default: raw(`0`), Bits: 16}),
			l(Field{Path: "wait", Type: TypeDuration, Default: raw(`"2s"`), Max: "1h"}),
		},
		Settings: []Field{
			{Path: "peers", Type: TypeList, Default: raw(`[]`)},
			{Path: "peers[]", Type: TypeString},
			{Path: "root", Type: TypeString, Doc: "data folder", Default: raw(`"data"`)},
		},
		SettingsDeclared: true,
	}
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func TestCheckLimits(t *testing.T) {
	s := testSchema()
	cases := []struct {
		name   string
		limits map[string]any
		want   []string // "path: message substring"
	}{
		{"empty", map[string]any{}, nil},
		{"nil", nil, nil},
		{"valid", map[string]any{"max_entries": 1000, "rate": 0.5, "ttl": "2h", "mode": "safe", "buf": 1024,
			"callers": map[string]any{"x": map[string]any{"name": "a", "bytes": "1MiB"}}, "tiers": map[string]any{"hot": []any{-1, 9}},
			"quota": map[string]any{"ops": 2.5}, "small": -128, "u": 65535, "wait": 0}, nil},
		{"null keeps the default", map[string]any{"max_entries": nil, "quota": nil}, nil},
		{"below min", map[string]any{"rate": 0}, []string{"limits.rate: must be >= 0.5, got 0"}},
		{"above max", map[string]any{"max_entries": 1001}, []string{"limits.max_entries: must be <= 1000, got 1001"}},
		{"unknown key", map[string]any{"bogus": 1}, []string{"limits.bogus: unknown key; allowed: buf, callers, max_entries"}},
		{"did you mean", map[string]any{"max_entrys": 5}, []string{`limits.max_entrys: unknown key (did you mean "max_entries"?)`}},
		{"wrong type", map[string]any{"max_entries": "5"}, []string{`limits.max_entries: must be an integer, got string "5"`}},
		{"int8 range", map[string]any{"small": 300}, []string{"limits.small: must be between -128 and 127, got 300"}},
		{"uint16 range", map[string]any{"u": -1}, []string{"limits.u: must be between 0 and 65535, got -1"}},
		{"duration min", map[string]any{"ttl": "500ms"}, []string{"limits.ttl: must be >= 1s, got 500ms"}},
		{"duration zero", map[string]any{"ttl": 0}, []string{"limits.ttl: must be >= 1s, got 0s"}},
		{"duration max", map[string]any{"ttl": "25h"}, []string{"limits.ttl: must be <= 24h0m0s, got 25h0m0s"}},
		{"duration text", map[string]any{"wait": "soon"}, []string{`limits.wait: must be a duration such as "5s"`}},
		{"size min", map[string]any{"buf": "1B"}, []string{"limits.buf: must be >= 1KiB, got 1B"}},
		{"size text", map[string]any{"buf": "lots"}, []string{`limits.buf: must be a size such as "64MiB" or a number of bytes`}},
		{"enum", map[string]any{"mode": "slow"}, []string{`limits.mode: must be one of fast, safe, got "slow"`}},
		{"element key left out", map[string]any{"callers": map[string]any{"x": map[string]any{"bytes": "1MiB"}}},
			[]string{`limits.callers.x.name: must be one of a, b, got "" (not set)`}},
		{"element unknown key", map[string]any{"callers": map[string]any{"x": map[string]any{"name": "a", "nmae": "b"}}},
			[]string{`limits.callers.x.nmae: unknown key (did you mean "name"?)`}},
		{"list element rule", map[string]any{"tiers": map[string]any{"hot": []any{1, 10}}}, []string{"limits.tiers.hot[1]: must be <= 9, got 10"}},
		{"nested object", map[string]any{"quota": map[string]any{"ops": "x"}}, []string{`limits.quota.ops: must be a number, got string "x"`}},
		{"several", map[string]any{"rate": 0, "bogus": 1}, []string{"limits.bogus: unknown key", "limits.rate: must be >= 0.5"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, s.CheckLimits(tc.limits), tc.want)
		})
	}
}

func checkProblems(t *testing.T, got []sdk.FieldProblem, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("problems = %v, want %d: %q", got, len(want), want)
	}
	for i, p := range got {
		if !strings.HasPrefix(p.Error(), want[i]) {
			t.Errorf("problem %d = %q, want it to start with %q", i, p.Error(), want[i])
		}
	}
}

func TestCheckSettings(t *testing.T) {
	s := testSchema()
	checkProblems(t, s.CheckSettings(map[string]any{"root": "x", "peers": []any{"a:1"}}), nil)
	checkProblems(t, s.CheckSettings(map[string]any{"roots": "x"}), []string{`roots: unknown key (did you mean "root"?); allowed: peers, root`})
	checkProblems(t, s.CheckSettings(map[string]any{"peers": "a:1"}), []string{`peers: must be a list, got string "a:1"`})

	s.SettingsDeclared = false
	checkProblems(t, s.CheckSettings(map[string]any{"anything": 1}), nil)
	var none *Schema
	checkProblems(t, none.CheckLimits(map[string]any{"anything": 1}), nil)
}

// TestCheckUnknownType: a type of a newer SDK is left out of the check,
// not misjudged; the rest is still checked.
func TestCheckUnknownType(t *testing.T) {
	s := &Schema{Limits: []Field{
		{Path: "at", Type: "timestamp"},
		{Path: "n", Type: TypeInt, Min: "1", Default: raw(`1`), Bits: 64},
	}}
	checkProblems(t, s.CheckLimits(map[string]any{"at": 5}), nil)
	checkProblems(t, s.CheckLimits(map[string]any{"at": 5, "n": 0}), []string{"limits.n: must be >= 1, got 0"})
}

func TestJSONSchema(t *testing.T) {
	js := testSchema().JSONSchema()
	if _, err := json.Marshal(js); err != nil {
		t.Fatal(err)
	}
	get := func(path ...string) any {
		t.Helper()
		var v any = js
		for _, p := range path {
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: %s is not an object", path, p)
			}
			v = m[p]
		}
		return v
	}
	limits := func(key string) map[string]any {
		return get("properties", "limits", "properties", key).(map[string]any)
	}
	cases := []struct {
		name      string
		got, want any
	}{
		{"section refuses unknown keys", get("additionalProperties"), false},
		{"section may be null", get("type"), []any{"object", "null"}},
		{"settings are properties", get("properties", "root", "default"), "data"},
		{"enabled", get("properties", "enabled", "type"), "boolean"},
		{"limits refuse unknown keys", get("properties", "limits", "additionalProperties"), false},
		{"int bounds", []any{limits("max_entries")["minimum"], limits("max_entries")["maximum"]}, []any{int64(1), int64(1000)}},
		{"int null keeps the default", limits("max_entries")["type"], []any{"integer", "null"}},
		{"int8 range", []any{limits("small")["minimum"], limits("small")["maximum"]}, []any{int64(-128), int64(127)}},
		{"uint16 range", []any{limits("u")["minimum"], limits("u")["maximum"]}, []any{uint64(0), uint64(65535)}},
		{"float bounds", []any{limits("rate")["minimum"], limits("rate")["maximum"]}, []any{0.5, 100.0}},
		{"enum takes null too", limits("mode")["enum"], []any{"fast", "safe", nil}},
		{"description", limits("max_entries")["description"], "most entries | kept"},
		{"duration with min: no 0", limits("ttl")["anyOf"], []any{
			map[string]any{"type": "string", "pattern": DurationPattern}, map[string]any{"type": "null"}}},
		{"duration without min: 0", limits("wait")["anyOf"], []any{
			map[string]any{"type": "string", "pattern": DurationPattern}, map[string]any{"const": 0}, map[string]any{"type": "null"}}},
		{"duration bounds in the description", limits("ttl")["description"], `entry lifetime. A duration such as "5s", from 1s to 24h.`},
		{"size", limits("buf")["anyOf"], []any{
			map[string]any{"type": "string", "pattern": SizePattern}, map[string]any{"type": "integer", "minimum": int64(1024)}, map[string]any{"type": "null"}}},
		{"default", limits("ttl")["default"], "1m0s"},
		{"map element: a key without a zero value is required", limits("callers")["additionalProperties"].(map[string]any)["required"], []any{"name"}},
		{"map element: not null when its zero value breaks a rule", limits("callers")["additionalProperties"].(map[string]any)["type"], "object"},
		{"element key: no null when its zero value breaks a rule",
			limits("callers")["additionalProperties"].(map[string]any)["properties"].(map[string]any)["name"].(map[string]any)["enum"], []any{"a", "b"}},
		{"list element bounds", limits("tiers")["additionalProperties"].(map[string]any)["items"].(map[string]any)["minimum"], int64(-1)},
		{"list element: null when 0 is allowed", limits("tiers")["additionalProperties"].(map[string]any)["items"].(map[string]any)["type"], []any{"integer", "null"}},
		{"object refuses unknown keys", limits("quota")["additionalProperties"], false},
	}
	for _, tc := range cases {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}

	// Without declared settings, the section takes any other key.
	s := testSchema()
	s.SettingsDeclared = false
	if _, ok := s.JSONSchema()["additionalProperties"]; ok {
		t.Error("a section without declared settings refuses unknown keys")
	}
	var none *Schema
	if got := none.JSONSchema()["properties"].(map[string]any)["limits"].(map[string]any)["additionalProperties"]; got != true {
		t.Errorf("sdk 6.0 plugin: limits additionalProperties = %v, want true", got)
	}
}

func TestMarkdown(t *testing.T) {
	md := testSchema().Markdown("demo")
	for _, want := range []string{
		"### demo: limits and settings\n",
		"Limits (`subsystems.demo.limits`) apply live, without a restart.",
		"| key | type | default | allowed | live | description |",
		"| `buf` | size | `64MiB` | ≥ 1KiB | yes | buffer |",
		"| `callers` | map of object | `{}` |  | yes | per caller |",
		"| `callers.*.name` | string |  | `a`, `b` | yes |  |",
		"| `max_entries` | int | `10` | 1 – 1000 | yes | most entries \\| kept |",
		"| `quota` | object |  |  | yes |  |",
		"| `small` | int8 | `0` |  | yes |  |",
		"| `tiers.*[]` | int8 | ",
		"| `ttl` | duration | `1m` | 1s – 24h | yes | entry lifetime |",
		"| `wait` | duration | `2s` | ≤ 1h | yes |  |",
		"Settings (the other keys of `subsystems.demo`): a change restarts the plugin.",
		"| `peers` | list of string | `[]` |  | no (restart) |  |",
		"| `root` | string | `data` |  | no (restart) | data folder |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	for _, unwanted := range []string{"`callers.*` |", "`peers[]`"} {
		if strings.Contains(md, unwanted) {
			t.Errorf("markdown has a row for an element without rules (%s):\n%s", unwanted, md)
		}
	}
	var none *Schema
	if md := none.Markdown("old"); !strings.Contains(md, "reports no schema") {
		t.Errorf("sdk 6.0 plugin: %s", md)
	}
}
