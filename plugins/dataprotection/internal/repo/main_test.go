package repo

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// lockHelperEnv makes the test binary, re-run by TestFlockOtherProcess,
// try to open the repository named by the variable and report the outcome
// in its exit code: 0 locked out, 1 opened, 2 other error.
const lockHelperEnv = "DW_REPO_LOCK_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(lockHelperEnv); dir != "" {
		os.Exit(lockHelper(dir))
	}
	goleak.VerifyTestMain(m)
}

func lockHelper(dir string) int {
	r, err := Open(dir)
	switch {
	case err == nil:
		_ = r.Close()
		return 1
	case errors.Is(err, ErrLocked):
		fmt.Println(err)
		return 0
	default:
		fmt.Println(err)
		return 2
	}
}

// openTest opens a repository closed at the end of the test.
func openTest(t testing.TB, dir string, opt Options) *Repo {
	t.Helper()
	r, err := OpenWith(dir, opt)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// randomBytes returns n incompressible bytes determined by seed.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	_, _ = rng.Read(b)
	return b
}

// compressibleBytes returns n bytes of repetitive text determined by seed.
func compressibleBytes(seed uint64, n int) []byte {
	line := fmt.Sprintf("line of a log file, seed %d, with some words that repeat a lot\n", seed)
	return []byte(strings.Repeat(line, n/len(line)+1)[:n])
}

// addFlush adds the blobs with one Writer and flushes.
func addFlush(t testing.TB, r *Repo, blobs ...[]byte) []ID {
	t.Helper()
	w := r.NewWriter()
	ids := make([]ID, len(blobs))
	for i, b := range blobs {
		ids[i] = Hash(b)
		if _, err := w.Add(DataBlob, ids[i], b); err != nil {
			t.Fatalf("add blob %d: %v", i, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return ids
}

// mustLoad loads id and compares it with want.
func mustLoad(t testing.TB, r *Repo, id ID, want []byte) {
	t.Helper()
	got, err := r.Load(DataBlob, id, nil)
	if err != nil {
		t.Fatalf("load %s: %v", id, err)
	}
	if string(got) != string(want) {
		t.Fatalf("load %s: got %d bytes that differ from the %d added", id, len(got), len(want))
	}
}

// files lists the regular files under dir (relative path -> size).
func files(t testing.TB, dir string) map[string]int64 {
	t.Helper()
	out := make(map[string]int64)
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// packFiles returns the paths of the pack files under dir.
func packFiles(t testing.TB, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, packsDir, "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return paths
}
