package protection

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/concurrency"
	"github.com/datawarehouse/dw/plugins/dataprotection/internal/engine"
	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// Version is the plugin's own version, reported in GetInfo.
const Version = "0.1.0"

// Service is the dataprotection subsystem.
type Service struct {
	dwv1.UnimplementedBackupServer

	logger hclog.Logger
	limits atomic.Pointer[Limits]

	mu         sync.Mutex // Configure, ApplyLimits, Shutdown
	configured atomic.Bool
	shutdown   bool
	settings   resolved
	repo       *repo.Repo
	jobs       *jobs
	ctrl       *concurrency.Controller
	limiter    *concurrency.Limiter
	watch      concurrency.Watch

	// repoLock keeps pruning away from running backups: a backup's new
	// blobs belong to no snapshot until it completes, so a prune in
	// between would take them. Backups hold it shared, pruning
	// exclusively.
	repoLock sync.RWMutex

	bytesDone     atomic.Int64 // bytes processed by all jobs, for the controller
	retentionKick chan struct{}
	loopsCancel   context.CancelFunc
	loops         sync.WaitGroup
	lastRetention atomic.Pointer[retentionRun]

	stats stats
}

// retentionRun is the outcome of the last background retention.
type retentionRun struct {
	at        time.Time
	forgotten int
	freed     int64
	err       error
}

// stats are counters for the metrics.
type stats struct {
	retentionRuns, retentionErrors atomic.Uint64
	snapshotsForgotten             atomic.Uint64
	bytesFreed                     atomic.Int64
	resumed, restarted, warnings   atomic.Uint64
	verifyRuns, verifyProblems     atomic.Uint64
}

var (
	_ sdk.Subsystem[Limits] = (*Service)(nil)
	_ sdk.GRPCRegistrar     = (*Service)(nil)
	_ sdk.Shutdowner        = (*Service)(nil)
	_ dwv1.BackupServer     = (*Service)(nil)
)

// New returns an unconfigured Service.
func New() *Service {
	s := &Service{logger: hclog.NewNullLogger(), retentionKick: make(chan struct{}, 1)}
	l := DefaultLimits()
	s.limits.Store(&l)
	return s
}

// Info says who the plugin is.
func (s *Service) Info() sdk.Info {
	return sdk.Info{Name: "dataprotection", Version: Version, Capabilities: []string{"backup", "restore", "incremental", "retention"}}
}

// DefaultLimits returns DESIGN.md's limits.
func (s *Service) DefaultLimits() Limits { return DefaultLimits() }

// RegisterGRPC serves the Backup service on the plugin's connection.
func (s *Service) RegisterGRPC(g *grpc.Server) { dwv1.RegisterBackupServer(g, s) }

// concurrencyLimits converts the limits for package concurrency.
func (l Limits) concurrencyLimits() concurrency.Limits {
	return concurrency.Limits{
		MaxConcurrentOperations: l.MaxConcurrentOperations,
		UtilizationLow:          l.UtilizationLow,
		UtilizationHigh:         l.UtilizationHigh,
		EMAAlpha:                l.EMAAlpha,
		AdjustInterval:          l.AdjustInterval,
	}
}

