package host_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/internal/hosttest"
	"github.com/datawarehouse/dw/internal/pki"
)

// These tests run the real dw serve with certificates written by the real
// dw tls init.

// tlsInit runs `dw tls init` with args (a real process).
func tlsInit(tb testing.TB, args ...string) {
	tb.Helper()
	cmd := exec.Command(hosttest.Binary(tb, "cmd/dw", "dw"), append([]string{"tls", "init"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("dw tls init %v: %v\n%s", args, err, out)
	}
}

// tlsFiles is a folder written by dw tls init.
type tlsFiles struct{ dir string }

func newTLSFiles(tb testing.TB) tlsFiles {
	tb.Helper()
	f := tlsFiles{dir: filepath.Join(tb.TempDir(), "tls")}
	tlsInit(tb, "--dir", f.dir, "--name", "localhost", "--name", "127.0.0.1")
	return f
}

func (f tlsFiles) path(name string) string { return filepath.Join(f.dir, name) }

// serverYAML is the server.tls section serving f.
func (f tlsFiles) serverYAML(extra string) string {
	return fmt.Sprintf("  tls:\n    cert_file: %s\n    key_file: %s\n%s", f.path("server.pem"), f.path("server-key.pem"), extra)
}

// pool trusts f's CA.
func (f tlsFiles) pool(tb testing.TB) *x509.CertPool {
	tb.Helper()
	data, err := os.ReadFile(f.path("ca.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		tb.Fatal("no CA in ca.pem")
	}
	return pool
}

// serial is the serial of the certificate in the file.
func (f tlsFiles) serial(tb testing.TB, name string) *big.Int {
	tb.Helper()
	data, err := os.ReadFile(f.path(name))
	if err != nil {
		tb.Fatal(err)
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		tb.Fatal(err)
	}
	return certs[0].SerialNumber
}

// httpsClient trusts pool and speaks HTTP/1.1 (h2: HTTP/2 only).
func httpsClient(pool *x509.CertPool, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: new(http.Protocols)}
	if h2 {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	return &http.Client{Transport: tr}
}

// servedSerial makes a new TLS connection to addr and returns the serial
// of the certificate it gets.
func servedSerial(tb testing.TB, addr string, pool *x509.CertPool) *big.Int {
	tb.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// bigFile creates a sparse file of size bytes at path, with a 16-byte
// marker (its offset, twice) every 64 MiB, so that a download can be
// checked byte by byte without spending disk.
func bigFile(tb testing.TB, path string, size int64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		tb.Fatal(err)
	}
	for off := int64(0); off+16 <= size; off += 64 << 20 {
		if _, err := f.WriteAt(marker(off), off); err != nil {
			tb.Fatal(err)
		}
	}
}

func marker(off int64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(off)|1<<63)
	binary.BigEndian.PutUint64(b[8:], uint64(off)|1<<62)
	return b
}

// expectedHash is the SHA-256 of bigFile's content.
func expectedHash(size int64) []byte {
	h := sha256.New()
	zero := make([]byte, 64<<20)
	for off := int64(0); off < size; off += 64 << 20 {
		n := min(int64(len(zero)), size-off)
		chunk := zero[:n]
		copy(chunk, marker(off))
		h.Write(chunk)
		clear(chunk[:16])
	}
	return h.Sum(nil)
}

// startTLSFilesHost runs dw serve with the filesystem plugin (root: files)
// serving f over TLS.
func startTLSFilesHost(tb testing.TB, f tlsFiles) *hosttest.Host {
	tb.Helper()
	dir := tb.TempDir()
	hosttest.Plugin(tb, dir, "filesystem")
	h := hosttest.StartServer(tb, dir, f.serverYAML(""), "subsystems:\n  filesystem:\n    enabled: true\n    root: files\n")
	h.Client = httpsClient(f.pool(tb), false)
	h.WaitServing(tb, "filesystem", 60*time.Second)
	return h
}

// TestTLSRotationDuringDownload is the acceptance test of live rotation:
// a 1 GiB download runs while dw tls init --force writes a new pair with
// the same CA over the served one; the download completes with every byte
// right on the old certificate, and new connections get the new one.
func TestTLSRotationDuringDownload(t *testing.T) {
	const size = 1 << 30
	f := newTLSFiles(t)
	h := startTLSFilesHost(t, f)
	bigFile(t, filepath.Join(h.DataDir, "files", "big"), size)
	first := f.serial(t, "server.pem")
	pool := f.pool(t)
	if got := servedSerial(t, h.Addr, pool); got.Cmp(first) != 0 {
		t.Fatalf("serving %x, want %x", got, first)
	}

	resp, err := h.Client.Get(h.URL + "/v1/files/big")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Fatalf("GET: %d, %d bytes", resp.StatusCode, resp.ContentLength)
	}
	hash := sha256.New()
	if _, err := io.CopyN(hash, resp.Body, size/4); err != nil {
		t.Fatal(err)
	}

	// Rotate with the existing CA, as an operator does.
	tlsInit(t, "--dir", f.dir, "--force", "--name", "localhost", "--name", "127.0.0.1")
	second := f.serial(t, "server.pem")
	hosttest.WaitFor(t, 30*time.Second, "a new connection to get the new certificate", func() bool {
		return servedSerial(t, h.Addr, pool).Cmp(second) == 0
	})

	n, err := io.Copy(hash, resp.Body)
	if err != nil {
		t.Fatalf("the download broke after the rotation: %v", err)
	}
	if n != size-size/4 {
		t.Fatalf("read %d bytes after the rotation, want %d", n, size-size/4)
	}
	if !bytes.Equal(hash.Sum(nil), expectedHash(size)) {
		t.Fatal("the downloaded bytes differ from the file")
	}
	if s := resp.TLS.PeerCertificates[0].SerialNumber; s.Cmp(first) != 0 {
		t.Fatalf("the download's connection has serial %x, want the old %x", s, first)
	}

	// The rotation is counted and shown.
	metrics := string(call(t, h, "GET", "/metrics"))
	if !strings.Contains(metrics, `dw_tls_reloads_total{result="ok"} 1`) || !strings.Contains(metrics, `dw_tls_reloads_total{result="error"} 0`) {
		t.Errorf("dw_tls_reloads_total is not ok 1, error 0:\n%s", metrics)
	}
	var info struct {
		TLS struct {
			Serial    string `json:"serial"`
			LastError string `json:"last_error"`
		} `json:"tls"`
	}
	if err := json.Unmarshal(call(t, h, "GET", "/v1/config"), &info); err != nil {
		t.Fatal(err)
	}
	if info.TLS.Serial != fmt.Sprintf("%x", second) || info.TLS.LastError != "" {
		t.Errorf("GET /v1/config tls: %+v", info.TLS)
	}
}

// call makes a request of h with its client and returns the body of a 200.
func call(tb testing.TB, h *hosttest.Host, method, path string) []byte {
	tb.Helper()
	code, body := h.Call(tb, method, path, nil)
	if code != 200 {
		tb.Fatalf("%s %s: %d %s", method, path, code, body)
	}
	return body
}

// TestTLSBadPairRejectedByHost: garbage, a mismatched key and an expired
// certificate written over the served pair are rejected by the running
// host: it keeps serving the old certificate, logs the error with the key
// at fault, counts it, and shows it in GET /v1/config.
func TestTLSBadPairRejectedByHost(t *testing.T) {
	f := newTLSFiles(t)
	h := hosttest.StartServer(t, t.TempDir(), f.serverYAML(""), "")
	h.Client = httpsClient(f.pool(t), false)
	pool := f.pool(t)
	first := f.serial(t, "server.pem")
	goodKey, err := os.ReadFile(f.path("server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	goodCert, err := os.ReadFile(f.path("server.pem"))
	if err != nil {
		t.Fatal(err)
	}
	other := newTLSFiles(t)
	otherKey, err := os.ReadFile(other.path("server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	expired := expiredPair(t, f)

	write := func(name string, data []byte) {
		tmp := f.path(name + ".new")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path(name)); err != nil {
			t.Fatal(err)
		}
	}
	for i, step := range []struct {
		name       string
		cert, key  []byte
		key_, want string
	}{
		{"garbage", []byte("garbage\n"), goodKey, "server.tls.cert_file", "no PEM certificate found"},
		{"mismatched key", goodCert, otherKey, "server.tls.key_file", "does not match the certificate"},
		{"expired", expired.CertPEM, expired.KeyPEM, "server.tls.cert_file", "expired at"},
	} {
		write("server-key.pem", step.key)
		write("server.pem", step.cert)
		want := fmt.Sprintf(`dw_tls_reloads_total{result="error"} %d`, i+1)
		hosttest.WaitFor(t, 30*time.Second, step.name+" counted as an error", func() bool {
			return strings.Contains(string(call(t, h, "GET", "/metrics")), want)
		})
		if got := servedSerial(t, h.Addr, pool); got.Cmp(first) != 0 {
			t.Fatalf("%s: serving %x, want the old %x", step.name, got, first)
		}
		var info struct {
			TLS struct {
				LastError string `json:"last_error"`
			} `json:"tls"`
		}
		if err := json.Unmarshal(call(t, h, "GET", "/v1/config"), &info); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(info.TLS.LastError, step.key_) || !strings.Contains(info.TLS.LastError, step.want) {
			t.Fatalf("%s: last_error %q", step.name, info.TLS.LastError)
		}
		if !strings.Contains(h.Logs(), `"key":"`+step.key_+`"`) {
			t.Fatalf("%s: no error log naming %s:\n%s", step.name, step.key_, h.Logs())
		}
	}
	if !strings.Contains(string(call(t, h, "GET", "/metrics")), `dw_tls_last_reload_successful 0`) {
		t.Error("dw_tls_last_reload_successful is not 0")
	}
}

// expiredPair issues, with f's CA, a pair that expired an hour ago.
func expiredPair(tb testing.TB, f tlsFiles) *pki.Pair {
	tb.Helper()
	certPEM, err := os.ReadFile(f.path("ca.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	keyPEM, err := os.ReadFile(f.path("ca-key.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := ca.Issue(pki.Request{Names: []string{"localhost"}, Now: time.Now().Add(-2 * time.Hour), Validity: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestTLSStartRefusesBadPair: dw serve with a certificate file it cannot
// serve exits with an error naming the key.
func TestTLSStartRefusesBadPair(t *testing.T) {
	f := newTLSFiles(t)
	other := newTLSFiles(t)
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"missing", f.path("nope.pem"), f.path("server-key.pem"), "server.tls.cert_file " + f.path("nope.pem") + ": open"},
		{"key of another pair", f.path("server.pem"), other.path("server-key.pem"), "server.tls.key_file " + other.path("server-key.pem") + ": does not match"},
		{"a key as certificate", f.path("server-key.pem"), f.path("server-key.pem"), "server.tls.cert_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "dw.yaml")
			yaml := fmt.Sprintf("server:\n  listen: 127.0.0.1:0\n  tls: {cert_file: %s, key_file: %s}\ndata_dir: %s\nplugins: {dir: %s}\n"+
				"subsystems: {dbstorage: {enabled: false}, filesystem: {enabled: false}, dataprotection: {enabled: false}, fabric: {enabled: false}}\n",
				tc.cert, tc.key, filepath.Join(dir, "data"), dir)
			if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, hosttest.Binary(t, "cmd/dw", "dw"), "serve", "--config", cfg).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("dw serve: %v; want an error with %q:\n%s", err, tc.want, out)
			}
		})
	}
}

// TestInsecureHTTPWarns: server.insecure_http logs a warning at start.
func TestInsecureHTTPWarns(t *testing.T) {
	h := hosttest.StartServer(t, t.TempDir(), "  insecure_http: true\n", "")
	if !strings.Contains(h.Logs(), `"@level":"warn","@message":"plain HTTP off loopback: tokens travel in clear text`) {
		t.Fatalf("no warning:\n%s", h.Logs())
	}
	plain := hosttest.Start(t, t.TempDir(), "")
	if strings.Contains(plain.Logs(), "plain HTTP off loopback") {
		t.Fatal("warned without insecure_http")
	}
}

// TestTLSMinVersionAndClientCA through the real host: min_version 1.3
// refuses a TLS 1.2 client; with client_ca_file, a client without a
// certificate is refused and one of dw tls init --client gets in.
func TestTLSMinVersionAndClientCA(t *testing.T) {
	f := newTLSFiles(t)
	tlsInit(t, "--dir", f.dir, "--client", "--name", "ops")
	h := hosttest.StartServer(t, t.TempDir(), f.serverYAML("    min_version: \"1.3\"\n    client_ca_file: "+f.path("ca.pem")+"\n"), "")
	pool := f.pool(t)
	client, err := tls.LoadX509KeyPair(f.path("client.pem"), f.path("client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(cfg *tls.Config) error {
		cfg.RootCAs = pool
		tr := &http.Transport{TLSClientConfig: cfg}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get("https://" + h.Addr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get(&tls.Config{Certificates: []tls.Certificate{client}, MaxVersion: tls.VersionTLS12}); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.2 client: %v", err)
	}
	if err := get(&tls.Config{}); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("no client certificate: %v", err)
	}
	if err := get(&tls.Config{Certificates: []tls.Certificate{client}}); err != nil {
		t.Errorf("with a client certificate: %v", err)
	}
}

// TestTLSConfigReload: new server.tls file paths apply live through a
// config reload; bad new files reject the reload with the key at fault;
// turning TLS off is refused.
func TestTLSConfigReload(t *testing.T) {
	f, g := newTLSFiles(t), newTLSFiles(t)
	h := hosttest.StartServer(t, t.TempDir(), f.serverYAML(""), "")
	h.Client = httpsClient(f.pool(t), false)
	base := h.Base
	rewrite := func(newBase string) {
		tmp := h.ConfigPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(newBase), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, h.ConfigPath); err != nil {
			t.Fatal(err)
		}
	}
	type lastReload struct {
		Generation int `json:"generation"`
		LastReload *struct {
			OK       bool `json:"ok"`
			Problems []struct {
				Path    string `json:"path"`
				Message string `json:"message"`
			} `json:"problems"`
		} `json:"last_reload"`
	}
	reloads := 0
	waitReload := func() lastReload {
		t.Helper()
		reloads++
		var info lastReload
		hosttest.WaitFor(t, 30*time.Second, "the config reload", func() bool {
			info = lastReload{}
			if err := json.Unmarshal(call(t, h, "GET", "/v1/config"), &info); err != nil {
				t.Fatal(err)
			}
			return info.LastReload != nil && (info.Generation == 1+reloads || !info.LastReload.OK)
		})
		return info
	}

	// Bad new files: the reload is rejected, keyed by the file's key.
	rewrite(strings.Replace(base, f.path("server-key.pem"), g.path("server-key.pem"), 1))
	info := waitReload()
	reloads--
	if info.LastReload.OK || len(info.LastReload.Problems) != 1 || info.LastReload.Problems[0].Path != "server.tls.key_file" {
		t.Fatalf("mismatched pair reload: %+v", info.LastReload)
	}
	// TLS off: refused.
	h.Client.Transport.(*http.Transport).CloseIdleConnections()
	rewrite(strings.Replace(base, f.serverYAML(""), "", 1))
	hosttest.WaitFor(t, 30*time.Second, "the refusal", func() bool {
		var info lastReload
		_ = json.Unmarshal(call(t, h, "GET", "/v1/config"), &info)
		return info.LastReload != nil && len(info.LastReload.Problems) == 1 && info.LastReload.Problems[0].Path == "server.tls" &&
			strings.Contains(info.LastReload.Problems[0].Message, "turning TLS off cannot be done while dw runs")
	})
	// Another pair (another CA): applied live.
	rewrite(strings.ReplaceAll(base, f.dir, g.dir))
	h.Client = httpsClient(g.pool(t), false)
	hosttest.WaitFor(t, 30*time.Second, "the new pair", func() bool {
		c, err := tls.Dial("tcp", h.Addr, &tls.Config{RootCAs: g.pool(t), ServerName: "localhost"})
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	if info := waitReload(); !info.LastReload.OK {
		t.Fatalf("reload: %+v", info.LastReload)
	}
	// The new files are watched: a rotation there is served.
	tlsInit(t, "--dir", g.dir, "--force", "--name", "localhost")
	want := g.serial(t, "server.pem")
	hosttest.WaitFor(t, 30*time.Second, "the rotated pair", func() bool { return servedSerial(t, h.Addr, g.pool(t)).Cmp(want) == 0 })
}
