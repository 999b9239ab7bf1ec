package protection

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/datawarehouse/dw/sdk/v6"
)

// jobKeyPrefix is where jobs live in the host KV store: one key per job,
// dw://internal/backup/<jobId>, rewritten at every state change and
// checkpoint.
const jobKeyPrefix = "dw://internal/backup/"

// maxFinishedJobs bounds the finished jobs kept (in memory and in the KV
// store); the oldest go first.
const maxFinishedJobs = 500

// Job kinds and states as stored (and shown).
const (
	kindBackup  = "backup"
	kindRestore = "restore"

	stateQueued    = "queued"
	stateRunning   = "running"
	stateSucceeded = "succeeded"
	stateFailed    = "failed"
	stateCancelled = "cancelled"
)

// progress is a job's progress as stored.
type progress struct {
	FilesDone  int64 `json:"files_done"`
	FilesTotal int64 `json:"files_total"`
	BytesDone  int64 `json:"bytes_done"`
	BytesTotal int64 `json:"bytes_total"`
	BytesRead  int64 `json:"bytes_read"`
}

// jobRecord is a job as the KV store keeps it: enough to show it and,
// for a job that was running when the plugin died, to resume it.
type jobRecord struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	State      string    `json:"state"`
	Source     string    `json:"source,omitempty"`
	BackupKind string    `json:"backup_kind,omitempty"` // as asked: full or incremental
	Snapshot   string    `json:"snapshot,omitempty"`    // backup: the id its snapshot gets; restore: the one restored
	Target     string    `json:"target,omitempty"`
	Progress   progress  `json:"progress"`
	Error      string    `json:"error,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// RunningFor is the running time of earlier attempts, so that the
	// rate spans the whole job.
	RunningFor time.Duration `json:"running_for,omitempty"`
	Resumed    int           `json:"resumed,omitempty"`
	// Checkpoint is the engine's resume state of a backup (opaque).
	Checkpoint []byte `json:"checkpoint,omitempty"`
}

func (r *jobRecord) finished() bool {
	return r.State == stateSucceeded || r.State == stateFailed || r.State == stateCancelled
}

// job is a record and, while it is queued or running, its control.
type job struct {
	rec    jobRecord // guarded by jobs.mu
	cancel context.CancelCauseFunc
	done   chan struct{}
	start  time.Time // of this attempt
}

// errShutdown is the cause of the cancellation of running jobs when the
// plugin stops: such jobs stay "running" in the KV store and resume at the
// next start.
var errShutdown = errors.New("plugin shutting down")

// errCancelled is the cause of a user's cancellation.
var errCancelled = errors.New("cancelled by request")

// runFunc runs one attempt of a job. It reports progress and, for a
// backup, checkpoints through the callbacks, and returns the snapshot id
// a backup made (or the restored one).
type runFunc func(ctx context.Context, rec jobRecord, report func(progress), checkpoint func([]byte) error) (string, error)

// limiter admits jobs to run (package concurrency's Limiter).
type limiter interface {
	Acquire(ctx context.Context, id string) (release func(), err error)
}

// jobs runs and remembers the jobs.
type jobs struct {
	kv      sdk.KV
	logger  hclog.Logger
	limit   limiter
	run     runFunc
	onDone  func(rec jobRecord) // after a job finishes (retention, cleanup); may be nil
	baseCtx context.Context
	stop    context.CancelCauseFunc

	mu   sync.Mutex
	byID map[string]*job
	wg   sync.WaitGroup
}

func newJobs(kv sdk.KV, logger hclog.Logger, limit limiter, run runFunc, onDone func(jobRecord)) *jobs {
	ctx, stop := context.WithCancelCause(context.Background())
	return &jobs{kv: kv, logger: logger, limit: limit, run: run, onDone: onDone, baseCtx: ctx, stop: stop, byID: map[string]*job{}}
}

// newJobID returns a random job id: 16 hex digits.
func newJobID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// save writes rec to the KV store.
func (js *jobs) save(ctx context.Context, rec jobRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", rec.ID, err)
	}
	if err := js.kv.Put(ctx, jobKeyPrefix+rec.ID, b); err != nil {
		return fmt.Errorf("save job %s: %w", rec.ID, err)
	}
	return nil
}

// submit records a new job and starts it.
func (js *jobs) submit(ctx context.Context, rec jobRecord) (jobRecord, error) {
	rec.State = stateQueued
	rec.CreatedAt = time.Now().UTC()
	if err := js.save(ctx, rec); err != nil {
		return rec, err
	}
	js.start(rec)
	js.trim(ctx)
	return rec, nil
}

// start runs a queued (new or resumed) job in its own goroutine, owned by
// js and ended by close.
func (js *jobs) start(rec jobRecord) {
	ctx, cancel := context.WithCancelCause(js.baseCtx)
	j := &job{rec: rec, cancel: cancel, done: make(chan struct{})}
	js.mu.Lock()
	js.byID[rec.ID] = j
	js.mu.Unlock()
	js.wg.Add(1)
	go func() {
		defer js.wg.Done()
		defer close(j.done)
		defer cancel(nil)
		js.attempt(ctx, j)
	}()
}

// attempt waits for the limiter, runs the job and records the outcome.
func (js *jobs) attempt(ctx context.Context, j *job) {
	release, err := js.limit.Acquire(ctx, j.rec.ID)
	if err == nil && ctx.Err() != nil {
		// Admitted and cancelled at once: a slot freed by a shutdown or a
		// cancellation must not start the job.
		release()
		err = context.Cause(ctx)
	}
	if err != nil {
		js.finish(ctx, j, "", err)
		return
	}
	defer release()
	js.mu.Lock()
	j.rec.State = stateRunning
	j.start = time.Now()
	if j.rec.StartedAt.IsZero() {
		j.rec.StartedAt = j.start.UTC()
	}
	rec := j.rec
	js.mu.Unlock()
	if err := js.save(context.WithoutCancel(ctx), rec); err != nil {
		js.logger.Warn("save job state", "job", rec.ID, "error", err)
	}
	report := func(p progress) {
		js.mu.Lock()
		j.rec.Progress = p
		js.mu.Unlock()
	}
	checkpoint := func(cp []byte) error {
		js.mu.Lock()
		j.rec.Checkpoint = append([]byte(nil), cp...)
		j.rec.RunningFor += time.Since(j.start)
		j.start = time.Now()
		rec := j.rec
		js.mu.Unlock()
		return js.save(context.WithoutCancel(ctx), rec)
	}
	snap, err := js.run(ctx, rec, report, checkpoint)
	js.finish(ctx, j, snap, err)
}

// finish records a job's end. A job stopped because the plugin shuts down
// is left as it is in the KV store (queued or running), so that the next
// start resumes it.
func (js *jobs) finish(ctx context.Context, j *job, snapshot string, err error) {
	if errors.Is(context.Cause(ctx), errShutdown) {
		return
	}
	// The final record is stored before it is shown: whoever sees the job
	// finished (the API, onDone) can rely on a restart not running it
	// again.
	js.mu.Lock()
	rec := j.rec
	if !j.start.IsZero() {
		rec.RunningFor += time.Since(j.start)
	}
	js.mu.Unlock()
	rec.FinishedAt = time.Now().UTC()
	rec.Checkpoint = nil
	switch {
	case err == nil:
		rec.State = stateSucceeded
		if snapshot != "" {
			rec.Snapshot = snapshot
		}
	case errors.Is(context.Cause(ctx), errCancelled):
		rec.State, rec.Error = stateCancelled, "cancelled"
	default:
		rec.State, rec.Error = stateFailed, err.Error()
	}
	if serr := js.save(context.WithoutCancel(ctx), rec); serr != nil {
		js.logger.Error("save finished job", "job", rec.ID, "error", serr)
	}
	js.mu.Lock()
	j.rec = rec
	js.mu.Unlock()
	level := hclog.Info
	if rec.State == stateFailed {
		level = hclog.Warn
	}
	js.logger.Log(level, "job finished", "job", rec.ID, "kind", rec.Kind, "state", rec.State, "snapshot", rec.Snapshot, "error", rec.Error)
	if js.onDone != nil {
		js.onDone(rec)
	}
}

// get returns a job's record.
func (js *jobs) get(id string) (jobRecord, error) {
	js.mu.Lock()
	defer js.mu.Unlock()
	j, ok := js.byID[id]
	if !ok {
		return jobRecord{}, fmt.Errorf("job %q: %w", id, sdk.ErrNotFound)
	}
	return j.rec, nil
}

// running reports how long the current attempt of a job has run.
func (js *jobs) runningFor(id string) time.Duration {
	js.mu.Lock()
	defer js.mu.Unlock()
	j, ok := js.byID[id]
	if !ok {
		return 0
	}
	d := j.rec.RunningFor
	if j.rec.State == stateRunning && !j.start.IsZero() {
		d += time.Since(j.start)
	}
	return d
}

// list returns every job, newest first.
func (js *jobs) list() []jobRecord {
	js.mu.Lock()
	out := make([]jobRecord, 0, len(js.byID))
	for _, j := range js.byID {
		out = append(out, j.rec)
	}
	js.mu.Unlock()
	sort.Slice(out, func(a, b int) bool {
		if !out[a].CreatedAt.Equal(out[b].CreatedAt) {
			return out[a].CreatedAt.After(out[b].CreatedAt)
		}
		return out[a].ID > out[b].ID
	})
	return out
}

// cancel stops a queued or running job.
func (js *jobs) cancelJob(id string) (jobRecord, error) {
	js.mu.Lock()
	j, ok := js.byID[id]
	if !ok {
		js.mu.Unlock()
		return jobRecord{}, fmt.Errorf("cancel job %q: %w", id, sdk.ErrNotFound)
	}
	if j.rec.finished() {
		rec := j.rec
		js.mu.Unlock()
		return rec, fmt.Errorf("cancel job %q: it has %s already: %w", id, rec.State, sdk.ErrFailedPrecondition)
	}
	js.mu.Unlock()
	j.cancel(errCancelled)
	<-j.done
	return js.get(id)
}

// load reads every job from the KV store: finished ones are remembered,
// queued or running ones (the plugin or the host died under them) are
// returned to be resumed.
func (js *jobs) load(ctx context.Context) ([]jobRecord, error) {
	var resume []jobRecord
	err := js.kv.List(ctx, jobKeyPrefix, func(key string, value []byte) error {
		var rec jobRecord
		if err := json.Unmarshal(value, &rec); err != nil || rec.ID == "" || jobKeyPrefix+rec.ID != key {
			js.logger.Warn("unreadable job record; removing it", "key", key, "error", err)
			return js.kv.Delete(ctx, key)
		}
		if rec.finished() {
			js.mu.Lock()
			js.byID[rec.ID] = &job{rec: rec, done: closedChan}
			js.mu.Unlock()
			return nil
		}
		resume = append(resume, rec)
		return nil
	})
	sort.Slice(resume, func(a, b int) bool { return resume[a].CreatedAt.Before(resume[b].CreatedAt) })
	return resume, err
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// trim forgets the oldest finished jobs beyond maxFinishedJobs.
func (js *jobs) trim(ctx context.Context) {
	var finished []jobRecord
	js.mu.Lock()
	for _, j := range js.byID {
		if j.rec.finished() {
			finished = append(finished, j.rec)
		}
	}
	if len(finished) <= maxFinishedJobs {
		js.mu.Unlock()
		return
	}
	sort.Slice(finished, func(a, b int) bool { return finished[a].CreatedAt.Before(finished[b].CreatedAt) })
	drop := finished[:len(finished)-maxFinishedJobs]
	for _, r := range drop {
		delete(js.byID, r.ID)
	}
	js.mu.Unlock()
	for _, r := range drop {
		if err := js.kv.Delete(ctx, jobKeyPrefix+r.ID); err != nil {
			js.logger.Warn("forget old job", "job", r.ID, "error", err)
		}
	}
}

// counts returns how many jobs are queued and running.
func (js *jobs) counts() (queued, running int) {
	js.mu.Lock()
	defer js.mu.Unlock()
	for _, j := range js.byID {
		switch j.rec.State {
		case stateQueued:
			queued++
		case stateRunning:
			running++
		}
	}
	return queued, running
}

// close stops every job as for a shutdown (they resume at the next start)
// and waits for their goroutines.
func (js *jobs) close() {
	js.stop(errShutdown)
	js.wg.Wait()
}
