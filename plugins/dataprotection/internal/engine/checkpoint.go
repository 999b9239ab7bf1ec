package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"time"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
)

// cpVersion is the version of the checkpoint encoding. A checkpoint of
// another version is not usable (the backup starts from scratch).
const cpVersion = 1

// segMagic marks a checkpoint segment blob.
const segMagic = "dw-engine-checkpoint-segment/1"

// maxSegments bounds a segment chain (one segment per checkpoint that saw
// new entries in that folder).
const maxSegments = 1 << 20

// cpState is the checkpoint, JSON-encoded. It is bounded by the depth of
// the walk: the entries done in each open folder are in the repository as
// segment blobs, and the checkpoint names only the last segment of each.
// Names and the source path are []byte (base64 in JSON): file names are
// bytes, and a JSON string would mangle those that are not UTF-8.
type cpState struct {
	Version   int       `json:"v"`
	Source    []byte    `json:"source"`
	Snapshot  string    `json:"snapshot,omitempty"`
	Kind      string    `json:"kind,omitempty"`
	Parent    string    `json:"parent,omitempty"`
	StartedAt time.Time `json:"started_at"`
	Counts    counters  `json:"counts"`
	// Stack holds the open folders, outermost (the source, empty name) first.
	Stack []cpFrame `json:"stack"`
	// File is the file in progress in the innermost folder, if any.
	File *cpFile `json:"file,omitempty"`
}

type cpFrame struct {
	Name []byte   `json:"name,omitempty"`
	Seg  *repo.ID `json:"seg,omitempty"`
}

// cpFile is a file half read: its metadata when its reading began (a
// resume continues only if it still matches), the offset of the end of the
// last chunk stored (a chunk boundary) and its chunks so far (in segments).
type cpFile struct {
	Name   []byte   `json:"name"`
	Size   int64    `json:"size"`
	MTime  int64    `json:"mtime"`
	Inode  uint64   `json:"inode"`
	Offset int64    `json:"offset"`
	Seg    *repo.ID `json:"seg,omitempty"`
}

// segment is one link of a chain stored as a tree-type blob: the nodes (of
// a folder, in the tree encoding of package repo, which keeps names that
// are not UTF-8) or the content IDs (of a file) added since the previous
// checkpoint. Segments are named only by checkpoints, never by snapshots,
// so prune removes them once the job is over (UsedByCheckpoint keeps them
// while it is not).
type segment struct {
	Magic   string          `json:"magic"`
	Prev    *repo.ID        `json:"prev,omitempty"`
	Tree    json.RawMessage `json:"tree,omitempty"`
	Content []repo.ID       `json:"content,omitempty"`
}

// dirResume is the resume state of one open folder.
type dirResume struct {
	nodes []repo.Node
	seg   *repo.ID
	next  string      // the entry the walk was in: child folder or file in progress ("" none)
	child *dirResume  // when next is a folder
	file  *fileResume // when next is a file
}

// done reports whether the checkpoint says entry name is done.
func (d *dirResume) done(name string) bool {
	if d == nil {
		return false
	}
	if d.next != "" {
		return name < d.next
	}
	return len(d.nodes) > 0 && name <= d.nodes[len(d.nodes)-1].Name
}

type fileResume struct {
	size, mtime int64
	inode       uint64
	offset      int64
	content     []repo.ID
	seg         *repo.ID
}

