package retention

import (
	"cmp"
	"slices"
)

// BlobID names a blob: the SHA-256 of its plaintext (repo.ID converts to it
// with BlobID(id)).
type BlobID [32]byte

// Usage records which blobs the snapshots reference and what each blob
// costs in the repository, compactly enough for thousands of snapshots
// sharing most of their blobs. Not safe for concurrent use.
//
// It is a graph: a snapshot uses some blobs directly, and a blob may
// reference others (a tree its subtrees and its files' content). Fill it
// either way, or mixed:
//
//   - as a tree: Uses(snapshot, root tree) per snapshot, and Blob(id, size,
//     children) once per distinct tree (children: subtree IDs and content
//     IDs) and once per data blob (no children). Memory and time grow with
//     the distinct blobs and tree edges, not with snapshots × blobs: an
//     unchanged subtree is one node whichever snapshots share it.
//   - flat, from engine.Used run per snapshot: Uses(snapshot, id) and
//     Blob(id, size, nil) for every blob it yields. Simple, but it holds
//     one entry per snapshot and blob.
//
// A blob used but never given a size counts 0 bytes.
type Usage struct {
	index    map[BlobID]int32
	size     []int64
	children [][]int32
	sized    []bool
	roots    map[string][]int32 // snapshot id -> blobs it uses directly
}

// NewUsage returns an empty Usage.
func NewUsage() *Usage {
	return &Usage{index: make(map[BlobID]int32), roots: make(map[string][]int32)}
}

func (u *Usage) node(id BlobID) int32 {
	if n, ok := u.index[id]; ok {
		return n
	}
	n := int32(len(u.size))
	u.index[id] = n
	u.size = append(u.size, 0)
	u.children = append(u.children, nil)
	u.sized = append(u.sized, false)
	return n
}

// Uses records that snapshot references blob directly.
func (u *Usage) Uses(snapshot string, blob BlobID) {
	u.roots[snapshot] = append(u.roots[snapshot], u.node(blob))
}

// Blob records blob id's stored size (compressed bytes in its pack) and
// the blobs it references. A blob recorded twice keeps its first record.
func (u *Usage) Blob(id BlobID, size int64, children []BlobID) {
	n := u.node(id)
	if u.sized[n] {
		return
	}
	u.sized[n] = true
	u.size[n] = max(size, 0)
	if len(children) > 0 {
		cs := make([]int32, len(children))
		for i, c := range children {
			cs[i] = u.node(c)
		}
		u.children[n] = cs
	}
}

// Blobs is the number of distinct blobs recorded.
func (u *Usage) Blobs() int { return len(u.size) }

// Position values of the drop order: never is a snapshot that stays
// whatever happens; unreached marks a blob no snapshot references.
const (
	never     = int32(1<<31 - 1)
	unreached = int32(-1)
)

// lastHolder returns, for every blob, the highest drop position among the
// snapshots that reach it (pos gives a snapshot's position; a snapshot
// pos does not know stays: never), or unreached. Dropping snapshots in
// position order, a blob is freed by the drop at its lastHolder position.
//
// Snapshots are walked from the highest position down, each walk stopping
// at blobs already reached: the first walk to reach a blob has the
// highest position among those that reach it, so every blob and edge is
// visited once.
func (u *Usage) lastHolder(pos map[string]int32) []int32 {
	type root struct {
		pos   int32
		blobs []int32
	}
	roots := make([]root, 0, len(u.roots))
	for id, blobs := range u.roots {
		p, ok := pos[id]
		if !ok {
			p = never
		}
		roots = append(roots, root{p, blobs})
	}
	// Highest position first.
	slices.SortFunc(roots, func(a, b root) int { return cmp.Compare(b.pos, a.pos) })
	holder := make([]int32, len(u.size))
	for i := range holder {
		holder[i] = unreached
	}
	var stack []int32
	for _, r := range roots {
		for _, b := range r.blobs {
			if holder[b] != unreached {
				continue
			}
			holder[b] = r.pos
			stack = append(stack[:0], b)
			for len(stack) > 0 {
				n := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				for _, c := range u.children[n] {
					if holder[c] == unreached {
						holder[c] = r.pos
						stack = append(stack, c)
					}
				}
			}
		}
	}
	return holder
}
