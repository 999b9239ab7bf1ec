// Package retention decides which backup snapshots to forget under the
// retention limits, which kept snapshots to re-base because of it, and how
// many repository bytes that frees. It reads and writes nothing: the plugin
// applies the Plan (re-bases, then removes manifests, then prunes).
//
// # Rules (Decide)
//
// Per source, snapshots ordered by completion time (ties by id):
//
//   - keep_last N keeps the N newest snapshots of each source;
//   - keep_within D keeps the snapshots completed within D before now
//     (later ones, from a clock behind, too);
//   - a snapshot kept by either rule is kept (the union, as restic);
//     0 disables a rule, and with both 0 every snapshot is kept;
//   - the newest snapshot of each source is always kept, whatever the
//     rules say: retention never leaves a source without a backup (a
//     source whose backups stopped keeps its last one past keep_within).
//     Only Forget, on a user's request, removes it;
//   - max_total_bytes M (with the rules applied first) then forgets the
//     oldest kept snapshots of all sources, one after another, never the
//     newest of a source, until the bytes the kept snapshots reference fit
//     in M. When they cannot fit even with only the newest of each source
//     left, the plan forgets every snapshot that frees bytes, down to those
//     newest ones, and Plan.Unmet says so and what remains.
//
// Each forgotten snapshot carries its reason: "beyond keep_last 3",
// "older than keep_within 720h", both joined by "and", or
// "over max_total_bytes …: frees …".
//
// # Sizes: shared blobs count once
//
// A repository's size under a set of snapshots is the stored size of the
// union of the blobs they reference. A blob is freed only when no kept
// snapshot references it, so forgetting a snapshot whose blobs a kept one
// shares frees nothing. Usage holds which blobs each snapshot references
// as a graph (snapshot → root tree → subtrees → content), so that
// thousands of snapshots sharing most blobs cost memory in proportion to
// the distinct blobs and tree edges, not snapshots × blobs; a flat form
// (every blob used directly, as engine.Used yields them) fills the same
// graph.
//
// Forgetting proceeds in a drop order (the snapshots the keep rules
// forget, oldest first, then the size candidates, oldest first). For each
// blob the last snapshot in that order that references it decides when it
// is freed (never, when a snapshot that stays references it). One walk of
// the graph, from the snapshot latest in the order down, gives that for
// every blob: the first walk to reach a blob is the latest one, and no
// blob or edge is visited twice. So every drop's bytes freed (given the
// drops before it), and the smallest prefix of size candidates that fits
// max_total_bytes, come from a single linear pass, without recomputing
// unions snapshot by snapshot. Forgotten.Frees is that per-drop figure;
// Plan.BytesFreed their sum. A blob used but never given a size counts 0;
// blobs no snapshot references (left by a crash) are Prune's to find and
// are not counted here.
//
// # Chains and re-basing
//
// Every snapshot is logically full (its tree lists the whole source), so
// forgetting any snapshot breaks no other; a chain (kind, parent, chain =
// id of the snapshot that starts it) is bookkeeping, kept true by
// re-basing the kept snapshots that named a forgotten one:
//
//   - parent: the nearest ancestor (following parents) that is kept, or
//     "" when none is: with parents F ← I1 ← I2 and I1 forgotten, I2's
//     parent becomes F; with F forgotten too, "";
//   - chain: when the snapshot starting a chain is forgotten, the oldest
//     kept member of the chain starts it, and every kept member's chain
//     becomes that member's id. Its kind does not change: an incremental
//     that starts a chain stays "incremental" (it was made by skipping
//     unchanged files, which is what the kind records), and its parent is
//     "" (the forgotten start's parent) or, in a damaged chain, the
//     nearest kept ancestor.
//
// Forget plans the forgetting of one snapshot (DELETE
// /v1/backups/snapshots/{id}) with the same re-basing; the newest of a
// source may be forgotten this way.
package retention
