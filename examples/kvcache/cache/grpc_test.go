package cache

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvcachev1 "github.com/datawarehouse/dw/examples/kvcache/proto/dw/kvcache/v1"
	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/sdktest"
)

// TestServerMapsErrorsToCodes calls the Cache service as the host does,
// over a connection, behind the SDK's interceptors.
func TestServerMapsErrorsToCodes(t *testing.T) {
	ctx := context.Background()
	s := kvcachev1.NewCacheClient(sdktest.ServeInProcess(t, New().RegisterGRPC))

	if r, err := s.Put(ctx, &kvcachev1.PutRequest{Key: "a", Value: []byte("1")}); err != nil || r.GetEvicted() != 0 {
		t.Fatalf("Put = %v, %v", r, err)
	}
	if r, err := s.Get(ctx, &kvcachev1.GetRequest{Key: "a"}); err != nil || string(r.GetValue()) != "1" {
		t.Fatalf("Get = %v, %v", r, err)
	}
	_, err := s.Get(ctx, &kvcachev1.GetRequest{Key: "b"})
	if status.Code(err) != codes.NotFound || !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want NOT_FOUND", err)
	}
	_, err = s.Delete(ctx, &kvcachev1.DeleteRequest{})
	if status.Code(err) != codes.InvalidArgument || !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Delete(empty key) = %v, want INVALID_ARGUMENT", err)
	}
	if r, err := s.Delete(ctx, &kvcachev1.DeleteRequest{Key: "a"}); err != nil || !r.GetExisted() {
		t.Errorf("Delete(a) = %v, %v; want existed", r, err)
	}
}
