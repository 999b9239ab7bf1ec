package repo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// PruneReport tells what Prune removed and rewrote (or would, in a dry run).
type PruneReport struct {
	DryRun bool
	// UsedBlobs is the number of distinct blobs the kept snapshots use.
	UsedBlobs int64
	// MissingBlobs counts used blobs that are in no pack: some kept
	// snapshot is damaged (run verify). Missing lists the first 20.
	MissingBlobs int64
	Missing      []ID
	// PacksRemoved: packs deleted because they held only unused blobs.
	PacksRemoved []string
	// PacksRewritten: packs whose used blobs were copied to new packs and
	// which were then deleted (those with unused blobs, and small packs
	// merged).
	PacksRewritten []string
	// PacksWritten: the new packs.
	PacksWritten []string
	// BlobsRemoved counts the unused blob copies dropped; BlobsRepacked
	// the used blobs copied.
	BlobsRemoved  int64
	BlobsRepacked int64
	// BytesFreed is the pack bytes removed minus the pack bytes written
	// (for a dry run, an estimate that ignores trailers).
	BytesFreed int64
	// Problems lists packs that were to be rewritten but were left alone
	// because a used blob in them failed its check.
	Problems []Problem
}

const maxMissingListed = 20

// prunePlan is the fate of one pack.
type prunePlan struct {
	id        ID
	size      int64
	liveBytes int64
	deadBytes int64
	dead      int64
	// entries is the pack's index file, read once when planning and kept
	// for the packs that go (rewritten or removed): index files never
	// change, so the later steps use it instead of reading it again.
	entries []packEntry
}

// Small packs: a checkpoint, or a backup that adds little, finishes the
// open pack early, so packs below the target size accumulate. Prune merges
// the packs under 1/smallPackShare of the pack size that hold only used
// blobs, once there are at least minSmallPacks of them (so that a merge
// always lowers the pack count and one small pack is never rewritten over
// and over).
const (
	smallPackShare = 4
	minSmallPacks  = 4
)

