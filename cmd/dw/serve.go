package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host"
)

// defaultConfigPath is used when --config is not given and the file exists;
// otherwise the host runs on the embedded defaults.
const defaultConfigPath = "config/dw.yaml"

func newServeCmd() *cobra.Command {
	var (
		configPath string
		drain      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the dw host",
		Long: "Run the dw host: load the config, start every plugin in plugins.dir, serve the HTTP API.\n" +
			"Without --config it reads " + defaultConfigPath + " when that file exists, else the embedded defaults.\n" +
			"SIGINT or SIGTERM stop it gracefully.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), configPath, cmd.Flags().Changed("config"), drain)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", defaultConfigPath, "config file (YAML)")
	cmd.Flags().DurationVar(&drain, "drain-timeout", host.DefaultDrainTimeout, "how long shutdown waits for in-flight requests")
	return cmd
}

func serve(ctx context.Context, path string, explicit bool, drain time.Duration) error {
	path = configPath(path, explicit)
	opts := host.Options{ConfigPath: path, DrainTimeout: drain}
	var cfg *config.Config
	if path == "" {
		c, err := config.Load("") // the embedded defaults and the environment
		if err != nil {
			return err
		}
		cfg = c
	} else {
		// Read once: the bytes parsed are the bytes hashed, so the host's
		// file watcher knows the content in force.
		b, err := config.ReadFile(path)
		if err != nil {
			return err
		}
		if cfg, err = config.Parse(b, path); err != nil {
			return err
		}
		opts.ConfigFileHash = config.HashContent(b)
	}
	opts.Logger = host.NewLogger(cfg.Log)
	if path == "" {
		opts.Logger.Info("no config file; running on the embedded defaults", "looked_for", defaultConfigPath)
	}

	return host.Run(ctx, cfg, opts)
}
