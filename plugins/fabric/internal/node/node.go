package node

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/memberlist"
)

const (
	maxHistory   = 32   // Switches and Refusals kept
	cacheSlack   = 1024 // health records beyond the largest max_nodes
	refusalDedup = 30 * time.Second
)

// hooks are test knobs; the zero value is production behaviour.
type hooks struct {
	// memberlist intervals (0 = memberlist's DefaultLANConfig).
	gossipInterval, probeInterval, pushPullInterval time.Duration
	// Join retry backoff: first wait and cap.
	joinRetryMin, joinRetryMax time.Duration
	handshakeTimeout           time.Duration // wait for a seed's verdict
	reservation                time.Duration // how long an admitted joiner's slot is held
	leaveWait                  time.Duration // how long Close waits for memberlist's leave broadcast
}

func (h hooks) withDefaults() hooks {
	if h.joinRetryMin <= 0 {
		h.joinRetryMin = 500 * time.Millisecond
	}
	if h.joinRetryMax <= 0 {
		h.joinRetryMax = 30 * time.Second
	}
	if h.handshakeTimeout <= 0 {
		h.handshakeTimeout = 5 * time.Second
	}
	if h.reservation <= 0 {
		h.reservation = 30 * time.Second
	}
	if h.leaveWait <= 0 {
		h.leaveWait = 2 * time.Second
	}
	return h
}

// member is a node memberlist reports as a member (alive to memberlist).
type member struct {
	node memberlist.Node // a copy; replaced, never mutated
	meta nodeMeta
}

// record is the health record of another node.
type record struct {
	id, address, apiAddress, federation, version string
	state                                        State
	inc                                          uint64 // highest incarnation seen
	lastHb, lastAck                              time.Time
	missed                                       int
	rtt                                          time.Duration
}

func (r *record) setMember(m *member) {
	r.address = m.node.Address()
	r.apiAddress, r.federation, r.version = m.meta.APIAddress, m.meta.Federation, m.meta.Version
	r.inc = max(r.inc, m.meta.Inc)
}

// watch is one edge of this node's plan: active (by acks to our
// heartbeats) or passive (by the peer's heartbeats).
type watch struct {
	active       bool
	lastHeard    time.Time
	peerInterval time.Duration // passive: the interval the peer announced
}

type sentBeat struct {
	seq uint64
	at  time.Time
}

type rateSample struct {
	at    time.Time
	total uint64
}

type reservation struct {
	nonce uint64
	count int
	addr  string
	until time.Time
}

type pendingJoin struct {
	nonce uint64
	ch    chan verdict
}

// outMsg is a best-effort message to send once n.mu is released.
type outMsg struct {
	to   *memberlist.Node // a member, or nil: addr
	addr memberlist.Address
	b    []byte
	kind msgType
}

type counters struct {
	hbSent, hbRecv, ackSent, ackRecv        atomic.Uint64
	refused, refusedByPeer                  atomic.Uint64
	switches, recommendations, deadDeclared atomic.Uint64
}

// Node is one member of a fabric: a memberlist instance plus dw's
// admission, heartbeats, health and topology agreement.
type Node struct {
	cfg       Config
	log       hclog.Logger
	hooks     hooks
	ml        atomic.Pointer[memberlist.Memberlist]
	bcast     *memberlist.TransmitLimitedQueue
	meta      []byte
	addr      string // advertised gossip "ip:port"
	bindAddr  string // bound gossip "ip:port"
	encrypted bool

	mu           sync.Mutex
	limits       Limits
	live         map[string]*member // memberlist members but this node
	records      *lru.Cache[string, *record]
	watches      map[string]*watch
	plan         plan
	topo         topoRecord
	inc          uint64
	streak       switchStreak
	rec          Topology
	recReason    string
	switches     []Switch
	refusals     []Refusal
	refusedAt    *lru.Cache[string, time.Time]
	reservations map[string]reservation
	pending      *pendingJoin
	seq          uint64
	sent         [8]sentBeat
	hbTotal      uint64
	rates        []rateSample
	digest       uint64    // membershipDigest of this node and n.live
	mismatch     time.Time // since when a peer's digest differs; zero: agreed
	nextSync     time.Time
	closed       bool

	stats   counters
	numLive atomic.Int64
	joining atomic.Bool
	// joinProblem is why the last attempt to join through the seeds
	// failed ("" once joined, or with no seed but this node).
	joinProblem atomic.Pointer[string]
	leaving     atomic.Bool

	kick, reset, retry chan struct{}
	admits             chan admit
	syncs              chan string
	stop               chan struct{}
	wg                 sync.WaitGroup
	closeOnce          sync.Once
	closeErr           error
}

