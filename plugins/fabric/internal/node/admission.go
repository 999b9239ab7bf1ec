package node

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// fullReason is the refusal reason for a fabric at its max_nodes.
func fullReason(t Topology, limit, count int) string {
	return fmt.Sprintf("fabric full: topology %s allows %d nodes and has %d", t, limit, count)
}

// joinLoop joins the seeds, retrying with capped exponential backoff until
// one admits this node (or every seed is this node), or the node closes.
// Apply cuts a wait short: raised limits may admit the node now.
func (n *Node) joinLoop(seeds []string) {
	defer n.wg.Done()
	wait := n.hooks.joinRetryMin
	for {
		if n.tryJoin(seeds) {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-n.stop:
			t.Stop()
			return
		case <-n.retry:
			t.Stop()
			wait = n.hooks.joinRetryMin
		case <-t.C:
			wait = min(wait*2, n.hooks.joinRetryMax)
		}
	}
}

// tryJoin tries each seed once; it reports whether joining is over. While
// it is not, JoinProblem says why.
func (n *Node) tryJoin(seeds []string) bool {
	onlySelf := true
	var problems []string
	defer func() {
		msg := ""
		if len(problems) > 0 {
			msg = "not joined yet, will retry: " + strings.Join(problems, "; ")
		}
		n.joinProblem.Store(&msg)
	}()
	for _, seed := range seeds {
		select {
		case <-n.stop:
			return true
		default:
		}
		addr, err := net.ResolveTCPAddr("tcp", seed)
		if err != nil {
			onlySelf = false
			n.log.Warn("fabric seed unresolvable", "seed", seed, "error", err)
			problems = append(problems, fmt.Sprintf("seed %s: %v", seed, err))
			continue
		}
		v, err := n.handshake(addr)
		if errors.Is(err, errClosed) {
			return true
		}
		if err != nil {
			onlySelf = false
			n.log.Info("fabric seed unreachable; will retry", "seed", seed, "error", err)
			problems = append(problems, fmt.Sprintf("seed %s: %v", seed, err))
			continue
		}
		if v.SeedID == n.cfg.ID {
			continue // the seed is this node
		}
		onlySelf = false
		if !n.acceptVerdict(v, addr.String()) {
			problems = append(problems, fmt.Sprintf("seed %s refused the join (see refusals)", seed))
			continue
		}
		n.joining.Store(true)
		_, err = n.ml.Load().Join([]string{addr.String()})
		n.joining.Store(false)
		if err != nil {
			n.log.Warn("fabric join failed; will retry", "seed", seed, "error", err)
			problems = append(problems, fmt.Sprintf("seed %s: %v", seed, err))
			continue
		}
		n.log.Info("joined fabric", "seed", seed, "seed_id", v.SeedID, "fabric_nodes", v.Count)
		problems = nil
		return true
	}
	return onlySelf
}

// handshake sends admit to the seed at addr and waits for its verdict.
func (n *Node) handshake(addr *net.TCPAddr) (verdict, error) {
	nonce := rand.Uint64()
	ch := make(chan verdict, 1)
	n.mu.Lock()
	n.pending = &pendingJoin{nonce: nonce, ch: ch}
	req := admit{Nonce: nonce, ID: n.cfg.ID, Addr: n.addr, Federation: n.cfg.Federation, Count: uint64(n.countLocked())}
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		if n.pending != nil && n.pending.nonce == nonce {
			n.pending = nil
		}
		n.mu.Unlock()
	}()
	if err := n.sendReliable(addr.String(), "", req); err != nil {
		return verdict{}, fmt.Errorf("send join request to %s: %w", addr, err)
	}
	t := time.NewTimer(n.hooks.handshakeTimeout)
	defer t.Stop()
	select {
	case v := <-ch:
		return v, nil
	case <-t.C:
		return verdict{}, fmt.Errorf("no answer from %s within %s", addr, n.hooks.handshakeTimeout)
	case <-n.stop:
		return verdict{}, errClosed
	}
}

