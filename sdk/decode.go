package sdk

import (
	"cmp"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/datawarehouse/dw/sdk/v6/internal/suggest"
)

// FieldProblem is one problem with one key of a decoded map.
type FieldProblem struct {
	// Path is the key path, e.g. "limits.max_entries",
	// "limits.quota.callers.alice.bytes_per_second" or "limits.peers[2]".
	// A key that is not made of letters, digits, '_' and '-' is written
	// quoted in brackets: `limits.callers["a.b"]`.
	Path string
	// Message says what is wrong and what is allowed.
	Message string
	// Allowed lists the allowed values (of an enum) or keys (for an unknown
	// key), when there is such a list; Message names them too. Since sdk
	// 6.1.
	Allowed []string
}

// Error returns "path: message", or the message alone when the path is empty.
func (p FieldProblem) Error() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// DecodeError is the error Decode returns when the input does not fit the
// struct. It lists every problem found, sorted by path and then message.
type DecodeError struct {
	Problems []FieldProblem
}

// maxProblemsInError bounds how many problems DecodeError.Error spells out;
// Problems always holds all of them.
const maxProblemsInError = 50

// Error joins the problems with "; ". Past 50 problems it ends with a count
// of those left out.
func (e *DecodeError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i == maxProblemsInError {
			fmt.Fprintf(&b, "; and %d more problems", len(e.Problems)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// maxDecodeDepth bounds the nesting Decode and Encode follow. Only recursive
// types (a struct holding a map or slice of itself) can reach it.
const maxDecodeDepth = 100

// Decode overlays src onto the struct dst points to, which holds the
// defaults. It is strict: unknown keys, values of the wrong type and values
// out of range are problems, and Decode reports all of them at once in a
// *DecodeError, each with its key path under root ("limits" gives
// "limits.max_entries"; "" gives "max_entries"). On any error dst is left
// exactly as it was.
//
// # Keys
//
// An exported field's key is its `dw:"name"` tag, or else the snake_case of
// its Go name (MaxEntries → max_entries, TTL → ttl, HTTPAddr → http_addr).
// `dw:"-"` skips a field. The fields of an embedded struct without a dw tag
// are keys of the outer struct, as in encoding/json. A key present in src
// replaces the default; an absent key, or a null value, keeps it.
//
// # Types
//
//   - bool, string, every int and uint kind, float32 and float64. Numbers
//     may arrive as any Go integer or float type or as json.Number; an
//     integer field takes only integral numbers within its range (so no
//     negative uints), a float field only finite numbers. Strings are never
//     turned into numbers or booleans, nor numbers into strings.
//   - time.Duration: a string for time.ParseDuration ("5s", "1h30m"), or
//     the number 0; never negative.
//   - Size: a size string ("64MiB", see ParseSize) or a whole, non-negative
//     number of bytes.
//   - Any other type whose pointer implements encoding.TextUnmarshaler
//     (and which implements encoding.TextMarshaler, for Encode): a string.
//   - A struct: an object, decoded onto the existing value, so that nested
//     defaults survive.
//   - map[string]T: an object that replaces the whole map; each entry is
//     decoded onto T's zero value.
//   - []T: a list that replaces the whole slice, element by element onto
//     T's zero value.
//
// A null map entry or list element is T's zero value.
//
// # Rules
//
// Tags add rules to a field: `min:"1"` and `max:"1000"` for numbers (parsed
// as the field's type), durations (`min:"1s"`) and sizes (`max:"1GiB"`);
// `enum:"star,mesh,federated"` for strings. On a map or slice field the
// rules apply to every element. Rules hold for the decoded value as a whole:
// a default or a zero value that breaks one (a map entry that leaves out a
// key with `min:"1"`) is a problem too, marked "(not set)".
//
// A `doc:"..."` tag says in one line what the key does. Decode ignores it;
// the schema a plugin reports to the host carries it (see [SettingsDeclarer]).
//
// After the fields decode without problems, Decode calls Validate on the
// decoded top-level struct if its pointer has a `Validate() error` method
// (see Validator). Problems of a *DecodeError it returns are added with root
// prefixed to their paths; any other error becomes a problem at root.
//
// A dst that is not a non-nil pointer to a struct, a field of an unsupported
// type, a malformed rule tag or two fields with the same key are programming
// errors: Decode returns a plain error saying so, not a *DecodeError.
func Decode(dst any, src map[string]any, root string) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("decode %s: dst must be a non-nil pointer to a struct, got %T", rootName(root), dst)
	}
	t := rv.Elem().Type()
	info, err := checkedStructInfo(t)
	if err != nil {
		return fmt.Errorf("decode %s: %w", rootName(root), err)
	}
	cp := reflect.New(t)
	cp.Elem().Set(rv.Elem())

	d := &structDecoder{}
	d.decodeStruct(cp.Elem(), info, src, root, 0)
	if len(d.problems) == 0 {
		if v, ok := cp.Interface().(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				var de *DecodeError
				if errors.As(err, &de) {
					for _, p := range de.Problems {
						d.problems = append(d.problems, FieldProblem{Path: prefixPath(root, p.Path), Message: p.Message, Allowed: p.Allowed})
					}
				} else {
					d.problems = append(d.problems, FieldProblem{Path: root, Message: err.Error()})
				}
			}
		}
	}
	if len(d.problems) > 0 {
		slices.SortFunc(d.problems, func(a, b FieldProblem) int {
			return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Message, b.Message))
		})
		return &DecodeError{Problems: d.problems}
	}
	rv.Elem().Set(cp.Elem())
	return nil
}

