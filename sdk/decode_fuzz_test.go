package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

type fuzzRate struct {
	Bytes Size  `min:"0" max:"1TiB"`
	Ops   int32 `min:"-1"`
	Label string
}

type fuzzLimits struct {
	Count    int           `min:"1" max:"1000"`
	Small    int8          `dw:"small"`
	Unsigned uint16        `max:"60000"`
	Big      uint64        `dw:"big"`
	Ratio    float32       `min:"0" max:"1"`
	F        float64       `dw:"f"`
	On       bool          `dw:"on"`
	Topology string        `enum:"star,mesh,federated"`
	Timeout  time.Duration `max:"1h"`
	Buffer   Size          `min:"1KiB"`
	Nested   fuzzRate
	Callers  map[string]fuzzRate
	Depths   map[string]uint8 `min:"1"`
	Peers    []string
	Modes    []string `enum:"a,b"`
	Sizes    []Size
	Matrix   [][]int
	Ignored  string `dw:"-"`
}

func fuzzDefaults() fuzzLimits {
	return fuzzLimits{
		Count:    10,
		Topology: "star",
		Timeout:  5 * time.Second,
		Buffer:   64 * MiB,
		Ratio:    0.5,
		Nested:   fuzzRate{Bytes: MB, Ops: 3, Label: "n"},
		Callers:  map[string]fuzzRate{"default": {Ops: 1}},
		Depths:   map[string]uint8{"ssd": 32},
		Peers:    []string{"a"},
	}
}

// FuzzDecode decodes JSON objects (once with plain numbers, once with
// json.Number) onto fuzzLimits. Input that is not a JSON object is read as
// a recipe for a map of Go values instead (see fuzzGenerator), which reaches
// the decoder's paths far more often than mutated JSON does.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"count": 5, "topology": "mesh", "timeout": "1m", "buffer": "1.5GiB"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var srcs []map[string]any
		for _, useNumber := range []bool{false, true} {
			dec := json.NewDecoder(bytes.NewReader(data))
			if useNumber {
				dec.UseNumber()
			}
			var src map[string]any
			if err := dec.Decode(&src); err == nil {
				srcs = append(srcs, src)
			}
		}
		if len(srcs) == 0 {
			g := &fuzzGenerator{data: data}
			srcs = append(srcs, g.object(0))
		}
		for _, src := range srcs {
			l := fuzzDefaults()
			err := Decode(&l, src, "limits")
			if err != nil {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("not a *DecodeError: %v", err)
				}
				if len(de.Problems) == 0 {
					t.Fatal("DecodeError without problems")
				}
				for i, p := range de.Problems {
					if p.Message == "" || !strings.HasPrefix(p.Path, "limits") {
						t.Fatalf("bad problem %#v", p)
					}
					if i > 0 {
						q := de.Problems[i-1]
						if q.Path > p.Path || q.Path == p.Path && q.Message > p.Message {
							t.Fatalf("problems out of order: %v, %v", q, p)
						}
					}
				}
				if !reflect.DeepEqual(l, fuzzDefaults()) {
					t.Fatalf("dst changed on error: %+v", l)
				}
				l2 := fuzzDefaults()
				if err2 := Decode(&l2, src, "limits"); err2 == nil || err2.Error() != err.Error() {
					t.Fatalf("second decode differs:\n%v\n%v", err, err2)
				}
				continue
			}

			m, err := Encode(l)
			if err != nil {
				t.Fatalf("encode %+v: %v", l, err)
			}
			want := l
			want.Ignored = ""
			var again fuzzLimits
			if err := Decode(&again, m, "limits"); err != nil {
				t.Fatalf("decode of encoded %v: %v", m, err)
			}
			if !reflect.DeepEqual(again, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", again, want)
			}

			// Through JSON, as the limits travel between host and plugin.
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatalf("marshal %v: %v", m, err)
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			var back map[string]any
			if err := dec.Decode(&back); err != nil {
				t.Fatal(err)
			}
			again = fuzzLimits{}
			if err := Decode(&again, back, "limits"); err != nil {
				t.Fatalf("decode of %s: %v", b, err)
			}
			if !reflect.DeepEqual(again, want) {
				t.Fatalf("round trip through %s:\n got %+v\nwant %+v", b, again, want)
			}
		}
	})
}