// Configure opens the repository, finds the disks to watch, resumes the
// jobs a crash interrupted and starts the controller and retention loops.
func (s *Service) Configure(ctx context.Context, cfg sdk.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.configured.Load() {
		return fmt.Errorf("configure: %w: already configured", sdk.ErrFailedPrecondition)
	}
	if cfg.Logger != nil {
		s.logger = cfg.Logger
	}
	if cfg.KV == nil {
		return fmt.Errorf("configure: %w: the host KV store is needed for job state and was not offered", sdk.ErrFailedPrecondition)
	}
	settings, err := parseSettings(cfg)
	if err != nil {
		return err
	}
	for _, dir := range []string{settings.repository, settings.restoreRoot} {
		if err := os.MkdirAll(dir, folderMode); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	r, err := repo.OpenWith(settings.repository, repo.Options{Logger: s.logger.Named("repository")})
	if err != nil {
		return fmt.Errorf("open repository %s: %w", settings.repository, err)
	}
	folders := []string{settings.repository}
	for _, src := range settings.sources {
		folders = append(folders, src)
	}
	watch := concurrency.WatchFolders(concurrency.SysRoot, folders)
	l := *s.limits.Load()
	limiter := concurrency.NewLimiter(1)
	ctrl := concurrency.NewController(l.concurrencyLimits(), concurrency.Options{Disks: len(watch.Disks), OnLimit: limiter.SetLimit})
	limiter.SetLimit(ctrl.Limit())
	s.settings, s.repo, s.watch, s.ctrl, s.limiter = settings, r, watch, ctrl, limiter
	s.jobs = newJobs(cfg.KV, s.logger, limiter, s.runJob, s.jobDone)
	resume, err := s.jobs.load(ctx)
	if err != nil {
		r.Close()
		return fmt.Errorf("load jobs: %w", err)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	s.loopsCancel = cancel
	s.loops.Add(2)
	go func() {
		defer s.loops.Done()
		ctrl.Run(loopCtx, concurrency.Inputs{Sampler: concurrency.NewSampler("", watch.Disks), Jobs: limiter, Bytes: s.bytesDone.Load})
	}()
	go func() {
		defer s.loops.Done()
		s.retentionLoop(loopCtx)
	}()
	for _, rec := range resume {
		rec.Resumed++
		s.stats.resumed.Add(1)
		s.logger.Warn("resuming a job a crash interrupted", "job", rec.ID, "kind", rec.Kind, "state", rec.State, "checkpoint_bytes", len(rec.Checkpoint))
		s.jobs.start(rec)
	}
	if err := watch.Err(); err != nil {
		s.logger.Warn("utilisation is read from every physical disk", "error", err, "notes", watch.Notes)
	}
	s.logger.Info("dataprotection ready", "repository", settings.repository, "sources", len(settings.sources),
		"disks", watch.Disks, "notes", watch.Notes, "resumed_jobs", len(resume))
	s.configured.Store(true)
	return nil
}

// ApplyLimits applies the limits live. The SDK decodes every limits
// update before it gets here (field rules, then Limits.Validate, the one
// check of dataprotection's limits), so l is valid.
func (s *Service) ApplyLimits(ctx context.Context, l Limits) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.limits.Swap(&l)
	if !s.configured.Load() || s.shutdown {
		return nil
	}
	s.ctrl.SetLimits(l.concurrencyLimits())
	if old.Retention != l.Retention || old.RetentionInterval != l.RetentionInterval {
		s.kickRetention()
	}
	return nil
}

// Shutdown stops the loops and the jobs (running jobs stay recorded as
// running and resume at the next start) and closes the repository.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return nil
	}
	s.shutdown = true
	if !s.configured.Load() {
		return nil
	}
	s.loopsCancel()
	s.jobs.close()
	s.loops.Wait()
	return s.repo.Close()
}

// latest returns the newest complete snapshot of source, or nil.
func (s *Service) latest(source string) (*repo.Snapshot, error) {
	snaps, err := s.repo.Snapshots()
	if err != nil {
		return nil, err
	}
	var best *repo.Snapshot
	for i := range snaps {
		if snaps[i].Source == source && (best == nil || snaps[i].CompletedAt.After(best.CompletedAt)) {
			best = &snaps[i]
		}
	}
	return best, nil
}

