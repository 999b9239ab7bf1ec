package moduletest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/internal/hosttest"
)

// sdkRequirement returns the SDK's module path (from sdk/go.mod) and the
// version of it that the host module requires: the version the sdk/
// folder of this tree is, and the one a third party would `go get`.
func sdkRequirement(tb testing.TB, root string) (path, version string) {
	tb.Helper()
	path = modulePath(tb, filepath.Join(root, "sdk"))
	for _, r := range readModFile(tb, root).Require {
		if r.Mod.Path == path {
			return path, r.Mod.Version
		}
	}
	tb.Fatalf("the host module does not require %s", path)
	return "", ""
}

// TestPluginFromEmptyFolder is the third-party author's path, end to end:
// in an empty folder outside the repository, the README's plugin gets the
// SDK through a module proxy (go.mod without replace), builds, keeps the
// host's libraries out of its module graph, and passes `dw plugin check`.
func TestPluginFromEmptyFolder(t *testing.T) {
	root := repoRoot(t)
	sdkPath, sdkVersion := sdkRequirement(t, root)

	code := readmePlugin(t, root)
	if n := strings.Count(code, "\n"); n > maxReadmePluginLines {
		t.Errorf("README.md: the plugin of %q is %d lines of Go; keep it at most %d", readmeSection, n, maxReadmePluginLines)
	} else {
		t.Logf("README plugin: %d lines of Go", n)
	}
	getSDK := "go get " + sdkPath + "@" + sdkVersion
	if !strings.Contains(readmeSectionText(t, root), getSDK) {
		t.Errorf("README.md: the %q section does not say %q (the SDK version the host module requires)", readmeSection, getSDK)
	}

	proxy := t.TempDir()
	writeProxy(t, proxy, filepath.Join(root, "sdk"), sdkVersion)

	dir := t.TempDir()
	if rel, err := filepath.Rel(root, dir); err == nil && !strings.HasPrefix(rel, "..") {
		t.Fatalf("the plugin's folder %s is inside the repository %s (TMPDIR?); the test must build outside it", dir, root)
	}
	// A module cache of the test's own: the SDK version made here must not
	// land in the shared one, where it would stand for the real release
	// and go stale as sdk/ changes. The shared cache's download folder
	// serves as a proxy (it has the proxy's layout) ahead of GOPROXY, so
	// the SDK's dependencies come from it when it holds them and from the
	// network otherwise.
	env := []string{
		"GOPROXY=file://" + filepath.ToSlash(proxy) +
			",file://" + filepath.ToSlash(filepath.Join(goEnv(t, "GOMODCACHE"), "cache", "download")) +
			"," + goEnv(t, "GOPROXY"),
		"GONOSUMDB=github.com/datawarehouse/dw",
		"GOPRIVATE=",
		"GONOPROXY=",
		"GOFLAGS=-mod=mod -modcacherw",
		"GOWORK=off",
		"GOTOOLCHAIN=local",
		"GOMODCACHE=" + t.TempDir(),
	}

	// The steps of the README.
	goCmd(t, dir, env, "mod", "init", "example.com/dw-plugin-ratelimit")
	goCmd(t, dir, env, "get", sdkPath+"@"+sdkVersion)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	goCmd(t, dir, env, "mod", "tidy")
	bin := filepath.Join(dir, "dw-plugin-ratelimit")
	// -trimpath keeps the test's own module cache path out of the build
	// cache's keys, so the dependencies compiled by an earlier run are
	// reused.
	goCmd(t, dir, env, "build", "-trimpath", "-o", bin, ".")

	mod := readModFile(t, dir)
	if len(mod.Replace) > 0 {
		t.Errorf("the plugin's go.mod has a replace directive: %v", mod.Replace[0].Syntax.Token)
	}
	modules := listModules(t, dir, env)
	if want := sdkPath + " " + sdkVersion; !slices.Contains(modules, want) {
		t.Errorf("go list -m all does not list %q (the SDK from the proxy, without replacement):\n%s", want, strings.Join(modules, "\n"))
	}
	checkNoHostLibraries(t, "the out-of-repository plugin", modules)
	linked := 0
	for _, line := range strings.Split(goCmd(t, dir, env, "version", "-m", bin), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "dep" {
			linked++
		}
	}
	t.Logf("out-of-repository plugin: go list -m all lists %d modules (the plugin's own and %d dependencies); %d of them are linked into the binary",
		len(modules), len(modules)-1, linked)

	dw := hosttest.Binary(t, "cmd/dw", "dw")
	check := exec.CommandContext(t.Context(), dw, "plugin", "check", bin)
	out, err := check.CombinedOutput()
	if err != nil {
		t.Fatalf("dw plugin check %s: %v\n%s", bin, err, out)
	}
	t.Logf("dw plugin check %s: every check passed", filepath.Base(bin))

	// The operator's side: dw config validate starts the plugin briefly and
	// judges its section by the schema the SDK derived from Limits.
	cfg := filepath.Join(t.TempDir(), "dw.yaml")
	yaml := "data_dir: " + t.TempDir() + "\nplugins: {dir: " + dir + "}\nsubsystems:\n" +
		"  dbstorage: {enabled: false}\n  filesystem: {enabled: false}\n  dataprotection: {enabled: false}\n  fabric: {enabled: false}\n" +
		"  ratelimit:\n    limits: {rate: 0, bogus: 1}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.CommandContext(t.Context(), dw, "config", "validate", cfg).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 ||
		!strings.Contains(string(out), "subsystems.ratelimit.limits.rate: must be >= 1, got 0") ||
		!strings.Contains(string(out), `subsystems.ratelimit.limits.bogus: unknown key; allowed: burst, rate`) {
		t.Errorf("dw config validate of rate 0 and bogus 1: %v\n%s", err, out)
	}
}

// TestExampleModuleGraph checks examples/kvcache, the repository's own
// third-party-style plugin, for the host's libraries in its module graph.
func TestExampleModuleGraph(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "examples", "kvcache")
	modules := listModules(t, dir, []string{"GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false"})
	checkNoHostLibraries(t, "examples/kvcache", modules)
	t.Logf("examples/kvcache: go list -m all lists %d modules (its own and %d dependencies)", len(modules), len(modules)-1)
}
