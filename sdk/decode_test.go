package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

type testRate struct {
	BytesPerSecond Size `dw:"bytes_per_second"`
	OpsPerSecond   int  `min:"0" max:"1000000"`
}

type testQuota struct {
	Default testRate
	Callers map[string]testRate
}

type testLimits struct {
	MaxEntries     int  `min:"1" max:"1000"`
	MaxBytes       Size `max:"1GiB"`
	Enabled        bool
	Topology       string        `enum:"star, mesh, federated"`
	HealthTimeout  time.Duration `min:"1s" max:"1m"`
	MaxBufferBytes Size          `min:"1KiB"`
	Ratio          float64       `min:"0" max:"1"`
	Quota          testQuota
	Peers          []string
	Modes          []string       `enum:"a,b"`
	QueueDepth     map[string]int `min:"1"`
	Skipped        int            `dw:"-"`
	Renamed        int            `dw:"custom_key"`
	TTL            time.Duration
	Name           string
}

func defaultLimits() testLimits {
	return testLimits{
		MaxEntries:     100,
		MaxBytes:       64 * MiB,
		Enabled:        true,
		Topology:       "star",
		HealthTimeout:  5 * time.Second,
		MaxBufferBytes: 4 * KiB,
		Ratio:          0.5,
		Quota: testQuota{
			Default: testRate{BytesPerSecond: 10 * MB, OpsPerSecond: 50},
			Callers: map[string]testRate{"bob": {OpsPerSecond: 7}},
		},
		Peers:      []string{"a:1"},
		QueueDepth: map[string]int{"ssd": 32},
		Skipped:    42,
		TTL:        time.Minute,
	}
}

// numbers holds one field of every numeric kind.
type numbers struct {
	I   int
	I8  int8
	I16 int16
	I32 int32
	I64 int64
	U   uint
	U8  uint8
	U16 uint16
	U32 uint32
	U64 uint64
	F32 float32
	F64 float64
}

func TestDecodeOverlaysDefaults(t *testing.T) {
	l := defaultLimits()
	err := Decode(&l, map[string]any{
		"max_entries": 5.0,
		"quota":       map[string]any{"default": map[string]any{"ops_per_second": int64(9)}},
		"ttl":         nil, // null keeps the default
	}, "limits")
	if err != nil {
		t.Fatal(err)
	}
	want := defaultLimits()
	want.MaxEntries = 5
	want.Quota.Default.OpsPerSecond = 9 // BytesPerSecond keeps its default
	if !reflect.DeepEqual(l, want) {
		t.Errorf("got  %+v\nwant %+v", l, want)
	}

	l = defaultLimits()
	if err := Decode(&l, nil, "limits"); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l, defaultLimits()) {
		t.Errorf("nil map changed the defaults: %+v", l)
	}
}

func TestDecodeReplacesMapsAndSlices(t *testing.T) {
	l := defaultLimits()
	callers := map[string]testRate{"keep": {OpsPerSecond: 1}}
	l.Quota.Callers = callers
	err := Decode(&l, map[string]any{
		"quota": map[string]any{"callers": map[string]any{
			"alice": map[string]any{"bytes_per_second": "1MiB"},
			"carol": nil,
		}},
		"peers":       []any{"x:1", "y:2"},
		"queue_depth": map[string]any{"nvme": 128, "hdd": json.Number("8")},
	}, "limits")
	if err != nil {
		t.Fatal(err)
	}
	wantCallers := map[string]testRate{"alice": {BytesPerSecond: MiB}, "carol": {}}
	if !reflect.DeepEqual(l.Quota.Callers, wantCallers) {
		t.Errorf("callers = %+v, want %+v", l.Quota.Callers, wantCallers)
	}
	if !reflect.DeepEqual(callers, map[string]testRate{"keep": {OpsPerSecond: 1}}) {
		t.Errorf("the old map was modified: %+v", callers)
	}
	if !reflect.DeepEqual(l.Peers, []string{"x:1", "y:2"}) {
		t.Errorf("peers = %q", l.Peers)
	}
	if !reflect.DeepEqual(l.QueueDepth, map[string]int{"nvme": 128, "hdd": 8}) {
		t.Errorf("queue_depth = %v", l.QueueDepth)
	}

	// An empty list and an empty object replace too.
	if err := Decode(&l, map[string]any{"peers": []any{}, "queue_depth": map[string]any{}}, "limits"); err != nil {
		t.Fatal(err)
	}
	if l.Peers == nil || len(l.Peers) != 0 || l.QueueDepth == nil || len(l.QueueDepth) != 0 {
		t.Errorf("peers = %#v, queue_depth = %#v; want empty, not nil", l.Peers, l.QueueDepth)
	}
}

