package api

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// fakeFabric is a Fabric service over memory: a fixed status and nodes
// paged by id (the page token is the last id of the previous page). The
// func fields, when set, replace one method.
type fakeFabric struct {
	dwv1.UnimplementedFabricServer

	GetStatusFunc func(*dwv1.GetStatusRequest) (*dwv1.FabricStatus, error)
	ListNodesFunc func(*dwv1.ListNodesRequest) (*dwv1.ListNodesResponse, error)

	mu    sync.Mutex
	nodes []*dwv1.FabricNode // sorted by id
	callLog
}

var _ dwv1.FabricServer = (*fakeFabric)(nil)

func newFakeFabric() *fakeFabric {
	f := &fakeFabric{}
	for i, id := range []string{"n1", "n2", "n3", "n4", "n5"} {
		f.nodes = append(f.nodes, &dwv1.FabricNode{Id: id, Address: fmt.Sprintf("10.0.0.%d:7946", i+1), State: dwv1.NodeState_NODE_STATE_ALIVE})
	}
	return f
}

func (f *fakeFabric) GetStatus(ctx context.Context, req *dwv1.GetStatusRequest) (*dwv1.FabricStatus, error) {
	f.record(ctx, "GetStatus", req)
	if f.GetStatusFunc != nil {
		return f.GetStatusFunc(req)
	}
	return &dwv1.FabricStatus{NodeId: "n1", Topology: "mesh", NodeCount: 5, MaxNodes: 500}, nil
}

