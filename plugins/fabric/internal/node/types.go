package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Topology is a way of wiring heartbeats between the nodes of a fabric.
// Moving "up" goes star → mesh → federated.
type Topology string

// The topologies, in the order of moving up.
const (
	TopologyStar      Topology = "star"
	TopologyMesh      Topology = "mesh"
	TopologyFederated Topology = "federated"
)

// topologies lists the topologies from the lowest to the highest.
var topologies = []Topology{TopologyStar, TopologyMesh, TopologyFederated}

// rank is the topology's position in the up order; -1 when unknown.
func (t Topology) rank() int {
	for i, x := range topologies {
		if x == t {
			return i
		}
	}
	return -1
}

// Mode says what the switching rules may do.
type Mode string

// The switching modes.
const (
	ModeAuto      Mode = "auto"      // the coordinator applies the recommendation
	ModeRecommend Mode = "recommend" // the recommendation is only reported
	ModeOff       Mode = "off"       // nothing is evaluated
)

// State is a node's health as seen by the node answering.
type State string

// The node states.
const (
	StateAlive   State = "alive"
	StateSuspect State = "suspect"
	StateDead    State = "dead"
	StateLeft    State = "left"
)

// The roles a node plays in a topology.
const (
	RoleHub     = "hub"
	RoleLeaf    = "leaf"
	RoleMember  = "member"
	RoleGateway = "gateway"
)

// MaxNodes is the largest fabric each topology allows.
type MaxNodes struct{ Star, Mesh, Federated int }

// For returns the maximum of topology t (0 for an unknown topology).
func (m MaxNodes) For(t Topology) int {
	switch t {
	case TopologyStar:
		return m.Star
	case TopologyMesh:
		return m.Mesh
	case TopologyFederated:
		return m.Federated
	}
	return 0
}

// largest is the largest of the three maxima.
func (m MaxNodes) largest() int { return max(m.Star, m.Mesh, m.Federated) }

// Switching holds the topology switching rules: move up when the node
// count reaches UpAt × the current topology's max, back down below
// DownAt × the lower topology's max.
type Switching struct {
	Mode         Mode
	UpAt, DownAt float64
}

// Limits are the fabric's live limits. The service validates them before
// they reach a Node (see Validate); Apply ignores invalid ones.
type Limits struct {
	MaxNodes          MaxNodes
	Topology          Topology
	Switching         Switching
	HeartbeatInterval time.Duration
	MissedHeartbeats  int
}

// Validate reports the first limit that is out of range, naming its key
// under limits and what is allowed.
func (l Limits) Validate() error {
	for _, m := range []struct {
		key string
		v   int
	}{{"star", l.MaxNodes.Star}, {"mesh", l.MaxNodes.Mesh}, {"federated", l.MaxNodes.Federated}} {
		if m.v < 1 {
			return fmt.Errorf("limits.max_nodes.%s is %d; it must be at least 1", m.key, m.v)
		}
	}
	if l.Topology.rank() < 0 {
		return fmt.Errorf("limits.topology is %q; allowed: star, mesh, federated", l.Topology)
	}
	switch l.Switching.Mode {
	case ModeAuto, ModeRecommend, ModeOff:
	default:
		return fmt.Errorf("limits.switching.mode is %q; allowed: auto, recommend, off", l.Switching.Mode)
	}
	if !(l.Switching.DownAt > 0 && l.Switching.DownAt < l.Switching.UpAt && l.Switching.UpAt <= 1) {
		return fmt.Errorf("limits.switching: up_at %g and down_at %g must satisfy 0 < down_at < up_at <= 1",
			l.Switching.UpAt, l.Switching.DownAt)
	}
	if l.HeartbeatInterval < time.Millisecond {
		return fmt.Errorf("limits.heartbeat_interval is %s; it must be at least 1ms", l.HeartbeatInterval)
	}
	if l.MissedHeartbeats < 1 {
		return fmt.Errorf("limits.missed_heartbeats is %d; it must be at least 1", l.MissedHeartbeats)
	}
	return nil
}

// Config is what a Node starts with. Everything but Limits needs a
// restart to change.
type Config struct {
	// ID names the node in the fabric (memberlist's node name); unique.
	ID string
	// Federation groups nodes in the federated topology ("" = "default").
	Federation string
	// APIAddress is the node's host API address, shared as metadata.
	APIAddress string
	// Version is the dw version the node runs, shared as metadata.
	Version string
	// BindAddr is the gossip "host:port" (UDP and TCP); port 0 picks a
	// free port (tests).
	BindAddr string
	// AdvertiseAddr is the "host[:port]" other nodes reach this one at;
	// "" = the bound address.
	AdvertiseAddr string
	// Join lists seed "host:port" addresses; unreachable or refusing
	// seeds are retried in the background.
	Join []string
	// SecretKey encrypts gossip (memberlist's keyring): nil, or 16, 24
	// or 32 bytes.
	SecretKey []byte
	Limits    Limits
	Logger    hclog.Logger
}

// Status is this node's view of the fabric.
type Status struct {
	ID, Federation, BindAddr string
	// Topology is the topology in force (agreed through gossip).
	Topology Topology
	// Epoch is the generation of the topology in force.
	Epoch uint64
	// NodeCount counts alive and suspect nodes, this one included.
	NodeCount int
	// MaxNodes is the max of the topology in force.
	MaxNodes int
	Limits   Limits
	// Recommendation is the topology the switching rules recommend now
	// (held for 3 evaluations); "" when none.
	Recommendation       Topology
	RecommendationReason string
	// Switches and Refusals are the most recent ones, newest first.
	Switches []Switch
	Refusals []Refusal
	// Hub is the star's hub; Gateways the federated topology's gateways,
	// one per federation, in federation order.
	Hub      string
	Gateways []string
	Role     string
	// Encrypted says whether gossip is encrypted.
	Encrypted bool
	// HeartbeatsPerSecond is the rate of heartbeats this node sent over
	// its last few heartbeat intervals.
	HeartbeatsPerSecond float64
}

// Switch is a topology switch applied (Applied) or recommended.
type Switch struct {
	At       time.Time
	From, To Topology
	Reason   string
	Applied  bool
}

// Refusal is a join refused because of max_nodes, seen from either side.
// NodeID is the node refused (for ByPeer, this node; for a fabric this
// node refused to join, the seed); Address is the other side's gossip
// address.
type Refusal struct {
	At                      time.Time
	NodeID, Address, Reason string
	ByPeer                  bool
}

// NodeInfo is one node as seen by the node answering.
type NodeInfo struct {
	ID, Address, APIAddress, Federation, Version string
	State                                        State
	// LastHeartbeat is when a heartbeat or an ack from the node last
	// arrived here; zero when none did.
	LastHeartbeat time.Time
	Missed        int
	RTT           time.Duration
	Role          string
	Self, Watched bool
}

// Stats are monotonic counters.
type Stats struct {
	HeartbeatsSent, HeartbeatsReceived, AcksSent, AcksReceived uint64
	JoinsRefused, JoinsRefusedByPeer                           uint64
	Switches, Recommendations, NodesDeclaredDead               uint64
}

// errClosed is returned by calls on a closed Node.
var errClosed = errors.New("fabric node closed")
