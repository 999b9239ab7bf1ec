package repo

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

func TestSnapshots(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{})
	_, tree, err := EncodeTree(&Tree{})
	if err != nil {
		t.Fatal(err)
	}
	treeBytes, _, _ := EncodeTree(&Tree{})
	w := r.NewWriter()
	if _, err := w.Add(TreeBlob, tree, treeBytes); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	snap := func(id string, completed time.Time) *Snapshot {
		return &Snapshot{ID: id, Source: "files", Path: "/data/files", Kind: "full", Chain: id,
			StartedAt: completed.Add(-time.Minute), CompletedAt: completed, Tree: tree, Files: 3, Bytes: 100}
	}
	if err := r.SaveSnapshot(snap("cccc", base)); err == nil || !errors.Is(err, ErrNotFound) {
		t.Fatalf("save before the tree is flushed: %v, want an error (tree not durable)", err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Snapshot{snap("cccc", base.Add(time.Hour)), snap("bbbb", base), snap("aaaa", base)} {
		if err := r.SaveSnapshot(s); err != nil {
			t.Fatal(err)
		}
	}
	list, err := r.Snapshots()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	if want := []string{"aaaa", "bbbb", "cccc"}; !slices.Equal(ids, want) {
		t.Fatalf("snapshots %v, want %v (by completed_at, then id)", ids, want)
	}
	got, err := r.LoadSnapshot("cccc")
	if err != nil {
		t.Fatal(err)
	}
	if want := snap("cccc", base.Add(time.Hour)); got != *want {
		t.Errorf("loaded %+v, want %+v", got, *want)
	}

	// Replacing a manifest (re-basing) keeps one file.
	moved := snap("cccc", base.Add(time.Hour))
	moved.Parent, moved.Kind = "bbbb", "incremental"
	if err := r.SaveSnapshot(moved); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.LoadSnapshot("cccc"); got.Parent != "bbbb" {
		t.Errorf("replaced manifest has parent %q", got.Parent)
	}

	if err := r.RemoveSnapshot("bbbb"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadSnapshot("bbbb"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("load removed snapshot: %v, want not found", err)
	}
	if err := r.RemoveSnapshot("bbbb"); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove twice: %v, want not found", err)
	}
	if list, _ := r.Snapshots(); len(list) != 2 {
		t.Errorf("%d snapshots after remove, want 2", len(list))
	}
	if n := len(files(t, filepath.Join(dir, tmpDir))); n != 0 {
		t.Errorf("%d temp files left by saves", n)
	}
}

func TestSnapshotsSkipUnreadable(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, Options{})
	treeBytes, tree, _ := EncodeTree(&Tree{})
	w := r.NewWriter()
	if _, err := w.Add(TreeBlob, tree, treeBytes); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := r.SaveSnapshot(&Snapshot{ID: "good", CompletedAt: now, Tree: tree}); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"garbage.json":    "{not json",
		"wrongid.json":    `{"id":"other","completed_at":"2026-01-01T00:00:00Z","tree":"` + tree.String() + `"}`,
		"incomplete.json": `{"id":"incomplete","tree":"` + tree.String() + `"}`,
	}
	for name, content := range bad {
		if err := os.WriteFile(filepath.Join(dir, snapshotsDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	skipped := map[string]error{}
	list, err := r.ScanSnapshots(func(name string, err error) { skipped[name] = err })
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != "good" {
		t.Errorf("listed %v, want only the good one", list)
	}
	for name := range bad {
		if err := skipped[name]; !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: skipped with %v, want ErrCorrupt", name, err)
		}
	}
	if list, err := r.Snapshots(); err != nil || len(list) != 1 {
		t.Errorf("Snapshots: %d, %v; want 1 and no error", len(list), err)
	}
}

func TestSnapshotValidation(t *testing.T) {
	r := openTest(t, t.TempDir(), Options{})
	treeBytes, tree, _ := EncodeTree(&Tree{})
	w := r.NewWriter()
	_, _ = w.Add(TreeBlob, tree, treeBytes)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tests := []struct {
		name string
		s    Snapshot
		want string
	}{
		{"no id", Snapshot{CompletedAt: now, Tree: tree}, "1 to 128"},
		{"path in id", Snapshot{ID: "../x", CompletedAt: now, Tree: tree}, `snapshot id "../x": invalid argument`},
		{"incomplete", Snapshot{ID: "abc", Tree: tree}, "completed_at"},
		{"unknown tree", Snapshot{ID: "abc", CompletedAt: now, Tree: Hash([]byte("nope"))}, "not in the index"},
	}
	for _, tc := range tests {
		if err := r.SaveSnapshot(&tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := r.LoadSnapshot("../../config"); !errors.Is(err, ErrNotFound) {
		t.Errorf("load with a path as id: %v, want not found", err)
	}
	if err := r.RemoveSnapshot("a/b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove with a path as id: %v, want not found", err)
	}
	if id := NewSnapshotID(); len(id) != 32 || validSnapshotID(id) != nil {
		t.Errorf("NewSnapshotID() = %q", id)
	}
}