func (f *fakeFabric) ListNodes(ctx context.Context, req *dwv1.ListNodesRequest) (*dwv1.ListNodesResponse, error) {
	f.record(ctx, "ListNodes", req)
	if f.ListNodesFunc != nil {
		return f.ListNodesFunc(req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	size := int(req.GetPageSize())
	if size == 0 {
		size = DefaultFabricPageSize
	}
	after := req.GetPageToken()
	if after != "" && !slices.ContainsFunc(f.nodes, func(n *dwv1.FabricNode) bool { return n.GetId() == after }) {
		return nil, fmt.Errorf("page_token %q: %w: not a token of this fabric", after, sdk.ErrInvalidArgument)
	}
	page, more := pageAfter(f.nodes, (*dwv1.FabricNode).GetId, after, size)
	resp := &dwv1.ListNodesResponse{}
	for _, n := range page {
		resp.Nodes = append(resp.Nodes, proto.Clone(n).(*dwv1.FabricNode))
	}
	if more {
		resp.NextPageToken = page[len(page)-1].GetId()
	}
	return resp, nil
}

// fabricEnv is the admin API over a fake Fabric service.
type fabricEnv struct {
	*apiEnv
	fake *fakeFabric
}

func newFabricEnv(t testing.TB) *fabricEnv {
	t.Helper()
	fake := newFakeFabric()
	client := connectStore(t, func(s *grpc.Server) { dwv1.RegisterFabricServer(s, fake) })
	return &fabricEnv{apiEnv: newAPIEnv(t, FabricSubsystem, client, nil), fake: fake}
}

func TestFabricStatus(t *testing.T) {
	e := newFabricEnv(t)
	full := &dwv1.FabricStatus{
		NodeId: "n1", Federation: "eu", BindAddress: "10.0.0.1:7946", Topology: "star", TopologyEpoch: 3, NodeCount: 3, MaxNodes: 3,
		Limits: &dwv1.FabricLimits{MaxNodes: &dwv1.MaxNodes{Star: 3, Mesh: 500, Federated: 10000}, Topology: "star",
			Switching:         &dwv1.Switching{Mode: "recommend", UpAt: 0.9, DownAt: 0.5},
			HeartbeatInterval: durationpb.New(15 * time.Second), MissedHeartbeats: 3},
		Recommendation: "mesh", RecommendationReason: "3 nodes >= 0.9 × star max 3",
		Switches: []*dwv1.TopologySwitch{{At: timestamppb.New(fakeEpoch), From: "star", To: "mesh", Reason: "grew", Applied: false}},
		Refusals: []*dwv1.JoinRefusal{{At: timestamppb.New(fakeEpoch.Add(time.Second)), NodeId: "n4", Address: "10.0.0.4:7946",
			Reason: "fabric full: topology star allows 3 nodes and has 3", ByPeer: false}},
		Hub: "n1", Role: "hub", Encrypted: true, HeartbeatsPerSecond: 0.25,
	}
	tests := []struct {
		name   string
		status *dwv1.FabricStatus
		want   string
	}{
		{"every field", full, `{"node_id":"n1","federation":"eu","bind_address":"10.0.0.1:7946","topology":"star","topology_epoch":3,
			"node_count":3,"max_nodes":3,"limits":{"max_nodes":{"star":3,"mesh":500,"federated":10000},"topology":"star",
			"switching":{"mode":"recommend","up_at":0.9,"down_at":0.5},"heartbeat_interval":"15s","missed_heartbeats":3},
			"recommendation":"mesh","recommendation_reason":"3 nodes >= 0.9 × star max 3",
			"switches":[{"at":"2026-01-02T03:04:05.123456789Z","from":"star","to":"mesh","reason":"grew","applied":false}],
			"refusals":[{"at":"2026-01-02T03:04:06.123456789Z","node_id":"n4","address":"10.0.0.4:7946",
			"reason":"fabric full: topology star allows 3 nodes and has 3","by_peer":false}],
			"hub":"n1","gateways":[],"role":"hub","encrypted":true,"heartbeats_per_second":0.25}`},
		{"nothing set", &dwv1.FabricStatus{}, `{"node_id":"","federation":"","bind_address":"","topology":"","topology_epoch":0,
			"node_count":0,"max_nodes":0,"limits":{"max_nodes":{"star":0,"mesh":0,"federated":0},"topology":"",
			"switching":{"mode":"","up_at":0,"down_at":0},"heartbeat_interval":"0s","missed_heartbeats":0},
			"recommendation":"","recommendation_reason":"","switches":[],"refusals":[],"hub":"","gateways":[],"role":"",
			"encrypted":false,"heartbeats_per_second":0}`},
		{"federated with a sub-second interval", &dwv1.FabricStatus{Topology: "federated", Gateways: []string{"a1", "b1"}, Role: "gateway",
			Limits:              &dwv1.FabricLimits{HeartbeatInterval: durationpb.New(200 * time.Millisecond)},
			Refusals:            []*dwv1.JoinRefusal{{At: timestamppb.New(time.Date(2026, 5, 6, 7, 8, 9, 0, time.FixedZone("x", 3600))), NodeId: "n1", ByPeer: true}},
			HeartbeatsPerSecond: 12.5},
			`{"node_id":"","federation":"","bind_address":"","topology":"federated","topology_epoch":0,"node_count":0,"max_nodes":0,
			"limits":{"max_nodes":{"star":0,"mesh":0,"federated":0},"topology":"","switching":{"mode":"","up_at":0,"down_at":0},
			"heartbeat_interval":"200ms","missed_heartbeats":0},"recommendation":"","recommendation_reason":"","switches":[],
			"refusals":[{"at":"2026-05-06T06:08:09Z","node_id":"n1","address":"","reason":"","by_peer":true}],
			"hub":"","gateways":["a1","b1"],"role":"gateway","encrypted":false,"heartbeats_per_second":12.5}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.fake.GetStatusFunc = func(*dwv1.GetStatusRequest) (*dwv1.FabricStatus, error) { return tt.status, nil }
			r := e.call(t, "GET", "/v1/fabric", "", nil)
			if r.code != 200 || compactJSON(t, r.body) != compactJSON(t, tt.want) {
				t.Errorf("got %d %s\nwant %s", r.code, r.body, compactJSON(t, tt.want))
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if c := e.fake.lastCall(); c.method != "GetStatus" || c.caller != "alice" || !c.hasDeadline {
				t.Errorf("plugin got %+v", c)
			}
		})
	}
}

func TestFabricNodes(t *testing.T) {
	e := newFabricEnv(t)
	node := &dwv1.FabricNode{Id: "n2", Address: "10.0.0.2:7946", ApiAddress: "10.0.0.2:7070", Federation: "eu", Version: "1.2.3",
		State: dwv1.NodeState_NODE_STATE_SUSPECT, LastHeartbeat: timestamppb.New(fakeEpoch), Missed: 1,
		Rtt: durationpb.New(1234 * time.Microsecond), Role: "leaf", Self: false, Watched: true}
	e.fake.ListNodesFunc = func(*dwv1.ListNodesRequest) (*dwv1.ListNodesResponse, error) {
		return &dwv1.ListNodesResponse{Nodes: []*dwv1.FabricNode{node, {Id: "n3", State: dwv1.NodeState_NODE_STATE_DEAD}}, NextPageToken: "tok"}, nil
	}
	r := e.call(t, "GET", "/v1/fabric/nodes", "", nil)
	want := `{"nodes":[{"id":"n2","address":"10.0.0.2:7946","api_address":"10.0.0.2:7070","federation":"eu","version":"1.2.3",
		"state":"suspect","last_heartbeat":"2026-01-02T03:04:05.123456789Z","missed":1,"rtt":"1.234ms","role":"leaf","self":false,"watched":true},
		{"id":"n3","address":"","api_address":"","federation":"","version":"","state":"dead","missed":0,"rtt":"0s","role":"","self":false,"watched":false}],
		"next_page_token":"tok"}`
	if r.code != 200 || compactJSON(t, r.body) != compactJSON(t, want) {
		t.Errorf("got %d %s\nwant %s", r.code, r.body, compactJSON(t, want))
	}
	if c := e.fake.lastCall(); c.method != "ListNodes" || c.caller != "alice" || !c.hasDeadline ||
		c.req.(*dwv1.ListNodesRequest).GetPageSize() != 0 || c.req.(*dwv1.ListNodesRequest).GetPageToken() != "" {
		t.Errorf("plugin got %+v", c)
	}

	// Every state by its word.
	for _, tt := range []struct {
		state dwv1.NodeState
		word  string
	}{
		{dwv1.NodeState_NODE_STATE_ALIVE, "alive"}, {dwv1.NodeState_NODE_STATE_SUSPECT, "suspect"},
		{dwv1.NodeState_NODE_STATE_DEAD, "dead"}, {dwv1.NodeState_NODE_STATE_LEFT, "left"},
		{dwv1.NodeState_NODE_STATE_UNSPECIFIED, "unspecified"}, {dwv1.NodeState(42), "unknown"},
	} {
		if got := toFabricNode(&dwv1.FabricNode{State: tt.state}).State; got != tt.word {
			t.Errorf("%v: %q, want %q", tt.state, got, tt.word)
		}
	}

	// No nodes: [] not null.
	e.fake.ListNodesFunc = func(*dwv1.ListNodesRequest) (*dwv1.ListNodesResponse, error) { return &dwv1.ListNodesResponse{}, nil }
	if r := e.call(t, "GET", "/v1/fabric/nodes", "", nil); r.code != 200 || compactJSON(t, r.body) != `{"next_page_token":"","nodes":[]}` {
		t.Errorf("no nodes: %d %s", r.code, r.body)
	}
}

func TestFabricNodesPaging(t *testing.T) {
	e := newFabricEnv(t)
	// limit and page_token reach the plugin as they came; its
	// next_page_token comes back unchanged.
	var ids []string
	path, token := "/v1/fabric/nodes?limit=2", ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatalf("more than 5 pages: %v", ids)
		}
		page, _ := callJSON[FabricNodes](t, e.apiEnv, "GET", path, "", nil, 200)
		if req := e.fake.lastCall().req.(*dwv1.ListNodesRequest); req.GetPageSize() != 2 || req.GetPageToken() != token {
			t.Errorf("%s: plugin got %v", path, req)
		}
		for _, n := range page.Nodes {
			ids = append(ids, n.ID)
		}
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
		path = "/v1/fabric/nodes?limit=2&page_token=" + token
	}
	if got := strings.Join(ids, ","); got != "n1,n2,n3,n4,n5" {
		t.Errorf("pages gave %s", got)
	}
	for _, tt := range []struct {
		query     string
		wantSize  int32
		wantToken string
	}{
		{"", 0, ""},
		{"?limit=1", 1, ""},
		{"?limit=1000", 1000, ""},
		{"?limit=0100", 100, ""},
		{"?page_token=n2", 0, "n2"},
		{"?page_token=n2&limit=3", 3, "n2"},
		{"?page_token=", 0, ""},
		{"?page_token=" + strings.Repeat("t", maxPageTokenBytes), 0, strings.Repeat("t", maxPageTokenBytes)},
	} {
		e.fake.ListNodesFunc = func(*dwv1.ListNodesRequest) (*dwv1.ListNodesResponse, error) { return &dwv1.ListNodesResponse{}, nil }
		if r := e.call(t, "GET", "/v1/fabric/nodes"+tt.query, "", nil); r.code != 200 {
			t.Errorf("%s: %d %s", tt.query, r.code, r.body)
			continue
		}
		if req := e.fake.lastCall().req.(*dwv1.ListNodesRequest); req.GetPageSize() != tt.wantSize || req.GetPageToken() != tt.wantToken {
			t.Errorf("%.40s: plugin got size %d token %.40q", tt.query, req.GetPageSize(), req.GetPageToken())
		}
	}
	// A token the plugin does not know is its 400.
	e.fake.ListNodesFunc = nil
	wantError(t, e.call(t, "GET", "/v1/fabric/nodes?page_token=zz", "", nil), 400, "list fabric nodes", `page_token "zz"`)
}

func TestFabricBadQueries(t *testing.T) {
	e := newFabricEnv(t)
	tests := []struct {
		path     string
		contains []string
	}{
		{"/v1/fabric?verbose=true", []string{`query parameter "verbose"`, "allowed: none"}},
		{"/v1/fabric?limit=5", []string{`query parameter "limit"`, "allowed: none"}},
		{"/v1/fabric/nodes?state=alive", []string{`query parameter "state"`, "allowed: limit, page_token"}},
		{"/v1/fabric/nodes?offset=5", []string{`query parameter "offset"`}},
		{"/v1/fabric/nodes?limit=0", []string{`limit "0"`, "from 1 to 1000", "left out: 100"}},
		{"/v1/fabric/nodes?limit=1001", []string{`limit "1001"`, "from 1 to 1000"}},
		{"/v1/fabric/nodes?limit=-1", []string{`limit "-1"`}},
		{"/v1/fabric/nodes?limit=%2B5", []string{`limit "+5"`}},
		{"/v1/fabric/nodes?limit=1e3", []string{`limit "1e3"`}},
		{"/v1/fabric/nodes?limit=ten", []string{`limit "ten"`}},
		{"/v1/fabric/nodes?limit=", []string{`limit ""`}},
		{"/v1/fabric/nodes?limit=99999999999999999999", []string{"from 1 to 1000"}},
		{"/v1/fabric/nodes?limit=5&limit=6", []string{"given 2 times"}},
		{"/v1/fabric/nodes?page_token=a&page_token=b", []string{"given 2 times"}},
		{"/v1/fabric/nodes?page_token=" + strings.Repeat("t", maxPageTokenBytes+1), []string{"page_token of 4097 bytes", "at most 4096 bytes"}},
		{"/v1/fabric/nodes?page_token=a%00b", []string{"page_token", "not a token of this API"}},
		{"/v1/fabric/nodes?page_token=%FF", []string{"not a token of this API"}},
		{"/v1/fabric/nodes?limit=%zz", []string{"query of GET /v1/fabric/nodes"}},
	}
	for _, tt := range tests {
		t.Run(tt.path[:min(len(tt.path), 60)], func(t *testing.T) {
			before := len(e.fake.allCalls())
			wantError(t, e.call(t, "GET", tt.path, "", nil), 400, tt.contains...)
			if calls := e.fake.allCalls(); len(calls) != before {
				t.Errorf("the plugin was called: %+v", calls[before:])
			}
		})
	}
}

// fabricRequests is one valid request of every fabric route.
var fabricRequests = []string{"/v1/fabric", "/v1/fabric/nodes", "/v1/fabric/nodes?limit=10&page_token=n1"}

func TestFabricErrorMapping(t *testing.T) {
	e := newFabricEnv(t)
	tests := []struct {
		name    string
		err     error // as the plugin returns it
		code    int
		word    string
		message string
	}{
		{"sdk invalid", fmt.Errorf("page_token: %w", sdk.ErrInvalidArgument), 400, "invalid_argument", "page_token: invalid argument"},
		{"grpc INVALID_ARGUMENT", status.Error(codes.InvalidArgument, "bad token"), 400, "invalid_argument", "bad token"},
		// A bare UNAVAILABLE (no dw error detail) reads as the plugin's
		// transport gone (sdk.FromStatus): 503 all the same.
		{"grpc UNAVAILABLE", status.Error(codes.Unavailable, "memberlist is shutting down"), 503, "plugin_shutdown", "memberlist is shutting down"},
		{"sdk unavailable", fmt.Errorf("fabric: %w", sdk.ErrUnavailable), 503, "unavailable", "fabric: unavailable"},
		{"not found", fmt.Errorf("thing: %w", sdk.ErrNotFound), 404, "not_found", "thing"},
		{"busy", sdk.WithRetryAfter(fmt.Errorf("thing: %w", sdk.ErrBackpressure), 3*time.Second), 429, "backpressure", "thing"},
		{"shutting down", fmt.Errorf("plugin: %w", sdk.ErrPluginShutdown), 503, "plugin_shutdown", "plugin"},
		{"grpc UNIMPLEMENTED", status.Error(codes.Unimplemented, "no Fabric here"), 501, "unimplemented", "no Fabric here"},
		{"grpc INTERNAL", status.Error(codes.Internal, "boom"), 500, "internal", "boom"},
	}
	f := e.fake
	for _, tt := range tests {
		f.GetStatusFunc = func(*dwv1.GetStatusRequest) (*dwv1.FabricStatus, error) { return nil, tt.err }
		f.ListNodesFunc = func(*dwv1.ListNodesRequest) (*dwv1.ListNodesResponse, error) { return nil, tt.err }
		for _, path := range fabricRequests {
			t.Run(tt.name+" "+path, func(t *testing.T) {
				r := e.call(t, "GET", path, "", nil)
				what := "list fabric nodes: "
				if path == "/v1/fabric" {
					what = "get fabric status: "
				}
				if got := errorOf(t, r); r.code != tt.code || got.Code != tt.word || !strings.Contains(got.Message, what+tt.message) {
					t.Errorf("%d %s", r.code, r.body)
				}
				if tt.code == 429 && r.header.Get("Retry-After") != "3" {
					t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
				}
			})
		}
	}
}

// TestFabricPluginAbsent checks that a fabric subsystem that is not
// loaded, disabled or down answers what the backups answer without
// dataprotection: 503 naming the subsystem.
func TestFabricPluginAbsent(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("plugin fabric: %w", sdk.ErrUnavailable),
		fmt.Errorf("no plugin fabric: %w", sdk.ErrNotFound),
	} {
		s, _ := newTestServer(t, &fakePlugins{ClientFunc: func(string) (*pluginhost.Client, error) { return nil, err }}, nil)
		for _, path := range fabricRequests {
			r := do(t, s.Handler(), "GET", path, "", "")
			wantError(t, r, 503, "fabric")
			if got := errorOf(t, r); got.Code != "unavailable" {
				t.Errorf("GET %s with %v: code %q", path, err, got.Code)
			}
		}
		// Same status as the backups when dataprotection is absent.
		b := do(t, s.Handler(), "GET", "/v1/backups/jobs", "", "")
		f := do(t, s.Handler(), "GET", "/v1/fabric", "", "")
		if b.code != f.code || errorOf(t, b).Code != errorOf(t, f).Code {
			t.Errorf("backups %d %s, fabric %d %s", b.code, b.body, f.code, f.body)
		}
	}
	// A plugin serving some other subsystem is not the fabric.
	e := newBackupEnv(t)
	wantError(t, e.call(t, "GET", "/v1/fabric", "", nil), 503, "subsystem fabric is not loaded")
}

func TestFabricRoutingAndAuth(t *testing.T) {
	e := newFabricEnv(t)
	for _, tc := range []struct{ method, path string }{
		{"POST", "/v1/fabric"}, {"DELETE", "/v1/fabric"}, {"PUT", "/v1/fabric/nodes"}, {"POST", "/v1/fabric/nodes"},
	} {
		r := e.call(t, tc.method, tc.path, "", nil)
		wantError(t, r, 405, "allowed")
		if r.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", tc.method, tc.path, r.header.Get("Allow"))
		}
	}
	for _, p := range []string{"/v1/fabric/nodes/n1", "/v1/fabric/x"} {
		if r := e.call(t, "GET", p, "", nil); r.code != 404 {
			t.Errorf("GET %s: %d %s", p, r.code, r.body)
		}
	}
	for _, path := range fabricRequests {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer wrong")
		if r := e.serve(t, req); r.code != 401 {
			t.Errorf("GET %s with a wrong token: %d", path, r.code)
		}
	}
	if calls := e.fake.allCalls(); len(calls) != 0 {
		t.Errorf("the plugin was called: %+v", calls)
	}
	want := []string{"GetStatus", "ListNodes", "ListNodes"}
	for i, path := range fabricRequests {
		if r := e.call(t, "GET", path, "", nil); r.code != 200 {
			t.Errorf("GET %s: %d %s", path, r.code, r.body)
		}
		if c := e.fake.lastCall(); c.method != want[i] || c.caller != "alice" || !c.hasDeadline {
			t.Errorf("GET %s: plugin got %+v", path, c)
		}
	}
	if !measured(t, e.server.registry, `code="200",route="GET /v1/fabric/nodes"`) {
		t.Errorf("GET /v1/fabric/nodes not measured by its pattern")
	}
}
