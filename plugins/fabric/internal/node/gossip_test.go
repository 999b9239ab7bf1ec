package node

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/memberlist"
)

// bareNode is a Node without memberlist (sends are dropped), with the
// given members, for the message rules.
func bareNode(t testing.TB, id string, members ...string) *Node {
	t.Helper()
	records, err := lru.New[string, *record](64)
	if err != nil {
		t.Fatal(err)
	}
	refusedAt, err := lru.New[string, time.Time](8)
	if err != nil {
		t.Fatal(err)
	}
	l := testLimits(time.Second, 3)
	n := &Node{
		cfg: Config{ID: id, Federation: "default"}, log: hclog.NewNullLogger(), hooks: hooks{}.withDefaults(),
		limits: l, live: map[string]*member{}, records: records, watches: map[string]*watch{},
		topo: topoRecord{Topology: l.Topology, By: id}, inc: 100, refusedAt: refusedAt,
		reservations: map[string]reservation{}, digest: idHash(id),
		kick: make(chan struct{}, 1), reset: make(chan struct{}, 1), retry: make(chan struct{}, 1),
		admits: make(chan admit, 1), syncs: make(chan string, 1), stop: make(chan struct{}),
	}
	n.bcast = &memberlist.TransmitLimitedQueue{NumNodes: func() int { return len(members) + 1 }, RetransmitMult: 4}
	for i, m := range members {
		n.memberUp(&memberlist.Node{
			Name: m, Addr: net.IPv4(127, 0, 0, 1), Port: uint16(7001 + i),
			Meta: encode(nodeMeta{ID: m, Federation: "default", Inc: 10}),
		}, true)
	}
	return n
}

func TestLifeAndDeathRules(t *testing.T) {
	type step struct {
		msg  message
		want State // c's state afterwards
	}
	deadC := func(inc uint64) dead { return dead{Node: "c", Inc: inc, From: "a"} }
	leftC := dead{Node: "c", Inc: 10, From: "c"}
	tests := []struct {
		name  string
		steps []step
	}{
		{"dead", []step{{deadC(10), StateDead}}},
		{"stale dead ignored", []step{{deadC(9), StateAlive}}},
		{"alive refutes", []step{{deadC(10), StateDead}, {alive{Node: "c", Inc: 11}, StateAlive}}},
		{"old alive does not refute", []step{{deadC(10), StateDead}, {alive{Node: "c", Inc: 10}, StateDead}}},
		{"dead after a refutation is stale", []step{{deadC(10), StateDead}, {alive{Node: "c", Inc: 11}, StateAlive}, {deadC(10), StateAlive}}},
		{"a newer dead wins again", []step{{alive{Node: "c", Inc: 11}, StateAlive}, {deadC(11), StateDead}}},
		{"left", []step{{leftC, StateLeft}}},
		{"left is final for dead and alive", []step{{leftC, StateLeft}, {deadC(12), StateLeft}, {alive{Node: "c", Inc: 13}, StateLeft}}},
		{"left after dead", []step{{deadC(10), StateDead}, {leftC, StateLeft}}},
		{"a direct heartbeat revives", []step{
			{deadC(10), StateDead},
			{heartbeat{From: "c", Addr: "127.0.0.1:7002", Seq: 1, Interval: time.Second, Members: 3}, StateAlive},
		}},
		{"a direct heartbeat does not revive a left node", []step{
			{leftC, StateLeft},
			{heartbeat{From: "c", Addr: "127.0.0.1:7002", Seq: 1, Interval: time.Second, Members: 3}, StateLeft},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := bareNode(t, "b", "a", "c")
			for i, s := range tt.steps {
				n.handleMessage(encode(s.msg))
				if got := stateOf(n, "c"); got != s.want {
					t.Fatalf("step %d (%T %+v): c is %s, want %s", i, s.msg, s.msg, got, s.want)
				}
			}
			wantCount := 3
			if st := stateOf(n, "c"); st == StateDead || st == StateLeft {
				wantCount = 2
			}
			if c := n.Status().NodeCount; c != wantCount {
				t.Fatalf("count %d, want %d", c, wantCount)
			}
		})
	}
}

