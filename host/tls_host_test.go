package host_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host"
	"github.com/datawarehouse/dw/internal/pki"
)

// In process: a host serving TLS stops its certificate watcher at
// Shutdown (no goroutine left), and a start refused for a bad pair leaves
// nothing running either.
func TestHostTLSShutdownLeavesNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	ca, err := pki.NewCA(time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue(pki.Request{Names: []string{"localhost", "127.0.0.1"}, Now: time.Now(), Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	if err := os.WriteFile(certFile, pair.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pair.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(cert string) (*host.Host, error) {
		cfg, err := config.Parse([]byte(fmt.Sprintf("server: {listen: 127.0.0.1:0, tls: {cert_file: %s, key_file: %s}}\ndata_dir: %s\nplugins: {dir: %s}\n"+
			"subsystems: {dbstorage: {enabled: false}, filesystem: {enabled: false}, dataprotection: {enabled: false}, fabric: {enabled: false}}\n",
			cert, keyFile, filepath.Join(dir, "data"), dir)), "test")
		if err != nil {
			t.Fatal(err)
		}
		h, err := host.New(cfg, host.Options{Logger: hclog.NewNullLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return h, h.Start(context.Background())
	}

	if _, err := start(keyFile); err == nil || !strings.Contains(err.Error(), "server.tls.cert_file "+keyFile) {
		t.Fatalf("start with a key as certificate: %v", err)
	}

	h, err := start(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	c, err := tls.Dial("tcp", h.Addr(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