// Encode is the inverse of Decode: it turns a struct (or a pointer to one)
// into a map with the same keys. Sizes and durations become their String
// form, ints int64, uints int64 (uint64 when too large for an int64), floats
// float64, structs and maps map[string]any, slices []any; a nil map or slice
// becomes nil. Decoding the result onto a zero value gives back an equal
// struct (for values that pass the field's rules). Encode fails on the
// programming errors Decode reports, on a MarshalText error, and on values
// nested more than 100 levels deep (a map that holds itself).
func Encode(src any) (map[string]any, error) {
	rv := reflect.ValueOf(src)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil, fmt.Errorf("encode: src must be a struct or a pointer to one, got nil %T", src)
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return nil, fmt.Errorf("encode: src must be a struct or a pointer to one, got %T", src)
	}
	info, err := checkedStructInfo(rv.Type())
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	m, err := encodeStruct(rv, info, 0)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return m, nil
}

// rootName names root in programming errors.
func rootName(root string) string {
	if root == "" {
		return "(root)"
	}
	return root
}

// ---- type analysis ----

// valueKind is how a Go type is decoded.
type valueKind int

const (
	vkInvalid valueKind = iota
	vkBool
	vkInt
	vkUint
	vkFloat
	vkString
	vkDuration
	vkSize
	vkText
	vkStruct
	vkMap
	vkSlice
)

var (
	durationType        = reflect.TypeFor[time.Duration]()
	sizeType            = reflect.TypeFor[Size]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
)

// valueKindOf classifies t; vkInvalid means unsupported.
func valueKindOf(t reflect.Type) valueKind {
	switch t {
	case durationType:
		return vkDuration
	case sizeType:
		return vkSize
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) &&
		(t.Implements(textMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType)) {
		return vkText
	}
	switch t.Kind() {
	case reflect.Bool:
		return vkBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return vkInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return vkUint
	case reflect.Float32, reflect.Float64:
		return vkFloat
	case reflect.String:
		return vkString
	case reflect.Struct:
		return vkStruct
	case reflect.Map:
		if t.Key().Kind() == reflect.String {
			return vkMap
		}
	case reflect.Slice:
		return vkSlice
	}
	return vkInvalid
}

// fieldInfo is one key of a struct.
type fieldInfo struct {
	key   string
	name  string // Go field name, for programming errors
	index []int
	typ   reflect.Type
	rules *fieldRules // nil when the field has no rule tags
	doc   string      // the doc tag, for the schema
}

// fieldRules are the min, max and enum tags of a field, for its leaf type (the
// element type of a map or slice).
type fieldRules struct {
	min, max         *ruleBound
	minText, maxText string // canonical forms, for messages
	enum             []string
}

// ruleBound is a min or max in the representation of the leaf kind: i for ints,
// durations and sizes, u for uints, f for floats.
type ruleBound struct {
	i int64
	u uint64
	f float64
}

// structInfo describes the keys of one struct type.
type structInfo struct {
	fields []fieldInfo
	byKey  map[string]int
	keys   []string // sorted
}

type structInfoResult struct {
	info *structInfo
	err  error
}

var (
	structInfoCache sync.Map // reflect.Type → structInfoResult, one level
	checkedCache    sync.Map // reflect.Type → error, whole type tree
)

// checkedStructInfo returns the info of struct type t after checking that t
// and every type reachable from it are supported.
func checkedStructInfo(t reflect.Type) (*structInfo, error) {
	var err error
	if e, ok := checkedCache.Load(t); ok {
		if e != nil {
			err = e.(error)
		}
	} else {
		err = checkType(t, map[reflect.Type]bool{})
		checkedCache.Store(t, err)
	}
	if err != nil {
		return nil, err
	}
	return structInfoOf(t)
}

