package protection

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/engine"
	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
)

// TestBackupCompleteBeforeRestart: a crash after a backup's manifest and
// before its job's final record leaves the job running with a complete
// snapshot. Running the job again returns that snapshot, and makes no
// other (an incremental would otherwise take itself as its parent).
func TestBackupCompleteBeforeRestart(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(filepath.Join(base, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	if _, err := engine.Backup(t.Context(), r, src, repo.Snapshot{ID: "full1", Source: "s", Kind: "full", Chain: "full1", JobID: "job1"}, nil, nil, engine.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Backup(t.Context(), r, src, repo.Snapshot{ID: "inc1", Source: "s", Kind: "incremental", Parent: "full1", Chain: "full1", JobID: "job2"}, nil, nil, engine.Options{}); err != nil {
		t.Fatal(err)
	}
	s := &Service{repo: r, logger: hclog.NewNullLogger(), settings: resolved{sources: map[string]string{"s": src}}}
	l := DefaultLimits()
	s.limits.Store(&l)
	s.configured.Store(true)

	// job2's snapshot is complete: running job2 again is a no-op.
	before, err := r.LoadSnapshot("inc1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.runBackup(t.Context(), jobRecord{ID: "job2", Kind: kindBackup, Source: "s", BackupKind: "incremental", Snapshot: "inc1", Resumed: 1}, func(engine.Progress) {}, nil)
	if err != nil || got != "inc1" {
		t.Fatalf("re-run of a complete job: %q, %v; want inc1", got, err)
	}
	if snaps, _ := r.Snapshots(); len(snaps) != 2 {
		t.Fatalf("%d snapshots after the re-run, want 2", len(snaps))
	}
	if after, err := r.LoadSnapshot("inc1"); err != nil || after.Parent != "full1" || !after.CompletedAt.Equal(before.CompletedAt) {
		t.Fatalf("inc1 after the re-run: %+v, %v; want it untouched (parent full1, completed %v)", after, err, before.CompletedAt)
	}
	// A snapshot id of another job is not taken for done: a new backup.
	got, err = s.runBackup(t.Context(), jobRecord{ID: "job3", Kind: kindBackup, Source: "s", BackupKind: "incremental", Snapshot: "inc2", Resumed: 1}, func(engine.Progress) {}, nil)
	if err != nil || got != "inc2" {
		t.Fatalf("a new incremental: %q, %v", got, err)
	}
	sn, err := r.LoadSnapshot("inc2")
	if err != nil || sn.Parent != "inc1" || sn.JobID != "job3" {
		t.Errorf("the new incremental: %+v, %v; want parent inc1, job job3", sn, err)
	}
}
