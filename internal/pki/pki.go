// Package pki issues the certificates of `dw tls init`: a private CA and
// server (or client) certificates signed by it, all ECDSA P-256, as PEM.
//
// Decisions:
//   - ECDSA P-256 everywhere: every TLS stack supports it, and a P-256
//     handshake costs a fraction of an RSA-2048 one (see the handshake
//     benchmarks in host/tls_bench_test.go).
//   - NotBefore is backdated by [Backdate] (5 minutes) so that a machine
//     whose clock is a little behind the issuer's accepts a fresh
//     certificate at once (Consul and Nomad backdate by one minute).
//   - Serial numbers are 128 random bits, as the CA/Browser Forum asks
//     (at least 64), so that a rotated certificate is told apart by its
//     serial.
//   - A certificate never outlives its CA: issuing one that would is an
//     error that says so, not a silently shortened certificate.
//   - Names are checked before anything is written ([ParseNames]): an
//     operator learns about "*" or "bad_name" from dw tls init, not from a
//     client's verification failure.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Backdate is how far before the issuing time a certificate's NotBefore
// is set.
const Backdate = 5 * time.Minute

// Name limits (RFC 1035): a DNS name of at most 253 characters in labels
// of 1 to 63.
const (
	MaxNameLen  = 253
	MaxLabelLen = 63
	// MaxNames bounds the names of one certificate.
	MaxNames = 100
)

// CA is a certificate authority: its certificate and private key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertPEM and KeyPEM are the PEM encodings of Cert and Key.
	CertPEM, KeyPEM []byte
}

// Pair is an issued certificate and its private key.
type Pair struct {
	Cert *x509.Certificate
	// CertPEM is the leaf certificate, KeyPEM its key (PKCS #8).
	CertPEM, KeyPEM []byte
}

// NewCA makes a self-signed CA valid from now-Backdate to now+validity.
func NewCA(now time.Time, validity time.Duration) (*CA, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("new ca: validity must be positive, got %s", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new ca: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "dw CA " + hex.EncodeToString(serial.Bytes()[:4]), Organization: []string{"dw"}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // Go fills in SubjectKeyId for a CA
	}
	p, err := sign(tmpl, tmpl, key, key)
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	return &CA{Cert: p.Cert, Key: key, CertPEM: p.CertPEM, KeyPEM: p.KeyPEM}, nil
}

