package pluginhost

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/internal/syncbuf"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeKV is an sdk.KV whose methods call its function fields.
type fakeKV struct {
	GetFunc  func(ctx context.Context, key string) ([]byte, error)
	ListFunc func(ctx context.Context, prefix string, fn func(string, []byte) error) error
}

func (f *fakeKV) Put(context.Context, string, []byte) error { return nil }
func (f *fakeKV) Get(ctx context.Context, key string) ([]byte, error) {
	return f.GetFunc(ctx, key)
}
func (f *fakeKV) Delete(context.Context, string) error { return nil }
func (f *fakeKV) List(ctx context.Context, prefix string, fn func(string, []byte) error) error {
	return f.ListFunc(ctx, prefix, fn)
}

// serveKV serves kv as the host does (a server made with ServerOptions)
// and dials it with DialOptions.
func serveKV(t *testing.T, kv sdk.KV, logger hclog.Logger) dwv1.HostKVClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer(ServerOptions(logger)...)
	RegisterHostKV(s, kv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet", append(DialOptions(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		s.Stop()
		<-served
	})
	return dwv1.NewHostKVClient(conn)
}

// TestHostKVErrors: the host KV service's errors and panics reach the
// plugin as sdk errors, through ServerOptions and DialOptions alone.
func TestHostKVErrors(t *testing.T) {
	ctx := context.Background()
	logs := &syncbuf.Buffer{}
	kv := &fakeKV{
		GetFunc: func(_ context.Context, key string) ([]byte, error) {
			if key == "bug" {
				var b []byte
				return b[:1], nil
			}
			return nil, sdk.ErrNotFound
		},
		ListFunc: func(_ context.Context, _ string, fn func(string, []byte) error) error {
			return fn("a", []byte("1"))
		},
	}
	c := serveKV(t, kv, hclog.New(&hclog.LoggerOptions{Output: logs}))

	if _, err := c.Get(ctx, &dwv1.KVGetRequest{Key: "missing"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("get missing: %v", err)
	}
	if _, err := c.Get(ctx, &dwv1.KVGetRequest{Key: ""}); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("get with an empty key: %v", err)
	}
	_, err := c.Get(ctx, &dwv1.KVGetRequest{Key: "bug"})
	if !errors.Is(err, sdk.ErrPanicked) || !strings.HasPrefix(err.Error(), "panicked in Get: runtime error: slice bounds out of range") ||
		!strings.Contains(err.Error(), "(pluginhost/hostkv_test.go:") {
		t.Errorf("panicking store: %v", err)
	}
	if !strings.Contains(logs.String(), "goroutine ") {
		t.Errorf("the stack was not logged:\n%s", logs)
	}
	st, err := c.List(ctx, &dwv1.KVListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := st.Recv(); err != nil || e.GetKey() != "a" {
		t.Fatalf("list: %v %v", e, err)
	}
	if _, err := st.Recv(); err != io.EOF { //nolint:errorlint // io.EOF itself is the contract of Recv
		t.Errorf("end of list: %#v, want io.EOF", err)
	}
}
