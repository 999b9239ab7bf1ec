package tlsreload

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/internal/pki"
)

// MaxFileSize bounds each of the certificate, key and client CA files.
const MaxFileSize = 1 << 20

// Config keys, as errors name them.
const (
	KeyCertFile     = "server.tls.cert_file"
	KeyKeyFile      = "server.tls.key_file"
	KeyClientCAFile = "server.tls.client_ca_file"
	KeyMinVersion   = "server.tls.min_version"
)

// Error is a certificate, key or client CA file that cannot be served.
type Error struct {
	// Key is the config key of the file at fault (KeyCertFile…).
	Key string
	// Path is the file.
	Path string
	// Err says what is wrong.
	Err error
	// incomplete marks a state a rotation in progress passes through: a
	// missing or empty file, or a key that does not match the certificate
	// (one of the two files is new, the other not yet).
	incomplete bool
}

func (e *Error) Error() string { return fmt.Sprintf("%s %s: %v", e.Key, e.Path, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// contents are the bytes of the files of one config.TLS, read once:
// what is checked is what is served.
type contents struct {
	cert, key, ca []byte
}

// hash identifies the contents (and which files were read).
func (c contents) hash() [sha256.Size]byte {
	h := sha256.New()
	for _, b := range [][]byte{c.cert, c.key, c.ca} {
		_ = binary.Write(h, binary.BigEndian, uint64(len(b)))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// readFiles reads the files of spec, each at most MaxFileSize bytes.
func readFiles(spec config.TLS) (contents, error) {
	var c contents
	var err error
	if c.cert, err = readFile(KeyCertFile, spec.CertFile); err != nil {
		return c, err
	}
	if c.key, err = readFile(KeyKeyFile, spec.KeyFile); err != nil {
		return c, err
	}
	if spec.ClientCAFile != "" {
		if c.ca, err = readFile(KeyClientCAFile, spec.ClientCAFile); err != nil {
			return c, err
		}
	}
	return c, nil
}

func readFile(key, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{Key: key, Path: path, Err: err, incomplete: errors.Is(err, fs.ErrNotExist)}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	switch {
	case err != nil:
		return nil, &Error{Key: key, Path: path, Err: err}
	case len(b) > MaxFileSize:
		return nil, &Error{Key: key, Path: path, Err: fmt.Errorf("larger than %d bytes; a PEM file of certificates or a key is a few KiB", MaxFileSize)}
	case len(bytes.TrimSpace(b)) == 0:
		return nil, &Error{Key: key, Path: path, Err: errors.New("is empty"), incomplete: true}
	}
	return b, nil
}

// state is one servable configuration: a checked key pair, the client
// CAs, and the tls.Config built from them.
type state struct {
	spec config.TLS
	hash [sha256.Size]byte
	leaf *x509.Certificate
	cfg  *tls.Config
	at   time.Time
}

// cipherSuites are the TLS 1.2 suites offered: ECDHE key exchange with an
// AEAD cipher only (TLS 1.3 suites are not configurable and all AEAD).
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// nextProtos are the ALPN protocols offered: HTTP/2 first (see the
// package doc), then HTTP/1.1.
var nextProtos = []string{"h2", "http/1.1"}

// minVersion maps server.tls.min_version to a tls version.
func minVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, &Error{Key: KeyMinVersion, Path: v, Err: errors.New(`must be "1.2" or "1.3"`)}
}

// build checks c, read from the files of spec, at now, and returns the
// state that serves it.
func build(spec config.TLS, c contents, now time.Time) (*state, error) {
	certErr := func(err error) error { return &Error{Key: KeyCertFile, Path: spec.CertFile, Err: err} }
	keyErr := func(err error, incomplete bool) error {
		return &Error{Key: KeyKeyFile, Path: spec.KeyFile, Err: err, incomplete: incomplete}
	}
	mv, err := minVersion(spec.MinVersion)
	if err != nil {
		return nil, err
	}
	chain, err := pki.ParseCertificates(c.cert)
	if err != nil {
		return nil, certErr(err)
	}
	leaf := chain[0]
	key, err := pki.ParsePrivateKey(c.key)
	if err != nil {
		return nil, keyErr(err, false)
	}
	if !pki.KeyMatches(leaf, key) {
		return nil, keyErr(fmt.Errorf("does not match the certificate of %s (serial %s, %s)", KeyCertFile, serialHex(leaf), describe(leaf)), true)
	}
	switch {
	case now.Before(leaf.NotBefore):
		return nil, certErr(fmt.Errorf("certificate %s is not valid before %s (now %s): check the clocks", describe(leaf),
			leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
	case now.After(leaf.NotAfter):
		return nil, certErr(fmt.Errorf("certificate %s expired at %s; issue a new one (dw tls init --force issues one with the existing CA)",
			describe(leaf), leaf.NotAfter.UTC().Format(time.RFC3339)))
	case len(leaf.ExtKeyUsage) > 0 && !slices.ContainsFunc(leaf.ExtKeyUsage, func(u x509.ExtKeyUsage) bool {
		return u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny
	}):
		return nil, certErr(fmt.Errorf("certificate %s is not for server authentication (no serverAuth extended key usage): is it a client certificate?", describe(leaf)))
	}
	ders := make([][]byte, len(chain))
	for i, x := range chain {
		ders[i] = x.Raw
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: ders, PrivateKey: key, Leaf: leaf}},
		MinVersion:   mv,
		CipherSuites: cipherSuites,
		NextProtos:   nextProtos,
	}
	if spec.ClientCAFile != "" {
		cas, err := pki.ParseCertificates(c.ca)
		if err != nil {
			return nil, &Error{Key: KeyClientCAFile, Path: spec.ClientCAFile, Err: err}
		}
		pool := x509.NewCertPool()
		for _, ca := range cas {
			pool.AddCert(ca)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		// A resumed session skips the client certificate check against
		// the current pool: without tickets, a CA removed from the bundle
		// locks its clients out at their next connection.
		cfg.SessionTicketsDisabled = true
	}
	return &state{spec: spec, hash: c.hash(), leaf: leaf, cfg: cfg, at: now}, nil
}

// describe names a certificate: its subject and names.
func describe(c *x509.Certificate) string {
	names := c.DNSNames
	for _, ip := range c.IPAddresses {
		names = append(slices.Clip(names), ip.String())
	}
	if len(names) == 0 {
		return fmt.Sprintf("%q", c.Subject.CommonName)
	}
	return fmt.Sprintf("%q for %s", c.Subject.CommonName, strings.Join(names, ", "))
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }
