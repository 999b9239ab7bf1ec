package api

// The fabric endpoints under /v1/fabric, served by the Fabric gRPC service
// of the fabric subsystem's plugin (sdk/proto/dw/v1/fabric.proto).
//
//	GET /v1/fabric        → this node's view of the fabric (FabricStatus)
//	GET /v1/fabric/nodes  ?limit=&page_token= → {"nodes":[node…],"next_page_token"}
//
// HTTP behaviours chosen here (the plugin knows the fabric; this file
// checks the request syntax before any plugin call):
//
//   - GET /v1/fabric takes no query parameter. GET /v1/fabric/nodes takes
//     limit, an integer from 1 to 1000 (left out: the plugin's default,
//     100), and page_token, the next_page_token of the previous page
//     unchanged (at most 4 KiB of UTF-8 without control characters, the
//     rule of every listing: pageQuery); the plugin says whether a token is
//     one of its own (a foreign one is 400 there). An empty
//     next_page_token means the last page.
//   - Other query parameters, or one given twice, are 400, as on every
//     route. A fabric subsystem that is not loaded, disabled or down is
//     503, like the backups without dataprotection. Each call is bounded
//     by the request timeout.
//   - JSON: the proto's snake_case names; node states as lowercase words
//     ("alive", "suspect", "dead", "left"; a value this host does not know
//     is "unknown"); durations as Go duration strings ("15s", "1.2ms");
//     times RFC 3339 with nanoseconds in UTC; a node's last_heartbeat is
//     left out while it has none; lists are [] rather than null.

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// FabricSubsystem is the subsystem whose plugin serves the fabric behind
// /v1/fabric.
const FabricSubsystem = "fabric"

const (
	fabricPath = "/v1/fabric"
	// MaxFabricPageSize bounds the limit of GET /v1/fabric/nodes.
	MaxFabricPageSize = 1000
	// DefaultFabricPageSize is the page size of GET /v1/fabric/nodes
	// without a limit (the Fabric contract's default).
	DefaultFabricPageSize = 100
)

// registerFabricRoutes adds the /v1/fabric routes.
func (s *Server) registerFabricRoutes() {
	s.handle(Route{Pattern: "GET " + fabricPath, Scope: ScopeRead, Subsystem: FabricSubsystem}, http.HandlerFunc(s.fabricStatus))
	s.handle(Route{Pattern: "GET " + fabricPath + "/nodes", Scope: ScopeRead, Subsystem: FabricSubsystem}, http.HandlerFunc(s.listFabricNodes))
}

