package main

import (
	"bytes"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/internal/hosttest"
	"github.com/datawarehouse/dw/internal/pki"
)

// tlsInit runs dw tls init with args and returns its output.
func tlsInit(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	root.SetArgs(append([]string{"tls", "init"}, args...))
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.Execute()
	return out.String(), err
}

// readCert parses the first certificate of a PEM file.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func TestTLSInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	out, err := tlsInit(t, "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cert_file: " + filepath.Join(dir, "server.pem"), "key_file: " + filepath.Join(dir, "server-key.pem"),
		"export DW_CACERT=" + filepath.Join(dir, "ca.pem")} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for name, mode := range map[string]os.FileMode{"ca.pem": 0o644, "ca-key.pem": 0o600, "server.pem": 0o644, "server-key.pem": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	leaf := readCert(t, filepath.Join(dir, "server.pem"))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore).Hours() / 24; d < 365 || d > 366 {
		t.Errorf("server certificate valid %.1f days", d)
	}
	if d := ca.NotAfter.Sub(ca.NotBefore).Hours() / 24; d < 5*365 || d > 5*366 {
		t.Errorf("CA valid %.1f days", d)
	}

	// Again: refused without --force, nothing changed.
	if _, err := tlsInit(t, "--dir", dir); err == nil || !strings.Contains(err.Error(), "server.pem exists: pass --force") {
		t.Fatalf("second run: %v", err)
	}
	// --force issues a new server pair with the same CA.
	caBefore, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	out, err = tlsInit(t, "--dir", dir, "--force", "--name", "db.example.com", "--name", "10.1.2.3", "--days", "30")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "signed with the existing CA") {
		t.Errorf("output: %s", out)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); !bytes.Equal(caBefore, caAfter) {
		t.Fatal("--force replaced the CA")
	}
	next := readCert(t, filepath.Join(dir, "server.pem"))
	if next.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("same serial after --force")
	}
	if _, err := next.Verify(x509.VerifyOptions{DNSName: "10.1.2.3", Roots: pool}); err != nil {
		t.Errorf("verify the new pair: %v", err)
	}
	if _, err := next.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: pool}); err == nil {
		t.Error("the new pair still holds localhost")
	}

	// A CA given by flags; a client pair.
	other := t.TempDir()
	if _, err := tlsInit(t, "--dir", other, "--client", "--name", "backup-job", "--ca-cert", filepath.Join(dir, "ca.pem"), "--ca-key", filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	client := readCert(t, filepath.Join(other, "client.pem"))
	if _, err := client.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "ca.pem")); err == nil {
		t.Error("a CA was written although one was given")
	}
}

