package node

import (
	"slices"
	"strings"
)

// peer is a member that takes part in the topology (alive or suspect).
type peer struct{ id, federation string }

// plan is one node's side of a topology: who it heartbeats (send: it
// watches them by their acks) and whose heartbeats it expects (expect: it
// watches them by their heartbeats), and every member's role.
type plan struct {
	hub      string            // star
	gateways map[string]string // federated: federation → gateway id
	roles    map[string]string // id → role
	send     []string          // sorted
	expect   []string          // sorted
}

// makePlan derives self's edges in topology t among peers (self is added
// when missing). Every node computes the same hub and gateways from the
// same member list: the smallest id (of the fabric, or of the federation).
func makePlan(t Topology, self peer, peers []peer) plan {
	ps := slices.Clone(peers)
	if !slices.ContainsFunc(ps, func(p peer) bool { return p.id == self.id }) {
		ps = append(ps, self)
	}
	slices.SortFunc(ps, func(a, b peer) int { return strings.Compare(a.id, b.id) })
	ps = slices.CompactFunc(ps, func(a, b peer) bool { return a.id == b.id })

	p := plan{roles: make(map[string]string, len(ps))}
	switch t {
	case TopologyMesh:
		for _, q := range ps {
			p.roles[q.id] = RoleMember
			if q.id != self.id {
				p.send = append(p.send, q.id)
			}
		}
	case TopologyFederated:
		p.gateways = map[string]string{}
		for _, q := range ps { // sorted: the first of each federation is its gateway
			if _, ok := p.gateways[q.federation]; !ok {
				p.gateways[q.federation] = q.id
			}
		}
		myGateway := p.gateways[self.federation]
		for _, q := range ps {
			isGateway := p.gateways[q.federation] == q.id
			if isGateway {
				p.roles[q.id] = RoleGateway
			} else {
				p.roles[q.id] = RoleMember
			}
			if q.id == self.id {
				continue
			}
			if q.federation == self.federation || (isGateway && myGateway == self.id) {
				p.send = append(p.send, q.id)
			}
		}
	default: // star
		p.hub = ps[0].id
		for _, q := range ps {
			p.roles[q.id] = RoleLeaf
			if q.id != p.hub && self.id == p.hub {
				p.expect = append(p.expect, q.id)
			}
		}
		p.roles[p.hub] = RoleHub
		if self.id != p.hub {
			p.send = []string{p.hub}
		}
	}
	return p
}

// gatewayList returns the gateways in federation order.
func (p plan) gatewayList() []string {
	feds := make([]string, 0, len(p.gateways))
	for f := range p.gateways {
		feds = append(feds, f)
	}
	slices.Sort(feds)
	out := make([]string, len(feds))
	for i, f := range feds {
		out[i] = p.gateways[f]
	}
	return out
}

// watches returns the ids self watches: true for an active watch (by
// acks), false for a passive one (by heartbeats).
func (p plan) watches() map[string]bool {
	w := make(map[string]bool, len(p.send)+len(p.expect))
	for _, id := range p.expect {
		w[id] = false
	}
	for _, id := range p.send {
		w[id] = true
	}
	return w
}