// Prune deletes the blobs that used does not yield. used must enumerate
// every blob (trees and data) of every snapshot to keep; it may yield an
// ID more than once. Packs holding only unused blobs are deleted; packs
// mixing used and unused blobs are rewritten when the unused share of
// their bytes exceeds the rewrite threshold (default 20%); small packs of
// used blobs are merged (see smallPackShare). With dryRun, nothing changes
// and the report says what would go.
//
// Prune is crash-safe: it writes the new packs and their indexes first
// (a crash then leaves duplicates, which Open and the next Prune handle),
// then removes the old index files (a crash then leaves orphan packs,
// which Open adopts), then the old packs. A used blob is in an indexed
// pack at every moment.
//
// The caller must not run a backup concurrently: a backup may have
// deduplicated against a blob no kept snapshot uses yet. Prune and
// VerifyPacks exclude each other; Load and Add stay safe during Prune.
// Memory: a set of the used IDs (about 50 bytes each) plus the index
// entries of the packs that go (48 bytes a blob, at most the in-memory
// index again), each index file read once.
func (r *Repo) Prune(ctx context.Context, used func(yield func(ID) bool) error, dryRun bool) (PruneReport, error) {
	rep := PruneReport{DryRun: dryRun}
	if err := r.enter(); err != nil {
		return rep, err
	}
	defer r.life.RUnlock()
	r.maintMu.Lock()
	defer r.maintMu.Unlock()

	usedSet := make(map[ID]struct{})
	var ctxErr error
	if err := used(func(id ID) bool {
		if len(usedSet)%4096 == 0 {
			if ctxErr = ctx.Err(); ctxErr != nil {
				return false
			}
		}
		usedSet[id] = struct{}{}
		return true
	}); err != nil {
		return rep, fmt.Errorf("prune: list used blobs: %w", err)
	}
	if ctxErr != nil {
		return rep, fmt.Errorf("prune: %w", ctxErr)
	}
	rep.UsedBlobs = int64(len(usedSet))

	r.mu.RLock()
	for id := range usedSet {
		_, indexed := r.index.get(id)
		_, pending := r.pending[id]
		if !indexed && !pending {
			rep.MissingBlobs++
			if len(rep.Missing) < maxMissingListed {
				rep.Missing = append(rep.Missing, id)
			}
		}
	}
	packs := make([]packInfo, 0, r.livePacks)
	for _, p := range r.packs {
		if !p.gone {
			packs = append(packs, p)
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(rep.Missing, compareID)

	var remove, rewrite, small []prunePlan
	for _, p := range packs {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
		_, entries, err := r.readIndexFile(p.id)
		if err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
		plan := prunePlan{id: p.id, size: p.size, entries: entries}
		r.mu.RLock()
		pi := r.packByID[p.id]
		for _, e := range entries {
			loc, ok := r.index.get(e.id)
			if _, isUsed := usedSet[e.id]; isUsed && ok && loc.pack == pi {
				plan.liveBytes += int64(e.length)
			} else {
				plan.deadBytes += int64(e.length)
				plan.dead++
			}
		}
		r.mu.RUnlock()
		switch {
		case plan.liveBytes == 0 && plan.dead == int64(len(entries)):
			remove = append(remove, plan)
		case plan.dead == 0 && plan.size < r.packSize/smallPackShare:
			small = append(small, plan)
		case plan.dead == 0: // kept as it is: its entries are not needed again
		case float64(plan.deadBytes) > r.rewriteThreshold*float64(plan.liveBytes+plan.deadBytes):
			rewrite = append(rewrite, plan)
		}
	}
	if len(small) >= minSmallPacks {
		rewrite = append(rewrite, small...)
	}

	if dryRun {
		for _, p := range remove {
			rep.PacksRemoved = append(rep.PacksRemoved, p.id.String())
			rep.BlobsRemoved += p.dead
			rep.BytesFreed += p.size
		}
		for _, p := range rewrite {
			rep.PacksRewritten = append(rep.PacksRewritten, p.id.String())
			rep.BlobsRemoved += p.dead
			rep.BytesFreed += p.deadBytes
		}
		return rep, nil
	}

	// Step 1: copy the used blobs of the packs to rewrite into new packs.
	newPacks, rewritten, err := r.rewritePacks(ctx, rewrite, usedSet, &rep)
	if err != nil {
		return rep, err
	}
	if err := r.step("packs-written"); err != nil {
		return rep, err
	}

	// Step 2: remove the old index files (and forget the packs).
	var old []prunePlan
	for _, p := range remove {
		if !newPacks[p.id] {
			old = append(old, p)
			rep.PacksRemoved = append(rep.PacksRemoved, p.id.String())
		}
	}
	for _, p := range rewritten {
		if !newPacks[p.id] {
			old = append(old, p)
			rep.PacksRewritten = append(rep.PacksRewritten, p.id.String())
		}
	}
	for _, p := range old {
		r.mu.Lock()
		pi := r.packByID[p.id]
		for _, e := range p.entries {
			if loc, ok := r.index.get(e.id); ok && loc.pack == pi {
				rep.BlobsRemoved++
			}
		}
		r.dropPackLocked(p.id, p.entries)
		r.mu.Unlock()
		if err := removeFile(r.indexPath(p.id)); err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
	}
	if len(old) > 0 {
		if err := syncDir(filepath.Join(r.dir, indexDir)); err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
	}
	if err := r.step("indexes-removed"); err != nil {
		return rep, err
	}

	// Step 3: remove the old packs.
	dirs := make(map[string]bool)
	for _, p := range old {
		path := r.packPath(p.id)
		if err := removeFile(path); err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
		dirs[filepath.Dir(path)] = true
		rep.BytesFreed += p.size
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
	}
	return rep, nil
}

func (r *Repo) step(name string) error {
	if r.pruneHook == nil {
		return nil
	}
	if err := r.pruneHook(name); err != nil {
		return fmt.Errorf("prune: stopped after step %s: %w", name, err)
	}
	return nil
}

// rewritePacks copies the used blobs of each plan into new packs, checking
// each blob on the way. A plan with a damaged used blob is left alone and
// reported. It returns the IDs of the new packs and the plans rewritten.
func (r *Repo) rewritePacks(ctx context.Context, plans []prunePlan, usedSet map[ID]struct{}, rep *PruneReport) (map[ID]bool, []prunePlan, error) {
	newPacks := make(map[ID]bool)
	var done []prunePlan
	var pb *packBuilder
	finish := func() error {
		id, err := r.finishPack(pb, true)
		pb = nil
		if err != nil {
			return fmt.Errorf("prune: %w", err)
		}
		newPacks[id] = true
		rep.PacksWritten = append(rep.PacksWritten, id.String())
		r.mu.RLock()
		rep.BytesFreed -= r.packs[r.packByID[id]].size
		r.mu.RUnlock()
		return nil
	}
	var plain []byte
	for _, plan := range plans {
		if err := ctx.Err(); err != nil {
			if pb != nil {
				pb.discard(r)
			}
			return nil, nil, fmt.Errorf("prune: %w", err)
		}
		r.mu.RLock()
		pi := r.packByID[plan.id]
		var live []packEntry // a new slice: plan.entries serves step 2 too
		for _, e := range plan.entries {
			_, isUsed := usedSet[e.id]
			if loc, ok := r.index.get(e.id); isUsed && ok && loc.pack == pi {
				live = append(live, e)
			}
		}
		r.mu.RUnlock()
		f, err := os.Open(r.packPath(plan.id))
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{Name: plan.id.String(), Reason: err.Error()})
			continue
		}
		var bad error
		for _, e := range live {
			cb := getBuf(int(e.length))
			n, rerr := r.counted(f).ReadAt(*cb, int64(e.offset))
			if n < len(*cb) {
				bad = fmt.Errorf("pack %s: blob %s: read: %w: %w", plan.id, e.id, rerr, ErrCorrupt)
			} else {
				plain, bad = r.decodeBlob(plan.id, e.id, e.rawLen, *cb, plain)
			}
			if bad == nil {
				if pb == nil {
					if pb, err = r.newPackBuilder(); err != nil {
						putBuf(cb)
						_ = f.Close()
						return nil, nil, fmt.Errorf("prune: %w", err)
					}
				}
				off := pb.size
				if err := pb.write(*cb); err != nil {
					putBuf(cb)
					_ = f.Close()
					pb.discard(r)
					return nil, nil, fmt.Errorf("prune: %w", err)
				}
				pb.entries = append(pb.entries, packEntry{id: e.id, typ: e.typ, offset: uint32(off), length: e.length, rawLen: e.rawLen})
				rep.BlobsRepacked++
			}
			putBuf(cb)
			if bad != nil {
				break
			}
			if pb.size >= r.packSize || len(pb.entries) >= maxPackEntries {
				if err := finish(); err != nil {
					_ = f.Close()
					return nil, nil, err
				}
			}
		}
		_ = f.Close()
		if bad != nil {
			rep.Problems = append(rep.Problems, Problem{Name: plan.id.String(), Reason: "left alone: " + bad.Error()})
			continue
		}
		done = append(done, plan)
	}
	if pb != nil {
		if err := finish(); err != nil {
			return nil, nil, err
		}
	}
	return newPacks, done, nil
}

func (r *Repo) readIndexFile(id ID) (int64, []packEntry, error) {
	b, err := os.ReadFile(r.indexPath(id))
	if err != nil {
		return 0, nil, fmt.Errorf("read index of pack %s: %w", id, err)
	}
	size, entries, err := decodeIndex(b)
	if err != nil {
		return 0, nil, fmt.Errorf("index of pack %s: %w: %w", id, err, ErrCorrupt)
	}
	return size, entries, nil
}
