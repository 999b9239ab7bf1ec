package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

type schemaRate struct {
	Bytes Size    `dw:"bytes" max:"1PiB" doc:"bytes per second; 0 is unlimited"`
	Ops   float64 `dw:"ops" doc:"operations per second"`
}

type schemaEmbedded struct {
	Shared uint16 `dw:"shared" min:"1" doc:"a key of an embedded struct"`
}

type schemaLimits struct {
	schemaEmbedded
	MaxEntries int                   `dw:"max_entries" min:"1" max:"1000" doc:"most entries kept"`
	TTL        time.Duration         `min:"1s" max:"24h" doc:"how long an entry lives"`
	Mode       string                `dw:"mode" enum:"fast,safe" doc:"  how it runs,\n\tfast or safe "`
	Callers    map[string]schemaRate `dw:"callers" doc:"rates by caller"`
	Default    schemaRate            `dw:"default"`
	Tiers      map[string][]int8     `dw:"tiers" min:"-1" max:"9"`
	Ignored    int                   `dw:"-"`
	hidden     int                   // not a key: unexported
}

type schemaSettings struct {
	Root  string   `dw:"root" doc:"folder of the data"`
	Peers []string `dw:"peers"`
}

type schemaSubsystem struct {
	extremeSubsystem
	settings any
}

func (s *schemaSubsystem) DefaultLimits() schemaLimits {
	return schemaLimits{
		schemaEmbedded: schemaEmbedded{Shared: 2},
		MaxEntries:     10, TTL: time.Minute, Mode: "fast", hidden: 7,
		Callers: map[string]schemaRate{"alice": {Bytes: MiB}},
		Default: schemaRate{Ops: 1.5},
	}
}
func (s *schemaSubsystem) ApplyLimits(context.Context, schemaLimits) error { return nil }
func (s *schemaSubsystem) DefaultSettings() any                            { return s.settings }

var (
	_ Subsystem[schemaLimits] = (*schemaSubsystem)(nil)
	_ SettingsDeclarer        = (*schemaSubsystem)(nil)
)

// field is a SchemaField in short, for comparisons.
type field struct {
	path, typ, doc, def, min, max, enum string
	bits                                uint32
	live                                bool
}

func short(f *dwv1.SchemaField) field {
	return field{path: f.GetPath(), typ: f.GetType(), doc: f.GetDoc(), def: string(f.GetDefaultJson()),
		min: f.GetMin(), max: f.GetMax(), enum: strings.Join(f.GetEnum(), ","), bits: f.GetBits(), live: f.GetLive()}
}

func TestSchemaOf(t *testing.T) {
	s, err := schemaOf[schemaLimits](&schemaSubsystem{settings: &schemaSettings{Root: "data", Peers: []string{"a:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	wantLimits := []field{
		{path: "callers", typ: "map", doc: "rates by caller", def: `{"alice":{"bytes":"1MiB","ops":0}}`, live: true},
		{path: "callers.*", typ: "object", live: true},
		{path: "callers.*.bytes", typ: "size", doc: "bytes per second; 0 is unlimited", max: "1PiB", live: true},
		{path: "callers.*.ops", typ: "float", doc: "operations per second", live: true},
		{path: "default", typ: "object", def: `{"bytes":"0B","ops":1.5}`, live: true},
		{path: "default.bytes", typ: "size", doc: "bytes per second; 0 is unlimited", def: `"0B"`, max: "1PiB", live: true},
		{path: "default.ops", typ: "float", doc: "operations per second", def: `1.5`, live: true},
		{path: "max_entries", typ: "int", doc: "most entries kept", def: `10`, min: "1", max: "1000", bits: 64, live: true},
		{path: "mode", typ: "string", doc: "how it runs, fast or safe", def: `"fast"`, enum: "fast,safe", live: true},
		{path: "shared", typ: "uint", doc: "a key of an embedded struct", def: `2`, min: "1", bits: 16, live: true},
		{path: "tiers", typ: "map", def: `null`, live: true},
		{path: "tiers.*", typ: "list", live: true},
		{path: "tiers.*[]", typ: "int", min: "-1", max: "9", bits: 8, live: true},
		{path: "ttl", typ: "duration", doc: "how long an entry lives", def: `"1m0s"`, min: "1s", max: "24h", live: true},
	}
	checkFields(t, "limits", s.GetLimits(), wantLimits)
	wantSettings := []field{
		{path: "peers", typ: "list", def: `["a:1"]`},
		{path: "peers[]", typ: "string"},
		{path: "root", typ: "string", doc: "folder of the data", def: `"data"`},
	}
	checkFields(t, "settings", s.GetSettings(), wantSettings)
	if !s.GetSettingsDeclared() {
		t.Error("settings_declared = false, want true")
	}
}

func checkFields(t *testing.T, what string, got []*dwv1.SchemaField, want []field) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Errorf("%s[%d]: missing, want %+v", what, i, want[i])
		case i >= len(want):
			t.Errorf("%s[%d]: unexpected %+v", what, i, short(got[i]))
		case short(got[i]) != want[i]:
			t.Errorf("%s[%d]:\n got %+v\nwant %+v", what, i, short(got[i]), want[i])
		}
	}
}

