package cache

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/datawarehouse/dw/sdk/v6"
)

// Version is the plugin's own version, reported in GetInfo.
const Version = "0.1.0"

// MaxKeyBytes is the longest key the cache accepts.
const MaxKeyBytes = 1024

// elevatedPercent is the fill level, of either bound, from which
// backpressure is elevated.
const elevatedPercent = 90

// Limits are the kvcache limits. The SDK decodes the host's limits onto
// DefaultLimits, enforcing the min tags, so ApplyLimits only ever sees
// valid ones.
type Limits struct {
	// MaxEntries is the most entries kept.
	MaxEntries int `dw:"max_entries" min:"1" doc:"most entries kept; the least recently used go first"`
	// MaxBytes is the most bytes kept, counting len(key) + len(value) of
	// every entry.
	MaxBytes sdk.Size `dw:"max_bytes" min:"1KiB" doc:"most bytes kept, counting every key and value"`
}

// DefaultLimits are the limits in force when none are configured.
func DefaultLimits() Limits {
	return Limits{MaxEntries: 10000, MaxBytes: 64 * sdk.MiB}
}

// Settings are kvcache's start-time settings: there are none, and
// Configure rejects any key (a typo in the config file is an error, not a
// silent no-op).
type Settings struct{}

// DefaultSettings declares the settings (sdk.SettingsDeclarer): none, so
// that the host refuses any key before starting the plugin, too.
func (c *Cache) DefaultSettings() any { return Settings{} }

// Cache is an LRU cache of byte values under string keys, bounded by
// Limits. It is safe for concurrent use.
type Cache struct {
	mu       sync.Mutex
	lru      *simplelru.LRU[string, []byte]
	limits   Limits
	bytes    int64
	removing bool // set while Delete removes an entry, so it is no eviction
	logger   hclog.Logger

	evictions, hits, misses uint64
}

var (
	_ sdk.Subsystem[Limits] = (*Cache)(nil)
	_ sdk.GRPCRegistrar     = (*Cache)(nil)
	_ sdk.Shutdowner        = (*Cache)(nil)
	_ sdk.SettingsDeclarer  = (*Cache)(nil)
)

// New returns an empty cache with the default limits in force.
func New() *Cache {
	c := &Cache{limits: DefaultLimits(), logger: hclog.NewNullLogger()}
	lru, err := simplelru.NewLRU(c.limits.MaxEntries, c.onEvict)
	if err != nil {
		// Only a size < 1 fails, and the default is not.
		panic(fmt.Sprintf("kvcache: new lru: %v", err))
	}
	c.lru = lru
	return c
}

func entrySize(key string, value []byte) int64 { return int64(len(key) + len(value)) }

// onEvict runs, under c.mu, for every entry that leaves the LRU.
func (c *Cache) onEvict(key string, value []byte) {
	c.bytes -= entrySize(key, value)
	if !c.removing {
		c.evictions++
	}
}

// ValidateKey checks a key: 1 to MaxKeyBytes bytes.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyBytes {
		return fmt.Errorf("key: %w: must be 1 to %d bytes, got %d", sdk.ErrInvalidArgument, MaxKeyBytes, len(key))
	}
	return nil
}

// Get returns a copy of the value at key and marks the entry as recently
// used. A missing key is an error wrapping sdk.ErrNotFound.
func (c *Cache) Get(key string) ([]byte, error) {
	if err := ValidateKey(key); err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.lru.Get(key)
	if !ok {
		c.misses++
		return nil, fmt.Errorf("get %q: %w", key, sdk.ErrNotFound)
	}
	c.hits++
	return append([]byte(nil), v...), nil
}

// Put stores a copy of value at key, replacing any previous value, and
// first evicts the least recently used other entries until the new entry
// fits both limits. It returns how many entries it evicted. An entry larger
// than max_bytes on its own is an error wrapping sdk.ErrInvalidArgument.
func (c *Cache) Put(key string, value []byte) (evicted int, err error) {
	if err := ValidateKey(key); err != nil {
		return 0, fmt.Errorf("put: %w", err)
	}
	size := entrySize(key, value)
	value = append([]byte(nil), value...)

	c.mu.Lock()
	defer c.mu.Unlock()
	if size > int64(c.limits.MaxBytes) {
		return 0, fmt.Errorf("put %q: %w: the entry is %d bytes (key %d + value %d), more than limits.max_bytes = %s; store smaller values or raise max_bytes",
			key, sdk.ErrInvalidArgument, size, len(key), len(value), c.limits.MaxBytes)
	}
	// The old value of key neither counts against the bounds nor is
	// evicted: it is replaced.
	c.remove(key)
	before := c.evictions
	for c.lru.Len() >= c.limits.MaxEntries || c.bytes+size > int64(c.limits.MaxBytes) {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
	}
	c.lru.Add(key, value)
	c.bytes += size
	return int(c.evictions - before), nil
}

