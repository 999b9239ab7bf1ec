package cache

import (
	"context"

	"google.golang.org/grpc"

	kvcachev1 "github.com/datawarehouse/dw/examples/kvcache/proto/dw/kvcache/v1"
	"github.com/datawarehouse/dw/sdk/v6"
)

// RegisterGRPC serves the dw.kvcache.v1.Cache service on the plugin
// connection; sdk.Serve calls it.
func (c *Cache) RegisterGRPC(s *grpc.Server) {
	kvcachev1.RegisterCacheServer(s, &server{cache: c})
}

// server adapts Cache to the generated gRPC server. Errors leave through
// sdk.ToStatus, so sdk.ErrNotFound becomes NOT_FOUND and
// sdk.ErrInvalidArgument INVALID_ARGUMENT, and a Go caller on the host side
// gets them back with sdk.FromStatus.
type server struct {
	kvcachev1.UnimplementedCacheServer
	cache *Cache
}

var _ kvcachev1.CacheServer = (*server)(nil)

func (s *server) Get(_ context.Context, r *kvcachev1.GetRequest) (*kvcachev1.GetResponse, error) {
	v, err := s.cache.Get(r.GetKey())
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &kvcachev1.GetResponse{Value: v}, nil
}

func (s *server) Put(_ context.Context, r *kvcachev1.PutRequest) (*kvcachev1.PutResponse, error) {
	n, err := s.cache.Put(r.GetKey(), r.GetValue())
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &kvcachev1.PutResponse{Evicted: uint32(n)}, nil
}

func (s *server) Delete(_ context.Context, r *kvcachev1.DeleteRequest) (*kvcachev1.DeleteResponse, error) {
	existed, err := s.cache.Delete(r.GetKey())
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &kvcachev1.DeleteResponse{Existed: existed}, nil
}
