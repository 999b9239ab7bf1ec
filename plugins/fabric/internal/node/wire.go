package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"
)

// Wire format. Every message dw's fabric puts on memberlist's transport
// (user messages, broadcasts, push/pull state, node metadata) is
// [type byte][fields...]: unsigned integers as uvarints, strings as a
// uvarint length and the bytes, booleans as one byte 0 or 1. Decoding is
// strict: unknown types, truncation, trailing bytes, oversized strings or
// numbers, invalid UTF-8, invalid addresses and unknown topologies are
// errors. Network input goes through decodeMessage and nothing else.

type msgType byte

const (
	typeHeartbeat msgType = 1 + iota
	typeAck
	typeDead
	typeAlive
	typeTopology
	typeAdmit
	typeVerdict
	typeWithdraw
	typeState
	typeMeta
)

var typeNames = map[msgType]string{
	typeHeartbeat: "heartbeat", typeAck: "ack", typeDead: "dead", typeAlive: "alive",
	typeTopology: "topology", typeAdmit: "admit", typeVerdict: "verdict",
	typeWithdraw: "withdraw", typeState: "state", typeMeta: "meta",
}

func (t msgType) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type %d", byte(t))
}

// Size limits of decoded fields.
const (
	maxMessageSize = 4096
	maxIDLen       = 128  // node ids and federation names
	maxAddrLen     = 64   // "ip:port"
	maxTextLen     = 1024 // reasons
	maxAPILen      = 256  // API address
	maxVersionLen  = 64
	maxCount       = 1 << 31
	maxIntervalMS  = uint64(24 * time.Hour / time.Millisecond)
)

var (
	errTruncated = errors.New("truncated")
	errTrailing  = errors.New("trailing bytes")
)

// message is one decoded wire message.
type message interface {
	kind() msgType
	// appendTo appends the encoding, type byte included.
	appendTo(b []byte) []byte
}

// encode returns m's encoding.
func encode(m message) []byte { return m.appendTo(make([]byte, 0, 64)) }

// heartbeat asks the receiver for an ack. Addr is where to send the ack.
// Members and Digest summarise the sender's memberlist view (see
// membershipDigest).
type heartbeat struct {
	From, Addr string
	Seq        uint64
	Interval   time.Duration // the sender's heartbeat interval (ms precision)
	Epoch      uint64        // the sender's topology epoch
	Inc        uint64        // the sender's incarnation
	Members    uint64
	Digest     uint64
}

// ack answers heartbeat Seq.
type ack struct {
	From       string
	Seq, Epoch uint64
	Inc        uint64
	Members    uint64
	Digest     uint64
}

// dead says Node (at incarnation Inc) was declared dead by From.
type dead struct {
	Node string
	Inc  uint64
	From string
}

// alive refutes a dead message: Node is alive at incarnation Inc.
type alive struct {
	Node string
	Inc  uint64
}

// topoRecord is the fabric's agreement on the topology in force.
type topoRecord struct {
	Epoch    uint64
	Topology Topology
	By       string // the node that set it
	Reason   string
}

// admit asks a seed to admit a joiner (and Count-1 nodes it brings).
type admit struct {
	Nonce      uint64
	ID, Addr   string
	Federation string
	Count      uint64
}

// verdict answers admit.
type verdict struct {
	Nonce      uint64
	SeedID     string
	Admitted   bool
	Reason     string
	Count, Max uint64
	Topology   Topology
}

// withdraw tells a seed that the joiner refused the fabric itself.
type withdraw struct {
	Nonce      uint64
	ID, Reason string
}

// pushState is the push/pull state (memberlist LocalState).
type pushState struct {
	Joining bool
	Record  topoRecord
}

// nodeMeta is memberlist's node metadata.
// Inc is the incarnation the node started with (its start time in ns),
// so that a restarted node outranks what was said about its previous run.
type nodeMeta struct {
	ID, APIAddress, Federation, Version string
	Inc                                 uint64
}

func (heartbeat) kind() msgType  { return typeHeartbeat }
func (ack) kind() msgType        { return typeAck }
func (dead) kind() msgType       { return typeDead }
func (alive) kind() msgType      { return typeAlive }
func (topoRecord) kind() msgType { return typeTopology }
func (admit) kind() msgType      { return typeAdmit }
func (verdict) kind() msgType    { return typeVerdict }
func (withdraw) kind() msgType   { return typeWithdraw }
func (pushState) kind() msgType  { return typeState }
func (nodeMeta) kind() msgType   { return typeMeta }