// checkType checks t and every type reachable from it.
func checkType(t reflect.Type, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	switch valueKindOf(t) {
	case vkInvalid:
		return fmt.Errorf("unsupported type %s", t)
	case vkStruct:
		info, err := structInfoOf(t)
		if err != nil {
			return err
		}
		for _, f := range info.fields {
			if err := checkType(f.typ, seen); err != nil {
				return fmt.Errorf("%s field %s: %w", t, f.name, err)
			}
		}
	case vkMap, vkSlice:
		return checkType(t.Elem(), seen)
	}
	return nil
}

// structInfoOf returns the keys of struct type t, without looking into the
// field types beyond what the rule tags need.
func structInfoOf(t reflect.Type) (*structInfo, error) {
	if r, ok := structInfoCache.Load(t); ok {
		res := r.(structInfoResult)
		return res.info, res.err
	}
	info, err := buildStructInfo(t)
	structInfoCache.Store(t, structInfoResult{info, err})
	return info, err
}

func buildStructInfo(t reflect.Type) (*structInfo, error) {
	info := &structInfo{byKey: map[string]int{}}
	if err := collectFields(t, nil, info); err != nil {
		return nil, err
	}
	for k := range info.byKey {
		info.keys = append(info.keys, k)
	}
	slices.Sort(info.keys)
	return info, nil
}

// collectFields adds the fields of t (index prefix: the path to t inside the
// top struct) to info, flattening untagged embedded structs.
func collectFields(t reflect.Type, prefix []int, info *structInfo) error {
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, tagged := sf.Tag.Lookup("dw")
		if tag == "-" {
			continue
		}
		index := append(slices.Clone(prefix), i)
		if sf.Anonymous && !tagged {
			ft := sf.Type
			if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
				return fmt.Errorf("%s field %s: embedded pointer to struct is not supported; embed the struct or tag the field dw:\"-\"", t, sf.Name)
			}
			if valueKindOf(ft) == vkStruct {
				if err := collectFields(ft, index, info); err != nil {
					return err
				}
				continue
			}
		}
		if !sf.IsExported() {
			if tagged {
				return fmt.Errorf("%s field %s: has a dw tag but is not exported", t, sf.Name)
			}
			continue
		}
		key := tag
		if !tagged {
			key = snakeCase(sf.Name)
		}
		if !isSimpleKey(key) {
			return fmt.Errorf("%s field %s: key %q must be made of letters, digits, '_' and '-'", t, sf.Name, key)
		}
		if j, dup := info.byKey[key]; dup {
			return fmt.Errorf("%s fields %s and %s: both have the key %q", t, info.fields[j].name, sf.Name, key)
		}
		r, err := parseRules(sf)
		if err != nil {
			return fmt.Errorf("%s field %s: %w", t, sf.Name, err)
		}
		info.byKey[key] = len(info.fields)
		info.fields = append(info.fields, fieldInfo{key: key, name: sf.Name, index: index, typ: sf.Type, rules: r,
			doc: strings.Join(strings.Fields(sf.Tag.Get("doc")), " ")})
	}
	return nil
}

// parseRules parses the min, max and enum tags of sf.
func parseRules(sf reflect.StructField) (*fieldRules, error) {
	minTag, hasMin := sf.Tag.Lookup("min")
	maxTag, hasMax := sf.Tag.Lookup("max")
	enumTag, hasEnum := sf.Tag.Lookup("enum")
	if !hasMin && !hasMax && !hasEnum {
		return nil, nil
	}
	leaf := sf.Type
	k := valueKindOf(leaf)
	for k == vkMap || k == vkSlice {
		leaf = leaf.Elem()
		k = valueKindOf(leaf)
	}
	r := &fieldRules{}
	if hasEnum {
		if k != vkString {
			return nil, fmt.Errorf("enum tag needs a string field (or a map or slice of strings), not %s", sf.Type)
		}
		for v := range strings.SplitSeq(enumTag, ",") {
			v = strings.TrimSpace(v)
			if v == "" {
				return nil, fmt.Errorf("enum tag %q has an empty value", enumTag)
			}
			r.enum = append(r.enum, v)
		}
	}
	var err error
	if hasMin {
		if r.min, r.minText, err = parseBound(leaf, k, minTag); err != nil {
			return nil, fmt.Errorf("min tag: %w", err)
		}
	}
	if hasMax {
		if r.max, r.maxText, err = parseBound(leaf, k, maxTag); err != nil {
			return nil, fmt.Errorf("max tag: %w", err)
		}
	}
	if r.min != nil && r.max != nil {
		var inverted bool
		switch k {
		case vkUint:
			inverted = r.min.u > r.max.u
		case vkFloat:
			inverted = r.min.f > r.max.f
		default:
			inverted = r.min.i > r.max.i
		}
		if inverted {
			return nil, fmt.Errorf("min %s is above max %s", r.minText, r.maxText)
		}
	}
	return r, nil
}

