package pluginhost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

// The schema's type names (Field.Type).
const (
	TypeBool     = "bool"
	TypeInt      = "int"
	TypeUint     = "uint"
	TypeFloat    = "float"
	TypeString   = "string"
	TypeDuration = "duration"
	TypeSize     = "size"
	TypeText     = "text"
	TypeObject   = "object"
	TypeMap      = "map"
	TypeList     = "list"
)

// JSONSchemaDialect is the JSON Schema version JSONSchema writes (draft
// 2020-12), for the "$schema" key of a document that embeds it.
const JSONSchemaDialect = "https://json-schema.org/draft/2020-12/schema"

// Patterns of the strings Decode reads as a duration (time.ParseDuration,
// not negative; or "0") and as a size (sdk.ParseSize).
const (
	DurationPattern = `^\+?(0|(([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`
	SizePattern     = `^\s*[0-9]+(\.[0-9]+)?[ \t]*([bB]|[kKmMgGtTpP][iI]?[bB])?\s*$`
)

// node is one key of a schema as a tree: an object's keys are children, a
// map's or list's element is elem.
type node struct {
	field    *Field // nil for the root and for paths the schema skipped
	children map[string]*node
	keys     []string // children's keys, sorted
	elem     *node
}

func (n *node) typ() string {
	if n.field == nil {
		return TypeObject
	}
	return n.field.Type
}

// splitPath splits a field path into its steps: keys, "*" (any key of a
// map) and "[]" (an element of a list).
func splitPath(path string) []string {
	var steps []string
	for part := range strings.SplitSeq(path, ".") {
		n := 0
		for strings.HasSuffix(part, "[]") {
			part = strings.TrimSuffix(part, "[]")
			n++
		}
		if part != "" {
			steps = append(steps, part)
		}
		for range n {
			steps = append(steps, "[]")
		}
	}
	return steps
}

// tree builds the tree of fields. Paths whose parent is missing get a
// parent without a Field.
func tree(fields []Field) *node {
	root := &node{children: map[string]*node{}}
	for i := range fields {
		n := root
		for _, s := range splitPath(fields[i].Path) {
			switch s {
			case "*", "[]":
				if n.elem == nil {
					n.elem = &node{children: map[string]*node{}}
				}
				n = n.elem
			default:
				c, ok := n.children[s]
				if !ok {
					c = &node{children: map[string]*node{}}
					n.children[s] = c
					n.keys = append(n.keys, s)
				}
				n = c
			}
		}
		n.field = &fields[i]
	}
	var sortKeys func(n *node)
	sortKeys = func(n *node) {
		slices.Sort(n.keys)
		for _, c := range n.children {
			sortKeys(c)
		}
		if n.elem != nil {
			sortKeys(n.elem)
		}
	}
	sortKeys(root)
	return root
}

// leaf follows map and list elements down to the node the rules of a map
// or list field apply to.
func (n *node) leaf() *node {
	for (n.typ() == TypeMap || n.typ() == TypeList) && n.elem != nil {
		n = n.elem
	}
	return n
}

// ---- offline checks ----

// CheckLimits checks limits (the mapping under subsystems.<name>.limits)
// against the schema without the plugin: unknown keys (with the did-you-mean
// of SuggestKey),
// types, ranges (min and max, and the range of each integer's size), enums,
// and keys a map or list element leaves out whose zero value breaks a rule.
// Paths start with "limits" ("limits.max_entries"); messages are Decode's,
// as the checks are Decode's, run on a struct type built from the schema.
//
// What it cannot check: rules between keys (a Validate method) and the
// plugin's own ValidateLimits; the text of a "text" key (any string passes).
// A nil schema, or a plugin of sdk 6.0 (which reports none), checks
// nothing: ask the plugin (Client.ValidateLimits) instead.
func (s *Schema) CheckLimits(limits map[string]any) []sdk.FieldProblem {
	if s == nil {
		return nil
	}
	return check(s.Limits, limits, "limits")
}