func TestTLSInitRefusesBadInput(t *testing.T) {
	good := filepath.Join(t.TempDir(), "tls")
	if _, err := tlsInit(t, "--dir", good); err != nil {
		t.Fatal(err)
	}
	halfCA := t.TempDir()
	if err := os.WriteFile(filepath.Join(halfCA, "ca.pem"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--name", ""}, `--name: name "": is empty`},
		{[]string{"--name", "*"}, "a wildcard needs at least two labels"},
		{[]string{"--name", "a_b.example"}, "has the character '_'"},
		{[]string{"--name", strings.Repeat("a", 64) + ".com"}, "at most 63 allowed"},
		{[]string{"--name", strings.Repeat("abcdefghi.", 26) + "com"}, "at most 253 allowed"},
		{[]string{"--name", "bücher.de"}, "punycode"},
		{[]string{"--days", "0"}, "--days 0: must be from 1 to 3650"},
		{[]string{"--days", "3651"}, "--days 3651: must be from 1 to 3650"},
		{[]string{"--days", "-1"}, "--days -1: must be from 1 to 3650"},
		{[]string{"--days", "1826"}, "after its ca"}, // longer than the existing CA
		{[]string{"--ca-cert", filepath.Join(good, "ca.pem")}, "--ca-cert needs --ca-key"},
		{[]string{"--ca-key", filepath.Join(good, "ca-key.pem")}, "--ca-key needs --ca-cert"},
		{[]string{"--ca-cert", filepath.Join(good, "server.pem"), "--ca-key", filepath.Join(good, "server-key.pem")}, "is not a CA certificate"},
		{[]string{"--ca-cert", filepath.Join(good, "ca.pem"), "--ca-key", filepath.Join(good, "server-key.pem")}, "does not match the ca certificate"},
		{[]string{"--ca-cert", "/nonexistent/ca.pem", "--ca-key", "/nonexistent/k"}, "no such file"},
		{[]string{"--dir", halfCA}, "ca.pem exists but " + filepath.Join(halfCA, "ca-key.pem") + " does not"},
	} {
		args := tc.args
		if !strings.Contains(strings.Join(args, " "), "--dir") {
			args = append([]string{"--dir", t.TempDir()}, args...)
		}
		if strings.Contains(tc.want, "after its ca") {
			args = append([]string{"--dir", good, "--force"}, tc.args...)
		}
		if _, err := tlsInit(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dw tls init %q: %v; want %q", args, err, tc.want)
		}
	}
}

// tlsHost starts a real dw serve with server.tls from the files of dir
// (written by dw tls init) and extra server YAML.
func tlsHost(t *testing.T, dir, extra string) *hosttest.Host {
	t.Helper()
	return hosttest.StartServer(t, t.TempDir(), "  tls:\n    cert_file: "+filepath.Join(dir, "server.pem")+
		"\n    key_file: "+filepath.Join(dir, "server-key.pem")+"\n"+extra, "")
}

// TestCLIOverTLS runs the CLI against a real host serving a certificate
// of dw tls init: verified with --ca-cert or DW_CACERT; an unknown CA, a
// name mismatch, HTTP to the HTTPS host and HTTPS to a plain host give
// errors that say what to do.
func TestCLIOverTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := tlsInit(t, "--dir", dir, "--name", "localhost", "--name", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	h := tlsHost(t, dir, "")
	https := "https://" + h.Addr
	if !strings.HasPrefix(h.URL, "https://") {
		t.Fatalf("host URL %s", h.URL)
	}

	out, _, err := runDW(t, https, nil, "--ca-cert", ca, "status")
	if err != nil || !strings.Contains(out, "host "+https+": ready") {
		t.Fatalf("dw status --ca-cert: %v\n%s", err, out)
	}
	t.Setenv("DW_CACERT", ca)
	if out, _, err := runDW(t, https, nil, "status"); err != nil {
		t.Fatalf("dw status with DW_CACERT: %v\n%s", err, out)
	}
	t.Setenv("DW_CACERT", "")

	// Trusting another CA (or the system pool): unknown authority.
	otherDir := filepath.Join(t.TempDir(), "tls")
	if _, err := tlsInit(t, "--dir", otherDir); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status"}, {"--ca-cert", filepath.Join(otherDir, "ca.pem"), "status"}} {
		_, _, err := runDW(t, https, nil, args...)
		if err == nil || !strings.Contains(err.Error(), "is signed by a CA this CLI does not trust: pass --ca-cert or set DW_CACERT") {
			t.Errorf("dw %v: %v", args, err)
		}
	}
	// A name the certificate does not hold (the host listens on
	// 127.0.0.1 only, so the name is asked for with --tls-server-name).
	_, _, err = runDW(t, https, nil, "--ca-cert", ca, "--tls-server-name", "db.example.com", "status")
	if err == nil || !strings.Contains(err.Error(), `the host's certificate is for localhost, 127.0.0.1, not for "db.example.com"`) ||
		!strings.Contains(err.Error(), "--tls-server-name") {
		t.Errorf("name mismatch: %v", err)
	}
	// Plain HTTP to the HTTPS host.
	_, _, err = runDW(t, "http://"+h.Addr, nil, "status")
	if err == nil || !strings.Contains(err.Error(), "the host serves HTTPS: use https://"+h.Addr) {
		t.Errorf("http to https: %v", err)
	}
	_, _, err = runDW(t, h.Addr, nil, "obj", "ls")
	if err == nil || !strings.Contains(err.Error(), "the host serves HTTPS: use https://"+h.Addr) {
		t.Errorf("obj ls over http to https: %v", err)
	}
	// Bad TLS options.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ca-cert", "/nonexistent/ca.pem", "status"}, "--ca-cert (DW_CACERT) /nonexistent/ca.pem: open"},
		{[]string{"--ca-cert", filepath.Join(dir, "server-key.pem"), "status"}, `is a "PRIVATE KEY", not a CERTIFICATE`},
		{[]string{"--client-cert", filepath.Join(dir, "server.pem"), "status"}, "--client-key (DW_CLIENT_KEY) is not"},
		{[]string{"--tls-server-name", "a b", "status"}, "--tls-server-name (DW_TLS_SERVER_NAME)"},
		{[]string{"--ca-cert", "/nonexistent/ca.pem", "obj", "ls"}, "--ca-cert (DW_CACERT) /nonexistent/ca.pem: open"},
	} {
		if _, _, err := runDW(t, https, nil, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dw %v: %v; want %q", tc.args, err, tc.want)
		}
	}
	if _, _, err := runDW(t, "ftp://"+h.Addr, nil, "status"); err == nil || !strings.Contains(err.Error(), "the scheme must be http:// or https://") {
		t.Errorf("ftp scheme: %v", err)
	}

	// HTTPS to a plain host.
	plain := hosttest.Start(t, t.TempDir(), "")
	_, _, err = runDW(t, "https://"+plain.Addr, nil, "--ca-cert", ca, "status")
	if err == nil || !strings.Contains(err.Error(), "the host serves plain HTTP, not HTTPS: use http://"+plain.Addr) {
		t.Errorf("https to http: %v", err)
	}
}

