package protection

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

// Metrics reports the concurrency controller (limit, utilisation raw and
// smoothed, decisions), the jobs, the repository and retention.
func (s *Service) Metrics(context.Context) (sdk.Metrics, error) {
	if !s.configured.Load() {
		return sdk.Metrics{}, nil
	}
	st := s.ctrl.State()
	running, queued := s.limiter.Stats()
	rs := s.repo.Stats()
	m := sdk.Metrics{}
	add := func(ms ...sdk.Metric) { m.Values = append(m.Values, ms...) }
	fixed := 0.0
	if st.Fixed {
		fixed = 1
	}
	add(
		sdk.Gauge("concurrency_limit", "Jobs allowed to run at once now.", float64(st.Limit)),
		sdk.Gauge("concurrency_limit_max", "The adaptive limit's upper bound (4 × disks).", float64(st.MaxLimit)),
		sdk.Gauge("concurrency_fixed", "1 when max_concurrent_operations fixes the limit.", fixed),
		sdk.Gauge("disks_watched", "Whole disks under the repository and the sources.", float64(st.Disks)),
		sdk.Gauge("utilization_raw", "The busiest watched disk's utilisation in the last interval (0–1).", st.Raw),
		sdk.Gauge("utilization_smoothed", "The utilisation's moving average (ema_alpha) the limit follows (0–1).", st.Smoothed),
		sdk.Counter("concurrency_decisions_total", "Controller decisions by kind.", float64(st.Counts.Raise), "decision", "raise"),
		sdk.Counter("concurrency_decisions_total", "Controller decisions by kind.", float64(st.Counts.Lower), "decision", "lower"),
		sdk.Counter("concurrency_decisions_total", "Controller decisions by kind.", float64(st.Counts.Hold), "decision", "hold"),
		sdk.Counter("concurrency_decisions_total", "Controller decisions by kind.", float64(st.Counts.Fixed), "decision", "fixed"),
		sdk.Gauge("jobs_running", "Jobs running now.", float64(running)),
		sdk.Gauge("jobs_queued", "Jobs waiting for the concurrency limit.", float64(queued)),
		sdk.Counter("jobs_resumed_total", "Jobs resumed after a crash.", float64(s.stats.resumed.Load())),
		sdk.Counter("jobs_restarted_total", "Resumed backups whose checkpoint could not be used, so they started again (stored chunks still reused).", float64(s.stats.restarted.Load())),
		sdk.Counter("job_warnings_total", "Warnings of jobs: files changed while read, entries skipped, checkpoints unusable.", float64(s.stats.warnings.Load())),
		sdk.Counter("job_bytes_total", "Bytes processed by jobs (read by backups, written by restores).", float64(s.bytesDone.Load())),
		sdk.Gauge("repository_packs", "Pack files in the repository.", float64(rs.Packs)),
		sdk.Gauge("repository_blobs", "Blobs in the repository.", float64(rs.Blobs)),
		sdk.Gauge("repository_stored_bytes", "Compressed bytes of the repository's blobs.", float64(rs.StoredBytes)),
		sdk.Gauge("repository_raw_bytes", "Plaintext bytes of the repository's blobs.", float64(rs.RawBytes)),
		sdk.Counter("retention_runs_total", "Retention runs (background, after backups and on demand).", float64(s.stats.retentionRuns.Load())),
		sdk.Counter("retention_errors_total", "Retention runs that failed.", float64(s.stats.retentionErrors.Load())),
		sdk.Counter("snapshots_forgotten_total", "Snapshots forgotten by retention or on request.", float64(s.stats.snapshotsForgotten.Load())),
		sdk.Counter("prune_bytes_freed_total", "Repository bytes freed by pruning.", float64(s.stats.bytesFreed.Load())),
		sdk.Counter("verify_runs_total", "Verifications run.", float64(s.stats.verifyRuns.Load())),
		sdk.Counter("verify_problems_total", "Problems verifications found.", float64(s.stats.verifyProblems.Load())),
	)
	if ds := s.ctrl.Decisions(); len(ds) > 0 {
		d := ds[len(ds)-1]
		add(sdk.Gauge("concurrency_last_decision_timestamp_seconds", "When the controller last decided, with what and why.",
			float64(d.At.UnixNano())/1e9, "decision", string(d.Kind), "reason", d.Reason))
	}
	switch {
	case queued > 0 && running >= st.Limit:
		m.Backpressure = sdk.BackpressureSaturated
		m.Reason = fmt.Sprintf("%d jobs queued behind the limit of %d", queued, st.Limit)
	case running >= st.Limit && st.Limit > 0:
		m.Backpressure = sdk.BackpressureElevated
		m.Reason = fmt.Sprintf("%d of %d job slots in use", running, st.Limit)
	}
	return m, nil
}

