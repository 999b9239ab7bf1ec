package node

import (
	"bytes"
	"hash/fnv"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate plugs a Node into memberlist. memberlist calls the event and
// alive delegates with its node lock held, so none of these methods calls
// back into memberlist; they take n.mu only briefly and hand any sending
// to code that runs without either lock.
type delegate struct{ n *Node }

var (
	_ memberlist.Delegate      = delegate{}
	_ memberlist.EventDelegate = delegate{}
	_ memberlist.AliveDelegate = delegate{}
	_ memberlist.MergeDelegate = delegate{}
)

func (d delegate) NodeMeta(limit int) []byte {
	if len(d.n.meta) > limit {
		return nil // checked at Start; never happens
	}
	return d.n.meta
}

func (d delegate) NotifyMsg(b []byte) { d.n.handleMessage(b) }

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.n.bcast.GetBroadcasts(overhead, limit)
}

// LocalState sends the topology record; a node in the middle of joining
// marks it so that the fabric ignores a newcomer's record.
func (d delegate) LocalState(join bool) []byte {
	n := d.n
	n.mu.Lock()
	r := n.topo
	n.mu.Unlock()
	return encode(pushState{Joining: n.joining.Load(), Record: r})
}

// MergeRemoteState merges a peer's topology record: a joining node adopts
// the fabric's record whatever its own; otherwise precedence decides.
func (d delegate) MergeRemoteState(buf []byte, join bool) {
	n := d.n
	m, err := decodeMessage(buf)
	st, ok := m.(pushState)
	if err != nil || !ok {
		n.log.Debug("fabric push/pull state dropped", "error", err)
		return
	}
	now := time.Now()
	joining := n.joining.Load()
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
	case st.Joining && !joining:
		// A newcomer's configuration does not change the fabric.
	case join && joining && !st.Joining:
		if st.Record != n.topo {
			n.log.Info("adopting the fabric's topology", "topology", st.Record.Topology, "epoch", st.Record.Epoch,
				"configured", n.limits.Topology)
			changed := st.Record.Topology != n.topo.Topology
			n.topo = st.Record
			n.streak = switchStreak{}
			n.rec, n.recReason = "", ""
			if changed {
				n.replanLocked(now)
			}
		}
		n.queueBroadcastLocked("topology", encode(n.topo)) // replaces any record of ours still queued
	case st.Record.supersedes(n.topo):
		n.adoptLocked(st.Record, now)
		n.queueBroadcastLocked("topology", encode(n.topo))
	}
}

func newMember(m *memberlist.Node) (*member, error) {
	c := *m
	c.Addr = bytes.Clone(m.Addr)
	c.Meta = bytes.Clone(m.Meta)
	mem := &member{node: c, meta: nodeMeta{ID: m.Name}}
	dm, err := decodeMessage(m.Meta)
	if err != nil {
		return mem, err
	}
	if meta, ok := dm.(nodeMeta); ok {
		mem.meta = meta
	}
	return mem, nil
}

func (d delegate) NotifyJoin(m *memberlist.Node) { d.n.memberUp(m, true) }

func (d delegate) NotifyUpdate(m *memberlist.Node) { d.n.memberUp(m, false) }

