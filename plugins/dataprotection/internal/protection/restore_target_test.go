package protection

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/engine"
	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
	"github.com/datawarehouse/dw/sdk/v6"
)

// TestRestoreTargetSwappedAfterCheck: StartRestore's check (restoreTarget)
// passes, then a component of the target is swapped for a symlink leading
// outside restore_root before the job runs, or after the job opened the
// target. Nothing is written outside restore_root either way.
func TestRestoreTargetSwappedAfterCheck(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	if err := os.MkdirAll(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "d", "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(filepath.Join(base, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	snap, err := engine.Backup(context.Background(), r, src, repo.Snapshot{ID: repo.NewSnapshotID(), Source: "s", Kind: "full"}, nil, nil, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		swap    string // the component swapped for a symlink leading outside
		resumed int
		afterOp bool  // swapped after prepareTarget opened the target, else between the check and prepareTarget
		fails   bool  // the job fails
		errIs   error // and its error matches this, when set
	}{
		{name: "parent swapped before the job", swap: "a", fails: true, errIs: sdk.ErrInvalidArgument},
		{name: "parent swapped before a resumed job", swap: "a", resumed: 1, fails: true},
		{name: "target swapped before the job", swap: "a/t", fails: true, errIs: sdk.ErrFailedPrecondition},
		{name: "parent swapped after the open", swap: "a", afterOp: true},
		{name: "target swapped after the open", swap: "a/t", afterOp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			restoreRoot, outside := filepath.Join(dir, "restores"), filepath.Join(dir, "outside")
			for _, d := range []string{filepath.Join(restoreRoot, "a"), outside} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			s := New()
			s.settings.restoreRoot = restoreRoot
			rel, err := s.restoreTarget("a/t")
			if err != nil {
				t.Fatalf("check of a/t: %v", err)
			}
			rec := jobRecord{ID: "j", Kind: kindRestore, Snapshot: snap.ID, Target: rel, Resumed: tt.resumed}
			swap := func() {
				p := filepath.Join(restoreRoot, filepath.FromSlash(tt.swap))
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(p, p+".moved"); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(outside, p); err != nil {
					t.Fatal(err)
				}
			}
			if !tt.afterOp {
				swap()
			}
			target, err := s.prepareTarget(rec)
			if err == nil {
				if !tt.afterOp {
					swap = func() {}
				}
				swap()
				err = engine.Restore(context.Background(), r, snap.ID, target, engine.Options{})
				target.Close()
			}
			if entries, _ := os.ReadDir(outside); len(entries) > 0 {
				t.Fatalf("the restore wrote %s outside restore_root", entries[0].Name())
			}
			if tt.fails {
				if err == nil || (tt.errIs != nil && !errors.Is(err, tt.errIs)) {
					t.Fatalf("restore: %v; want it to fail (matching %v)", err, tt.errIs)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			opened := filepath.Join(restoreRoot, filepath.FromSlash(tt.swap)+".moved")
			if tt.swap == "a" {
				opened = filepath.Join(opened, "t")
			}
			if b, err := os.ReadFile(filepath.Join(opened, "d", "f")); err != nil || string(b) != "data" {
				t.Fatalf("restored d/f in the folder opened (%s): %q, %v", opened, b, err)
			}
		})
	}
}
