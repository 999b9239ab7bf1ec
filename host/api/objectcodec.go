package api

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// objectCodec is the gRPC codec of the host's ObjectStore.Get and
// FileStore.Get calls. It is the standard proto codec, except that it
// decodes a data message of the stream into a *streamData, copying the
// bytes once into a buffer the request reuses. The standard codec copies
// them twice (into one contiguous buffer, then into a new slice for the
// proto field) and leaves a megabyte of garbage per message: on a large
// download that is a tenth of the host's CPU.
type objectCodec struct{}

var protoCodec = encoding.GetCodecV2("proto")

// Name is "proto": the wire format does not change.
func (objectCodec) Name() string { return "proto" }

func (objectCodec) Marshal(v any) (mem.BufferSlice, error) { return protoCodec.Marshal(v) }

func (objectCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if d, ok := v.(streamDecoder); ok {
		return d.decode(data)
	}
	return protoCodec.Unmarshal(data, v)
}

// streamDecoder is a *streamData of any Get stream.
type streamDecoder interface{ decode(mem.BufferSlice) error }

// streamData receives one message M of a Get stream whose oneof has the
// header in field 1 and the data bytes in field 2 (GetObjectResponse,
// GetFileResponse). For a data message, Data holds its bytes (valid until
// the next message is received into the same streamData); any other
// message is decoded whole into Other.
type streamData[M any, PM interface {
	*M
	proto.Message
}] struct {
	buf   []byte
	Data  []byte
	Other PM
}

// objectData receives one message of an ObjectStore.Get stream.
type objectData = streamData[dwv1.GetObjectResponse, *dwv1.GetObjectResponse]

// Field numbers of the Get stream messages.
const (
	getHeaderField = 1
	getDataField   = 2
)

// dataTag is the key of the data field (bytes).
var dataTag = uint64(protowire.EncodeTag(getDataField, protowire.BytesType))

func (d *streamData[M, PM]) decode(data mem.BufferSlice) error {
	d.Data, d.Other = nil, nil
	r := data.Reader()
	defer r.Close()
	tag, err := binary.ReadUvarint(r)
	if err == nil && tag == dataTag {
		n, err := binary.ReadUvarint(r)
		if err == nil && n == uint64(r.Remaining()) {
			if uint64(cap(d.buf)) < n {
				d.buf = make([]byte, n)
			}
			d.Data = d.buf[:n]
			if got := copyRest(r, d.Data); got != len(d.Data) {
				return fmt.Errorf("read object data: %d of %d bytes", got, len(d.Data))
			}
			return nil
		}
	}
	// Anything else (the header, or data encoded some other valid way):
	// decode the whole message.
	m := PM(new(M))
	if err := proto.Unmarshal(data.Materialize(), m); err != nil {
		return fmt.Errorf("decode object stream message: %w", err)
	}
	pr := m.ProtoReflect()
	fields := pr.Descriptor().Fields()
	if !pr.Has(fields.ByNumber(getHeaderField)) {
		d.Data = pr.Get(fields.ByNumber(getDataField)).Bytes()
		return nil
	}
	d.Other = m
	return nil
}

// copyRest reads what r still holds into dst, returning how much it read.
func copyRest(r *mem.Reader, dst []byte) int {
	total := 0
	for len(dst) > 0 && r.Remaining() > 0 {
		n, _ := r.Read(dst)
		if n == 0 {
			break
		}
		dst = dst[n:]
		total += n
	}
	return total
}