// sign makes the certificate tmpl for key, signed by parent's signer, and
// returns it with key as PEM.
func sign(tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, signer crypto.Signer) (*Pair, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &Pair{Cert: cert, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// LoadCA reads a CA from PEM: the first certificate of certPEM and the
// private key of keyPEM, which must match it. It refuses a certificate
// that is not a CA.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := ParseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	cert := certs[0]
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("ca certificate: %q is not a CA certificate (basic constraints CA:FALSE)", cert.Subject.CommonName)
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	if !KeyMatches(cert, key) {
		return nil, fmt.Errorf("ca key: does not match the ca certificate %q", cert.Subject.CommonName)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// Request describes a certificate to issue.
type Request struct {
	// CommonName is the subject's common name; "" means the first name.
	CommonName string
	// Names are the DNS names and IP addresses, checked by ParseNames.
	Names []string
	// Client issues a client certificate (extended key usage clientAuth)
	// instead of a server one (serverAuth).
	Client bool
	// Now is the issuing time; Validity how long after it the certificate
	// expires.
	Now      time.Time
	Validity time.Duration
}

// Issue signs a new certificate and key for req.
func (ca *CA) Issue(req Request) (*Pair, error) {
	dns, ips, err := ParseNames(req.Names)
	if err != nil {
		return nil, err
	}
	if req.Validity <= 0 {
		return nil, fmt.Errorf("issue certificate: validity must be positive, got %s", req.Validity)
	}
	notAfter := req.Now.Add(req.Validity)
	if req.Now.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("issue certificate: the ca %q expired at %s; make a new ca", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if notAfter.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("issue certificate: it would expire at %s, after its ca %q (%s); ask for fewer days or make a new ca",
			notAfter.UTC().Format(time.RFC3339), ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue certificate: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	cn := req.CommonName
	if cn == "" && len(req.Names) > 0 {
		cn = strings.ToLower(req.Names[0])
	}
	usage := x509.ExtKeyUsageServerAuth
	if req.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"dw"}},
		NotBefore:             req.Now.Add(-Backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	p, err := sign(tmpl, ca.Cert, key, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	return p, nil
}

// ParseNames checks the names of a certificate and splits them into DNS
// names (lowercased) and IP addresses. Allowed: an IPv4 or IPv6 address
// (no zone), or a DNS name of ASCII letters, digits and hyphens in labels
// of 1 to 63 characters (no hyphen first or last), at most 253 characters
// in all, whose leftmost label may be "*" when at least two labels follow
// (*.example.com). Duplicates are dropped.
func ParseNames(names []string) (dns []string, ips []net.IP, err error) {
	if len(names) == 0 {
		return nil, nil, errors.New("no names: give at least one DNS name or IP address (--name)")
	}
	if len(names) > MaxNames {
		return nil, nil, fmt.Errorf("%d names: at most %d allowed", len(names), MaxNames)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if ip, ok := parseIP(n); ok {
			if !seen[ip.String()] {
				seen[ip.String()] = true
				ips = append(ips, net.IP(ip.AsSlice()))
			}
			continue
		}
		if err := checkDNSName(n); err != nil {
			return nil, nil, fmt.Errorf("name %q: %w", n, err)
		}
		l := strings.ToLower(n)
		if !seen[l] {
			seen[l] = true
			dns = append(dns, l)
		}
	}
	return dns, ips, nil
}

// parseIP parses an IP address without a zone.
func parseIP(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// checkDNSName checks one DNS name (see ParseNames).
func checkDNSName(n string) error {
	switch {
	case n == "":
		return errors.New("is empty")
	case len(n) > MaxNameLen:
		return fmt.Errorf("is %d characters long; at most %d allowed", len(n), MaxNameLen)
	case strings.Contains(n, "%"):
		return errors.New("has a zone (%); certificates hold IP addresses without one")
	case strings.HasSuffix(n, "."):
		return errors.New("ends with a dot; write the name without it")
	case strings.HasPrefix(n, "."):
		return errors.New("starts with a dot")
	}
	labels := strings.Split(n, ".")
	for i, l := range labels {
		if l == "*" {
			if i != 0 {
				return errors.New(`"*" is allowed as the leftmost label only`)
			}
			if len(labels) < 3 {
				return errors.New(`a wildcard needs at least two labels after "*." (*.example.com)`)
			}
			continue
		}
		if err := checkLabel(l); err != nil {
			return fmt.Errorf("label %q: %w", l, err)
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return errors.New("looks like an IP address but is not one (nor a DNS name: the last label is all digits)")
	}
	return nil
}

// checkLabel checks one label of a DNS name.
func checkLabel(l string) error {
	if l == "" {
		return errors.New("is empty (two dots in a row)")
	}
	if len(l) > MaxLabelLen {
		return fmt.Errorf("is %d characters long; at most %d allowed", len(l), MaxLabelLen)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-':
			if i == 0 || i == len(l)-1 {
				return errors.New("starts or ends with a hyphen")
			}
		case c == '*':
			return errors.New(`has "*" inside a label; only a whole leftmost label "*" is allowed`)
		case c >= 0x80:
			return errors.New("has non-ASCII characters; write an internationalized name in its xn-- (punycode) form")
		default:
			return fmt.Errorf("has the character %q; allowed are letters, digits and hyphens", rune(c))
		}
	}
	return nil
}

// ParseCertificates parses every CERTIFICATE block of a PEM bundle; it
// fails on a block of another type, on data that is not PEM, and when
// there is no certificate.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for n := 1; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("pem block %d is a %q, not a CERTIFICATE", n, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pem block %d: %w", n, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, fmt.Errorf("data after certificate %d is not PEM", len(certs))
	}
	return certs, nil
}

// ParsePrivateKey parses the first private key block of a PEM file:
// PKCS #8, PKCS #1 (RSA) or SEC 1 (EC).
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM private key found (expected -----BEGIN PRIVATE KEY-----, EC PRIVATE KEY or RSA PRIVATE KEY)")
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		var k any
		var err error
		switch b.Type {
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		default:
			return nil, fmt.Errorf("pem block %q: unsupported private key type (encrypted keys are not supported)", b.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("pem block %q: %w", b.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("pem block %q: key of type %T cannot sign", b.Type, k)
		}
		return s, nil
	}
}

// KeyMatches reports whether key is the private key of cert.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil // positive, never 0
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
