package protection

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// StartBackup starts a backup job.
func (s *Service) StartBackup(ctx context.Context, req *dwv1.StartBackupRequest) (*dwv1.Job, error) {
	if _, ok := s.settings.sources[req.GetSource()]; !ok {
		return nil, fmt.Errorf("start backup: source %.80q: %w: the sources are %s (subsystems.dataprotection.sources)",
			req.GetSource(), sdk.ErrNotFound, strings.Join(s.sourceNames(), ", "))
	}
	kind := req.GetKind()
	if kind != "full" && kind != "incremental" {
		return nil, fmt.Errorf("start backup: kind %.40q: %w: full or incremental", kind, sdk.ErrInvalidArgument)
	}
	rec, err := s.jobs.submit(ctx, jobRecord{ID: newJobID(), Kind: kindBackup, Source: req.GetSource(), BackupKind: kind, Snapshot: repo.NewSnapshotID()})
	if err != nil {
		return nil, fmt.Errorf("start backup: %w", err)
	}
	return s.jobProto(rec), nil
}

// StartRestore starts a restore job.
func (s *Service) StartRestore(ctx context.Context, req *dwv1.StartRestoreRequest) (*dwv1.Job, error) {
	if err := sdk.ValidateID("snapshot id", req.GetSnapshot()); err != nil {
		return nil, fmt.Errorf("start restore: %w", err)
	}
	if _, err := s.repo.LoadSnapshot(req.GetSnapshot()); err != nil {
		return nil, fmt.Errorf("start restore: snapshot %s: %w", req.GetSnapshot(), err)
	}
	target, err := s.restoreTarget(req.GetTarget())
	if err != nil {
		return nil, fmt.Errorf("start restore: %w", err)
	}
	rec, err := s.jobs.submit(ctx, jobRecord{ID: newJobID(), Kind: kindRestore, Snapshot: req.GetSnapshot(), Target: target})
	if err != nil {
		return nil, fmt.Errorf("start restore: %w", err)
	}
	return s.jobProto(rec), nil
}

// restoreTarget checks a restore target: a relative path inside the
// restore root, in the FileStore path form (no "..", no absolute path, no
// empty names), that does not exist yet or is an empty folder. It returns
// the cleaned relative path, which the job records. This check answers the
// request early; it guards nothing by itself, since the path may change
// before the job runs: the job opens the target again through the restore
// root's os.Root (prepareTarget) and writes through that Root only.
func (s *Service) restoreTarget(t string) (string, error) {
	if err := sdk.ValidateFilePath(t); err != nil {
		return "", fmt.Errorf("restore target: %w (a target is a path inside restore_root %s)", err, s.settings.restoreRoot)
	}
	root, err := s.openRestoreRoot()
	if err != nil {
		return "", err
	}
	defer root.Close()
	fi, err := root.Lstat(filepath.FromSlash(t))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return t, nil
	case err != nil && strings.Contains(err.Error(), "path escapes from parent"):
		return "", fmt.Errorf("restore target %s: %w: it resolves outside restore_root", t, sdk.ErrInvalidArgument)
	case err != nil:
		return "", fmt.Errorf("restore target %s: %w", t, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return "", fmt.Errorf("restore target %s: %w: it is a symlink; restore into a new folder", t, sdk.ErrInvalidArgument)
	case !fi.IsDir():
		return "", fmt.Errorf("restore target %s: %w: it exists and is not a folder; restore into a new folder", t, sdk.ErrFailedPrecondition)
	}
	if names, err := readDirNames(root, t); err == nil && len(names) > 0 {
		return "", fmt.Errorf("restore target %s: %w: it exists and is not empty; restore into a new folder", t, sdk.ErrFailedPrecondition)
	}
	return t, nil
}

// GetJob returns one job.
func (s *Service) GetJob(ctx context.Context, req *dwv1.GetJobRequest) (*dwv1.Job, error) {
	if err := sdk.ValidateID("job id", req.GetId()); err != nil {
		return nil, err
	}
	rec, err := s.jobs.get(req.GetId())
	if err != nil {
		return nil, err
	}
	return s.jobProto(rec), nil
}

// ListJobs returns the jobs, newest first.
func (s *Service) ListJobs(ctx context.Context, _ *dwv1.ListJobsRequest) (*dwv1.ListJobsResponse, error) {
	resp := &dwv1.ListJobsResponse{}
	for _, rec := range s.jobs.list() {
		resp.Jobs = append(resp.Jobs, s.jobProto(rec))
	}
	return resp, nil
}

