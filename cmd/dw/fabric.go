package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/datawarehouse/dw/host/api"
)

// The dw fabric commands speak the host's /v1/fabric API (see
// host/api/fabric.go), whose JSON types they decode.

const fabricPath = "/v1/fabric"

// maxFabricNodes and maxFabricPages bound what `dw fabric nodes` collects
// while it follows next_page_token: a host that keeps paging past them is
// broken.
const (
	maxFabricNodes = 1 << 20
	maxFabricPages = 1 << 14
)

func newFabricCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fabric",
		Short: "Show the fabric of dw nodes: topology, limits, switches, refused joins and node health (the fabric subsystem)",
		Long: "Show this host's view of the fabric, the cluster of dw nodes its fabric plugin belongs to, through the\n" +
			"host's /v1/fabric API: the topology in force and its epoch, the node count against max_nodes, the switching\n" +
			"recommendation, recent switches and refused joins (status), and every known node with its health (nodes).",
	}
	cmd.AddCommand(newFabricStatusCmd(g), newFabricNodesCmd(g))
	return cmd
}

func newFabricStatusCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Topology and epoch, node count of max_nodes, role, hub or gateways, recommendation, recent switches and refusals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st api.FabricStatus
			if printed, err := apiCall(cmd, g, newAPIClient(g), http.MethodGet, fabricPath, &st); printed || err != nil {
				return err
			}
			return writeFabricStatus(cmd.OutOrStdout(), st)
		},
	}
}

// percent is a fraction as a percentage: 0.9 → "90%".
func percent(f float64) string { return strconv.FormatFloat(f*100, 'f', -1, 64) + "%" }