func TestDeadIgnoredWhenHeardRecently(t *testing.T) {
	n := bareNode(t, "b", "a", "c")
	now := time.Now()
	n.mu.Lock()
	n.recordForLocked("c").lastAck = now.Add(-time.Second) // < 1.5 intervals ago
	n.onDeadLocked(dead{Node: "c", Inc: 10, From: "a"}, now)
	st := n.recordForLocked("c").state
	n.mu.Unlock()
	if st != StateAlive {
		t.Fatalf("c is %s after a dead message while heard 1s ago; want alive", st)
	}
	n.mu.Lock()
	n.onDeadLocked(dead{Node: "c", Inc: 10, From: "a"}, now.Add(time.Second)) // 2s: one missed
	st = n.recordForLocked("c").state
	n.mu.Unlock()
	if st != StateDead {
		t.Fatalf("c is %s; want dead once our own evidence is stale", st)
	}
}

// TestRefuteOwnDeath: a dead message about this node raises its
// incarnation and sends alive to every member; a stale one does nothing.
func TestRefuteOwnDeath(t *testing.T) {
	n := bareNode(t, "b", "a", "c")
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.onDeadLocked(dead{Node: "b", Inc: 100, From: "a"}, time.Now())
	if n.inc != 101 || len(out) != 2 {
		t.Fatalf("incarnation %d, %d messages; want 101 and alive to both members", n.inc, len(out))
	}
	m, err := decodeMessage(out[0].b)
	if a, ok := m.(alive); err != nil || !ok || a.Node != "b" || a.Inc != 101 {
		t.Fatalf("refutation %#v (%v)", m, err)
	}
	if out := n.onDeadLocked(dead{Node: "b", Inc: 99, From: "c"}, time.Now()); out != nil || n.inc != 101 {
		t.Fatalf("stale dead about self: %d messages, incarnation %d", len(out), n.inc)
	}
	n.leaving.Store(true)
	if out := n.onDeadLocked(dead{Node: "b", Inc: 101, From: "b"}, time.Now()); out != nil {
		t.Fatalf("own leave echoed back refuted: %d messages", len(out))
	}
}

func TestTopologyRecordPrecedence(t *testing.T) {
	tests := []struct {
		name       string
		in         []topoRecord
		want       topoRecord
		wantSwitch int
	}{
		{"higher epoch wins", []topoRecord{{Epoch: 1, Topology: TopologyMesh, By: "a", Reason: "r"}}, topoRecord{Epoch: 1, Topology: TopologyMesh, By: "a", Reason: "r"}, 1},
		{"lower epoch ignored", []topoRecord{
			{Epoch: 2, Topology: TopologyMesh, By: "a"}, {Epoch: 1, Topology: TopologyFederated, By: "z"},
		}, topoRecord{Epoch: 2, Topology: TopologyMesh, By: "a"}, 1},
		{"same epoch: greater setter", []topoRecord{
			{Epoch: 1, Topology: TopologyMesh, By: "a"}, {Epoch: 1, Topology: TopologyFederated, By: "c"}, {Epoch: 1, Topology: TopologyStar, By: "a0"},
		}, topoRecord{Epoch: 1, Topology: TopologyFederated, By: "c"}, 2},
		{"same topology, new epoch: no switch", []topoRecord{{Epoch: 5, Topology: TopologyStar, By: "a"}}, topoRecord{Epoch: 5, Topology: TopologyStar, By: "a"}, 0},
		{"epoch 0 by a smaller id does not beat ours", []topoRecord{{Epoch: 0, Topology: TopologyMesh, By: "a"}}, topoRecord{Topology: TopologyStar, By: "b"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := bareNode(t, "b", "a", "c")
			for _, r := range tt.in {
				n.handleMessage(encode(r))
			}
			st := n.Status()
			if n.topo != tt.want || st.Topology != tt.want.Topology || st.Epoch != tt.want.Epoch {
				t.Fatalf("record %+v, want %+v", n.topo, tt.want)
			}
			if len(st.Switches) != tt.wantSwitch || int(n.Stats().Switches) != tt.wantSwitch {
				t.Fatalf("switches %+v, want %d", st.Switches, tt.wantSwitch)
			}
		})
	}
}