// acceptVerdict records a refusal by the seed, or checks the seed's
// fabric against this node's own max_nodes (refusing it, and telling the
// seed, when it is too large); it reports whether to join.
func (n *Node) acceptVerdict(v verdict, seedAddr string) bool {
	now := time.Now()
	n.mu.Lock()
	if !v.Admitted {
		n.addRefusalLocked(Refusal{At: now, NodeID: n.cfg.ID, Address: seedAddr, Reason: v.Reason, ByPeer: true})
		n.stats.refusedByPeer.Add(1)
		n.mu.Unlock()
		n.log.Warn("join refused by seed; will retry", "seed", seedAddr, "seed_id", v.SeedID, "reason", v.Reason)
		return false
	}
	mine := n.countLocked()
	limit := n.limits.MaxNodes.For(v.Topology)
	if int(v.Count)+mine <= limit {
		n.mu.Unlock()
		return true
	}
	reason := fmt.Sprintf("fabric too large for this node: topology %s allows %d nodes here (max_nodes.%s) and the fabric at %s has %d",
		v.Topology, limit, v.Topology, seedAddr, v.Count)
	if mine > 1 {
		reason += fmt.Sprintf(" plus the %d joining", mine)
	}
	n.addRefusalLocked(Refusal{At: now, NodeID: v.SeedID, Address: seedAddr, Reason: reason})
	n.stats.refused.Add(1)
	n.mu.Unlock()
	n.log.Warn("refusing to join fabric; will retry", "seed", seedAddr, "seed_id", v.SeedID, "reason", reason)
	if err := n.sendReliable(seedAddr, v.SeedID, withdraw{Nonce: v.Nonce, ID: n.cfg.ID, Reason: reason}); err != nil {
		n.log.Warn("could not tell the seed about the refusal", "seed", seedAddr, "error", err)
	}
	return false
}

// admitWorker decides join requests in order, off memberlist's receive
// paths, and sends the verdicts from at most maxVerdictSends goroutines (a
// verdict to an unreachable address can take memberlist's stream timeout).
func (n *Node) admitWorker() {
	defer n.wg.Done()
	const maxVerdictSends = 8
	sem := make(chan struct{}, maxVerdictSends)
	for {
		select {
		case <-n.stop:
			return
		case a := <-n.admits:
			n.mu.Lock()
			v := n.judgeLocked(a, time.Now())
			n.mu.Unlock()
			select {
			case sem <- struct{}{}:
			case <-n.stop:
				return
			}
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				defer func() { <-sem }()
				if err := n.sendReliable(a.Addr, a.ID, v); err != nil {
					n.log.Warn("could not answer a join request", "node", a.ID, "address", a.Addr, "error", err)
				}
			}()
		}
	}
}

// judgeLocked decides a join request as seed.
func (n *Node) judgeLocked(a admit, now time.Time) verdict {
	count, limit := n.countLocked(), n.maxLocked()
	v := verdict{Nonce: a.Nonce, SeedID: n.cfg.ID, Count: uint64(count), Max: uint64(limit), Topology: n.topo.Topology}
	if a.ID == n.cfg.ID {
		v.Reason = "the seed is this node"
		return v
	}
	if m, ok := n.live[a.ID]; ok {
		if got := m.node.Address(); got != a.Addr {
			v.Reason = fmt.Sprintf("node id %q is already used by the member at %s", a.ID, got)
			n.refuseLocked(a.ID, a.Addr, v.Reason, now)
			return v
		}
		v.Admitted = true // already a member
		return v
	}
	has := count + n.reservedLocked(now, a.ID)
	if has+int(a.Count) > limit {
		v.Reason = fullReason(n.topo.Topology, limit, has)
		if a.Count > 1 {
			v.Reason += fmt.Sprintf("; the joiner brings %d nodes", a.Count)
		}
		n.refuseLocked(a.ID, a.Addr, v.Reason, now)
		return v
	}
	n.reservations[a.ID] = reservation{nonce: a.Nonce, count: int(a.Count), addr: a.Addr, until: now.Add(n.hooks.reservation)}
	v.Admitted = true
	n.log.Info("join admitted", "node", a.ID, "address", a.Addr, "fabric_nodes", count, "max_nodes", limit)
	return v
}