// Start binds the gossip address, starts the heartbeat and health loops
// and, when cfg.Join lists seeds, joins them in the background (with
// admission and retries). Unreachable seeds do not fail Start.
func Start(cfg Config) (*Node, error) { return start(cfg, hooks{}) }

func start(cfg Config, h hooks) (*Node, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, fmt.Errorf("start fabric node: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	host, port, err := splitHostPort(cfg.BindAddr, -1)
	if err != nil {
		return nil, fmt.Errorf("start fabric node %s: bind address: %w", cfg.ID, err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.ID
	mc.BindAddr, mc.BindPort, mc.AdvertisePort = host, port, port
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := splitHostPort(cfg.AdvertiseAddr, port)
		if err != nil {
			return nil, fmt.Errorf("start fabric node %s: advertise address: %w", cfg.ID, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	if len(cfg.SecretKey) > 0 {
		mc.SecretKey = slices.Clone(cfg.SecretKey)
	}
	mc.Logger = log.Named("memberlist").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	if h.gossipInterval > 0 {
		mc.GossipInterval = h.gossipInterval
	}
	if h.probeInterval > 0 {
		mc.ProbeInterval = h.probeInterval
		mc.ProbeTimeout = min(mc.ProbeTimeout, h.probeInterval/2)
	}
	if h.pushPullInterval > 0 {
		mc.PushPullInterval = h.pushPullInterval
	}

	records, err := lru.New[string, *record](cfg.Limits.MaxNodes.largest() + cacheSlack)
	if err != nil {
		return nil, fmt.Errorf("start fabric node %s: health cache: %w", cfg.ID, err)
	}
	refusedAt, err := lru.New[string, time.Time](256)
	if err != nil {
		return nil, fmt.Errorf("start fabric node %s: refusal cache: %w", cfg.ID, err)
	}
	inc := uint64(time.Now().UnixNano())
	n := &Node{
		cfg:       cfg,
		log:       log,
		hooks:     h.withDefaults(),
		encrypted: len(cfg.SecretKey) > 0,
		meta: encode(nodeMeta{
			ID: cfg.ID, APIAddress: cfg.APIAddress, Federation: cfg.Federation, Version: cfg.Version, Inc: inc,
		}),
		limits:       cfg.Limits,
		live:         map[string]*member{},
		records:      records,
		watches:      map[string]*watch{},
		topo:         topoRecord{Topology: cfg.Limits.Topology, By: cfg.ID, Reason: "configured"},
		inc:          inc,
		refusedAt:    refusedAt,
		reservations: map[string]reservation{},
		kick:         make(chan struct{}, 1),
		reset:        make(chan struct{}, 1),
		retry:        make(chan struct{}, 1),
		admits:       make(chan admit, 256),
		syncs:        make(chan string, 1),
		digest:       idHash(cfg.ID),
		stop:         make(chan struct{}),
	}
	n.bcast = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(n.numLive.Load()) + 1 },
		RetransmitMult: mc.RetransmitMult,
	}
	n.replanLocked(time.Now()) // no goroutine yet: no lock needed
	d := delegate{n}
	mc.Delegate, mc.Events, mc.Alive, mc.Merge = d, d, d, d

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start fabric node %s: gossip on %s: %w", cfg.ID, cfg.BindAddr, err)
	}
	n.ml.Store(ml)
	n.addr = ml.LocalNode().Address()
	n.bindAddr = net.JoinHostPort(mc.BindAddr, strconv.Itoa(mc.BindPort)) // memberlist filled in a port 0
	n.log.Info("fabric node started", "id", cfg.ID, "address", n.addr, "federation", cfg.Federation,
		"topology", cfg.Limits.Topology, "encrypted", n.encrypted)
	if !n.encrypted {
		n.log.Warn("fabric gossip is not encrypted: no key configured")
	}

	n.wg.Add(3)
	go n.run()
	go n.admitWorker()
	go n.syncWorker()
	if seeds := slices.Clone(cfg.Join); len(seeds) > 0 {
		n.wg.Add(1)
		go n.joinLoop(seeds)
	}
	return n, nil
}

// checkConfig validates cfg and fills defaults.
func checkConfig(cfg *Config) error {
	if cfg.Federation == "" {
		cfg.Federation = "default"
	}
	switch {
	case cfg.ID == "":
		return errors.New("node id is empty")
	case len(cfg.ID) > maxIDLen:
		return fmt.Errorf("node id is %d bytes; at most %d allowed", len(cfg.ID), maxIDLen)
	case len(cfg.Federation) > maxIDLen:
		return fmt.Errorf("federation is %d bytes; at most %d allowed", len(cfg.Federation), maxIDLen)
	case len(cfg.APIAddress) > maxAPILen:
		return fmt.Errorf("api address is %d bytes; at most %d allowed", len(cfg.APIAddress), maxAPILen)
	case len(cfg.Version) > maxVersionLen:
		return fmt.Errorf("version is %d bytes; at most %d allowed", len(cfg.Version), maxVersionLen)
	}
	switch len(cfg.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("gossip key is %d bytes; it must be 16, 24 or 32", len(cfg.SecretKey))
	}
	if err := cfg.Limits.Validate(); err != nil {
		return err
	}
	meta := encode(nodeMeta{ID: cfg.ID, APIAddress: cfg.APIAddress, Federation: cfg.Federation, Version: cfg.Version, Inc: 1 << 63})
	if len(meta) > memberlist.MetaMaxSize {
		return fmt.Errorf("node metadata (id, api address, federation, version) is %d bytes; memberlist allows %d",
			len(meta), memberlist.MetaMaxSize)
	}
	if _, err := decodeMessage(meta); err != nil {
		return fmt.Errorf("node metadata: %w", err)
	}
	return nil
}

// splitHostPort parses "host:port" ("host" alone when defPort >= 0) into
// an IP string and a port; host names are resolved, "" is 0.0.0.0.
func splitHostPort(s string, defPort int) (string, int, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		if defPort < 0 {
			return "", 0, fmt.Errorf("%q: want host:port: %w", s, err)
		}
		host, ps = s, strconv.Itoa(defPort)
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%q: port %q: want 0-65535", s, ps)
	}
	if host == "" {
		return "0.0.0.0", int(port), nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), int(port), nil
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return "", 0, fmt.Errorf("%q: resolve %s: %v", s, host, err)
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.String(), int(port), nil
		}
	}
	return ips[0].String(), int(port), nil
}