// CheckSettings checks settings (the subsystem's section without enabled
// and limits) like CheckLimits; paths are relative to the section
// ("strategies[0].driver"). It checks nothing when the plugin declared no
// settings (SettingsDeclared false). Rules the plugin applies in
// Configure beyond the struct's (a dsn that must be set, a folder that must
// exist) are not checked.
func (s *Schema) CheckSettings(settings map[string]any) []sdk.FieldProblem {
	if s == nil || !s.SettingsDeclared {
		return nil
	}
	return check(s.Settings, settings, "")
}

// check decodes src with sdk.Decode onto a struct type made from fields,
// holding the defaults.
func check(fields []Field, src map[string]any, root string) []sdk.FieldProblem {
	t := tree(fields)
	st, err := t.goType()
	if err != nil {
		return []sdk.FieldProblem{{Path: root, Message: "cannot check: " + err.Error()}}
	}
	dst := reflect.New(st)
	defaults := map[string]any{}
	for _, k := range t.keys {
		if f := t.children[k].field; f != nil && len(f.Default) > 0 && t.children[k].known() {
			if v, err := jsonValue(f.Default); err == nil {
				defaults[k] = v
			}
		}
	}
	if err := sdk.Decode(dst.Interface(), defaults, ""); err != nil {
		return []sdk.FieldProblem{{Path: root, Message: "cannot check: the plugin's defaults break its own rules: " + err.Error()}}
	}
	if t.hasUnknown() {
		src, _ = t.strip(src).(map[string]any)
	}
	err = sdk.Decode(dst.Interface(), src, root)
	var de *sdk.DecodeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &de):
		return de.Problems
	}
	return []sdk.FieldProblem{{Path: root, Message: "cannot check: " + err.Error()}}
}

