package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
)

// errStop: the caller's yield asked to stop.
var errStop = errors.New("stop")

// usedWalker enumerates the blobs below trees, each once. Trees and data
// have separate seen sets: a file chunk may have the very bytes (so the ID)
// of a tree, and must not hide that tree's children.
type usedWalker struct {
	r         *repo.Repo
	yield     func(repo.ID) bool
	seenTrees map[repo.ID]struct{}
	seenData  map[repo.ID]struct{}
}

func newUsedWalker(r *repo.Repo, yield func(repo.ID) bool) *usedWalker {
	return &usedWalker{r: r, yield: yield, seenTrees: map[repo.ID]struct{}{}, seenData: map[repo.ID]struct{}{}}
}

// data yields id if it is new; false means stop.
func (u *usedWalker) data(id repo.ID) bool {
	if _, ok := u.seenData[id]; ok {
		return true
	}
	u.seenData[id] = struct{}{}
	return u.yield(id)
}

func (u *usedWalker) tree(ctx context.Context, id repo.ID) error {
	if _, ok := u.seenTrees[id]; ok {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	u.seenTrees[id] = struct{}{}
	if !u.yield(id) {
		return errStop
	}
	t, err := loadTree(u.r, id)
	if err != nil {
		return err
	}
	return u.nodes(ctx, t.Nodes)
}

func (u *usedWalker) nodes(ctx context.Context, nodes []repo.Node) error {
	for i := range nodes {
		n := &nodes[i]
		for _, id := range n.Content {
			if !u.data(id) {
				return errStop
			}
		}
		if n.Subtree != nil {
			if err := u.tree(ctx, *n.Subtree); err != nil {
				return err
			}
		}
	}
	return nil
}

// Used enumerates the blobs referenced by snaps, trees and data, each once
// (yield returning false stops it). It loads every tree (each hash is
// checked); an unreadable tree is an error, since then the blobs below it
// are unknown and a prune must not go on. Memory: a set of the distinct
// blob IDs seen (about 100 bytes per blob: 1 GiB of 1 MiB chunks needs
// about 100 KiB).
func Used(ctx context.Context, r *repo.Repo, snaps []repo.Snapshot, yield func(repo.ID) bool) error {
	u := newUsedWalker(r, yield)
	for _, s := range snaps {
		if err := u.tree(ctx, s.Tree); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return fmt.Errorf("blobs of snapshot %s: %w", s.ID, err)
		}
	}
	return nil
}

// VerifyReport sums up a Verify.
type VerifyReport struct {
	Snapshots int64 // snapshots walked
	Trees     int64 // distinct tree blobs loaded
	DataBlobs int64 // distinct data blobs of the snapshots found sound
	DataBytes int64 // their plaintext bytes
	Packs     int64 // pack files read
	PackBytes int64 // their bytes
	Problems  int64 // problems reported
}

type verifier struct {
	r         *repo.Repo
	fn        func(string)
	report    VerifyReport
	damaged   map[repo.ID]repo.BlobDamage // from VerifyPacks
	reached   map[repo.ID]struct{}        // damaged blobs some snapshot uses
	missing   map[repo.ID]struct{}        // data blobs in no pack
	seenTrees map[repo.ID]struct{}
	seenData  map[repo.ID]struct{}
}

func (v *verifier) problem(format string, args ...any) {
	v.report.Problems++
	if v.fn != nil {
		v.fn(fmt.Sprintf(format, args...))
	}
}

// Verify checks the whole repository and every snapshot in it, reading
// each pack file once. fn receives one line per problem; each problem is
// reported once:
//
//   - a snapshot manifest that cannot be read: by its file name;
//   - a problem of a pack file (size, header, trailer, index file; see
//     repo.VerifyPacks): by pack, one line each;
//   - a damaged or missing blob that a snapshot uses: by the path that
//     uses it, "snapshot ID: /path: data blob X damaged in pack Y: why"
//     (a file: one line per affected file, naming its first bad chunk) or
//     "snapshot ID: /dir/: tree blob X …" (a folder);
//   - a damaged blob that no snapshot uses: by pack.
//
// First the snapshots are listed, then repo.VerifyPacks reads every pack
// (decompressing and hashing every blob), then Verify walks the
// snapshots' trees: it loads each tree blob again (it needs them to walk),
// and only looks data blobs up in the index and in the damage VerifyPacks
// found. The snapshots are listed first so that the packs read include
// every pack they use (a manifest is written after its packs). Verify
// goes on after a problem and returns an error only when it cannot go on
// (the snapshot list is unreadable, ctx is done). The caller must not
// prune meanwhile. Memory: a set of the distinct blob IDs seen, as for
// Used, plus what VerifyPacks keeps (proportional to the damage).
func Verify(ctx context.Context, r *repo.Repo, fn func(problem string)) (VerifyReport, error) {
	v := &verifier{r: r, fn: fn, reached: map[repo.ID]struct{}{}, missing: map[repo.ID]struct{}{},
		seenTrees: map[repo.ID]struct{}{}, seenData: map[repo.ID]struct{}{}}
	// A manifest that cannot be read is a problem to report, not a
	// snapshot to skip silently.
	snaps, err := r.ScanSnapshots(func(name string, err error) {
		v.problem("snapshot manifest %s: %v", name, err)
	})
	if err != nil {
		return v.report, fmt.Errorf("verify: list snapshots: %w", err)
	}
	// VerifyPacks calls its fn from one goroutine at a time and is done
	// when it returns. A pack's error joins its problems, one a line.
	packs, err := r.VerifyPacks(ctx, func(_ string, err error) {
		if err == nil {
			return
		}
		for line := range strings.Lines(err.Error()) {
			v.problem("%s", strings.TrimSuffix(line, "\n"))
		}
	})
	if err != nil {
		return v.report, fmt.Errorf("verify: %w", err)
	}
	v.damaged = packs.Damaged
	v.report.Packs, v.report.PackBytes = packs.Packs, packs.PackBytes
	for _, s := range snaps {
		v.report.Snapshots++
		if err := v.tree(ctx, s.Tree, "snapshot "+s.ID+": /"); err != nil {
			return v.report, fmt.Errorf("verify: %w", err)
		}
	}
	v.unreached()
	return v.report, nil
}