// serveFabric answers a checked request r with one call of the fabric
// plugin's Fabric service, under the request's context carrying the
// caller and bounded by the request timeout; answer writes its result. A
// plugin that is missing, disabled or down is 503; an error of the call
// says what was asked (what: "list fabric nodes") and maps to its status.
func serveFabric[T any](s *Server, w http.ResponseWriter, r *http.Request, what string,
	call func(context.Context, dwv1.FabricClient) (T, error), answer func(T)) {
	conn, err := s.storeConn(FabricSubsystem, "fabric")
	if err != nil {
		WriteError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(callerCtx(r), s.requestTimeout)
	defer cancel()
	resp, err := call(ctx, dwv1.NewFabricClient(conn))
	if err != nil {
		WriteError(w, pluginError(r, fmt.Errorf("%s: %w", what, err)))
		return
	}
	answer(resp)
}

// FabricStatus is GET /v1/fabric: this node's view of the fabric.
// Topology is the topology in force (star, mesh or federated), MaxNodes
// its max_nodes; Recommendation is empty when the switching rules
// recommend nothing; Switches and Refusals are newest first; Hub is set in
// a star, Gateways (one per federation) in a federated fabric; Role is
// hub, leaf, member or gateway.
type FabricStatus struct {
	NodeID               string           `json:"node_id"`
	Federation           string           `json:"federation"`
	BindAddress          string           `json:"bind_address"`
	Topology             string           `json:"topology"`
	TopologyEpoch        uint64           `json:"topology_epoch"`
	NodeCount            int64            `json:"node_count"`
	MaxNodes             int64            `json:"max_nodes"`
	Limits               FabricLimits     `json:"limits"`
	Recommendation       string           `json:"recommendation"`
	RecommendationReason string           `json:"recommendation_reason"`
	Switches             []TopologySwitch `json:"switches"`
	Refusals             []JoinRefusal    `json:"refusals"`
	Hub                  string           `json:"hub"`
	Gateways             []string         `json:"gateways"`
	Role                 string           `json:"role"`
	Encrypted            bool             `json:"encrypted"`
	HeartbeatsPerSecond  float64          `json:"heartbeats_per_second"`
}

// FabricLimits are the fabric's limits in force; HeartbeatInterval is a
// Go duration string ("15s").
type FabricLimits struct {
	MaxNodes          FabricMaxNodes  `json:"max_nodes"`
	Topology          string          `json:"topology"`
	Switching         FabricSwitching `json:"switching"`
	HeartbeatInterval string          `json:"heartbeat_interval"`
	MissedHeartbeats  int64           `json:"missed_heartbeats"`
}

// FabricMaxNodes is max_nodes per topology.
type FabricMaxNodes struct {
	Star      int64 `json:"star"`
	Mesh      int64 `json:"mesh"`
	Federated int64 `json:"federated"`
}

// FabricSwitching is the topology switching rule: Mode auto, recommend or
// off; UpAt and DownAt fractions of max_nodes.
type FabricSwitching struct {
	Mode   string  `json:"mode"`
	UpAt   float64 `json:"up_at"`
	DownAt float64 `json:"down_at"`
}

// TopologySwitch is a switch made (Applied) or recommended; At is RFC 3339.
type TopologySwitch struct {
	At      string `json:"at"`
	From    string `json:"from"`
	To      string `json:"to"`
	Reason  string `json:"reason"`
	Applied bool   `json:"applied"`
}

// JoinRefusal is a join refused because of max_nodes: ByPeer when a peer
// refused this node, else this node refused NodeID. At is RFC 3339.
type JoinRefusal struct {
	At      string `json:"at"`
	NodeID  string `json:"node_id"`
	Address string `json:"address"`
	Reason  string `json:"reason"`
	ByPeer  bool   `json:"by_peer"`
}

// FabricNode is one node of GET /v1/fabric/nodes: State "alive",
// "suspect", "dead" or "left"; LastHeartbeat RFC 3339, nil (left out)
// while this node has not heard the node's heartbeat; RTT a Go duration
// string; Self for the node answering; Watched when the two heartbeat
// each other's way.
type FabricNode struct {
	ID            string  `json:"id"`
	Address       string  `json:"address"`
	APIAddress    string  `json:"api_address"`
	Federation    string  `json:"federation"`
	Version       string  `json:"version"`
	State         string  `json:"state"`
	LastHeartbeat *string `json:"last_heartbeat,omitempty"`
	Missed        int64   `json:"missed"`
	RTT           string  `json:"rtt"`
	Role          string  `json:"role"`
	Self          bool    `json:"self"`
	Watched       bool    `json:"watched"`
}

// FabricNodes is GET /v1/fabric/nodes: one page of nodes by id;
// NextPageToken is empty on the last page.
type FabricNodes struct {
	Nodes         []FabricNode `json:"nodes"`
	NextPageToken string       `json:"next_page_token"`
}

// durationString is d as a Go duration string; unset is "0s".
func durationString(d *durationpb.Duration) string { return d.AsDuration().String() }

func toFabricStatus(st *dwv1.FabricStatus) FabricStatus {
	l := st.GetLimits()
	out := FabricStatus{
		NodeID: st.GetNodeId(), Federation: st.GetFederation(), BindAddress: st.GetBindAddress(),
		Topology: st.GetTopology(), TopologyEpoch: st.GetTopologyEpoch(), NodeCount: st.GetNodeCount(), MaxNodes: st.GetMaxNodes(),
		Limits: FabricLimits{
			MaxNodes:          FabricMaxNodes{Star: l.GetMaxNodes().GetStar(), Mesh: l.GetMaxNodes().GetMesh(), Federated: l.GetMaxNodes().GetFederated()},
			Topology:          l.GetTopology(),
			Switching:         FabricSwitching{Mode: l.GetSwitching().GetMode(), UpAt: finite(l.GetSwitching().GetUpAt()), DownAt: finite(l.GetSwitching().GetDownAt())},
			HeartbeatInterval: durationString(l.GetHeartbeatInterval()),
			MissedHeartbeats:  l.GetMissedHeartbeats(),
		},
		Recommendation: st.GetRecommendation(), RecommendationReason: st.GetRecommendationReason(),
		Switches: make([]TopologySwitch, len(st.GetSwitches())), Refusals: make([]JoinRefusal, len(st.GetRefusals())),
		Hub: st.GetHub(), Gateways: orEmpty(st.GetGateways()), Role: st.GetRole(), Encrypted: st.GetEncrypted(),
		HeartbeatsPerSecond: finite(st.GetHeartbeatsPerSecond()),
	}
	for i, sw := range st.GetSwitches() {
		out.Switches[i] = TopologySwitch{At: rfc3339(sw.GetAt()), From: sw.GetFrom(), To: sw.GetTo(), Reason: sw.GetReason(), Applied: sw.GetApplied()}
	}
	for i, rf := range st.GetRefusals() {
		out.Refusals[i] = JoinRefusal{At: rfc3339(rf.GetAt()), NodeID: rf.GetNodeId(), Address: rf.GetAddress(), Reason: rf.GetReason(), ByPeer: rf.GetByPeer()}
	}
	return out
}

func toFabricNode(n *dwv1.FabricNode) FabricNode {
	return FabricNode{
		ID: n.GetId(), Address: n.GetAddress(), APIAddress: n.GetApiAddress(), Federation: n.GetFederation(), Version: n.GetVersion(),
		State: enumWord(n.GetState().String(), "NODE_STATE_"), LastHeartbeat: optionalTime(n.GetLastHeartbeat()),
		Missed: n.GetMissed(), RTT: durationString(n.GetRtt()), Role: n.GetRole(), Self: n.GetSelf(), Watched: n.GetWatched(),
	}
}

// fabricStatus serves GET /v1/fabric.
func (s *Server) fabricStatus(w http.ResponseWriter, r *http.Request) {
	if err := noQuery(r, "GET "+fabricPath); err != nil {
		WriteError(w, err)
		return
	}
	serveFabric(s, w, r, "get fabric status", func(ctx context.Context, c dwv1.FabricClient) (*dwv1.FabricStatus, error) {
		return c.GetStatus(ctx, &dwv1.GetStatusRequest{})
	}, func(st *dwv1.FabricStatus) { WriteJSON(w, http.StatusOK, toFabricStatus(st)) })
}

// fabricPageQuery checks the query of GET /v1/fabric/nodes: limit from 1
// to MaxFabricPageSize (0: not given) and page_token (see pageQuery).
func fabricPageQuery(raw string) (token string, limit int32, err error) {
	q, err := parseQuery(raw, "GET "+fabricPath+"/nodes", "limit", "page_token")
	if err != nil {
		return "", 0, err
	}
	if v, ok := q["limit"]; ok {
		// pageQuery allows any positive int32; a fabric page is smaller.
		if n, err := strconv.ParseInt(v, 10, 32); !allDigits(v) || err != nil || n < 1 || n > MaxFabricPageSize {
			return "", 0, fmt.Errorf("limit %s: %w: must be an integer from 1 to %d (left out: %d)",
				shown(v), sdk.ErrInvalidArgument, MaxFabricPageSize, DefaultFabricPageSize)
		}
	}
	return pageQuery(q)
}

// listFabricNodes serves GET /v1/fabric/nodes.
func (s *Server) listFabricNodes(w http.ResponseWriter, r *http.Request) {
	token, limit, err := fabricPageQuery(r.URL.RawQuery)
	if err != nil {
		WriteError(w, err)
		return
	}
	serveFabric(s, w, r, "list fabric nodes", func(ctx context.Context, c dwv1.FabricClient) (*dwv1.ListNodesResponse, error) {
		return c.ListNodes(ctx, &dwv1.ListNodesRequest{PageSize: limit, PageToken: token})
	}, func(resp *dwv1.ListNodesResponse) {
		out := FabricNodes{Nodes: make([]FabricNode, len(resp.GetNodes())), NextPageToken: resp.GetNextPageToken()}
		for i, n := range resp.GetNodes() {
			out.Nodes[i] = toFabricNode(n)
		}
		WriteJSON(w, http.StatusOK, out)
	})
}
