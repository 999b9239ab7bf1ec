package service

import (
	"context"
	"fmt"
	"time"

	"github.com/datawarehouse/dw/plugins/fabric/internal/node"
	"github.com/datawarehouse/dw/sdk/v6"
)

var topologies = []node.Topology{"star", "mesh", "federated"}

var states = []node.State{node.StateAlive, node.StateSuspect, node.StateDead, node.StateLeft}

// Metrics reports membership, heartbeats, refusals and switching.
func (s *Service) Metrics(context.Context) (sdk.Metrics, error) {
	n := s.node.Load()
	if n == nil {
		return sdk.Metrics{}, nil
	}
	st, stats := n.Status(), n.Stats()
	byState := n.CountByState()
	m := sdk.Metrics{}
	add := func(ms ...sdk.Metric) { m.Values = append(m.Values, ms...) }
	add(
		sdk.Gauge("nodes", "Alive and suspect nodes in the fabric, this one included.", float64(st.NodeCount)),
		sdk.Gauge("max_nodes", "max_nodes of the topology in force.", float64(st.MaxNodes)),
		sdk.Gauge("topology_epoch", "Generation of the topology in force; each switch raises it.", float64(st.Epoch)),
		sdk.Gauge("heartbeats_per_second", "Heartbeats this node sent per second, recently.", st.HeartbeatsPerSecond),
		sdk.Counter("heartbeats_sent_total", "Heartbeats sent.", float64(stats.HeartbeatsSent)),
		sdk.Counter("heartbeats_received_total", "Heartbeats received.", float64(stats.HeartbeatsReceived)),
		sdk.Counter("heartbeat_acks_sent_total", "Heartbeat acknowledgements sent.", float64(stats.AcksSent)),
		sdk.Counter("heartbeat_acks_received_total", "Heartbeat acknowledgements received.", float64(stats.AcksReceived)),
		sdk.Counter("joins_refused_total", "Joins refused for max_nodes, by side.", float64(stats.JoinsRefused), "side", "local"),
		sdk.Counter("joins_refused_total", "Joins refused for max_nodes, by side.", float64(stats.JoinsRefusedByPeer), "side", "peer"),
		sdk.Counter("topology_switches_total", "Topology switches adopted.", float64(stats.Switches)),
		sdk.Counter("topology_recommendations_total", "Topology switches recommended.", float64(stats.Recommendations)),
		sdk.Counter("nodes_declared_dead_total", "Nodes this node declared dead after missed heartbeats.", float64(stats.NodesDeclaredDead)),
	)
	for _, t := range topologies {
		v := 0.0
		if st.Topology == t {
			v = 1
		}
		add(sdk.Gauge("topology", "1 for the topology in force.", v, "topology", string(t)))
	}
	for _, state := range states {
		add(sdk.Gauge("nodes_by_state", "Known nodes by health state (dead and left while cached).", float64(byState[state]), "state", string(state)))
	}
	rec := 0.0
	if st.Recommendation != "" {
		rec = 1
	}
	add(sdk.Gauge("switch_recommended", "1 while the switching rules recommend a topology (label to).", rec, "to", string(st.Recommendation)))
	l := st.Limits
	switch {
	case st.MaxNodes > 0 && st.NodeCount >= st.MaxNodes:
		m.Backpressure = sdk.BackpressureSaturated
		m.Reason = fmt.Sprintf("%d nodes, max_nodes.%s is %d: joins are refused", st.NodeCount, st.Topology, st.MaxNodes)
	case st.MaxNodes > 0 && float64(st.NodeCount) >= l.Switching.UpAt*float64(st.MaxNodes):
		m.Backpressure = sdk.BackpressureElevated
		m.Reason = fmt.Sprintf("%d nodes, at least switching.up_at %g of max_nodes.%s %d", st.NodeCount, l.Switching.UpAt, st.Topology, st.MaxNodes)
	}
	return m, nil
}

// Health reports membership, the watched peers and gossip encryption.
func (s *Service) Health(context.Context) sdk.Health {
	n := s.node.Load()
	if n == nil {
		return sdk.Health{Status: sdk.HealthNotServing, Message: "the fabric node is not running"}
	}
	now := time.Now()
	st := n.Status()
	h := sdk.Health{Status: sdk.HealthServing,
		Message: fmt.Sprintf("node %s, %s topology, %d of at most %d nodes, role %s", st.ID, st.Topology, st.NodeCount, st.MaxNodes, st.Role)}
	suspect, dead := n.WatchedTrouble()
	peers := sdk.ComponentHealth{Name: "peers", Status: sdk.HealthServing, CheckedAt: now, Message: "every watched node answers"}
	if len(suspect)+len(dead) > 0 {
		peers.Status = sdk.HealthDegraded
		peers.Message = fmt.Sprintf("watched nodes suspect: %v; dead: %v", limitList(suspect), limitList(dead))
	}
	enc := sdk.ComponentHealth{Name: "gossip_encryption", Status: sdk.HealthServing, CheckedAt: now, Message: "gossip is encrypted (key from " + s.settings.keyEnv + ")"}
	if !st.Encrypted {
		enc.Status = sdk.HealthDegraded
		enc.Message = fmt.Sprintf("gossip is NOT encrypted: set subsystems.%s.encrypt_key_env to the name of an environment variable holding a base64 key of 16, 24 or 32 bytes", s.cfg.Subsystem)
		if !isLoopback(s.settings.bind) {
			h.Status = sdk.HealthDegraded
			h.Message += "; unencrypted gossip on a non-loopback address"
		}
	}
	membership := sdk.ComponentHealth{Name: "membership", Status: sdk.HealthServing, CheckedAt: now,
		Message: fmt.Sprintf("bound to %s, %d nodes, epoch %d", st.BindAddr, st.NodeCount, st.Epoch)}
	if st.Recommendation != "" {
		membership.Message += fmt.Sprintf("; recommends switching to %s: %s", st.Recommendation, st.RecommendationReason)
	}
	if p := n.JoinProblem(); p != "" {
		membership.Status = sdk.HealthDegraded
		membership.Message += "; " + p
		h.Status = sdk.HealthDegraded
		h.Message += "; " + p
	}
	h.Components = []sdk.ComponentHealth{membership, peers, enc}
	return h
}

// limitList shortens a list of ids for a message.
func limitList(ids []string) []string {
	if len(ids) > 10 {
		return append(ids[:10:10], fmt.Sprintf("and %d more", len(ids)-10))
	}
	return ids
}
