package repo

import (
	"bytes"
	"slices"
)

// blobIndex maps blob IDs to locations in about 52 bytes per blob: a
// sorted slice of (ID, location) searched by binary search, plus a small
// map of recent insertions that is merged into the slice when it exceeds
// 1/8 of it (so at most ~12 bytes more per blob on average). A Go map alone
// costs 80–120 bytes per entry. Not safe for concurrent use: Repo.mu
// guards it.
type blobIndex struct {
	sorted []indexEntry // by ID; deleted entries have pack == tombstone
	recent map[ID]location
	dead   int // tombstones in sorted
}

type indexEntry struct {
	id  ID
	loc location
}

const (
	tombstone      = ^uint32(0)
	minMergeRecent = 4096
)

func newBlobIndex() *blobIndex { return &blobIndex{recent: make(map[ID]location)} }

func (x *blobIndex) search(id ID) (int, bool) {
	i, ok := slices.BinarySearchFunc(x.sorted, id, func(e indexEntry, id ID) int { return bytes.Compare(e.id[:], id[:]) })
	return i, ok && x.sorted[i].loc.pack != tombstone
}

func (x *blobIndex) get(id ID) (location, bool) {
	if loc, ok := x.recent[id]; ok {
		return loc, true
	}
	if i, ok := x.search(id); ok {
		return x.sorted[i].loc, true
	}
	return location{}, false
}

func (x *blobIndex) len() int { return len(x.sorted) - x.dead + len(x.recent) }

// set inserts or replaces the location of id.
func (x *blobIndex) set(id ID, loc location) {
	if _, ok := x.recent[id]; ok {
		x.recent[id] = loc
		return
	}
	if i, found := slices.BinarySearchFunc(x.sorted, id, func(e indexEntry, id ID) int { return bytes.Compare(e.id[:], id[:]) }); found {
		if x.sorted[i].loc.pack == tombstone {
			x.dead--
		}
		x.sorted[i].loc = loc
		return
	}
	x.recent[id] = loc
	if len(x.recent) > max(minMergeRecent, len(x.sorted)/8) {
		x.merge()
	}
}

func (x *blobIndex) del(id ID) {
	if _, ok := x.recent[id]; ok {
		delete(x.recent, id)
		return
	}
	if i, ok := x.search(id); ok {
		x.sorted[i].loc.pack = tombstone
		x.dead++
		if x.dead > minMergeRecent && x.dead > len(x.sorted)/4 {
			x.merge()
		}
	}
}

// merge folds recent into sorted and drops tombstones.
func (x *blobIndex) merge() {
	add := make([]indexEntry, 0, len(x.recent))
	for id, loc := range x.recent {
		add = append(add, indexEntry{id: id, loc: loc})
	}
	slices.SortFunc(add, func(a, b indexEntry) int { return bytes.Compare(a.id[:], b.id[:]) })
	out := make([]indexEntry, 0, len(x.sorted)-x.dead+len(add))
	i, j := 0, 0
	for i < len(x.sorted) || j < len(add) {
		if i < len(x.sorted) && x.sorted[i].loc.pack == tombstone {
			i++
			continue
		}
		if j == len(add) || (i < len(x.sorted) && bytes.Compare(x.sorted[i].id[:], add[j].id[:]) < 0) {
			out = append(out, x.sorted[i])
			i++
		} else {
			out = append(out, add[j])
			j++
		}
	}
	x.sorted, x.dead = out, 0
	clear(x.recent)
	x.recent = make(map[ID]location) // a cleared map keeps its size
}

// each calls fn for every live entry, in no particular order.
func (x *blobIndex) each(fn func(ID, location)) {
	for _, e := range x.sorted {
		if e.loc.pack != tombstone {
			fn(e.id, e.loc)
		}
	}
	for id, loc := range x.recent {
		fn(id, loc)
	}
}
