package pluginhost

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
)

// Markdown returns a Markdown reference of the plugin's limits and
// settings, for the plugin (subsystem) name: a heading, then a table of
// limits and one of settings, each row a key with its type, default,
// allowed values (bounds or enum), whether a change applies live, and its
// doc. dw plugin docs prints it, and the README's tables of the
// first-party plugins are made of it.
//
// Keys are paths below subsystems.<name>.limits or subsystems.<name>;
// "*" stands for any key of a map, "[]" for every element of a list. A
// map's or list's element has a row of its own only when it has rules;
// the keys of an object element are listed under it. A nil schema (a
// plugin of sdk 6.0) says that the plugin reports none.
func (s *Schema) Markdown(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s: limits and settings\n\n", name)
	if s == nil {
		fmt.Fprintf(&b, "The plugin reports no schema (it was built with sdk 6.0): see its own documentation.\n")
		return b.String()
	}
	fmt.Fprintf(&b, "Limits (`subsystems.%s.limits`) apply live, without a restart.\n\n", name)
	writeTable(&b, tree(s.Limits))
	b.WriteString("\n")
	switch {
	case !s.SettingsDeclared:
		fmt.Fprintf(&b, "Settings (the other keys of `subsystems.%s`): not declared by the plugin; it checks them when it starts.\n", name)
	case len(s.Settings) == 0:
		fmt.Fprintf(&b, "Settings: none; any other key of `subsystems.%s` than `enabled` and `limits` is refused.\n", name)
	default:
		fmt.Fprintf(&b, "Settings (the other keys of `subsystems.%s`): a change restarts the plugin.\n\n", name)
		writeTable(&b, tree(s.Settings))
	}
	return b.String()
}

// writeTable writes the rows of a tree, depth first.
func writeTable(b *strings.Builder, root *node) {
	b.WriteString("| key | type | default | allowed | live | description |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	var walk func(n *node)
	walk = func(n *node) {
		if f := n.field; f != nil && n.hasRow() {
			live := "no (restart)"
			if f.Live {
				live = "yes"
			}
			fmt.Fprintf(b, "| `%s` | %s | %s | %s | %s | %s |\n",
				f.Path, n.typeText(), defaultText(f), allowedText(f), live, cell(f.Doc))
		}
		for _, k := range n.keys {
			walk(n.children[k])
		}
		if n.elem != nil {
			walk(n.elem)
		}
	}
	walk(root)
}

// hasRow reports whether a node gets a row: every key, and a map's or
// list's element only when it has rules of its own.
func (n *node) hasRow() bool {
	if !strings.HasSuffix(n.field.Path, "*") && !strings.HasSuffix(n.field.Path, "[]") {
		return true
	}
	f := n.field
	return f.Min != "" || f.Max != "" || len(f.Enum) > 0 || f.Doc != ""
}

// typeText is the type as a reader says it: "map of size", "list of
// object".
func (n *node) typeText() string {
	t := n.typ()
	if (t == TypeMap || t == TypeList) && n.elem != nil {
		return t + " of " + n.elem.typeText()
	}
	if (t == TypeInt || t == TypeUint) && n.field != nil && n.field.Bits != 0 && n.field.Bits != 64 {
		return fmt.Sprintf("%s%d", t, n.field.Bits)
	}
	return t
}

// defaultText shows a default as it would be written in the config file:
// strings unquoted (but "" for the empty string), the rest as JSON; nothing
// for objects, whose keys show theirs.
func defaultText(f *Field) string {
	if len(f.Default) == 0 || f.Type == TypeObject {
		return ""
	}
	var s string
	if json.Unmarshal(f.Default, &s) == nil && s != "" {
		if f.Type == TypeDuration {
			s = contract.ShortDuration(s)
		}
		return "`" + s + "`"
	}
	return "`" + cell(string(f.Default)) + "`"
}

// allowedText shows the bounds or the enum of a field.
func allowedText(f *Field) string {
	if len(f.Enum) > 0 {
		vals := make([]string, len(f.Enum))
		for i, e := range f.Enum {
			vals[i] = "`" + e + "`"
		}
		return strings.Join(vals, ", ")
	}
	switch {
	case f.Min != "" && f.Max != "":
		return f.Min + " – " + f.Max
	case f.Min != "":
		return "≥ " + f.Min
	case f.Max != "":
		return "≤ " + f.Max
	}
	return ""
}

// cell escapes text for a table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}
