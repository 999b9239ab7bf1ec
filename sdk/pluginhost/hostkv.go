package pluginhost

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"

	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// kvServer is the host side of HostKV: it serves one KV (bound by the host
// to one plugin's key space) to one plugin.
type kvServer struct {
	dwv1.UnimplementedHostKVServer
	kv sdk.KV
}

// RegisterHostKV serves kv as the HostKV service on s, a server made with
// ServerOptions (which turn its errors into gRPC statuses). The host calls
// it with a store bound to one plugin's key space, on a server only that
// plugin reaches, so that no plugin can name another's keys.
func RegisterHostKV(s *grpc.Server, kv sdk.KV) {
	dwv1.RegisterHostKVServer(s, &kvServer{kv: kv})
}

func (s *kvServer) Put(ctx context.Context, r *dwv1.KVPutRequest) (*dwv1.KVPutResponse, error) {
	if err := sdk.ValidateKVKey(r.GetKey()); err != nil {
		return nil, err
	}
	if len(r.GetValue()) > sdk.MaxKVValueBytes {
		return nil, fmt.Errorf("kv put %q: %w: value is %d bytes, at most %d allowed", r.GetKey(), sdk.ErrInvalidArgument, len(r.GetValue()), sdk.MaxKVValueBytes)
	}
	if err := s.kv.Put(ctx, r.GetKey(), r.GetValue()); err != nil {
		return nil, err
	}
	return &dwv1.KVPutResponse{}, nil
}

func (s *kvServer) Get(ctx context.Context, r *dwv1.KVGetRequest) (*dwv1.KVGetResponse, error) {
	if err := sdk.ValidateKVKey(r.GetKey()); err != nil {
		return nil, err
	}
	v, err := s.kv.Get(ctx, r.GetKey())
	if err != nil {
		return nil, err
	}
	return &dwv1.KVGetResponse{Value: v}, nil
}

func (s *kvServer) Delete(ctx context.Context, r *dwv1.KVDeleteRequest) (*dwv1.KVDeleteResponse, error) {
	if err := sdk.ValidateKVKey(r.GetKey()); err != nil {
		return nil, err
	}
	if err := s.kv.Delete(ctx, r.GetKey()); err != nil {
		return nil, err
	}
	return &dwv1.KVDeleteResponse{}, nil
}

func (s *kvServer) List(r *dwv1.KVListRequest, stream dwv1.HostKV_ListServer) error {
	var n uint32
	errLimit := errors.New("limit reached")
	err := s.kv.List(stream.Context(), r.GetPrefix(), func(key string, value []byte) error {
		if r.GetStartAfter() != "" && key <= r.GetStartAfter() {
			return nil
		}
		if r.GetLimit() > 0 && n >= r.GetLimit() {
			return errLimit
		}
		n++
		return stream.Send(&dwv1.KVEntry{Key: key, Value: value})
	})
	if err != nil && !errors.Is(err, errLimit) {
		return err
	}
	return nil
}