// checkpoint stores the new part of each open folder and of the file in
// progress as segments, flushes the writer (everything the checkpoint names
// is then durable) and hands the encoded state to Options.Checkpoint.
func (a *assembler) checkpoint() error {
	b := a.b
	cp := cpState{Version: cpVersion, Source: []byte(b.src), Snapshot: b.meta.ID, Kind: b.meta.Kind, Parent: b.meta.Parent,
		StartedAt: b.meta.StartedAt, Counts: a.counts}
	for _, f := range a.stack {
		if len(f.nodes) > f.saved {
			tree, _, err := repo.EncodeTree(&repo.Tree{Nodes: f.nodes[f.saved:]})
			if err != nil {
				return fmt.Errorf("checkpoint: encode segment: %w", err)
			}
			seg, err := a.addSegment(segment{Prev: f.seg, Tree: tree})
			if err != nil {
				return err
			}
			f.seg, f.saved = seg, len(f.nodes)
		}
		cp.Stack = append(cp.Stack, cpFrame{Name: []byte(f.name), Seg: f.seg})
	}
	if c := a.cur; c != nil {
		if len(c.content) > c.saved {
			seg, err := a.addSegment(segment{Prev: c.seg, Content: c.content[c.saved:]})
			if err != nil {
				return err
			}
			c.seg, c.saved = seg, len(c.content)
		}
		cp.File = &cpFile{Name: []byte(c.node.Name), Size: c.node.Size, MTime: c.node.MTime, Inode: c.node.Inode, Offset: c.offset, Seg: c.seg}
	}
	if err := b.w.Flush(); err != nil {
		return fmt.Errorf("checkpoint: flush the repository: %w", err)
	}
	data, err := json.Marshal(&cp)
	if err != nil {
		return fmt.Errorf("checkpoint: encode: %w", err)
	}
	if err := b.opt.Checkpoint(data); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

func (a *assembler) addSegment(s segment) (*repo.ID, error) {
	s.Magic = segMagic
	data, err := json.Marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: encode segment: %w", err)
	}
	id := repo.Hash(data)
	if _, err := a.b.w.Add(repo.TreeBlob, id, data); err != nil {
		return nil, fmt.Errorf("checkpoint: store segment: %w", err)
	}
	return &id, nil
}

// loadSegments follows a segment chain back to its start and returns its
// nodes and content in order, and the IDs of the segments. The nodes are
// checked as one tree: each valid, names strictly increasing.
func loadSegments(r *repo.Repo, last *repo.ID) (nodes []repo.Node, content []repo.ID, segs []repo.ID, err error) {
	var chain []segment
	for id := last; id != nil; {
		if len(chain) >= maxSegments {
			return nil, nil, nil, fmt.Errorf("segment chain longer than %d", maxSegments)
		}
		data, err := r.Load(repo.TreeBlob, *id, nil)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("load segment %s: %w", id, err)
		}
		var s segment
		if err := json.Unmarshal(data, &s); err != nil || s.Magic != segMagic {
			return nil, nil, nil, fmt.Errorf("segment %s is not a checkpoint segment: %w", id, repo.ErrCorrupt)
		}
		chain = append(chain, s)
		segs = append(segs, *id)
		id = s.Prev
	}
	slices.Reverse(chain)
	for i, s := range chain {
		if len(s.Tree) > 0 {
			// DecodeTree checks each segment's nodes; what it cannot see
			// is the order across segments, checked here: the folder's
			// entries must stay strictly increasing (no duplicate could
			// turn a restored symlink into a path component).
			t, err := repo.DecodeTree(s.Tree)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("segment %s: %w", segs[len(segs)-1-i], err)
			}
			if len(nodes) > 0 && len(t.Nodes) > 0 && t.Nodes[0].Name <= nodes[len(nodes)-1].Name {
				return nil, nil, nil, fmt.Errorf("segment %s: entry %q is out of order or duplicated after %q: %w",
					segs[len(segs)-1-i], t.Nodes[0].Name, nodes[len(nodes)-1].Name, repo.ErrCorrupt)
			}
			nodes = append(nodes, t.Nodes...)
		}
		content = append(content, s.Content...)
	}
	return nodes, content, segs, nil
}

func decodeCheckpoint(data []byte) (*cpState, error) {
	var cp cpState
	if err := json.Unmarshal(data, &cp); err != nil {
		return nil, fmt.Errorf("decode checkpoint: %w", err)
	}
	if cp.Version != cpVersion {
		return nil, fmt.Errorf("checkpoint version %d, this build reads version %d", cp.Version, cpVersion)
	}
	if len(cp.Stack) == 0 || len(cp.Stack[0].Name) != 0 {
		return nil, errors.New("checkpoint has no root folder")
	}
	for _, f := range cp.Stack[1:] {
		if !validName(string(f.Name)) {
			return nil, fmt.Errorf("checkpoint names the invalid folder %q", f.Name)
		}
	}
	if cp.File != nil && (!validName(string(cp.File.Name)) || cp.File.Offset < 0 || cp.File.Offset > cp.File.Size) {
		return nil, fmt.Errorf("checkpoint has an invalid file in progress %q (offset %d of %d)", cp.File.Name, cp.File.Offset, cp.File.Size)
	}
	c := cp.Counts
	if c.Files < 0 || c.Dirs < 0 || c.Symlinks < 0 || c.Bytes < 0 || c.Added < 0 {
		return nil, errors.New("checkpoint has negative counters")
	}
	return &cp, nil
}

