package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/datawarehouse/dw/host"
	"github.com/datawarehouse/dw/host/api"
	"github.com/datawarehouse/dw/host/supervisor"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

func newVersionCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the dw and SDK versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := map[string]any{
				"version":          host.Version,
				"sdk_version":      sdk.Version,
				"protocol_version": pluginhost.ProtocolVersion,
				"accepts_sdk":      pluginhost.AcceptedRange(sdk.Version),
			}
			if g.output == "json" {
				raw, _ := json.Marshal(v)
				return printJSON(cmd.OutOrStdout(), raw)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dw %s (sdk %s, plugin protocol %d; accepts plugins built with sdk %s)\n",
				host.Version, sdk.Version, pluginhost.ProtocolVersion, pluginhost.AcceptedRange(sdk.Version))
			return nil
		},
	}
}

func newStatusCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show whether the host is ready and the state of every plugin",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := newAPIClient(g)
			readyRaw, readyErr := c.getJSON("/readyz", nil)
			if readyErr != nil && !isAPIStatus(readyErr, 503) {
				return readyErr
			}
			var pl api.PluginList
			raw, err := c.getJSON("/v1/plugins", &pl)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.output == "json" {
				var ready any
				_ = json.Unmarshal(readyRaw, &ready)
				var plugins any
				_ = json.Unmarshal(raw, &plugins)
				merged, _ := json.Marshal(map[string]any{"ready": readyErr == nil, "readyz": ready, "plugins": plugins})
				return printJSON(out, merged)
			}
			if readyErr == nil {
				fmt.Fprintf(out, "host %s: ready\n\n", c.base)
			} else {
				fmt.Fprintf(out, "host %s: NOT ready\n\n", c.base)
			}
			return writePluginTable(out, pl.Plugins)
		},
	}
}

func writePluginTable(w io.Writer, ps []supervisor.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tVERSION\tSDK\tPID\tRESTARTS\tUPTIME\tLAST ERROR")
	for _, p := range ps {
		uptime := "-"
		if p.State == supervisor.StateServing && !p.StartedAt.IsZero() {
			uptime = time.Since(p.StartedAt).Round(time.Second).String()
		}
		pid := "-"
		if p.PID > 0 {
			pid = fmt.Sprint(p.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Name, p.State, dash(p.Version), dash(p.SDKVersion), pid, p.Restarts, uptime, dash(oneLine(p.LastError)))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func newPluginsCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List plugins with version, SDK, state, pid, restarts, checksum",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var pl api.PluginList
			raw, err := newAPIClient(g).getJSON("/v1/plugins", &pl)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			return writePluginTable(cmd.OutOrStdout(), pl.Plugins)
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "restart NAME",
		Short: "Restart a plugin (also brings it out of quarantine)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := newAPIClient(g).do("POST", "/v1/plugins/"+url.PathEscape(args[0])+"/restart", []byte("{}"))
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restarted %s\n", args[0])
			return nil
		},
	})
	return cmd
}

func newLimitsCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "limits NAME",
		Short: "Show the limits in force for a subsystem",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var v struct {
				Subsystem  string         `json:"subsystem"`
				Generation uint64         `json:"generation"`
				Limits     map[string]any `json:"limits"`
			}
			raw, err := newAPIClient(g).getJSON("/v1/subsystems/"+url.PathEscape(args[0])+"/limits", &v)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s limits (config generation %d)\n", v.Subsystem, v.Generation)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tVALUE")
			writeFlat(tw, "", v.Limits)
			return tw.Flush()
		},
	}
}

// writeFlat prints a nested map as dotted keys, sorted.
func writeFlat(w io.Writer, prefix string, m map[string]any) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := m[k].(map[string]any); ok && len(sub) > 0 {
			writeFlat(w, key, sub)
			continue
		}
		raw, _ := json.Marshal(m[k])
		fmt.Fprintf(w, "%s\t%s\n", key, raw)
	}
}

func newMetricsCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "metrics NAME",
		Short: "Show a subsystem's scaling metrics and backpressure",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var v struct {
				Subsystem    string `json:"subsystem"`
				Backpressure string `json:"backpressure"`
				Reason       string `json:"reason"`
				Metrics      []struct {
					Name   string            `json:"name"`
					Kind   string            `json:"kind"`
					Value  float64           `json:"value"`
					Labels map[string]string `json:"labels"`
					// Sum is a number, or "NaN", "+Inf", "-Inf".
					Histogram *struct {
						Count uint64 `json:"count"`
						Sum   any    `json:"sum"`
					} `json:"histogram"`
				} `json:"metrics"`
			}
			raw, err := newAPIClient(g).getJSON("/v1/subsystems/"+url.PathEscape(args[0])+"/metrics", &v)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s backpressure: %s", v.Subsystem, v.Backpressure)
			if v.Reason != "" {
				fmt.Fprintf(out, " (%s)", v.Reason)
			}
			fmt.Fprintln(out)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "METRIC\tKIND\tVALUE\tLABELS")
			for _, m := range v.Metrics {
				var labels []string
				for _, k := range slices.Sorted(maps.Keys(m.Labels)) {
					labels = append(labels, k+"="+m.Labels[k])
				}
				value := fmt.Sprintf("%g", m.Value)
				if h := m.Histogram; h != nil {
					value = fmt.Sprintf("count=%d sum=%v", h.Count, h.Sum)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.Kind, value, dash(strings.Join(labels, ",")))
			}
			return tw.Flush()
		},
	}
}