// Addr returns the gossip "host:port" other nodes reach this one at.
func (n *Node) Addr() string { return n.addr }

// Apply changes the limits live: tickers restart at the new interval,
// watches restart their deadlines from now, the health cache is resized,
// and a change of the configured topology raises the fabric's epoch.
// Invalid limits are logged and ignored (the service validates first).
func (n *Node) Apply(l Limits) {
	if err := l.Validate(); err != nil {
		n.log.Error("fabric limits ignored", "error", err)
		return
	}
	applied := n.step(func(now time.Time) []outMsg { return n.applyLimitsLocked(l, now) })
	if !applied {
		return
	}
	n.log.Info("fabric limits applied", "max_nodes", fmt.Sprintf("%+v", l.MaxNodes), "topology", l.Topology,
		"mode", l.Switching.Mode, "up_at", l.Switching.UpAt, "down_at", l.Switching.DownAt,
		"heartbeat_interval", l.HeartbeatInterval, "missed_heartbeats", l.MissedHeartbeats)
	signal(n.reset)
	signal(n.kick)
	signal(n.retry)
}

// applyLimitsLocked puts l in force and returns the topology record to
// spread, if the configured topology changed.
func (n *Node) applyLimitsLocked(l Limits, now time.Time) []outMsg {
	var out []outMsg
	old := n.limits
	n.limits = l
	n.records.Resize(l.MaxNodes.largest() + cacheSlack)
	if l.HeartbeatInterval != old.HeartbeatInterval {
		for _, w := range n.watches {
			w.lastHeard = now
		}
	}
	if l.Switching != old.Switching || l.MaxNodes != old.MaxNodes {
		n.streak = switchStreak{}
		n.rec, n.recReason = "", ""
	}
	if l.Topology != old.Topology {
		n.adoptLocked(topoRecord{
			Epoch: n.topo.Epoch + 1, Topology: l.Topology, By: n.cfg.ID,
			Reason: fmt.Sprintf("configured topology changed from %s to %s", old.Topology, l.Topology),
		}, now)
		out = n.spreadRecordLocked()
	}
	return out
}

