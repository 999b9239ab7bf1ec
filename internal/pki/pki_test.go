package pki

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseNames(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(long63+".", 3) + strings.Repeat("b", 61) // 64*3 + 61 = 253
	for _, tc := range []struct {
		in      []string
		dns     string // comma-joined
		ips     string
		wantErr string
	}{
		{in: []string{"localhost", "127.0.0.1", "::1", "Example.COM"}, dns: "localhost,example.com", ips: "127.0.0.1,::1"},
		{in: []string{"*.example.com", "a-b.c"}, dns: "*.example.com,a-b.c"},
		{in: []string{"::ffff:10.0.0.1"}, ips: "10.0.0.1"},
		{in: []string{"x", "x", "X"}, dns: "x"},
		{in: []string{name253}, dns: name253},
		{in: []string{long63 + ".com"}, dns: long63 + ".com"},
		{in: nil, wantErr: "no names"},
		{in: []string{""}, wantErr: `name "": is empty`},
		{in: []string{"*"}, wantErr: `a wildcard needs at least two labels`},
		{in: []string{"*.com"}, wantErr: `a wildcard needs at least two labels`},
		{in: []string{"a.*.com"}, wantErr: `leftmost label only`},
		{in: []string{"a*.example.com"}, wantErr: `has "*" inside a label`},
		{in: []string{name253 + "c"}, wantErr: "is 254 characters long; at most 253"},
		{in: []string{long63 + "a.com"}, wantErr: "is 64 characters long; at most 63"},
		{in: []string{"bad_name"}, wantErr: `has the character '_'`},
		{in: []string{"a b"}, wantErr: `has the character ' '`},
		{in: []string{"-a.com"}, wantErr: "starts or ends with a hyphen"},
		{in: []string{"a..com"}, wantErr: "two dots in a row"},
		{in: []string{"example.com."}, wantErr: "ends with a dot"},
		{in: []string{".example.com"}, wantErr: "starts with a dot"},
		{in: []string{"bücher.de"}, wantErr: "xn-- (punycode)"},
		{in: []string{"256.1.1.1"}, wantErr: "looks like an IP address"},
		{in: []string{"fe80::1%eth0"}, wantErr: "has a zone"},
		{in: []string{"a\x00b"}, wantErr: `has the character '\x00'`},
		{in: []string{"http://x"}, wantErr: `has the character ':'`},
		{in: make([]string, MaxNames+1), wantErr: "101 names: at most 100"},
	} {
		dns, ips, err := ParseNames(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseNames(%q): %v; want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseNames(%q): %v", tc.in, err)
			continue
		}
		var ipStrs []string
		for _, ip := range ips {
			ipStrs = append(ipStrs, ip.String())
		}
		if strings.Join(dns, ",") != tc.dns || strings.Join(ipStrs, ",") != tc.ips {
			t.Errorf("ParseNames(%q) = %q %q; want %q %q", tc.in, dns, ipStrs, tc.dns, tc.ips)
		}
	}
}

// FuzzParseNames: accepted names are what a certificate can hold and a
// client can verify against.
func FuzzParseNames(f *testing.F) {
	for _, s := range []string{"localhost", "*.example.com", "127.0.0.1", "::1", "a..b", "bücher.de", "*", "fe80::1%eth0", strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dns, ips, err := ParseNames([]string{s})
		if err != nil {
			if !utf8.ValidString(err.Error()) && utf8.ValidString(s) {
				t.Fatalf("error is not valid UTF-8: %q", err)
			}
			return
		}
		if len(dns)+len(ips) != 1 {
			t.Fatalf("%q gave %q %v", s, dns, ips)
		}
		for _, d := range dns {
			if len(d) > MaxNameLen || strings.ContainsAny(d, " _/:%") || d != strings.ToLower(d) {
				t.Fatalf("accepted %q", d)
			}
		}
	})
}

func TestIssue(t *testing.T) {
	now := time.Now()
	ca, err := NewCA(now, 5*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Issue(Request{Names: []string{"localhost", "127.0.0.1"}, Now: now, Validity: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, name := range []string{"localhost", "127.0.0.1"} {
		if _, err := p.Cert.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := p.Cert.Verify(x509.VerifyOptions{DNSName: "other", Roots: pool}); err == nil {
		t.Error("verified for a name it does not hold")
	}
	if !p.Cert.NotBefore.Before(now) {
		t.Error("NotBefore is not backdated")
	}
	// Reload the CA from its PEM and issue with it.
	again, err := LoadCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Issue(Request{Names: []string{"x"}, Now: now, Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
	// A certificate outliving its CA, an expired CA, a pair that is not a
	// CA and a key that is not the CA's are refused.
	if _, err := ca.Issue(Request{Names: []string{"x"}, Now: now, Validity: 6 * 365 * 24 * time.Hour}); err == nil || !strings.Contains(err.Error(), "after its ca") {
		t.Errorf("outliving the CA: %v", err)
	}
	if _, err := ca.Issue(Request{Names: []string{"x"}, Now: now.Add(6 * 365 * 24 * time.Hour), Validity: time.Hour}); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("expired CA: %v", err)
	}
	if _, err := LoadCA(p.CertPEM, p.KeyPEM); err == nil || !strings.Contains(err.Error(), "is not a CA certificate") {
		t.Errorf("LoadCA of a server pair: %v", err)
	}
	if _, err := LoadCA(ca.CertPEM, p.KeyPEM); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("LoadCA with another key: %v", err)
	}
}
