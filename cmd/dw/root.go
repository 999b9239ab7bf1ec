package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// globalFlags are shared by the client subcommands.
type globalFlags struct {
	addr   string
	token  string
	output string
	tls    clientTLS

	// transport is built once, at the first request (client.go).
	transport    *http.Transport
	transportErr error
}

// clientTLS are the TLS options of the client commands.
type clientTLS struct {
	caCert     string // PEM bundle of the CAs trusted instead of the system's
	serverName string // the name verified in the host's certificate (and sent as SNI)
	clientCert string // client certificate for mutual TLS
	clientKey  string // its key
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "dw",
		Short: "dw hosts data-platform subsystems as out-of-process plugins",
		Long: "dw hosts data-platform subsystems as out-of-process plugins.\n\n`dw serve` runs the host; the other commands talk to a running host\n" +
			"(address from --addr or DW_ADDR, token from --token or DW_TOKEN). For a host\n" +
			"serving HTTPS, use an https:// address and trust its CA with --ca-cert or\n" +
			"DW_CACERT (dw tls init writes one).",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.addr, "addr", envOr("DW_ADDR", "127.0.0.1:7070"), "host API address (env DW_ADDR)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	// The defaults are not shown from the environment: --help must not
	// print a token.
	pf := root.PersistentFlags()
	pf.StringVar(&g.token, "token", "", "API token (env DW_TOKEN; the flag wins; prefer the variable: flags show in the process list)")
	pf.StringVar(&g.tls.caCert, "ca-cert", "", "PEM file of the CA(s) that signed the host's certificate; only those are trusted (env DW_CACERT)")
	pf.StringVar(&g.tls.serverName, "tls-server-name", "", "name to verify in the host's certificate, when it differs from the --addr host (env DW_TLS_SERVER_NAME)")
	pf.StringVar(&g.tls.clientCert, "client-cert", "", "client certificate (PEM) for a host that requires one (env DW_CLIENT_CERT)")
	pf.StringVar(&g.tls.clientKey, "client-key", "", "key of --client-cert (env DW_CLIENT_KEY)")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if g.output != "table" && g.output != "json" {
			return fmt.Errorf("--output %q: must be table or json", g.output)
		}
		for _, f := range []struct {
			v   *string
			env string
		}{{&g.token, "DW_TOKEN"}, {&g.tls.caCert, "DW_CACERT"}, {&g.tls.serverName, "DW_TLS_SERVER_NAME"},
			{&g.tls.clientCert, "DW_CLIENT_CERT"}, {&g.tls.clientKey, "DW_CLIENT_KEY"}} {
			if *f.v == "" {
				*f.v = os.Getenv(f.env)
			}
		}
		return nil
	}
	root.AddCommand(
		newServeCmd(),
		newVersionCmd(g),
		newStatusCmd(g),
		newPluginsCmd(g),
		newLimitsCmd(g),
		newMetricsCmd(g),
		newPluginCmd(g),
		newConfigCmd(g),
		newObjCmd(g),
		newFsCmd(g),
		newBackupCmd(g),
		newFabricCmd(g),
		newTLSCmd(),
	)
	return root
}
