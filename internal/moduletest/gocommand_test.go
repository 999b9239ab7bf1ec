package moduletest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

// repoRoot returns the repository's root folder (the host module), two
// levels above this package.
func repoRoot(tb testing.TB) string {
	tb.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		tb.Fatal(err)
	}
	if got := modulePath(tb, root); got != "github.com/datawarehouse/dw" {
		tb.Fatalf("%s/go.mod is module %q, want the host module github.com/datawarehouse/dw", root, got)
	}
	return root
}

// readModFile parses dir/go.mod.
func readModFile(tb testing.TB, dir string) *modfile.File {
	tb.Helper()
	name := filepath.Join(dir, "go.mod")
	data, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := modfile.Parse(name, data, nil)
	if err != nil {
		tb.Fatalf("parse %s: %v", name, err)
	}
	return f
}

// modulePath returns the module path of dir/go.mod.
func modulePath(tb testing.TB, dir string) string {
	tb.Helper()
	f := readModFile(tb, dir)
	if f.Module == nil {
		tb.Fatalf("%s/go.mod has no module line", dir)
	}
	return f.Module.Mod.Path
}

// goCmd runs the go command in dir with env added to the test's
// environment (a later value of a variable wins) and returns its standard
// output. It fails the test, with the command's output, when go fails.
func goCmd(tb testing.TB, dir string, env []string, args ...string) string {
	tb.Helper()
	cmd := exec.CommandContext(tb.Context(), "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("in %s: %s go %s: %v\n%s%s", dir, strings.Join(env, " "), strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// goEnv returns `go env name` in the test's environment.
func goEnv(tb testing.TB, name string) string {
	tb.Helper()
	v := strings.TrimSpace(goCmd(tb, ".", nil, "env", name))
	if v == "" {
		tb.Fatalf("go env %s is empty", name)
	}
	return v
}

// hostLibraries are module path prefixes of the host's own libraries: a
// plugin that depends on the SDK alone must have none of them in its module
// graph. A prefix ending in "/" matches every module under it; any other
// matches itself and the modules under it (github.com/jackc/pgx matches
// github.com/jackc/pgx/v5).
var hostLibraries = []string{
	"github.com/jackc/pgx",
	"modernc.org/sqlite",
	"github.com/hashicorp/memberlist",
	"github.com/spf13/cobra",
	"go.etcd.io/bbolt",
	"github.com/knadh/koanf",
	"github.com/prometheus/",
}

// listModules runs `go list -m all` in dir and returns each line (module
// path, version and any replacement).
func listModules(tb testing.TB, dir string, env []string) []string {
	tb.Helper()
	lines := strings.Split(strings.TrimSpace(goCmd(tb, dir, env, "list", "-m", "all")), "\n")
	if len(lines) < 2 {
		tb.Fatalf("go list -m all in %s listed %q: not even the SDK", dir, lines)
	}
	return lines
}

// checkNoHostLibraries fails the test for every module of lines (the
// output of listModules) that is one of hostLibraries.
func checkNoHostLibraries(tb testing.TB, what string, lines []string) {
	tb.Helper()
	for _, line := range lines {
		path := strings.Fields(line)[0]
		for _, lib := range hostLibraries {
			if path == strings.TrimSuffix(lib, "/") || strings.HasPrefix(path, strings.TrimSuffix(lib, "/")+"/") {
				tb.Errorf("%s: module graph holds %s, one of the host's libraries; a plugin that imports only the SDK must not pull it in", what, line)
			}
		}
	}
}
