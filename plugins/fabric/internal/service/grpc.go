package service

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/datawarehouse/dw/plugins/fabric/internal/node"
	"github.com/datawarehouse/dw/plugins/internal/token64"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// Page sizes of ListNodes.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	// maxTokenBytes bounds a page token (base64 of a node id).
	maxTokenBytes = 512
)

// GetStatus returns this node's view of the fabric.
func (s *Service) GetStatus(context.Context, *dwv1.GetStatusRequest) (*dwv1.FabricStatus, error) {
	n, err := s.running("fabric status")
	if err != nil {
		return nil, err
	}
	return statusProto(n.Status()), nil
}

func statusProto(st node.Status) *dwv1.FabricStatus {
	out := &dwv1.FabricStatus{
		NodeId:               st.ID,
		Federation:           st.Federation,
		BindAddress:          st.BindAddr,
		Topology:             string(st.Topology),
		TopologyEpoch:        st.Epoch,
		NodeCount:            int64(st.NodeCount),
		MaxNodes:             int64(st.MaxNodes),
		Limits:               limitsProto(st.Limits),
		Recommendation:       string(st.Recommendation),
		RecommendationReason: st.RecommendationReason,
		Hub:                  st.Hub,
		Gateways:             st.Gateways,
		Role:                 st.Role,
		Encrypted:            st.Encrypted,
		HeartbeatsPerSecond:  st.HeartbeatsPerSecond,
	}
	for _, sw := range st.Switches {
		out.Switches = append(out.Switches, &dwv1.TopologySwitch{At: ts(sw.At), From: string(sw.From), To: string(sw.To), Reason: sw.Reason, Applied: sw.Applied})
	}
	for _, r := range st.Refusals {
		out.Refusals = append(out.Refusals, &dwv1.JoinRefusal{At: ts(r.At), NodeId: r.NodeID, Address: r.Address, Reason: r.Reason, ByPeer: r.ByPeer})
	}
	return out
}

func limitsProto(l node.Limits) *dwv1.FabricLimits {
	return &dwv1.FabricLimits{
		MaxNodes:          &dwv1.MaxNodes{Star: int64(l.MaxNodes.Star), Mesh: int64(l.MaxNodes.Mesh), Federated: int64(l.MaxNodes.Federated)},
		Topology:          string(l.Topology),
		Switching:         &dwv1.Switching{Mode: string(l.Switching.Mode), UpAt: l.Switching.UpAt, DownAt: l.Switching.DownAt},
		HeartbeatInterval: durationpb.New(l.HeartbeatInterval),
		MissedHeartbeats:  int64(l.MissedHeartbeats),
	}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// ListNodes pages through the known nodes by id.
func (s *Service) ListNodes(_ context.Context, req *dwv1.ListNodesRequest) (*dwv1.ListNodesResponse, error) {
	size, after, err := pageRequest(req)
	if err != nil {
		return nil, err
	}
	n, err := s.running("list fabric nodes")
	if err != nil {
		return nil, err
	}
	nodes, more := n.NodesPage(after, size)
	out := &dwv1.ListNodesResponse{Nodes: make([]*dwv1.FabricNode, 0, len(nodes))}
	for _, ni := range nodes {
		out.Nodes = append(out.Nodes, nodeProto(ni))
	}
	if more && len(nodes) > 0 {
		out.NextPageToken = pageToken(nodes[len(nodes)-1].ID)
	}
	return out, nil
}

// pageRequest checks a ListNodes request: the page size and the id the
// page starts after.
func pageRequest(req *dwv1.ListNodesRequest) (size int, after string, err error) {
	size = int(req.GetPageSize())
	switch {
	case size == 0:
		size = defaultPageSize
	case size < 0 || size > maxPageSize:
		return 0, "", fmt.Errorf("list fabric nodes: %w: page_size %d; from 1 to %d (0 for %d)", sdk.ErrInvalidArgument, size, maxPageSize, defaultPageSize)
	}
	tok := req.GetPageToken()
	if tok == "" {
		return size, "", nil
	}
	if len(tok) > maxTokenBytes {
		return 0, "", fmt.Errorf("list fabric nodes: %w: page_token of %d bytes; at most %d; pass next_page_token of the previous page unchanged", sdk.ErrInvalidArgument, len(tok), maxTokenBytes)
	}
	b, err := token64.Decode(tok)
	if err != nil {
		return 0, "", fmt.Errorf("list fabric nodes: %w: page_token is not a token of this listing (%v); pass next_page_token of the previous page unchanged", sdk.ErrInvalidArgument, err)
	}
	after, ok := strings.CutPrefix(string(b), tokenPrefix)
	if !ok || after == "" {
		return 0, "", fmt.Errorf("list fabric nodes: %w: page_token is not a token of this listing; pass next_page_token of the previous page unchanged", sdk.ErrInvalidArgument)
	}
	return size, after, nil
}

// tokenPrefix marks a page token of ListNodes, so that a token of another
// listing (or any other base64) is refused instead of read as a node id.
const tokenPrefix = "fabric-nodes/v1\x00"

// pageToken is the token of the page after the node id last.
func pageToken(last string) string {
	return token64.Encode([]byte(tokenPrefix + last))
}

var stateProto = map[node.State]dwv1.NodeState{
	node.StateAlive:   dwv1.NodeState_NODE_STATE_ALIVE,
	node.StateSuspect: dwv1.NodeState_NODE_STATE_SUSPECT,
	node.StateDead:    dwv1.NodeState_NODE_STATE_DEAD,
	node.StateLeft:    dwv1.NodeState_NODE_STATE_LEFT,
}

func nodeProto(ni node.NodeInfo) *dwv1.FabricNode {
	out := &dwv1.FabricNode{
		Id:            ni.ID,
		Address:       ni.Address,
		ApiAddress:    ni.APIAddress,
		Federation:    ni.Federation,
		Version:       ni.Version,
		State:         stateProto[ni.State],
		LastHeartbeat: ts(ni.LastHeartbeat),
		Missed:        int64(ni.Missed),
		Role:          ni.Role,
		Self:          ni.Self,
		Watched:       ni.Watched,
	}
	if ni.RTT > 0 {
		out.Rtt = durationpb.New(ni.RTT)
	}
	return out
}