// parseBound parses a min or max tag as leaf type t of kind k.
func parseBound(t reflect.Type, k valueKind, s string) (*ruleBound, string, error) {
	switch k {
	case vkInt:
		i, err := strconv.ParseInt(s, 10, t.Bits())
		if err != nil {
			return nil, "", fmt.Errorf("%q is not a %s: %w", s, t, err)
		}
		return &ruleBound{i: i}, strconv.FormatInt(i, 10), nil
	case vkUint:
		u, err := strconv.ParseUint(s, 10, t.Bits())
		if err != nil {
			return nil, "", fmt.Errorf("%q is not a %s: %w", s, t, err)
		}
		return &ruleBound{u: u}, strconv.FormatUint(u, 10), nil
	case vkFloat:
		f, err := strconv.ParseFloat(s, t.Bits())
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, "", fmt.Errorf("%q is not a finite %s", s, t)
		}
		return &ruleBound{f: f}, formatFloat(f, t.Bits()), nil
	case vkDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, "", fmt.Errorf("%q is not a duration: %w", s, err)
		}
		return &ruleBound{i: int64(d)}, d.String(), nil
	case vkSize:
		n, err := ParseSize(s)
		if err != nil {
			return nil, "", err
		}
		return &ruleBound{i: int64(n)}, n.String(), nil
	}
	return nil, "", fmt.Errorf("needs a number, duration or size field (or a map or slice of them), not %s", t)
}