// decodeResume checks a checkpoint against this job, the repository and
// the source, and builds the walker's resume state. Any error means the
// checkpoint is not usable.
func (b *backup) decodeResume(data []byte) (*dirResume, *cpState, error) {
	cp, err := decodeCheckpoint(data)
	if err != nil {
		return nil, nil, err
	}
	if string(cp.Source) != b.src {
		return nil, nil, fmt.Errorf("checkpoint of source folder %q, not %q", cp.Source, b.src)
	}
	// Kind and parent may differ (a newer snapshot completed while the job
	// was interrupted): they only decide which files are read, and the
	// entries done are backed up whatever they were.
	if cp.Snapshot != b.meta.ID {
		return nil, nil, fmt.Errorf("checkpoint of snapshot %q, not %q", cp.Snapshot, b.meta.ID)
	}
	levels := make([]*dirResume, len(cp.Stack))
	rel := ""
	for i, f := range cp.Stack {
		name := string(f.Name)
		if i > 0 {
			rel = path.Join(rel, name)
			fi, err := b.root.Lstat(rel)
			if err != nil || !fi.IsDir() {
				return nil, nil, fmt.Errorf("folder %s of the checkpoint is gone from the source", b.full(rel))
			}
		}
		nodes, _, _, err := loadSegments(b.r, f.Seg)
		if err != nil {
			return nil, nil, fmt.Errorf("folder %q: %w", rel, err)
		}
		for _, n := range nodes {
			if !b.hasAll(n.Content) || (n.Subtree != nil && !b.r.Has(*n.Subtree)) {
				return nil, nil, fmt.Errorf("folder %q: a blob of %q is missing from the repository", rel, n.Name)
			}
		}
		levels[i] = &dirResume{nodes: nodes, seg: f.Seg}
		if i > 0 {
			prev := levels[i-1]
			if len(prev.nodes) > 0 && prev.nodes[len(prev.nodes)-1].Name >= name {
				return nil, nil, fmt.Errorf("folder %q: open folder %q is before entries already done", path.Dir(rel), name)
			}
			prev.next, prev.child = name, levels[i]
		}
	}
	if f := cp.File; f != nil {
		name := string(f.Name)
		_, content, _, err := loadSegments(b.r, f.Seg)
		if err != nil {
			return nil, nil, fmt.Errorf("file %q: %w", name, err)
		}
		if !b.hasAll(content) {
			return nil, nil, fmt.Errorf("file %q: a chunk is missing from the repository", name)
		}
		inner := levels[len(levels)-1]
		if len(inner.nodes) > 0 && inner.nodes[len(inner.nodes)-1].Name >= name {
			return nil, nil, fmt.Errorf("file %q is before entries already done", name)
		}
		inner.next = name
		inner.file = &fileResume{size: f.Size, mtime: f.MTime, inode: f.Inode, offset: f.Offset, content: content, seg: f.Seg}
	}
	return levels[0], cp, nil
}

// UsedByCheckpoint enumerates the blobs an interrupted backup's checkpoint
// names: its segments, the chunks and subtrees of the entries done, and the
// chunks of the file in progress. A prune that runs while a job is
// interrupted keeps these (with Used of the snapshots) so that the job can
// resume without reading again what it did. Each blob is yielded once;
// yield returning false stops the enumeration.
func UsedByCheckpoint(ctx context.Context, r *repo.Repo, cp []byte, yield func(repo.ID) bool) error {
	st, err := decodeCheckpoint(cp)
	if err != nil {
		return err
	}
	u := newUsedWalker(r, yield)
	segs := make([]*repo.ID, 0, len(st.Stack)+1)
	for _, f := range st.Stack {
		segs = append(segs, f.Seg)
	}
	if st.File != nil {
		segs = append(segs, st.File.Seg)
	}
	for _, last := range segs {
		nodes, content, ids, err := loadSegments(r, last)
		if err != nil {
			return fmt.Errorf("blobs of checkpoint: %w", err)
		}
		for _, id := range ids {
			if !u.data(id) { // segments are tree-type blobs but never walked as trees
				return nil
			}
		}
		for _, id := range content {
			if !u.data(id) {
				return nil
			}
		}
		if err := u.nodes(ctx, nodes); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return fmt.Errorf("blobs of checkpoint: %w", err)
		}
	}
	return nil
}