// TestCLIMutualTLS: a host with server.tls.client_ca_file refuses the CLI
// without a client certificate, with a clear error, and lets it in with
// one of dw tls init --client.
func TestCLIMutualTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := tlsInit(t, "--dir", dir); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsInit(t, "--dir", dir, "--client", "--name", "ops"); err != nil {
		t.Fatal(err)
	}
	h := tlsHost(t, dir, "    client_ca_file: "+filepath.Join(dir, "ca.pem")+"\n")
	https := "https://" + h.Addr
	ca := filepath.Join(dir, "ca.pem")
	_, _, err := runDW(t, https, nil, "--ca-cert", ca, "status")
	if err == nil || !strings.Contains(err.Error(), "the host requires a client certificate (mutual TLS): pass --client-cert and --client-key") {
		t.Fatalf("without a client certificate: %v", err)
	}
	t.Setenv("DW_CLIENT_CERT", filepath.Join(dir, "client.pem"))
	t.Setenv("DW_CLIENT_KEY", filepath.Join(dir, "client-key.pem"))
	if out, _, err := runDW(t, https, nil, "--ca-cert", ca, "status"); err != nil {
		t.Fatalf("with a client certificate: %v\n%s", err, out)
	}
}

// TestTokenFlag: --token is sent instead of DW_TOKEN when both are set,
// DW_TOKEN alone still works, and --help never shows the token.
func TestTokenFlag(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"plugins":[]}`))
	}))
	defer srv.Close()
	t.Setenv("DW_TOKEN", "env-token-0123456789")
	if _, _, err := runDW(t, srv.URL, nil, "--token", "flag-token-0123456789", "plugins"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runDW(t, srv.URL, nil, "plugins"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"Bearer flag-token-0123456789", "Bearer env-token-0123456789"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("Authorization headers %q, want %q", got, want)
	}
	out, _, err := runDW(t, srv.URL, nil, "--help")
	if err != nil || strings.Contains(out, "env-token") || !strings.Contains(out, "--token") {
		t.Fatalf("--help: %v\n%s", err, out)
	}
}
