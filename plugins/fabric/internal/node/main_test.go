package node

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(settled{m})
}

// settled runs the tests, then waits for memberlist's probe goroutines to
// end before goleak checks: a probe in flight at Shutdown runs to its end
// (up to memberlist's probe interval, 1 s, scaled up by its health
// awareness when the node was degraded) before it sees the stop signal.
// Nothing is ignored: whatever is still running after 15 s is reported.
type settled struct{ m *testing.M }

func (s settled) Run() int {
	code := s.m.Run()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if goleak.Find() == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return code
}

// testHooks keep join retries short; memberlist keeps its defaults.
var testHooks = hooks{
	joinRetryMin: 100 * time.Millisecond, joinRetryMax: time.Second,
	handshakeTimeout: 3 * time.Second, leaveWait: 300 * time.Millisecond,
}

func testLimits(iv time.Duration, missed int) Limits {
	return Limits{
		MaxNodes:          MaxNodes{Star: 1000, Mesh: 500, Federated: 10000},
		Topology:          TopologyStar,
		Switching:         Switching{Mode: ModeOff, UpAt: 0.8, DownAt: 0.5},
		HeartbeatInterval: iv,
		MissedHeartbeats:  missed,
	}
}

// testLogger logs to stderr when FABRIC_TEST_LOG is set.
func testLogger(id string) hclog.Logger {
	if os.Getenv("FABRIC_TEST_LOG") == "" {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Debug, Output: os.Stderr})
}

func testConfig(id string, l Limits, seeds ...string) Config {
	return Config{
		ID: id, Federation: "default", APIAddress: "http://127.0.0.1:1/" + id, Version: "test",
		BindAddr: "127.0.0.1:0", Join: seeds, Limits: l, Logger: testLogger(id),
	}
}

// startNode starts a node and closes it (gracefully) at cleanup.
func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := start(cfg, testHooks)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.ID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("close %s: %v", cfg.ID, err)
		}
	})
	return n
}

// startCluster starts count nodes n00, n01, … joining n00, with cfg
// adjusting each config, and waits until every node sees every other
// alive.
func startCluster(t testing.TB, count int, l Limits, mod func(i int, c *Config)) []*Node {
	t.Helper()
	nodes := make([]*Node, count)
	for i := range count {
		cfg := testConfig(fmt.Sprintf("n%02d", i), l)
		if i > 0 {
			cfg.Join = []string{nodes[0].Addr()}
		}
		if mod != nil {
			mod(i, &cfg)
		}
		nodes[i] = startNode(t, cfg)
	}
	t.Cleanup(func() { closeAll(t, nodes) }) // runs before the nodes' own cleanups
	waitConverged(t, nodes, 20*time.Second)
	return nodes
}

// closeAll closes nodes concurrently (each Leave waits for a gossip round).
func closeAll(t testing.TB, nodes []*Node) {
	t.Helper()
	errs := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errs <- n.Close(ctx)
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Errorf("close: %v", err)
		}
	}
}

// waitFor polls cond until it holds or within passes. It waits for
// eventual properties; timing is asserted separately.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stateOf is id's state as seen by n ("" when unknown).
func stateOf(n *Node, id string) State {
	for _, i := range n.Nodes() {
		if i.ID == id {
			return i.State
		}
	}
	return ""
}

func infoOf(t testing.TB, n *Node, id string) NodeInfo {
	t.Helper()
	for _, i := range n.Nodes() {
		if i.ID == id {
			return i
		}
	}
	t.Fatalf("%s does not know %s", n.cfg.ID, id)
	return NodeInfo{}
}

// sees reports whether every node in nodes sees every other in state.
func sees(nodes []*Node, ids []string, st State) bool {
	for _, n := range nodes {
		for _, id := range ids {
			if id != n.cfg.ID && stateOf(n, id) != st {
				return false
			}
		}
	}
	return true
}

func ids(nodes []*Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.cfg.ID
	}
	return out
}

func waitConverged(t testing.TB, nodes []*Node, within time.Duration) {
	t.Helper()
	all := ids(nodes)
	waitFor(t, within, fmt.Sprintf("convergence of %d nodes", len(nodes)), func() bool {
		if !sees(nodes, all, StateAlive) {
			return false
		}
		for _, n := range nodes {
			if n.Status().NodeCount != len(nodes) {
				return false
			}
		}
		return true
	})
}

func without(nodes []*Node, drop ...*Node) []*Node {
	var out []*Node
	for _, n := range nodes {
		keep := true
		for _, d := range drop {
			keep = keep && n != d
		}
		if keep {
			out = append(out, n)
		}
	}
	return out
}

func hasRefusal(rs []Refusal, nodeID string, byPeer bool, reason string) bool {
	for _, r := range rs {
		if r.NodeID == nodeID && r.ByPeer == byPeer && strings.Contains(r.Reason, reason) {
			return true
		}
	}
	return false
}

func containsStr(s, sub string) bool { return strings.Contains(s, sub) }
