package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"

	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// Bounds of the host key-value store.
const (
	// MaxKVKeyBytes is the longest key.
	MaxKVKeyBytes = 1024
	// MaxKVValueBytes is the largest value. The store keeps state (job
	// checkpoints, cursors), not data.
	MaxKVValueBytes = 1 << 20
)

// ValidateKVKey checks a host KV key: 1 to MaxKVKeyBytes bytes of UTF-8
// without NUL.
func ValidateKVKey(key string) error { return validateKey("kv key", key, MaxKVKeyBytes) }

func validateKVValue(key string, v []byte) error {
	if len(v) > MaxKVValueBytes {
		return fmt.Errorf("kv put %q: %w: value is %d bytes, at most %d allowed", key, ErrInvalidArgument, len(v), MaxKVValueBytes)
	}
	return nil
}

// kvClient is the plugin side of HostKV. Its connection converts every
// error with FromStatus (see clientOptions), so errors.Is works on them.
type kvClient struct {
	rpc dwv1.HostKVClient
}

var _ KV = (*kvClient)(nil)

func newKVClient(conn *grpc.ClientConn) *kvClient {
	return &kvClient{rpc: dwv1.NewHostKVClient(conn)}
}

func (c *kvClient) Put(ctx context.Context, key string, value []byte) error {
	if err := ValidateKVKey(key); err != nil {
		return err
	}
	if err := validateKVValue(key, value); err != nil {
		return err
	}
	if _, err := c.rpc.Put(ctx, &dwv1.KVPutRequest{Key: key, Value: value}); err != nil {
		return fmt.Errorf("kv put %q: %w", key, err)
	}
	return nil
}

func (c *kvClient) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ValidateKVKey(key); err != nil {
		return nil, err
	}
	r, err := c.rpc.Get(ctx, &dwv1.KVGetRequest{Key: key})
	if err != nil {
		return nil, fmt.Errorf("kv get %q: %w", key, err)
	}
	return r.GetValue(), nil
}

func (c *kvClient) Delete(ctx context.Context, key string) error {
	if err := ValidateKVKey(key); err != nil {
		return err
	}
	if _, err := c.rpc.Delete(ctx, &dwv1.KVDeleteRequest{Key: key}); err != nil {
		return fmt.Errorf("kv delete %q: %w", key, err)
	}
	return nil
}

func (c *kvClient) List(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.List(ctx, &dwv1.KVListRequest{Prefix: prefix})
	if err != nil {
		return fmt.Errorf("kv list %q: %w", prefix, err)
	}
	for {
		e, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("kv list %q: %w", prefix, err)
		}
		if err := fn(e.GetKey(), e.GetValue()); err != nil {
			return err
		}
	}
}
