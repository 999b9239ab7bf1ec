package repo

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Node types.
const (
	NodeFile    = "file"
	NodeDir     = "dir"
	NodeSymlink = "symlink"
)

// Node is one entry of a directory.
// Names and targets are bytes (any string); see FORMAT.md for the encoding.
type Node struct {
	Name    string
	Type    string // NodeFile, NodeDir or NodeSymlink
	Mode    uint32 // permission bits plus setuid/setgid/sticky, as the engine records them
	MTime   int64  // modification time, Unix nanoseconds
	Size    int64  // files: bytes
	Inode   uint64 // for incremental change detection
	Dev     uint64 // device of Inode
	Content []ID   // files: data blobs in order
	Subtree *ID    // dirs: tree blob
	Target  string // symlinks: target as read, never followed
}

// Tree is one directory: its entries sorted by name.
type Tree struct {
	Nodes []Node
}

// EncodeTree returns the canonical encoding of t and its ID. Nodes are
// sorted by name (byte order) on a copy, so the same entries give the same
// bytes and ID whatever their order in t. It rejects invalid nodes (see
// validNode) and duplicate names.
func EncodeTree(t *Tree) ([]byte, ID, error) {
	nodes := slices.Clone(t.Nodes)
	if nodes == nil {
		nodes = []Node{}
	}
	slices.SortFunc(nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	for i := range nodes {
		if err := validNode(&nodes[i]); err != nil {
			return nil, ID{}, fmt.Errorf("encode tree: %w", err)
		}
		if i > 0 && nodes[i-1].Name == nodes[i].Name {
			return nil, ID{}, fmt.Errorf("encode tree: two entries are named %q", nodes[i].Name)
		}
	}
	wire := treeJSON{Nodes: make([]nodeJSON, len(nodes))}
	for i := range nodes {
		wire.Nodes[i] = toWire(&nodes[i])
	}
	b, err := json.Marshal(wire)
	if err != nil {
		return nil, ID{}, fmt.Errorf("encode tree: %w", err)
	}
	return b, Hash(b), nil
}

// DecodeTree parses a tree blob and validates it as EncodeTree does
// (names, types, order), so a restore can trust the names it gets.
// Unknown JSON fields are ignored (newer writers may add some).
func DecodeTree(b []byte) (*Tree, error) {
	var wire treeJSON
	if err := json.Unmarshal(b, &wire); err != nil {
		return nil, fmt.Errorf("decode tree: %w: %w", err, ErrCorrupt)
	}
	t := Tree{Nodes: make([]Node, len(wire.Nodes))}
	for i := range wire.Nodes {
		t.Nodes[i] = fromWire(&wire.Nodes[i])
	}
	for i := range t.Nodes {
		if err := validNode(&t.Nodes[i]); err != nil {
			return nil, fmt.Errorf("decode tree: %w: %w", err, ErrCorrupt)
		}
		if i > 0 && t.Nodes[i-1].Name >= t.Nodes[i].Name {
			return nil, fmt.Errorf("decode tree: entries %q and %q are not in strict name order: %w", t.Nodes[i-1].Name, t.Nodes[i].Name, ErrCorrupt)
		}
	}
	return &t, nil
}

// treeJSON and nodeJSON are the encoding. A name or target that is not
// valid UTF-8 (file names are bytes) goes into name_bytes/target_bytes
// (base64) instead, because JSON strings would replace the invalid bytes.
type treeJSON struct {
	Nodes []nodeJSON `json:"nodes"`
}

type nodeJSON struct {
	Name        string `json:"name,omitempty"`
	NameBytes   []byte `json:"name_bytes,omitempty"`
	Type        string `json:"type"`
	Mode        uint32 `json:"mode"`
	MTime       int64  `json:"mtime"`
	Size        int64  `json:"size,omitempty"`
	Inode       uint64 `json:"inode,omitempty"`
	Dev         uint64 `json:"dev,omitempty"`
	Content     []ID   `json:"content,omitempty"`
	Subtree     *ID    `json:"subtree,omitempty"`
	Target      string `json:"target,omitempty"`
	TargetBytes []byte `json:"target_bytes,omitempty"`
}

func toWire(n *Node) nodeJSON {
	w := nodeJSON{Name: n.Name, Type: n.Type, Mode: n.Mode, MTime: n.MTime, Size: n.Size, Inode: n.Inode,
		Dev: n.Dev, Content: n.Content, Subtree: n.Subtree, Target: n.Target}
	if !utf8.ValidString(n.Name) {
		w.Name, w.NameBytes = "", []byte(n.Name)
	}
	if !utf8.ValidString(n.Target) {
		w.Target, w.TargetBytes = "", []byte(n.Target)
	}
	return w
}

func fromWire(w *nodeJSON) Node {
	n := Node{Name: w.Name, Type: w.Type, Mode: w.Mode, MTime: w.MTime, Size: w.Size, Inode: w.Inode,
		Dev: w.Dev, Content: w.Content, Subtree: w.Subtree, Target: w.Target}
	if len(w.NameBytes) > 0 {
		n.Name = string(w.NameBytes)
	}
	if len(w.TargetBytes) > 0 {
		n.Target = string(w.TargetBytes)
	}
	return n
}

// validNode checks one entry: a name that is one path element (not empty,
// ".", "..", no '/' or NUL), a known type, and only the fields of its type
// (a dir has a subtree, only files have content, only symlinks a target).
func validNode(n *Node) error {
	if n.Name == "" || n.Name == "." || n.Name == ".." || strings.ContainsAny(n.Name, "/\x00") {
		return fmt.Errorf("entry name %q: want one path element (not empty, '.', '..', and without '/' or NUL)", n.Name)
	}
	switch n.Type {
	case NodeFile:
		if n.Subtree != nil || n.Target != "" {
			return fmt.Errorf("file %q: has a subtree or target", n.Name)
		}
		if n.Size < 0 {
			return fmt.Errorf("file %q: negative size %d", n.Name, n.Size)
		}
	case NodeDir:
		if n.Subtree == nil {
			return fmt.Errorf("dir %q: has no subtree", n.Name)
		}
		if len(n.Content) > 0 || n.Target != "" {
			return fmt.Errorf("dir %q: has content or a target", n.Name)
		}
	case NodeSymlink:
		if n.Subtree != nil || len(n.Content) > 0 {
			return fmt.Errorf("symlink %q: has a subtree or content", n.Name)
		}
	default:
		return fmt.Errorf("entry %q: type %q is not file, dir or symlink", n.Name, n.Type)
	}
	return nil
}
