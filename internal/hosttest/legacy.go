package hosttest

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// LegacyPluginGz is the kvcache example built with sdk 6.0.0, before the
// SDK became a module of its own (see its README beside it), relative to
// the module root.
const LegacyPluginGz = "host/supervisor/testdata/legacy/dw-plugin-kvcache-sdk6.0.0.gz"

// InstallLegacyPlugin unpacks the sdk 6.0.0 kvcache into dir as
// dw-plugin-kvcache, for the tests of the promise that a 6.0 plugin binary
// loads on a 6.1 host.
func InstallLegacyPlugin(tb testing.TB, dir string) {
	tb.Helper()
	root, err := moduleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	in, err := os.Open(filepath.Join(root, LegacyPluginGz))
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := os.OpenFile(filepath.Join(dir, "dw-plugin-kvcache"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		out.Close()
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
}
