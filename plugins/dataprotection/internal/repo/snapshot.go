package repo

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

// Snapshot is the manifest of a complete backup: snapshots/<ID>.json.
type Snapshot struct {
	ID          string    `json:"id"`
	Source      string    `json:"source"`
	Path        string    `json:"path"`
	Kind        string    `json:"kind"`             // "full" or "incremental"
	Parent      string    `json:"parent,omitempty"` // snapshot this one was based on
	Chain       string    `json:"chain,omitempty"`  // id of the full that started the chain
	JobID       string    `json:"job_id,omitempty"`
	StartedAt   time.Time `json:"started_at"`
	CompletedAt time.Time `json:"completed_at"`
	Tree        ID        `json:"tree"` // root tree blob
	Files       int64     `json:"files"`
	Dirs        int64     `json:"dirs"`
	Symlinks    int64     `json:"symlinks"`
	Bytes       int64     `json:"bytes"`       // logical size of the files
	AddedBytes  int64     `json:"added_bytes"` // compressed bytes this backup stored
}

// NewSnapshotID returns 16 random bytes in hex, the form of snapshot IDs.
func NewSnapshotID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// validSnapshotID is sdk.ValidateID, dw's id rule: safe as a file name,
// and covering the hex IDs of NewSnapshotID.
func validSnapshotID(id string) error { return sdk.ValidateID("snapshot id", id) }

func (r *Repo) snapshotPath(id string) string {
	return filepath.Join(r.dir, snapshotsDir, id+".json")
}

// SaveSnapshot writes the manifest atomically (temp, fsync, rename, fsync
// folder), replacing one with the same ID (Forget re-basing a chain). It
// refuses a snapshot without ID or CompletedAt, or whose root tree is not
// durable in the index: Flush the Writer before saving.
func (r *Repo) SaveSnapshot(s *Snapshot) error {
	if err := r.enter(); err != nil {
		return err
	}
	defer r.life.RUnlock()
	if err := validSnapshotID(s.ID); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	if s.CompletedAt.IsZero() {
		return fmt.Errorf("save snapshot %s: completed_at is not set: only complete backups get a manifest", s.ID)
	}
	r.mu.RLock()
	_, ok := r.index.get(s.Tree)
	r.mu.RUnlock()
	if !ok {
		return fmt.Errorf("save snapshot %s: root tree %s is not in the index (flush the writer first): %w", s.ID, s.Tree, ErrNotFound)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("save snapshot %s: %w", s.ID, err)
	}
	if err := writeFileAtomic(filepath.Join(r.dir, tmpDir), r.snapshotPath(s.ID), append(b, '\n')); err != nil {
		return fmt.Errorf("save snapshot %s: %w", s.ID, err)
	}
	return nil
}

// Snapshots returns the complete snapshots sorted by CompletedAt, then
// ID. A manifest that cannot be read or decoded is skipped (and logged):
// one damaged file must not hide the others. ScanSnapshots reports them.
func (r *Repo) Snapshots() ([]Snapshot, error) {
	return r.ScanSnapshots(func(name string, err error) {
		r.log.Warn("skipped unreadable snapshot manifest", "repository", r.dir, "file", name, "error", err)
	})
}

// ScanSnapshots is Snapshots with the skipped manifests passed to
// skipped (file name, reason). It fails only if snapshots/ cannot be read.
func (r *Repo) ScanSnapshots(skipped func(name string, err error)) ([]Snapshot, error) {
	if err := r.enter(); err != nil {
		return nil, err
	}
	defer r.life.RUnlock()
	dir := filepath.Join(r.dir, snapshotsDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []Snapshot
	for _, e := range entries {
		name := e.Name()
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || !e.Type().IsRegular() || validSnapshotID(id) != nil {
			continue
		}
		s, err := r.readSnapshot(id)
		if err != nil {
			if skipped != nil {
				skipped(name, err)
			}
			continue
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Snapshot) int {
		return cmp.Or(a.CompletedAt.Compare(b.CompletedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// LoadSnapshot reads one manifest; a missing one is ErrNotFound.
func (r *Repo) LoadSnapshot(id string) (Snapshot, error) {
	if err := r.enter(); err != nil {
		return Snapshot{}, err
	}
	defer r.life.RUnlock()
	if err := validSnapshotID(id); err != nil {
		return Snapshot{}, fmt.Errorf("load snapshot: %w: %w", err, ErrNotFound)
	}
	return r.readSnapshot(id)
}

func (r *Repo) readSnapshot(id string) (Snapshot, error) {
	b, err := os.ReadFile(r.snapshotPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("read snapshot %s: %w", id, err)
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s: manifest is not valid JSON: %w: %w", id, err, ErrCorrupt)
	}
	if s.ID != id {
		return Snapshot{}, fmt.Errorf("snapshot %s: manifest names id %q: %w", id, s.ID, ErrCorrupt)
	}
	if s.CompletedAt.IsZero() || s.Tree.IsZero() {
		return Snapshot{}, fmt.Errorf("snapshot %s: manifest lacks completed_at or tree: %w", id, ErrCorrupt)
	}
	return s, nil
}

// RemoveSnapshot deletes a manifest (durably); a missing one is
// ErrNotFound. Its blobs stay until Prune.
func (r *Repo) RemoveSnapshot(id string) error {
	if err := r.enter(); err != nil {
		return err
	}
	defer r.life.RUnlock()
	if err := validSnapshotID(id); err != nil {
		return fmt.Errorf("remove snapshot: %w: %w", err, ErrNotFound)
	}
	path := r.snapshotPath(id)
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove snapshot %s: %w", id, ErrNotFound)
		}
		return fmt.Errorf("remove snapshot %s: %w", id, err)
	}
	return syncDir(filepath.Dir(path))
}