// step runs f under n.mu with the current time, unless the node is
// closed, then sends what f returns (after unlocking). It reports whether
// f ran.
func (n *Node) step(f func(now time.Time) []outMsg) bool {
	now := time.Now()
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return false
	}
	out := f(now)
	n.mu.Unlock()
	n.sendAll(out)
	return true
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Status returns this node's view of the fabric.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := Status{
		ID: n.cfg.ID, Federation: n.cfg.Federation, BindAddr: n.bindAddr,
		Topology: n.topo.Topology, Epoch: n.topo.Epoch,
		NodeCount: n.countLocked(), MaxNodes: n.maxLocked(), Limits: n.limits,
		Recommendation: n.rec, RecommendationReason: n.recReason,
		Switches: slices.Clone(n.switches), Refusals: slices.Clone(n.refusals),
		Hub: n.plan.hub, Gateways: n.plan.gatewayList(), Role: n.plan.roles[n.cfg.ID],
		Encrypted: n.encrypted,
	}
	if k := len(n.rates); k >= 2 {
		a, b := n.rates[0], n.rates[k-1]
		if d := b.at.Sub(a.at).Seconds(); d > 0 {
			s.HeartbeatsPerSecond = float64(b.total-a.total) / d
		}
	}
	return s
}

// Nodes returns every node this one knows, itself included: members, and
// dead or left nodes still in the health cache, sorted by id.
func (n *Node) Nodes() []NodeInfo {
	out, _ := n.NodesPage("", -1)
	return out
}

// NodesPage returns, sorted by id, the first limit nodes (all of them when
// limit < 0) whose id sorts after after, and whether more follow. It
// describes at most limit+1 nodes while it selects them, so paging through
// a fabric of 10,000 nodes builds a page at a time, not the whole list;
// it still scans every id (the cache's key list is copied once per call).
func (n *Node) NodesPage(after string, limit int) (page []NodeInfo, more bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var pick maxIDs // the smallest limit+1 ids after after, largest on top
	consider := func(id string) {
		switch {
		case id <= after:
		case limit < 0 || len(pick) <= limit:
			heap.Push(&pick, id)
		case id < pick[0]:
			pick[0] = id
			heap.Fix(&pick, 0)
		}
	}
	consider(n.cfg.ID)
	for _, id := range n.records.Keys() {
		if id != n.cfg.ID {
			consider(id)
		}
	}
	for id := range n.live {
		if !n.records.Contains(id) {
			consider(id)
		}
	}
	ids := []string(pick)
	slices.Sort(ids)
	if more = limit >= 0 && len(ids) > limit; more {
		ids = ids[:limit]
	}
	page = make([]NodeInfo, 0, len(ids))
	for _, id := range ids {
		page = append(page, n.infoLocked(id))
	}
	return page, more
}

