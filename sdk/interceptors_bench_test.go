package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/datawarehouse/dw/sdk/v6/internal/contract"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// BenchmarkInterceptors measures what the error interceptors cost per
// unary call: a trivial FileStore.Stat in process (bufconn), with the
// transport options of a plugin connection, bare and with the interceptors
// on both sides (the plugin server's: Configure gate, panic recovery,
// ToStatus; the host's: FromStatus). "ok" answers; "error" fails with
// ErrNotFound, converted by hand in the bare case (as sdk 6.0 plugins and
// hosts did), so that both cases do the same conversions.
//
//	go test -run '^$' -bench BenchmarkInterceptors -benchmem ./sdk/
func BenchmarkInterceptors(b *testing.B) {
	for _, withInterceptors := range []bool{false, true} {
		for _, fail := range []bool{false, true} {
			name := map[bool]string{false: "bare", true: "interceptors"}[withInterceptors] + "/" + map[bool]string{false: "ok", true: "error"}[fail]
			b.Run(name, func(b *testing.B) {
				benchmarkStat(b, withInterceptors, fail)
			})
		}
	}
}

func benchmarkStat(b *testing.B, withInterceptors, fail bool) {
	notFound := fmt.Errorf("stat %q: %w", "a", ErrNotFound)
	store := &fakeFileStore{StatFunc: func(context.Context, *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) {
		if !fail {
			return &dwv1.StatFileResponse{}, nil
		}
		if withInterceptors {
			return nil, notFound
		}
		return nil, ToStatus(notFound)
	}}
	serverOpts := contract.ServerOptions()
	dialOpts := contract.DialOptions()
	if withInterceptors {
		ready := func() bool { return true }
		serverOpts = serverOptions(nil, "bench", ready)
		dialOpts = hostDialOptions()
	}
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer(serverOpts...)
	dwv1.RegisterFileStoreServer(s, store)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(lis)
	}()
	defer func() {
		s.Stop()
		<-served
	}()
	conn, err := grpc.NewClient("passthrough:///bench", append(dialOpts,
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := dwv1.NewFileStoreClient(conn)
	ctx := context.Background()
	req := &dwv1.StatFileRequest{Path: "a"}
	call := func() error {
		_, err := c.Stat(ctx, req)
		if !withInterceptors {
			err = FromStatus(err)
		}
		return err
	}
	if err := call(); fail != errors.Is(err, ErrNotFound) {
		b.Fatalf("warm-up call: %v", err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := call(); (err != nil) != fail {
			b.Fatal(err)
		}
	}
}

// BenchmarkInterceptorCalls measures the interceptors alone, without a
// connection: the plugin server's unary interceptor around a handler that
// answers at once, and the host's around an invoker that does; "ok"
// answers, "error" returns ErrNotFound (which ToStatus and FromStatus
// convert).
func BenchmarkInterceptorCalls(b *testing.B) {
	notFound := fmt.Errorf("stat %q: %w", "a", ErrNotFound)
	server := serverErrors(nil, "bench", func() bool { return true })
	info := &grpc.UnaryServerInfo{FullMethod: "/dw.sdk.v1.FileStore/Stat"}
	resp := &dwv1.StatFileResponse{}
	client := contract.UnaryClientErrors(FromStatus)
	for _, fail := range []bool{false, true} {
		var handlerErr, invokerErr error
		if fail {
			handlerErr, invokerErr = notFound, ToStatus(notFound)
		}
		suffix := map[bool]string{false: "ok", true: "error"}[fail]
		b.Run("server/"+suffix, func(b *testing.B) {
			handler := func(context.Context, any) (any, error) { return resp, handlerErr }
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_, _ = server.Unary(ctx, nil, info, handler)
			}
		})
		b.Run("client/"+suffix, func(b *testing.B) {
			invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return invokerErr }
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_ = client(ctx, info.FullMethod, nil, nil, nil, invoker)
			}
		})
	}
}
