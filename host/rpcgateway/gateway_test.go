package rpcgateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	echov1 "github.com/datawarehouse/dw/host/api/testdata/echoplugin/proto/dw/echo/v1"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer is an in-process dw.echo.v1.Echo.
type echoServer struct {
	echov1.UnimplementedEchoServer
}

func (echoServer) Echo(ctx context.Context, req *echov1.EchoRequest) (*echov1.EchoResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	return &echov1.EchoResponse{Request: req, Caller: strings.Join(md.Get(CallerMetadataKey), ",")}, nil
}

func (echoServer) Repeat(req *echov1.RepeatRequest, stream grpc.ServerStreamingServer[echov1.RepeatResponse]) error {
	for i := range int(req.GetTimes()) {
		if fa := int(req.GetFailAfter()); fa > 0 && i == fa {
			return fmt.Errorf("%w: failing after %d", sdk.ErrUnavailable, fa)
		}
		if err := stream.Send(&echov1.RepeatResponse{Message: req.GetMessage(), Index: int32(i)}); err != nil {
			return err
		}
	}
	return nil
}

func (echoServer) Fail(_ context.Context, req *echov1.FailRequest) (*echov1.FailResponse, error) {
	return nil, sdk.WithRetryAfter(fmt.Errorf("busy: %w", sdk.ErrBackpressure), 1500*time.Millisecond)
}

type reflectionMode int

const (
	reflectBoth reflectionMode = iota
	reflectAlphaOnly
	reflectOneFileAtATime
	reflectNone
)

// testServer is a real gRPC server on loopback with the echo service and
// reflection; reflections counts reflection streams opened.
type testServer struct {
	conn        *grpc.ClientConn
	reflections atomic.Int64
}

func startServer(t testing.TB, mode reflectionMode) *testServer {
	t.Helper()
	ts := &testServer{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Errors cross as they do between host and plugin: through the
	// interceptors of pluginhost.ServerOptions and DialOptions.
	srv := grpc.NewServer(append(pluginhost.ServerOptions(nil), grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if strings.Contains(info.FullMethod, "ServerReflection") {
			ts.reflections.Add(1)
		}
		return handler(srv, ss)
	}))...)
	echov1.RegisterEchoServer(srv, echoServer{})
	switch mode {
	case reflectBoth:
		reflection.Register(srv)
	case reflectAlphaOnly:
		rpbalpha.RegisterServerReflectionServer(srv, reflection.NewServer(reflection.ServerOptions{Services: srv}))
	case reflectOneFileAtATime:
		rpb.RegisterServerReflectionServer(srv, &stingyReflection{})
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), append(pluginhost.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	ts.conn = conn
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	})
	return ts
}

// stingyReflection answers each request with exactly one file, without its
// dependencies, so that the client must fetch them one by one.
type stingyReflection struct {
	rpb.UnimplementedServerReflectionServer
}

func (stingyReflection) ServerReflectionInfo(stream grpc.BidiStreamingServer[rpb.ServerReflectionRequest, rpb.ServerReflectionResponse]) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		var fd protoreflect.FileDescriptor
		switch r := req.GetMessageRequest().(type) {
		case *rpb.ServerReflectionRequest_FileContainingSymbol:
			d, ferr := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(r.FileContainingSymbol))
			if ferr == nil {
				fd = d.ParentFile()
			}
		case *rpb.ServerReflectionRequest_FileByFilename:
			fd, _ = protoregistry.GlobalFiles.FindFileByPath(r.FileByFilename)
		}
		resp := &rpb.ServerReflectionResponse{OriginalRequest: req}
		if fd == nil {
			resp.MessageResponse = &rpb.ServerReflectionResponse_ErrorResponse{ErrorResponse: &rpb.ErrorResponse{ErrorCode: 5, ErrorMessage: "not found"}}
		} else {
			b, _ := proto.Marshal(protodesc.ToFileDescriptorProto(fd))
			resp.MessageResponse = &rpb.ServerReflectionResponse_FileDescriptorResponse{
				FileDescriptorResponse: &rpb.FileDescriptorResponse{FileDescriptorProto: [][]byte{b}}}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

const echoService = "dw.echo.v1.Echo"

var offered = []string{echoService}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// jsonEqual compares two JSON texts as values.
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want invalid JSON %s: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("JSON differs\n got: %s\nwant: %s", gb, wb)
	}
}

