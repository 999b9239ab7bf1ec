package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/datawarehouse/dw/host/api"
)

func testFabricStatus() api.FabricStatus {
	return api.FabricStatus{
		NodeID: "n1", Federation: "eu", BindAddress: "10.0.0.1:7946", Topology: "star", TopologyEpoch: 3, NodeCount: 3, MaxNodes: 3,
		Limits: api.FabricLimits{MaxNodes: api.FabricMaxNodes{Star: 3, Mesh: 500, Federated: 10000}, Topology: "star",
			Switching:         api.FabricSwitching{Mode: "recommend", UpAt: 0.9, DownAt: 0.5},
			HeartbeatInterval: "15s", MissedHeartbeats: 3},
		Recommendation: "mesh", RecommendationReason: "3 nodes >= 90% of star's 3",
		Switches: []api.TopologySwitch{{At: "2026-01-02T03:04:05.5Z", From: "star", To: "mesh", Reason: "3 nodes >= 90% of star's 3"},
			{At: "2026-01-01T00:00:00Z", From: "mesh", To: "star", Reason: "first\nagreement", Applied: true}},
		Refusals: []api.JoinRefusal{{At: "2026-01-02T03:04:06Z", NodeID: "n4", Address: "10.0.0.4:7946",
			Reason: "fabric full: topology star allows 3 nodes and has 3"}},
		Hub: "n1", Gateways: []string{}, Role: "hub", Encrypted: true, HeartbeatsPerSecond: 0.249987, // shown as 0.25
	}
}

func TestFabricStatus(t *testing.T) {
	f, srv := newBackupAPI(t)
	f.on("GET", "/v1/fabric", ok(t, testFabricStatus()))
	out, _, err := runDW(t, srv.URL, nil, "fabric", "status")
	want := "" +
		"node               n1 (federation eu)\n" +
		"gossip             10.0.0.1:7946\n" +
		"topology           star (epoch 3)\n" +
		"nodes              3 of 3\n" +
		"role               hub\n" +
		"hub                n1\n" +
		"recommendation     mesh: 3 nodes >= 90% of star's 3\n" +
		"switching          recommend (up at 90%, down at 50% of max_nodes)\n" +
		"max nodes          star 3, mesh 500, federated 10000 (configured topology star)\n" +
		"heartbeats         every 15s, dead after 3 missed; sending 0.25/s\n" +
		"gossip encryption  encrypted\n" +
		"\nrecent switches (newest first):\n" +
		"AT                   FROM  TO    APPLIED           REASON\n" +
		"2026-01-02 03:04:05  star  mesh  no (recommended)  3 nodes >= 90% of star's 3\n" +
		"2026-01-01 00:00:00  mesh  star  yes               first agreement\n" +
		"\nrecent refused joins (newest first):\n" +
		"AT                   NODE  ADDRESS        REFUSED BY  REASON\n" +
		"2026-01-02 03:04:06  n4    10.0.0.4:7946  this node   fabric full: topology star allows 3 nodes and has 3\n"
	if err != nil || out != want {
		t.Errorf("status: %v\n%s\nwant\n%s", err, out, want)
	}

	// A federated fabric, nothing recommended, nothing switched or refused,
	// gossip in the clear.
	st := api.FabricStatus{NodeID: "a2", Topology: "federated", NodeCount: 40, MaxNodes: 10000, Gateways: []string{"a1", "b1"},
		Role: "member", Limits: api.FabricLimits{HeartbeatInterval: "200ms", MissedHeartbeats: 3,
			Switching: api.FabricSwitching{Mode: "off", UpAt: 0.8, DownAt: 0.25}}, Switches: []api.TopologySwitch{}, Refusals: []api.JoinRefusal{}}
	f.on("GET", "/v1/fabric", ok(t, st))
	out, _, err = runDW(t, srv.URL, nil, "fabric", "status")
	for _, line := range []string{"gateways           a1, b1\n", "recommendation     none\n", "switching          off (up at 80%, down at 25% of max_nodes)\n",
		"heartbeats         every 200ms, dead after 3 missed; sending 0/s\n", "gossip encryption  NOT encrypted"} {
		if !strings.Contains(out, line) {
			t.Errorf("status without extras: %q lacks %q", out, line)
		}
	}
	if err != nil || strings.Contains(out, "hub ") || strings.Contains(out, "recent") {
		t.Errorf("status without extras: %v\n%s", err, out)
	}

	// -o json: the answer as it came.
	f.on("GET", "/v1/fabric", ok(t, testFabricStatus()))
	out, _, err = runDW(t, srv.URL, nil, "-o", "json", "fabric", "status")
	var got api.FabricStatus
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || !reflect.DeepEqual(got, testFabricStatus()) || !strings.Contains(out, `"node_id": "n1"`) {
		t.Errorf("status -o json: %v\n%s", err, out)
	}

	// The host's refusal reaches the user; arguments are refused before any request.
	f.on("GET", "/v1/fabric", fakeAnswer{503, "fabric: unavailable: subsystem fabric is not loaded"})
	if _, _, err := runDW(t, srv.URL, nil, "fabric", "status"); err == nil || !strings.Contains(err.Error(), "subsystem fabric is not loaded") || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("fabric absent: %v", err)
	}
	n := len(f.seen())
	if _, _, err := runDW(t, srv.URL, nil, "fabric", "status", "extra"); err == nil {
		t.Errorf("status with an argument: accepted")
	}
	if got := len(f.seen()); got != n {
		t.Errorf("%d requests for a refused argument", got-n)
	}
}