// writeFabricStatus prints a fabric status: a field a line, then the
// recent switches and refused joins as tables.
func writeFabricStatus(w io.Writer, st api.FabricStatus) error {
	l := st.Limits
	node := st.NodeID
	if st.Federation != "" {
		node += " (federation " + st.Federation + ")"
	}
	rows := [][2]string{
		{"node", node},
		{"gossip", st.BindAddress},
		{"topology", fmt.Sprintf("%s (epoch %d)", dash(st.Topology), st.TopologyEpoch)},
		{"nodes", fmt.Sprintf("%d of %d", st.NodeCount, st.MaxNodes)},
		{"role", dash(st.Role)},
	}
	if st.Hub != "" {
		rows = append(rows, [2]string{"hub", st.Hub})
	}
	if len(st.Gateways) > 0 {
		rows = append(rows, [2]string{"gateways", strings.Join(st.Gateways, ", ")})
	}
	rec := "none"
	if st.Recommendation != "" {
		rec = st.Recommendation + prefixed(": ", oneLine(st.RecommendationReason))
	}
	encryption := "encrypted"
	if !st.Encrypted {
		encryption = "NOT encrypted (no key in the fabric's encrypt_key_env)"
	}
	rows = append(rows,
		[2]string{"recommendation", rec},
		[2]string{"switching", fmt.Sprintf("%s (up at %s, down at %s of max_nodes)", dash(l.Switching.Mode), percent(l.Switching.UpAt), percent(l.Switching.DownAt))},
		[2]string{"max nodes", fmt.Sprintf("star %d, mesh %d, federated %d (configured topology %s)", l.MaxNodes.Star, l.MaxNodes.Mesh, l.MaxNodes.Federated, dash(l.Topology))},
		[2]string{"heartbeats", fmt.Sprintf("every %s, dead after %d missed; sending %s/s", l.HeartbeatInterval, l.MissedHeartbeats,
			// Two decimals at most: 0.999976 shows as 1.
			strconv.FormatFloat(math.Round(st.HeartbeatsPerSecond*100)/100, 'f', -1, 64))},
		[2]string{"gossip encryption", encryption},
	)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Switches) > 0 {
		fmt.Fprintln(w, "\nrecent switches (newest first):")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tFROM\tTO\tAPPLIED\tREASON")
		for _, s := range st.Switches {
			applied := "yes"
			if !s.Applied {
				applied = "no (recommended)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", shortTime(&s.At), dash(s.From), dash(s.To), applied, dash(oneLine(s.Reason)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(st.Refusals) > 0 {
		fmt.Fprintln(w, "\nrecent refused joins (newest first):")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tNODE\tADDRESS\tREFUSED BY\tREASON")
		for _, r := range st.Refusals {
			by := "this node"
			if r.ByPeer {
				by = "peer"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", shortTime(&r.At), dash(r.NodeID), dash(r.Address), by, dash(oneLine(r.Reason)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func newFabricNodesCmd(g *globalFlags) *cobra.Command {
	var (
		limit     int
		pageToken string
	)
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the known nodes by id with their health: every page, or one with --limit / --page-token",
		Long: "List every node this host's fabric plugin knows, by id: alive and suspect ones, and dead or left ones still\n" +
			"in its bounded cache, with role, addresses, when their last heartbeat was heard, heartbeats missed in a\n" +
			"row and the round trip of the last one. Without --limit and --page-token it follows the pages to the end;\n" +
			"with either, it lists one page and says how to get the next. With -o json: the page as JSON, or all nodes\n" +
			"in one {\"nodes\":[…]} document.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if cmd.Flags().Changed("limit") {
				if limit < 1 || limit > api.MaxFabricPageSize {
					return fmt.Errorf("--limit %d: must be from 1 to %d", limit, api.MaxFabricPageSize)
				}
				q.Set("limit", strconv.Itoa(limit))
			}
			onePage := cmd.Flags().Changed("limit") || cmd.Flags().Changed("page-token")
			c, out := newAPIClient(g), cmd.OutOrStdout()
			var all api.FabricNodes
			seen := map[string]bool{}
			for token := pageToken; ; {
				if token != "" {
					q.Set("page_token", token)
				}
				path := fabricPath + "/nodes"
				if len(q) > 0 {
					path += "?" + q.Encode()
				}
				var page api.FabricNodes
				raw, err := c.getJSON(path, &page)
				if err != nil {
					if len(all.Nodes) > 0 {
						return fmt.Errorf("list fabric nodes: stopped after %d nodes: %w", len(all.Nodes), err)
					}
					return err
				}
				if onePage {
					if g.output == "json" {
						return printJSON(out, raw)
					}
					if err := writeFabricNodes(out, page.Nodes, time.Now()); err != nil {
						return err
					}
					if page.NextPageToken != "" {
						fmt.Fprintf(cmd.ErrOrStderr(), "more nodes follow: add --page-token %s\n", page.NextPageToken)
					}
					return nil
				}
				all.Nodes = append(all.Nodes, page.Nodes...)
				next := page.NextPageToken
				if next == "" {
					break
				}
				if seen[next] || next == token {
					return fmt.Errorf("list fabric nodes: the host gave page token %q again after %d nodes; stopped", next, len(all.Nodes))
				}
				if len(all.Nodes) > maxFabricNodes || len(seen) >= maxFabricPages {
					return fmt.Errorf("list fabric nodes: more than %d nodes or %d pages; stopped (page with --limit and --page-token)",
						maxFabricNodes, maxFabricPages)
				}
				seen[next], token = true, next
			}
			if g.output == "json" {
				if all.Nodes == nil {
					all.Nodes = []api.FabricNode{}
				}
				raw, err := json.Marshal(all)
				if err != nil {
					return err
				}
				return printJSON(out, raw)
			}
			return writeFabricNodes(out, all.Nodes, time.Now())
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, fmt.Sprintf("list one page of at most this many nodes (1 to %d; default: every page)", api.MaxFabricPageSize))
	cmd.Flags().StringVar(&pageToken, "page-token", "", "list the page after the one that gave this token")
	return cmd
}

// writeFabricNodes prints nodes as a table; LAST HEARTBEAT is how long
// before now it was heard. The answering node's id is marked "(self)".
func writeFabricNodes(w io.Writer, nodes []api.FabricNode, now time.Time) error {
	if len(nodes) == 0 {
		_, err := fmt.Fprintln(w, "no nodes")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tROLE\tADDRESS\tAPI\tFEDERATION\tLAST HEARTBEAT\tMISSED\tRTT")
	for _, n := range nodes {
		id := n.ID
		if n.Self {
			id += " (self)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", id, n.State, dash(n.Role), dash(n.Address), dash(n.APIAddress),
			dash(n.Federation), ago(n.LastHeartbeat, now), n.Missed, shortDuration(n.RTT))
	}
	return tw.Flush()
}

// ago says how long before now ts (RFC 3339) was: "1.5s ago", "3m12s
// ago"; "-" when unset. A time after now (the clocks of host and client
// differ) is "0s ago".
func ago(ts *string, now time.Time) string {
	if ts == nil {
		return "-"
	}
	t, err := time.Parse(time.RFC3339Nano, *ts)
	if err != nil {
		return *ts
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Second:
		d = d.Round(time.Millisecond)
	case d < time.Minute:
		d = d.Round(100 * time.Millisecond)
	case d < time.Hour:
		d = d.Round(time.Second)
	default:
		d = d.Round(time.Minute)
	}
	return d.String() + " ago"
}

// shortDuration is a Go duration string rounded for a table ("1.234ms");
// "-" for zero or empty.
func shortDuration(s string) string {
	d, err := time.ParseDuration(s)
	switch {
	case s == "" || err == nil && d == 0:
		return "-"
	case err != nil:
		return s
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}