// CancelJob cancels a queued or running job.
func (s *Service) CancelJob(ctx context.Context, req *dwv1.CancelJobRequest) (*dwv1.Job, error) {
	if err := sdk.ValidateID("job id", req.GetId()); err != nil {
		return nil, err
	}
	rec, err := s.jobs.cancelJob(req.GetId())
	if err != nil {
		return nil, err
	}
	return s.jobProto(rec), nil
}

// jobProto converts a job record, with its rate.
func (s *Service) jobProto(rec jobRecord) *dwv1.Job {
	j := &dwv1.Job{
		Id: rec.ID, Source: rec.Source, BackupKind: rec.BackupKind, Snapshot: rec.Snapshot, Target: rec.Target,
		Error: rec.Error, Resumed: int32(rec.Resumed), CreatedAt: ts(rec.CreatedAt), StartedAt: ts(rec.StartedAt), FinishedAt: ts(rec.FinishedAt),
	}
	if rec.Kind == kindBackup && rec.State != stateSucceeded {
		j.Snapshot = "" // the id is reserved, not a snapshot yet
	}
	switch rec.Kind {
	case kindBackup:
		j.Kind = dwv1.JobKind_JOB_KIND_BACKUP
	case kindRestore:
		j.Kind = dwv1.JobKind_JOB_KIND_RESTORE
	}
	j.State = map[string]dwv1.JobState{
		stateQueued: dwv1.JobState_JOB_STATE_QUEUED, stateRunning: dwv1.JobState_JOB_STATE_RUNNING,
		stateSucceeded: dwv1.JobState_JOB_STATE_SUCCEEDED, stateFailed: dwv1.JobState_JOB_STATE_FAILED,
		stateCancelled: dwv1.JobState_JOB_STATE_CANCELLED,
	}[rec.State]
	p := rec.Progress
	j.Progress = &dwv1.JobProgress{FilesDone: p.FilesDone, FilesTotal: p.FilesTotal, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal}
	switch {
	case rec.State == stateSucceeded:
		j.Progress.Percent = 100
	case p.BytesTotal > 0:
		j.Progress.Percent = min(100, 100*float64(p.BytesDone)/float64(p.BytesTotal))
	case p.FilesTotal > 0:
		j.Progress.Percent = min(100, 100*float64(p.FilesDone)/float64(p.FilesTotal))
	}
	if d := s.jobs.runningFor(rec.ID); d > 0 {
		j.Progress.BytesPerSecond = float64(p.BytesDone) / d.Seconds()
	}
	return j
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// snapshotProto converts a snapshot.
func snapshotProto(sn repo.Snapshot) *dwv1.Snapshot {
	return &dwv1.Snapshot{
		Id: sn.ID, Source: sn.Source, Kind: sn.Kind, Parent: sn.Parent, Chain: sn.Chain,
		StartedAt: ts(sn.StartedAt), CompletedAt: ts(sn.CompletedAt), Files: sn.Files, Dirs: sn.Dirs,
		Symlinks: sn.Symlinks, Bytes: sn.Bytes, AddedBytes: sn.AddedBytes, JobId: sn.JobID,
	}
}

// ListSnapshots returns the complete snapshots grouped by chain, chains in
// order of their start, snapshots oldest first.
func (s *Service) ListSnapshots(ctx context.Context, req *dwv1.ListSnapshotsRequest) (*dwv1.ListSnapshotsResponse, error) {
	snaps, err := s.repo.Snapshots()
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	resp := &dwv1.ListSnapshotsResponse{}
	byChain := map[string]*dwv1.Chain{}
	for _, sn := range snaps {
		if req.GetSource() != "" && sn.Source != req.GetSource() {
			continue
		}
		chain := sn.Chain
		if chain == "" {
			chain = sn.ID
		}
		c, ok := byChain[chain]
		if !ok {
			c = &dwv1.Chain{Id: chain, Source: sn.Source}
			byChain[chain] = c
			resp.Chains = append(resp.Chains, c)
		}
		c.Snapshots = append(c.Snapshots, snapshotProto(sn))
	}
	return resp, nil
}

// sourceNames lists the configured sources.
func (s *Service) sourceNames() []string {
	names := make([]string, 0, len(s.settings.sources))
	for n := range s.settings.sources {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