// snakeCase turns a Go name into a key: MaxEntries → max_entries,
// TTL → ttl, HTTPAddr → http_addr, P99Latency → p99_latency.
func snakeCase(name string) string {
	rs := []rune(name)
	var b strings.Builder
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 {
				prev := rs[i-1]
				nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
				if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
					b.WriteByte('_')
				}
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isSimpleKey reports whether key is made of ASCII letters, digits, '_' and
// '-' only, so that a path can show it unquoted.
func isSimpleKey(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ---- paths ----

// maxPlainKey is the longest key a path shows unquoted.
const maxPlainKey = 128

// KeyPath returns the key path of key under parent as Decode writes it in
// a FieldProblem: "parent.key", or `parent["a.b"]` for a key that is not
// made of letters, digits, '_' and '-'. A Validate method uses it to name
// map entries.
func KeyPath(parent, key string) string { return childPath(parent, key) }

// childPath returns the path of key under parent.
func childPath(parent, key string) string {
	if !isSimpleKey(key) || len(key) > maxPlainKey {
		return parent + "[" + quoteShort(key) + "]"
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// indexPath returns the path of element i under parent.
func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// prefixPath prefixes the path p (as a Validate method reports it) with root.
func prefixPath(root, p string) string {
	switch {
	case root == "":
		return p
	case p == "":
		return root
	case strings.HasPrefix(p, "["):
		return root + p
	}
	return root + "." + p
}

// ---- decoding ----

// structDecoder collects problems.
type structDecoder struct {
	problems []FieldProblem
}

func (d *structDecoder) addf(path, format string, args ...any) {
	d.problems = append(d.problems, FieldProblem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// wrongType reports a value of the wrong type; want is e.g. "a boolean".
func (d *structDecoder) wrongType(path, want string, raw any) {
	d.addf(path, "must be %s, got %s", want, describeValue(raw))
}

// decodeStruct overlays obj onto the struct v.
func (d *structDecoder) decodeStruct(v reflect.Value, info *structInfo, obj map[string]any, path string, depth int) {
	for k := range obj {
		if _, ok := info.byKey[k]; !ok {
			d.unknownKey(path, k, info)
		}
	}
	for i := range info.fields {
		f := &info.fields[i]
		fv := v.FieldByIndex(f.index)
		p := childPath(path, f.key)
		raw, ok := obj[f.key]
		if !ok || raw == nil {
			d.check(fv, f.typ, f.rules, p, depth+1)
			continue
		}
		d.decodeValue(fv, f.typ, f.rules, raw, p, depth+1)
	}
}

// unknownKey reports key, unknown in info, with the nearest known key and
// the list of allowed ones.
func (d *structDecoder) unknownKey(path, key string, info *structInfo) {
	var b strings.Builder
	b.WriteString("unknown key")
	if s := suggestKey(key, info.keys); s != "" {
		fmt.Fprintf(&b, " (did you mean %q?)", s)
	}
	b.WriteString("; allowed: ")
	if len(info.keys) == 0 {
		b.WriteString("none")
	} else {
		b.WriteString(strings.Join(info.keys, ", "))
	}
	d.problems = append(d.problems, FieldProblem{Path: childPath(path, key), Message: b.String(), Allowed: slices.Clone(info.keys)})
}

// decodeValue decodes raw (not nil) into v, of type t.
func (d *structDecoder) decodeValue(v reflect.Value, t reflect.Type, r *fieldRules, raw any, path string, depth int) {
	if depth > maxDecodeDepth {
		d.addf(path, "nested deeper than %d levels", maxDecodeDepth)
		return
	}
	k := valueKindOf(t)
	switch k {
	case vkBool:
		b, ok := raw.(bool)
		if !ok {
			d.wrongType(path, "a boolean", raw)
			return
		}
		v.SetBool(b)
	case vkString:
		s, ok := raw.(string)
		if !ok {
			d.wrongType(path, "a string", raw)
			return
		}
		v.SetString(s)
		d.checkRules(v, k, r, path, "")
	case vkInt:
		d.decodeInt(v, t, r, raw, path)
	case vkUint:
		d.decodeUint(v, t, r, raw, path)
	case vkFloat:
		d.decodeFloat(v, t, r, raw, path)
	case vkDuration:
		d.decodeDuration(v, r, raw, path)
	case vkSize:
		d.decodeSize(v, r, raw, path)
	case vkText:
		s, ok := raw.(string)
		if !ok {
			d.wrongType(path, "a string", raw)
			return
		}
		p := reflect.New(t)
		if err := p.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.addf(path, "invalid value %s: %v", quoteShort(s), err)
			return
		}
		v.Set(p.Elem())
	case vkStruct:
		obj, ok := d.object(raw, path)
		if !ok {
			return
		}
		info, err := structInfoOf(t)
		if err != nil { // checked by checkedStructInfo already
			d.addf(path, "%v", err)
			return
		}
		d.decodeStruct(v, info, obj, path, depth)
	case vkMap:
		obj, ok := d.object(raw, path)
		if !ok {
			return
		}
		et := t.Elem()
		m := reflect.MakeMapWithSize(t, len(obj))
		for key, eraw := range obj {
			ev := reflect.New(et).Elem()
			p := childPath(path, key)
			if eraw == nil {
				d.check(ev, et, r, p, depth+1)
			} else {
				d.decodeValue(ev, et, r, eraw, p, depth+1)
			}
			m.SetMapIndex(reflect.ValueOf(key).Convert(t.Key()), ev)
		}
		v.Set(m)
	case vkSlice:
		list, ok := asList(raw)
		if !ok {
			d.wrongType(path, "a list", raw)
			return
		}
		et := t.Elem()
		s := reflect.MakeSlice(t, len(list), len(list))
		for i, eraw := range list {
			p := indexPath(path, i)
			if eraw == nil {
				d.check(s.Index(i), et, r, p, depth+1)
			} else {
				d.decodeValue(s.Index(i), et, r, eraw, p, depth+1)
			}
		}
		v.Set(s)
	default:
		d.addf(path, "unsupported type %s", t) // checked by checkedStructInfo already
	}
}

// object returns raw as an object (a map with string keys).
func (d *structDecoder) object(raw any, path string) (map[string]any, bool) {
	if m, ok := raw.(map[string]any); ok {
		return m, true
	}
	rv := reflect.ValueOf(raw)
	if rv.Kind() != reflect.Map {
		d.wrongType(path, "an object", raw)
		return nil, false
	}
	m := make(map[string]any, rv.Len())
	var badKeys []string
	iter := rv.MapRange()
	for iter.Next() {
		k := iter.Key()
		if k.Kind() == reflect.Interface && !k.IsNil() {
			k = k.Elem()
		}
		if k.Kind() != reflect.String {
			badKeys = append(badKeys, describeValue(iter.Key().Interface()))
			continue
		}
		m[k.String()] = iter.Value().Interface()
	}
	if len(badKeys) > 0 {
		d.addf(path, "must be an object with string keys, got key %s", slices.Min(badKeys))
		return nil, false
	}
	return m, true
}

// asList returns raw as a list.
func asList(raw any) ([]any, bool) {
	if l, ok := raw.([]any); ok {
		return l, true
	}
	rv := reflect.ValueOf(raw)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return nil, false
	}
	l := make([]any, rv.Len())
	for i := range l {
		l[i] = rv.Index(i).Interface()
	}
	return l, true
}

// ---- numbers ----

type numKind int

const (
	numInt   numKind = iota // fits an int64: i
	numUint                 // above MaxInt64: u
	numFloat                // f
)

// inputNumber is a numeric input value.
type inputNumber struct {
	kind numKind
	i    int64
	u    uint64
	f    float64
	// For a json.Number, f may be rounded: huge marks an integer beyond 64
	// bits and frac a value that is not an integer, whatever f says.
	huge, frac bool
	// text is the literal of a json.Number, shown in messages.
	text string
}

func (n inputNumber) String() string {
	if n.text != "" {
		return n.text
	}
	switch n.kind {
	case numInt:
		return strconv.FormatInt(n.i, 10)
	case numUint:
		return strconv.FormatUint(n.u, 10)
	}
	return formatFloat(n.f, 64)
}

func (n inputNumber) isZero() bool {
	switch n.kind {
	case numInt:
		return n.i == 0
	case numUint:
		return false
	}
	return n.f == 0
}

// asNumber returns raw as a number, if it is one: any Go integer or float
// type (named ones too) or a valid json.Number.
func asNumber(raw any) (inputNumber, bool) {
	if jn, ok := raw.(json.Number); ok {
		return jsonNumber(string(jn))
	}
	rv := reflect.ValueOf(raw)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return inputNumber{kind: numInt, i: rv.Int()}, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		if u > math.MaxInt64 {
			return inputNumber{kind: numUint, u: u}, true
		}
		return inputNumber{kind: numInt, i: int64(u)}, true
	case reflect.Float32, reflect.Float64:
		return inputNumber{kind: numFloat, f: rv.Float()}, true
	}
	return inputNumber{}, false
}

// jsonNumber parses a json.Number. Integers within 64 bits are exact, even
// when written with a fraction or an exponent ("4.2e1"); others go through
// a float64, marked huge or frac where its rounding would mislead.
func jsonNumber(s string) (inputNumber, bool) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return inputNumber{kind: numInt, i: i}, true
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return inputNumber{kind: numUint, u: u}, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return inputNumber{}, false
	}
	n := inputNumber{kind: numFloat, f: f, text: shortenLiteral(s)} // f is ±Inf when out of range
	if math.IsNaN(f) || math.IsInf(f, 0) || len(s) > 1000 {
		return n, true
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		// Keep big.Rat away from exponents like 1e1000000000.
		if exp, err := strconv.Atoi(s[i+1:]); err != nil || exp < -1000 || exp > 1000 {
			n.frac = f == 0 && strings.ContainsAny(s[:i], "123456789")
			return n, true
		}
	}
	r, ok := new(big.Rat).SetString(s)
	switch {
	case !ok:
	case !r.IsInt():
		n.frac = true
	case r.Num().IsInt64():
		return inputNumber{kind: numInt, i: r.Num().Int64()}, true
	case r.Num().IsUint64():
		return inputNumber{kind: numUint, u: r.Num().Uint64()}, true
	default:
		n.huge = true
	}
	return n, true
}

// shortenLiteral cuts s after 64 bytes, saying how long it was.
func shortenLiteral(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// formatFloat formats f, a float of the given bit size, for messages:
// integral values without exponent up to 1e21, like JSON.
func formatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case f == math.Trunc(f) && math.Abs(f) < 1e21:
		return strconv.FormatFloat(f, 'f', 0, bits) // exact
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

// two63 is 2^63 as a float64: the first float above MaxInt64.
const two63 = float64(1 << 63)

// toInt64 converts n to an int64 if it is integral and in range. nonInt
// says n is not integral (including NaN).
func (n inputNumber) toInt64() (x int64, ok, nonInt bool) {
	switch n.kind {
	case numInt:
		return n.i, true, false
	case numUint:
		return 0, false, false
	}
	if n.frac || math.IsNaN(n.f) || (!math.IsInf(n.f, 0) && n.f != math.Trunc(n.f)) {
		return 0, false, true
	}
	if n.huge || n.f < -two63 || n.f >= two63 { // also ±Inf
		return 0, false, false
	}
	return int64(n.f), true, false
}

// toUint64 converts n to a uint64 if it is integral and in range.
func (n inputNumber) toUint64() (x uint64, ok, nonInt bool) {
	switch n.kind {
	case numInt:
		if n.i < 0 {
			return 0, false, false
		}
		return uint64(n.i), true, false
	case numUint:
		return n.u, true, false
	}
	if n.frac || math.IsNaN(n.f) || (!math.IsInf(n.f, 0) && n.f != math.Trunc(n.f)) {
		return 0, false, true
	}
	if n.huge || n.f < 0 || n.f >= 2*two63 {
		return 0, false, false
	}
	return uint64(n.f), true, false
}

func (d *structDecoder) decodeInt(v reflect.Value, t reflect.Type, r *fieldRules, raw any, path string) {
	n, ok := asNumber(raw)
	if !ok {
		d.wrongType(path, "an integer", raw)
		return
	}
	bits := t.Bits()
	lo, hi := int64(-1)<<(bits-1), int64(1)<<(bits-1)-1
	x, ok, nonInt := n.toInt64()
	switch {
	case nonInt:
		d.addf(path, "must be an integer, got number %s", n)
		return
	case !ok || x < lo || x > hi:
		d.addf(path, "must be between %d and %d, got %s", lo, hi, n)
		return
	}
	v.SetInt(x)
	d.checkRules(v, vkInt, r, path, "")
}

func (d *structDecoder) decodeUint(v reflect.Value, t reflect.Type, r *fieldRules, raw any, path string) {
	n, ok := asNumber(raw)
	if !ok {
		d.wrongType(path, "an integer", raw)
		return
	}
	hi := uint64(math.MaxUint64) >> (64 - t.Bits())
	x, ok, nonInt := n.toUint64()
	switch {
	case nonInt:
		d.addf(path, "must be an integer, got number %s", n)
		return
	case !ok || x > hi:
		d.addf(path, "must be between 0 and %d, got %s", hi, n)
		return
	}
	v.SetUint(x)
	d.checkRules(v, vkUint, r, path, "")
}

func (d *structDecoder) decodeFloat(v reflect.Value, t reflect.Type, r *fieldRules, raw any, path string) {
	n, ok := asNumber(raw)
	if !ok {
		d.wrongType(path, "a number", raw)
		return
	}
	var f float64
	switch n.kind {
	case numInt:
		f = float64(n.i)
	case numUint:
		f = float64(n.u)
	default:
		f = n.f
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		d.addf(path, "must be a finite number, got %s", n)
		return
	}
	if t.Bits() == 32 && math.Abs(f) > math.MaxFloat32 {
		d.addf(path, "must be between %s and %s, got %s", formatFloat(-math.MaxFloat32, 32), formatFloat(math.MaxFloat32, 32), n)
		return
	}
	v.SetFloat(f) // rounds to float32 for float32 fields
	d.checkRules(v, vkFloat, r, path, "")
}

const durationWant = `must be a duration such as "5s"`

func (d *structDecoder) decodeDuration(v reflect.Value, r *fieldRules, raw any, path string) {
	var dur time.Duration
	switch x := raw.(type) {
	case string:
		var err error
		if dur, err = time.ParseDuration(x); err != nil {
			d.addf(path, "%s, got %s (units: ns, us, ms, s, m, h)", durationWant, quoteShort(x))
			return
		}
	case time.Duration:
		dur = x
	default:
		if n, ok := asNumber(raw); !ok || !n.isZero() {
			d.addf(path, "%s, got %s", durationWant, describeValue(raw))
			return
		}
	}
	if dur < 0 {
		d.addf(path, "must not be negative, got %s", dur)
		return
	}
	v.SetInt(int64(dur))
	d.checkRules(v, vkDuration, r, path, "")
}

const sizeWantShort = `must be a size such as "64MiB" or a number of bytes`

func (d *structDecoder) decodeSize(v reflect.Value, r *fieldRules, raw any, path string) {
	var n Size
	switch x := raw.(type) {
	case string:
		var reason string
		if n, reason = parseSize(x); reason != "" {
			d.addf(path, "%s, got %s: %s", sizeWantShort, quoteShort(x), reason)
			return
		}
	case Size:
		n = x
	default:
		num, ok := asNumber(raw)
		if !ok {
			d.addf(path, "%s, got %s", sizeWantShort, describeValue(raw))
			return
		}
		i, ok, nonInt := num.toInt64()
		switch {
		case nonInt:
			d.addf(path, "%s, got number %s: not a whole number of bytes", sizeWantShort, num)
			return
		case !ok && (num.kind == numUint || num.f > 0):
			d.addf(path, "%s, got number %s: %s", sizeWantShort, num, sizeTooLarge)
			return
		case !ok:
			i = -1 // below MinInt64: negative anyway
		}
		n = Size(i)
	}
	if n < 0 {
		d.addf(path, "%s, got %s: must not be negative", sizeWantShort, describeValue(raw))
		return
	}
	v.SetInt(int64(n))
	d.checkRules(v, vkSize, r, path, "")
}

// checkRules checks the value in v, of leaf kind k, against r. suffix ends
// each message (" (not set)" for values that did not come from the input).
func (d *structDecoder) checkRules(v reflect.Value, k valueKind, r *fieldRules, path, suffix string) {
	if r == nil {
		return
	}
	var below, above bool
	var got string
	switch k {
	case vkString:
		if len(r.enum) > 0 && !slices.Contains(r.enum, v.String()) {
			d.problems = append(d.problems, FieldProblem{Path: path, Allowed: slices.Clone(r.enum),
				Message: fmt.Sprintf("must be one of %s, got %s%s", strings.Join(r.enum, ", "), quoteShort(v.String()), suffix)})
		}
		return
	case vkInt:
		x := v.Int()
		below = r.min != nil && x < r.min.i
		above = r.max != nil && x > r.max.i
		got = strconv.FormatInt(x, 10)
	case vkDuration:
		x := v.Int()
		below = r.min != nil && x < r.min.i
		above = r.max != nil && x > r.max.i
		got = time.Duration(x).String()
	case vkSize:
		x := v.Int()
		below = r.min != nil && x < r.min.i
		above = r.max != nil && x > r.max.i
		got = Size(x).String()
	case vkUint:
		x := v.Uint()
		below = r.min != nil && x < r.min.u
		above = r.max != nil && x > r.max.u
		got = strconv.FormatUint(x, 10)
	case vkFloat:
		x := v.Float()
		below = r.min != nil && x < r.min.f
		above = r.max != nil && x > r.max.f
		got = formatFloat(x, v.Type().Bits())
	default:
		return
	}
	if below {
		d.addf(path, "must be >= %s, got %s%s", r.minText, got, suffix)
	}
	if above {
		d.addf(path, "must be <= %s, got %s%s", r.maxText, got, suffix)
	}
}

// check applies the rules to a value that did not come from the input (a
// default, or the zero value of a new map entry or list element), looking
// into structs, maps and slices.
func (d *structDecoder) check(v reflect.Value, t reflect.Type, r *fieldRules, path string, depth int) {
	if depth > maxDecodeDepth {
		return
	}
	switch k := valueKindOf(t); k {
	case vkStruct:
		info, err := structInfoOf(t)
		if err != nil {
			return
		}
		for i := range info.fields {
			f := &info.fields[i]
			d.check(v.FieldByIndex(f.index), f.typ, f.rules, childPath(path, f.key), depth+1)
		}
	case vkMap:
		iter := v.MapRange()
		for iter.Next() {
			d.check(iter.Value(), t.Elem(), r, childPath(path, iter.Key().String()), depth+1)
		}
	case vkSlice:
		for i := range v.Len() {
			d.check(v.Index(i), t.Elem(), r, indexPath(path, i), depth+1)
		}
	default:
		d.checkRules(v, k, r, path, " (not set)")
	}
}

// describeValue names the type and value of raw for a message:
// `string "yes"`, "number 5", "boolean true", "list", "object", "null".
func describeValue(raw any) string {
	switch x := raw.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case string:
		return "string " + quoteShort(x)
	case json.Number:
		if n, ok := asNumber(x); ok {
			return "number " + n.String()
		}
		return "invalid number " + quoteShort(string(x))
	case time.Duration:
		return "duration " + x.String()
	case Size:
		return "size " + x.String()
	}
	if n, ok := asNumber(raw); ok {
		return "number " + n.String()
	}
	switch reflect.ValueOf(raw).Kind() {
	case reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "list"
	}
	return fmt.Sprintf("%T", raw)
}

// suggestKey returns the known key nearest to key, if it is near enough
// (see package suggest: the host's config errors use the same rule).
func suggestKey(key string, known []string) string {
	if len(key) > 4*maxPlainKey {
		return ""
	}
	return suggest.Key(key, known)
}

// ---- encoding ----

func encodeStruct(v reflect.Value, info *structInfo, depth int) (map[string]any, error) {
	m := make(map[string]any, len(info.fields))
	for i := range info.fields {
		f := &info.fields[i]
		ev, err := encodeValue(v.FieldByIndex(f.index), f.typ, depth+1)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.key, err)
		}
		m[f.key] = ev
	}
	return m, nil
}