// infoLocked describes one known node (id is this node or in the cache or
// membership). It only reads: a member whose record the cache evicted is
// described from membership without being added back, which could evict
// a record the same page is about to describe.
func (n *Node) infoLocked(id string) NodeInfo {
	if id == n.cfg.ID {
		return NodeInfo{
			ID: n.cfg.ID, Address: n.addr, APIAddress: n.cfg.APIAddress, Federation: n.cfg.Federation,
			Version: n.cfg.Version, State: StateAlive, Role: n.plan.roles[n.cfg.ID], Self: true,
		}
	}
	r, ok := n.records.Peek(id)
	if !ok {
		r = &record{id: id, state: StateAlive}
		if m, ok := n.live[id]; ok {
			r.setMember(m)
		}
	}
	info := NodeInfo{
		ID: r.id, Address: r.address, APIAddress: r.apiAddress, Federation: r.federation,
		Version: r.version, State: r.state, Missed: r.missed, RTT: r.rtt,
	}
	info.LastHeartbeat = r.lastHb
	if r.lastAck.After(info.LastHeartbeat) {
		info.LastHeartbeat = r.lastAck
	}
	if r.state == StateAlive || r.state == StateSuspect {
		info.Role = n.plan.roles[r.id]
	}
	_, info.Watched = n.watches[r.id]
	return info
}

// CountByState counts the known nodes (as Nodes lists them) by state.
func (n *Node) CountByState() map[State]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[State]int{StateAlive: 1} // this node
	for _, id := range n.records.Keys() {
		if r, ok := n.records.Peek(id); ok && id != n.cfg.ID {
			out[r.state]++
		}
	}
	for id := range n.live {
		if !n.records.Contains(id) {
			out[StateAlive]++ // a member whose record the cache evicted is recreated alive
		}
	}
	return out
}

// WatchedTrouble returns the nodes this one watches that are suspect or
// dead, each sorted by id.
func (n *Node) WatchedTrouble() (suspect, dead []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id := range n.watches {
		r, ok := n.records.Peek(id)
		if !ok {
			continue
		}
		switch r.state {
		case StateSuspect:
			suspect = append(suspect, id)
		case StateDead:
			dead = append(dead, id)
		}
	}
	slices.Sort(suspect)
	slices.Sort(dead)
	return suspect, dead
}

// maxIDs is a max-heap of node ids (container/heap).
type maxIDs []string

func (h maxIDs) Len() int           { return len(h) }
func (h maxIDs) Less(i, j int) bool { return h[i] > h[j] }
func (h maxIDs) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *maxIDs) Push(x any)        { *h = append(*h, x.(string)) }
func (h *maxIDs) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// JoinProblem says why joining the fabric through the configured seeds
// has not succeeded yet: "" when joined, when there are no seeds, or
// before the first attempt.
func (n *Node) JoinProblem() string {
	if p := n.joinProblem.Load(); p != nil {
		return *p
	}
	return ""
}

// Stats returns the monotonic counters.
func (n *Node) Stats() Stats {
	c := &n.stats
	return Stats{
		HeartbeatsSent: c.hbSent.Load(), HeartbeatsReceived: c.hbRecv.Load(),
		AcksSent: c.ackSent.Load(), AcksReceived: c.ackRecv.Load(),
		JoinsRefused: c.refused.Load(), JoinsRefusedByPeer: c.refusedByPeer.Load(),
		Switches: c.switches.Load(), Recommendations: c.recommendations.Load(),
		NodesDeclaredDead: c.deadDeclared.Load(),
	}
}

// Close leaves the fabric gracefully: it tells the members it is leaving
// (they show it as left), runs memberlist's Leave (waiting at most 2 s, or
// less when ctx ends sooner, for its broadcast), shuts memberlist down and
// waits (bounded by ctx) for every goroutine. Calling it again returns the
// first result.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() { n.closeErr = n.shutdown(ctx, true) })
	return n.closeErr
}

// crash stops the node without leaving, as kill -9 looks to the network.
func (n *Node) crash() {
	n.closeOnce.Do(func() { n.closeErr = n.shutdown(context.Background(), false) })
}

