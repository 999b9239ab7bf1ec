package repo

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func sampleTree() *Tree {
	sub := Hash([]byte("subtree"))
	return &Tree{Nodes: []Node{
		{Name: "b.txt", Type: NodeFile, Mode: 0o644, MTime: 1700000000123456789, Size: 5, Inode: 12, Dev: 2049, Content: []ID{Hash([]byte("hello"))}},
		{Name: "a", Type: NodeDir, Mode: 0o755 | 0o1000, MTime: 1, Subtree: &sub},
		{Name: "link", Type: NodeSymlink, Mode: 0o777, Target: "../outside"},
		{Name: "bad-\xff-name", Type: NodeSymlink, Target: "\xfe\x00target"},
		{Name: "empty", Type: NodeFile, Mode: 0o600},
	}}
}

func TestEncodeTreeDeterministic(t *testing.T) {
	t1 := sampleTree()
	b1, id1, err := EncodeTree(t1)
	if err != nil {
		t.Fatal(err)
	}
	if Hash(b1) != id1 {
		t.Error("id is not the hash of the bytes")
	}
	// Same entries in another order: same bytes.
	t2 := sampleTree()
	t2.Nodes[0], t2.Nodes[4] = t2.Nodes[4], t2.Nodes[0]
	b2, id2, err := EncodeTree(t2)
	if err != nil {
		t.Fatal(err)
	}
	if string(b1) != string(b2) || id1 != id2 {
		t.Fatal("the same entries encode differently")
	}
	if t2.Nodes[0].Name != "empty" {
		t.Error("EncodeTree reordered the caller's slice")
	}
	// Any change of a field changes the ID.
	t3 := sampleTree()
	t3.Nodes[0].MTime++
	if _, id3, _ := EncodeTree(t3); id3 == id1 {
		t.Error("a changed mtime kept the tree id")
	}

	got, err := DecodeTree(b1)
	if err != nil {
		t.Fatal(err)
	}
	want := sampleTree()
	want.Nodes = []Node{want.Nodes[1], want.Nodes[0], want.Nodes[3], want.Nodes[4], want.Nodes[2]} // by name
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}

	empty, _, err := EncodeTree(&Tree{})
	if err != nil || string(empty) != `{"nodes":[]}` {
		t.Errorf("empty tree encodes as %s, %v", empty, err)
	}
	if dt, err := DecodeTree(empty); err != nil || len(dt.Nodes) != 0 {
		t.Errorf("decode empty: %+v, %v", dt, err)
	}
}

func TestTreeValidation(t *testing.T) {
	sub := Hash([]byte("x"))
	tests := []struct {
		name string
		node Node
		want string
	}{
		{"empty name", Node{Type: NodeFile}, "one path element"},
		{"dot dot", Node{Name: "..", Type: NodeDir, Subtree: &sub}, "one path element"},
		{"slash", Node{Name: "a/b", Type: NodeFile}, "one path element"},
		{"nul", Node{Name: "a\x00", Type: NodeFile}, "one path element"},
		{"unknown type", Node{Name: "a", Type: "fifo"}, "not file, dir or symlink"},
		{"dir without subtree", Node{Name: "a", Type: NodeDir}, "no subtree"},
		{"file with target", Node{Name: "a", Type: NodeFile, Target: "x"}, "subtree or target"},
		{"symlink with content", Node{Name: "a", Type: NodeSymlink, Content: []ID{sub}}, "subtree or content"},
	}
	for _, tc := range tests {
		if _, _, err := EncodeTree(&Tree{Nodes: []Node{tc.node}}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	if _, _, err := EncodeTree(&Tree{Nodes: []Node{{Name: "a", Type: NodeFile}, {Name: "a", Type: NodeFile}}}); err == nil {
		t.Error("duplicate names encoded")
	}
	subJSON := `"subtree":"` + sub.String() + `"`
	if _, err := DecodeTree([]byte(`{"nodes":[{"name":"a","type":"file"},{"name":"b","type":"dir",` + subJSON + `},{"name":"c","type":"symlink","target":"/x"}]}`)); err != nil {
		t.Errorf("decode a valid tree: %v", err)
	}
	for name, b := range map[string]string{
		"garbage":             "{",
		"bad name":            `{"nodes":[{"name":"../x","type":"file"}]}`,
		"empty name":          `{"nodes":[{"name":"","type":"file"}]}`,
		"dot":                 `{"nodes":[{"name":".","type":"file"}]}`,
		"dot dot":             `{"nodes":[{"name":"..","type":"dir",` + subJSON + `}]}`,
		"slash":               `{"nodes":[{"name":"a/b","type":"file"}]}`,
		"nul":                 `{"nodes":[{"name":"a\u0000b","type":"file"}]}`,
		"nul in name_bytes":   `{"nodes":[{"name_bytes":"YQBi","type":"file"}]}`,
		"unordered":           `{"nodes":[{"name":"b","type":"file"},{"name":"a","type":"file"}]}`,
		"duplicate":           `{"nodes":[{"name":"a","type":"symlink","target":"/etc"},{"name":"a","type":"dir",` + subJSON + `}]}`,
		"unknown type":        `{"nodes":[{"name":"a","type":"fifo"}]}`,
		"dir without subtree": `{"nodes":[{"name":"a","type":"dir"}]}`,
		"negative size":       `{"nodes":[{"name":"a","type":"file","size":-1}]}`,
	} {
		if _, err := DecodeTree([]byte(b)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode %s: %v, want ErrCorrupt", name, err)
		}
	}
}

func TestParseID(t *testing.T) {
	id := Hash([]byte("abc"))
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("round trip: %s, %v", got, err)
	}
	if got, err := ParseID(strings.ToUpper(id.String())); err != nil || got != id {
		t.Errorf("upper case: %v", err)
	}
	for _, s := range []string{"", "abc", strings.Repeat("g", 64), id.String() + "00"} {
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) succeeded", s)
		}
	}
	if (ID{}).IsZero() != true || id.IsZero() {
		t.Error("IsZero")
	}
}
