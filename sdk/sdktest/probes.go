package sdktest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// mapKeyProbe stands for any key of a map in a probe's path.
const mapKeyProbe = "sdktest-key"

// maxProbes bounds the candidates probed from one schema.
const maxProbes = 400

// schemaProbes returns, for every limit of the schema, the values just
// outside what its schema allows: below min, above max (or past the range of
// its integer type), outside its enum, and of a wrong type. A plugin must
// reject each with sdk.ErrInvalidLimits naming the key path. Keys inside
// lists are not probed; "*" of a map becomes a made-up key.
func schemaProbes(s *pluginhost.Schema) []candidate {
	if s == nil {
		return nil
	}
	var out []candidate
	for _, f := range s.Limits {
		if strings.Contains(f.Path, "[]") || len(out) >= maxProbes {
			continue
		}
		path := strings.Split(strings.ReplaceAll(f.Path, "*", mapKeyProbe), ".")
		add := func(v any, why string) {
			out = append(out, candidate{
				limits:  nest(path, v),
				why:     why,
				path:    "limits." + strings.Join(path, "."),
				leaf:    v,
				hasLeaf: true,
			})
		}
		for _, p := range edgeValues(f) {
			add(p.value, p.why)
		}
		if wrong, want := wrongForType(f.Type); wrong != nil {
			add(wrong, fmt.Sprintf("%s instead of %s", describe(wrong), want))
		}
	}
	return out
}

type edge struct {
	value any
	why   string
}

// edgeValues are the values next to the bounds of f, outside them.
func edgeValues(f pluginhost.Field) []edge {
	var out []edge
	switch f.Type {
	case "int", "uint":
		lo, hi := intRange(f.Type, f.Bits)
		if f.Min != "" {
			if m, ok := new(big.Int).SetString(f.Min, 10); ok && m.Cmp(lo) > 0 {
				lo = m
			}
		}
		if f.Max != "" {
			if m, ok := new(big.Int).SetString(f.Max, 10); ok && m.Cmp(hi) < 0 {
				hi = m
			}
		}
		below := new(big.Int).Sub(lo, big.NewInt(1))
		above := new(big.Int).Add(hi, big.NewInt(1))
		out = append(out,
			edge{json.Number(below.String()), fmt.Sprintf("below its minimum %s", lo)},
			edge{json.Number(above.String()), fmt.Sprintf("above its maximum %s", hi)})
	case "float":
		if m, err := strconv.ParseFloat(f.Min, 64); err == nil && f.Min != "" {
			out = append(out, edge{math.Nextafter(m, math.Inf(-1)), "below its minimum " + f.Min})
		}
		if m, err := strconv.ParseFloat(f.Max, 64); err == nil && f.Max != "" {
			out = append(out, edge{math.Nextafter(m, math.Inf(1)), "above its maximum " + f.Max})
		}
	case "duration":
		if d, err := time.ParseDuration(f.Min); err == nil && f.Min != "" {
			out = append(out, edge{(d - 1).String(), "below its minimum " + f.Min})
		} else {
			out = append(out, edge{"-1ns", "a negative duration"})
		}
		if d, err := time.ParseDuration(f.Max); err == nil && f.Max != "" && d < math.MaxInt64 {
			out = append(out, edge{(d + 1).String(), "above its maximum " + f.Max})
		}
	case "size":
		if s, err := sdk.ParseSize(f.Min); err == nil && f.Min != "" && s > 0 {
			out = append(out, edge{json.Number(strconv.FormatInt(int64(s)-1, 10)), "below its minimum " + f.Min})
		} else {
			out = append(out, edge{json.Number("-1"), "a negative size"})
		}
		if s, err := sdk.ParseSize(f.Max); err == nil && f.Max != "" && s < math.MaxInt64 {
			out = append(out, edge{json.Number(strconv.FormatInt(int64(s)+1, 10)), "above its maximum " + f.Max})
		}
	case "string":
		if len(f.Enum) > 0 {
			out = append(out, edge{"sdktest-not-allowed", "outside its values " + strings.Join(f.Enum, ", ")})
		}
	}
	return out
}

// intRange is the range of an integer type of the given bits (64 when 0).
func intRange(typ string, bits int) (lo, hi *big.Int) {
	if bits <= 0 || bits > 64 {
		bits = 64
	}
	one := big.NewInt(1)
	if typ == "uint" {
		return big.NewInt(0), new(big.Int).Sub(new(big.Int).Lsh(one, uint(bits)), one)
	}
	hi = new(big.Int).Sub(new(big.Int).Lsh(one, uint(bits-1)), one)
	lo = new(big.Int).Neg(new(big.Int).Lsh(one, uint(bits-1)))
	return lo, hi
}

// wrongForType returns a value no key of type typ accepts.
func wrongForType(typ string) (any, string) {
	switch typ {
	case "bool":
		return "true", "a boolean"
	case "int", "uint", "float":
		return "1", "a number"
	case "string", "text", "duration", "size":
		return true, "a string"
	case "object", "map":
		return true, "an object"
	case "list":
		return true, "a list"
	}
	return nil, ""
}