// runJob is the jobs' runFunc: one attempt of a backup or a restore.
func (s *Service) runJob(ctx context.Context, rec jobRecord, report func(progress), checkpoint func([]byte) error) (string, error) {
	var last int64
	prev := rec.Progress // of the attempt before a crash
	onProgress := func(p engine.Progress) {
		if !p.TotalsKnown && prev.BytesTotal > 0 {
			// A resumed backup reports before its pre-walk has counted
			// the source again: keep the totals the last attempt knew.
			p.FilesTotal, p.BytesTotal = prev.FilesTotal, prev.BytesTotal
		}
		if d := p.BytesDone - last; d > 0 {
			s.bytesDone.Add(d)
		}
		last = p.BytesDone
		report(progress{FilesDone: p.FilesDone, FilesTotal: p.FilesTotal, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal, BytesRead: p.BytesRead})
	}
	switch rec.Kind {
	case kindBackup:
		return s.runBackup(ctx, rec, onProgress, checkpoint)
	case kindRestore:
		return rec.Snapshot, s.runRestore(ctx, rec, onProgress)
	}
	return "", fmt.Errorf("job %s: unknown kind %q", rec.ID, rec.Kind)
}

// runBackup backs a source up, resuming from the record's checkpoint.
func (s *Service) runBackup(ctx context.Context, rec jobRecord, onProgress func(engine.Progress), checkpoint func([]byte) error) (string, error) {
	src, ok := s.settings.sources[rec.Source]
	if !ok {
		return "", fmt.Errorf("backup: source %q is no longer configured: %w", rec.Source, sdk.ErrNotFound)
	}
	s.repoLock.RLock()
	defer s.repoLock.RUnlock()
	// A crash after the snapshot's manifest was written and before the
	// job's final record was saved leaves a complete snapshot under a
	// running job: the job is done, and backing up again would make the
	// snapshot its own parent. Only a resumed job can be in that state.
	if rec.Resumed > 0 {
		if sn, err := s.repo.LoadSnapshot(rec.Snapshot); err == nil && sn.JobID == rec.ID {
			s.logger.Info("backup was complete before the restart", "job", rec.ID, "snapshot", sn.ID)
			return sn.ID, nil
		} else if err != nil && !errors.Is(err, repo.ErrNotFound) {
			return "", fmt.Errorf("backup: look for snapshot %s: %w", rec.Snapshot, err)
		}
	}
	var parent *repo.Snapshot
	if rec.BackupKind == "incremental" {
		var err error
		if parent, err = s.latest(rec.Source); err != nil {
			return "", fmt.Errorf("backup: find the parent snapshot: %w", err)
		}
	}
	meta := repo.Snapshot{ID: rec.Snapshot, Source: rec.Source, Path: src, Kind: "full", Chain: rec.Snapshot, JobID: rec.ID}
	if parent != nil {
		meta.Kind, meta.Parent = "incremental", parent.ID
		meta.Chain = parent.Chain
		if meta.Chain == "" {
			meta.Chain = parent.ID
		}
	}
	l := s.limits.Load()
	snap, err := engine.Backup(ctx, s.repo, src, meta, parent, rec.Checkpoint, engine.Options{
		OnProgress: onProgress, Checkpoint: checkpoint, CheckpointEvery: l.CheckpointInterval,
		OnWarning: func(w engine.Warning) { s.warn(rec, w) },
	})
	if err != nil {
		return "", fmt.Errorf("backup of %s: %w", rec.Source, err)
	}
	return snap.ID, nil
}

// runRestore restores a snapshot into its target under the restore root.
// A resumed restore starts again from an empty target: the target was
// made by this job (a restore never writes into a folder with content).
func (s *Service) runRestore(ctx context.Context, rec jobRecord, onProgress func(engine.Progress)) error {
	target, err := s.prepareTarget(rec)
	if err != nil {
		return err
	}
	defer target.Close()
	return engine.Restore(ctx, s.repo, rec.Snapshot, target, engine.Options{OnProgress: onProgress,
		OnWarning: func(w engine.Warning) { s.warn(rec, w) }})
}

// warn logs and counts an engine warning of a job.
func (s *Service) warn(rec jobRecord, w engine.Warning) {
	s.stats.warnings.Add(1)
	if w.Kind == engine.WarnResumeRestarted {
		s.stats.restarted.Add(1)
	}
	s.logger.Warn("job warning", "job", rec.ID, "kind", string(w.Kind), "path", w.Path, "reason", w.Reason)
}

