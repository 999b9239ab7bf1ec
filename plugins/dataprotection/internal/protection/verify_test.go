package protection

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/engine"
	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
	dwv1 "github.com/datawarehouse/dw/sdk/proto/dw/v1"
)

// TestVerifyChecksPacks: a pack whose trailer is damaged while every blob
// is intact passes engine.Verify (each blob loads), but not Verify, which
// also checks the packs as files.
func TestVerifyChecksPacks(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte(strings.Repeat("some data\n", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(filepath.Join(base, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := engine.Backup(ctx, r, src, repo.Snapshot{ID: "a", Source: "s", Kind: "full", Chain: "a"}, nil, nil, engine.Options{}); err != nil {
		t.Fatal(err)
	}
	s := &Service{repo: r}
	s.configured.Store(true)
	verify := func() *dwv1.VerifyResponse {
		t.Helper()
		resp, err := s.Verify(ctx, &dwv1.VerifyRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := verify(); len(resp.Problems) != 0 || resp.Snapshots != 1 {
		t.Fatalf("verify of a sound repository: %+v", resp)
	}

	packs, _ := filepath.Glob(filepath.Join(base, "repo", "packs", "*", "*"))
	if len(packs) != 1 {
		t.Fatalf("pack files %q, want one", packs)
	}
	b, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-20] ^= 0xff // in the trailer's table, before the 16-byte footer
	if err := os.WriteFile(packs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := engine.Verify(ctx, r, nil); err != nil || rep.Problems != 0 {
		t.Fatalf("engine.Verify = %+v, %v; want no problem (the blobs are intact)", rep, err)
	}
	resp := verify()
	pack := filepath.Base(packs[0])
	if len(resp.Problems) == 0 {
		t.Fatal("verify found nothing wrong with a damaged trailer")
	}
	t.Logf("problems: %q", resp.Problems)
	for _, p := range resp.Problems {
		if !strings.Contains(p, pack) || strings.Contains(p, "\n") {
			t.Errorf("problem %q: want one line naming pack %s", p, pack)
		}
	}
	if got := s.stats.verifyProblems.Load(); got != uint64(len(resp.Problems)) {
		t.Errorf("verify_problems_total %d, want %d", got, len(resp.Problems))
	}
}