// TestSchemaOfSettings: settings are declared by a value or a pointer;
// without DefaultSettings there are none; anything else is a bug.
func TestSchemaOfSettings(t *testing.T) {
	s, err := schemaOf[schemaLimits](&schemaSubsystem{settings: schemaSettings{}})
	if err != nil || !s.GetSettingsDeclared() || len(s.GetSettings()) != 3 {
		t.Errorf("settings by value: %v, %v", prototext.Format(s), err)
	}
	s, err = schemaOf[extremeLimits](&extremeSubsystem{})
	if err != nil || s.GetSettingsDeclared() || len(s.GetSettings()) != 0 || len(s.GetLimits()) != 6 {
		t.Errorf("no settings declared: %v, %v", prototext.Format(s), err)
	}
	for _, bad := range []any{nil, (*schemaSettings)(nil), 5, map[string]any{}} {
		if _, err := schemaOf[schemaLimits](&schemaSubsystem{settings: bad}); err == nil {
			t.Errorf("DefaultSettings() = %#v: no error", bad)
		}
	}
}

type badLimits struct {
	OK   int               `dw:"ok"`
	Nope map[int]string    `dw:"nope"`
	Ch   chan int          `dw:"ch"`
	Deep map[string][]*int `dw:"deep"`
}

type badSubsystem struct{ extremeSubsystem }

func (s *badSubsystem) DefaultLimits() badLimits                     { return badLimits{} }
func (s *badSubsystem) ApplyLimits(context.Context, badLimits) error { return nil }

type badSettings struct{ F func() }

// TestSchemaOfUnsupported: a field type Decode cannot decode is a
// programming error, caught before the handshake: newSubsystemServer
// panics with the type and field.
func TestSchemaOfUnsupported(t *testing.T) {
	if _, err := schemaOf[badLimits](&badSubsystem{}); err == nil || !strings.Contains(err.Error(), "unsupported type") {
		t.Errorf("limits with a map[int]string: err = %v", err)
	}
	_, err := schemaOf[schemaLimits](&schemaSubsystem{settings: badSettings{}})
	if err == nil || !strings.Contains(err.Error(), "field F: unsupported type func()") {
		t.Errorf("settings with a func field: err = %v", err)
	}
	defer func() {
		r := recover()
		if msg, _ := r.(string); !strings.Contains(msg, "plugin bug") || !strings.Contains(msg, "unsupported type") {
			t.Errorf("newSubsystemServer recovered %v, want a plugin bug panic", r)
		}
	}()
	newSubsystemServer[badLimits](&badSubsystem{}, hclog.NewNullLogger())
	t.Error("newSubsystemServer did not panic")
}

type recursive struct {
	Name     string               `dw:"name" doc:"node name"`
	Children map[string]recursive `dw:"children"`
}

type recursiveSubsystem struct{ extremeSubsystem }

func (s *recursiveSubsystem) DefaultLimits() recursive                     { return recursive{Name: "root"} }
func (s *recursiveSubsystem) ApplyLimits(context.Context, recursive) error { return nil }

// TestSchemaOfRecursive: a type that holds itself is described down to
// its first repetition.
func TestSchemaOfRecursive(t *testing.T) {
	s, err := schemaOf[recursive](&recursiveSubsystem{})
	if err != nil {
		t.Fatal(err)
	}
	checkFields(t, "limits", s.GetLimits(), []field{
		{path: "children", typ: "map", def: "null", live: true},
		{path: "children.*", typ: "object", live: true},
		{path: "name", typ: "string", doc: "node name", def: `"root"`, live: true},
	})
}

// TestSchemaAgreesWithDecode: the default of every top-level key decodes
// back to the defaults, and the bounds in the schema decode as tags.
func TestSchemaAgreesWithDecode(t *testing.T) {
	impl := &schemaSubsystem{settings: schemaSettings{}}
	s, err := schemaOf[schemaLimits](impl)
	if err != nil {
		t.Fatal(err)
	}
	src := map[string]any{}
	for _, f := range s.GetLimits() {
		if !strings.ContainsAny(f.GetPath(), ".[") {
			src[f.GetPath()] = jsonValue(t, f.GetDefaultJson())
		}
	}
	var got schemaLimits
	if err := Decode(&got, src, "limits"); err != nil {
		t.Fatal(err)
	}
	want := impl.DefaultLimits()
	if got.MaxEntries != want.MaxEntries || got.TTL != want.TTL || got.Mode != want.Mode || got.Shared != want.Shared ||
		got.Default != want.Default || got.Callers["alice"] != want.Callers["alice"] {
		t.Errorf("defaults decoded from the schema = %+v, want %+v", got, want)
	}
}

// TestGetInfoSchema: the schema goes out in GetInfo, and its size stays
// small (it is sent at every plugin start).
func TestGetInfoSchema(t *testing.T) {
	impl := &schemaSubsystem{settings: schemaSettings{}}
	srv := newSubsystemServer[schemaLimits](impl, hclog.NewNullLogger())
	r, err := srv.GetInfo(context.Background(), &dwv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.GetSchema().GetLimits()); got != 14 {
		t.Errorf("GetInfo schema has %d limits, want 14", got)
	}
	t.Logf("schema: %d fields, %d bytes", len(r.GetSchema().GetLimits())+len(r.GetSchema().GetSettings()), proto.Size(r.GetSchema()))
}

func jsonValue(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return v
}
