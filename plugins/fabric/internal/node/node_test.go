package node

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestJoinAndConverge(t *testing.T) {
	for _, count := range []int{3, 10} {
		t.Run(fmt.Sprint(count), func(t *testing.T) {
			nodes := startCluster(t, count, testLimits(500*time.Millisecond, 3), func(i int, c *Config) {
				c.Federation = fmt.Sprintf("f%d", i%2)
			})
			hub := nodes[0].cfg.ID
			for _, n := range nodes {
				st := n.Status()
				if st.BindAddr != n.Addr() || st.ID != n.cfg.ID || st.Federation != n.cfg.Federation || st.Encrypted {
					t.Errorf("%s: status %+v: want bind address %s, no encryption", n.cfg.ID, st, n.Addr())
				}
				if st.Hub != hub || st.Topology != TopologyStar || st.NodeCount != count || st.MaxNodes != 1000 {
					t.Errorf("%s: status %+v, want hub %s, star, %d nodes, max 1000", n.cfg.ID, st, hub, count)
				}
				wantRole := RoleLeaf
				if n.cfg.ID == hub {
					wantRole = RoleHub
				}
				if st.Role != wantRole {
					t.Errorf("%s: role %q, want %q", n.cfg.ID, st.Role, wantRole)
				}
				infos := n.Nodes()
				if len(infos) != count {
					t.Fatalf("%s knows %d nodes, want %d", n.cfg.ID, len(infos), count)
				}
				for i, info := range infos {
					other := nodes[i]
					want := NodeInfo{
						ID: other.cfg.ID, Address: other.Addr(), APIAddress: other.cfg.APIAddress,
						Federation: other.cfg.Federation, Version: "test", State: StateAlive,
						Self: other == n, Role: RoleLeaf,
					}
					if other.cfg.ID == hub {
						want.Role = RoleHub
					}
					got := info
					got.LastHeartbeat, got.RTT, got.Missed, got.Watched = time.Time{}, 0, 0, false
					if got != want {
						t.Errorf("%s sees %+v, want %+v", n.cfg.ID, got, want)
					}
					// A leaf watches the hub only; the hub watches every leaf.
					wantWatched := other != n && (n.cfg.ID == hub || other.cfg.ID == hub)
					if info.Watched != wantWatched {
						t.Errorf("%s: watched %s = %v, want %v", n.cfg.ID, other.cfg.ID, info.Watched, wantWatched)
					}
				}
			}
			// Leaves get acks from the hub: a last heartbeat and an RTT.
			leaf := nodes[1]
			waitFor(t, 5*time.Second, "an acked heartbeat", func() bool {
				i := infoOf(t, leaf, hub)
				return !i.LastHeartbeat.IsZero() && i.RTT > 0
			})
			// Counters follow the sends they count.
			waitFor(t, 5*time.Second, "heartbeat counters", func() bool {
				l, h := leaf.Stats(), nodes[0].Stats()
				return l.HeartbeatsSent > 0 && l.AcksReceived > 0 && h.HeartbeatsReceived > 0 && h.AcksSent > 0
			})
			if s := nodes[0].Stats(); s.HeartbeatsSent != 0 {
				t.Errorf("hub stats %+v: a star hub sends no heartbeats", s)
			}
			for _, n := range nodes {
				if d := n.Stats().NodesDeclaredDead; d != 0 {
					t.Errorf("%s declared %d nodes dead in a healthy fabric", n.cfg.ID, d)
				}
			}
		})
	}
}