// fabricNode is an alive node id, heard last at heard (nil: never).
func fabricNode(id string, heard *string) api.FabricNode {
	return api.FabricNode{ID: id, Address: "10.0.0.1:7946", APIAddress: "10.0.0.1:7070", State: "alive", Role: "member",
		LastHeartbeat: heard, RTT: "1.234567ms", Federation: "eu", Version: "1.0.0"}
}

func TestFabricNodes(t *testing.T) {
	page1 := api.FabricNodes{Nodes: []api.FabricNode{fabricNode("n1", nil), fabricNode("n2", nil)}, NextPageToken: "n2"}
	page2 := api.FabricNodes{Nodes: []api.FabricNode{fabricNode("n3", nil)}}
	setup := func(t *testing.T) (*fakeBackupAPI, string) {
		t.Helper()
		f, srv := newBackupAPI(t)
		f.on("GET", "/v1/fabric/nodes", ok(t, page1))
		f.on("GET", "/v1/fabric/nodes?page_token=n2", ok(t, page2))
		f.on("GET", "/v1/fabric/nodes?limit=2", ok(t, page1))
		f.on("GET", "/v1/fabric/nodes?limit=2&page_token=n2", ok(t, page2))
		return f, srv.URL
	}
	uris := func(f *fakeBackupAPI) string {
		var u []string
		for _, r := range f.seen() {
			u = append(u, r.method+" "+r.uri)
		}
		return strings.Join(u, ", ")
	}
	ids := func(out string) string {
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			got = append(got, strings.Fields(line)[0])
		}
		return strings.Join(got, ",")
	}
	tests := []struct {
		name     string
		args     []string
		wantIDs  string
		wantReqs string
		wantErr  string // stderr
	}{
		{"every page", nil, "n1,n2,n3", "GET /v1/fabric/nodes, GET /v1/fabric/nodes?page_token=n2", ""},
		{"one page by limit", []string{"--limit", "2"}, "n1,n2", "GET /v1/fabric/nodes?limit=2", "more nodes follow: add --page-token n2\n"},
		{"the next page", []string{"--limit", "2", "--page-token", "n2"}, "n3", "GET /v1/fabric/nodes?limit=2&page_token=n2", ""},
		{"a page by token", []string{"--page-token", "n2"}, "n3", "GET /v1/fabric/nodes?page_token=n2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, addr := setup(t)
			out, errOut, err := runDW(t, addr, nil, append([]string{"fabric", "nodes"}, tt.args...)...)
			if err != nil || ids(out) != tt.wantIDs || errOut != tt.wantErr {
				t.Errorf("out %q, stderr %q, err %v; want ids %s", out, errOut, err, tt.wantIDs)
			}
			if !strings.HasPrefix(out, "ID ") || !strings.Contains(out, "LAST HEARTBEAT") {
				t.Errorf("no header: %q", out)
			}
			if got := uris(f); got != tt.wantReqs {
				t.Errorf("requests %s, want %s", got, tt.wantReqs)
			}
		})
	}

	t.Run("json of every page", func(t *testing.T) {
		_, addr := setup(t)
		out, _, err := runDW(t, addr, nil, "-o", "json", "fabric", "nodes")
		var got api.FabricNodes
		if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got.Nodes) != 3 || got.Nodes[2].ID != "n3" ||
			got.NextPageToken != "" || !strings.Contains(out, `"next_page_token": ""`) {
			t.Errorf("%v\n%s", err, out)
		}
	})
	t.Run("json of one page", func(t *testing.T) {
		_, addr := setup(t)
		out, _, err := runDW(t, addr, nil, "-o", "json", "fabric", "nodes", "--limit", "2")
		var got api.FabricNodes
		if err != nil || json.Unmarshal([]byte(out), &got) != nil || !reflect.DeepEqual(got, page1) {
			t.Errorf("%v\n%s", err, out)
		}
	})
	t.Run("no nodes", func(t *testing.T) {
		f, srv := newBackupAPI(t)
		f.on("GET", "/v1/fabric/nodes", ok(t, api.FabricNodes{Nodes: []api.FabricNode{}}))
		if out, _, err := runDW(t, srv.URL, nil, "fabric", "nodes"); err != nil || out != "no nodes\n" {
			t.Errorf("%q %v", out, err)
		}
		if out, _, err := runDW(t, srv.URL, nil, "-o", "json", "fabric", "nodes"); err != nil || compactOut(t, out) != `{"next_page_token":"","nodes":[]}` {
			t.Errorf("json: %q %v", out, err)
		}
	})
	t.Run("bad flags", func(t *testing.T) {
		f, addr := setup(t)
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--limit", "0"}, "--limit 0: must be from 1 to 1000"},
			{[]string{"--limit", "1001"}, "--limit 1001"},
			{[]string{"--limit", "x"}, "invalid argument"},
			{[]string{"extra"}, "unknown command"},
		} {
			if _, _, err := runDW(t, addr, nil, append([]string{"fabric", "nodes"}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
			}
		}
		if got := uris(f); got != "" {
			t.Errorf("requests for refused flags: %s", got)
		}
	})
	t.Run("host errors", func(t *testing.T) {
		f, addr := setup(t)
		f.on("GET", "/v1/fabric/nodes?page_token=n2", fakeAnswer{503, "list fabric nodes: plugin down"})
		if _, _, err := runDW(t, addr, nil, "fabric", "nodes"); err == nil || !strings.Contains(err.Error(), "stopped after 2 nodes") || !strings.Contains(err.Error(), "HTTP 503") {
			t.Errorf("error on page 2: %v", err)
		}
		f.on("GET", "/v1/fabric/nodes?page_token=n2", ok(t, api.FabricNodes{Nodes: []api.FabricNode{fabricNode("n3", nil)}, NextPageToken: "n2"}))
		if _, _, err := runDW(t, addr, nil, "fabric", "nodes"); err == nil || !strings.Contains(err.Error(), `page token "n2" again after 3 nodes`) {
			t.Errorf("repeated token: %v", err)
		}
		f.on("GET", "/v1/fabric/nodes", fakeAnswer{400, `limit "0": invalid argument`})
		if _, _, err := runDW(t, addr, nil, "fabric", "nodes"); err == nil || strings.Contains(err.Error(), "stopped after") || !strings.Contains(err.Error(), "HTTP 400") {
			t.Errorf("error on page 1: %v", err)
		}
	})
}

