package cache

import (
	"context"

	"google.golang.org/grpc"

	kvcachev1 "github.com/datawarehouse/dw/examples/kvcache/proto/dw/kvcache/v1"
)

// RegisterGRPC serves the dw.kvcache.v1.Cache service on the plugin
// connection; sdk.Serve calls it.
func (c *Cache) RegisterGRPC(s *grpc.Server) {
	kvcachev1.RegisterCacheServer(s, &server{cache: c})
}

// server adapts Cache to the generated gRPC server. Its errors are the
// cache's own, wrapping sdk sentinels: the SDK's interceptors turn
// sdk.ErrNotFound into NOT_FOUND and sdk.ErrInvalidArgument into
// INVALID_ARGUMENT, and the host gets the sentinels back for errors.Is.
type server struct {
	kvcachev1.UnimplementedCacheServer
	cache *Cache
}

var _ kvcachev1.CacheServer = (*server)(nil)

func (s *server) Get(_ context.Context, r *kvcachev1.GetRequest) (*kvcachev1.GetResponse, error) {
	v, err := s.cache.Get(r.GetKey())
	if err != nil {
		return nil, err
	}
	return &kvcachev1.GetResponse{Value: v}, nil
}

func (s *server) Put(_ context.Context, r *kvcachev1.PutRequest) (*kvcachev1.PutResponse, error) {
	n, err := s.cache.Put(r.GetKey(), r.GetValue())
	if err != nil {
		return nil, err
	}
	return &kvcachev1.PutResponse{Evicted: uint32(n)}, nil
}

func (s *server) Delete(_ context.Context, r *kvcachev1.DeleteRequest) (*kvcachev1.DeleteResponse, error) {
	existed, err := s.cache.Delete(r.GetKey())
	if err != nil {
		return nil, err
	}
	return &kvcachev1.DeleteResponse{Existed: existed}, nil
}
