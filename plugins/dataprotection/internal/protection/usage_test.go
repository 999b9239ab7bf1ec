package protection

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/engine"
	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
	"github.com/datawarehouse/dw/plugins/dataprotection/internal/retention"
)

// TestUsageCountsSharedBlobsOnce: the graph Usage gives the same sizes as
// counting every blob engine.Used yields, and a snapshot whose data the
// newer one shares frees only what is its own.
func TestUsageCountsSharedBlobsOnce(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	write := func(name string, n int) {
		b := make([]byte, n)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("d/x", 3<<20)
	r, err := repo.Open(filepath.Join(base, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a, err := engine.Backup(ctx, r, src, repo.Snapshot{ID: "a", Source: "s", Kind: "full", Chain: "a"}, nil, nil, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	write("y", 2<<20)
	b, err := engine.Backup(ctx, r, src, repo.Snapshot{ID: "b", Source: "s", Kind: "incremental", Parent: "a", Chain: "a"}, &a, nil, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{repo: r}
	snaps := []repo.Snapshot{a, b}
	u, err := s.usage(ctx, snaps)
	if err != nil {
		t.Fatal(err)
	}
	var flat int64
	seen := map[repo.ID]bool{}
	if err := engine.Used(ctx, r, snaps, func(id repo.ID) bool {
		if !seen[id] {
			seen[id] = true
			info, _ := r.Locate(id)
			flat += info.Length
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	plan, err := retention.Decide(retentionSnapshots(snaps), retention.Policy{MaxTotalBytes: 1}, time.Now(), u)
	if err != nil {
		t.Fatal(err)
	}
	if plan.BytesBefore != flat {
		t.Fatalf("repository bytes by the graph %d, by every used blob %d", plan.BytesBefore, flat)
	}
	if len(plan.Forget) != 1 || plan.Forget[0].ID != "a" {
		t.Fatalf("plan forgets %+v, want a (b is the newest)", plan.Forget)
	}
	// a's data (d/x) is b's too: forgetting a frees only a's own trees.
	if frees := plan.Forget[0].Frees; frees <= 0 || frees > 64<<10 {
		t.Fatalf("forgetting a frees %d bytes, want only its trees (x is shared)", frees)
	}
}