// Health reports the repository, the sources, the controller and the last
// retention run.
func (s *Service) Health(ctx context.Context) sdk.Health {
	if !s.configured.Load() {
		return sdk.Health{Status: sdk.HealthNotServing, Message: "not configured"}
	}
	now := time.Now()
	h := sdk.Health{Status: sdk.HealthServing, Message: "repository " + s.settings.repository}
	repoH := sdk.ComponentHealth{Name: "repository", Status: sdk.HealthServing, CheckedAt: now}
	if _, err := os.Stat(s.settings.repository); err != nil {
		repoH.Status, repoH.Message = sdk.HealthNotServing, err.Error()
		h.Status, h.Message = sdk.HealthNotServing, "the repository is not accessible"
	} else {
		rs := s.repo.Stats()
		repoH.Message = fmt.Sprintf("%s: %d packs, %d blobs, %d bytes stored", s.settings.repository, rs.Packs, rs.Blobs, rs.StoredBytes)
	}
	h.Components = append(h.Components, repoH)
	for _, name := range s.sourceNames() {
		c := sdk.ComponentHealth{Name: "source:" + name, Status: sdk.HealthServing, CheckedAt: now, Message: s.settings.sources[name]}
		if fi, err := os.Stat(s.settings.sources[name]); err != nil || !fi.IsDir() {
			c.Status = sdk.HealthDegraded
			c.Message = fmt.Sprintf("%s: not a readable folder (%v); backups of %s fail", s.settings.sources[name], err, name)
			if h.Status == sdk.HealthServing {
				h.Status, h.Message = sdk.HealthDegraded, "a source is missing"
			}
		}
		h.Components = append(h.Components, c)
	}
	st := s.ctrl.State()
	mode := "adaptive"
	if st.Fixed {
		mode = "fixed"
	}
	disks := strings.Join(s.watch.Disks, ", ")
	if disks == "" {
		disks = "none found (" + strings.Join(s.watch.Notes, "; ") + ")"
	}
	if err := s.watch.Err(); err != nil {
		disks += "; " + err.Error()
	}
	h.Components = append(h.Components, sdk.ComponentHealth{Name: "concurrency", Status: sdk.HealthServing, CheckedAt: now,
		Message: fmt.Sprintf("%s limit %d (max %d); disks %s; utilisation %.0f%% (smoothed %.0f%%)", mode, st.Limit, st.MaxLimit, disks, st.Raw*100, st.Smoothed*100)})
	if r := s.lastRetention.Load(); r != nil {
		c := sdk.ComponentHealth{Name: "retention", Status: sdk.HealthServing, CheckedAt: r.at,
			Message: fmt.Sprintf("last run forgot %d snapshots and freed %d bytes", r.forgotten, r.freed)}
		if r.err != nil {
			c.Status, c.Message = sdk.HealthDegraded, "last run failed: "+r.err.Error()
			if h.Status == sdk.HealthServing {
				h.Status, h.Message = sdk.HealthDegraded, "retention failed"
			}
		}
		h.Components = append(h.Components, c)
	}
	return h
}
