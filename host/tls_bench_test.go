package host_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/datawarehouse/dw/internal/hosttest"
)

// BenchmarkFileGET1GiB downloads a 1 GiB file (sparse, so the disk is not
// what is measured) through the real host and filesystem plugin: plain
// HTTP, HTTPS over HTTP/1.1 (what the dw CLI speaks) and HTTPS over
// HTTP/2 (what curl and browsers pick), in the same run.
//
//	go test -run '^$' -bench 'FileGET1GiB|TLSHandshake' -benchtime 3x ./host/
func BenchmarkFileGET1GiB(b *testing.B) {
	const size = 1 << 30
	f := newTLSFiles(b)
	tlsHost := startTLSFilesHost(b, f)
	plainDir := b.TempDir()
	hosttest.Plugin(b, plainDir, "filesystem")
	plainHost := hosttest.Start(b, plainDir, "subsystems:\n  filesystem:\n    enabled: true\n    root: files\n")
	plainHost.WaitServing(b, "filesystem", 60*time.Second)
	for _, h := range []*hosttest.Host{tlsHost, plainHost} {
		bigFile(b, filepath.Join(h.DataDir, "files", "big"), size)
	}
	for _, tc := range []struct {
		name   string
		url    string
		client *http.Client
	}{
		{"http", plainHost.URL, &http.Client{Transport: &http.Transport{}}},
		{"https-h1", tlsHost.URL, httpsClient(f.pool(b), false)},
		{"https-h2", tlsHost.URL, httpsClient(f.pool(b), true)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				resp, err := tc.client.Get(tc.url + "/v1/files/big")
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != size {
					b.Fatalf("read %d bytes: %v", n, err)
				}
			}
			tc.client.CloseIdleConnections()
		})
	}
}

// BenchmarkTLSHandshake is the cost of one new connection to the real
// host: TCP connect and a full handshake with its ECDSA P-256 certificate
// from dw tls init (client and server on this machine, so the time is
// both sides' CPU), with TLS 1.3 (Go's default key exchange,
// X25519MLKEM768, and plain X25519) and TLS 1.2 (ECDHE X25519).
func BenchmarkTLSHandshake(b *testing.B) {
	f := newTLSFiles(b)
	h := hosttest.StartServer(b, b.TempDir(), f.serverYAML(""), "")
	pool := f.pool(b)
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"tls13", &tls.Config{MinVersion: tls.VersionTLS13}},
		{"tls13-x25519", &tls.Config{MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519}}},
		{"tls12", &tls.Config{MaxVersion: tls.VersionTLS12}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := tc.cfg.Clone()
			cfg.RootCAs, cfg.ServerName = pool, "localhost"
			for b.Loop() {
				raw, err := net.Dial("tcp", h.Addr)
				if err != nil {
					b.Fatal(err)
				}
				c := tls.Client(raw, cfg)
				if err := c.Handshake(); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