// jsonValue decodes JSON with numbers as json.Number, which Decode reads
// exactly.
func jsonValue(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// known reports whether this package knows n's type.
func (n *node) known() bool {
	switch n.typ() {
	case TypeBool, TypeInt, TypeUint, TypeFloat, TypeString, TypeDuration, TypeSize, TypeText:
		return true
	case TypeObject:
		return true
	case TypeMap, TypeList:
		return n.elem == nil || n.elem.known()
	}
	return false
}

// hasUnknown reports whether a type this package does not know (from a
// newer SDK) is anywhere in the tree.
func (n *node) hasUnknown() bool {
	if !n.known() {
		return true
	}
	for _, c := range n.children {
		if c.hasUnknown() {
			return true
		}
	}
	return n.elem != nil && n.elem.hasUnknown()
}

// strip returns a copy of v without the values of unknown types, which
// are left out of the check rather than misjudged.
func (n *node) strip(v any) any {
	switch n.typ() {
	case TypeObject:
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		out := make(map[string]any, len(m))
		for k, e := range m {
			c, ok := n.children[k]
			switch {
			case !ok:
				out[k] = e // unknown key: Decode says so
			case c.known() && !c.hasUnknown():
				out[k] = e
			case c.known():
				out[k] = c.strip(e)
			}
		}
		return out
	case TypeMap:
		m, ok := v.(map[string]any)
		if !ok || n.elem == nil {
			return v
		}
		out := make(map[string]any, len(m))
		for k, e := range m {
			out[k] = n.elem.strip(e)
		}
		return out
	case TypeList:
		l, ok := v.([]any)
		if !ok || n.elem == nil {
			return v
		}
		out := make([]any, len(l))
		for i, e := range l {
			out[i] = n.elem.strip(e)
		}
		return out
	}
	return v
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[sdk.Size]()
)

// goType returns the Go type Decode checks n with: the type the plugin's
// own struct has, as far as the schema tells (a float is a float64, a text
// a string).
func (n *node) goType() (reflect.Type, error) {
	bits := 64
	if n.field != nil && n.field.Bits != 0 {
		bits = n.field.Bits
	}
	switch n.typ() {
	case TypeBool:
		return reflect.TypeFor[bool](), nil
	case TypeInt:
		switch bits {
		case 8:
			return reflect.TypeFor[int8](), nil
		case 16:
			return reflect.TypeFor[int16](), nil
		case 32:
			return reflect.TypeFor[int32](), nil
		}
		return reflect.TypeFor[int64](), nil
	case TypeUint:
		switch bits {
		case 8:
			return reflect.TypeFor[uint8](), nil
		case 16:
			return reflect.TypeFor[uint16](), nil
		case 32:
			return reflect.TypeFor[uint32](), nil
		}
		return reflect.TypeFor[uint64](), nil
	case TypeFloat:
		return reflect.TypeFor[float64](), nil
	case TypeString, TypeText:
		return reflect.TypeFor[string](), nil
	case TypeDuration:
		return durationType, nil
	case TypeSize:
		return sizeType, nil
	case TypeMap, TypeList:
		var et reflect.Type = reflect.TypeFor[string]()
		if n.elem != nil {
			var err error
			if et, err = n.elem.goType(); err != nil {
				return nil, err
			}
		}
		if n.typ() == TypeMap {
			return reflect.MapOf(reflect.TypeFor[string](), et), nil
		}
		return reflect.SliceOf(et), nil
	case TypeObject:
		fields := make([]reflect.StructField, 0, len(n.keys))
		for i, k := range n.keys {
			c := n.children[k]
			if !c.known() {
				continue
			}
			ct, err := c.goType()
			if err != nil {
				return nil, err
			}
			tag := `dw:` + strconv.Quote(k)
			if l := c.leaf(); l.field != nil {
				if l.field.Min != "" {
					tag += ` min:` + strconv.Quote(l.field.Min)
				}
				if l.field.Max != "" {
					tag += ` max:` + strconv.Quote(l.field.Max)
				}
				if len(l.field.Enum) > 0 && l.typ() == TypeString {
					tag += ` enum:` + strconv.Quote(strings.Join(l.field.Enum, ","))
				}
			}
			fields = append(fields, reflect.StructField{Name: "F" + strconv.Itoa(i), Type: ct, Tag: reflect.StructTag(tag)})
		}
		return reflect.StructOf(fields), nil
	}
	return nil, fmt.Errorf("unknown type %q", n.typ())
}

// ---- JSON Schema ----

// JSONSchema returns the JSON Schema (draft 2020-12) of the plugin's
// config section, subsystems.<name>: its settings, "enabled" and the
// "limits" object, as a value for encoding/json. It is a subschema, without
// "$schema"; a document that embeds it names JSONSchemaDialect.
//
// It follows Decode: every key is optional, and null keeps the default (in
// a map or list element, null is the zero value, allowed where that passes
// the rules); unknown keys are refused (additionalProperties false) in
// limits, in every object, and in the section when the plugin declared its
// settings; a key a map or list element must set (its zero value breaks a
// rule) is required. Types: booleans; integers with minimum and maximum
// (the tags' bounds, else the range of the integer's size); numbers; strings
// with enum; a duration is a string matching DurationPattern, or the number
// 0 where 0 is allowed; a size a string matching SizePattern or a whole
// number of bytes with the size's bounds. What JSON Schema cannot say — a
// duration's bounds, a size string's bounds, rules between keys — is in
// the description, and checked by dw config validate.
func (s *Schema) JSONSchema() map[string]any {
	props := map[string]any{
		"enabled": map[string]any{
			"type":        "boolean",
			"description": "Start the plugin; true when the section exists without it.",
			"default":     true,
		},
	}
	limits := map[string]any{
		"type":                 []any{"object", "null"},
		"description":          "Limits: applied live, without a restart.",
		"additionalProperties": false,
	}
	if s == nil {
		limits["additionalProperties"] = true
		limits["description"] = "Limits: applied live, without a restart. The plugin reports no schema (sdk 6.0): they are checked by the plugin only."
		props["limits"] = limits
		return map[string]any{"type": []any{"object", "null"}, "properties": props}
	}
	lt := tree(s.Limits)
	limits["properties"] = lt.properties(false)
	props["limits"] = limits
	section := map[string]any{"type": []any{"object", "null"}, "properties": props}
	if s.SettingsDeclared {
		st := tree(s.Settings)
		for k, v := range st.properties(false) {
			props[k] = v
		}
		section["additionalProperties"] = false
	}
	return section
}

// properties returns the JSON Schemas of an object's keys. In an element
// (of a map or list), a key left out or null is the zero value.
func (n *node) properties(inElement bool) map[string]any {
	props := make(map[string]any, len(n.keys))
	for _, k := range n.keys {
		c := n.children[k]
		js := c.jsonSchema()
		if !inElement || c.zeroOK() {
			js = orNull(js)
		}
		props[k] = js
	}
	return props
}

// required lists the keys of an element object that must be set.
func (n *node) required() []any {
	var req []any
	for _, k := range n.keys {
		if !n.children[k].zeroOK() {
			req = append(req, k)
		}
	}
	return req
}

// jsonSchema returns n's JSON Schema, without null.
func (n *node) jsonSchema() map[string]any {
	f := n.field
	if f == nil {
		f = &Field{Type: TypeObject}
	}
	js := map[string]any{}
	var notes []string
	switch f.Type {
	case TypeBool:
		js["type"] = "boolean"
	case TypeInt, TypeUint:
		js["type"] = "integer"
		lo, hi := intRange(f)
		js["minimum"], js["maximum"] = lo, hi
	case TypeFloat:
		js["type"] = "number"
		if f.Min != "" {
			if v, err := strconv.ParseFloat(f.Min, 64); err == nil {
				js["minimum"] = v
			}
		}
		if f.Max != "" {
			if v, err := strconv.ParseFloat(f.Max, 64); err == nil {
				js["maximum"] = v
			}
		}
	case TypeString:
		js["type"] = "string"
		if len(f.Enum) > 0 {
			enum := make([]any, len(f.Enum))
			for i, e := range f.Enum {
				enum[i] = e
			}
			js["enum"] = enum
		}
	case TypeText:
		js["type"] = "string"
	case TypeDuration:
		alts := []any{map[string]any{"type": "string", "pattern": DurationPattern}}
		if zeroInDurationRange(f) {
			alts = append(alts, map[string]any{"const": 0})
		}
		js["anyOf"] = alts
		notes = append(notes, "A duration such as \"5s\"")
		if b := boundsText(f); b != "" {
			notes = append(notes, b)
		}
	case TypeSize:
		num := map[string]any{"type": "integer", "minimum": int64(0)}
		if v, err := sdk.ParseSize(f.Min); f.Min != "" && err == nil {
			num["minimum"] = int64(v)
		}
		if v, err := sdk.ParseSize(f.Max); f.Max != "" && err == nil {
			num["maximum"] = int64(v)
		}
		js["anyOf"] = []any{map[string]any{"type": "string", "pattern": SizePattern}, num}
		notes = append(notes, "A size such as \"64MiB\" or a number of bytes")
		if b := boundsText(f); b != "" {
			notes = append(notes, b)
		}
	case TypeObject:
		js["type"] = "object"
		js["properties"] = n.properties(n.inElement())
		js["additionalProperties"] = false
		if n.inElement() {
			if req := n.required(); len(req) > 0 {
				js["required"] = req
			}
		}
	case TypeMap, TypeList:
		var items any = true
		if n.elem != nil {
			e := n.elem.jsonSchema()
			if n.elem.zeroOK() {
				e = orNull(e)
			}
			items = e
		}
		if f.Type == TypeMap {
			js["type"] = "object"
			js["additionalProperties"] = items
		} else {
			js["type"] = "array"
			js["items"] = items
		}
	}
	desc := f.Doc
	if len(notes) > 0 {
		if desc != "" && !strings.HasSuffix(desc, ".") {
			desc += "."
		}
		desc = strings.TrimSpace(desc + " " + strings.Join(notes, ", ") + ".")
	}
	if desc != "" {
		js["description"] = desc
	}
	if len(f.Default) > 0 {
		if v, err := jsonValue(f.Default); err == nil {
			js["default"] = v
		}
	}
	return js
}

// inElement reports whether the node's path passes through a map or list
// element: there a key left out holds its zero value, not a default.
func (n *node) inElement() bool {
	return n.field != nil && (strings.Contains(n.field.Path, "*") || strings.Contains(n.field.Path, "[]"))
}

// orNull lets a JSON Schema also accept null.
func orNull(js map[string]any) map[string]any {
	if alts, ok := js["anyOf"].([]any); ok {
		js["anyOf"] = append(alts, map[string]any{"type": "null"})
		return js
	}
	if t, ok := js["type"].(string); ok {
		js["type"] = []any{t, "null"}
		if enum, ok := js["enum"].([]any); ok {
			js["enum"] = append(enum, nil)
		}
	}
	return js
}

// intRange returns the bounds of an int or uint field: its tags', within
// the range of its size.
func intRange(f *Field) (lo, hi any) {
	bits := f.Bits
	if bits <= 0 || bits > 64 {
		bits = 64
	}
	if f.Type == TypeUint {
		l, h := uint64(0), uint64(math.MaxUint64)>>(64-bits)
		if v, err := strconv.ParseUint(f.Min, 10, bits); f.Min != "" && err == nil {
			l = v
		}
		if v, err := strconv.ParseUint(f.Max, 10, bits); f.Max != "" && err == nil {
			h = v
		}
		return l, h
	}
	l, h := int64(-1)<<(bits-1), int64(1)<<(bits-1)-1
	if v, err := strconv.ParseInt(f.Min, 10, bits); f.Min != "" && err == nil {
		l = v
	}
	if v, err := strconv.ParseInt(f.Max, 10, bits); f.Max != "" && err == nil {
		h = v
	}
	return l, h
}

func zeroInDurationRange(f *Field) bool {
	if f.Min == "" {
		return true
	}
	d, err := time.ParseDuration(f.Min)
	return err == nil && d <= 0
}

// boundsText says a field's min and max in words: "from 1s to 24h",
// "at least 1", "at most 1h"; "" when unbounded.
func boundsText(f *Field) string {
	switch {
	case f.Min != "" && f.Max != "":
		return "from " + f.Min + " to " + f.Max
	case f.Min != "":
		return "at least " + f.Min
	case f.Max != "":
		return "at most " + f.Max
	}
	return ""
}

// zeroOK reports whether the zero value of n passes its rules: what a map
// or list element that leaves n out (or gives null) holds.
func (n *node) zeroOK() bool {
	f := n.field
	if f == nil {
		f = &Field{Type: TypeObject}
	}
	switch f.Type {
	case TypeInt, TypeUint:
		lo, hi := intRange(f)
		return cmpZero(lo) <= 0 && cmpZero(hi) >= 0
	case TypeFloat:
		lo, _ := strconv.ParseFloat(f.Min, 64)
		hi, _ := strconv.ParseFloat(f.Max, 64)
		return (f.Min == "" || lo <= 0) && (f.Max == "" || hi >= 0)
	case TypeDuration:
		return zeroInDurationRange(f)
	case TypeSize:
		if f.Min == "" {
			return true
		}
		v, err := sdk.ParseSize(f.Min)
		return err == nil && v <= 0
	case TypeString:
		return len(f.Enum) == 0 || slices.Contains(f.Enum, "")
	case TypeObject:
		for _, c := range n.children {
			if !c.zeroOK() {
				return false
			}
		}
	}
	return true
}

// cmpZero compares an int64 or uint64 with 0.
func cmpZero(v any) int {
	switch v := v.(type) {
	case int64:
		switch {
		case v < 0:
			return -1
		case v > 0:
			return 1
		}
	case uint64:
		if v > 0 {
			return 1
		}
	}
	return 0
}
