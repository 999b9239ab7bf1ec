package protection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/engine"
	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
	"github.com/datawarehouse/dw/plugins/dataprotection/internal/retention"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// retentionSnapshots converts for package retention.
func retentionSnapshots(snaps []repo.Snapshot) []retention.Snapshot {
	out := make([]retention.Snapshot, len(snaps))
	for i, sn := range snaps {
		out[i] = retention.Snapshot{ID: sn.ID, Source: sn.Source, Kind: sn.Kind, Parent: sn.Parent, Chain: sn.Chain, CompletedAt: sn.CompletedAt}
	}
	return out
}

// usage records which blobs each snapshot uses and their stored sizes, for
// size-bounded retention (shared blobs count once). It fills the Usage as
// a graph (snapshot → root tree → subtrees and content), loading each
// distinct tree once: snapshots share most of their trees, so walking each
// snapshot alone would load them again and again.
func (s *Service) usage(ctx context.Context, snaps []repo.Snapshot) (*retention.Usage, error) {
	u := retention.NewUsage()
	trees := map[repo.ID]bool{}
	data := map[repo.ID]bool{}
	var buf []byte
	var walk func(id repo.ID) error
	walk = func(id repo.ID) error {
		if trees[id] {
			return nil
		}
		trees[id] = true
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := s.repo.Load(repo.TreeBlob, id, buf)
		if err != nil {
			return err
		}
		buf = b
		t, err := repo.DecodeTree(b)
		if err != nil {
			return fmt.Errorf("tree %s: %w", id, err)
		}
		var children []retention.BlobID
		var subtrees []repo.ID
		for _, n := range t.Nodes {
			for _, c := range n.Content {
				children = append(children, retention.BlobID(c))
				data[c] = true
			}
			if n.Subtree != nil {
				children = append(children, retention.BlobID(*n.Subtree))
				subtrees = append(subtrees, *n.Subtree)
			}
		}
		info, _ := s.repo.Locate(id)
		u.Blob(retention.BlobID(id), info.Length, children)
		for _, st := range subtrees {
			if err := walk(st); err != nil {
				return err
			}
		}
		return nil
	}
	for _, sn := range snaps {
		u.Uses(sn.ID, retention.BlobID(sn.Tree))
		if err := walk(sn.Tree); err != nil {
			return nil, fmt.Errorf("blobs of snapshot %s: %w", sn.ID, err)
		}
	}
	// Data blobs last: a blob recorded twice keeps its first record, and
	// a tree's record (with its children) must win over a chunk that
	// happens to have the same bytes.
	for id := range data {
		info, _ := s.repo.Locate(id)
		u.Blob(retention.BlobID(id), info.Length, nil)
	}
	return u, nil
}

// applyPlan writes the re-based manifests, then removes the forgotten
// ones (in that order, so that a crash between leaves no snapshot naming a
// missing parent).
func (s *Service) applyPlan(plan retention.Plan) ([]string, error) {
	var rebased []string
	for _, rb := range plan.Rebase {
		sn, err := s.repo.LoadSnapshot(rb.ID)
		if err != nil {
			return rebased, fmt.Errorf("re-base snapshot %s: %w", rb.ID, err)
		}
		sn.Parent, sn.Chain = rb.NewParent, rb.NewChain
		if err := s.repo.SaveSnapshot(&sn); err != nil {
			return rebased, fmt.Errorf("re-base snapshot %s: %w", rb.ID, err)
		}
		rebased = append(rebased, rb.ID)
	}
	for _, f := range plan.Forget {
		if err := s.repo.RemoveSnapshot(f.ID); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return rebased, fmt.Errorf("forget snapshot %s: %w", f.ID, err)
		}
		s.stats.snapshotsForgotten.Add(1)
	}
	return rebased, nil
}

// usedBlobs enumerates what must survive a prune: every blob of the
// snapshots kept and every blob an interrupted backup's checkpoint names
// (so that it can still resume).
func (s *Service) usedBlobs(ctx context.Context, keep []repo.Snapshot) func(yield func(repo.ID) bool) error {
	return func(yield func(repo.ID) bool) error {
		if err := engine.Used(ctx, s.repo, keep, yield); err != nil {
			return err
		}
		for _, rec := range s.jobs.list() {
			if rec.Kind != kindBackup || rec.finished() || len(rec.Checkpoint) == 0 {
				continue
			}
			if err := engine.UsedByCheckpoint(ctx, s.repo, rec.Checkpoint, yield); err != nil {
				s.logger.Warn("blobs of an interrupted backup's checkpoint; it will restart if they go", "job", rec.ID, "error", err)
			}
		}
		return nil
	}
}