func TestDecodeValues(t *testing.T) {
	type textual struct {
		Addr netip.Addr
	}
	type named string
	type namedInt int16
	type kinds struct {
		B     bool
		S     string
		N     named
		NI    namedInt
		D     time.Duration
		Sz    Size
		L     []int
		LL    [][]string
		M     map[named]float32
		Bytes []byte
	}
	tests := []struct {
		name string
		src  map[string]any
		want any // the struct after decoding onto its zero value
	}{
		{"int from float64", map[string]any{"i": 42.0}, numbers{I: 42}},
		{"int from int", map[string]any{"i": 42}, numbers{I: 42}},
		{"int from json.Number", map[string]any{"i": json.Number("-42")}, numbers{I: -42}},
		{"int from json.Number exponent", map[string]any{"i": json.Number("4.2e1")}, numbers{I: 42}},
		{"int from uint8", map[string]any{"i": uint8(7)}, numbers{I: 7}},
		{"int from -0.0", map[string]any{"i": math.Copysign(0, -1)}, numbers{}},
		{"int8 bounds", map[string]any{"i8": -128, "i16": 32767.0}, numbers{I8: -128, I16: 32767}},
		{"int32 bounds", map[string]any{"i32": json.Number("-2147483648")}, numbers{I32: math.MinInt32}},
		{"int64 max", map[string]any{"i64": int64(math.MaxInt64)}, numbers{I64: math.MaxInt64}},
		{"int64 max json", map[string]any{"i64": json.Number("9223372036854775807")}, numbers{I64: math.MaxInt64}},
		{"int64 min", map[string]any{"i64": json.Number("-9223372036854775808")}, numbers{I64: math.MinInt64}},
		{"int64 min float", map[string]any{"i64": -9223372036854775808.0}, numbers{I64: math.MinInt64}},
		{"int64 from uint64", map[string]any{"i64": uint64(math.MaxInt64)}, numbers{I64: math.MaxInt64}},
		{"uint64 max", map[string]any{"u64": uint64(math.MaxUint64)}, numbers{U64: math.MaxUint64}},
		{"uint64 max json", map[string]any{"u64": json.Number("18446744073709551615")}, numbers{U64: math.MaxUint64}},
		{"uint64 from float", map[string]any{"u64": 1e19}, numbers{U64: 1e19}},
		{"uint8 bounds", map[string]any{"u8": 255.0, "u16": 65535, "u32": int64(4294967295), "u": 0}, numbers{U8: 255, U16: 65535, U32: math.MaxUint32}},
		{"floats", map[string]any{"f32": 0.1, "f64": json.Number("1e300")}, numbers{F32: 0.1, F64: 1e300}},
		{"float from int", map[string]any{"f64": int64(math.MaxInt64), "f32": uint64(3)}, numbers{F64: math.MaxInt64, F32: 3}},
		{"float32 max", map[string]any{"f32": math.MaxFloat32}, numbers{F32: math.MaxFloat32}},
		{"bool", map[string]any{"b": true}, kinds{B: true}},
		{"strings", map[string]any{"s": "", "n": "x"}, kinds{N: "x"}},
		{"named int", map[string]any{"ni": -3.0}, kinds{NI: -3}},
		{"duration", map[string]any{"d": "1h30m"}, kinds{D: 90 * time.Minute}},
		{"duration zero number", map[string]any{"d": 0.0}, kinds{}},
		{"duration zero json", map[string]any{"d": json.Number("0")}, kinds{}},
		{"duration zero string", map[string]any{"d": "0"}, kinds{}},
		{"duration value", map[string]any{"d": 3 * time.Second}, kinds{D: 3 * time.Second}},
		{"size string", map[string]any{"sz": "1.5GiB"}, kinds{Sz: 1536 * MiB}},
		{"size float", map[string]any{"sz": 4096.0}, kinds{Sz: 4096}},
		{"size int", map[string]any{"sz": 0}, kinds{}},
		{"size max", map[string]any{"sz": json.Number("9223372036854775807")}, kinds{Sz: math.MaxInt64}},
		{"size value", map[string]any{"sz": 2 * KiB}, kinds{Sz: 2 * KiB}},
		{"list", map[string]any{"l": []any{1.0, int64(2), nil}}, kinds{L: []int{1, 2, 0}}},
		{"typed list", map[string]any{"l": []int{4, 5}}, kinds{L: []int{4, 5}}},
		{"nested lists", map[string]any{"ll": []any{[]any{"a"}, []string{}}}, kinds{LL: [][]string{{"a"}, {}}}},
		{"named-key map", map[string]any{"m": map[string]any{"k": 1.5}}, kinds{M: map[named]float32{"k": 1.5}}},
		{"map[any]any", map[string]any{"m": map[any]any{"k": 2}}, kinds{M: map[named]float32{"k": 2}}},
		{"map[string]float64", map[string]any{"m": map[string]float64{"k": 3}}, kinds{M: map[named]float32{"k": 3}}},
		{"bytes as numbers", map[string]any{"bytes": []any{0, 255.0}}, kinds{Bytes: []byte{0, 255}}},
		{"text unmarshaler", map[string]any{"addr": "::1"}, textual{Addr: netip.MustParseAddr("::1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := reflect.New(reflect.TypeOf(tt.want))
			if err := Decode(dst.Interface(), tt.src, "x"); err != nil {
				t.Fatal(err)
			}
			if got := dst.Elem().Interface(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			// And back again.
			m, err := Encode(dst.Interface())
			if err != nil {
				t.Fatal(err)
			}
			again := reflect.New(reflect.TypeOf(tt.want))
			if err := Decode(again.Interface(), m, "x"); err != nil {
				t.Fatalf("decode %v: %v", m, err)
			}
			if !reflect.DeepEqual(again.Elem().Interface(), tt.want) {
				t.Errorf("round trip through %v gave %+v", m, again.Elem().Interface())
			}
		})
	}
}

func TestDecodeProblems(t *testing.T) {
	const allowed = "allowed: custom_key, enabled, health_timeout, max_buffer_bytes, max_bytes, max_entries, modes, name, peers, queue_depth, quota, ratio, topology, ttl"
	const sizeWant = `must be a size such as "64MiB" or a number of bytes, got `
	tests := []struct {
		name string
		src  map[string]any
		want string
	}{
		// Unknown keys.
		{"typo", map[string]any{"max_entires": 1},
			`limits.max_entires: unknown key (did you mean "max_entries"?); ` + allowed},
		{"far from anything", map[string]any{"color": "red"},
			`limits.color: unknown key; ` + allowed},
		{"nested typo", map[string]any{"quota": map[string]any{"defualt": map[string]any{}}},
			`limits.quota.defualt: unknown key (did you mean "default"?); allowed: callers, default`},
		{"typo in map entry", map[string]any{"quota": map[string]any{"callers": map[string]any{"alice": map[string]any{"ops_per_secnd": 1}}}},
			`limits.quota.callers.alice.ops_per_secnd: unknown key (did you mean "ops_per_second"?); allowed: bytes_per_second, ops_per_second`},
		{"skipped field is unknown", map[string]any{"skipped": 1},
			`limits.skipped: unknown key; ` + allowed},
		{"go name is unknown when renamed", map[string]any{"renamed": 1},
			`limits.renamed: unknown key; ` + allowed},
		{"odd key", map[string]any{"a.b c": 1},
			`limits["a.b c"]: unknown key; ` + allowed},

		// Wrong types.
		{"bool from string", map[string]any{"enabled": "yes"},
			`limits.enabled: must be a boolean, got string "yes"`},
		{"bool from number", map[string]any{"enabled": 1.0},
			`limits.enabled: must be a boolean, got number 1`},
		{"int from string", map[string]any{"max_entries": "5"},
			`limits.max_entries: must be an integer, got string "5"`},
		{"int from bool", map[string]any{"max_entries": true},
			`limits.max_entries: must be an integer, got boolean true`},
		{"int from list", map[string]any{"max_entries": []any{1}},
			`limits.max_entries: must be an integer, got list`},
		{"int from object", map[string]any{"max_entries": map[string]any{}},
			`limits.max_entries: must be an integer, got object`},
		{"float from string", map[string]any{"ratio": "0.5"},
			`limits.ratio: must be a number, got string "0.5"`},
		{"string from number", map[string]any{"name": 5.0},
			`limits.name: must be a string, got number 5`},
		{"string from bool", map[string]any{"name": false},
			`limits.name: must be a string, got boolean false`},
		{"struct from string", map[string]any{"quota": "lots"},
			`limits.quota: must be an object, got string "lots"`},
		{"struct from list", map[string]any{"quota": []any{}},
			`limits.quota: must be an object, got list`},
		{"map from list", map[string]any{"queue_depth": []any{1}},
			`limits.queue_depth: must be an object, got list`},
		{"map with int keys", map[string]any{"queue_depth": map[any]any{1: 1}},
			`limits.queue_depth: must be an object with string keys, got key number 1`},
		{"map with mixed keys", map[string]any{"queue_depth": map[any]any{"a": 1, 2: 1, true: 1, nil: 1, 3.5: 1}},
			`limits.queue_depth: must be an object with string keys, got key boolean true`},
		{"struct from map with int keys", map[string]any{"quota": map[int]any{1: 1}},
			`limits.quota: must be an object with string keys, got key number 1`},
		{"slice from string", map[string]any{"peers": "a,b"},
			`limits.peers: must be a list, got string "a,b"`},
		{"slice element", map[string]any{"peers": []any{"a", 1.0, "c", true}},
			`limits.peers[1]: must be a string, got number 1; limits.peers[3]: must be a string, got boolean true`},
		{"unsupported input type", map[string]any{"name": struct{}{}},
			`limits.name: must be a string, got struct {}`},
		{"invalid json.Number", map[string]any{"max_entries": json.Number("abc")},
			`limits.max_entries: must be an integer, got invalid number "abc"`},

		// Numbers out of range.
		{"below min", map[string]any{"max_entries": -5},
			`limits.max_entries: must be >= 1, got -5`},
		{"above max", map[string]any{"max_entries": 1001.0},
			`limits.max_entries: must be <= 1000, got 1001`},
		{"not integral", map[string]any{"max_entries": 1.5},
			`limits.max_entries: must be an integer, got number 1.5`},
		{"not integral json", map[string]any{"max_entries": json.Number("1.5")},
			`limits.max_entries: must be an integer, got number 1.5`},
		{"1e30 into int", map[string]any{"max_entries": 1e30},
			`limits.max_entries: must be between -9223372036854775808 and 9223372036854775807, got 1e+30`},
		{"json 1e400", map[string]any{"max_entries": json.Number("1e400")},
			`limits.max_entries: must be between -9223372036854775808 and 9223372036854775807, got 1e400`},
		{"NaN into int", map[string]any{"max_entries": math.NaN()},
			`limits.max_entries: must be an integer, got number NaN`},
		{"+Inf into int", map[string]any{"max_entries": math.Inf(1)},
			`limits.max_entries: must be between -9223372036854775808 and 9223372036854775807, got +Inf`},
		{"NaN into float", map[string]any{"ratio": math.NaN()},
			`limits.ratio: must be a finite number, got NaN`},
		{"-Inf into float", map[string]any{"ratio": math.Inf(-1)},
			`limits.ratio: must be a finite number, got -Inf`},
		{"float below min", map[string]any{"ratio": -0.1},
			`limits.ratio: must be >= 0, got -0.1`},
		{"float above max", map[string]any{"ratio": 2},
			`limits.ratio: must be <= 1, got 2`},
		{"map values have rules", map[string]any{"queue_depth": map[string]any{"hdd": 0, "ssd": 4}},
			`limits.queue_depth.hdd: must be >= 1, got 0`},
		{"map values have types", map[string]any{"queue_depth": map[string]any{"hdd": "8"}},
			`limits.queue_depth.hdd: must be an integer, got string "8"`},

		// Strings.
		{"enum", map[string]any{"topology": "ring"},
			`limits.topology: must be one of star, mesh, federated, got "ring"`},
		{"enum is case-sensitive", map[string]any{"topology": "Star"},
			`limits.topology: must be one of star, mesh, federated, got "Star"`},
		{"enum slice", map[string]any{"modes": []any{"a", "c", "b", ""}},
			`limits.modes[1]: must be one of a, b, got "c"; limits.modes[3]: must be one of a, b, got ""`},

		// Durations.
		{"duration from number", map[string]any{"health_timeout": 5.0},
			`limits.health_timeout: must be a duration such as "5s", got number 5`},
		{"duration from int", map[string]any{"health_timeout": 5},
			`limits.health_timeout: must be a duration such as "5s", got number 5`},
		{"duration from bool", map[string]any{"ttl": true},
			`limits.ttl: must be a duration such as "5s", got boolean true`},
		{"duration garbage", map[string]any{"ttl": "5 parsecs"},
			`limits.ttl: must be a duration such as "5s", got "5 parsecs" (units: ns, us, ms, s, m, h)`},
		{"duration without unit", map[string]any{"ttl": "5"},
			`limits.ttl: must be a duration such as "5s", got "5" (units: ns, us, ms, s, m, h)`},
		{"duration overflow", map[string]any{"ttl": "3000000h"},
			`limits.ttl: must be a duration such as "5s", got "3000000h" (units: ns, us, ms, s, m, h)`},
		{"negative duration", map[string]any{"ttl": "-5s"},
			`limits.ttl: must not be negative, got -5s`},
		{"duration below min", map[string]any{"health_timeout": "500ms"},
			`limits.health_timeout: must be >= 1s, got 500ms`},
		{"duration above max", map[string]any{"health_timeout": "1m0.001s"},
			`limits.health_timeout: must be <= 1m0s, got 1m0.001s`},

		// Sizes.
		{"size garbage", map[string]any{"max_buffer_bytes": "lots"},
			`limits.max_buffer_bytes: ` + sizeWant + `"lots": want a number with an optional unit B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB (e.g. "64MiB")`},
		{"size negative string", map[string]any{"max_buffer_bytes": "-1MiB"},
			`limits.max_buffer_bytes: ` + sizeWant + `"-1MiB": must not be negative`},
		{"size fraction", map[string]any{"max_buffer_bytes": "1.5B"},
			`limits.max_buffer_bytes: ` + sizeWant + `"1.5B": not a whole number of bytes`},
		{"size negative number", map[string]any{"max_buffer_bytes": -1.0},
			`limits.max_buffer_bytes: ` + sizeWant + `number -1: must not be negative`},
		{"size huge negative number", map[string]any{"max_buffer_bytes": -1e300},
			`limits.max_buffer_bytes: ` + sizeWant + `number -1e+300: must not be negative`},
		{"size fractional number", map[string]any{"max_buffer_bytes": 1.5},
			`limits.max_buffer_bytes: ` + sizeWant + `number 1.5: not a whole number of bytes`},
		{"size huge number", map[string]any{"max_buffer_bytes": 1e30},
			`limits.max_buffer_bytes: ` + sizeWant + `number 1e+30: too large (the maximum is 9223372036854775807 bytes)`},
		{"size uint64", map[string]any{"max_buffer_bytes": uint64(math.MaxUint64)},
			`limits.max_buffer_bytes: ` + sizeWant + `number 18446744073709551615: too large (the maximum is 9223372036854775807 bytes)`},
		{"size NaN", map[string]any{"max_buffer_bytes": math.NaN()},
			`limits.max_buffer_bytes: ` + sizeWant + `number NaN: not a whole number of bytes`},
		{"size Inf", map[string]any{"max_buffer_bytes": math.Inf(1)},
			`limits.max_buffer_bytes: ` + sizeWant + `number +Inf: too large (the maximum is 9223372036854775807 bytes)`},
		{"size -Inf", map[string]any{"max_buffer_bytes": math.Inf(-1)},
			`limits.max_buffer_bytes: ` + sizeWant + `number -Inf: must not be negative`},
		{"size from bool", map[string]any{"max_buffer_bytes": false},
			`limits.max_buffer_bytes: ` + sizeWant + `boolean false`},
		{"size below min", map[string]any{"max_buffer_bytes": "1000B"},
			`limits.max_buffer_bytes: must be >= 1KiB, got 1KB`},
		{"size above max", map[string]any{"max_bytes": "1.5GiB"},
			`limits.max_bytes: must be <= 1GiB, got 1536MiB`},

		// Rules hold for values that were not set.
		{"zero value of a new map entry", map[string]any{"queue_depth": map[string]any{"hdd": nil}},
			`limits.queue_depth.hdd: must be >= 1, got 0 (not set)`},

		// Many problems at once, sorted by path.
		{"all problems", map[string]any{
			"topology":    "ring",
			"max_entries": 0,
			"enabled":     "no",
			"quota": map[string]any{
				"callers": map[string]any{
					"zed":   map[string]any{"ops_per_second": -1},
					"alice": map[string]any{"ops_per_second": 2e6, "bytes_per_second": "x"},
				},
			},
		}, `limits.enabled: must be a boolean, got string "no"; ` +
			`limits.max_entries: must be >= 1, got 0; ` +
			`limits.quota.callers.alice.bytes_per_second: ` + sizeWant + `"x": want a number with an optional unit B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB (e.g. "64MiB"); ` +
			`limits.quota.callers.alice.ops_per_second: must be <= 1000000, got 2000000; ` +
			`limits.quota.callers.zed.ops_per_second: must be >= 0, got -1; ` +
			`limits.topology: must be one of star, mesh, federated, got "ring"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := defaultLimits()
			err := Decode(&l, tt.src, "limits")
			if err == nil {
				t.Fatalf("no error; want %s", tt.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is a %T, want *DecodeError", err, err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
			if !reflect.DeepEqual(l, defaultLimits()) {
				t.Errorf("dst changed on error: %+v", l)
			}
		})
	}
}

func TestDecodeNumericRanges(t *testing.T) {
	tests := []struct {
		key  string
		val  any
		want string // "" for success
	}{
		{"i8", 127, ""},
		{"i8", -128.0, ""},
		{"i8", 128, "must be between -128 and 127, got 128"},
		{"i8", -129.0, "must be between -128 and 127, got -129"},
		{"i16", 32768, "must be between -32768 and 32767, got 32768"},
		{"i32", int64(math.MaxInt32 + 1), "must be between -2147483648 and 2147483647, got 2147483648"},
		{"i64", uint64(math.MaxInt64 + 1), "must be between -9223372036854775808 and 9223372036854775807, got 9223372036854775808"},
		{"i64", json.Number("9223372036854775808"), "must be between -9223372036854775808 and 9223372036854775807, got 9223372036854775808"},
		{"i64", json.Number("-9223372036854775809"), "must be between -9223372036854775808 and 9223372036854775807, got -9223372036854775809"}, // as a float64 it rounds into range
		{"i64", 9223372036854775807.0, "must be between -9223372036854775808 and 9223372036854775807, got 9223372036854775808"},                // 2^63 as a float64
		{"i64", -1e19, "must be between -9223372036854775808 and 9223372036854775807, got -10000000000000000000"},
		{"u8", 255, ""},
		{"u8", 256, "must be between 0 and 255, got 256"},
		{"u8", -1, "must be between 0 and 255, got -1"},
		{"u", -1.0, "must be between 0 and 18446744073709551615, got -1"},
		{"u16", 65536.0, "must be between 0 and 65535, got 65536"},
		{"u32", json.Number("-0"), ""},
		{"u32", 4294967296, "must be between 0 and 4294967295, got 4294967296"},
		{"u64", json.Number("18446744073709551616"), "must be between 0 and 18446744073709551615, got 18446744073709551616"},
		{"u64", 1.8446744073709552e19, "must be between 0 and 18446744073709551615, got 18446744073709551616"},
		{"u64", math.NaN(), "must be an integer, got number NaN"},
		{"u64", 0.5, "must be an integer, got number 0.5"},
		{"f32", 1e39, "must be between -3.4028235e+38 and 3.4028235e+38, got 1e+39"},
		{"f32", -1e39, "must be between -3.4028235e+38 and 3.4028235e+38, got -1e+39"},
		{"f64", json.Number("1e400"), "must be a finite number, got 1e400"},
		{"f64", json.Number("NaN"), "must be a finite number, got NaN"},
		{"i", json.Number("0x1p4"), ""}, // strconv syntax; encoding/json never makes it
		{"i64", json.Number("9.007199254740993e15"), ""},
		{"u64", json.Number("1.8446744073709551615e19"), ""},
		{"u64", json.Number("1.8446744073709551616e19"), "must be between 0 and 18446744073709551615, got 1.8446744073709551616e19"},
		{"i8", json.Number("12.7e1"), ""},
		{"i8", json.Number("12.8e1"), "must be between -128 and 127, got 128"},
		{"i8", json.Number("1e1000000000"), "must be between -128 and 127, got 1e1000000000"},
		{"i8", json.Number("1e-1000000000"), "must be an integer, got number 1e-1000000000"},
		{"i8", json.Number("0e-1000000000"), ""},
		{"i64", json.Number("9007199254740993.5"), "must be an integer, got number 9007199254740993.5"}, // 2^53+1.5 rounds to an integer
		{"i64", json.Number("-92233720368547758.09e2"), "must be between -9223372036854775808 and 9223372036854775807, got -92233720368547758.09e2"},
		{"f64", json.Number("0.1e-1000000000"), ""},
		{"f32", json.Number("-0"), ""},
		{"i", json.Number("1" + strings.Repeat("0", 100)), "must be between -9223372036854775808 and 9223372036854775807, got 1000000000000000000000000000000000000000000000000000000000000000... (101 bytes)"},
		{"f64", math.MaxFloat64, ""},
		{"f64", json.Number("1e-400"), ""}, // underflows to 0
	}
	for _, tt := range tests {
		var n numbers
		err := Decode(&n, map[string]any{tt.key: tt.val}, "")
		got := ""
		if err != nil {
			got = err.Error()
		}
		want := tt.want
		if want != "" {
			want = tt.key + ": " + want
		}
		if got != want {
			t.Errorf("%s = %#v:\n got %q\nwant %q", tt.key, tt.val, got, want)
		}
	}
}

func TestDecodeBoundaries(t *testing.T) {
	type bounded struct {
		N  int8          `min:"-3" max:"3"`
		U  uint16        `min:"10" max:"65535"`
		F  float32       `min:"0.1" max:"0.9"`
		D  time.Duration `min:"1ms" max:"1h"`
		S  Size          `min:"1KiB" max:"1MB"`
		LS []Size        `max:"2KB"`
	}
	ok := []map[string]any{
		{"n": -3, "u": 10, "f": 0.1, "d": "1ms", "s": "1KiB"},
		{"n": 3, "u": 65535, "f": 0.9, "d": "1h", "s": "1MB", "ls": []any{"2KB", 0}},
		{"n": 0.0, "u": 10.0, "f": json.Number("0.5"), "d": "60m", "s": 1_000_000.0},
	}
	for _, src := range ok {
		b := bounded{N: 1, U: 20, F: 0.5, D: time.Second, S: 2 * KiB}
		if err := Decode(&b, src, "b"); err != nil {
			t.Errorf("Decode(%v): %v", src, err)
		}
	}
	bad := []struct {
		src  map[string]any
		want string
	}{
		{map[string]any{"n": -4}, "b.n: must be >= -3, got -4"},
		{map[string]any{"n": 4}, "b.n: must be <= 3, got 4"},
		{map[string]any{"u": 9}, "b.u: must be >= 10, got 9"},
		{map[string]any{"f": 0.09}, "b.f: must be >= 0.1, got 0.09"},
		{map[string]any{"f": 0.900001}, "b.f: must be <= 0.9, got 0.900001"},
		{map[string]any{"d": "999us"}, "b.d: must be >= 1ms, got 999µs"},
		{map[string]any{"d": "1h0m0.000000001s"}, "b.d: must be <= 1h0m0s, got 1h0m0.000000001s"},
		{map[string]any{"s": 1023}, "b.s: must be >= 1KiB, got 1023B"},
		{map[string]any{"s": "1000001"}, "b.s: must be <= 1MB, got 1000001B"},
		{map[string]any{"ls": []any{"2001B"}}, "b.ls[0]: must be <= 2KB, got 2001B"},
	}
	for _, tt := range bad {
		b := bounded{N: 1, U: 20, F: 0.5, D: time.Second, S: 2 * KiB}
		err := Decode(&b, tt.src, "b")
		if err == nil || err.Error() != tt.want {
			t.Errorf("Decode(%v):\n got %v\nwant %s", tt.src, err, tt.want)
		}
	}
}

func TestDecodeBadDefaults(t *testing.T) {
	// Rules hold for the decoded value as a whole, defaults included.
	l := defaultLimits()
	l.Topology = ""
	l.MaxEntries = 0
	err := Decode(&l, map[string]any{"name": "x"}, "limits")
	want := `limits.max_entries: must be >= 1, got 0 (not set); limits.topology: must be one of star, mesh, federated, got "" (not set)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	// Setting the keys fixes it.
	if err := Decode(&l, map[string]any{"topology": "mesh", "max_entries": 1}, "limits"); err != nil {
		t.Error(err)
	}
}

func TestDecodeRootPaths(t *testing.T) {
	type inner struct{ V int }
	type outer struct {
		In    inner
		List  []inner
		Table map[string]inner
	}
	src := map[string]any{
		"in":    map[string]any{"v": "x"},
		"list":  []any{map[string]any{"v": "y"}},
		"table": map[string]any{"k": map[string]any{"v": "z"}, "a.b": map[string]any{"w": 1}},
		"bogus": 1,
	}
	const problems = `bogus: unknown key; allowed: in, list, table; in.v: must be an integer, got string "x"; ` +
		`list[0].v: must be an integer, got string "y"; table.k.v: must be an integer, got string "z"; table["a.b"].w: unknown key; allowed: v`
	for root, want := range map[string]string{
		"": problems,
		"subsystems.fs": `subsystems.fs.bogus: unknown key; allowed: in, list, table; subsystems.fs.in.v: must be an integer, got string "x"; ` +
			`subsystems.fs.list[0].v: must be an integer, got string "y"; subsystems.fs.table.k.v: must be an integer, got string "z"; ` +
			`subsystems.fs.table["a.b"].w: unknown key; allowed: v`,
	} {
		var o outer
		err := Decode(&o, src, root)
		if err == nil || err.Error() != want {
			t.Errorf("root %q:\n got %v\nwant %s", root, err, want)
		}
	}
}

func TestDecodeErrorShape(t *testing.T) {
	l := defaultLimits()
	allowedKeys := []string{"custom_key", "enabled", "health_timeout", "max_buffer_bytes", "max_bytes", "max_entries", "modes", "name",
		"peers", "queue_depth", "quota", "ratio", "topology", "ttl"}
	err := Decode(&l, map[string]any{"topology": "ring", "max_entries": -5, "max_entrys": 1}, "limits")
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("got %T %v", err, err)
	}
	want := []FieldProblem{
		{Path: "limits.max_entries", Message: "must be >= 1, got -5"},
		{Path: "limits.max_entrys", Message: `unknown key (did you mean "max_entries"?); allowed: ` + strings.Join(allowedKeys, ", "), Allowed: allowedKeys},
		{Path: "limits.topology", Message: `must be one of star, mesh, federated, got "ring"`, Allowed: []string{"star", "mesh", "federated"}},
	}
	if !reflect.DeepEqual(de.Problems, want) {
		t.Errorf("problems = %#v", de.Problems)
	}
	if got := de.Problems[0].Error(); got != "limits.max_entries: must be >= 1, got -5" {
		t.Errorf("FieldProblem.Error() = %q", got)
	}
	if got := (FieldProblem{Message: "m"}).Error(); got != "m" {
		t.Errorf("FieldProblem without path: %q", got)
	}
}

func TestDecodeErrorTruncatesLongLists(t *testing.T) {
	src := map[string]any{}
	for i := range 120 {
		src[fmt.Sprintf("k%03d", i)] = 1
	}
	var n numbers
	err := Decode(&n, src, "")
	var de *DecodeError
	if !errors.As(err, &de) || len(de.Problems) != 120 {
		t.Fatalf("got %v", err)
	}
	if !strings.HasSuffix(err.Error(), "; and 70 more problems") || strings.Count(err.Error(), "unknown key") != 50 {
		t.Errorf("error = %s", err)
	}
}

func TestDecodeDeterministic(t *testing.T) {
	src := map[string]any{}
	callers := map[string]any{}
	for i := range 50 {
		callers[fmt.Sprintf("c%d", i)] = map[string]any{"ops_per_second": -i - 1, "bogus": i}
		src[fmt.Sprintf("unknown%d", i)] = i
	}
	src["quota"] = map[string]any{"callers": callers}
	src["peers"] = []any{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	var first string
	for i := range 20 {
		l := defaultLimits()
		err := Decode(&l, src, "limits")
		if err == nil {
			t.Fatal("no error")
		}
		if i == 0 {
			first = err.Error()
			continue
		}
		if err.Error() != first {
			t.Fatalf("run %d differs:\n%s\n%s", i, err, first)
		}
	}
	var de *DecodeError
	l := defaultLimits()
	errors.As(Decode(&l, src, "limits"), &de)
	for i := 1; i < len(de.Problems); i++ {
		a, b := de.Problems[i-1], de.Problems[i]
		if a.Path > b.Path || a.Path == b.Path && a.Message > b.Message {
			t.Errorf("problems %d and %d out of order: %v, %v", i-1, i, a, b)
		}
	}
	if len(de.Problems) != 50+100+11 {
		t.Errorf("%d problems, want %d", len(de.Problems), 161)
	}
}

// validated has cross-field rules.
type validated struct {
	Low  int
	High int
	fail error
}

func (v *validated) Validate() error {
	if v.fail != nil {
		return v.fail
	}
	if v.Low > v.High {
		return &DecodeError{Problems: []FieldProblem{
			{Path: "low", Message: fmt.Sprintf("must be <= high (%d), got %d", v.High, v.Low)},
			{Path: "", Message: "low and high are inverted"},
		}}
	}
	v.High++ // Validate runs on the decoded copy and may normalise it
	return nil
}

func TestDecodeValidate(t *testing.T) {
	v := validated{Low: 1, High: 2}
	if err := Decode(&v, map[string]any{"low": 2}, "limits"); err != nil {
		t.Fatal(err)
	}
	if v.Low != 2 || v.High != 3 {
		t.Errorf("got %+v", v)
	}

	v = validated{Low: 1, High: 2}
	err := Decode(&v, map[string]any{"low": 5}, "limits")
	want := "limits: low and high are inverted; limits.low: must be <= high (2), got 5"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if v.Low != 1 || v.High != 2 {
		t.Errorf("dst changed: %+v", v)
	}

	v = validated{Low: 1, High: 2}
	err = Decode(&v, map[string]any{"low": 5}, "")
	if err == nil || err.Error() != "low and high are inverted; low: must be <= high (2), got 5" {
		t.Errorf("no root: %v", err)
	}

	v = validated{fail: fmt.Errorf("wrapped: %w", &DecodeError{Problems: []FieldProblem{{Path: "[0]", Message: "m"}}})}
	if err := Decode(&v, nil, "r"); err == nil || err.Error() != "r[0]: m" {
		t.Errorf("wrapped DecodeError: %v", err)
	}

	v = validated{fail: errors.New("the moon is in the wrong phase")}
	err = Decode(&v, nil, "limits")
	var de *DecodeError
	if !errors.As(err, &de) || err.Error() != "limits: the moon is in the wrong phase" {
		t.Errorf("plain error: %v", err)
	}

	// Validate is not called when fields have problems.
	v = validated{fail: errors.New("called")}
	err = Decode(&v, map[string]any{"low": "x"}, "limits")
	if err == nil || strings.Contains(err.Error(), "called") {
		t.Errorf("Validate ran after field problems: %v", err)
	}
}

func TestDecodeEmbedded(t *testing.T) {
	type Common struct {
		Workers int `min:"1"`
	}
	type base struct {
		Verbose bool
	}
	type plugin struct {
		Common
		base
		Named Common `dw:"named"`
		Limit int
	}
	p := plugin{Common: Common{Workers: 2}}
	err := Decode(&p, map[string]any{"workers": 4, "verbose": true, "named": map[string]any{"workers": 1}, "limit": 3}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := plugin{Common: Common{Workers: 4}, base: base{Verbose: true}, Named: Common{Workers: 1}, Limit: 3}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v", p)
	}
	m, err := Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	wantMap := map[string]any{"workers": int64(4), "verbose": true, "named": map[string]any{"workers": int64(1)}, "limit": int64(3)}
	if !reflect.DeepEqual(m, wantMap) {
		t.Errorf("Encode = %#v", m)
	}
	err = Decode(&p, map[string]any{"common": 1}, "")
	if err == nil || err.Error() != "common: unknown key; allowed: limit, named, verbose, workers" {
		t.Errorf("got %v", err)
	}
}

func TestDecodeTextUnmarshaler(t *testing.T) {
	type s struct {
		Addr netip.AddrPort
	}
	var v s
	err := Decode(&v, map[string]any{"addr": "localhost:80"}, "x")
	if err == nil || !strings.HasPrefix(err.Error(), `x.addr: invalid value "localhost:80": `) {
		t.Errorf("got %v", err)
	}
	err = Decode(&v, map[string]any{"addr": 80}, "x")
	if err == nil || err.Error() != `x.addr: must be a string, got number 80` {
		t.Errorf("got %v", err)
	}
}

func TestDecodeHostile(t *testing.T) {
	// Deeply nested objects under an unknown key and under a struct field.
	deep := map[string]any{}
	cur := deep
	for range 100_000 {
		next := map[string]any{}
		cur["x"] = next
		cur = next
	}
	l := defaultLimits()
	err := Decode(&l, map[string]any{"deep": deep, "quota": deep, "peers": []any{deep}}, "limits")
	want := `limits.deep: unknown key; allowed: custom_key, enabled, health_timeout, max_buffer_bytes, max_bytes, max_entries, modes, name, peers, queue_depth, quota, ratio, topology, ttl; ` +
		`limits.peers[0]: must be a string, got object; ` +
		`limits.quota.x: unknown key; allowed: callers, default`
	if err == nil || err.Error() != want {
		t.Errorf("deep:\n got %v\nwant %s", err, want)
	}

	// A huge key: no giant messages, no quadratic suggestion search.
	huge := strings.Repeat("max_entries", 100_000)
	start := time.Now()
	err = Decode(&l, map[string]any{huge: 1, "quota": map[string]any{"callers": map[string]any{huge: map[string]any{"ops_per_second": -1}}}}, "limits")
	if time.Since(start) > 2*time.Second {
		t.Errorf("huge key took %v", time.Since(start))
	}
	if err == nil || len(err.Error()) > 2000 {
		t.Fatalf("huge key: error of %d bytes: %.300v", len(err.Error()), err)
	}
	if !strings.Contains(err.Error(), `limits["max_entriesmax_entries`) || !strings.Contains(err.Error(), `... (1100000 bytes)].ops_per_second: must be >= 0, got -1`) {
		t.Errorf("huge key: %v", err)
	}

	// A huge string value.
	err = Decode(&l, map[string]any{"topology": strings.Repeat("ring", 1<<18)}, "limits")
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("huge value: error of %d bytes", len(err.Error()))
	}

	// Invalid UTF-8 in keys and values.
	err = Decode(&l, map[string]any{"\xff": 1, "name": 1}, "limits")
	if err == nil || !strings.Contains(err.Error(), `limits["\xff"]: unknown key`) {
		t.Errorf("invalid utf-8: %v", err)
	}
	if !reflect.DeepEqual(l, defaultLimits()) {
		t.Errorf("dst changed: %+v", l)
	}
}

// tree is a recursive type: only it can nest without bound.
type tree struct {
	Value    int
	Children []tree
	Named    map[string]tree
}

func TestDecodeRecursiveType(t *testing.T) {
	src := map[string]any{"value": 1, "children": []any{map[string]any{"value": 2, "named": map[string]any{"a": map[string]any{"value": 3}}}}}
	var tr tree
	if err := Decode(&tr, src, "t"); err != nil {
		t.Fatal(err)
	}
	want := tree{Value: 1, Children: []tree{{Value: 2, Named: map[string]tree{"a": {Value: 3}}}}}
	if !reflect.DeepEqual(tr, want) {
		t.Errorf("got %+v", tr)
	}

	deep := map[string]any{}
	cur := deep
	for range 10_000 {
		next := map[string]any{}
		cur["children"] = []any{next}
		cur = next
	}
	err := Decode(&tr, deep, "t")
	if err == nil || !strings.HasSuffix(err.Error(), ": nested deeper than 100 levels") {
		t.Errorf("deep: %.300v", err)
	}

	// A cycle through a map cannot be encoded.
	cyc := tree{Named: map[string]tree{}}
	cyc.Named["self"] = cyc
	if _, err := Encode(cyc); err == nil || !strings.Contains(err.Error(), "nested deeper than 100 levels") {
		t.Errorf("cycle: %v", err)
	}
}

func TestDecodeProgrammerErrors(t *testing.T) {
	type unsupported struct{ C chan int }
	type unsupportedDeep struct {
		M map[string][]unsupported
	}
	type pointer struct{ P *int }
	type iface struct{ A any }
	type intKeys struct{ M map[int]int }
	type badMin struct {
		N int8 `min:"200"`
	}
	type badMax struct {
		D time.Duration `max:"5"`
	}
	type badSize struct {
		S Size `min:"lots"`
	}
	type minOnString struct {
		S string `min:"1"`
	}
	type enumOnInt struct {
		N int `enum:"1,2"`
	}
	type enumEmpty struct {
		S string `enum:"a,,b"`
	}
	type inverted struct {
		N int `min:"5" max:"1"`
	}
	type rulesOnStruct struct {
		S struct{ A int } `min:"1"`
	}
	type dup struct {
		MaxEntries int
		Other      int `dw:"max_entries"`
	}
	type badKey struct {
		N int `dw:"a.b"`
	}
	type tagged struct {
		//lint:ignore U1000 the unexported tagged field is what this case checks
		n int `dw:"n"`
	}
	type embeddedPointer struct {
		*testRate
	}
	tests := []struct {
		dst  any
		want string
	}{
		{nil, "decode limits: dst must be a non-nil pointer to a struct, got <nil>"},
		{testLimits{}, "decode limits: dst must be a non-nil pointer to a struct, got sdk.testLimits"},
		{(*testLimits)(nil), "decode limits: dst must be a non-nil pointer to a struct, got *sdk.testLimits"},
		{new(int), "decode limits: dst must be a non-nil pointer to a struct, got *int"},
		{&unsupported{}, "decode limits: sdk.unsupported field C: unsupported type chan int"},
		{&unsupportedDeep{}, "decode limits: sdk.unsupportedDeep field M: sdk.unsupported field C: unsupported type chan int"},
		{&pointer{}, "decode limits: sdk.pointer field P: unsupported type *int"},
		{&iface{}, "decode limits: sdk.iface field A: unsupported type interface {}"},
		{&intKeys{}, "decode limits: sdk.intKeys field M: unsupported type map[int]int"},
		{&badMin{}, `decode limits: sdk.badMin field N: min tag: "200" is not a int8: strconv.ParseInt: parsing "200": value out of range`},
		{&badMax{}, `decode limits: sdk.badMax field D: max tag: "5" is not a duration: time: missing unit in duration "5"`},
		{&badSize{}, `decode limits: sdk.badSize field S: min tag: invalid size "lots": want a number with an optional unit B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB (e.g. "64MiB")`},
		{&minOnString{}, "decode limits: sdk.minOnString field S: min tag: needs a number, duration or size field (or a map or slice of them), not string"},
		{&enumOnInt{}, "decode limits: sdk.enumOnInt field N: enum tag needs a string field (or a map or slice of strings), not int"},
		{&enumEmpty{}, `decode limits: sdk.enumEmpty field S: enum tag "a,,b" has an empty value`},
		{&inverted{}, "decode limits: sdk.inverted field N: min 5 is above max 1"},
		{&rulesOnStruct{}, "decode limits: sdk.rulesOnStruct field S: min tag: needs a number, duration or size field (or a map or slice of them), not struct { A int }"},
		{&dup{}, `decode limits: sdk.dup fields MaxEntries and Other: both have the key "max_entries"`},
		{&badKey{}, `decode limits: sdk.badKey field N: key "a.b" must be made of letters, digits, '_' and '-'`},
		{&tagged{}, "decode limits: sdk.tagged field n: has a dw tag but is not exported"},
		{&embeddedPointer{}, `decode limits: sdk.embeddedPointer field testRate: embedded pointer to struct is not supported; embed the struct or tag the field dw:"-"`},
	}
	for _, tt := range tests {
		err := Decode(tt.dst, map[string]any{}, "limits")
		var de *DecodeError
		if err == nil || errors.As(err, &de) {
			t.Errorf("Decode(%T) = %v (%T), want a plain error", tt.dst, err, err)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("Decode(%T):\n got %s\nwant %s", tt.dst, err, tt.want)
		}
		if tt.dst == nil || reflect.TypeOf(tt.dst).Kind() != reflect.Pointer || reflect.ValueOf(tt.dst).IsNil() {
			continue
		}
		if _, err := Encode(tt.dst); err == nil || !strings.HasPrefix(err.Error(), "encode: ") {
			t.Errorf("Encode(%T) = %v, want an error", tt.dst, err)
		}
	}
	if err := Decode(new(int), nil, ""); err == nil || err.Error() != "decode (root): dst must be a non-nil pointer to a struct, got *int" {
		t.Errorf("no root: %v", err)
	}
	for _, src := range []any{nil, 5, (*testLimits)(nil), map[string]any{}} {
		if _, err := Encode(src); err == nil || !strings.HasPrefix(err.Error(), "encode: src must be a struct or a pointer to one") {
			t.Errorf("Encode(%T): %v", src, err)
		}
	}
}

func TestEncode(t *testing.T) {
	l := defaultLimits()
	l.Modes = []string{"a"}
	got, err := Encode(&l)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"max_entries":      int64(100),
		"max_bytes":        "64MiB",
		"enabled":          true,
		"topology":         "star",
		"health_timeout":   "5s",
		"max_buffer_bytes": "4KiB",
		"ratio":            0.5,
		"quota": map[string]any{
			"default": map[string]any{"bytes_per_second": "10MB", "ops_per_second": int64(50)},
			"callers": map[string]any{"bob": map[string]any{"bytes_per_second": "0B", "ops_per_second": int64(7)}},
		},
		"peers":       []any{"a:1"},
		"modes":       []any{"a"},
		"queue_depth": map[string]any{"ssd": int64(32)},
		"custom_key":  int64(0),
		"ttl":         "1m0s",
		"name":        "",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}

	n := numbers{I: -1, I8: -8, U: 1, U8: 8, U64: math.MaxUint64, U32: 5, F32: 0.25, F64: 1.5}
	got, err = Encode(n)
	if err != nil {
		t.Fatal(err)
	}
	wantN := map[string]any{
		"i": int64(-1), "i8": int64(-8), "i16": int64(0), "i32": int64(0), "i64": int64(0),
		"u": int64(1), "u8": int64(8), "u16": int64(0), "u32": int64(5), "u64": uint64(math.MaxUint64),
		"f32": 0.25, "f64": 1.5,
	}
	if !reflect.DeepEqual(got, wantN) {
		t.Errorf("got  %#v\nwant %#v", got, wantN)
	}

	// Nil maps and slices encode as nil and decode back to nil.
	var empty testLimits
	empty.Topology, empty.MaxEntries, empty.HealthTimeout, empty.MaxBufferBytes = "mesh", 1, time.Second, KiB
	m, err := Encode(empty)
	if err != nil {
		t.Fatal(err)
	}
	if m["peers"] != nil || m["queue_depth"] != nil {
		t.Errorf("nil slice or map encoded as %#v, %#v", m["peers"], m["queue_depth"])
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	values := []testLimits{
		defaultLimits(),
		{
			MaxEntries: 1000, MaxBytes: GiB, Topology: "federated", HealthTimeout: time.Minute,
			MaxBufferBytes: 1536 * MiB, Ratio: 1, Peers: []string{}, Modes: []string{"b", "a"},
			QueueDepth: map[string]int{"x": 1, "": math.MaxInt}, Renamed: math.MinInt, TTL: 1<<63 - 1,
			Name:  "\u00e9\x00",
			Quota: testQuota{Callers: map[string]testRate{"a.b": {BytesPerSecond: math.MaxInt64, OpsPerSecond: 1}}},
		},
	}
	for _, v := range values {
		v.Skipped = 0 // dw:"-": neither encoded nor decoded
		m, err := Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		var got testLimits
		if err := Decode(&got, m, "limits"); err != nil {
			t.Fatalf("decode %v: %v", m, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, v)
		}
		// Through JSON too, as the host's config layer would send it.
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back map[string]any
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.UseNumber()
		if err := dec.Decode(&back); err != nil {
			t.Fatal(err)
		}
		got = testLimits{}
		if err := Decode(&got, back, "limits"); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("round trip through JSON:\n got %+v\nwant %+v", got, v)
		}
	}
}

func TestSnakeCase(t *testing.T) {
	tests := map[string]string{
		"MaxEntries":     "max_entries",
		"TTL":            "ttl",
		"HTTPAddr":       "http_addr",
		"ID":             "id",
		"UserID":         "user_id",
		"P99Latency":     "p99_latency",
		"Level2Cache":    "level2_cache",
		"IOUringEnabled": "io_uring_enabled",
		"X":              "x",
		"already_snake":  "already_snake",
		"MaxBufferBytes": "max_buffer_bytes",
	}
	for in, want := range tests {
		if got := snakeCase(in); got != want {
			t.Errorf("snakeCase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSuggestKey(t *testing.T) {
	known := []string{"max_bytes", "max_entries", "ttl"}
	tests := map[string]string{
		"max_entires": "max_entries",
		"maxentries":  "max_entries",
		"max_byte":    "max_bytes",
		"tl":          "ttl",
		"ttl_s":       "ttl",
		"t":           "ttl",
		"x":           "",
		"tx":          "ttl",
		"timeout":     "",
		"max":         "",
		"":            "",
	}
	for in, want := range tests {
		if got := suggestKey(in, known); got != want {
			t.Errorf("suggestKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeEmptyStruct(t *testing.T) {
	var v struct{}
	err := Decode(&v, map[string]any{"x": 1}, "limits")
	if err == nil || err.Error() != "limits.x: unknown key; allowed: none" {
		t.Errorf("got %v", err)
	}
	if err := Decode(&v, map[string]any{}, "limits"); err != nil {
		t.Error(err)
	}
	m, err := Encode(v)
	if err != nil || len(m) != 0 || m == nil {
		t.Errorf("Encode = %#v, %v", m, err)
	}
}

func TestDecodeConcurrent(t *testing.T) {
	// The type cache is shared: decode one type from many goroutines.
	type fresh struct {
		N int `min:"1"`
		Q testQuota
	}
	done := make(chan error)
	for i := range 8 {
		go func() {
			var v fresh
			err := Decode(&v, map[string]any{"n": i + 1, "q": map[string]any{"callers": map[string]any{"a": map[string]any{}}}}, "x")
			if err == nil && v.N != i+1 {
				err = fmt.Errorf("n = %d, want %d", v.N, i+1)
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
