package node

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleMessages has one valid message of every type.
func sampleMessages() []message {
	rec := topoRecord{Epoch: 7, Topology: TopologyMesh, By: "node-b", Reason: "node count 8 reached up_at"}
	return []message{
		heartbeat{From: "node-a", Addr: "127.0.0.1:7946", Seq: 42, Interval: 1500 * time.Millisecond, Epoch: 3, Inc: 1 << 60, Members: 5, Digest: 1<<64 - 1},
		heartbeat{From: "n", Addr: "[::1]:1", Seq: 0, Interval: time.Millisecond, Members: 1},
		ack{From: "node-b", Seq: 42, Epoch: 3, Inc: 9, Members: 3, Digest: 0xdeadbeef},
		dead{Node: "node-c", Inc: 5, From: "node-a"},
		alive{Node: "node-c", Inc: 6},
		rec,
		admit{Nonce: 99, ID: "node-d", Addr: "10.0.0.4:7946", Federation: "eu", Count: 1},
		verdict{Nonce: 99, SeedID: "node-a", Admitted: false, Reason: fullReason(TopologyStar, 3, 3), Count: 3, Max: 3, Topology: TopologyStar},
		verdict{Nonce: 1, SeedID: "node-a", Admitted: true, Count: 1, Max: 10000, Topology: TopologyFederated},
		withdraw{Nonce: 99, ID: "node-d", Reason: "too large"},
		pushState{Joining: true, Record: rec},
		nodeMeta{ID: "node-a", APIAddress: "http://127.0.0.1:8080", Federation: "default", Version: "v0.1.0", Inc: 12345},
	}
}

func TestWireRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		t.Run(m.kind().String(), func(t *testing.T) {
			b := encode(m)
			if msgType(b[0]) != m.kind() {
				t.Fatalf("type byte %d, want %d", b[0], m.kind())
			}
			got, err := decodeMessage(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, m)
			}
		})
	}
}

// TestWireRejects feeds malformed and hostile input.
func TestWireRejects(t *testing.T) {
	hb := encode(heartbeat{From: "a", Addr: "127.0.0.1:7946", Seq: 1, Interval: time.Second, Members: 1})
	long := func(n int) string { return strings.Repeat("x", n) }
	raw := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	str := func(s string) []byte { return appendStr(nil, s) }
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	tests := []struct {
		name, want string
		in         []byte
	}{
		{"empty", "empty", nil},
		{"unknown type", "unknown type 200", []byte{200}},
		{"type zero", "unknown type 0", []byte{0}},
		{"oversized", "at most 4096", append([]byte{byte(typeHeartbeat)}, make([]byte, maxMessageSize)...)},
		{"truncated heartbeat", "truncated", hb[:len(hb)-1]},
		{"trailing bytes", "trailing", append(bytes.Clone(hb), 0)},
		{"empty id", "field from: empty", raw([]byte{byte(typeAck)}, str(""), uv(1), uv(1), uv(1), uv(1), make([]byte, 8))},
		{"id too long", "at most 128", raw([]byte{byte(typeAck)}, str(long(129)), uv(1), uv(1), uv(1), uv(1), make([]byte, 8))},
		{"short digest", "field digest: truncated", raw([]byte{byte(typeAck)}, str("a"), uv(1), uv(1), uv(1), uv(1), make([]byte, 7))},
		{"no members", "field members", raw([]byte{byte(typeAck)}, str("a"), uv(1), uv(1), uv(1), uv(0), make([]byte, 8))},
		{"string length past the end", "truncated", raw([]byte{byte(typeAck)}, uv(100), []byte("ab"))},
		{"huge string length", "at most 128", raw([]byte{byte(typeAck)}, uv(1<<62))},
		{"invalid utf-8", "invalid UTF-8", raw([]byte{byte(typeAlive)}, str("\xff\xfe"), uv(1))},
		{"varint overflow", "overflows", raw([]byte{byte(typeAlive)}, str("a"), bytes.Repeat([]byte{0xff}, 10), []byte{0x7f})},
		{"bad address", "field addr", raw([]byte{byte(typeHeartbeat)}, str("a"), str("not-an-address"), uv(1), uv(1000), uv(0), uv(0))},
		{"port zero", "port 0", raw([]byte{byte(typeHeartbeat)}, str("a"), str("127.0.0.1:0"), uv(1), uv(1000), uv(0), uv(0))},
		{"zero interval", "field interval", raw([]byte{byte(typeHeartbeat)}, str("a"), str("127.0.0.1:1"), uv(1), uv(0), uv(0), uv(0))},
		{"huge interval", "field interval", raw([]byte{byte(typeHeartbeat)}, str("a"), str("127.0.0.1:1"), uv(1), uv(1<<50), uv(0), uv(0))},
		{"unknown topology", "unknown topology 9", raw([]byte{byte(typeTopology)}, uv(1), []byte{9}, str("a"), str(""))},
		{"topology zero", "unknown topology 0", raw([]byte{byte(typeTopology)}, uv(1), []byte{0}, str("a"), str(""))},
		{"bad boolean", "boolean byte 2", raw([]byte{byte(typeState)}, []byte{2})},
		{"admit count zero", "field count", raw([]byte{byte(typeAdmit)}, uv(1), str("a"), str("127.0.0.1:1"), str(""), uv(0))},
		{"admit count huge", "field count", raw([]byte{byte(typeAdmit)}, uv(1), str("a"), str("127.0.0.1:1"), str(""), uv(1<<40))},
		{"reason too long", "at most 1024", raw([]byte{byte(typeWithdraw)}, uv(1), str("a"), str(long(1025)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := decodeMessage(tt.in)
			if err == nil {
				t.Fatalf("decoded %#v, want an error containing %q", m, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// FuzzDecodeMessage: decoding arbitrary bytes never panics, and whatever
// decodes re-encodes to something that decodes to the same message.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(encode(m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			if m != nil {
				t.Fatalf("error %v with a message %#v", err, m)
			}
			return
		}
		again, err := decodeMessage(encode(m))
		if err != nil {
			t.Fatalf("re-encoded %#v does not decode: %v", m, err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("re-encode changed the message:\n got %#v\nwant %#v", again, m)
		}
	})
}
