package node

import (
	"strings"
	"testing"
)

func TestRecommend(t *testing.T) {
	def := MaxNodes{Star: 1000, Mesh: 500, Federated: 10000}
	small := MaxNodes{Star: 10, Mesh: 100, Federated: 1000}
	tests := []struct {
		name   string
		count  int
		cur    Topology
		max    MaxNodes
		want   Topology
		reason string
	}{
		{"star below up", 7, TopologyStar, small, "", ""},
		{"star at up", 8, TopologyStar, small, TopologyMesh, "node count 8 reached up_at 0.8 × max_nodes.star 10 = 8; mesh fits"},
		{"star skips a mesh that does not fit", 800, TopologyStar, def, TopologyFederated, "federated fits"},
		{"nothing fits: the top", 20000, TopologyStar, def, TopologyFederated, "no topology above fits"},
		{"federated never moves up", 20000, TopologyFederated, def, "", ""},
		{"mesh down", 4, TopologyMesh, small, TopologyStar, "below down_at 0.5 × max_nodes.star 10 = 5"},
		{"mesh between thresholds", 5, TopologyMesh, small, "", ""},
		{"federated down to mesh", 49, TopologyFederated, small, TopologyMesh, "max_nodes.mesh 100"},
		{"federated holds", 50, TopologyFederated, small, "", ""},
		{"star never moves down", 1, TopologyStar, small, "", ""},
		{"unknown topology", 5, "ring", small, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := recommend(tt.count, tt.cur, tt.max, 0.8, 0.5)
			if got != tt.want {
				t.Fatalf("recommend = %q (%s), want %q", got, reason, tt.want)
			}
			if !strings.Contains(reason, tt.reason) {
				t.Fatalf("reason %q, want it to contain %q", reason, tt.reason)
			}
		})
	}
}

// TestRecommendNoFlap: for every count, after following a recommendation
// the rules never recommend the way back at the same count.
func TestRecommendNoFlap(t *testing.T) {
	for _, m := range []MaxNodes{{1000, 500, 10000}, {10, 100, 1000}, {100, 50, 10000}, {6, 20, 100}, {3, 3, 3}} {
		for _, th := range [][2]float64{{0.8, 0.5}, {0.75, 0.5}, {1, 0.99}, {0.2, 0.1}} {
			for count := 1; count <= 12000; count += 1 + count/50 {
				for _, start := range topologies {
					cur, seen := start, map[Topology]bool{start: true}
					for {
						next, _ := recommend(count, cur, m, th[0], th[1])
						if next == "" {
							break
						}
						if seen[next] {
							t.Fatalf("max %+v thresholds %v count %d: %s → %s flaps", m, th, count, cur, next)
						}
						seen[next], cur = true, next
					}
				}
			}
		}
	}
}

func TestSwitchStreak(t *testing.T) {
	type step struct {
		tick bool
		cand Topology
		want Topology
	}
	m, s := TopologyMesh, TopologyStar
	tests := []struct {
		name  string
		steps []step
	}{
		{"three ticks make it stable", []step{{true, m, ""}, {true, m, ""}, {true, m, m}, {true, m, m}}},
		{"a gap resets", []step{{true, m, ""}, {true, m, ""}, {true, "", ""}, {true, m, ""}, {true, m, ""}, {true, m, m}}},
		{"a different candidate restarts", []step{{true, m, ""}, {true, m, ""}, {true, s, ""}, {true, s, ""}, {true, s, s}}},
		{"checks between ticks do not advance", []step{{true, m, ""}, {false, m, ""}, {false, m, ""}, {false, m, ""}, {true, m, ""}, {true, m, m}}},
		{"a check that disagrees resets", []step{{true, m, ""}, {true, m, ""}, {false, "", ""}, {true, m, ""}}},
		{"a stable one is dropped at once", []step{{true, m, ""}, {true, m, ""}, {true, m, m}, {false, "", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st switchStreak
			for i, sp := range tt.steps {
				var got Topology
				if sp.tick {
					got = st.tick(sp.cand)
				} else {
					got = st.check(sp.cand)
				}
				if got != sp.want {
					t.Fatalf("step %d (%+v): stable %q, want %q", i, sp, got, sp.want)
				}
			}
		})
	}
}

func TestRecordPrecedence(t *testing.T) {
	tests := []struct {
		a, b topoRecord
		want bool
	}{
		{topoRecord{Epoch: 2, By: "a"}, topoRecord{Epoch: 1, By: "z"}, true},
		{topoRecord{Epoch: 1, By: "z"}, topoRecord{Epoch: 2, By: "a"}, false},
		{topoRecord{Epoch: 1, By: "b"}, topoRecord{Epoch: 1, By: "a"}, true},
		{topoRecord{Epoch: 1, By: "a"}, topoRecord{Epoch: 1, By: "b"}, false},
		{topoRecord{Epoch: 1, By: "a"}, topoRecord{Epoch: 1, By: "a"}, false},
	}
	for _, tt := range tests {
		if got := tt.a.supersedes(tt.b); got != tt.want {
			t.Errorf("%+v supersedes %+v = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	ok := Limits{
		MaxNodes: MaxNodes{1000, 500, 10000}, Topology: TopologyStar,
		Switching:         Switching{Mode: ModeRecommend, UpAt: 0.8, DownAt: 0.5},
		HeartbeatInterval: 15e9, MissedHeartbeats: 3,
	}
	tests := []struct {
		name string
		mod  func(*Limits)
		want string
	}{
		{"valid", func(*Limits) {}, ""},
		{"max zero", func(l *Limits) { l.MaxNodes.Mesh = 0 }, "limits.max_nodes.mesh is 0"},
		{"topology", func(l *Limits) { l.Topology = "ring" }, `limits.topology is "ring"; allowed: star, mesh, federated`},
		{"mode", func(l *Limits) { l.Switching.Mode = "yes" }, "limits.switching.mode"},
		{"down above up", func(l *Limits) { l.Switching.DownAt = 0.9 }, "0 < down_at < up_at <= 1"},
		{"up above one", func(l *Limits) { l.Switching.UpAt = 1.5 }, "0 < down_at < up_at <= 1"},
		{"down zero", func(l *Limits) { l.Switching.DownAt = 0 }, "0 < down_at < up_at <= 1"},
		{"interval", func(l *Limits) { l.HeartbeatInterval = 0 }, "limits.heartbeat_interval"},
		{"missed", func(l *Limits) { l.MissedHeartbeats = 0 }, "limits.missed_heartbeats is 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := ok
			tt.mod(&l)
			err := l.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
