package retention

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

// Snapshot is what retention needs to know of a snapshot manifest.
type Snapshot struct {
	ID, Source string
	// Kind is "full" or "incremental"; Parent the snapshot it was based on
	// ("" for none); Chain the id of the snapshot that starts its chain.
	Kind, Parent, Chain string
	CompletedAt         time.Time
}

// Policy is the retention limits (limits.retention); 0 disables a rule.
//
// Precondition: the caller checked the values where the limits are decoded
// (protection.Limits.Validate refuses negatives, naming the key); Decide
// does not check them again, and treats a negative value as 0 (no bound).
type Policy struct {
	// KeepLast keeps the newest KeepLast snapshots of each source.
	KeepLast int
	// KeepWithin keeps the snapshots completed within KeepWithin of now.
	KeepWithin time.Duration
	// MaxTotalBytes bounds the repository's bytes referenced by the kept
	// snapshots (each blob counted once).
	MaxTotalBytes int64
}

// Forgotten is a snapshot a plan forgets, and why.
type Forgotten struct {
	Snapshot
	Reason string
	// Frees is the repository bytes that forgetting this snapshot frees
	// once those before it in Plan.Forget are forgotten (0 without Usage).
	Frees int64
}

// Rebase rewrites a kept snapshot whose parent or chain start is forgotten.
type Rebase struct {
	ID                string
	Parent, NewParent string
	Chain, NewChain   string
}

// Plan is what retention does: forget some snapshots, rewrite others.
// Apply Rebase first (write the new manifests), then remove the forgotten
// manifests, then prune: a crash in between leaves every kept snapshot
// restorable and at worst a rebased one naming a parent that still exists.
type Plan struct {
	// Forget lists the snapshots to forget in drop order: those no keep
	// rule keeps, oldest first, then those max_total_bytes drops, oldest
	// first.
	Forget []Forgotten
	// Rebase lists the kept snapshots to rewrite, oldest first.
	Rebase []Rebase
	// Kept is the number of snapshots that stay.
	Kept int
	// Sized says the byte counts are known (a Usage was given).
	Sized bool
	// BytesBefore and BytesAfter are the repository bytes referenced by all
	// the snapshots and by the kept ones; BytesFreed their difference.
	BytesBefore, BytesAfter, BytesFreed int64
	// Unmet, when not empty, says why max_total_bytes cannot be met.
	Unmet string
}

// Decide applies policy p at now to snapshots (the complete ones of every
// source). u gives the blobs they use; it may be nil unless
// p.MaxTotalBytes > 0, and then the plan's byte counts are unknown.
func Decide(snapshots []Snapshot, p Policy, now time.Time, u *Usage) (Plan, error) {
	if p.MaxTotalBytes > 0 && u == nil {
		return Plan{}, errors.New("retention: limits.retention.max_total_bytes needs the blobs the snapshots use, and none were given")
	}
	byID, err := index(snapshots)
	if err != nil {
		return Plan{}, fmt.Errorf("retention: %w", err)
	}

	// Keep rules, per source, newest first.
	bySource := map[string][]Snapshot{}
	for _, s := range snapshots {
		bySource[s.Source] = append(bySource[s.Source], s)
	}
	var dropped, candidates []Forgotten
	for _, list := range bySource {
		slices.SortFunc(list, newestFirst)
		for i, s := range list {
			if reason := forgetReason(p, i, s, now); reason != "" {
				dropped = append(dropped, Forgotten{Snapshot: s, Reason: reason})
			} else if i > 0 && p.MaxTotalBytes > 0 {
				// The newest of a source never goes for size.
				candidates = append(candidates, Forgotten{Snapshot: s})
			}
		}
	}
	slices.SortFunc(dropped, func(a, b Forgotten) int { return newestFirst(b.Snapshot, a.Snapshot) })
	slices.SortFunc(candidates, func(a, b Forgotten) int { return newestFirst(b.Snapshot, a.Snapshot) })

	plan := Plan{Forget: dropped}
	if u != nil {
		plan.Sized = true
		order := append(slices.Clip(dropped), candidates...)
		freed, before := freedByDrop(u, order)
		plan.BytesBefore = before
		for i := range dropped {
			plan.Forget[i].Frees = freed[i]
		}
		after := before - sum(freed[:len(dropped)])
		if p.MaxTotalBytes > 0 && after > p.MaxTotalBytes {
			n, rest := sizeDrops(freed[len(dropped):], after, p.MaxTotalBytes)
			for i, c := range candidates[:n] {
				c.Frees = freed[len(dropped)+i]
				c.Reason = fmt.Sprintf("over max_total_bytes %s: frees %s", bytesText(p.MaxTotalBytes), bytesText(c.Frees))
				plan.Forget = append(plan.Forget, c)
			}
			after = rest
			if after > p.MaxTotalBytes {
				plan.Unmet = fmt.Sprintf("max_total_bytes %s cannot be met: with every snapshot forgotten but the newest of each source the snapshots reference %s",
					bytesText(p.MaxTotalBytes), bytesText(after))
			}
		}
		plan.BytesAfter, plan.BytesFreed = after, before-after
	}
	plan.Kept = len(snapshots) - len(plan.Forget)
	plan.Rebase = rebase(snapshots, byID, plan.Forget)
	return plan, nil
}

