package protection

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/plugins/dataprotection/internal/engine"
	"github.com/datawarehouse/dw/plugins/dataprotection/internal/repo"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// verifyService backs up one file f of content into a new repository
// and returns a Service over it and the repository folder.
func verifyService(t *testing.T, content []byte) (*Service, *repo.Repo, string) {
	t.Helper()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(filepath.Join(base, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	if _, err := engine.Backup(t.Context(), r, src, repo.Snapshot{ID: "a", Source: "s", Kind: "full", Chain: "a"}, nil, nil, engine.Options{}); err != nil {
		t.Fatal(err)
	}
	s := &Service{repo: r}
	s.configured.Store(true)
	return s, r, filepath.Join(base, "repo")
}

func mustVerify(t *testing.T, s *Service) *dwv1.VerifyResponse {
	t.Helper()
	resp, err := s.Verify(t.Context(), &dwv1.VerifyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestVerifyChecksPacks: a pack whose trailer is damaged while every blob
// is intact is reported by pack (every blob still loads, so no file is
// named), one line per problem.
func TestVerifyChecksPacks(t *testing.T) {
	s, _, dir := verifyService(t, []byte(strings.Repeat("some data\n", 1000)))
	if resp := mustVerify(t, s); len(resp.Problems) != 0 || resp.Snapshots != 1 || resp.BlobsChecked != 2 || resp.BytesChecked != 10000 {
		t.Fatalf("verify of a sound repository: %+v; want 1 snapshot, 2 blobs (tree and chunk), 10000 bytes", resp)
	}

	packs, _ := filepath.Glob(filepath.Join(dir, "packs", "*", "*"))
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
	resp := mustVerify(t, s)
	pack := filepath.Base(packs[0])
	if len(resp.Problems) == 0 {
		t.Fatal("verify found nothing wrong with a damaged trailer")
	}
	t.Logf("problems: %q", resp.Problems)
	for _, p := range resp.Problems {
		if !strings.Contains(p, pack) || strings.Contains(p, "\n") || strings.Contains(p, "snapshot a:") {
			t.Errorf("problem %q: want one line naming pack %s and no file", p, pack)
		}
	}
	if got := s.stats.verifyProblems.Load(); got != uint64(len(resp.Problems)) {
		t.Errorf("verify_problems_total %d, want %d", got, len(resp.Problems))
	}
}

// TestVerifyFlippedDataByte: one flipped byte in a data blob is one
// problem line, naming the file, the blob and its pack; the blob is not
// reported again by pack.
func TestVerifyFlippedDataByte(t *testing.T) {
	content := []byte(strings.Repeat("other data\n", 3000))
	s, r, _ := verifyService(t, content)
	chunk := repo.Hash(content) // below the minimum chunk size: one chunk
	info, ok := r.Locate(chunk)
	if !ok {
		t.Fatal("the file's chunk is not indexed")
	}
	path := filepath.Join(r.Dir(), "packs", info.Pack.String()[:2], info.Pack.String())
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	off := info.Offset + info.Length/2
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	resp := mustVerify(t, s)
	want := "snapshot a: /f: data blob " + chunk.String() + " damaged in pack " + info.Pack.String() + ": "
	if len(resp.Problems) != 1 || !strings.HasPrefix(resp.Problems[0], want) || !strings.Contains(resp.Problems[0], "corrupt") {
		t.Fatalf("problems %q; want exactly one, starting %q and saying corrupt", resp.Problems, want)
	}
	if resp.Snapshots != 1 || resp.BlobsChecked != 1 || resp.BytesChecked != 0 {
		t.Errorf("response %+v; want 1 snapshot, 1 blob (the tree) and 0 data bytes checked sound", resp)
	}
	if got := s.stats.verifyProblems.Load(); got != 1 {
		t.Errorf("verify_problems_total %d, want 1", got)
	}
}