func (n *Node) refuseLocked(id, addr, reason string, now time.Time) {
	n.addRefusalLocked(Refusal{At: now, NodeID: id, Address: addr, Reason: reason})
	n.stats.refused.Add(1)
	n.log.Warn("join refused", "node", id, "address", addr, "reason", reason)
}

// reservedLocked sums the live reservations but except's, dropping
// expired ones.
func (n *Node) reservedLocked(now time.Time, except string) int {
	sum := 0
	for id, r := range n.reservations {
		switch {
		case now.After(r.until):
			delete(n.reservations, id)
		case id != except:
			sum += r.count
		}
	}
	return sum
}

func (n *Node) reservedForLocked(id string, now time.Time) bool {
	r, ok := n.reservations[id]
	return ok && !now.After(r.until)
}

// onWithdrawLocked: a joiner this node admitted refused the fabric.
func (n *Node) onWithdrawLocked(w withdraw, now time.Time) {
	r, ok := n.reservations[w.ID]
	if !ok || r.nonce != w.Nonce {
		return
	}
	delete(n.reservations, w.ID)
	n.addRefusalLocked(Refusal{At: now, NodeID: n.cfg.ID, Address: r.addr, Reason: w.Reason, ByPeer: true})
	n.stats.refusedByPeer.Add(1)
	n.log.Warn("joiner refused this fabric", "node", w.ID, "address", r.addr, "reason", w.Reason)
}

// admitAlive is the AliveDelegate: a node unknown here (not a member, not
// reserved by a handshake) is refused when the fabric is full. Members
// always pass; nothing is ever evicted.
func (n *Node) admitAlive(p *memberlist.Node) error {
	if p.Name == n.cfg.ID {
		return nil
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.live[p.Name]; ok || n.reservedForLocked(p.Name, now) {
		return nil
	}
	has := n.countLocked() + n.reservedLocked(now, "")
	limit := n.maxLocked()
	if has+1 <= limit {
		return nil
	}
	reason := fullReason(n.topo.Topology, limit, has)
	n.refuseDedupLocked(p.Name, p.Address(), reason, now)
	return errors.New(reason)
}

// admitMerge is the MergeDelegate: a join push/pull that would bring the
// count past the limit is cancelled.
func (n *Node) admitMerge(peers []*memberlist.Node) error {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	var unknown []*memberlist.Node
	for _, p := range peers {
		if p.Name == n.cfg.ID || p.State != memberlist.StateAlive {
			continue
		}
		if _, ok := n.live[p.Name]; ok || n.reservedForLocked(p.Name, now) {
			continue
		}
		unknown = append(unknown, p)
	}
	if len(unknown) == 0 {
		return nil
	}
	has := n.countLocked() + n.reservedLocked(now, "")
	limit := n.maxLocked()
	if has+len(unknown) <= limit {
		return nil
	}
	reason := fullReason(n.topo.Topology, limit, has)
	names := make([]string, 0, 3)
	for _, p := range unknown[:min(3, len(unknown))] {
		names = append(names, p.Name)
	}
	more := ""
	if len(unknown) > 3 {
		more = fmt.Sprintf(" and %d more", len(unknown)-3)
	}
	reason += fmt.Sprintf("; merging %d nodes (%s%s) would exceed it", len(unknown), strings.Join(names, ", "), more)
	n.refuseDedupLocked(unknown[0].Name, unknown[0].Address(), reason, now)
	return errors.New(reason)
}

// refuseDedupLocked records a delegate refusal once per node per
// refusalDedup: gossip repeats the same alive message many times.
func (n *Node) refuseDedupLocked(id, addr, reason string, now time.Time) {
	if last, ok := n.refusedAt.Get(id); ok && now.Sub(last) < refusalDedup {
		return
	}
	n.refusedAt.Add(id, now)
	n.refuseLocked(id, addr, reason, now)
}
