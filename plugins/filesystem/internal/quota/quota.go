package quota

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/datawarehouse/dw/sdk/v6"
)

const (
	// MaxCallers bounds the number of callers whose buckets are kept; the
	// least recently seen one is evicted beyond it.
	MaxCallers = 10_000
	// MinByteBurst is the smallest byte burst, whatever the byte rate.
	MinByteBurst = 64 << 10

	// maxBurst keeps bursts within int on every platform.
	maxBurst = math.MaxInt32

	keyDefault = "limits.quota.default"
	keyCallers = "limits.quota.callers."
)

// Rate is a caller's quota. 0 means unlimited, for each field separately.
type Rate struct {
	BytesPerSecond int64
	OpsPerSecond   float64
}

// Config is the quota configuration.
type Config struct {
	// Default applies to every caller without an override.
	Default Rate
	// Callers overrides Default per caller name (limits.quota.callers.<name>).
	// An override replaces the whole Rate.
	Callers map[string]Rate
	// MaxWait is how long Admit may wait for tokens (limits.max_throttle_wait).
	MaxWait time.Duration
}

// CallerStats are one caller's counters.
type CallerStats struct {
	// Admitted counts admissions.
	Admitted uint64
	// Throttled counts admissions or byte takes that had to wait.
	Throttled uint64
	// Refused counts Admit refusals.
	Refused uint64
	// ThrottledSeconds is the time spent waiting.
	ThrottledSeconds float64
}

// Bucket dimensions.
const (
	dimBytes = iota
	dimOps
	numDims
)

var dimNames = [numDims]string{dimBytes: "bytes", dimOps: "operations"}

func (r Rate) bytesLimited() bool { return r.BytesPerSecond > 0 }

// opsLimited is false for NaN and +Inf as well as for 0.
func (r Rate) opsLimited() bool { return r.OpsPerSecond > 0 && !math.IsInf(r.OpsPerSecond, 1) }

// Unlimited reports whether r limits neither bytes nor operations.
func (r Rate) Unlimited() bool { return !r.bytesLimited() && !r.opsLimited() }

// ByteBurst is the byte bucket's size: one second of rate, at least
// MinByteBurst; 0 when bytes are unlimited.
func (r Rate) ByteBurst() int64 {
	if !r.bytesLimited() {
		return 0
	}
	return min(max(r.BytesPerSecond, MinByteBurst), maxBurst)
}

// OpsBurst is the operation bucket's size: one second of rate, at least 1;
// 0 when operations are unlimited.
func (r Rate) OpsBurst() int {
	if !r.opsLimited() {
		return 0
	}
	return int(min(max(math.Floor(r.OpsPerSecond), 1), maxBurst))
}

// bucket returns the limit and burst of dimension d, ok false if unlimited.
func (r Rate) bucket(d int) (limit rate.Limit, burst int, ok bool) {
	if d == dimBytes {
		if !r.bytesLimited() {
			return 0, 0, false
		}
		return rate.Limit(r.BytesPerSecond), int(r.ByteBurst()), true
	}
	if !r.opsLimited() {
		return 0, 0, false
	}
	return rate.Limit(r.OpsPerSecond), r.OpsBurst(), true
}

// describe renders dimension d of r for messages.
func (r Rate) describe(d int) string {
	if d == dimBytes {
		return fmt.Sprintf("%d bytes/s", r.BytesPerSecond)
	}
	return fmt.Sprintf("%g operations/s", r.OpsPerSecond)
}

// refill is how long an empty bucket of dimension d takes to fill.
func (r Rate) refill(d int) time.Duration {
	limit, burst, ok := r.bucket(d)
	if !ok {
		return 0
	}
	return time.Duration(float64(burst) / float64(limit) * float64(time.Second))
}

// Validate checks cfg and returns an error wrapping sdk.ErrInvalidLimits
// that names the key path. New and Update do not validate: they treat a
// negative or NaN rate as unlimited.
func (c Config) Validate() error {
	if c.MaxWait < 0 {
		return fmt.Errorf("limits.max_throttle_wait: %v is negative; allowed: 0 (refuse at once when over quota) or more: %w",
			c.MaxWait, sdk.ErrInvalidLimits)
	}
	if err := c.Default.validate(keyDefault); err != nil {
		return err
	}
	for name, r := range c.Callers {
		if name == "" {
			return fmt.Errorf("limits.quota.callers: empty caller name; allowed: the name of an auth token, or anonymous: %w",
				sdk.ErrInvalidLimits)
		}
		if err := r.validate(keyCallers + name); err != nil {
			return err
		}
	}
	return nil
}

