package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/datawarehouse/dw/internal/pki"
)

// CA and certificate lifetimes of dw tls init.
const (
	tlsCAValidity   = 5 * 365 * 24 * time.Hour
	tlsDefaultDays  = 365
	tlsMaxDays      = 3650
	tlsDefaultDir   = "tls"
	tlsCACertFile   = "ca.pem"
	tlsCAKeyFile    = "ca-key.pem"
	tlsServerPrefix = "server"
	tlsClientPrefix = "client"
)

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Make certificates for serving the API over HTTPS",
	}
	cmd.AddCommand(newTLSInitCmd())
	return cmd
}

// tlsInitFlags are the options of dw tls init.
type tlsInitFlags struct {
	dir           string
	names         []string
	days          int
	caCert, caKey string
	force, client bool
	now           func() time.Time
	hostname      func() (string, error)
}

func newTLSInitCmd() *cobra.Command {
	f := &tlsInitFlags{now: time.Now, hostname: os.Hostname}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a CA and a server certificate signed by it (or a new server certificate with an existing CA)",
		Long: `Writes into --dir (default ./tls), ECDSA P-256, as PEM:

  ca.pem, ca-key.pem (0600)          a new CA, valid 5 years; kept when they exist
  server.pem, server-key.pem (0600)  a server certificate for the --name values,
                                     valid --days days (default 365)

With an existing CA (ca.pem and ca-key.pem in --dir, or --ca-cert and
--ca-key), only a new server pair is issued: that is how a certificate is
rotated. Existing files are not overwritten without --force; a running
host picks a new pair up by itself. --client issues a client certificate
(client.pem, client-key.pem) for a host with server.tls.client_ca_file.

--name takes DNS names and IP addresses (repeat it, or separate with
commas); the default is localhost, 127.0.0.1, ::1 and this machine's host
name.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("name") && len(f.names) == 0 {
				return errors.New(`--name: name "": is empty; give a DNS name or an IP address`)
			}
			return f.run(cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", tlsDefaultDir, "folder to write the files into (created if missing)")
	fl.StringSliceVar(&f.names, "name", nil, "DNS name or IP address of the host (repeatable; default: localhost, 127.0.0.1, ::1 and the host name)")
	fl.IntVar(&f.days, "days", tlsDefaultDays, fmt.Sprintf("validity of the server (or client) certificate in days, 1 to %d", tlsMaxDays))
	fl.StringVar(&f.caCert, "ca-cert", "", "existing CA certificate to sign with (default: --dir/ca.pem when it exists)")
	fl.StringVar(&f.caKey, "ca-key", "", "key of --ca-cert")
	fl.BoolVar(&f.force, "force", false, "overwrite an existing server (or client) pair")
	fl.BoolVar(&f.client, "client", false, "issue a client certificate (client.pem, client-key.pem) instead of a server one")
	return cmd
}

// defaultTLSNames are localhost, the loopback addresses and the host
// name (when it is a valid DNS name).
func defaultTLSNames(hostname func() (string, error)) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := hostname(); err == nil && h != "" && h != "localhost" {
		if _, _, err := pki.ParseNames([]string{h}); err == nil {
			names = append(names, h)
		}
	}
	return names
}

func (f *tlsInitFlags) run(out io.Writer) error {
	if f.days < 1 || f.days > tlsMaxDays {
		return fmt.Errorf("--days %d: must be from 1 to %d", f.days, tlsMaxDays)
	}
	names := f.names
	if len(names) == 0 {
		names = defaultTLSNames(f.hostname)
	}
	if _, _, err := pki.ParseNames(names); err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	if f.dir == "" {
		return errors.New("--dir is empty")
	}
	dir, err := filepath.Abs(f.dir)
	if err != nil {
		return fmt.Errorf("--dir %s: %w", f.dir, err)
	}
	prefix := tlsServerPrefix
	if f.client {
		prefix = tlsClientPrefix
	}
	certPath, keyPath := filepath.Join(dir, prefix+".pem"), filepath.Join(dir, prefix+"-key.pem")
	if !f.force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s exists: pass --force to replace the pair (a running host picks the new one up by itself)", p)
			}
		}
	}
	now := f.now()

	ca, caCertPath, created, err := f.ca(dir, now)
	if err != nil {
		return err
	}
	pair, err := ca.Issue(pki.Request{Names: names, Client: f.client, Now: now, Validity: time.Duration(f.days) * 24 * time.Hour})
	if err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if created {
		// The key first: a ca.pem without its key would be taken for an
		// existing CA next time and refused.
		if err := writeFileAtomic(filepath.Join(dir, tlsCAKeyFile), ca.KeyPEM, 0o600); err != nil {
			return err
		}
		if err := writeFileAtomic(caCertPath, ca.CertPEM, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(out, "wrote the CA %q (valid until %s):\n  %s\n  %s (keep it secret; it signs certificates)\n",
			ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.DateOnly), caCertPath, filepath.Join(dir, tlsCAKeyFile))
	} else {
		fmt.Fprintf(out, "signed with the existing CA %q (%s)\n", ca.Cert.Subject.CommonName, caCertPath)
	}
	// Key, then certificate, each replaced atomically; a host watching
	// them waits for the second (see host/tlsreload).
	if err := writeFileAtomic(keyPath, pair.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(certPath, pair.CertPEM, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote the %s certificate for %s (serial %x, valid until %s):\n  %s\n  %s\n\n",
		prefix, strings.Join(names, ", "), pair.Cert.SerialNumber, pair.Cert.NotAfter.UTC().Format(time.DateOnly), certPath, keyPath)
	if f.client {
		fmt.Fprintf(out, "Serve with client certificates required (dw.yaml):\n\nserver:\n  tls:\n    client_ca_file: %s\n\n"+
			"and use this one from the CLI:\n\n  export DW_CLIENT_CERT=%s DW_CLIENT_KEY=%s\n", caCertPath, certPath, keyPath)
		return nil
	}
	fmt.Fprintf(out, "Serve HTTPS with (dw.yaml):\n\nserver:\n  tls:\n    cert_file: %s\n    key_file: %s\n\n"+
		"and point the CLI at the CA:\n\n  export DW_CACERT=%s\n  dw --addr https://%s:7070 status\n", certPath, keyPath, caCertPath, hostForURL(names[0]))
	return nil
}

// ca loads the CA to sign with (--ca-cert and --ca-key, or ca.pem and
// ca-key.pem of dir) or makes a new one (created).
func (f *tlsInitFlags) ca(dir string, now time.Time) (ca *pki.CA, certPath string, created bool, err error) {
	certPath, keyPath := f.caCert, f.caKey
	switch {
	case certPath != "" && keyPath == "":
		return nil, "", false, errors.New("--ca-cert needs --ca-key (the key that signs)")
	case certPath == "" && keyPath != "":
		return nil, "", false, errors.New("--ca-key needs --ca-cert")
	case certPath == "":
		certPath, keyPath = filepath.Join(dir, tlsCACertFile), filepath.Join(dir, tlsCAKeyFile)
		certOK, keyOK := exists(certPath), exists(keyPath)
		switch {
		case !certOK && !keyOK:
			ca, err := pki.NewCA(now, tlsCAValidity)
			return ca, certPath, true, err
		case certOK != keyOK:
			have, missing := certPath, keyPath
			if keyOK {
				have, missing = keyPath, certPath
			}
			return nil, "", false, fmt.Errorf("%s exists but %s does not: restore it, or remove %s to make a new CA", have, missing, have)
		}
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, "", false, fmt.Errorf("ca certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, "", false, fmt.Errorf("ca key: %w", err)
	}
	ca, err = pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		return nil, "", false, fmt.Errorf("%s, %s: %w", certPath, keyPath, err)
	}
	abs, err := filepath.Abs(certPath)
	if err != nil {
		return nil, "", false, err
	}
	return ca, abs, false, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

// hostForURL brackets an IPv6 address.
func hostForURL(name string) string {
	if strings.Contains(name, ":") {
		return "[" + name + "]"
	}
	return name
}

// writeFileAtomic writes data to path with mode perm through a temporary
// file in the same folder and a rename, so that a reader (a host watching
// the file) sees the old content or the new, never a part.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
