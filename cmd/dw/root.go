package main

import (
	"errors"
	"fmt"

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
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "dw",
		Short:         "dw hosts data-platform subsystems as out-of-process plugins",
		Long:          "dw hosts data-platform subsystems as out-of-process plugins.\n\n`dw serve` runs the host; the other commands talk to a running host\n(address from --addr or DW_ADDR, token from DW_TOKEN).",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.addr, "addr", envOr("DW_ADDR", "127.0.0.1:7070"), "host API address (env DW_ADDR)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	g.token = envOr("DW_TOKEN", "")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if g.output != "table" && g.output != "json" {
			return fmt.Errorf("--output %q: must be table or json", g.output)
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
	)
	return root
}