// TestMergeRemoteState: a joining node adopts the fabric's record; the
// fabric ignores a newcomer's; otherwise precedence decides.
func TestMergeRemoteState(t *testing.T) {
	fabric := topoRecord{Epoch: 3, Topology: TopologyMesh, By: "a"}
	newcomer := topoRecord{Epoch: 9, Topology: TopologyFederated, By: "z"}
	tests := []struct {
		name       string
		joining    bool
		remote     pushState
		join       bool
		mine, want topoRecord
	}{
		{"joiner adopts a lower record", true, pushState{Record: fabric}, true, newcomer, fabric},
		{"fabric ignores a newcomer", false, pushState{Joining: true, Record: newcomer}, true, fabric, fabric},
		{"push/pull: higher wins", false, pushState{Record: newcomer}, false, fabric, newcomer},
		{"push/pull: lower ignored", false, pushState{Record: fabric}, false, newcomer, newcomer},
		{"two joiners: precedence", true, pushState{Joining: true, Record: fabric}, true, newcomer, newcomer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := bareNode(t, "b", "a")
			n.topo = tt.mine
			n.joining.Store(tt.joining)
			delegate{n}.MergeRemoteState(encode(tt.remote), tt.join)
			if n.topo != tt.want {
				t.Fatalf("record %+v, want %+v", n.topo, tt.want)
			}
			if got, err := decodeMessage(delegate{n}.LocalState(false)); err != nil || got.(pushState).Joining != tt.joining {
				t.Fatalf("local state %#v (%v): joining flag want %v", got, err, tt.joining)
			}
		})
	}
	n := bareNode(t, "b")
	delegate{n}.MergeRemoteState([]byte{0xff, 1, 2}, false) // garbage: ignored
	delegate{n}.MergeRemoteState(encode(alive{Node: "x", Inc: 1}), false)
	if n.topo.Epoch != 0 {
		t.Fatalf("garbage changed the record: %+v", n.topo)
	}
}

// TestCompareMembership: a push/pull is requested once a peer that knows
// at least as many members has disagreed for syncAfter, then not again
// for syncCooldown.
func TestCompareMembership(t *testing.T) {
	n := bareNode(t, "b", "a", "c") // 3 members
	t0 := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	requested := func() string {
		select {
		case a := <-n.syncs:
			return a
		default:
			return ""
		}
	}
	n.compareMembershipLocked("p:1", 2, 42, t0) // knows fewer: never
	n.compareMembershipLocked("p:1", 2, 42, t0.Add(time.Minute))
	if a := requested(); a != "" {
		t.Fatalf("sync with a peer that knows fewer: %s", a)
	}
	n.compareMembershipLocked("p:1", 4, 42, t0)
	n.compareMembershipLocked("p:1", 4, 42, t0.Add(syncAfter-time.Millisecond))
	if a := requested(); a != "" {
		t.Fatalf("sync before syncAfter: %s", a)
	}
	n.compareMembershipLocked("p:1", 4, n.digest, t0.Add(syncAfter)) // agreement resets
	n.compareMembershipLocked("p:1", 4, 42, t0.Add(syncAfter+time.Millisecond))
	if a := requested(); a != "" {
		t.Fatalf("sync right after agreement: %s", a)
	}
	t1 := t0.Add(syncAfter + time.Millisecond)
	n.compareMembershipLocked("p:2", 3, 42, t1.Add(syncAfter))
	if a := requested(); a != "p:2" {
		t.Fatalf("sync requested with %q, want p:2", a)
	}
	n.compareMembershipLocked("p:3", 3, 42, t1.Add(syncAfter+time.Second))
	n.compareMembershipLocked("p:3", 3, 42, t1.Add(2*syncAfter+time.Second))
	if a := requested(); a != "" {
		t.Fatalf("sync within the cooldown: %s", a)
	}
	n.compareMembershipLocked("p:3", 3, 42, t1.Add(syncAfter+syncCooldown+time.Second))
	if a := requested(); a != "p:3" {
		t.Fatalf("sync after the cooldown with %q, want p:3", a)
	}
	// The digest follows membership: XOR of the ids.
	if want := idHash("a") ^ idHash("b") ^ idHash("c"); n.digest != want {
		t.Fatalf("digest %x, want %x", n.digest, want)
	}
}