// tree checks one tree and the data blobs of its files; where is the
// folder's path ending in '/'.
func (v *verifier) tree(ctx context.Context, id repo.ID, where string) error {
	if _, ok := v.seenTrees[id]; ok {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	v.seenTrees[id] = struct{}{}
	if d, ok := v.damaged[id]; ok {
		v.reached[id] = struct{}{}
		v.problem("%s: tree blob %s damaged in pack %s: %v", where, id, d.Pack, d.Err)
		return nil
	}
	if _, ok := v.r.Locate(id); !ok {
		v.problem("%s: tree blob %s is missing (in no pack)", where, id)
		return nil
	}
	t, err := loadTree(v.r, id)
	if err != nil {
		v.problem("%s: %v", where, err)
		return nil
	}
	v.report.Trees++
	for i := range t.Nodes {
		n := &t.Nodes[i]
		v.file(where+n.Name, n.Content)
		if n.Subtree != nil {
			if err := v.tree(ctx, *n.Subtree, where+n.Name+"/"); err != nil {
				return err
			}
		}
	}
	return nil
}

// file checks the data blobs of one file and reports the file once if
// any is damaged or missing.
func (v *verifier) file(path string, content []repo.ID) {
	var first string
	bad := 0
	for _, id := range content {
		why := v.chunk(id)
		if why == "" {
			continue
		}
		if bad == 0 {
			first = why
		}
		bad++
	}
	switch {
	case bad == 1:
		v.problem("%s: %s", path, first)
	case bad == 2:
		v.problem("%s: %s (and 1 more bad chunk)", path, first)
	case bad > 2:
		v.problem("%s: %s (and %d more bad chunks)", path, first, bad-1)
	}
}

// chunk says what is wrong with data blob id, or "" when it is sound.
func (v *verifier) chunk(id repo.ID) string {
	if d, ok := v.damaged[id]; ok {
		v.reached[id] = struct{}{}
		return fmt.Sprintf("data blob %s damaged in pack %s: %v", id, d.Pack, d.Err)
	}
	if _, ok := v.seenData[id]; !ok {
		v.seenData[id] = struct{}{}
		if info, ok := v.r.Locate(id); ok {
			v.report.DataBlobs++
			v.report.DataBytes += info.RawLength
		} else {
			v.missing[id] = struct{}{}
		}
	}
	if _, ok := v.missing[id]; ok {
		return fmt.Sprintf("data blob %s is missing (in no pack)", id)
	}
	return ""
}

// unreached reports the damaged blobs that no snapshot uses, by pack,
// sorted. The blobs of a pack that could not be read at all are left out:
// the pack's own problem speaks for them.
func (v *verifier) unreached() {
	var left []repo.ID
	for id, d := range v.damaged {
		if _, ok := v.reached[id]; !ok && !d.PackUnreadable {
			left = append(left, id)
		}
	}
	slices.SortFunc(left, func(a, b repo.ID) int {
		pa, pb := v.damaged[a].Pack, v.damaged[b].Pack
		if c := bytes.Compare(pa[:], pb[:]); c != 0 {
			return c
		}
		return bytes.Compare(a[:], b[:])
	})
	for _, id := range left {
		d := v.damaged[id]
		typ := "blob"
		if info, ok := v.r.Locate(id); ok {
			typ = info.Type.String() + " blob"
		}
		v.problem("pack %s: %s %s, used by no snapshot: %v", d.Pack, typ, id, d.Err)
	}
}
