package sdktest

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

func TestSchemaProbes(t *testing.T) {
	s := &pluginhost.Schema{Limits: []pluginhost.Field{
		{Path: "rate", Type: "int", Bits: 64, Min: "1", Max: "1000", Live: true},
		{Path: "small", Type: "uint", Bits: 8, Live: true},
		{Path: "wide", Type: "int", Bits: 64, Live: true},
		{Path: "ratio", Type: "float", Min: "0", Max: "1", Live: true},
		{Path: "every", Type: "duration", Min: "1s", Max: "1h", Live: true},
		{Path: "buffer", Type: "size", Min: "1KiB", Live: true},
		{Path: "mode", Type: "string", Enum: []string{"fast", "safe"}, Live: true},
		{Path: "quota", Type: "object", Live: true},
		{Path: "quota.callers", Type: "map", Live: true},
		{Path: "quota.callers.*.ops", Type: "uint", Bits: 64, Live: true},
		{Path: "peers", Type: "list", Live: true},
		{Path: "peers[].name", Type: "string", Live: true},
		{Path: "on", Type: "bool", Live: true},
	}}
	got := map[string]string{}
	for _, c := range schemaProbes(s) {
		b, _ := json.Marshal(c.limits)
		got[string(b)] = c.path + " | " + c.why
	}
	want := map[string]string{
		`{"rate":0}`:                     "limits.rate | below its minimum 1",
		`{"rate":1001}`:                  "limits.rate | above its maximum 1000",
		`{"rate":"1"}`:                   "limits.rate | a string instead of a number",
		`{"small":-1}`:                   "limits.small | below its minimum 0",
		`{"small":256}`:                  "limits.small | above its maximum 255",
		`{"wide":-9223372036854775809}`:  "limits.wide | below its minimum -9223372036854775808",
		`{"wide":9223372036854775808}`:   "limits.wide | above its maximum 9223372036854775807",
		`{"every":"999.999999ms"}`:       "limits.every | below its minimum 1s",
		`{"every":"1h0m0.000000001s"}`:   "limits.every | above its maximum 1h",
		`{"buffer":1023}`:                "limits.buffer | below its minimum 1KiB",
		`{"mode":"sdktest-not-allowed"}`: "limits.mode | outside its values fast, safe",
		`{"quota":true}`:                 "limits.quota | a boolean instead of an object",
		`{"quota":{"callers":{"sdktest-key":{"ops":18446744073709551616}}}}`: "limits.quota.callers.sdktest-key.ops | above its maximum 18446744073709551615",
		`{"on":"true"}`: "limits.on | a string instead of a boolean",
	}
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("no probe %s (want %s)", k, w)
		} else if g != w {
			t.Errorf("probe %s: %s, want %s", k, g, w)
		}
	}
	for k := range got {
		if strings.Contains(k, "peers") && strings.Contains(k, "name") {
			t.Errorf("probed a key inside a list: %s", k)
		}
	}
	if schemaProbes(nil) != nil {
		t.Error("a plugin without a schema got probes")
	}
}
