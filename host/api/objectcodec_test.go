package api

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// split cuts b into a BufferSlice of pieces of at most n bytes, as the
// transport hands over a message made of several HTTP/2 frames.
func split(b []byte, n int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		k := min(n, len(b))
		s = append(s, mem.SliceBuffer(bytes.Clone(b[:k])))
		b = b[k:]
	}
	return s
}

func TestObjectCodecData(t *testing.T) {
	payload := make([]byte, 1<<20+3)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	wire, err := proto.Marshal(&dwv1.GetObjectResponse{Part: &dwv1.GetObjectResponse_Data{Data: payload}})
	if err != nil {
		t.Fatal(err)
	}
	var d objectData
	for _, frame := range []int{1, 7, 16 << 10, len(wire)} {
		if err := (objectCodec{}).Unmarshal(split(wire, frame), &d); err != nil {
			t.Fatalf("frames of %d: %v", frame, err)
		}
		if d.Other != nil || !bytes.Equal(d.Data, payload) {
			t.Fatalf("frames of %d: data of %d bytes, equal %v", frame, len(d.Data), bytes.Equal(d.Data, payload))
		}
	}
	first := &d.buf[0]
	small, _ := proto.Marshal(&dwv1.GetObjectResponse{Part: &dwv1.GetObjectResponse_Data{Data: []byte("abc")}})
	if err := (objectCodec{}).Unmarshal(split(small, 2), &d); err != nil || string(d.Data) != "abc" {
		t.Fatalf("small message: %q %v", d.Data, err)
	}
	if &d.buf[0] != first {
		t.Fatal("the buffer was not reused")
	}
}

func TestObjectCodecOtherMessages(t *testing.T) {
	var d objectData
	hdr, _ := proto.Marshal(&dwv1.GetObjectResponse{Part: &dwv1.GetObjectResponse_Header{Header: &dwv1.GetObjectHeader{Offset: 5, Length: 9}}})
	if err := (objectCodec{}).Unmarshal(split(hdr, 3), &d); err != nil || d.Other.GetHeader().GetLength() != 9 || d.Data != nil {
		t.Fatalf("header: %+v %v", d, err)
	}
	// Data followed by an unknown field: still valid proto, decoded whole.
	odd := protowire.AppendTag(nil, 2, protowire.BytesType)
	odd = protowire.AppendBytes(odd, []byte("xyz"))
	odd = protowire.AppendTag(odd, 99, protowire.VarintType)
	odd = protowire.AppendVarint(odd, 1)
	if err := (objectCodec{}).Unmarshal(split(odd, 4), &d); err != nil || string(d.Data) != "xyz" || d.Other != nil {
		t.Fatalf("data with an unknown field: %+v %v", d, err)
	}
	// An empty message: no data, no header.
	if err := (objectCodec{}).Unmarshal(nil, &d); err != nil || len(d.Data) != 0 || d.Other != nil {
		t.Fatalf("empty message: %+v %v", d, err)
	}
	// Garbage is an error, not a panic.
	if err := (objectCodec{}).Unmarshal(split([]byte{0x12, 0xff, 0xff, 0xff}, 2), &d); err == nil {
		t.Fatal("garbage accepted")
	}
	// Other message types go to the standard codec.
	var info dwv1.ObjectInfo
	b, _ := proto.Marshal(&dwv1.ObjectInfo{Key: "k"})
	if err := (objectCodec{}).Unmarshal(split(b, 1), &info); err != nil || info.Key != "k" {
		t.Fatalf("other type: %v %v", &info, err)
	}
}
