// Package testplugins builds the dw host's test plugin
// (host/testdata/testplugin) for integration tests: one build copied under
// every variant name, plus the builds that pretend another SDK version.
//
// Tests call [Build] (once per test process; later calls return the same
// folder) and put the variants they need into their own plugins folder with
// [Install]. Call [Cleanup] from TestMain to remove the build folder.
package testplugins

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Variants built from the main build; each behaves as its name says (see
// host/testdata/testplugin).
var Variants = []string{"good", "crashstart", "crashlater", "hang", "stdout", "badproto", "forker", "applyfail"}

// SDKVariants are good plugins that report another SDK version.
var SDKVariants = map[string]string{"sdk7": "7.0.0", "sdk699": "6.99.0"}

var (
	once     sync.Once
	buildDir string
	buildErr error
)

// Build builds every variant once per test process and returns the folder
// holding dw-plugin-<variant> for all of them.
func Build(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { buildDir, buildErr = build() })
	if buildErr != nil {
		tb.Fatalf("build test plugins: %v", buildErr)
	}
	return buildDir
}

// Cleanup removes the build folder, if Build made one. Call it from TestMain
// after m.Run.
func Cleanup() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

// Install puts the named variants (e.g. "good", "sdk7") from the build into
// dir, as dw-plugin-<name>, hard-linked when possible and copied otherwise.
func Install(tb testing.TB, dir string, variants ...string) {
	tb.Helper()
	src := Build(tb)
	for _, v := range variants {
		InstallAs(tb, filepath.Join(src, "dw-plugin-"+v), filepath.Join(dir, "dw-plugin-"+v))
	}
}

// InstallAs hard-links (or copies) the file src to dst, executable.
func InstallAs(tb testing.TB, src, dst string) {
	tb.Helper()
	if err := os.Link(src, dst); err == nil {
		return
	}
	if err := copyFile(src, dst); err != nil {
		tb.Fatalf("install test plugin: %v", err)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the testplugins source file")
	}
	// file is <root>/host/internal/testplugins/testplugins.go
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("module root %s: %w", root, err)
	}
	return root, nil
}

// goTool finds the go command: on PATH, else in $GOROOT/bin.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

func build() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "dw-testplugins-")
	if err != nil {
		return "", err
	}
	type job struct{ out, ldflags string }
	jobs := []job{{out: filepath.Join(dir, "dw-plugin-good")}}
	for name, v := range SDKVariants {
		jobs = append(jobs, job{
			out:     filepath.Join(dir, "dw-plugin-"+name),
			ldflags: "-X github.com/datawarehouse/dw/sdk/v6.reportedSDKVersion=" + v,
		})
	}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"build", "-o", j.out}
			if j.ldflags != "" {
				args = append(args, "-ldflags", j.ldflags)
			}
			args = append(args, "./host/testdata/testplugin")
			cmd := exec.Command(goTool(), args...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go %v: %w\n%s", args, err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			_ = os.RemoveAll(dir)
			return "", err
		}
	}
	good := filepath.Join(dir, "dw-plugin-good")
	for _, v := range Variants[1:] {
		dst := filepath.Join(dir, "dw-plugin-"+v)
		if err := os.Link(good, dst); err != nil {
			if err := copyFile(good, dst); err != nil {
				_ = os.RemoveAll(dir)
				return "", err
			}
		}
	}
	return dir, nil
}
