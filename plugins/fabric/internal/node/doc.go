// Package node is the fabric engine: one hashicorp/memberlist instance per
// dw node for discovery and transport, plus what dw adds on top of it —
// admission against max_nodes per topology, its own heartbeats and health,
// agreement on the topology in force, and topology switching. It has a
// plain Go API (Start, Apply, Status, Nodes, Stats, Addr, Close); the
// fabric service maps it to the gRPC contract.
//
// # Membership and transport
//
// memberlist runs with DefaultLANConfig and this node's bind and advertise
// addresses; its node name is the node id and its failure detector keeps
// its defaults (it is the baseline dw's detection is compared against).
// Node metadata (memberlist NodeMeta, under 512 bytes, checked at Start) is
// id, API address, federation, version and the incarnation the node
// started with. A gossip key becomes memberlist's keyring;
// Status.Encrypted says whether there is one. memberlist logs through an
// hclog StandardLogger with inferred levels.
//
// memberlist calls the event and alive delegates with its node lock held:
// no delegate calls back into memberlist, and nothing calls memberlist
// while holding the engine's mutex. Whatever must be sent is collected
// under the mutex and sent after it is released.
//
// # Wire format
//
// dw's messages are memberlist user messages (direct, or queued in a
// TransmitLimitedQueue and piggybacked on gossip) in a compact binary
// encoding whose first byte is the message type: heartbeat, ack, dead,
// alive, topology record, admit, verdict, withdraw; the push/pull state and
// the node metadata use the same encoding. Decoding is strict (size,
// lengths, UTF-8, addresses, topologies, no trailing bytes) and fuzzed.
//
// # Heartbeats and edges
//
// Heartbeats are not memberlist probes: hb{from, ack address, seq, the
// sender's interval, epoch, incarnation, member count, membership digest}
// is sent best-effort (UDP) and answered by ack{from, seq, epoch,
// incarnation, member count, digest}; the RTT is measured from the
// sender's send time of seq. Any heartbeat is acked, to the address it
// carries, even from a node not yet known here. The topology decides the
// edges, and a node watches the other end of each of its edges:
//   - star: the hub is the smallest id among alive and suspect members.
//     Leaves send to the hub every interval and watch it by its acks; the
//     hub sends nothing, acks, and watches each leaf by its heartbeats (the
//     deadline uses the interval the leaf announced). When the hub dies,
//     every node re-derives the same new hub.
//   - mesh: every node sends to and watches every other member.
//   - federated: a group is a federation, meshed inside; its gateway is its
//     smallest live id; gateways mesh with the other groups' gateways.
//
// Fan-out therefore differs per topology (at 50 nodes: star ≈ 1 heartbeat
// per node per second, the hub 49 acks; mesh 49; federated with 5 groups
// 9, gateways 13) and is counted in Stats and HeartbeatsPerSecond (the
// rate over the last few heartbeat ticks).
//
// # Health
//
// Each watch keeps lastHeard (the last ack for an active watch, the last
// heartbeat for a passive one; a new watch, or an interval change, starts
// from now). missed = max(0, floor((now − lastHeard − interval/2) /
// interval)): 0 is alive, 1..M−1 suspect, M or more dead, evaluated every
// interval/4. A crash is therefore declared by its watcher between
// (M − ½)·interval and (M + ½)·interval + interval/4 after it happens,
// inside the bound interval × (M + 1); dissemination is one direct
// message.
//
// A watcher that declares X dead logs it, counts it (NodesDeclaredDead
// counts only this node's own declarations) and sends dead{X, incarnation}
// to every member directly and as a gossip broadcast. A receiver marks X
// dead unless it heard from X itself within the last 1.5 intervals, and
// re-broadcasts it. Incarnations (SWIM-style) make this safe: X, told it
// is dead, raises its incarnation and sends alive{X, inc} to everyone; a
// dead or alive message older than the incarnation known is ignored; the
// incarnation a node starts with is its start time, so a restarted node
// outranks what was said about its previous run. A heartbeat or ack from a
// node marked dead revives it at once, and the node is told so that it
// refutes to everyone. memberlist's join, or an update with a newer start
// incarnation, revives a node too.
//
// Leaving: Close sends dead{X from X} (memberlist's own convention for a
// leave) to every member, then runs memberlist's Leave (waiting at most 2 s
// for its broadcast) and Shutdown. Receivers mark X left, which nothing
// but a memberlist join overrides. memberlist's NotifyLeave marks a node
// dead unless it is already left: memberlist v0.7.0 never fills
// Node.State in NotifyLeave, so the leave message is what tells left from
// dead.
//
// The node count (max_nodes, switching, Status.NodeCount) is the alive and
// suspect nodes, this one included; dead and left nodes stay visible in
// Nodes() while the health cache (golang-lru, max(max_nodes) + 1024
// entries, resized by Apply) holds them. Records of memberlist members are
// recreated when evicted, so a member never vanishes from Nodes().
//
// # Membership repair
//
// memberlist spreads joins with a bounded number of gossip retransmissions;
// when many nodes join at once one can miss another until memberlist's
// push/pull (30 s, scaled up with the fabric's size). Heartbeats and acks
// carry the member count and an XOR digest of member ids; when a peer that
// knows at least as many members has disagreed for 2 s, the node runs a
// memberlist push/pull with it (at most one per 5 s).
//
// # Admission
//
// The limit is max_nodes of the topology in force. Before memberlist.Join
// a joiner sends admit{id, address, federation, count} to the seed over
// memberlist's reliable stream (which works without membership); the seed
// answers verdict{admitted, reason, count, max, topology}. The seed refuses
// when count + pending reservations + the joiner's count exceeds the max
// ("fabric full: topology star allows 3 nodes and has 3"), or when the id
// is already used by a member at another address; an admitted joiner holds
// a reservation for 30 s. The joiner checks the seed's count against its
// own max for that topology and refuses locally when over, telling the
// seed with withdraw{reason}. Both sides log, count (JoinsRefused,
// JoinsRefusedByPeer) and keep every refusal (Refusals: newest first, at
// most 32). A refused joiner never calls memberlist.Join; it retries with
// exponential backoff (from 500 ms, capped at 30 s; Apply retries at once),
// as it does for unreachable seeds: Start never fails because of seeds.
// Seeds naming the node itself are skipped.
//
// Joins that bypass the handshake meet memberlist's AliveDelegate and
// MergeDelegate: an unknown node (not a member, not reserved) that would
// take the count past the max is refused, recorded once per node per 30 s
// (gossip repeats alive messages). Members always pass; nothing is ever
// evicted: lowering a max below the count refuses new joins and (mode
// recommend or auto) recommends a switch.
//
// # Topology agreement
//
// The record {epoch, topology, by, reason} in force wins by higher epoch,
// then greater by. It spreads by direct messages to every member, gossip
// broadcasts and memberlist push/pull (LocalState/MergeRemoteState); a
// heartbeat or ack with a lower epoch than the receiver's gets the record
// sent back. A joining node adopts the fabric's record whatever its own
// (the push/pull of a join is marked, and the fabric ignores a newcomer's
// record). A live change of the configured topology limit bumps the epoch
// with the new topology; concurrent bumps converge by precedence.
// Status.Topology is the topology in force.
//
// # Switching
//
// On every heartbeat tick (and on membership changes) every node computes
// the recommendation: up when count >= up_at × max[current], to the next
// topology above whose capacity fits (count < up_at × max[t]), else the
// top; otherwise down when count < down_at × max[lower], to the lower one.
// Because down_at < up_at, a topology reached either way never recommends
// the way back at the same count. It becomes the recommendation only when
// the same one was computed on 3 consecutive ticks (membership-change
// evaluations can break a streak, not advance it). Mode off evaluates
// nothing; recommend reports it (Status.Recommendation, a
// Switch{Applied: false} when it changes, a log line, Stats.Recommendations);
// auto also lets the coordinator (the smallest live id) apply it by bumping
// the epoch. Every node that adopts a new topology logs it and records
// Switch{Applied: true}; a joiner adopting the fabric's topology does not.
//
// Roles: star hub or leaf, mesh member, federated gateway or member.
//
// # Goroutines
//
// Besides memberlist's own, a Node runs these goroutines, all ended (and
// waited for) by Close: the tick loop (heartbeats, health every
// interval/4, switching; Apply resets its tickers), the admission worker
// deciding join requests off memberlist's receive paths (with at most 8
// verdict sends in flight), the membership-repair worker, and the join
// loop (until joined). Every buffer is bounded: 256 pending join requests
// (more are dropped and retried by their joiners), reservations by
// max_nodes, histories by 32 entries, the health cache by its size.
// memberlist's probe goroutine may outlive Shutdown by up to a probe
// interval; tests wait for it.
package node
