package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/datawarehouse/dw/config"
)

func newConfigCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check, compare and reload the host configuration",
	}
	var live bool
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a config file: offline (schema, paths), or with --live also against the running plugins",
		Long: "Check a config file. Offline it checks the schema (unknown keys, types, ranges) and the paths.\n" +
			"With --live the running host also asks every affected plugin to validate its limits; nothing changes.\n" +
			"Exit status 0 when the file is valid, 2 when it is not.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, cfg, err := readConfigFile(args[0])
			out := cmd.OutOrStdout()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			for _, w := range pathWarnings(cfg) {
				fmt.Fprintln(out, "warning:", w)
			}
			if !live {
				fmt.Fprintf(out, "%s: valid (offline check; use --live to ask the running plugins)\n", args[0])
				return nil
			}
			res, raw, err := postValidate(g, data)
			if err != nil {
				return err
			}
			if g.output == "json" {
				if err := printJSON(out, raw); err != nil {
					return err
				}
			} else {
				writeValidateResult(out, args[0], res)
			}
			if !res.OK {
				return &exitError{code: 2, err: errors.New(args[0] + " was rejected by the running host")}
			}
			return nil
		},
	}
	validate.Flags().BoolVar(&live, "live", false, "also validate against the running host's plugins (changes nothing)")

	diff := &cobra.Command{
		Use:   "diff FILE",
		Short: "Show what reloading FILE would change in the running host, and which plugins it would restart",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, _, err := readConfigFile(args[0])
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			res, raw, err := postValidate(g, data)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.output == "json" {
				return printJSON(out, raw)
			}
			writeValidateResult(out, args[0], res)
			return nil
		},
	}

	reload := &cobra.Command{
		Use:   "reload",
		Short: "Make the running host reload its config file now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := newAPIClient(g).do("POST", "/v1/config/reload", nil)
			out := cmd.OutOrStdout()
			if err != nil {
				if len(raw) > 0 && g.output == "json" {
					_ = printJSON(out, raw)
				}
				return err
			}
			if g.output == "json" {
				return printJSON(out, raw)
			}
			var res struct {
				Generation  uint64   `json:"generation"`
				ChangedKeys []string `json:"changed_keys"`
				Restarted   []string `json:"restarted"`
			}
			_ = json.Unmarshal(raw, &res)
			if len(res.ChangedKeys) == 0 {
				fmt.Fprintf(out, "reloaded: nothing changed (generation %d)\n", res.Generation)
				return nil
			}
			fmt.Fprintf(out, "reloaded: generation %d\n", res.Generation)
			for _, k := range res.ChangedKeys {
				fmt.Fprintf(out, "  changed %s\n", k)
			}
			for _, p := range res.Restarted {
				fmt.Fprintf(out, "  restarted %s\n", p)
			}
			return nil
		},
	}

	show := &cobra.Command{
		Use:   "show",
		Short: "Show the running config's generation, file and last reload",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := newAPIClient(g).getJSON("/v1/config", nil)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), raw)
		},
	}
	cmd.AddCommand(validate, diff, reload, show)
	return cmd
}

// readConfigFile reads and checks a config file offline.
func readConfigFile(path string) ([]byte, *config.Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, config.MaxFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > config.MaxFileSize {
		return nil, nil, fmt.Errorf("config %s: larger than %d bytes", path, config.MaxFileSize)
	}
	cfg, err := config.Parse(data, path)
	if err != nil {
		return nil, nil, err
	}
	return data, cfg, nil
}

// pathWarnings reports paths of cfg that a host could not use as they are.
func pathWarnings(cfg *config.Config) []string {
	var ws []string
	if st, err := os.Stat(cfg.Plugins.Dir); err != nil {
		ws = append(ws, fmt.Sprintf("plugins.dir: %s: %v (the host starts with no plugins)", cfg.Plugins.Dir, errors.Unwrap(err)))
	} else if !st.IsDir() {
		ws = append(ws, fmt.Sprintf("plugins.dir: %s is not a folder", cfg.Plugins.Dir))
	}
	if st, err := os.Stat(cfg.DataDir); err == nil && !st.IsDir() {
		ws = append(ws, fmt.Sprintf("data_dir: %s is not a folder", cfg.DataDir))
	}
	return ws
}

type validateResult struct {
	OK          bool              `json:"ok"`
	Problems    []json.RawMessage `json:"problems"`
	ChangedKeys []string          `json:"changed_keys"`
	Restarts    []string          `json:"restarts"`
}

func postValidate(g *globalFlags, data []byte) (validateResult, []byte, error) {
	var res validateResult
	raw, err := newAPIClient(g).doContent("POST", "/v1/config/validate", data, "application/yaml")
	if err != nil {
		return res, raw, err
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return res, raw, fmt.Errorf("POST /v1/config/validate: decode answer: %w", err)
	}
	return res, raw, nil
}

func writeValidateResult(w io.Writer, file string, res validateResult) {
	if res.OK {
		fmt.Fprintf(w, "%s: valid; the running plugins accept it\n", file)
	} else {
		fmt.Fprintf(w, "%s: REJECTED\n", file)
	}
	for _, p := range res.Problems {
		fmt.Fprintf(w, "  problem: %s\n", problemText(p))
	}
	if len(res.ChangedKeys) == 0 {
		fmt.Fprintln(w, "  no changes against the running config")
		return
	}
	restarts := map[string]bool{}
	for _, r := range res.Restarts {
		restarts[r] = true
	}
	for _, k := range res.ChangedKeys {
		note := "live"
		if parts := strings.SplitN(k, ".", 3); len(parts) >= 2 && parts[0] == "subsystems" && restarts[parts[1]] &&
			(len(parts) < 3 || !strings.HasPrefix(parts[2], "limits")) {
			note = "restarts " + parts[1]
		}
		fmt.Fprintf(w, "  %-60s %s\n", k, note)
	}
}

// problemText renders a problem that is either a string or an object with
// a message.
func problemText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var p struct {
		Path, Plugin, Message string
	}
	if json.Unmarshal(raw, &p) == nil && p.Message != "" {
		prefix := strings.TrimSpace(p.Plugin + " " + p.Path)
		if prefix != "" {
			return prefix + ": " + p.Message
		}
		return p.Message
	}
	return string(raw)
}