// applyRetention decides what the policy forgets, and (unless dryRun)
// re-bases, forgets and prunes. It waits for running backups to finish
// (see repoLock); a dry run only reads.
func (s *Service) applyRetention(ctx context.Context, dryRun bool) (*dwv1.PruneResponse, error) {
	if dryRun {
		s.repoLock.RLock()
		defer s.repoLock.RUnlock()
	} else {
		s.repoLock.Lock()
		defer s.repoLock.Unlock()
	}
	snaps, err := s.repo.Snapshots()
	if err != nil {
		return nil, fmt.Errorf("retention: list snapshots: %w", err)
	}
	l := s.limits.Load().Retention
	policy := retention.Policy{KeepLast: l.KeepLast, KeepWithin: l.KeepWithin, MaxTotalBytes: int64(l.MaxTotalBytes)}
	var u *retention.Usage
	if policy.MaxTotalBytes > 0 {
		if u, err = s.usage(ctx, snaps); err != nil {
			return nil, fmt.Errorf("retention: %w", err)
		}
	}
	plan, err := retention.Decide(retentionSnapshots(snaps), policy, time.Now(), u)
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	resp := &dwv1.PruneResponse{DryRun: dryRun, Reasons: map[string]string{}}
	gone := map[string]bool{}
	for _, f := range plan.Forget {
		gone[f.ID] = true
		resp.Reasons[f.ID] = f.Reason
	}
	var keep []repo.Snapshot
	for _, sn := range snaps {
		if gone[sn.ID] {
			resp.Forget = append(resp.Forget, snapshotProto(sn))
		} else {
			keep = append(keep, sn)
		}
	}
	if !dryRun {
		if _, err := s.applyPlan(plan); err != nil {
			return nil, fmt.Errorf("retention: %w", err)
		}
	}
	report, err := s.repo.Prune(ctx, s.usedBlobs(ctx, keep), dryRun)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	resp.PacksRemoved, resp.PacksRewritten, resp.BytesFreed = int64(len(report.PacksRemoved)), int64(len(report.PacksRewritten)), report.BytesFreed
	if !dryRun {
		s.stats.bytesFreed.Add(report.BytesFreed)
	}
	return resp, nil
}

// Prune applies retention now, or says what it would do.
func (s *Service) Prune(ctx context.Context, req *dwv1.PruneRequest) (*dwv1.PruneResponse, error) {
	resp, err := s.applyRetention(ctx, req.GetDryRun())
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// ForgetSnapshot forgets one snapshot, re-basing the snapshots that named
// it as parent or chain start; its data goes at the next prune.
func (s *Service) ForgetSnapshot(ctx context.Context, req *dwv1.ForgetSnapshotRequest) (*dwv1.ForgetSnapshotResponse, error) {
	if err := sdk.ValidateID("snapshot id", req.GetId()); err != nil {
		return nil, err
	}
	s.repoLock.Lock()
	defer s.repoLock.Unlock()
	snaps, err := s.repo.Snapshots()
	if err != nil {
		return nil, fmt.Errorf("forget snapshot %s: %w", req.GetId(), err)
	}
	plan, err := retention.Forget(retentionSnapshots(snaps), req.GetId(), nil)
	if err != nil {
		return nil, fmt.Errorf("forget snapshot %s: %w", req.GetId(), err)
	}
	rebased, err := s.applyPlan(plan)
	if err != nil {
		return nil, err
	}
	s.kickRetention()
	return &dwv1.ForgetSnapshotResponse{Rebased: rebased}, nil
}

// Verify checks every pack file and every snapshot, reading each pack
// once (engine.Verify: repo.VerifyPacks reads the packs, decompressing
// and hashing every blob, then the snapshots' trees are walked). Each
// problem is one line, reported once: a damaged blob a snapshot uses by
// the path of the file or folder that uses it, a problem of a pack file
// (size, trailer, index file) or a damaged blob no snapshot uses by pack.
// The response lists the first 1000 lines; verify_problems_total counts
// them all.
func (s *Service) Verify(ctx context.Context, _ *dwv1.VerifyRequest) (*dwv1.VerifyResponse, error) {
	s.repoLock.RLock()
	defer s.repoLock.RUnlock()
	resp := &dwv1.VerifyResponse{}
	const maxProblems = 1000
	report, err := engine.Verify(ctx, s.repo, func(problem string) {
		if len(resp.Problems) < maxProblems {
			resp.Problems = append(resp.Problems, problem)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	s.stats.verifyRuns.Add(1)
	s.stats.verifyProblems.Add(uint64(report.Problems))
	resp.Snapshots, resp.BlobsChecked, resp.BytesChecked = report.Snapshots, report.Trees+report.DataBlobs, report.DataBytes
	if report.Problems > int64(len(resp.Problems)) {
		resp.Problems = append(resp.Problems, fmt.Sprintf("and %d more problems", report.Problems-int64(len(resp.Problems))))
	}
	return resp, nil
}