// compactOut is JSON output without insignificant white space.
func compactOut(t testing.TB, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, s)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestWriteFabricNodes(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	heard := func(d time.Duration) *string { s := now.Add(-d).Format(time.RFC3339Nano); return &s }
	self := fabricNode("n1", heard(1500*time.Millisecond))
	self.Self, self.Role, self.RTT = true, "hub", "0s"
	dead := api.FabricNode{ID: "n2", State: "dead", Address: "10.0.0.2:7946", LastHeartbeat: heard(200 * time.Second), Missed: 13, RTT: "2.5s"}
	var b strings.Builder
	if err := writeFabricNodes(&b, []api.FabricNode{self, dead, fabricNode("n3", nil)}, now); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID         STATE  ROLE    ADDRESS        API            FEDERATION  LAST HEARTBEAT  MISSED  RTT\n" +
		"n1 (self)  alive  hub     10.0.0.1:7946  10.0.0.1:7070  eu          1.5s ago        0       -\n" +
		"n2         dead   -       10.0.0.2:7946  -              -           3m20s ago       13      2.5s\n" +
		"n3         alive  member  10.0.0.1:7946  10.0.0.1:7070  eu          -               0       1.23ms\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestAgoAndShortDuration(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) *string { s := now.Add(-d).Format(time.RFC3339Nano); return &s }
	bad := "yesterday"
	for _, tt := range []struct {
		ts   *string
		want string
	}{
		{nil, "-"},
		{at(0), "0s ago"},
		{at(-5 * time.Second), "0s ago"}, // the host's clock is ahead
		{at(1234567 * time.Microsecond), "1.2s ago"},
		{at(250500 * time.Microsecond), "251ms ago"},
		{at(90*time.Second + 400*time.Millisecond), "1m30s ago"},
		{at(3*time.Hour + 20*time.Second), "3h0m0s ago"},
		{&bad, "yesterday"},
	} {
		if got := ago(tt.ts, now); got != tt.want {
			t.Errorf("ago(%v): %q, want %q", tt.ts, got, tt.want)
		}
	}
	for _, tt := range []struct{ in, want string }{
		{"", "-"}, {"0s", "-"}, {"850ns", "1µs"}, {"123.456789µs", "123µs"}, {"1.234567ms", "1.23ms"},
		{"12.3456s", "12.346s"}, {"odd", "odd"},
	} {
		if got := shortDuration(tt.in); got != tt.want {
			t.Errorf("shortDuration(%q): %q, want %q", tt.in, got, tt.want)
		}
	}
}