// prepareTarget opens a restore target once, as an os.Root derived from
// the restore root's: engine.OpenTarget creates it and its parents through
// the restore root's os.Root, checks it is a folder and not a symlink, and
// opens it; the restore then writes through that Root only. StartRestore's
// check (restoreTarget) ran earlier, maybe before a crash: whatever was
// swapped into the path since (a symlink leading out) makes this fail or
// is not followed, and nothing lands outside restore_root. The caller
// closes the Root.
func (s *Service) prepareTarget(rec jobRecord) (*os.Root, error) {
	root, err := s.openRestoreRoot()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	rel := filepath.FromSlash(rec.Target)
	if rec.Resumed > 0 {
		if err := root.RemoveAll(rel); err != nil {
			return nil, fmt.Errorf("restore target %s: clear the interrupted restore: %w", rec.Target, err)
		}
	}
	target, err := engine.OpenTarget(root, rel)
	switch {
	case errors.Is(err, engine.ErrTargetNotEmpty):
		return nil, fmt.Errorf("open the restore target: %w: %v", sdk.ErrFailedPrecondition, err)
	case err != nil:
		return nil, fmt.Errorf("open the restore target: %w: %v (a restore target must be a folder inside restore_root)", sdk.ErrInvalidArgument, err)
	}
	return target, nil
}

// folderMode is the mode of the folders the plugin makes for itself: the
// repository and restore_root.
const folderMode = 0o700

// openRestoreRoot opens restore_root as an os.Root, making it again (with
// the mode Configure gives it) when it is missing: an operator who cleared
// the restores while the host ran by removing the folder itself gets a
// working restore, not an internal error. A restore_root that cannot be
// made or opened — a file in its place, a parent that is a file, no
// permission — is refused with sdk.ErrFailedPrecondition (HTTP 409) and
// a message that names restore_root and says what to do.
func (s *Service) openRestoreRoot() (*os.Root, error) {
	dir := s.settings.restoreRoot
	const fix = "remove what is in its place or point subsystems.dataprotection.settings.restore_root at a folder"
	if err := os.MkdirAll(dir, folderMode); err != nil {
		if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("restore_root %s: %w: it, or one of its parents, is not a folder; %s", dir, sdk.ErrFailedPrecondition, fix)
		}
		return nil, fmt.Errorf("restore_root %s: %w: cannot create it: %v; %s", dir, sdk.ErrFailedPrecondition, err, fix)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("restore_root %s: %w: cannot open it: %v; %s", dir, sdk.ErrFailedPrecondition, err, fix)
	}
	return root, nil
}

// readDirNames lists a folder under root ("" for a missing one).
func readDirNames(root *os.Root, name string) ([]string, error) {
	d, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(1)
}

// jobDone runs after every job: a finished backup (or one that failed and
// left unreferenced data) asks the retention loop to run.
func (s *Service) jobDone(rec jobRecord) {
	if rec.Kind == kindBackup {
		s.kickRetention()
	}
}

func (s *Service) kickRetention() {
	select {
	case s.retentionKick <- struct{}{}:
	default:
	}
}

// retentionLoop applies retention and prunes every retention_interval and
// after each backup, until ctx ends.
func (s *Service) retentionLoop(ctx context.Context) {
	for {
		interval := s.limits.Load().RetentionInterval
		timer := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-s.retentionKick:
			timer.Stop()
		}
		resp, err := s.applyRetention(ctx, false)
		run := &retentionRun{at: time.Now(), err: err}
		s.stats.retentionRuns.Add(1)
		if err != nil {
			s.stats.retentionErrors.Add(1)
			if ctx.Err() == nil {
				s.logger.Warn("retention", "error", err)
			}
		} else {
			run.forgotten, run.freed = len(resp.GetForget()), resp.GetBytesFreed()
			if run.forgotten > 0 || run.freed > 0 {
				s.logger.Info("retention applied", "forgotten", run.forgotten, "bytes_freed", run.freed,
					"packs_removed", resp.GetPacksRemoved(), "packs_rewritten", resp.GetPacksRewritten())
			}
		}
		s.lastRetention.Store(run)
	}
}
