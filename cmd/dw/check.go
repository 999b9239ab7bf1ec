package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/sdk/v6/sdktest"
)

func newPluginCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "Work with plugin binaries",
	}
	var (
		settingsJSON string
		timeout      time.Duration
	)
	check := &cobra.Command{
		Use:   "check PATH",
		Short: "Run the SDK conformance suite against a plugin binary",
		Long: "Run the same conformance suite as sdktest.Run against the plugin binary at PATH:\n" +
			"handshake, GetInfo and SDK compatibility, limits validation and application,\n" +
			"metrics, health, graceful shutdown, and exit when the host dies.\n" +
			"Exit status 0 when every check passes, 2 when one fails.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts sdktest.Options
			if settingsJSON != "" {
				if err := json.Unmarshal([]byte(settingsJSON), &opts.Settings); err != nil {
					return fmt.Errorf("--settings: must be a JSON object: %w", err)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			rep, err := sdktest.Check(ctx, args[0], opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.output == "json" {
				raw, err := json.Marshal(rep)
				if err != nil {
					return err
				}
				if err := printJSON(out, raw); err != nil {
					return err
				}
			} else if err := rep.WriteText(out); err != nil {
				return err
			}
			if !rep.Passed() {
				return &exitError{code: 2, err: errors.New("plugin " + args[0] + " failed the conformance suite")}
			}
			return nil
		},
	}
	check.Flags().StringVar(&settingsJSON, "settings", "", "settings to Configure the plugin with, as a JSON object")
	check.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "time bound for the whole suite")
	var docsConfig string
	docs := &cobra.Command{
		Use:   "docs NAME|PATH",
		Short: "Print the Markdown reference of a plugin's limits and settings",
		Long: "Print the Markdown reference of a plugin's limits and settings (key, type, default, allowed values,\n" +
			"whether a change applies live, and what it does), from the schema the plugin reports. NAME is a\n" +
			"plugin in plugins.dir (of --config, else of " + defaultConfigPath + " when it exists, else of the embedded\n" +
			"defaults); a PATH (with a /) is a plugin binary. The binary is started briefly: handshake and GetInfo\n" +
			"only. With -o json it prints the schema itself.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfigForPlugins(docsConfig, cmd.Flags().Changed("config"))
			if err != nil {
				return err
			}
			path, name := args[0], filepath.Base(args[0])
			if strings.ContainsRune(args[0], filepath.Separator) {
				name = strings.TrimPrefix(name, supervisor.BinaryPrefix)
			} else {
				// "kvcache" or the binary's name "dw-plugin-kvcache".
				name = strings.TrimPrefix(args[0], supervisor.BinaryPrefix)
				if path, err = supervisor.BinaryPath(cfg.Plugins.Dir, name); err != nil {
					return err
				}
			}
			p, err := probe(cmd.Context(), cfg, path)
			if err != nil {
				return err
			}
			defer p.Stop()
			if g.output == "json" {
				return writeJSON(cmd.OutOrStdout(), p.Info.Schema)
			}
			_, err = io.WriteString(cmd.OutOrStdout(), p.Info.Schema.Markdown(name))
			return err
		},
	}
	docs.Flags().StringVarP(&docsConfig, "config", "c", defaultConfigPath, "config file whose plugins.dir holds the plugins")
	cmd.AddCommand(check, docs)
	return cmd
}