// Delete removes key and tells whether it was there.
func (c *Cache) Delete(key string) (existed bool, err error) {
	if err := ValidateKey(key); err != nil {
		return false, fmt.Errorf("delete: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remove(key), nil
}

// remove deletes key without counting an eviction. c.mu must be held.
func (c *Cache) remove(key string) bool {
	c.removing = true
	defer func() { c.removing = false }()
	return c.lru.Remove(key)
}

// Len returns the number of entries and the bytes they hold.
func (c *Cache) Len() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.bytes
}

// Info says who the plugin is.
func (c *Cache) Info() sdk.Info {
	return sdk.Info{Name: "kvcache", Version: Version, Capabilities: []string{"lru"}}
}

// Configure checks that there are no settings and keeps the host's logger.
func (c *Cache) Configure(_ context.Context, cfg sdk.Config) error {
	if err := cfg.DecodeSettings(&Settings{}); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cfg.Logger != nil {
		c.logger = cfg.Logger
	}
	return nil
}

// DefaultLimits returns the limits in force when none are configured.
func (c *Cache) DefaultLimits() Limits { return DefaultLimits() }

// ApplyLimits puts limits in force at once: when a bound shrinks, the least
// recently used entries are evicted until both hold. Applying the limits in
// force changes nothing.
func (c *Cache) ApplyLimits(_ context.Context, l Limits) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.evictions
	c.lru.Resize(l.MaxEntries)
	for c.bytes > int64(l.MaxBytes) {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
	}
	if n := c.evictions - before; n > 0 {
		c.logger.Info("limits lowered; evicted entries", "evicted", n, "max_entries", l.MaxEntries, "max_bytes", l.MaxBytes.String())
	}
	c.limits = l
	return nil
}

// Metrics reports the fill level and the hit and eviction counters.
// Backpressure is elevated from 90 % of either bound.
func (c *Cache) Metrics(context.Context) (sdk.Metrics, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	entries, l := c.lru.Len(), c.limits
	m := sdk.Metrics{Values: []sdk.Metric{
		sdk.Gauge("entries", "Entries in the cache.", float64(entries)),
		sdk.Gauge("bytes", "Bytes held by the cache (keys and values).", float64(c.bytes)),
		sdk.Counter("evictions", "Entries evicted to respect max_entries or max_bytes.", float64(c.evictions)),
		sdk.Counter("hits", "Gets that found their key.", float64(c.hits)),
		sdk.Counter("misses", "Gets that did not find their key.", float64(c.misses)),
	}}
	switch {
	case entries*100 >= l.MaxEntries*elevatedPercent:
		m.Backpressure = sdk.BackpressureElevated
		m.Reason = fmt.Sprintf("%d entries of max_entries %d: further puts evict", entries, l.MaxEntries)
	case c.bytes*100 >= int64(l.MaxBytes)*elevatedPercent:
		m.Backpressure = sdk.BackpressureElevated
		m.Reason = fmt.Sprintf("%d bytes of max_bytes %s: further puts evict", c.bytes, l.MaxBytes)
	}
	return m, nil
}

// Health is always serving: an in-memory cache has nothing that can fail.
func (c *Cache) Health(context.Context) sdk.Health {
	entries, bytes := c.Len()
	return sdk.Health{Status: sdk.HealthServing, Message: fmt.Sprintf("%d entries, %d bytes", entries, bytes)}
}

// Shutdown drops the entries; the cache is not persistent.
func (c *Cache) Shutdown(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.lru.Len()
	c.removing = true
	c.lru.Purge()
	c.removing = false
	c.logger.Info("shutting down; dropped the cache", "entries", n)
	return nil
}