// TestCrashDetectedWithinBound kills a node (memberlist Shutdown without
// Leave: what kill -9 looks like to the network) and measures until every
// survivor marks it dead. The bound is interval × (missed + 1); the
// tolerance of one more interval absorbs scheduling under -race.
func TestCrashDetectedWithinBound(t *testing.T) {
	const iv, missed = 200 * time.Millisecond, 3
	bound := iv * (missed + 1)
	tests := []struct {
		topology Topology
		victim   int
	}{
		{TopologyStar, 4}, // a leaf: only the hub watches it
		{TopologyStar, 0}, // the hub: every leaf watches it
		{TopologyMesh, 2},
		{TopologyFederated, 3}, // a member of f1, watched by its group only
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s-n%02d", tt.topology, tt.victim), func(t *testing.T) {
			l := testLimits(iv, missed)
			l.Topology = tt.topology
			nodes := startCluster(t, 5, l, func(i int, c *Config) { c.Federation = fmt.Sprintf("f%d", i%2) })
			victim := nodes[tt.victim]
			survivors := without(nodes, victim)
			// Let a few heartbeats flow so that every watch is established.
			time.Sleep(3 * iv)

			t0 := time.Now()
			victim.crash()
			var took time.Duration
			waitFor(t, 10*bound, "detection", func() bool {
				took = time.Since(t0)
				return sees(survivors, []string{victim.cfg.ID}, StateDead)
			})
			t.Logf("%s: all survivors marked %s dead after %s (bound %s)", tt.topology, victim.cfg.ID, took, bound)
			if took > bound+iv {
				t.Errorf("detection took %s; bound %s + tolerance %s", took, bound, iv)
			}
			for _, n := range survivors {
				if c := n.Status().NodeCount; c != 4 {
					t.Errorf("%s counts %d nodes, want 4", n.cfg.ID, c)
				}
			}
			// Exactly the watchers declared it; nobody declared anyone else.
			declared := uint64(0)
			for _, n := range survivors {
				declared += n.Stats().NodesDeclaredDead
			}
			if declared == 0 || declared > 4 {
				t.Errorf("%d declarations of death, want 1 to 4", declared)
			}
			if !sees(survivors, ids(survivors), StateAlive) {
				t.Errorf("a survivor is not alive to the others")
			}
		})
	}
}

// TestSuspectBeforeDead: a crashed node goes alive → suspect → dead.
func TestSuspectBeforeDead(t *testing.T) {
	const iv = 100 * time.Millisecond
	nodes := startCluster(t, 3, testLimits(iv, 8), nil)
	victim := nodes[2]
	time.Sleep(3 * iv)
	victim.crash()
	hub := nodes[0]
	var sawSuspect bool
	waitFor(t, 10*time.Second, "death", func() bool {
		i := infoOf(t, hub, victim.cfg.ID)
		if i.State == StateSuspect {
			sawSuspect = true
			if i.Missed < 1 || i.Missed >= 8 {
				t.Errorf("suspect with %d missed", i.Missed)
			}
		}
		return i.State == StateDead
	})
	if !sawSuspect {
		t.Error("never saw the node suspect")
	}
}

func TestGracefulCloseShowsLeft(t *testing.T) {
	nodes := startCluster(t, 3, testLimits(200*time.Millisecond, 3), nil)
	leaver := nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := leaver.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := leaver.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
	rest := without(nodes, leaver)
	waitFor(t, 5*time.Second, "left state", func() bool { return sees(rest, []string{leaver.cfg.ID}, StateLeft) })
	// memberlist's own leave follows; the state stays left.
	time.Sleep(time.Second)
	for _, n := range rest {
		if st := stateOf(n, leaver.cfg.ID); st != StateLeft {
			t.Errorf("%s: %s is %s, want left", n.cfg.ID, leaver.cfg.ID, st)
		}
		if c := n.Status().NodeCount; c != 2 {
			t.Errorf("%s counts %d, want 2", n.cfg.ID, c)
		}
		if d := n.Stats().NodesDeclaredDead; d != 0 {
			t.Errorf("%s declared %d nodes dead; a leave is not a death", n.cfg.ID, d)
		}
	}
}