func (m heartbeat) appendTo(b []byte) []byte {
	b = append(b, byte(typeHeartbeat))
	b = appendStr(b, m.From)
	b = appendStr(b, m.Addr)
	b = binary.AppendUvarint(b, m.Seq)
	b = binary.AppendUvarint(b, uint64(m.Interval/time.Millisecond))
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, m.Inc)
	b = binary.AppendUvarint(b, m.Members)
	return binary.BigEndian.AppendUint64(b, m.Digest)
}

func (m ack) appendTo(b []byte) []byte {
	b = append(b, byte(typeAck))
	b = appendStr(b, m.From)
	b = binary.AppendUvarint(b, m.Seq)
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, m.Inc)
	b = binary.AppendUvarint(b, m.Members)
	return binary.BigEndian.AppendUint64(b, m.Digest)
}

func (m dead) appendTo(b []byte) []byte {
	b = append(b, byte(typeDead))
	b = appendStr(b, m.Node)
	b = binary.AppendUvarint(b, m.Inc)
	return appendStr(b, m.From)
}

func (m alive) appendTo(b []byte) []byte {
	b = append(b, byte(typeAlive))
	b = appendStr(b, m.Node)
	return binary.AppendUvarint(b, m.Inc)
}

func (m topoRecord) appendTo(b []byte) []byte {
	b = append(b, byte(typeTopology))
	return m.appendFields(b)
}

func (m topoRecord) appendFields(b []byte) []byte {
	b = binary.AppendUvarint(b, m.Epoch)
	b = append(b, byte(m.Topology.rank()+1))
	b = appendStr(b, m.By)
	return appendStr(b, m.Reason)
}

func (m admit) appendTo(b []byte) []byte {
	b = append(b, byte(typeAdmit))
	b = binary.AppendUvarint(b, m.Nonce)
	b = appendStr(b, m.ID)
	b = appendStr(b, m.Addr)
	b = appendStr(b, m.Federation)
	return binary.AppendUvarint(b, m.Count)
}

func (m verdict) appendTo(b []byte) []byte {
	b = append(b, byte(typeVerdict))
	b = binary.AppendUvarint(b, m.Nonce)
	b = appendStr(b, m.SeedID)
	b = appendBool(b, m.Admitted)
	b = appendStr(b, m.Reason)
	b = binary.AppendUvarint(b, m.Count)
	b = binary.AppendUvarint(b, m.Max)
	return append(b, byte(m.Topology.rank()+1))
}

func (m withdraw) appendTo(b []byte) []byte {
	b = append(b, byte(typeWithdraw))
	b = binary.AppendUvarint(b, m.Nonce)
	b = appendStr(b, m.ID)
	return appendStr(b, m.Reason)
}

func (m pushState) appendTo(b []byte) []byte {
	b = append(b, byte(typeState))
	b = appendBool(b, m.Joining)
	return m.Record.appendFields(b)
}

func (m nodeMeta) appendTo(b []byte) []byte {
	b = append(b, byte(typeMeta))
	b = appendStr(b, m.ID)
	b = appendStr(b, m.APIAddress)
	b = appendStr(b, m.Federation)
	b = appendStr(b, m.Version)
	return binary.AppendUvarint(b, m.Inc)
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// decodeMessage decodes one message. It never panics and never allocates
// more than len(b) bytes of strings.
func decodeMessage(b []byte) (message, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("decode fabric message: empty")
	}
	if len(b) > maxMessageSize {
		return nil, fmt.Errorf("decode fabric message: %d bytes; at most %d allowed", len(b), maxMessageSize)
	}
	t := msgType(b[0])
	r := &reader{b: b[1:]}
	var m message
	switch t {
	case typeHeartbeat:
		m = heartbeat{
			From: r.id("from"), Addr: r.addr("addr"), Seq: r.uvarint("seq"),
			Interval: r.interval("interval"), Epoch: r.uvarint("epoch"), Inc: r.uvarint("inc"),
			Members: r.count("members", 1), Digest: r.uint64("digest"),
		}
	case typeAck:
		m = ack{
			From: r.id("from"), Seq: r.uvarint("seq"), Epoch: r.uvarint("epoch"), Inc: r.uvarint("inc"),
			Members: r.count("members", 1), Digest: r.uint64("digest"),
		}
	case typeDead:
		m = dead{Node: r.id("node"), Inc: r.uvarint("inc"), From: r.id("from")}
	case typeAlive:
		m = alive{Node: r.id("node"), Inc: r.uvarint("inc")}
	case typeTopology:
		m = r.record()
	case typeAdmit:
		m = admit{
			Nonce: r.uvarint("nonce"), ID: r.id("id"), Addr: r.addr("addr"),
			Federation: r.str("federation", maxIDLen), Count: r.count("count", 1),
		}
	case typeVerdict:
		m = verdict{
			Nonce: r.uvarint("nonce"), SeedID: r.id("seed"), Admitted: r.bool("admitted"),
			Reason: r.str("reason", maxTextLen), Count: r.count("count", 0), Max: r.count("max", 0),
			Topology: r.topology("topology"),
		}
	case typeWithdraw:
		m = withdraw{Nonce: r.uvarint("nonce"), ID: r.id("id"), Reason: r.str("reason", maxTextLen)}
	case typeState:
		m = pushState{Joining: r.bool("joining"), Record: r.record()}
	case typeMeta:
		m = nodeMeta{
			ID: r.id("id"), APIAddress: r.str("api_address", maxAPILen),
			Federation: r.str("federation", maxIDLen), Version: r.str("version", maxVersionLen),
			Inc: r.uvarint("inc"),
		}
	default:
		return nil, fmt.Errorf("decode fabric message: unknown type %d", byte(t))
	}
	if r.err == nil && len(r.b) > 0 {
		r.err = fmt.Errorf("%d %w", len(r.b), errTrailing)
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode fabric %s: %w", t, r.err)
	}
	return m, nil
}

