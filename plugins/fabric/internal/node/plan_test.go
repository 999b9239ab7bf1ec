package node

import (
	"fmt"
	"reflect"
	"testing"
)

func TestMakePlan(t *testing.T) {
	abc := []peer{{"c", "x"}, {"a", "x"}, {"b", "x"}}
	fed := []peer{{"a1", "eu"}, {"a2", "eu"}, {"a3", "eu"}, {"b1", "us"}, {"b2", "us"}, {"c1", "ap"}}
	tests := []struct {
		name         string
		t            Topology
		self         string
		peers        []peer
		send, expect []string
		hub          string
		gateways     []string
		role         string
	}{
		{"star leaf", TopologyStar, "b", abc, []string{"a"}, nil, "a", nil, RoleLeaf},
		{"star hub", TopologyStar, "a", abc, nil, []string{"b", "c"}, "a", nil, RoleHub},
		{"star alone", TopologyStar, "z", nil, nil, nil, "z", nil, RoleHub},
		{"star self missing from peers", TopologyStar, "0", abc, nil, []string{"a", "b", "c"}, "0", nil, RoleHub},
		{"mesh", TopologyMesh, "b", abc, []string{"a", "c"}, nil, "", nil, RoleMember},
		{"mesh alone", TopologyMesh, "b", nil, nil, nil, "", nil, RoleMember},
		{"federated member", TopologyFederated, "a2", fed, []string{"a1", "a3"}, nil, "", []string{"c1", "a1", "b1"}, RoleMember},
		{"federated gateway", TopologyFederated, "a1", fed, []string{"a2", "a3", "b1", "c1"}, nil, "", []string{"c1", "a1", "b1"}, RoleGateway},
		{"federated lone gateway", TopologyFederated, "c1", fed, []string{"a1", "b1"}, nil, "", []string{"c1", "a1", "b1"}, RoleGateway},
		{"duplicates collapse", TopologyMesh, "a", append(abc, peer{"b", "x"}), []string{"b", "c"}, nil, "", nil, RoleMember},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			self := peer{id: tt.self, federation: "x"}
			for _, p := range tt.peers {
				if p.id == tt.self {
					self = p
				}
			}
			p := makePlan(tt.t, self, tt.peers)
			if !reflect.DeepEqual(p.send, tt.send) || !reflect.DeepEqual(p.expect, tt.expect) {
				t.Errorf("send %v expect %v, want %v %v", p.send, p.expect, tt.send, tt.expect)
			}
			if p.hub != tt.hub {
				t.Errorf("hub %q, want %q", p.hub, tt.hub)
			}
			if gw := p.gatewayList(); len(gw) > 0 || len(tt.gateways) > 0 {
				if !reflect.DeepEqual(gw, tt.gateways) {
					t.Errorf("gateways %v, want %v", gw, tt.gateways)
				}
			}
			if r := p.roles[tt.self]; r != tt.role {
				t.Errorf("role %q, want %q", r, tt.role)
			}
		})
	}
}

// TestPlanAgreement: every node derives the same hub, gateways and roles,
// and every edge is watched from both ends (send on one side; on the
// other, a send back or an expect).
func TestPlanAgreement(t *testing.T) {
	var peers []peer
	for i := range 23 {
		peers = append(peers, peer{id: fmt.Sprintf("n%02d", i), federation: fmt.Sprintf("f%d", i%4)})
	}
	for _, top := range topologies {
		plans := map[string]plan{}
		for _, p := range peers {
			plans[p.id] = makePlan(top, p, peers)
		}
		first := plans["n00"]
		for id, p := range plans {
			if p.hub != first.hub || !reflect.DeepEqual(p.roles, first.roles) || !reflect.DeepEqual(p.gatewayList(), first.gatewayList()) {
				t.Fatalf("%s: %s disagrees with n00", top, id)
			}
			for _, to := range p.send {
				if _, ok := plans[to].watches()[id]; !ok {
					t.Errorf("%s: %s heartbeats %s, which does not watch it", top, id, to)
				}
			}
		}
	}
}
