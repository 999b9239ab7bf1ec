package node

import (
	"fmt"
	"testing"
	"time"
)

// The figures. Run them with
//
//	go test -run '^$' -bench . -benchtime 1x ./plugins/fabric/internal/node/
//
// Each iteration builds a fresh fabric on loopback; only the measured
// phase is timed.

// benchCluster starts count nodes joining n000 all at once (no waiting)
// and returns them with the time the joiners were started.
func benchCluster(b *testing.B, count int, l Limits, mod func(i int, c *Config)) ([]*Node, time.Time) {
	b.Helper()
	nodes := make([]*Node, count)
	var t0 time.Time
	for i := range count {
		cfg := testConfig(fmt.Sprintf("n%03d", i), l)
		if i > 0 {
			cfg.Join = []string{nodes[0].Addr()}
		}
		if mod != nil {
			mod(i, &cfg)
		}
		if i == 1 {
			t0 = time.Now()
		}
		n, err := start(cfg, testHooks)
		if err != nil {
			b.Fatalf("start %s: %v", cfg.ID, err)
		}
		nodes[i] = n
	}
	b.Cleanup(func() { closeAll(b, nodes) })
	return nodes, t0
}

// allAlive reports whether every node counts them all and sees each alive.
func allAlive(nodes []*Node) bool {
	for _, n := range nodes {
		if n.Status().NodeCount != len(nodes) {
			return false
		}
	}
	return sees(nodes, ids(nodes), StateAlive)
}

// BenchmarkConverge: time from starting the joiners (all pointing at one
// seed) until every node sees every other alive; membership spreads by
// memberlist gossip.
func BenchmarkConverge(b *testing.B) {
	for _, count := range []int{3, 20, 100} {
		b.Run(fmt.Sprintf("nodes-%d", count), func(b *testing.B) {
			for range b.N {
				nodes, t0 := benchCluster(b, count, testLimits(time.Second, 3), nil)
				deadline := t0.Add(50 * time.Second)
				for !allAlive(nodes) {
					if time.Now().After(deadline) {
						b.Fatalf("%d nodes did not converge within 50s", count)
					}
					time.Sleep(20 * time.Millisecond)
				}
				b.ReportMetric(time.Since(t0).Seconds(), "converge-s")
				b.StopTimer()
				closeAll(b, nodes)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkDetect kills one leaf of a 5-node star (Shutdown without
// Leave) and times until every survivor marks it dead, against the bound
// interval × (missed + 1); memberlist-default times memberlist's own
// failure detector (DefaultLANConfig) until every survivor's NotifyLeave.
func BenchmarkDetect(b *testing.B) {
	cases := []struct {
		name       string
		iv         time.Duration
		missed     int
		memberlist bool
	}{
		{"200ms-x3", 200 * time.Millisecond, 3, false},
		{"1s-x3", time.Second, 3, false},
		{"memberlist-default", time.Second, 3, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				nodes, _ := benchCluster(b, 5, testLimits(c.iv, c.missed), nil)
				for deadline := time.Now().Add(20 * time.Second); !allAlive(nodes); time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatal("no convergence")
					}
				}
				time.Sleep(3 * c.iv)
				victim, survivors := nodes[4], nodes[:4]
				b.StartTimer()
				t0 := time.Now()
				victim.crash()
				done := func() bool {
					for _, n := range survivors {
						if c.memberlist && n.isMember(victim.cfg.ID) || !c.memberlist && stateOf(n, victim.cfg.ID) != StateDead {
							return false
						}
					}
					return true
				}
				for deadline := t0.Add(50 * time.Second); !done(); time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatal("no detection within 50s")
					}
				}
				took := time.Since(t0)
				b.StopTimer()
				b.ReportMetric(took.Seconds(), "detect-s")
				if !c.memberlist {
					b.ReportMetric((c.iv * time.Duration(c.missed+1)).Seconds(), "bound-s")
				}
				closeAll(b, nodes)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkFanout: heartbeat messages sent per node per second in each
// topology at 50 nodes (1 s interval; federated: 5 federations of 10).
// hb counts heartbeats, msgs heartbeats plus acks.
func BenchmarkFanout(b *testing.B) {
	const count, window = 50, 5 * time.Second
	for _, top := range topologies {
		b.Run(fmt.Sprintf("%s-%d", top, count), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				l := testLimits(time.Second, 3)
				l.Topology = top
				nodes, _ := benchCluster(b, count, l, func(i int, c *Config) { c.Federation = fmt.Sprintf("f%d", i%5) })
				for deadline := time.Now().Add(40 * time.Second); !allAlive(nodes); time.Sleep(50 * time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatal("no convergence")
					}
				}
				time.Sleep(2 * l.HeartbeatInterval) // every node on the final plan
				b.StartTimer()
				before := make([]Stats, count)
				for i, n := range nodes {
					before[i] = n.Stats()
				}
				t0 := time.Now()
				time.Sleep(window)
				secs := time.Since(t0).Seconds()
				hb := make([]float64, count)
				msgs := make([]float64, count)
				var sumHb, sumMsgs float64
				for i, n := range nodes {
					s := n.Stats()
					hb[i] = float64(s.HeartbeatsSent-before[i].HeartbeatsSent) / secs
					msgs[i] = hb[i] + float64(s.AcksSent-before[i].AcksSent)/secs
					sumHb += hb[i]
					sumMsgs += msgs[i]
				}
				b.StopTimer()
				b.ReportMetric(sumHb/count, "hb/node/s")
				b.ReportMetric(sumMsgs/count, "msgs/node/s")
				switch top {
				case TopologyStar: // n000 is the hub
					b.ReportMetric(hb[0], "hub-hb/s")
					b.ReportMetric(msgs[0], "hub-msgs/s")
					b.ReportMetric(hb[1], "leaf-hb/s")
					b.ReportMetric(msgs[1], "leaf-msgs/s")
				case TopologyFederated: // n000 is f0's gateway, n005 a member of f0
					b.ReportMetric(hb[0], "gateway-hb/s")
					b.ReportMetric(hb[5], "member-hb/s")
				}
				closeAll(b, nodes)
				b.StartTimer()
			}
		})
	}
}