func (r Rate) validate(key string) error {
	if r.BytesPerSecond < 0 {
		return fmt.Errorf("%s: bytes per second %d is negative; allowed: 0 (unlimited) or a positive rate: %w",
			key, r.BytesPerSecond, sdk.ErrInvalidLimits)
	}
	if r.OpsPerSecond < 0 || math.IsNaN(r.OpsPerSecond) || math.IsInf(r.OpsPerSecond, 0) {
		return fmt.Errorf("%s: operations per second %v is not allowed; allowed: 0 (unlimited) or a positive finite rate: %w",
			key, r.OpsPerSecond, sdk.ErrInvalidLimits)
	}
	return nil
}

// source is where a caller's rate comes from: the default or an override.
type source struct {
	rate    Rate
	keyPath string
	// since holds, per dimension, the instant an Update made it go from
	// unlimited to limited; a bucket created for it starts empty at that
	// instant. Zero: a new bucket starts full.
	since [numDims]time.Time
}

// snapshot is one immutable configuration.
type snapshot struct {
	gen     uint64
	maxWait time.Duration
	def     *source
	// callers holds the overrides, plus names that fell back to the default
	// with a since of their own (they went unlimited -> limited).
	callers map[string]*source
}

func (s *snapshot) source(caller string) *source {
	if src, ok := s.callers[caller]; ok {
		return src
	}
	return s.def
}

// newSnapshot builds the snapshot following old (nil in New) at instant now.
func newSnapshot(old *snapshot, cfg Config, now time.Time) *snapshot {
	s := &snapshot{
		gen:     1,
		maxWait: max(cfg.MaxWait, 0),
		def:     &source{rate: cfg.Default, keyPath: keyDefault},
		callers: make(map[string]*source, len(cfg.Callers)),
	}
	if old != nil {
		s.gen = old.gen + 1
		s.def.since = carrySince(old.def, cfg.Default, now)
	}
	for name, r := range cfg.Callers {
		src := &source{rate: r, keyPath: keyCallers + name}
		if old != nil {
			src.since = carrySince(old.source(name), r, now)
		}
		s.callers[name] = src
	}
	if old == nil {
		return s
	}
	for name, prev := range old.callers {
		if _, ok := cfg.Callers[name]; ok {
			continue
		}
		since := carrySince(prev, cfg.Default, now)
		if !sameSince(since, s.def.since) {
			s.callers[name] = &source{rate: cfg.Default, keyPath: keyDefault, since: since}
		}
	}
	return s
}

// carrySince computes the since of a source that was prev and becomes r.
func carrySince(prev *source, r Rate, now time.Time) [numDims]time.Time {
	var since [numDims]time.Time
	for d := range numDims {
		if _, _, limited := r.bucket(d); !limited {
			continue
		}
		if _, _, wasLimited := prev.rate.bucket(d); !wasLimited {
			since[d] = now
			continue
		}
		// A bucket emptied that long ago would be full by now: forget it.
		if t := prev.since[d]; !t.IsZero() && now.Sub(t) < r.refill(d) {
			since[d] = t
		}
	}
	return since
}

func sameSince(a, b [numDims]time.Time) bool {
	for d := range numDims {
		if !a[d].Equal(b[d]) {
			return false
		}
	}
	return true
}

// entry holds one limited caller's buckets and counters.
type entry struct {
	name string

	mu  sync.Mutex
	gen uint64                 // snapshot the buckets are tuned to
	lim [numDims]*rate.Limiter // nil: unlimited

	admitted, throttled, refused atomic.Uint64
	throttledNanos               atomic.Int64
}

