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
	"github.com/datawarehouse/dw/host"
)

func newConfigCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check, compare and reload the host configuration",
	}
	var live bool
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a config file: offline (the host's keys, and every enabled plugin's settings and limits), or with --live against the running plugins",
		Long: "Check a config file.\n\n" +
			"Offline it checks the host's keys (unknown keys, types, ranges) and the paths, then the section of\n" +
			"every enabled subsystem with its plugin from plugins.dir: it starts each binary briefly (handshake,\n" +
			"GetInfo and ValidateLimits only; never Configure, so the plugin opens nothing), checks the settings\n" +
			"and limits against the schema the plugin reports (types, bounds, enums, unknown keys with a\n" +
			"suggestion), and asks the plugin to validate the limits (rules between keys). A plugin of sdk 6.0\n" +
			"reports no schema: its limits are checked by ValidateLimits alone. An enabled subsystem without a\n" +
			"binary is a warning: its section is not checked. Settings rules a plugin applies in Configure\n" +
			"(a folder that must exist, a DSN that must be set) are only checked when it starts.\n\n" +
			"With --live the running host asks every affected plugin instead; nothing changes.\n" +
			"Exit status 0 when the file is valid, 2 when it is not.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, cfg, err := readConfigFile(args[0])
			out := cmd.OutOrStdout()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if !live {
				rep := checkPlugins(cmd.Context(), cfg)
				rep.Warnings = append(rep.Warnings, pathWarnings(cfg)...)
				return writeOfflineResult(out, g, args[0], rep)
			}
			for _, w := range pathWarnings(cfg) {
				fmt.Fprintln(out, "warning:", w)
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
	var schemaConfig string
	schema := &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the config file, with the sections of the plugins in plugins.dir",
		Long: "Print the JSON Schema (draft 2020-12) of the config file: the host's keys, and the section of every\n" +
			"plugin found in plugins.dir (of --config, else of " + defaultConfigPath + " when it exists, else of the\n" +
			"embedded defaults), from the schema each plugin reports (each binary is started briefly: handshake and\n" +
			"GetInfo only). Other subsystems get a section with enabled and limits only.\n\n" +
			"Editors check and complete the file with it through yaml-language-server: save the output, e.g.\n" +
			"  dw config schema > dw.schema.json\n" +
			"and put this line at the top of the config file:\n" +
			"  # yaml-language-server: $schema=./dw.schema.json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfigForPlugins(schemaConfig, cmd.Flags().Changed("config"))
			if err != nil {
				return err
			}
			schemas, err := pluginSchemas(cmd.Context(), cfg, func(w string) { fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w) })
			if err != nil {
				return err
			}
			return writeJSON(cmd.OutOrStdout(), config.JSONSchema(schemas))
		},
	}
	schema.Flags().StringVarP(&schemaConfig, "config", "c", defaultConfigPath, "config file whose plugins.dir holds the plugins")
	cmd.AddCommand(validate, diff, reload, show, schema)
	return cmd
}

// writeOfflineResult prints the outcome of an offline validation and
// returns an exit error when the file is invalid.
func writeOfflineResult(w io.Writer, g *globalFlags, file string, rep offlineReport) error {
	if g.output == "json" {
		for _, l := range []*[]string{&rep.Warnings, &rep.Notes} {
			if *l == nil {
				*l = []string{}
			}
		}
		if rep.Problems == nil {
			rep.Problems = []host.Problem{}
		}
		if err := writeJSON(w, struct {
			File string `json:"file"`
			OK   bool   `json:"ok"`
			offlineReport
		}{file, len(rep.Problems) == 0, rep}); err != nil {
			return err
		}
	} else {
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "config %s: %s\n", file, p)
		}
		for _, n := range rep.Warnings {
			fmt.Fprintln(w, "warning:", n)
		}
		for _, n := range rep.Notes {
			fmt.Fprintln(w, "note:", n)
		}
		if len(rep.Problems) == 0 {
			fmt.Fprintf(w, "%s: valid (offline check; use --live to ask the running plugins)\n", file)
		}
	}
	if n := len(rep.Problems); n > 0 {
		noun := "problems"
		if n == 1 {
			noun = "problem"
		}
		return &exitError{code: 2, err: fmt.Errorf("%s: invalid: %d %s", file, n, noun)}
	}
	return nil
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

// writeJSON writes v as indented JSON, with <, > and & as they are (JSON
// Schema descriptions mention dw-plugin-<name>).
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