func TestMaxNodesRefusal(t *testing.T) {
	l := testLimits(200*time.Millisecond, 3)
	l.MaxNodes.Star = 3
	nodes := startCluster(t, 3, l, nil)
	seed := nodes[0]
	joiner := startNode(t, testConfig("n03", l, seed.Addr()))

	const reason = "fabric full: topology star allows 3 nodes and has 3"
	waitFor(t, 10*time.Second, "the refusal on both sides", func() bool {
		return hasRefusal(seed.Status().Refusals, "n03", false, reason) &&
			hasRefusal(joiner.Status().Refusals, "n03", true, reason)
	})
	if r := seed.Status().Refusals[0]; r.Address != joiner.Addr() || r.At.IsZero() {
		t.Errorf("seed's refusal %+v: want the joiner's address %s", r, joiner.Addr())
	}
	if r := joiner.Status().Refusals[0]; r.Address != seed.Addr() {
		t.Errorf("joiner's refusal %+v: want the seed's address %s", r, seed.Addr())
	}
	if s := seed.Stats(); s.JoinsRefused == 0 {
		t.Errorf("seed stats %+v: want JoinsRefused", s)
	}
	if s := joiner.Stats(); s.JoinsRefusedByPeer == 0 {
		t.Errorf("joiner stats %+v: want JoinsRefusedByPeer", s)
	}
	if c := joiner.Status().NodeCount; c != 1 {
		t.Errorf("refused joiner counts %d nodes, want 1 (itself)", c)
	}
	for _, n := range nodes {
		if st := stateOf(n, "n03"); st != "" || n.Status().NodeCount != 3 {
			t.Errorf("%s: refused node is %q, count %d; want unknown, 3", n.cfg.ID, st, n.Status().NodeCount)
		}
	}

	// Raising the limit live lets the retrying joiner in.
	l.MaxNodes.Star = 4
	for _, n := range append(nodes, joiner) {
		n.Apply(l)
	}
	waitConverged(t, append(nodes, joiner), 10*time.Second)
}

// TestJoinerRefusesLargerFabric: the seed admits, but the joiner's own
// max_nodes is below the fabric's size: the joiner refuses and tells the
// seed, so that both record it.
func TestJoinerRefusesLargerFabric(t *testing.T) {
	l := testLimits(200*time.Millisecond, 3)
	nodes := startCluster(t, 3, l, nil)
	seed := nodes[0]
	lj := l
	lj.MaxNodes.Star = 3
	joiner := startNode(t, testConfig("n03", lj, seed.Addr()))

	const reason = "fabric too large for this node: topology star allows 3 nodes here"
	waitFor(t, 10*time.Second, "the refusal on both sides", func() bool {
		return hasRefusal(joiner.Status().Refusals, "n00", false, reason) &&
			hasRefusal(seed.Status().Refusals, "n00", true, reason)
	})
	if s := joiner.Stats(); s.JoinsRefused == 0 {
		t.Errorf("joiner stats %+v: want JoinsRefused", s)
	}
	if s := seed.Stats(); s.JoinsRefusedByPeer == 0 {
		t.Errorf("seed stats %+v: want JoinsRefusedByPeer", s)
	}
	for _, n := range nodes {
		if st := stateOf(n, "n03"); st != "" {
			t.Errorf("%s knows the joiner that refused: %s", n.cfg.ID, st)
		}
	}
	lj.MaxNodes.Star = 4
	joiner.Apply(lj)
	waitConverged(t, append(nodes, joiner), 10*time.Second)
}

// TestDelegatesRefuseUnadmittedJoin: a join that bypasses the handshake
// (memberlist.Join directly) is refused by the merge and alive delegates;
// the intruder believes it joined (memberlist #132), the fabric does not
// count it.
func TestDelegatesRefuseUnadmittedJoin(t *testing.T) {
	l := testLimits(200*time.Millisecond, 3)
	l.MaxNodes.Star = 3
	nodes := startCluster(t, 3, l, nil)
	li := l
	li.MaxNodes.Star = 1000
	intruder := startNode(t, testConfig("n03", li))
	if _, err := intruder.ml.Load().Join([]string{nodes[0].Addr()}); err != nil {
		t.Fatalf("memberlist join: %v", err)
	}
	waitFor(t, 5*time.Second, "the merge refusal", func() bool {
		return hasRefusal(nodes[0].Status().Refusals, "n03", false, "merging 1 nodes (n03) would exceed it")
	})
	// Gossip about the intruder reaches the others; their alive delegate
	// refuses it.
	time.Sleep(2 * time.Second)
	for _, n := range nodes {
		if st := stateOf(n, "n03"); st != "" || n.Status().NodeCount != 3 {
			t.Errorf("%s: intruder is %q, count %d; want unknown, 3", n.cfg.ID, st, n.Status().NodeCount)
		}
	}
	t.Logf("the intruder counts %d nodes (one-sided join)", intruder.Status().NodeCount)
}