func encodeValue(v reflect.Value, t reflect.Type, depth int) (any, error) {
	if depth > maxDecodeDepth {
		return nil, fmt.Errorf("nested deeper than %d levels (a map or slice that holds itself?)", maxDecodeDepth)
	}
	switch valueKindOf(t) {
	case vkBool:
		return v.Bool(), nil
	case vkString:
		return v.String(), nil
	case vkInt:
		return v.Int(), nil
	case vkUint:
		if u := v.Uint(); u > math.MaxInt64 {
			return u, nil
		}
		return int64(v.Uint()), nil
	case vkFloat:
		return v.Float(), nil
	case vkDuration:
		return time.Duration(v.Int()).String(), nil
	case vkSize:
		return Size(v.Int()).String(), nil
	case vkText:
		p := reflect.New(t)
		p.Elem().Set(v)
		b, err := p.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil, err
		}
		return string(b), nil
	case vkStruct:
		info, err := structInfoOf(t)
		if err != nil {
			return nil, err
		}
		return encodeStruct(v, info, depth)
	case vkMap:
		if v.IsNil() {
			return nil, nil
		}
		m := make(map[string]any, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			k := iter.Key().String()
			ev, err := encodeValue(iter.Value(), t.Elem(), depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", childPath("", k), err)
			}
			m[k] = ev
		}
		return m, nil
	case vkSlice:
		if v.IsNil() {
			return nil, nil
		}
		l := make([]any, v.Len())
		for i := range l {
			ev, err := encodeValue(v.Index(i), t.Elem(), depth+1)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			l[i] = ev
		}
		return l, nil
	}
	return nil, fmt.Errorf("unsupported type %s", t)
}