// memberUp handles memberlist's join (a new member, or one back from dead
// or left) and update (new metadata) events.
func (n *Node) memberUp(m *memberlist.Node, join bool) {
	if m.Name == n.cfg.ID {
		return
	}
	mem, err := newMember(m)
	if err != nil {
		n.log.Warn("fabric node metadata unreadable", "node", m.Name, "error", err)
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.live[m.Name]; !ok {
		n.digest ^= idHash(m.Name)
	}
	n.live[m.Name] = mem
	n.numLive.Store(int64(len(n.live)))
	delete(n.reservations, m.Name)
	r := n.recordForLocked(m.Name)
	oldInc := r.inc
	r.setMember(mem)
	if r.state == StateDead || r.state == StateLeft {
		if join || mem.meta.Inc > oldInc {
			n.log.Info("node back", "node", m.Name, "was", r.state, "address", r.address)
			r.state, r.missed = StateAlive, 0
		}
	} else if join {
		n.log.Info("node joined", "node", m.Name, "address", r.address, "federation", mem.meta.Federation)
	}
	n.replanLocked(now)
	signal(n.kick)
}

// NotifyLeave: memberlist dropped the node (its failure detector, or a
// leave). The node stays in the health cache as dead, or left when it
// said so.
func (d delegate) NotifyLeave(m *memberlist.Node) {
	n := d.n
	if m.Name == n.cfg.ID {
		return
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	mem, ok := n.live[m.Name]
	if !ok {
		var err error
		if mem, err = newMember(m); err != nil {
			n.log.Debug("fabric node metadata unreadable", "node", m.Name, "error", err)
		}
	}
	r := n.recordForLocked(m.Name)
	if r == nil {
		r = &record{id: m.Name}
		r.setMember(mem)
		n.records.Add(m.Name, r)
	}
	if _, ok := n.live[m.Name]; ok {
		n.digest ^= idHash(m.Name)
		delete(n.live, m.Name)
	}
	n.numLive.Store(int64(len(n.live)))
	switch r.state {
	case StateLeft:
	case StateDead:
		n.log.Debug("memberlist removed dead node", "node", m.Name)
	default:
		n.log.Info("memberlist removed node", "node", m.Name)
		r.state = StateDead
	}
	r.missed = 0
	n.replanLocked(now)
	signal(n.kick)
}

func (d delegate) NotifyAlive(p *memberlist.Node) error { return d.n.admitAlive(p) }

func (d delegate) NotifyMerge(peers []*memberlist.Node) error { return d.n.admitMerge(peers) }

// handleMessage decodes and applies one user message (direct or gossiped).
func (n *Node) handleMessage(b []byte) {
	msg, err := decodeMessage(b)
	if err != nil {
		n.log.Debug("fabric message dropped", "error", err)
		return
	}
	n.step(func(now time.Time) []outMsg { return n.applyLocked(msg, now) })
}

// applyLocked applies one decoded message and returns the replies.
func (n *Node) applyLocked(msg message, now time.Time) []outMsg {
	switch m := msg.(type) {
	case heartbeat:
		return n.onHeartbeatLocked(m, now)
	case ack:
		return n.onAckLocked(m, now)
	case dead:
		return n.onDeadLocked(m, now)
	case alive:
		n.onAliveLocked(m, now)
	case topoRecord:
		if m.supersedes(n.topo) {
			n.adoptLocked(m, now)
			n.queueBroadcastLocked("topology", encode(m))
		}
	case admit:
		select {
		case n.admits <- m:
		default:
			n.log.Warn("fabric join request dropped: too many pending", "node", m.ID)
		}
	case verdict:
		if n.pending != nil && n.pending.nonce == m.Nonce {
			select {
			case n.pending.ch <- m:
			default:
			}
		}
	case withdraw:
		n.onWithdrawLocked(m, now)
	default:
		n.log.Debug("fabric message of unexpected type dropped", "type", msg.kind())
	}
	return nil
}

// onHeartbeatLocked acks any heartbeat (to the address it names, so that
// a node not yet known here gets its ack) and feeds passive watches.
func (n *Node) onHeartbeatLocked(h heartbeat, now time.Time) []outMsg {
	if h.From == n.cfg.ID {
		return nil
	}
	n.stats.hbRecv.Add(1)
	out := []outMsg{{
		addr: memberlist.Address{Addr: h.Addr, Name: h.From},
		b: encode(ack{
			From: n.cfg.ID, Seq: h.Seq, Epoch: n.topo.Epoch, Inc: n.inc,
			Members: uint64(len(n.live) + 1), Digest: n.digest,
		}),
		kind: typeAck,
	}}
	n.compareMembershipLocked(h.Addr, h.Members, h.Digest, now)
	m, ok := n.live[h.From]
	if !ok {
		return out
	}
	out[0].to = &m.node
	r := n.recordForLocked(h.From)
	r.lastHb = now
	r.inc = max(r.inc, h.Inc)
	w, watched := n.watches[h.From]
	if watched && !w.active {
		w.lastHeard, w.peerInterval = now, h.Interval
		r.missed = 0
		if r.state == StateSuspect {
			r.state = StateAlive
		}
	}
	out = append(out, n.heardFromLocked(r, m, now)...)
	if h.Epoch < n.topo.Epoch {
		out = append(out, outMsg{to: &m.node, b: encode(n.topo), kind: typeTopology})
	}
	return out
}

// onAckLocked feeds active watches and RTT.
func (n *Node) onAckLocked(a ack, now time.Time) []outMsg {
	if a.From == n.cfg.ID {
		return nil
	}
	n.stats.ackRecv.Add(1)
	m, ok := n.live[a.From]
	if !ok {
		return nil
	}
	n.compareMembershipLocked(m.node.Address(), a.Members, a.Digest, now)
	r := n.recordForLocked(a.From)
	r.lastAck = now
	r.inc = max(r.inc, a.Inc)
	if s := n.sent[a.Seq%uint64(len(n.sent))]; s.seq == a.Seq && a.Seq != 0 {
		r.rtt = now.Sub(s.at)
	}
	w, watched := n.watches[a.From]
	if watched && w.active {
		w.lastHeard = now
		r.missed = 0
		if r.state == StateSuspect {
			r.state = StateAlive
		}
	}
	out := n.heardFromLocked(r, m, now)
	if a.Epoch < n.topo.Epoch {
		out = append(out, outMsg{to: &m.node, b: encode(n.topo), kind: typeTopology})
	}
	return out
}

// heardFromLocked: a node declared dead spoke to us directly, so it is
// alive; it is told it was declared dead so that it refutes to everyone.
func (n *Node) heardFromLocked(r *record, m *member, now time.Time) []outMsg {
	if r.state != StateDead {
		return nil
	}
	n.log.Info("node declared dead is alive again (heard directly)", "node", r.id)
	r.state, r.missed = StateAlive, 0
	n.replanLocked(now)
	signal(n.kick)
	return []outMsg{{to: &m.node, b: encode(dead{Node: r.id, Inc: r.inc, From: n.cfg.ID}), kind: typeDead}}
}

// onDeadLocked applies a dead message; Node == From means the node left.
func (n *Node) onDeadLocked(d dead, now time.Time) []outMsg {
	left := d.Node == d.From
	if d.Node == n.cfg.ID {
		if n.leaving.Load() || d.Inc < n.inc {
			return nil // our own leave, or stale: our refutation is already out
		}
		n.inc = d.Inc + 1
		n.log.Warn("refuting a dead message about this node", "from", d.From, "incarnation", n.inc)
		b := encode(alive{Node: n.cfg.ID, Inc: n.inc})
		n.queueBroadcastLocked("life:"+n.cfg.ID, b)
		return n.toAllLocked(b, typeAlive)
	}
	r := n.recordForLocked(d.Node)
	if r == nil || d.Inc < r.inc || r.state == StateLeft {
		return nil
	}
	if left {
		n.log.Info("node left", "node", d.Node)
		r.state, r.missed, r.inc = StateLeft, 0, d.Inc
	} else {
		if r.state == StateDead {
			return nil
		}
		heard := r.lastHb
		if r.lastAck.After(heard) {
			heard = r.lastAck
		}
		if !heard.IsZero() && missedBeats(now, heard, n.limits.HeartbeatInterval) == 0 {
			n.log.Debug("ignoring dead message: heard from the node recently", "node", d.Node, "by", d.From)
			return nil
		}
		n.log.Warn("node declared dead by peer", "node", d.Node, "by", d.From)
		r.state, r.missed, r.inc = StateDead, 0, d.Inc
	}
	n.queueBroadcastLocked("life:"+d.Node, encode(d))
	n.replanLocked(now)
	signal(n.kick)
	return nil
}

// onAliveLocked applies a refutation.
func (n *Node) onAliveLocked(a alive, now time.Time) {
	if a.Node == n.cfg.ID {
		return
	}
	r := n.recordForLocked(a.Node)
	if r == nil || a.Inc <= r.inc {
		return
	}
	r.inc = a.Inc
	n.queueBroadcastLocked("life:"+a.Node, encode(a))
	if _, ok := n.live[a.Node]; ok && r.state == StateDead {
		n.log.Info("node refuted its death", "node", a.Node, "incarnation", a.Inc)
		r.state, r.missed = StateAlive, 0
		n.replanLocked(now)
		signal(n.kick)
	}
}

// Membership repair. memberlist spreads joins by gossip with a bounded
// number of retransmissions; when many nodes join at once a node can miss
// one, and only memberlist's push/pull (every 30 s, scaled up with the
// fabric's size) repairs that. Heartbeats and acks carry the sender's
// member count and an order-independent digest of its member ids; when a
// peer that knows at least as many members has disagreed for syncAfter,
// this node runs a memberlist push/pull with it (at most once per
// syncCooldown).
const (
	syncAfter    = 2 * time.Second
	syncCooldown = 5 * time.Second
)

// idHash is one id's share of the membership digest (XOR of all of them).
func idHash(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()
}

func (n *Node) compareMembershipLocked(addr string, members, digest uint64, now time.Time) {
	if digest == n.digest {
		n.mismatch = time.Time{}
		return
	}
	if members < uint64(len(n.live)+1) {
		return // the peer knows fewer: it will pull from us
	}
	if n.mismatch.IsZero() {
		n.mismatch = now
		return
	}
	if now.Sub(n.mismatch) < syncAfter || now.Before(n.nextSync) {
		return
	}
	select {
	case n.syncs <- addr:
		n.mismatch, n.nextSync = time.Time{}, now.Add(syncCooldown)
	default:
	}
}

// syncWorker runs the push/pulls that compareMembershipLocked asks for.
func (n *Node) syncWorker() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case addr := <-n.syncs:
			if _, err := n.ml.Load().Join([]string{addr}); err != nil {
				n.log.Debug("membership push/pull failed", "peer", addr, "error", err)
			} else {
				n.log.Debug("membership pushed/pulled after a digest mismatch", "peer", addr)
			}
		}
	}
}
