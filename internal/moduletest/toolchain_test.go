package moduletest

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestOldestGo builds and vets the SDK module and examples/kvcache with
// the oldest Go their go lines allow (go 1.24 → go1.24.0), which the go
// command fetches as a toolchain module: a plugin author on that Go must
// be able to build against the SDK, and a go line that claims less than
// the code or its dependencies need fails here.
func TestOldestGo(t *testing.T) {
	if testing.Short() {
		t.Skip("fetches and runs an older Go toolchain")
	}
	root := repoRoot(t)
	for _, rel := range []string{"sdk", "examples/kvcache"} {
		t.Run(rel, func(t *testing.T) {
			dir := filepath.Join(root, filepath.FromSlash(rel))
			mf := readModFile(t, dir)
			if mf.Go == nil {
				t.Fatalf("%s/go.mod has no go line", rel)
			}
			toolchain := "go" + mf.Go.Version
			if strings.Count(mf.Go.Version, ".") == 1 {
				toolchain += ".0" // "go 1.24" admits 1.24.0, the first release
			}
			env := []string{"GOTOOLCHAIN=" + toolchain, "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false"}
			if v := strings.TrimSpace(goCmd(t, dir, env, "env", "GOVERSION")); v != toolchain {
				t.Fatalf("GOTOOLCHAIN=%s go env GOVERSION = %q: the toolchain switch did not happen", toolchain, v)
			}
			goCmd(t, dir, env, "build", "./...")
			goCmd(t, dir, env, "vet", "./...")
			t.Logf("%s: go build and go vet ./... pass with %s (go line %s)", rel, toolchain, mf.Go.Version)
		})
	}
}