// TestAdmissionDelegates: members and reserved joiners pass; unknown
// nodes past the limit are refused, recorded once per dedup window.
func TestAdmissionDelegates(t *testing.T) {
	n := bareNode(t, "b", "a", "c") // count 3
	n.limits.MaxNodes.Star = 4
	mk := func(name string) *memberlist.Node {
		return &memberlist.Node{Name: name, Addr: net.IPv4(127, 0, 0, 9), Port: 9, State: memberlist.StateAlive}
	}
	if err := n.admitAlive(mk("b")); err != nil {
		t.Fatalf("self refused: %v", err)
	}
	if err := n.admitAlive(mk("a")); err != nil {
		t.Fatalf("member refused: %v", err)
	}
	if err := n.admitAlive(mk("d")); err != nil {
		t.Fatalf("d fits (3+1 <= 4): %v", err)
	}
	if err := n.admitMerge([]*memberlist.Node{mk("a"), mk("d"), mk("e")}); err == nil ||
		!containsStr(err.Error(), "fabric full: topology star allows 4 nodes and has 3; merging 2 nodes (d, e)") {
		t.Fatalf("merge of 2 unknown nodes: %v", err)
	}
	n.limits.MaxNodes.Star = 3
	for range 3 {
		if err := n.admitAlive(mk("d")); err == nil {
			t.Fatal("d admitted past the limit")
		}
	}
	// The merge refusal named d first: the alive refusals of d fall in
	// its dedup window.
	if got := n.Stats().JoinsRefused; got != 1 || len(n.Status().Refusals) != 1 {
		t.Fatalf("%d refusals counted, want 1 (once per node per window)", got)
	}
	n.mu.Lock()
	n.reservations["d"] = reservation{count: 1, until: time.Now().Add(time.Minute)}
	n.mu.Unlock()
	if err := n.admitAlive(mk("d")); err != nil {
		t.Fatalf("reserved joiner refused: %v", err)
	}
	dead := mk("x")
	dead.State = memberlist.StateDead
	if err := n.admitMerge([]*memberlist.Node{dead}); err != nil {
		t.Fatalf("a dead node in a merge counted: %v", err)
	}
}

// TestMembersSurviveEviction: live members never vanish from Nodes(),
// even when the health cache is smaller than the fabric.
func TestMembersSurviveEviction(t *testing.T) {
	n := bareNode(t, "b", "a", "c", "d", "e", "f")
	n.handleMessage(encode(dead{Node: "f", Inc: 10, From: "a"}))
	n.records.Resize(2)
	n.records.Add("gone", &record{id: "gone", state: StateLeft})
	got := map[string]State{}
	for _, i := range n.Nodes() {
		got[i.ID] = i.State
	}
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		if _, ok := got[id]; !ok {
			t.Errorf("member %s missing from Nodes() after eviction: %v", id, got)
		}
	}
	if got["gone"] != StateLeft {
		t.Errorf("cached left node: %v", got)
	}
}

func TestApplyOnBareNode(t *testing.T) {
	n := bareNode(t, "b", "a")
	l := n.limits
	bad := l
	bad.MissedHeartbeats = 0
	n.Apply(bad)
	if n.Status().Limits != l {
		t.Fatal("invalid limits applied")
	}
	l.Topology = TopologyFederated
	l.MaxNodes.Star = 2000
	n.Apply(l)
	st := n.Status()
	if st.Limits != l || st.Topology != TopologyFederated || st.Epoch != 1 || st.MaxNodes != 10000 {
		t.Fatalf("after Apply: %+v", st)
	}
	if !hasSwitch(st.Switches, TopologyStar, TopologyFederated, true, "configured topology changed from star to federated") {
		t.Fatalf("switches %+v", st.Switches)
	}
	n.Apply(l) // unchanged: no new epoch
	if n.Status().Epoch != 1 {
		t.Fatalf("epoch %d after re-applying the same limits", n.Status().Epoch)
	}
}
