package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/datawarehouse/dw/internal/pki"
)

// httpTransport returns the transport of every client command, built once
// from the global TLS options. A bad option (an unreadable CA file, a
// client certificate without its key) is returned by the first request.
//
// Decisions: with --ca-cert (DW_CACERT), only the CAs of that file are
// trusted, not the system pool (as Consul does): a dw host's certificate
// comes from a private CA, and a public CA has no business vouching for
// it. Without it, the system pool is used (a host behind a certificate of
// a public CA). The client speaks HTTP/1.1 (net/http's default with a
// custom TLS configuration): one connection per transfer, and large bodies
// move faster than over HTTP/2's flow control (host/tls_bench_test.go).
func (g *globalFlags) httpTransport() (*http.Transport, error) {
	if g.transport != nil || g.transportErr != nil {
		return g.transport, g.transportErr
	}
	cfg, err := g.tls.config()
	if err != nil {
		g.transportErr = err
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	tr.ForceAttemptHTTP2 = false
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	g.transport = tr
	return tr, nil
}

// config builds the client TLS configuration.
func (o clientTLS) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.serverName}
	if o.serverName != "" {
		if _, _, err := pki.ParseNames([]string{o.serverName}); err != nil {
			return nil, fmt.Errorf("--tls-server-name (DW_TLS_SERVER_NAME): %w", err)
		}
	}
	if o.caCert != "" {
		data, err := os.ReadFile(o.caCert)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert (DW_CACERT) %s: %w", o.caCert, err)
		}
		cas, err := pki.ParseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert (DW_CACERT) %s: %w", o.caCert, err)
		}
		pool := x509.NewCertPool()
		for _, c := range cas {
			pool.AddCert(c)
		}
		cfg.RootCAs = pool
	}
	switch {
	case o.clientCert != "" && o.clientKey == "":
		return nil, fmt.Errorf("--client-cert (DW_CLIENT_CERT) %s is set but --client-key (DW_CLIENT_KEY) is not; give both", o.clientCert)
	case o.clientCert == "" && o.clientKey != "":
		return nil, fmt.Errorf("--client-key (DW_CLIENT_KEY) %s is set but --client-cert (DW_CLIENT_CERT) is not; give both", o.clientKey)
	case o.clientCert != "":
		pair, err := tls.LoadX509KeyPair(o.clientCert, o.clientKey)
		if err != nil {
			return nil, fmt.Errorf("--client-cert %s and --client-key %s: %w", o.clientCert, o.clientKey, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// baseURL turns --addr into the API's base URL: host:port means http://;
// http:// and https:// are taken as given.
func baseURL(addr string) (string, error) {
	base := strings.TrimRight(addr, "/")
	if !strings.Contains(base, "://") {
		return "http://" + base, nil
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("--addr (DW_ADDR) %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("--addr (DW_ADDR) %q: the scheme must be http:// or https://, got %s://", addr, u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("--addr (DW_ADDR) %q: no host:port after %s://", addr, u.Scheme)
	}
	return base, nil
}

// reachError explains a request that got no answer: TLS problems get a
// sentence that says what to do; the cause stays wrapped.
func reachError(base string, err error) error {
	if hint := tlsHint(base, err); hint != "" {
		return fmt.Errorf("reach dw host at %s: %s: %w", base, hint, err)
	}
	return fmt.Errorf("reach dw host at %s (set --addr or DW_ADDR): %w", base, err)
}

// tlsHint is what to do about a TLS failure, or "".
func tlsHint(base string, err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
	)
	msg := err.Error()
	switch {
	case errors.As(err, &unknown):
		who := ""
		if c := unknown.Cert; c != nil {
			who = fmt.Sprintf(" (%q, issued by %q)", c.Subject.CommonName, c.Issuer.CommonName)
		}
		return "the host's certificate" + who + " is signed by a CA this CLI does not trust: pass --ca-cert or set DW_CACERT " +
			"to the CA that signed it (e.g. the ca.pem written by dw tls init)"
	case errors.As(err, &hostname):
		return fmt.Sprintf("the host's certificate is for %s, not for %q: connect with one of those names, or pass --tls-server-name with one of them",
			certNames(hostname.Certificate), hostname.Host)
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired && invalid.Cert != nil {
			return fmt.Sprintf("the host's certificate is valid from %s to %s, not now (%s): renew it (dw tls init --force) or check this machine's clock",
				invalid.Cert.NotBefore.UTC().Format(time.RFC3339), invalid.Cert.NotAfter.UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339))
		}
		return "the host's certificate is not valid: " + invalid.Error()
	case errors.As(err, &record), strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return "the host serves plain HTTP, not HTTPS: use " + strings.Replace(base, "https://", "http://", 1)
	case strings.Contains(msg, "tls: certificate required"):
		return "the host requires a client certificate (mutual TLS): pass --client-cert and --client-key (or DW_CLIENT_CERT and DW_CLIENT_KEY)"
	case strings.Contains(msg, "remote error: tls: unknown certificate authority"), strings.Contains(msg, "remote error: tls: bad certificate"):
		return "the host refused the client certificate: it must be signed by a CA of the host's server.tls.client_ca_file"
	case strings.Contains(msg, "remote error: tls: protocol version not supported"):
		return "the host refuses the TLS version offered (server.tls.min_version)"
	}
	return ""
}

// certNames lists a certificate's DNS names and IP addresses.
func certNames(c *x509.Certificate) string {
	if c == nil {
		return "other names"
	}
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return fmt.Sprintf("no name (common name %q only)", c.Subject.CommonName)
	}
	return strings.Join(names, ", ")
}

// plainToTLS is the message for the answer a TLS server gives a plain
// HTTP request (400 "Client sent an HTTP request to an HTTPS server."),
// or "" for any other answer.
func plainToTLS(resp *http.Response, body []byte) string {
	if resp.StatusCode != http.StatusBadRequest || resp.TLS != nil || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
		return ""
	}
	u := *resp.Request.URL
	u.Scheme, u.Path, u.RawPath, u.RawQuery = "https", "", "", ""
	return "the host serves HTTPS: use " + u.String() + " (--addr or DW_ADDR), and --ca-cert or DW_CACERT for its CA"
}