// Forget plans forgetting the snapshot id alone (DELETE of one snapshot):
// its children are rebased as in Decide. u, when given, gives the bytes it
// frees. The error wraps sdk.ErrNotFound when id is not among snapshots.
func Forget(snapshots []Snapshot, id string, u *Usage) (Plan, error) {
	byID, err := index(snapshots)
	if err != nil {
		return Plan{}, fmt.Errorf("forget snapshot %s: %w", id, err)
	}
	s, ok := byID[id]
	if !ok {
		return Plan{}, fmt.Errorf("forget snapshot %s: %w", id, sdk.ErrNotFound)
	}
	plan := Plan{Forget: []Forgotten{{Snapshot: s, Reason: "forgotten on request"}}, Kept: len(snapshots) - 1}
	if u != nil {
		freed, before := freedByDrop(u, plan.Forget)
		plan.Sized, plan.BytesBefore = true, before
		plan.Forget[0].Frees, plan.BytesFreed, plan.BytesAfter = freed[0], freed[0], before-freed[0]
	}
	plan.Rebase = rebase(snapshots, byID, plan.Forget)
	return plan, nil
}

// index maps snapshots by id, refusing empty and repeated ids.
func index(snapshots []Snapshot) (map[string]Snapshot, error) {
	byID := make(map[string]Snapshot, len(snapshots))
	for _, s := range snapshots {
		if s.ID == "" {
			return nil, fmt.Errorf("a snapshot of source %q has no id", s.Source)
		}
		if _, dup := byID[s.ID]; dup {
			return nil, fmt.Errorf("snapshot id %s appears twice", s.ID)
		}
		byID[s.ID] = s
	}
	return byID, nil
}

// newestFirst orders by completion time, newest first; ties by id.
func newestFirst(a, b Snapshot) int {
	if c := b.CompletedAt.Compare(a.CompletedAt); c != 0 {
		return c
	}
	return cmp.Compare(b.ID, a.ID)
}

// forgetReason says why the keep rules forget s, the i-th newest of its
// source; "" when a rule keeps it. The newest of a source always stays.
func forgetReason(p Policy, i int, s Snapshot, now time.Time) string {
	if i == 0 || (p.KeepLast == 0 && p.KeepWithin == 0) {
		return ""
	}
	var why []string
	if p.KeepLast > 0 {
		if i < p.KeepLast {
			return ""
		}
		why = append(why, fmt.Sprintf("beyond keep_last %d", p.KeepLast))
	}
	if p.KeepWithin > 0 {
		if now.Sub(s.CompletedAt) <= p.KeepWithin {
			return ""
		}
		why = append(why, "older than keep_within "+durationText(p.KeepWithin))
	}
	return strings.Join(why, " and ")
}

// freedByDrop returns, for snapshots forgotten in the order given, what
// each drop frees after the ones before it; and the bytes of every blob
// some snapshot references. Snapshots not in order stay.
func freedByDrop(u *Usage, order []Forgotten) (freed []int64, total int64) {
	pos := make(map[string]int32, len(order))
	for i, f := range order {
		pos[f.ID] = int32(i)
	}
	freed = make([]int64, len(order))
	for b, h := range u.lastHolder(pos) {
		if h == unreached {
			continue
		}
		total += u.size[b]
		if h != never {
			freed[h] += u.size[b]
		}
	}
	return freed, total
}

// sizeDrops returns how many of the size candidates to drop, oldest first,
// for the bytes (size now, freed[i] by the i-th) to fit max, and the size
// then. When they cannot fit, it drops only up to the last drop that frees
// anything.
func sizeDrops(freed []int64, size, max int64) (int, int64) {
	last := 0
	for i, f := range freed {
		if f > 0 {
			size -= f
			last = i + 1
			if size <= max {
				return last, size
			}
		}
	}
	return last, size
}

func sum(xs []int64) int64 {
	var t int64
	for _, x := range xs {
		t += x
	}
	return t
}

// rebase returns the rewrites of kept snapshots whose parent or chain
// start is forgotten: the parent becomes the nearest ancestor that stays
// ("" when none does); when a chain's start goes, its oldest kept member
// starts it.
func rebase(snapshots []Snapshot, byID map[string]Snapshot, forget []Forgotten) []Rebase {
	gone := make(map[string]bool, len(forget))
	for _, f := range forget {
		gone[f.ID] = true
	}
	kept := make([]Snapshot, 0, len(snapshots))
	for _, s := range snapshots {
		if !gone[s.ID] {
			kept = append(kept, s)
		}
	}
	slices.SortFunc(kept, func(a, b Snapshot) int { return newestFirst(b, a) })
	newStart := map[string]string{}
	for _, s := range kept {
		if gone[s.Chain] && newStart[s.Chain] == "" {
			newStart[s.Chain] = s.ID
		}
	}
	var out []Rebase
	for _, s := range kept {
		parent := s.Parent
		// Bounded: a cycle of parents (a damaged repository) must not hang.
		for steps := 0; gone[parent] && steps <= len(snapshots); steps++ {
			parent = byID[parent].Parent
		}
		if gone[parent] {
			parent = ""
		}
		chain := s.Chain
		if gone[chain] {
			chain = newStart[chain]
		}
		if parent != s.Parent || chain != s.Chain {
			out = append(out, Rebase{ID: s.ID, Parent: s.Parent, NewParent: parent, Chain: s.Chain, NewChain: chain})
		}
	}
	return out
}

// durationText writes a duration without trailing zero units: 720h, 1h30m.
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// bytesText writes a byte count exactly, with binary units beside it when
// it is large: "1048576 bytes (1.0 MiB)".
func bytesText(b int64) string {
	if b < 1024 {
		return fmt.Sprintf("%d bytes", b)
	}
	div, exp := int64(1024), 0
	for n := b / 1024; n >= 1024 && exp < 5; n /= 1024 {
		div *= 1024
		exp++
	}
	return fmt.Sprintf("%d bytes (%.1f %ciB)", b, float64(b)/float64(div), "KMGTPE"[exp])
}