func TestAllowed(t *testing.T) {
	if ContractService != dwv1.ScalableSubsystem_ServiceDesc.ServiceName {
		t.Fatalf("ContractService %q is not the SDK's %q", ContractService, dwv1.ScalableSubsystem_ServiceDesc.ServiceName)
	}
	offered := []string{"dw.echo.v1.Echo", "dw.sdk.v1.ScalableSubsystem", "dw.sdk.v1.HostKV"}
	tests := []struct {
		service string
		want    error
		msg     string
	}{
		{"dw.echo.v1.Echo", nil, ""},
		{"dw.sdk.v1.ScalableSubsystem", sdk.ErrPermissionDenied, "bypass the config transaction"},
		{"dw.sdk.v1.HostKV", sdk.ErrPermissionDenied, "SDK plumbing"},
		{"grpc.reflection.v1.ServerReflection", sdk.ErrPermissionDenied, "gRPC plumbing"},
		{"grpc.health.v1.Health", sdk.ErrPermissionDenied, "gRPC plumbing"},
		{"plugin.GRPCBroker", sdk.ErrPermissionDenied, "go-plugin plumbing"},
		{"dw.other.v1.Thing", sdk.ErrNotFound, "the plugin offers dw.echo.v1.Echo"},
		{"", sdk.ErrInvalidArgument, "fully qualified"},
		{"dw..Echo", sdk.ErrInvalidArgument, "fully qualified"},
		{"dw/echo", sdk.ErrInvalidArgument, "fully qualified"},
		{strings.Repeat("a", 300), sdk.ErrInvalidArgument, "fully qualified"},
	}
	for _, tt := range tests {
		err := Allowed(tt.service, offered)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("Allowed(%q) = %v, want %v", tt.service, err, tt.want)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Allowed(%q) = %q, want it to contain %q", tt.service, err, tt.msg)
		}
	}
	if err := Allowed("x.Y", nil); err == nil || !strings.Contains(err.Error(), "no domain services") {
		t.Errorf("Allowed with nothing offered = %v, want 'no domain services'", err)
	}
}

