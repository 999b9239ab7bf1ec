package rpcgateway

import (
	"testing"

	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	echov1 "github.com/datawarehouse/dw/host/api/testdata/echoplugin/proto/dw/echo/v1"
)

// FuzzDecodeRequest feeds arbitrary bytes to the JSON → dynamic message
// path, with the descriptors built the way the gateway builds them (from
// file descriptor protos, as reflection delivers them). It must never panic,
// and whatever it accepts must encode again.
func FuzzDecodeRequest(f *testing.F) {
	protos := map[string]*descriptorpb.FileDescriptorProto{}
	fd := echov1.File_dw_echo_v1_echo_proto
	protos[fd.Path()] = protodesc.ToFileDescriptorProto(fd)
	files, err := buildFiles(protos)
	if err != nil {
		f.Fatal(err)
	}
	d, err := files.FindDescriptorByName("dw.echo.v1.EchoRequest")
	if err != nil {
		f.Fatal(err)
	}
	md := d.(protoreflect.MessageDescriptor)
	types := dynamicpb.NewTypes(files)

	f.Add([]byte(`{"message":"hi","count":"3"}`))
	f.Add([]byte(`{"any":{"@type":"type.googleapis.com/dw.echo.v1.Nested","label":"x"}}`))
	f.Add([]byte(`{"extra":{"a":[1,{"b":null}]},"wait":"1s","at":"2024-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"by_id":{"1":{"values":[1,2,3]}},"kind":2}`))
	f.Add([]byte(`{"text":"a","number":1}`))
	f.Add([]byte(`{`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := DecodeJSON(md, types, data)
		if err != nil {
			return
		}
		m := &Method{types: types}
		if _, err := m.EncodeReply(msg); err != nil {
			t.Fatalf("decoded %q but cannot encode it again: %v", data, err)
		}
	})
}