func (n *Node) shutdown(ctx context.Context, leave bool) error {
	ml := n.ml.Load()
	var errs []error
	if leave && ctx.Err() == nil {
		n.leaving.Store(true)
		n.mu.Lock()
		b := encode(dead{Node: n.cfg.ID, Inc: n.inc, From: n.cfg.ID}) // Node == From: left
		n.queueBroadcastLocked("life:"+n.cfg.ID, b)
		out := n.toAllLocked(b, typeDead)
		n.mu.Unlock()
		n.sendAll(out)
	}
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	close(n.stop)
	if leave && ctx.Err() == nil {
		wait := n.hooks.leaveWait
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait > 0 {
			// A timeout is not an error: the members were told directly
			// above; it happens when they are all leaving too.
			if err := ml.Leave(wait); err != nil {
				n.log.Info("memberlist leave broadcast unconfirmed", "wait", wait, "error", err)
			}
		}
	}
	if err := ml.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("shut down memberlist: %w", err))
	}
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("wait for fabric goroutines: %w", ctx.Err()))
	}
	if len(errs) > 0 {
		return fmt.Errorf("close fabric node %s: %w", n.cfg.ID, errors.Join(errs...))
	}
	n.log.Info("fabric node closed", "id", n.cfg.ID, "left", leave)
	return nil
}

// run owns the heartbeat and health tickers.
func (n *Node) run() {
	defer n.wg.Done()
	iv := n.interval()
	hb := time.NewTicker(iv)
	defer hb.Stop()
	ev := time.NewTicker(max(iv/4, time.Millisecond))
	defer ev.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-hb.C:
			n.heartbeatTick()
		case <-ev.C:
			n.healthTick()
		case <-n.kick:
			n.switchCheck()
		case <-n.reset:
			if next := n.interval(); next != iv {
				iv = next
				hb.Reset(iv)
				ev.Reset(max(iv/4, time.Millisecond))
			}
		}
	}
}

func (n *Node) interval() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.limits.HeartbeatInterval
}

// heartbeatTick sends this interval's heartbeats and evaluates switching.
func (n *Node) heartbeatTick() {
	now := time.Now()
	n.mu.Lock()
	n.seq++
	n.sent[n.seq%uint64(len(n.sent))] = sentBeat{seq: n.seq, at: now}
	b := encode(heartbeat{
		From: n.cfg.ID, Addr: n.addr, Seq: n.seq, Interval: n.limits.HeartbeatInterval,
		Epoch: n.topo.Epoch, Inc: n.inc, Members: uint64(len(n.live) + 1), Digest: n.digest,
	})
	var out []outMsg
	for _, id := range n.plan.send {
		if m, ok := n.live[id]; ok {
			out = append(out, outMsg{to: &m.node, b: b, kind: typeHeartbeat})
		}
	}
	n.hbTotal += uint64(len(out))
	n.rates = append(n.rates, rateSample{at: now, total: n.hbTotal})
	if len(n.rates) > 5 {
		n.rates = slices.Delete(n.rates, 0, 1)
	}
	out = append(out, n.evaluateSwitchingLocked(now, true)...)
	n.mu.Unlock()
	n.sendAll(out)
}

// healthTick evaluates every watch.
func (n *Node) healthTick() { n.step(n.evaluateHealthLocked) }

// switchCheck evaluates switching between ticks (membership changed).
func (n *Node) switchCheck() {
	n.step(func(now time.Time) []outMsg { return n.evaluateSwitchingLocked(now, false) })
}

// sendAll sends best-effort messages; n.mu must not be held.
func (n *Node) sendAll(out []outMsg) {
	ml := n.ml.Load()
	if ml == nil {
		return
	}
	for _, o := range out {
		var err error
		if o.to != nil {
			err = ml.SendBestEffort(o.to, o.b)
		} else {
			err = ml.SendToAddress(o.addr, o.b)
		}
		if err != nil {
			n.log.Debug("fabric send failed", "kind", o.kind, "error", err)
			continue
		}
		switch o.kind {
		case typeHeartbeat:
			n.stats.hbSent.Add(1)
		case typeAck:
			n.stats.ackSent.Add(1)
		}
	}
}

