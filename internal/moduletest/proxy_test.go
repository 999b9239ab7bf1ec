package moduletest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

// writeProxy lays out, under proxyDir, a file-system module proxy (the
// GOPROXY protocol over file://) that serves one module: the folder
// modDir as version. The files are those a proxy serves for a tag:
// <path>/@v/list, <version>.info, <version>.mod and <version>.zip, with
// the path case-encoded as the protocol requires.
func writeProxy(tb testing.TB, proxyDir, modDir, version string) module.Version {
	tb.Helper()
	m := module.Version{Path: modulePath(tb, modDir), Version: version}
	esc, err := module.EscapePath(m.Path)
	if err != nil {
		tb.Fatal(err)
	}
	escVer, err := module.EscapeVersion(version)
	if err != nil {
		tb.Fatal(err)
	}
	dir := filepath.Join(proxyDir, filepath.FromSlash(esc), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}

	f, err := os.Create(filepath.Join(dir, escVer+".zip"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := zip.CreateFromDir(f, m, modDir); err != nil {
		f.Close()
		tb.Fatalf("zip %s as %s: %v", modDir, m, err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}

	goMod, err := os.ReadFile(filepath.Join(modDir, "go.mod"))
	if err != nil {
		tb.Fatal(err)
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		tb.Fatal(err)
	}
	for name, data := range map[string][]byte{
		escVer + ".mod":  goMod,
		escVer + ".info": info,
		"list":           []byte(version + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return m
}
