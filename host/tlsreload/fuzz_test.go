package tlsreload

import (
	"testing"
	"time"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/internal/pki"
)

// FuzzBuild: whatever the certificate and key files hold, build never
// panics, and what it accepts is a pair whose key matches its leaf,
// valid at the time of the check. The seed corpus (testdata/fuzz) holds a
// good pair, a mismatched one and damaged PEM.
func FuzzBuild(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, cert, key []byte) {
		now := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
		st, err := build(config.TLS{CertFile: "c.pem", KeyFile: "k.pem"}, contents{cert: cert, key: key}, now)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		k, err := pki.ParsePrivateKey(key)
		if err != nil || !pki.KeyMatches(st.leaf, k) {
			t.Fatalf("accepted a key that does not match: %v", err)
		}
		if now.Before(st.leaf.NotBefore) || now.After(st.leaf.NotAfter) {
			t.Fatalf("accepted a certificate not valid at %s", now)
		}
	})
}
