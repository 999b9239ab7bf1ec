package sdktest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/datawarehouse/dw/sdk/v6"
)

// MemKV is an in-memory sdk.KV with the host store's rules (key and value
// bounds, sdk.ErrNotFound, List in key order), for the harness and for unit
// tests of a plugin's Configure. It is safe for concurrent use. Unlike the
// host's store it keeps nothing across processes.
type MemKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

var _ sdk.KV = (*MemKV)(nil)

// NewMemKV returns an empty store.
func NewMemKV() *MemKV { return &MemKV{m: map[string][]byte{}} }

// Put stores a copy of value at key.
func (s *MemKV) Put(_ context.Context, key string, value []byte) error {
	if err := sdk.ValidateKVKey(key); err != nil {
		return fmt.Errorf("kv put: %w", err)
	}
	if len(value) > sdk.MaxKVValueBytes {
		return fmt.Errorf("kv put %q: %w: value is %d bytes, at most %d allowed", key, sdk.ErrInvalidArgument, len(value), sdk.MaxKVValueBytes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = append([]byte{}, value...)
	return nil
}

// Get returns a copy of the value at key, or an error wrapping
// sdk.ErrNotFound.
func (s *MemKV) Get(_ context.Context, key string) ([]byte, error) {
	if err := sdk.ValidateKVKey(key); err != nil {
		return nil, fmt.Errorf("kv get: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return nil, fmt.Errorf("kv get %q: %w", key, sdk.ErrNotFound)
	}
	return append([]byte{}, v...), nil
}

// Delete removes key; a missing key is not an error.
func (s *MemKV) Delete(_ context.Context, key string) error {
	if err := sdk.ValidateKVKey(key); err != nil {
		return fmt.Errorf("kv delete: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// List calls fn for every key with the prefix, in key order, on a snapshot
// taken at the call; fn may use the store.
func (s *MemKV) List(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	s.mu.Lock()
	keys := make([]string, 0, len(s.m))
	for k := range s.m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	values := make(map[string][]byte, len(keys))
	for _, k := range keys {
		values[k] = append([]byte{}, s.m[k]...)
	}
	s.mu.Unlock()
	slices.Sort(keys)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(k, values[k]); err != nil {
			return err
		}
	}
	return nil
}
