package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Bounds on a YAML document, checked before it is decoded, so that hostile
// input (deep nesting, an alias bomb) costs little.
const (
	// maxDepth is the deepest nesting of mappings and lists.
	maxDepth = 64
	// maxNodes is the most keys and values a document may hold once its
	// aliases are expanded.
	maxNodes = 100_000
)

// parseYAMLFile parses a config file: one YAML document whose top level is a
// mapping. An empty document (nothing, comments, null) gives nil.
func parseYAMLFile(b []byte) (map[string]any, error) {
	v, line, err := parseYAML(b)
	if err != nil || v == nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("line %d: the top level must be a mapping of keys to values, got %s", line, describe(v))
	}
	return m, nil
}

// parseYAMLValue parses one YAML value of any kind.
func parseYAMLValue(b []byte) (any, error) {
	v, _, err := parseYAML(b)
	return v, err
}

// parseYAML parses b, at most one YAML document, into plain values:
// map[string]any, []any, string, int, int64, uint64, float64, bool, nil. It also returns
// the line where the document's top value starts.
func parseYAML(b []byte) (v any, line int, err error) {
	// go-yaml has had panics on malformed input; never let one through.
	defer func() {
		if r := recover(); r != nil {
			v, line, err = nil, 0, fmt.Errorf("invalid YAML: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, nil
		}
		return nil, 0, yamlError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, 0, yamlError(err)
	case !emptyDocument(&next):
		return nil, 0, fmt.Errorf("line %d: a second YAML document; a config file holds one", next.Line)
	}
	if emptyDocument(&doc) {
		return nil, 0, nil
	}
	m := measurer{memo: map[*yaml.Node]nodeSize{}, active: map[*yaml.Node]bool{}}
	if _, err := m.walk(&doc, 0); err != nil {
		return nil, 0, err
	}
	var out any
	if err := doc.Decode(&out); err != nil {
		return nil, 0, yamlError(err)
	}
	out, err = plain(out)
	if err != nil {
		return nil, 0, err
	}
	return out, doc.Content[0].Line, nil
}

// emptyDocument reports whether n is a document with nothing in it but a null.
func emptyDocument(n *yaml.Node) bool {
	if n.Kind != yaml.DocumentNode || len(n.Content) == 0 {
		return true
	}
	c := n.Content[0]
	return c.Kind == yaml.ScalarNode && c.ShortTag() == "!!null"
}

// yamlError rewords an error of go-yaml: "invalid YAML: line 3: …".
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return fmt.Errorf("invalid YAML: %s", strings.Join(te.Errors, "; "))
	}
	return fmt.Errorf("invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
}

// nodeSize is what a YAML node expands to: how many nodes, how deep.
type nodeSize struct {
	nodes, height int
}

// measurer checks a YAML node tree against maxDepth and maxNodes, counting
// aliases as the nodes they expand to without expanding them.
type measurer struct {
	memo   map[*yaml.Node]nodeSize
	active map[*yaml.Node]bool // nodes being walked, to catch an alias to its own anchor
}

// walk measures n, found at nesting level.
func (m *measurer) walk(n *yaml.Node, level int) (nodeSize, error) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nodeSize{}, fmt.Errorf("invalid YAML: line %d: alias to an unknown anchor", n.Line)
		}
		if m.active[n.Alias] {
			return nodeSize{}, fmt.Errorf("invalid YAML: line %d: alias *%s is inside its own anchor", n.Line, truncate(n.Value))
		}
		n = n.Alias
	}
	if level > maxDepth {
		return nodeSize{}, fmt.Errorf("line %d: nested deeper than %d levels", n.Line, maxDepth)
	}
	if s, ok := m.memo[n]; ok {
		if level+s.height-1 > maxDepth {
			return nodeSize{}, fmt.Errorf("line %d: nested deeper than %d levels", n.Line, maxDepth)
		}
		return s, nil
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!timestamp" && n.Style&yaml.TaggedStyle == 0 {
		// An unquoted date stays the string it is, as in YAML 1.2, rather
		// than becoming a time.Time.
		n.Tag = "!!str"
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" {
		var f float64
		if err := n.Decode(&f); err == nil && (math.IsInf(f, 0) || math.IsNaN(f)) {
			return nodeSize{}, fmt.Errorf("line %d: %s: infinite and not-a-number values are not allowed", n.Line, truncate(n.Value))
		}
	}
	s := nodeSize{nodes: 1, height: 1}
	if len(n.Content) > 0 {
		m.active[n] = true
		childLevel := level + 1
		if n.Kind == yaml.DocumentNode {
			childLevel = level
			s.nodes = 0
		}
		for _, c := range n.Content {
			cs, err := m.walk(c, childLevel)
			if err != nil {
				return nodeSize{}, err
			}
			s.nodes += cs.nodes
			if s.nodes > maxNodes {
				return nodeSize{}, fmt.Errorf("line %d: more than %d keys and values (aliases expanded)", n.Line, maxNodes)
			}
			s.height = max(s.height, cs.height+1)
		}
		delete(m.active, n)
	}
	m.memo[n] = s
	return s, nil
}

// plain converts what go-yaml decoded into map[string]any, []any and
// scalars: mapping keys that are not strings become their text.
func plain(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			pe, err := plain(e)
			if err != nil {
				return nil, err
			}
			v[k] = pe
		}
		return v, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			ks := "null"
			if k != nil {
				ks = fmt.Sprint(k)
			}
			if _, dup := out[ks]; dup {
				return nil, fmt.Errorf("invalid YAML: mapping key %q appears twice once keys are read as text", truncate(ks))
			}
			pe, err := plain(e)
			if err != nil {
				return nil, err
			}
			out[ks] = pe
		}
		return out, nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	case []any:
		for i, e := range v {
			pe, err := plain(e)
			if err != nil {
				return nil, err
			}
			v[i] = pe
		}
		return v, nil
	default:
		return v, nil
	}
}