func TestEncryptedGossip(t *testing.T) {
	l := testLimits(200*time.Millisecond, 3)
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	nodes := startCluster(t, 2, l, func(_ int, c *Config) { c.SecretKey = key })
	for _, n := range nodes {
		if !n.Status().Encrypted {
			t.Errorf("%s: not encrypted", n.cfg.ID)
		}
	}
	other := testConfig("n02", l, nodes[0].Addr())
	other.SecretKey = make([]byte, 16)
	outsider := startNode(t, other)
	plain := startNode(t, testConfig("n03", l, nodes[0].Addr()))
	if plain.Status().Encrypted {
		t.Error("a node without a key says it is encrypted")
	}
	time.Sleep(2 * time.Second)
	for _, n := range nodes {
		if c := n.Status().NodeCount; c != 2 {
			t.Errorf("%s counts %d, want 2: a node without the key got in", n.cfg.ID, c)
		}
	}
	if c := outsider.Status().NodeCount; c != 1 {
		t.Errorf("outsider counts %d, want 1", c)
	}
}

func TestStartErrors(t *testing.T) {
	long := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'x'
		}
		return string(b)
	}
	l := testLimits(time.Second, 3)
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"empty id", func(c *Config) { c.ID = "" }, "node id is empty"},
		{"long id", func(c *Config) { c.ID = long(129) }, "node id is 129 bytes; at most 128 allowed"},
		{"key length", func(c *Config) { c.SecretKey = []byte("short") }, "gossip key is 5 bytes; it must be 16, 24 or 32"},
		{"bind without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, "want host:port"},
		{"bind port", func(c *Config) { c.BindAddr = "127.0.0.1:99999" }, `port "99999"`},
		{"limits", func(c *Config) { c.Limits.MissedHeartbeats = 0 }, "limits.missed_heartbeats is 0"},
		{"metadata", func(c *Config) { c.ID, c.Federation, c.APIAddress = long(128), long(128), long(256) }, "memberlist allows 512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("n00", l)
			tt.mod(&cfg)
			n, err := start(cfg, testHooks)
			if err == nil {
				n.crash()
				t.Fatalf("start succeeded, want an error containing %q", tt.want)
			}
			if !containsStr(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestUnreachableSeed: Start does not fail; the node runs alone and joins
// once the seed appears.
func TestUnreachableSeed(t *testing.T) {
	l := testLimits(200*time.Millisecond, 3)
	// Reserve a port, then free it for the seed to bind later.
	probe := startNode(t, testConfig("zz", l))
	addr := probe.Addr()
	if err := probe.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	joiner := startNode(t, testConfig("n01", l, addr))
	time.Sleep(500 * time.Millisecond)
	if c := joiner.Status().NodeCount; c != 1 {
		t.Fatalf("count %d alone, want 1", c)
	}
	cfg := testConfig("n00", l)
	cfg.BindAddr = addr
	seed := startNode(t, cfg)
	waitConverged(t, []*Node{seed, joiner}, 10*time.Second)
}

func hasSwitch(ss []Switch, from, to Topology, applied bool, reason string) bool {
	for _, s := range ss {
		if s.From == from && s.To == to && s.Applied == applied && containsStr(s.Reason, reason) && !s.At.IsZero() {
			return true
		}
	}
	return false
}

func closeNode(t testing.TB, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatalf("close %s: %v", n.cfg.ID, err)
	}
}

// switchLimits: star up at 0.75 × 6 = 4.5 (5 nodes), mesh down below
// 0.5 × 6 = 3 (2 nodes); 3 and 4 nodes sit between the thresholds.
func switchLimits(mode Mode) Limits {
	l := testLimits(200*time.Millisecond, 3)
	l.MaxNodes = MaxNodes{Star: 6, Mesh: 20, Federated: 100}
	l.Switching = Switching{Mode: mode, UpAt: 0.75, DownAt: 0.5}
	return l
}

// TestSwitchAuto: up at 5 nodes, no flap between the thresholds, down at
// 2 nodes; every node adopts and records each switch.
func TestSwitchAuto(t *testing.T) {
	l := switchLimits(ModeAuto)
	iv := l.HeartbeatInterval
	nodes := startCluster(t, 4, l, nil)
	time.Sleep(8 * iv) // well past 3 evaluations
	for _, n := range nodes {
		if st := n.Status(); st.Topology != TopologyStar || st.Epoch != 0 || st.Recommendation != "" {
			t.Fatalf("%s at 4 nodes: %s epoch %d recommendation %q; want star, 0, none", n.cfg.ID, st.Topology, st.Epoch, st.Recommendation)
		}
	}

	fifth := startNode(t, testConfig("n04", l, nodes[0].Addr()))
	all := append(nodes, fifth)
	waitFor(t, 10*time.Second, "the switch up to mesh", func() bool {
		for _, n := range all {
			if st := n.Status(); st.Topology != TopologyMesh || st.Epoch != 1 {
				return false
			}
		}
		return true
	})
	for _, n := range all {
		st := n.Status()
		if n != fifth && !hasSwitch(st.Switches, TopologyStar, TopologyMesh, true, "node count 5 reached up_at 0.75") {
			t.Errorf("%s: switches %+v, want star → mesh applied", n.cfg.ID, st.Switches)
		}
		if st.Role != RoleMember || st.Hub != "" {
			t.Errorf("%s: role %q hub %q in mesh", n.cfg.ID, st.Role, st.Hub)
		}
	}
	waitConverged(t, all, 5*time.Second)

	// Down to 3 nodes: between the thresholds, nothing moves.
	closeNode(t, fifth)
	closeNode(t, nodes[3])
	rest := nodes[:3]
	waitFor(t, 5*time.Second, "a count of 3", func() bool {
		for _, n := range rest {
			if n.Status().NodeCount != 3 {
				return false
			}
		}
		return true
	})
	time.Sleep(8 * iv)
	for _, n := range rest {
		st := n.Status()
		if st.Topology != TopologyMesh || st.Epoch != 1 || st.Recommendation != "" || n.Stats().Switches != 1 {
			t.Errorf("%s at 3 nodes: %s epoch %d rec %q switches %d; want mesh, 1, none, 1 (no flap)",
				n.cfg.ID, st.Topology, st.Epoch, st.Recommendation, n.Stats().Switches)
		}
	}

	// Down to 2 nodes: below down_at, back to star.
	closeNode(t, nodes[2])
	rest = nodes[:2]
	waitFor(t, 10*time.Second, "the switch down to star", func() bool {
		for _, n := range rest {
			if st := n.Status(); st.Topology != TopologyStar || st.Epoch != 2 {
				return false
			}
		}
		return true
	})
	for _, n := range rest {
		st := n.Status()
		if !hasSwitch(st.Switches, TopologyMesh, TopologyStar, true, "node count 2 is below down_at 0.5") {
			t.Errorf("%s: switches %+v, want mesh → star applied", n.cfg.ID, st.Switches)
		}
		if st.Switches[0].To != TopologyStar || n.Stats().Switches != 2 {
			t.Errorf("%s: newest switch %+v, %d switches; want the one to star first, 2", n.cfg.ID, st.Switches[0], n.Stats().Switches)
		}
	}
	waitConverged(t, rest, 5*time.Second)
}

// TestSwitchModes: off evaluates nothing, recommend only reports, and
// switching the mode to auto live applies the recommendation.
func TestSwitchModes(t *testing.T) {
	l := switchLimits(ModeOff)
	iv := l.HeartbeatInterval
	nodes := startCluster(t, 5, l, nil)
	time.Sleep(8 * iv)
	for _, n := range nodes {
		if st := n.Status(); st.Recommendation != "" || len(st.Switches) != 0 || st.Topology != TopologyStar {
			t.Fatalf("%s in mode off: %+v", n.cfg.ID, st)
		}
	}

	l.Switching.Mode = ModeRecommend
	for _, n := range nodes {
		n.Apply(l)
	}
	waitFor(t, 5*time.Second, "a recommendation", func() bool {
		for _, n := range nodes {
			if n.Status().Recommendation != TopologyMesh {
				return false
			}
		}
		return true
	})
	time.Sleep(8 * iv)
	for _, n := range nodes {
		st := n.Status()
		if st.Topology != TopologyStar || st.Epoch != 0 || n.Stats().Switches != 0 {
			t.Errorf("%s: recommend mode switched: %s epoch %d", n.cfg.ID, st.Topology, st.Epoch)
		}
		if !hasSwitch(st.Switches, TopologyStar, TopologyMesh, false, "reached up_at") || len(st.Switches) != 1 {
			t.Errorf("%s: switches %+v, want one recommendation star → mesh", n.cfg.ID, st.Switches)
		}
		if n.Stats().Recommendations != 1 || !containsStr(st.RecommendationReason, "node count 5") {
			t.Errorf("%s: %d recommendations, reason %q", n.cfg.ID, n.Stats().Recommendations, st.RecommendationReason)
		}
	}

	l.Switching.Mode = ModeAuto
	for _, n := range nodes {
		n.Apply(l)
	}
	waitFor(t, 10*time.Second, "the switch after mode auto", func() bool {
		for _, n := range nodes {
			if st := n.Status(); st.Topology != TopologyMesh || st.Epoch != 1 || st.Recommendation != "" {
				return false
			}
		}
		return true
	})
	waitConverged(t, nodes, 5*time.Second)
}

// TestStarHubFailure: the hub crashes; every survivor chooses the same new
// hub (the smallest id left) and the fabric stays healthy around it.
func TestStarHubFailure(t *testing.T) {
	const iv = 200 * time.Millisecond
	nodes := startCluster(t, 5, testLimits(iv, 3), nil)
	time.Sleep(3 * iv)
	nodes[0].crash()
	rest := nodes[1:]
	waitFor(t, 10*time.Second, "a new hub", func() bool {
		for _, n := range rest {
			if st := n.Status(); st.Hub != "n01" || stateOf(n, "n00") != StateDead {
				return false
			}
		}
		return true
	})
	time.Sleep(10 * iv) // the new hub's watches run through several deadlines
	for _, n := range rest {
		st := n.Status()
		want := RoleLeaf
		if n.cfg.ID == "n01" {
			want = RoleHub
		}
		if st.Role != want || st.NodeCount != 4 {
			t.Errorf("%s: role %q count %d; want %q, 4", n.cfg.ID, st.Role, st.NodeCount, want)
		}
		for _, i := range n.Nodes() {
			if i.ID == "n00" || i.Self {
				continue
			}
			if i.State != StateAlive {
				t.Errorf("%s sees %s %s after the hub change", n.cfg.ID, i.ID, i.State)
			}
			if watched := n.cfg.ID == "n01" || i.ID == "n01"; i.Watched != watched {
				t.Errorf("%s: watched %s = %v, want %v", n.cfg.ID, i.ID, i.Watched, watched)
			}
		}
	}
	if i := infoOf(t, nodes[3], "n01"); i.RTT <= 0 || time.Since(i.LastHeartbeat) > 3*iv {
		t.Errorf("leaf's view of the new hub: %+v; want fresh acks", i)
	}
}

// TestLimitsChangeLive: interval, missed count, topology and max_nodes
// changed on running nodes take effect.
func TestLimitsChangeLive(t *testing.T) {
	l := testLimits(2*time.Second, 3) // bound 8 s
	nodes := startCluster(t, 4, l, nil)

	l.HeartbeatInterval, l.MissedHeartbeats = 200*time.Millisecond, 2 // bound 600 ms
	for _, n := range nodes {
		n.Apply(l)
		if got := n.Status().Limits; got != l {
			t.Fatalf("%s: limits %+v after Apply, want %+v", n.cfg.ID, got, l)
		}
	}
	waitFor(t, 5*time.Second, "the new heartbeat rate", func() bool {
		return nodes[1].Status().HeartbeatsPerSecond > 3 // 0.5/s before, 5/s after
	})
	t0 := time.Now()
	nodes[3].crash()
	rest := nodes[:3]
	var took time.Duration
	waitFor(t, 10*time.Second, "detection", func() bool {
		took = time.Since(t0)
		return sees(rest, []string{"n03"}, StateDead)
	})
	t.Logf("detected after %s with 200ms × 2", took)
	if bound := l.HeartbeatInterval * 3; took > bound+l.HeartbeatInterval {
		t.Errorf("detection took %s; the new bound is %s (+ %s tolerance)", took, bound, l.HeartbeatInterval)
	}

	// The configured topology changed on one node: the fabric follows.
	lm := l
	lm.Topology = TopologyMesh
	nodes[2].Apply(lm)
	waitFor(t, 5*time.Second, "mesh everywhere", func() bool {
		for _, n := range rest {
			if st := n.Status(); st.Topology != TopologyMesh || st.Epoch != 1 {
				return false
			}
		}
		return true
	})
	for _, n := range rest {
		if !hasSwitch(n.Status().Switches, TopologyStar, TopologyMesh, true, "configured topology changed from star to mesh") {
			t.Errorf("%s: switches %+v", n.cfg.ID, n.Status().Switches)
		}
	}
	// The others' configs change too: concurrent epoch bumps agree.
	for _, n := range rest[:2] {
		n.Apply(lm)
	}
	waitFor(t, 5*time.Second, "agreement on one record", func() bool {
		first := rest[0].Status()
		for _, n := range rest {
			if st := n.Status(); st.Epoch != first.Epoch || st.Topology != TopologyMesh || st.Epoch < 2 {
				return false
			}
		}
		return true
	})

	// max_nodes lowered below the count: nobody is evicted, joins are
	// refused, a switch is recommended.
	lm.MaxNodes.Mesh = 2
	lm.Switching.Mode = ModeRecommend
	for _, n := range rest {
		n.Apply(lm)
	}
	joiner := startNode(t, testConfig("n04", lm, rest[0].Addr()))
	waitFor(t, 5*time.Second, "the refusal and the recommendation", func() bool {
		return hasRefusal(rest[0].Status().Refusals, "n04", false, "fabric full: topology mesh allows 2 nodes and has 3") &&
			rest[1].Status().Recommendation == TopologyFederated
	})
	time.Sleep(5 * lm.HeartbeatInterval)
	for _, n := range rest {
		if st := n.Status(); st.NodeCount != 3 || st.MaxNodes != 2 {
			t.Errorf("%s: count %d max %d; want 3 (nobody evicted), 2", n.cfg.ID, st.NodeCount, st.MaxNodes)
		}
	}
	if c := joiner.Status().NodeCount; c != 1 {
		t.Errorf("joiner counts %d, want 1", c)
	}
}

func TestFederatedGateways(t *testing.T) {
	l := testLimits(200*time.Millisecond, 3)
	l.Topology = TopologyFederated
	nodes := startCluster(t, 6, l, func(i int, c *Config) { c.Federation = fmt.Sprintf("f%d", i%3) })
	want := []string{"n00", "n01", "n02"}
	for _, n := range nodes {
		st := n.Status()
		if fmt.Sprint(st.Gateways) != fmt.Sprint(want) {
			t.Errorf("%s: gateways %v, want %v", n.cfg.ID, st.Gateways, want)
		}
		role := RoleMember
		if n.cfg.ID < "n03" {
			role = RoleGateway
		}
		if st.Role != role {
			t.Errorf("%s: role %q, want %q", n.cfg.ID, st.Role, role)
		}
	}
	nodes[1].crash() // f1's gateway
	rest := without(nodes, nodes[1])
	want = []string{"n00", "n04", "n02"}
	waitFor(t, 10*time.Second, "a new gateway for f1", func() bool {
		for _, n := range rest {
			if fmt.Sprint(n.Status().Gateways) != fmt.Sprint(want) {
				return false
			}
		}
		return sees(rest, []string{"n01"}, StateDead)
	})
	waitFor(t, 5*time.Second, "n04 a gateway", func() bool { return nodes[4].Status().Role == RoleGateway })
}

// TestSeedListWithSelf: seeds naming the node itself are skipped (every
// node of a fabric usually has the same seed list).
func TestSeedListWithSelf(t *testing.T) {
	l := testLimits(200*time.Millisecond, 3)
	a := startNode(t, testConfig("n00", l))
	b := startNode(t, testConfig("n01", l))
	if !a.tryJoin([]string{a.Addr()}) {
		t.Fatal("a seed list of only this node did not end joining")
	}
	if c := a.Status().NodeCount; c != 1 {
		t.Fatalf("count %d after joining itself, want 1", c)
	}
	if !b.tryJoin([]string{b.Addr(), a.Addr()}) {
		t.Fatal("join through the second seed failed")
	}
	waitConverged(t, []*Node{a, b}, 10*time.Second)
}

// TestNodesPage: paging by id gives exactly Nodes(), in order, a page at a
// time, for every page size, with a node that left among the members; the
// counts by state and the watched trouble agree with the full list. (A
// long interval keeps every state still while the test compares.)
func TestNodesPage(t *testing.T) {
	nodes := startCluster(t, 5, testLimits(5*time.Second, 3), nil)
	victim := nodes[4]
	if err := victim.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := nodes[0]
	waitFor(t, 10*time.Second, "the node that left seen left", func() bool { return stateOf(n, victim.cfg.ID) == StateLeft })

	all := n.Nodes()
	if len(all) != 5 {
		t.Fatalf("the hub knows %d nodes, want 5: %+v", len(all), all)
	}
	for limit := 1; limit <= len(all)+1; limit++ {
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			if pages > len(all) {
				t.Fatalf("limit %d: paging does not end", limit)
			}
			page, more := n.NodesPage(after, limit)
			if len(page) > limit {
				t.Fatalf("limit %d: a page of %d", limit, len(page))
			}
			for _, ni := range page {
				got = append(got, ni.ID)
			}
			if !more {
				break
			}
			if len(page) == 0 {
				t.Fatalf("limit %d: an empty page says more follow", limit)
			}
			after = page[len(page)-1].ID
		}
		want := make([]string, len(all))
		for i, ni := range all {
			want[i] = ni.ID
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("limit %d: pages give %v, want %v", limit, got, want)
		}
	}
	if page, more := n.NodesPage(all[len(all)-1].ID, 10); len(page) != 0 || more {
		t.Errorf("after the last id: %d nodes, more %v; want none", len(page), more)
	}
	if page, more := n.NodesPage(all[1].ID, 2); len(page) != 2 || page[0].ID != all[2].ID || !more {
		t.Errorf("after %s, 2: %+v more %v; want %s, %s and more", all[1].ID, page, more, all[2].ID, all[3].ID)
	}

	counts := map[State]int{}
	var suspect, dead []string
	for _, ni := range all {
		counts[ni.State]++
		if ni.Watched && ni.State == StateSuspect {
			suspect = append(suspect, ni.ID)
		}
		if ni.Watched && ni.State == StateDead {
			dead = append(dead, ni.ID)
		}
	}
	if got := n.CountByState(); fmt.Sprint(got) != fmt.Sprint(counts) || got[StateLeft] != 1 || got[StateAlive] != 4 {
		t.Errorf("CountByState = %v; the list counts %v (four alive, one left)", got, counts)
	}
	if s, d := n.WatchedTrouble(); fmt.Sprint(s, d) != fmt.Sprint(suspect, dead) {
		t.Errorf("WatchedTrouble = %v, %v; the list has %v, %v", s, d, suspect, dead)
	}
}

// TestJoinProblemShown: a node whose seed does not answer says so (the
// service turns it into degraded health) until it joins.
func TestJoinProblemShown(t *testing.T) {
	l := testLimits(200*time.Millisecond, 3)
	first := startNode(t, testConfig("n00", l))
	if p := first.JoinProblem(); p != "" {
		t.Errorf("a node with no seeds reports %q; want no join problem", p)
	}
	// A port nothing listens on: bind one, note it, close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	lone := startNode(t, testConfig("n01", l, dead))
	waitFor(t, 10*time.Second, "the unreachable seed reported", func() bool {
		return strings.Contains(lone.JoinProblem(), "seed "+dead)
	})
	joined := startNode(t, testConfig("n02", l, first.Addr()))
	waitConverged(t, []*Node{first, joined}, 10*time.Second)
	if p := joined.JoinProblem(); p != "" {
		t.Errorf("a joined node reports %q; want no join problem", p)
	}
}
