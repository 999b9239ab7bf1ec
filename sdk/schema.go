package sdk

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// SettingsDeclarer is an optional interface for a Subsystem that declares
// its settings, so that the host can describe and check them without
// starting it (dw config validate, dw config schema, dw plugin docs).
//
// DefaultSettings returns the settings struct (a value or a non-nil
// pointer) holding the defaults — the value Configure decodes its settings
// onto:
//
//	func (s *Store) DefaultSettings() any { return defaultSettings() }
//
//	func (s *Store) Configure(ctx context.Context, cfg sdk.Config) error {
//		set := defaultSettings()
//		if err := cfg.DecodeSettings(&set); err != nil {
//			return err
//		}
//		…
//	}
//
// The struct follows the rules of [Decode]. A plugin without it reports no
// settings: the host then cannot check them before Configure does.
type SettingsDeclarer interface {
	DefaultSettings() any
}

// Schema type names, as SchemaField.type carries them.
var schemaTypeNames = map[valueKind]string{
	vkBool:     "bool",
	vkInt:      "int",
	vkUint:     "uint",
	vkFloat:    "float",
	vkString:   "string",
	vkDuration: "duration",
	vkSize:     "size",
	vkText:     "text",
	vkStruct:   "object",
	vkMap:      "map",
	vkSlice:    "list",
}

// schemaOf derives the schema of impl's limits (from DefaultLimits) and, if
// impl is a [SettingsDeclarer], of its settings, with the struct analysis
// Decode uses, so that the schema and Decode cannot disagree.
//
// Fields come depth first, keys sorted at each level, each struct, map or
// list before the keys inside it; "*" stands for any key of a map and "[]"
// for any element of a list ("quota.callers.*.bytes_per_second"). Rules
// (min, max, enum) sit on the leaf they apply to (the element of a map or
// list field). Every field carries its default as JSON, except inside maps
// and lists; int and uint fields carry their size in bits. Limits are live,
// settings are not. Doc comes from the doc tag: field comments are not in a
// compiled binary.
//
// A type Decode does not support, anywhere in either struct, is an error:
// a programming error that Serve reports before the handshake.
func schemaOf[L any](impl Subsystem[L]) (*dwv1.Schema, error) {
	s := &dwv1.Schema{}
	var err error
	if s.Limits, err = schemaFields(reflect.ValueOf(impl.DefaultLimits()), true); err != nil {
		return nil, fmt.Errorf("limits %s: %w", reflect.TypeFor[L](), err)
	}
	d, ok := impl.(SettingsDeclarer)
	if !ok {
		return s, nil
	}
	def := d.DefaultSettings()
	v := reflect.ValueOf(def)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil, fmt.Errorf("DefaultSettings must return a struct or a non-nil pointer to one, got %T", def)
	}
	if s.Settings, err = schemaFields(v, false); err != nil {
		return nil, fmt.Errorf("settings %s: %w", v.Type(), err)
	}
	s.SettingsDeclared = true
	return s, nil
}

// schemaFields describes every key of the struct value v.
func schemaFields(v reflect.Value, live bool) ([]*dwv1.SchemaField, error) {
	if v.Kind() != reflect.Struct {
		return nil, fmt.Errorf("must be a struct, not %s", v.Type())
	}
	info, err := checkedStructInfo(v.Type())
	if err != nil {
		return nil, err
	}
	w := &schemaWalker{live: live, open: map[reflect.Type]bool{v.Type(): true}}
	if err := w.structFields(v, info, ""); err != nil {
		return nil, err
	}
	return w.out, nil
}

// schemaWalker collects the fields of one struct tree.
type schemaWalker struct {
	live bool
	out  []*dwv1.SchemaField
	// open holds the struct types being described, so that a recursive
	// type is described down to its first repetition only.
	open map[reflect.Type]bool
}

// structFields describes the keys of a struct under prefix; v is invalid
// inside maps and lists, where there are no defaults.
func (w *schemaWalker) structFields(v reflect.Value, info *structInfo, prefix string) error {
	for _, key := range info.keys {
		f := &info.fields[info.byKey[key]]
		var fv reflect.Value
		if v.IsValid() {
			fv = v.FieldByIndex(f.index)
		}
		path := key
		if prefix != "" {
			path = prefix + "." + key
		}
		if err := w.value(fv, f.typ, f.rules, path, f.doc); err != nil {
			return err
		}
	}
	return nil
}

// value describes one key (or map or list element) of type t at path, then
// what is inside it.
func (w *schemaWalker) value(v reflect.Value, t reflect.Type, r *fieldRules, path, doc string) error {
	k := valueKindOf(t)
	sf := &dwv1.SchemaField{Path: path, Type: schemaTypeNames[k], Doc: doc, Live: w.live}
	if k == vkInt || k == vkUint {
		sf.Bits = uint32(t.Bits())
	}
	if r != nil && k != vkMap && k != vkSlice {
		if r.min != nil {
			sf.Min = r.minText
		}
		if r.max != nil {
			sf.Max = r.maxText
		}
		if k == vkDuration {
			sf.Min, sf.Max = contract.ShortDuration(sf.Min), contract.ShortDuration(sf.Max)
		}
		sf.Enum = r.enum
	}
	if v.IsValid() {
		enc, err := encodeValue(v, t, 0)
		if err != nil {
			return fmt.Errorf("%s: default: %w", path, err)
		}
		if sf.DefaultJson, err = json.Marshal(enc); err != nil {
			return fmt.Errorf("%s: default: %w", path, err)
		}
	}
	w.out = append(w.out, sf)
	switch k {
	case vkStruct:
		if w.open[t] {
			return nil
		}
		info, err := structInfoOf(t)
		if err != nil {
			return err
		}
		w.open[t] = true
		defer delete(w.open, t)
		return w.structFields(v, info, path)
	case vkMap:
		return w.value(reflect.Value{}, t.Elem(), r, path+".*", "")
	case vkSlice:
		return w.value(reflect.Value{}, t.Elem(), r, path+"[]", "")
	}
	return nil
}
