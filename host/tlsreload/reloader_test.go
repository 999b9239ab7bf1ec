package tlsreload

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/internal/pki"
	"github.com/datawarehouse/dw/internal/syncbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCA is a CA of the test's making.
type testCA struct {
	*pki.CA
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	ca, err := pki.NewCA(time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &testCA{CA: ca, pool: pool}
}

// issue issues a pair for localhost and 127.0.0.1, valid from now-5m to
// now+validity (a negative validity is refused by pki; see expiredPair).
func (ca *testCA) issue(t testing.TB, client bool) *pki.Pair {
	t.Helper()
	p, err := ca.Issue(pki.Request{Names: []string{"localhost", "127.0.0.1"}, Client: client, Now: time.Now(), Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// expiredPair is a pair whose certificate expired an hour ago: issued
// "two hours ago" for one hour.
func (ca *testCA) expiredPair(t testing.TB) *pki.Pair {
	t.Helper()
	p, err := ca.Issue(pki.Request{Names: []string{"localhost"}, Now: time.Now().Add(-2 * time.Hour), Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// writeAtomic writes data to path through a temporary file and a rename,
// as careful tools do.
func writeAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// files is a folder with cert.pem and key.pem.
type files struct {
	dir, cert, key, ca string
}

func newFiles(t testing.TB, p *pki.Pair) files {
	t.Helper()
	dir := t.TempDir()
	f := files{dir: dir, cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"), ca: filepath.Join(dir, "client-ca.pem")}
	f.write(t, p)
	return f
}

func (f files) write(t testing.TB, p *pki.Pair) {
	t.Helper()
	writeAtomic(t, f.key, p.KeyPEM)
	writeAtomic(t, f.cert, p.CertPEM)
}

func (f files) spec() config.TLS { return config.TLS{CertFile: f.cert, KeyFile: f.key} }

func testLogger(buf *syncbuf.Buffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Trace, JSONFormat: true})
}

// server serves r on a loopback port: each connection is handshaken and
// echoed back. It returns the address; everything stops at the test's end.
func server(t testing.TB, r *Reloader) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := r.Listener(ln)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = io.Copy(c, c)
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// dial makes a new TLS connection trusting pool and returns it.
func dial(addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	// A TLS 1.3 client learns of a refused client certificate at its
	// first read: make one round trip.
	_, err = c.Write([]byte("x"))
	if err == nil {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadFull(c, make([]byte, 1))
		_ = c.SetReadDeadline(time.Time{})
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// servedSerial is the serial of the certificate a new connection sees.
func servedSerial(t testing.TB, addr string, pool *x509.CertPool) *big.Int {
	t.Helper()
	c, err := dial(addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newReloader(t testing.TB, opts Options) *Reloader {
	t.Helper()
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(r.Close)
	return r
}

func TestNewRefusesFilesThatCannotBeServed(t *testing.T) {
	ca := newTestCA(t)
	good := ca.issue(t, false)
	other := ca.issue(t, false)
	expired := ca.expiredPair(t)
	client := ca.issue(t, true)
	future, err := ca.Issue(pki.Request{Names: []string{"localhost"}, Now: time.Now().Add(time.Hour), Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		cert, key []byte
		ca        []byte // written as the client CA file when not nil
		wantKey   string
		want      string
	}{
		{"garbage certificate", []byte("not a certificate\n"), good.KeyPEM, nil, KeyCertFile, "no PEM certificate found"},
		{"key in the certificate file", good.KeyPEM, good.KeyPEM, nil, KeyCertFile, `is a "PRIVATE KEY", not a CERTIFICATE`},
		{"garbage key", good.CertPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), nil, KeyKeyFile, `pem block "PRIVATE KEY"`},
		{"certificate in the key file", good.CertPEM, good.CertPEM, nil, KeyKeyFile, "no PEM private key found"},
		{"mismatched key", good.CertPEM, other.KeyPEM, nil, KeyKeyFile, "does not match the certificate of server.tls.cert_file"},
		{"expired", expired.CertPEM, expired.KeyPEM, nil, KeyCertFile, "expired at"},
		{"not yet valid", future.CertPEM, future.KeyPEM, nil, KeyCertFile, "is not valid before"},
		{"client certificate", client.CertPEM, client.KeyPEM, nil, KeyCertFile, "not for server authentication"},
		{"empty certificate", []byte("\n"), good.KeyPEM, nil, KeyCertFile, "is empty"},
		{"oversized certificate", bytes.Repeat([]byte("A"), MaxFileSize+1), good.KeyPEM, nil, KeyCertFile, "larger than 1048576 bytes"},
		{"trailing junk", append(append([]byte{}, good.CertPEM...), "junk"...), good.KeyPEM, nil, KeyCertFile, "is not PEM"},
		{"garbage client ca", good.CertPEM, good.KeyPEM, []byte("nope"), KeyClientCAFile, "no PEM certificate found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			spec := config.TLS{CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem")}
			writeAtomic(t, spec.CertFile, tc.cert)
			writeAtomic(t, spec.KeyFile, tc.key)
			if tc.ca != nil {
				spec.ClientCAFile = filepath.Join(dir, "ca.pem")
				writeAtomic(t, spec.ClientCAFile, tc.ca)
			}
			_, err := New(Options{TLS: spec})
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("New: %v; want an *Error", err)
			}
			if fe.Key != tc.wantKey || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: key %s, %v; want key %s and %q", fe.Key, err, tc.wantKey, tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.wantKey+" ") {
				t.Fatalf("error %q does not start with the key", err)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := New(Options{TLS: config.TLS{CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}})
		if err == nil || !strings.Contains(err.Error(), "server.tls.cert_file /nonexistent/c.pem: open") {
			t.Fatalf("New: %v", err)
		}
	})
	t.Run("min version", func(t *testing.T) {
		f := newFiles(t, good)
		spec := f.spec()
		spec.MinVersion = "1.1"
		if _, err := New(Options{TLS: spec}); err == nil || !strings.Contains(err.Error(), `server.tls.min_version 1.1: must be "1.2" or "1.3"`) {
			t.Fatalf("New: %v", err)
		}
	})
}

// TestRotation: a pair written over the old one (atomically, as dw tls
// init --force does) is served to new connections, while a connection made
// before keeps working; a rotation is counted ok.
func TestRotation(t *testing.T) {
	for _, mode := range []string{"fsnotify", "poll"} {
		t.Run(mode, func(t *testing.T) {
			ca := newTestCA(t)
			first, second := ca.issue(t, false), ca.issue(t, false)
			f := newFiles(t, first)
			opts := Options{TLS: f.spec()}
			if mode == "poll" {
				opts.DisableNotify, opts.PollInterval = true, 20*time.Millisecond
			} else {
				opts.PollInterval = -1 // events only
			}
			r := newReloader(t, opts)
			addr := server(t, r)
			if got := servedSerial(t, addr, ca.pool); got.Cmp(first.Cert.SerialNumber) != 0 {
				t.Fatalf("serial %x, want %x", got, first.Cert.SerialNumber)
			}
			old, err := dial(addr, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()

			f.write(t, second)
			waitFor(t, "the new serial", func() bool { return servedSerial(t, addr, ca.pool).Cmp(second.Cert.SerialNumber) == 0 })
			if _, err := old.Write([]byte("y")); err != nil {
				t.Fatalf("old connection: %v", err)
			}
			if _, err := io.ReadFull(old, make([]byte, 1)); err != nil {
				t.Fatalf("old connection: %v", err)
			}
			if s := old.ConnectionState().PeerCertificates[0].SerialNumber; s.Cmp(first.Cert.SerialNumber) != 0 {
				t.Fatalf("old connection serial %x", s)
			}
			if n := value(t, r.metrics.reloads.WithLabelValues("ok")); n != 1 {
				t.Fatalf("reloads ok = %v, want 1", n)
			}
			if st := r.Status(); st.Serial != fmt.Sprintf("%x", second.Cert.SerialNumber) || st.LastError != "" {
				t.Fatalf("status %+v", st)
			}
			if got := value(t, r.metrics.expiry); got != float64(second.Cert.NotAfter.Unix()) {
				t.Fatalf("expiry gauge %v, want %v", got, second.Cert.NotAfter.Unix())
			}
		})
	}
}

// TestBadPairsRejected: garbage, a mismatched key and an expired
// certificate written over a good pair are each rejected: the old
// certificate is still served, and the error is logged with the key and
// file, counted, and shown in Status.
func TestBadPairsRejected(t *testing.T) {
	ca := newTestCA(t)
	good := ca.issue(t, false)
	f := newFiles(t, good)
	var logs syncbuf.Buffer
	r := newReloader(t, Options{TLS: f.spec(), Logger: testLogger(&logs), PollInterval: -1, PairGrace: 50 * time.Millisecond})
	addr := server(t, r)

	other := ca.issue(t, false)
	expired := ca.expiredPair(t)
	steps := []struct {
		name    string
		write   func()
		key     string
		message string
	}{
		{"garbage", func() { writeAtomic(t, f.cert, []byte("garbage")) }, KeyCertFile, "no PEM certificate found"},
		{"mismatched key", func() { writeAtomic(t, f.cert, good.CertPEM); writeAtomic(t, f.key, other.KeyPEM) }, KeyKeyFile, "does not match"},
		{"expired", func() { f.write(t, expired) }, KeyCertFile, "expired at"},
	}
	for i, s := range steps {
		s.write()
		waitFor(t, s.name+" rejected", func() bool {
			return value(t, r.metrics.reloads.WithLabelValues("error")) == float64(i+1)
		})
		st := r.Status()
		if !strings.HasPrefix(st.LastError, s.key) || !strings.Contains(st.LastError, s.message) {
			t.Fatalf("%s: last error %q; want %s … %s", s.name, st.LastError, s.key, s.message)
		}
		if got := servedSerial(t, addr, ca.pool); got.Cmp(good.Cert.SerialNumber) != 0 {
			t.Fatalf("%s: serving %x, want the old %x", s.name, got, good.Cert.SerialNumber)
		}
		if value(t, r.metrics.successful) != 0 {
			t.Fatalf("%s: last reload successful gauge is not 0", s.name)
		}
		if !strings.Contains(logs.String(), `"@level":"error","@message":"tls files rejected; still serving the previous certificate"`) ||
			!strings.Contains(logs.String(), `"key":"`+s.key+`"`) {
			t.Fatalf("%s: no error log with the key:\n%s", s.name, logs.String())
		}
	}
	if n := value(t, r.metrics.reloads.WithLabelValues("ok")); n != 0 {
		t.Fatalf("reloads ok = %v, want 0", n)
	}
	// Back to good files: the error clears.
	f.write(t, good)
	waitFor(t, "the error to clear", func() bool { return r.Status().LastError == "" })
	if value(t, r.metrics.successful) != 1 {
		t.Fatal("last reload successful gauge is not 1")
	}
}

// TestPairWrittenOneFileAfterTheOther: a new certificate written before
// its key is not served (a handshake never meets a mismatched pair) and
// not reported while PairGrace lasts; once the key follows, the new pair
// is served and no error was counted.
func TestPairWrittenOneFileAfterTheOther(t *testing.T) {
	ca := newTestCA(t)
	first, second := ca.issue(t, false), ca.issue(t, false)
	f := newFiles(t, first)
	var logs syncbuf.Buffer
	r := newReloader(t, Options{TLS: f.spec(), Logger: testLogger(&logs), PollInterval: 20 * time.Millisecond, PairGrace: time.Hour})
	addr := server(t, r)

	writeAtomic(t, f.cert, second.CertPEM) // the key is still the old one
	waitFor(t, "the incomplete pair noticed", func() bool { return strings.Contains(logs.String(), "waiting for the rest of the rotation") })
	if got := servedSerial(t, addr, ca.pool); got.Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatalf("serving %x while the key is old", got)
	}
	writeAtomic(t, f.key, second.KeyPEM)
	waitFor(t, "the new serial", func() bool { return servedSerial(t, addr, ca.pool).Cmp(second.Cert.SerialNumber) == 0 })
	if n := value(t, r.metrics.reloads.WithLabelValues("error")); n != 0 {
		t.Fatalf("reloads error = %v, want 0\n%s", n, logs.String())
	}
}

// TestMutualTLS: with a client CA file, a client without a certificate,
// or with one from another CA, is refused; one signed by the client CA
// gets in. A new client CA bundle applies to new connections.
func TestMutualTLS(t *testing.T) {
	serverCA, clientCA, otherCA := newTestCA(t), newTestCA(t), newTestCA(t)
	f := newFiles(t, serverCA.issue(t, false))
	writeAtomic(t, f.ca, clientCA.CertPEM)
	spec := f.spec()
	spec.ClientCAFile = f.ca
	r := newReloader(t, Options{TLS: spec, PollInterval: 20 * time.Millisecond})
	addr := server(t, r)

	clientPair := func(ca *testCA) tls.Certificate {
		p := ca.issue(t, true)
		c, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good, foreign := clientPair(clientCA), clientPair(otherCA)
	// try sends certs[0], if given, whatever CAs the server asks for (Go
	// sends none that does not match them).
	try := func(certs ...tls.Certificate) error {
		cfg := &tls.Config{RootCAs: serverCA.pool, ServerName: "localhost"}
		if len(certs) > 0 {
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
		}
		c, err := dial(addr, cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := try(); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("without a client certificate: %v; want certificate required", err)
	}
	if err := try(foreign); err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
		t.Fatalf("with a foreign client certificate: %v; want unknown certificate authority", err)
	}
	if err := try(good); err != nil {
		t.Fatalf("with a good client certificate: %v", err)
	}
	// The client CA bundle changes to the other CA: the former client is
	// out at its next connection, the other one in.
	writeAtomic(t, f.ca, otherCA.CertPEM)
	waitFor(t, "the new client CA", func() bool { return try(foreign) == nil })
	if err := try(good); err == nil {
		t.Fatal("a client of the removed CA still gets in")
	}
}

// TestMinVersion13 refuses a client that speaks TLS 1.2 at most.
func TestMinVersion13(t *testing.T) {
	ca := newTestCA(t)
	f := newFiles(t, ca.issue(t, false))
	spec := f.spec()
	spec.MinVersion = "1.3"
	r := newReloader(t, Options{TLS: spec})
	addr := server(t, r)
	_, err := dial(addr, &tls.Config{RootCAs: ca.pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12})
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.2 client: %v; want a protocol version alert", err)
	}
	c, err := dial(addr, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("version %x", v)
	}
}

// TestTLS12Suites: a TLS 1.2 client offering only CBC suites is refused;
// an AEAD one gets in.
func TestTLS12Suites(t *testing.T) {
	ca := newTestCA(t)
	f := newFiles(t, ca.issue(t, false))
	addr := server(t, newReloader(t, Options{TLS: f.spec()}))
	_, err := dial(addr, &tls.Config{RootCAs: ca.pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}})
	if err == nil {
		t.Fatal("a CBC-only TLS 1.2 client got in")
	}
	c, err := dial(addr, &tls.Config{RootCAs: ca.pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestUse: a config reload's new files are checked by Prepare and served
// by Use, and the watcher follows the new files.
func TestUse(t *testing.T) {
	ca := newTestCA(t)
	a, b, c := ca.issue(t, false), ca.issue(t, false), ca.issue(t, false)
	fa, fb := newFiles(t, a), newFiles(t, b)
	r := newReloader(t, Options{TLS: fa.spec(), PollInterval: 20 * time.Millisecond})
	addr := server(t, r)

	bad := fb.spec()
	bad.KeyFile = fa.key
	if _, err := r.Prepare(bad); err == nil || !strings.HasPrefix(err.Error(), KeyKeyFile) {
		t.Fatalf("Prepare of a mismatched pair: %v", err)
	}
	cand, err := r.Prepare(fb.spec())
	if err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, addr, ca.pool); got.Cmp(a.Cert.SerialNumber) != 0 {
		t.Fatal("Prepare served the candidate")
	}
	r.Use(cand)
	if got := servedSerial(t, addr, ca.pool); got.Cmp(b.Cert.SerialNumber) != 0 {
		t.Fatalf("after Use: serving %x", got)
	}
	fb.write(t, c)
	waitFor(t, "the new files followed", func() bool { return servedSerial(t, addr, ca.pool).Cmp(c.Cert.SerialNumber) == 0 })
}

// TestFolderRecreated: the folder of the files deleted and made again
// (watch lost) is watched again, and its new files served.
func TestFolderRecreated(t *testing.T) {
	ca := newTestCA(t)
	a, b := ca.issue(t, false), ca.issue(t, false)
	parent := t.TempDir()
	dir := filepath.Join(parent, "tls")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f := files{dir: dir, cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	f.write(t, a)
	r := newReloader(t, Options{TLS: f.spec(), PollInterval: 20 * time.Millisecond, PairGrace: time.Hour})
	addr := server(t, r)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f.write(t, b)
	waitFor(t, "the new serial", func() bool { return servedSerial(t, addr, ca.pool).Cmp(b.Cert.SerialNumber) == 0 })
}

func TestCloseWithoutStart(t *testing.T) {
	ca := newTestCA(t)
	f := newFiles(t, ca.issue(t, false))
	r, err := New(Options{TLS: f.spec()})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	r.Start()
	r.Close()
	r.Close()
}

// value reads a counter or gauge.
func value(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