// sendReliable sends one message over memberlist's stream transport.
func (n *Node) sendReliable(addr string, name string, m message) error {
	ml := n.ml.Load()
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("address %q is not an IP address", addr)
	}
	return ml.SendReliable(&memberlist.Node{Name: name, Addr: ip, Port: uint16(port)}, encode(m))
}

// --- state helpers; all need n.mu ---

// recordForLocked returns the health record of id, recreating it from
// membership when the cache evicted it; nil for an unknown non-member.
func (n *Node) recordForLocked(id string) *record {
	if r, ok := n.records.Get(id); ok {
		return r
	}
	m, ok := n.live[id]
	if !ok {
		return nil
	}
	r := &record{id: id, state: StateAlive}
	r.setMember(m)
	n.records.Add(id, r)
	return r
}

// countLocked counts alive and suspect nodes, this one included.
func (n *Node) countLocked() int {
	c := 1
	for id := range n.live {
		if r := n.recordForLocked(id); r != nil && (r.state == StateAlive || r.state == StateSuspect) {
			c++
		}
	}
	return c
}

func (n *Node) maxLocked() int { return n.limits.MaxNodes.For(n.topo.Topology) }

// coordinatorLocked is the smallest id among non-dead nodes.
func (n *Node) coordinatorLocked() string {
	c := n.cfg.ID
	for id := range n.live {
		if id < c {
			if r := n.recordForLocked(id); r != nil && (r.state == StateAlive || r.state == StateSuspect) {
				c = id
			}
		}
	}
	return c
}

// replanLocked recomputes this node's edges from the current members and
// topology; new watches start now, dropped ones forget their suspicion.
func (n *Node) replanLocked(now time.Time) {
	self := peer{id: n.cfg.ID, federation: n.cfg.Federation}
	peers := []peer{self}
	for id, m := range n.live {
		if r := n.recordForLocked(id); r != nil && (r.state == StateAlive || r.state == StateSuspect) {
			peers = append(peers, peer{id: id, federation: m.meta.Federation})
		}
	}
	p := makePlan(n.topo.Topology, self, peers)
	want := p.watches()
	for id, w := range n.watches {
		active, ok := want[id]
		if !ok {
			delete(n.watches, id)
			if r, ok := n.records.Peek(id); ok {
				r.missed = 0
				if r.state == StateSuspect {
					r.state = StateAlive
				}
			}
			continue
		}
		if active != w.active {
			*w = watch{active: active, lastHeard: now}
		}
	}
	for id, active := range want {
		if _, ok := n.watches[id]; !ok {
			n.watches[id] = &watch{active: active, lastHeard: now}
		}
	}
	n.plan = p
}

// evaluateHealthLocked applies missedBeats to every watch and declares
// the nodes past missed_heartbeats dead.
func (n *Node) evaluateHealthLocked(now time.Time) []outMsg {
	own, limit := n.limits.HeartbeatInterval, n.limits.MissedHeartbeats
	var died []*record
	for id, w := range n.watches {
		r := n.recordForLocked(id)
		if r == nil || r.state == StateDead || r.state == StateLeft {
			continue
		}
		iv := own
		if !w.active && w.peerInterval > 0 {
			iv = w.peerInterval
		}
		r.missed = missedBeats(now, w.lastHeard, iv)
		switch st := stateFor(r.missed, limit); {
		case st == StateDead:
			died = append(died, r)
		case st != r.state:
			if st == StateSuspect {
				n.log.Info("node suspect", "node", id, "missed", r.missed, "interval", iv)
			} else {
				n.log.Info("node alive again", "node", id)
			}
			r.state = st
		}
	}
	if len(died) == 0 {
		return nil
	}
	slices.SortFunc(died, func(a, b *record) int {
		if a.id < b.id {
			return -1
		}
		return 1
	})
	var out []outMsg
	for _, r := range died {
		r.state = StateDead
		n.stats.deadDeclared.Add(1)
		n.log.Warn("node declared dead", "node", r.id, "missed", r.missed,
			"missed_heartbeats", limit, "last_heard", n.watches[r.id].lastHeard)
		b := encode(dead{Node: r.id, Inc: r.inc, From: n.cfg.ID})
		n.queueBroadcastLocked("life:"+r.id, b)
		out = append(out, n.toAllLocked(b, typeDead)...)
	}
	n.replanLocked(now)
	signal(n.kick)
	return out
}