// fuzzGenerator turns fuzz bytes into a map of the Go values Decode meets:
// every numeric type, json.Number, strings near the accepted forms, nulls,
// lists and objects keyed mostly by fuzzLimits' own keys.
type fuzzGenerator struct {
	data []byte
}

func (g *fuzzGenerator) byte() byte {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return b
}

func (g *fuzzGenerator) uint64() uint64 {
	var u uint64
	for range 8 {
		u = u<<8 | uint64(g.byte())
	}
	return u
}

var fuzzGeneratorKeys = []string{
	"count", "small", "unsigned", "big", "ratio", "f", "on", "topology", "timeout",
	"buffer", "nested", "callers", "depths", "peers", "modes", "sizes", "matrix",
	"bytes", "ops", "label", "ignored", "x", "", "a.b",
}

var fuzzGeneratorStrings = []string{
	"", "0", "5s", "1h", "1h0m0.000000001s", "-1s", "64MiB", "1.5GiB", "1.5B", "1KiB",
	"1TiB", "1099511627777", "9223372036854775807", "star", "mesh", "federated", "ring",
	"a", "b", "true", "NaN", "-0", "1e3",
}

var fuzzGeneratorNumbers = []string{
	"0", "-0", "1", "-1", "0.5", "1e3", "4.2e1", "1e400", "-1e400", "1e-400",
	"9223372036854775807", "9223372036854775808", "18446744073709551615",
	"18446744073709551616", "-9223372036854775809", "255", "256", "-128", "-129",
	"65536", "1000", "1001", "1024", "0.1", "1.0000001",
}

func (g *fuzzGenerator) object(depth int) map[string]any {
	n := int(g.byte() % 6)
	m := make(map[string]any, n)
	for range n {
		k := fuzzGeneratorKeys[int(g.byte())%len(fuzzGeneratorKeys)]
		m[k] = g.value(depth + 1)
	}
	return m
}

func (g *fuzzGenerator) value(depth int) any {
	if len(g.data) == 0 {
		return nil
	}
	op := g.byte() % 16
	if depth > 6 && op >= 13 {
		op = 0
	}
	switch op {
	case 0:
		return nil
	case 1:
		return g.byte()%2 == 0
	case 2:
		return int64(g.uint64())
	case 3:
		return math.Float64frombits(g.uint64())
	case 4:
		return g.uint64()
	case 5:
		return json.Number(fuzzGeneratorNumbers[int(g.byte())%len(fuzzGeneratorNumbers)])
	case 6:
		return fuzzGeneratorStrings[int(g.byte())%len(fuzzGeneratorStrings)]
	case 7:
		// Raw bytes, made valid UTF-8 (as JSON and protobuf strings are) so
		// that the round trip through JSON keeps them.
		n := min(int(g.byte()%8), len(g.data))
		s := strings.ToValidUTF8(string(g.data[:n]), "\uFFFD")
		g.data = g.data[n:]
		return s
	case 8:
		return int(int8(g.byte())) * 5
	case 9:
		return float64(g.byte()) / 4
	case 10:
		return int32(g.byte()) << 3
	case 11:
		return float32(int8(g.byte())) / 3
	case 12:
		return uint8(g.byte())
	case 13, 14:
		l := make([]any, g.byte()%4)
		for i := range l {
			l[i] = g.value(depth + 1)
		}
		return l
	default:
		return g.object(depth)
	}
}

func FuzzParseSize(f *testing.F) {
	f.Add("64MiB")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if n != 0 || !strings.HasPrefix(err.Error(), "invalid size ") {
				t.Fatalf("ParseSize(%q) = %d, %v", s, n, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		str := n.String()
		back, err := ParseSize(str)
		if err != nil || back != n {
			t.Fatalf("ParseSize(%q) = %d; ParseSize(%q) = %d, %v", s, n, str, back, err)
		}
		if strings.ContainsAny(str, ". ") {
			t.Fatalf("Size(%d).String() = %q is not canonical", n, str)
		}
	})
}