func TestUnary(t *testing.T) {
	for _, mode := range []struct {
		name string
		mode reflectionMode
	}{{"v1", reflectBoth}, {"v1alpha", reflectAlphaOnly}, {"one-file-at-a-time", reflectOneFileAtATime}} {
		t.Run(mode.name, func(t *testing.T) {
			ts := startServer(t, mode.mode)
			gw := New(Options{})
			ctx := metadata.AppendToOutgoingContext(ctxT(t), CallerMetadataKey, "alice")
			m, err := gw.Lookup(ctx, ts.conn, offered, echoService, "Echo")
			if err != nil {
				t.Fatal(err)
			}
			if m.FullMethod() != "/dw.echo.v1.Echo/Echo" || m.ServerStreaming() {
				t.Fatalf("method %s streaming=%v", m.FullMethod(), m.ServerStreaming())
			}
			in := `{"message":"hi","count":"42","payload":"aGk=","tags":["a","b"],"attrs":{"k":"v"},
				"kind":"KIND_LARGE","nested":{"label":"n","values":[1,2]},"at":"2024-01-02T03:04:05Z",
				"wait":"1.500s","text":"t","extra":{"x":[1,"y",null]},
				"any":{"@type":"type.googleapis.com/dw.echo.v1.Nested","label":"inside"},
				"ratio":0.25,"flag":true,"big":"18446744073709551615","items":[{"label":"i"}],"by_id":{"7":{"label":"seven"}}}`
			req, err := m.DecodeRequest([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			reply, err := m.Call(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			out, err := m.EncodeReply(reply)
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, out, `{"request":`+in+`,"caller":"alice"}`)
		})
	}
}

func TestEmptyBodyIsEmptyMessage(t *testing.T) {
	ts := startServer(t, reflectBoth)
	gw := New(Options{})
	m, err := gw.Lookup(ctxT(t), ts.conn, offered, echoService, "Echo")
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"", "  \n", "{}"} {
		req, err := m.DecodeRequest([]byte(body))
		if err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		reply, err := m.Call(ctxT(t), req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := m.EncodeReply(reply)
		jsonEqual(t, out, `{"request":{}}`)
	}
}

func TestDecodeErrors(t *testing.T) {
	md := (&echov1.EchoRequest{}).ProtoReflect().Descriptor()
	tests := []struct{ body, want string }{
		{`{"message":`, "ends at byte 11"},
		{`{"message": 1}`, "message"},
		{`{"nope": 1}`, `unknown field "nope"`},
		{`{"kind":"KIND_HUGE"}`, "KIND_HUGE"},
		{`[1,2]`, "line 1:1"},
		{"{\n  \"count\": \"x\"\n}", "line 2"},
		{`{"any":{"@type":"type.googleapis.com/no.such.Type"}}`, "no.such.Type"},
	}
	for _, tt := range tests {
		_, err := DecodeJSON(md, nil, []byte(tt.body))
		if !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("body %s: error %v, want ErrInvalidArgument", tt.body, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "dw.echo.v1.EchoRequest") {
			t.Errorf("body %s: error %q, want it to name the message and contain %q", tt.body, err, tt.want)
		}
	}
}

func TestServerStreaming(t *testing.T) {
	ts := startServer(t, reflectBoth)
	gw := New(Options{})
	ctx := ctxT(t)
	m, err := gw.Lookup(ctx, ts.conn, offered, echoService, "Repeat")
	if err != nil {
		t.Fatal(err)
	}
	if !m.ServerStreaming() {
		t.Fatal("Repeat is not server-streaming")
	}
	if _, err := m.Call(ctx, nil); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Call on a streaming method = %v, want ErrInvalidArgument", err)
	}

	req, err := m.DecodeRequest([]byte(`{"message":"m","times":5}`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := m.Stream(ctx, req, func(msg proto.Message) error {
		b, err := m.EncodeReply(msg)
		got = append(got, string(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("got %d replies, want 5: %v", len(got), got)
	}
	for i, g := range got {
		var v struct {
			Message string
			Index   int
		}
		if err := json.Unmarshal([]byte(g), &v); err != nil || v.Message != "m" || v.Index != i {
			t.Errorf("reply %d = %s (%v)", i, g, err)
		}
	}

	// An error in the middle of the stream comes back as an sdk error.
	req, _ = m.DecodeRequest([]byte(`{"message":"m","times":5,"fail_after":2}`))
	n := 0
	err = m.Stream(ctx, req, func(proto.Message) error { n++; return nil })
	if !errors.Is(err, sdk.ErrUnavailable) || n != 2 {
		t.Errorf("failing stream: %d replies, error %v; want 2 and ErrUnavailable", n, err)
	}

	// An error of fn stops the stream and is returned as is.
	stop := errors.New("stop")
	req, _ = m.DecodeRequest([]byte(`{"message":"m","times":1000}`))
	err = m.Stream(ctx, req, func(proto.Message) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("fn error: got %v", err)
	}

	um, err := gw.Lookup(ctx, ts.conn, offered, echoService, "Echo")
	if err != nil {
		t.Fatal(err)
	}
	if err := um.Stream(ctx, nil, nil); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Stream on a unary method = %v, want ErrInvalidArgument", err)
	}
}

func TestLookupErrors(t *testing.T) {
	ts := startServer(t, reflectBoth)
	gw := New(Options{})
	ctx := ctxT(t)
	tests := []struct {
		offered         []string
		service, method string
		want            error
		msg             string
	}{
		{offered, echoService, "Nope", sdk.ErrNotFound, "the service has Collect, Echo, Fail, Repeat"},
		{offered, echoService, "Collect", sdk.ErrUnimplemented, "client-streaming"},
		{offered, echoService, "bad-name", sdk.ErrInvalidArgument, "method name"},
		{offered, "dw.sdk.v1.ScalableSubsystem", "GetLimits", sdk.ErrPermissionDenied, "config transaction"},
		{offered, "grpc.reflection.v1.ServerReflection", "ServerReflectionInfo", sdk.ErrPermissionDenied, "plumbing"},
		{offered, "dw.other.v1.Other", "X", sdk.ErrNotFound, "offers dw.echo.v1.Echo"},
		// Listed by the plugin but unknown to its reflection.
		{[]string{echoService, "dw.ghost.v1.Ghost"}, "dw.ghost.v1.Ghost", "X", sdk.ErrNotFound, "does not describe it"},
	}
	for _, tt := range tests {
		_, err := gw.Lookup(ctx, ts.conn, tt.offered, tt.service, tt.method)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Lookup(%s, %s) = %v, want %v containing %q", tt.service, tt.method, err, tt.want, tt.msg)
		}
	}
}

func TestNoReflection(t *testing.T) {
	ts := startServer(t, reflectNone)
	gw := New(Options{})
	_, err := gw.Lookup(ctxT(t), ts.conn, offered, echoService, "Echo")
	if !errors.Is(err, sdk.ErrUnimplemented) || !strings.Contains(err.Error(), "reflection") {
		t.Errorf("Lookup without reflection = %v, want ErrUnimplemented mentioning reflection", err)
	}
}

func TestPluginErrorsKeepSentinelAndRetryHint(t *testing.T) {
	ts := startServer(t, reflectBoth)
	gw := New(Options{})
	m, err := gw.Lookup(ctxT(t), ts.conn, offered, echoService, "Fail")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := m.DecodeRequest(nil)
	_, err = m.Call(ctxT(t), req)
	if !errors.Is(err, sdk.ErrBackpressure) {
		t.Fatalf("error %v, want ErrBackpressure", err)
	}
	if d, ok := sdk.RetryAfter(err); !ok || d != 1500*time.Millisecond {
		t.Errorf("retry hint %v %v, want 1.5s", d, ok)
	}
}

func TestDescriptorsCachedPerConnection(t *testing.T) {
	ts := startServer(t, reflectBoth)
	gw := New(Options{})
	ctx := ctxT(t)
	for range 5 {
		for _, method := range []string{"Echo", "Repeat"} {
			if _, err := gw.Lookup(ctx, ts.conn, offered, echoService, method); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := ts.reflections.Load(); n != 1 {
		t.Errorf("%d reflection streams for 10 lookups on one connection, want 1", n)
	}

	// A failed resolution is not cached.
	bad := []string{echoService, "dw.ghost.v1.Ghost"}
	for range 2 {
		if _, err := gw.Lookup(ctx, ts.conn, bad, "dw.ghost.v1.Ghost", "X"); err == nil {
			t.Fatal("ghost service resolved")
		}
	}
	if n := ts.reflections.Load(); n != 3 {
		t.Errorf("%d reflection streams after two failed lookups, want 3", n)
	}

	// Another connection (a restarted plugin) is resolved afresh.
	other := startServer(t, reflectBoth)
	if _, err := gw.Lookup(ctx, other.conn, offered, echoService, "Echo"); err != nil {
		t.Fatal(err)
	}
	if n := other.reflections.Load(); n != 1 {
		t.Errorf("new connection: %d reflection streams, want 1", n)
	}
}

func TestCacheIsBounded(t *testing.T) {
	gw := New(Options{MaxConnections: 2})
	ctx := ctxT(t)
	var servers []*testServer
	for range 3 {
		ts := startServer(t, reflectBoth)
		servers = append(servers, ts)
		if _, err := gw.Lookup(ctx, ts.conn, offered, echoService, "Echo"); err != nil {
			t.Fatal(err)
		}
	}
	if n := gw.conns.Len(); n != 2 {
		t.Errorf("cache holds %d connections, want 2", n)
	}
	if gw.conns.Contains(servers[0].conn) {
		t.Error("least recently used connection still cached")
	}
	// The evicted one is resolved again when used.
	if _, err := gw.Lookup(ctx, servers[0].conn, offered, echoService, "Echo"); err != nil {
		t.Fatal(err)
	}
	if n := servers[0].reflections.Load(); n != 2 {
		t.Errorf("evicted connection: %d reflection streams, want 2", n)
	}
}

func TestConcurrentLookups(t *testing.T) {
	ts := startServer(t, reflectBoth)
	gw := New(Options{})
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			m, err := gw.Lookup(ctx, ts.conn, offered, echoService, "Echo")
			if err == nil {
				var req proto.Message
				if req, err = m.DecodeRequest([]byte(`{"message":"x"}`)); err == nil {
					_, err = m.Call(ctx, req)
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := ts.reflections.Load(); n != 1 {
		t.Errorf("%d reflection streams for 16 concurrent lookups, want 1", n)
	}
}

func TestLookupHonoursContext(t *testing.T) {
	ts := startServer(t, reflectBoth)
	gw := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := gw.Lookup(ctx, ts.conn, offered, echoService, "Echo")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled lookup = %v, want context.Canceled", err)
	}
	// Not cached: a live context succeeds.
	if _, err := gw.Lookup(ctxT(t), ts.conn, offered, echoService, "Echo"); err != nil {
		t.Fatal(err)
	}
}

func TestContractNeverResolved(t *testing.T) {
	// Even a plugin that lists the contract among its services cannot have
	// it called: the refusal comes before any reflection.
	ts := startServer(t, reflectBoth)
	gw := New(Options{})
	_, err := gw.Lookup(ctxT(t), ts.conn, []string{dwv1.ScalableSubsystem_ServiceDesc.ServiceName}, ContractService, "ApplyLimits")
	if !errors.Is(err, sdk.ErrPermissionDenied) {
		t.Fatalf("got %v", err)
	}
	if n := ts.reflections.Load(); n != 0 {
		t.Errorf("%d reflection streams for a refused service", n)
	}
}