// Quotas holds the per-caller buckets. It is safe for concurrent use.
type Quotas struct {
	snap     atomic.Pointer[snapshot]
	updateMu sync.Mutex // serialises Update
	cache    *lru.Cache[string, *entry]
	// hotEviction is the UnixNano of the latest eviction of a bucket that
	// was not full (0: none); new buckets start empty at that instant.
	hotEviction atomic.Int64

	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// New returns quotas applying cfg.
func New(cfg Config) *Quotas {
	return newQuotas(cfg, MaxCallers, time.Now, sleepContext)
}

func newQuotas(cfg Config, maxCallers int, now func() time.Time, sleep func(context.Context, time.Duration) error) *Quotas {
	q := &Quotas{now: now, sleep: sleep}
	cache, err := lru.NewWithEvict(maxCallers, q.evicted)
	if err != nil {
		panic(fmt.Sprintf("quota: lru of %d callers: %v", maxCallers, err)) // only for a size < 1
	}
	q.cache = cache
	q.snap.Store(newSnapshot(nil, cfg, now()))
	return q
}

// Update applies cfg live. Known buckets are retuned at this instant with
// SetLimitAt and SetBurstAt, keeping spent tokens spent and capping tokens
// to the new burst; a caller going from unlimited to limited starts with an
// empty bucket; going to unlimited drops the bucket. See the package
// documentation.
func (q *Quotas) Update(cfg Config) {
	q.updateMu.Lock()
	defer q.updateMu.Unlock()
	now := q.now()
	s := newSnapshot(q.snap.Load(), cfg, now)
	q.snap.Store(s)
	// Admit retunes an entry whose generation is behind under the entry's
	// lock, so an entry created concurrently is caught either here or there.
	for _, e := range q.cache.Values() {
		e.mu.Lock()
		if e.gen != s.gen {
			q.tune(e, s, now)
		}
		e.mu.Unlock()
	}
}

// Stats returns a copy of the counters of every tracked (limited) caller.
func (q *Quotas) Stats() map[string]CallerStats {
	entries := q.cache.Values()
	out := make(map[string]CallerStats, len(entries))
	for _, e := range entries {
		out[e.name] = CallerStats{
			Admitted:         e.admitted.Load(),
			Throttled:        e.throttled.Load(),
			Refused:          e.refused.Load(),
			ThrottledSeconds: time.Duration(e.throttledNanos.Load()).Seconds(),
		}
	}
	return out
}

// entry returns caller's entry, adding an untuned one if there is none.
func (q *Quotas) entry(caller string) *entry {
	if e, ok := q.cache.Get(caller); ok {
		return e
	}
	e := &entry{name: caller}
	if prev, ok, _ := q.cache.PeekOrAdd(caller, e); ok {
		return prev
	}
	return e
}

// buckets returns caller's entry, the snapshot its buckets are tuned to,
// and the buckets (nil where unlimited).
func (q *Quotas) buckets(caller string, now time.Time) (*entry, *snapshot, [numDims]*rate.Limiter) {
	e := q.entry(caller)
	e.mu.Lock()
	s := q.snap.Load()
	if e.gen != s.gen {
		q.tune(e, s, now)
	}
	lims := e.lim
	e.mu.Unlock()
	return e, s, lims
}

// tune sets e's buckets to snapshot s at instant now. e.mu must be held.
func (q *Quotas) tune(e *entry, s *snapshot, now time.Time) {
	src := s.source(e.name)
	for d := range numDims {
		limit, burst, ok := src.rate.bucket(d)
		switch {
		case !ok:
			e.lim[d] = nil
		case e.lim[d] == nil:
			e.lim[d] = q.newBucket(limit, burst, src.since[d])
		default:
			// SetLimitAt first: tokens accrue at the old rate up to now.
			e.lim[d].SetLimitAt(now, limit)
			e.lim[d].SetBurstAt(now, burst)
		}
	}
	e.gen = s.gen
}

// newBucket makes a bucket that is full unless since or a recent hot
// eviction says it must start empty at that instant.
func (q *Quotas) newBucket(limit rate.Limit, burst int, since time.Time) *rate.Limiter {
	lim := rate.NewLimiter(limit, burst)
	emptyAt := since
	if ns := q.hotEviction.Load(); ns != 0 {
		if t := time.Unix(0, ns); t.After(emptyAt) {
			emptyAt = t
		}
	}
	if !emptyAt.IsZero() {
		lim.AllowN(emptyAt, burst) // takes the whole burst at emptyAt
	}
	return lim
}

// evicted is the LRU's eviction callback (called outside the cache's lock).
func (q *Quotas) evicted(_ string, e *entry) {
	now := q.now()
	e.mu.Lock()
	lims := e.lim
	e.mu.Unlock()
	for _, lim := range lims {
		if lim != nil && lim.TokensAt(now) < float64(lim.Burst()) {
			q.markHotEviction(now)
			return
		}
	}
}

func (q *Quotas) markHotEviction(t time.Time) {
	ns := t.UnixNano()
	for {
		old := q.hotEviction.Load()
		if old >= ns || q.hotEviction.CompareAndSwap(old, ns) {
			return
		}
	}
}