// reader consumes fields; the first error sticks and later reads return
// zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(field string, err error) {
	if r.err == nil {
		r.err = fmt.Errorf("field %s: %w", field, err)
	}
}

func (r *reader) uvarint(field string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	switch {
	case n == 0:
		r.fail(field, errTruncated)
		return 0
	case n < 0:
		r.fail(field, errors.New("varint overflows 64 bits"))
		return 0
	}
	r.b = r.b[n:]
	return v
}

// uint64 reads 8 bytes big-endian.
func (r *reader) uint64(field string) uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.fail(field, errTruncated)
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) byte(field string) byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail(field, errTruncated)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bool(field string) bool {
	switch c := r.byte(field); c {
	case 0:
		return false
	case 1:
		return true
	default:
		r.fail(field, fmt.Errorf("boolean byte %d; allowed 0 or 1", c))
		return false
	}
}

func (r *reader) str(field string, limit int) string {
	n := r.uvarint(field)
	if r.err != nil {
		return ""
	}
	if n > uint64(limit) {
		r.fail(field, fmt.Errorf("%d bytes; at most %d allowed", n, limit))
		return ""
	}
	if n > uint64(len(r.b)) {
		r.fail(field, errTruncated)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	if !utf8.ValidString(s) {
		r.fail(field, errors.New("invalid UTF-8"))
		return ""
	}
	return s
}

// id reads a non-empty node id.
func (r *reader) id(field string) string {
	s := r.str(field, maxIDLen)
	if r.err == nil && s == "" {
		r.fail(field, errors.New("empty"))
	}
	return s
}

// addr reads an "ip:port" with a non-zero port.
func (r *reader) addr(field string) string {
	s := r.str(field, maxAddrLen)
	if r.err != nil {
		return ""
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		r.fail(field, err)
		return ""
	}
	if ap.Port() == 0 {
		r.fail(field, errors.New("port 0"))
		return ""
	}
	return s
}

func (r *reader) count(field string, least uint64) uint64 {
	v := r.uvarint(field)
	if r.err == nil && (v < least || v > maxCount) {
		r.fail(field, fmt.Errorf("%d out of range [%d, %d]", v, least, uint64(maxCount)))
	}
	return v
}

func (r *reader) interval(field string) time.Duration {
	ms := r.uvarint(field)
	if r.err == nil && (ms == 0 || ms > maxIntervalMS) {
		r.fail(field, fmt.Errorf("%d ms out of range [1, %d]", ms, maxIntervalMS))
	}
	return time.Duration(ms) * time.Millisecond
}

func (r *reader) topology(field string) Topology {
	c := r.byte(field)
	if r.err != nil {
		return ""
	}
	if c == 0 || int(c) > len(topologies) {
		r.fail(field, fmt.Errorf("unknown topology %d", c))
		return ""
	}
	return topologies[c-1]
}

func (r *reader) record() topoRecord {
	return topoRecord{
		Epoch: r.uvarint("epoch"), Topology: r.topology("topology"),
		By: r.id("by"), Reason: r.str("reason", maxTextLen),
	}
}