// evaluateSwitchingLocked computes the recommendation; tick says whether
// this is an interval tick (which advances the hysteresis streak).
func (n *Node) evaluateSwitchingLocked(now time.Time, tick bool) []outMsg {
	sw := n.limits.Switching
	if sw.Mode == ModeOff {
		n.streak = switchStreak{}
		n.rec, n.recReason = "", ""
		return nil
	}
	cur := n.topo.Topology
	count := n.countLocked()
	cand, reason := recommend(count, cur, n.limits.MaxNodes, sw.UpAt, sw.DownAt)
	var stable Topology
	if tick {
		stable = n.streak.tick(cand)
	} else {
		stable = n.streak.check(cand)
	}
	if stable == "" {
		n.rec, n.recReason = "", ""
		return nil
	}
	if stable != n.rec {
		n.rec = stable
		n.stats.recommendations.Add(1)
		n.log.Info("topology switch recommended", "from", cur, "to", stable, "reason", reason, "mode", sw.Mode)
		if sw.Mode == ModeRecommend {
			n.addSwitchLocked(Switch{At: now, From: cur, To: stable, Reason: reason})
		}
	}
	n.recReason = reason
	if sw.Mode != ModeAuto || n.coordinatorLocked() != n.cfg.ID {
		return nil
	}
	n.log.Info("applying topology switch as coordinator", "from", cur, "to", stable, "epoch", n.topo.Epoch+1)
	n.adoptLocked(topoRecord{Epoch: n.topo.Epoch + 1, Topology: stable, By: n.cfg.ID, Reason: reason}, now)
	return n.spreadRecordLocked()
}

// adoptLocked makes r the topology record in force and records the switch
// when the topology changes.
func (n *Node) adoptLocked(r topoRecord, now time.Time) {
	old := n.topo
	n.topo = r
	if old.Topology == r.Topology {
		return
	}
	n.addSwitchLocked(Switch{At: now, From: old.Topology, To: r.Topology, Reason: r.Reason, Applied: true})
	n.stats.switches.Add(1)
	n.log.Info("topology switched", "from", old.Topology, "to", r.Topology, "epoch", r.Epoch, "by", r.By, "reason", r.Reason)
	n.streak = switchStreak{}
	n.rec, n.recReason = "", ""
	n.replanLocked(now)
}

// spreadRecordLocked sends the record in force to every member and
// queues it for gossip.
func (n *Node) spreadRecordLocked() []outMsg {
	b := encode(n.topo)
	n.queueBroadcastLocked("topology", b)
	return n.toAllLocked(b, typeTopology)
}

func (n *Node) toAllLocked(b []byte, kind msgType) []outMsg {
	out := make([]outMsg, 0, len(n.live))
	for _, m := range n.live {
		out = append(out, outMsg{to: &m.node, b: b, kind: kind})
	}
	return out
}

func (n *Node) queueBroadcastLocked(name string, b []byte) {
	n.bcast.QueueBroadcast(&broadcast{name: name, msg: b})
}

func (n *Node) addSwitchLocked(s Switch) {
	n.switches = prepend(n.switches, s)
}

func (n *Node) addRefusalLocked(r Refusal) {
	n.refusals = prepend(n.refusals, r)
}

// prepend puts v first and keeps at most maxHistory entries.
func prepend[T any](s []T, v T) []T {
	s = slices.Insert(s, 0, v)
	if len(s) > maxHistory {
		s = s[:maxHistory]
	}
	return s
}

// broadcast is a named memberlist broadcast: a newer one with the same
// name replaces the queued one.
type broadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}
func (b *broadcast) Name() string    { return b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// isMember reports whether memberlist currently lists id (benchmarks
// compare memberlist's own failure detection with dw's).
func (n *Node) isMember(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.live[id]
	return ok
}
