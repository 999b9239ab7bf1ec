package objectstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/datawarehouse/dw/plugins/dbstorage/internal/buffer"
	"github.com/datawarehouse/dw/plugins/dbstorage/internal/pagetoken"
	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store"
	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store/postgres"
	"github.com/datawarehouse/dw/plugins/dbstorage/internal/store/sqlite"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// Version is the plugin's own version, reported in GetInfo.
const Version = "0.1.0"

// Garbage collection (see the package doc, Memory): the data path makes a
// megabyte of garbage per chunk, so the collector should run less often
// than Go's default (GOGC 400 instead of 100) under a soft memory limit.
// These are process-wide settings: the plugin's main applies them with
// TuneGC, before serving.
const (
	gcPercent   = 400
	memoryLimit = 48 << 20
)

// TuneGC sets the collector for the dbstorage process: GOGC 400 under a
// soft memory limit of 48 MiB. GOGC and GOMEMLIMIT in the environment win.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}

// tokenSecretKey is where the page token secret lives in the host KV.
const tokenSecretKey = "dw://internal/dbstorage/page-token-secret"

// Service is the dbstorage subsystem: it owns the strategies, checks their
// health, and serves dw.sdk.v1.ObjectStore.
type Service struct {
	dwv1.UnimplementedObjectStoreServer

	logger hclog.Logger
	limits atomic.Pointer[Limits]
	budget *buffer.Budget
	tokens *pagetoken.Codec

	strategies   map[string]*strategy
	order        []string // strategy names in settings order
	defaultName  string
	healthKick   chan struct{} // asks the health loop to check now
	intervalSet  chan struct{} // health_interval changed
	health       *healthChecker
	stop         context.CancelFunc
	loopDone     chan struct{}
	shutdownOnce sync.Once

	stats stats
}

var (
	_ sdk.Subsystem[Limits]  = (*Service)(nil)
	_ sdk.GRPCRegistrar      = (*Service)(nil)
	_ sdk.Shutdowner         = (*Service)(nil)
	_ dwv1.ObjectStoreServer = (*Service)(nil)
)

// strategy is one configured strategy and its last health.
type strategy struct {
	name      string
	driver    string
	chunkSize int64
	store     store.Strategy
	health    atomic.Pointer[strategyHealth]
	latency   *requestLatency // of the requests that named it
}

// strategyHealth is the result of a strategy's last check.
type strategyHealth struct {
	ok        bool
	message   string
	checkedAt time.Time
	took      time.Duration
	// writesFailing: the strategy answers (ok) but its volume is too full
	// to write (store.Space); it is reported degraded and keeps serving.
	writesFailing bool
}

// New returns an unconfigured Service.
func New() *Service {
	s := &Service{
		logger:      hclog.NewNullLogger(),
		budget:      buffer.NewBudget(int64(DefaultLimits().MaxBufferBytes)),
		healthKick:  make(chan struct{}, 1),
		intervalSet: make(chan struct{}, 1),
		strategies:  map[string]*strategy{},
	}
	l := DefaultLimits()
	s.limits.Store(&l)
	s.health = &healthChecker{s: s}
	s.stats.unrouted = newRequestLatency()
	return s
}

// Info says who the plugin is.
func (s *Service) Info() sdk.Info {
	return sdk.Info{Name: "dbstorage", Version: Version, Capabilities: []string{"objectstore", "sqlite", "postgres"}}
}

// DefaultLimits returns DESIGN.md's limits.
func (s *Service) DefaultLimits() Limits { return DefaultLimits() }

// Configure decodes the settings, opens every strategy, loads the page
// token secret and starts the health loop. A SQLite file that cannot be
// opened fails Configure; a PostgreSQL server that cannot be reached does
// not (its strategy is reported unhealthy until it answers).
func (s *Service) Configure(ctx context.Context, cfg sdk.Config) error {
	if cfg.Logger != nil {
		s.logger = cfg.Logger
	}
	settings, resolvedStrategies, err := parseSettings(cfg)
	if err != nil {
		return err
	}
	secret, err := loadSecret(ctx, cfg.KV)
	if err != nil {
		return fmt.Errorf("page token secret: %w", err)
	}
	if s.tokens, err = pagetoken.New(secret); err != nil {
		return err
	}
	for _, r := range resolvedStrategies {
		st, err := openStrategy(ctx, r, s.logger.Named(r.Name))
		if err != nil {
			s.closeStrategies()
			return fmt.Errorf("open strategy %q (%s): %w", r.Name, r.Driver, err)
		}
		s.strategies[r.Name] = &strategy{name: r.Name, driver: r.Driver, chunkSize: int64(r.ChunkSize), store: st, latency: newRequestLatency()}
		s.order = append(s.order, r.Name)
		s.logger.Info("strategy opened", "strategy", r.Name, "driver", r.Driver)
	}
	s.defaultName = settings.DefaultStrategy

	loopCtx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.loopDone = make(chan struct{})
	go s.healthLoop(loopCtx)
	return nil
}

func openStrategy(ctx context.Context, r resolved, logger hclog.Logger) (store.Strategy, error) {
	switch r.Driver {
	case "sqlite":
		return sqlite.Open(ctx, sqlite.Config{Name: r.Name, Path: r.dsn, ChunkSize: int(r.ChunkSize), Logger: logger})
	case "postgres":
		return postgres.Open(ctx, postgres.Config{Name: r.Name, DSN: r.dsn, ChunkSize: int(r.ChunkSize), Logger: logger})
	}
	return nil, fmt.Errorf("%w: unknown driver %q (sqlite or postgres)", sdk.ErrInvalidSettings, r.Driver)
}

// loadSecret returns the page token secret kept in the host KV, making one
// on first use. Without a KV (some tests) the secret lives as long as the
// process, so tokens do not survive a restart.
func loadSecret(ctx context.Context, kv sdk.KV) ([]byte, error) {
	if kv != nil {
		b, err := kv.Get(ctx, tokenSecretKey)
		if err == nil && len(b) == pagetoken.SecretSize {
			return b, nil
		}
		if err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return nil, fmt.Errorf("read %s: %w", tokenSecretKey, err)
		}
	}
	secret := make([]byte, pagetoken.SecretSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	if kv != nil {
		if err := kv.Put(ctx, tokenSecretKey, secret); err != nil {
			return nil, fmt.Errorf("store %s: %w", tokenSecretKey, err)
		}
	}
	return secret, nil
}

// ApplyLimits puts limits in force at once: the buffer is resized (never
// taking back reservations), the health loop picks up a new interval and
// the next check the new timeout; page sizes apply to the next request.
func (s *Service) ApplyLimits(_ context.Context, l Limits) error {
	if err := l.check(); err != nil {
		return err
	}
	old := s.limits.Swap(&l)
	s.budget.SetCapacity(int64(l.MaxBufferBytes))

	if old.HealthInterval != l.HealthInterval {
		select {
		case s.intervalSet <- struct{}{}:
		default:
		}
	}
	return nil
}

func (s *Service) currentLimits() Limits { return *s.limits.Load() }

// RegisterGRPC serves dw.sdk.v1.ObjectStore on the plugin connection.
func (s *Service) RegisterGRPC(g *grpc.Server) { dwv1.RegisterObjectStoreServer(g, s) }

// Shutdown stops the health loop and closes every strategy.
func (s *Service) Shutdown(context.Context) error {
	var err error
	s.shutdownOnce.Do(func() {
		if s.stop != nil {
			s.stop()
			<-s.loopDone
		}
		s.health.wait()
		err = s.closeStrategies()
	})
	return err
}

func (s *Service) closeStrategies() error {
	var errs []error
	for _, name := range s.order {
		if err := s.strategies[name].store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close strategy %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// pick returns the strategy a request names (empty: the default). An
// unknown name wraps sdk.ErrInvalidArgument; an unhealthy strategy
// sdk.ErrUnavailable.
func (s *Service) pick(name string) (*strategy, error) {
	if name == "" {
		name = s.defaultName
	}
	st, ok := s.strategies[name]
	if !ok {
		names := append([]string(nil), s.order...)
		sort.Strings(names)
		return nil, fmt.Errorf("%w: unknown strategy %q; configured strategies: %s", sdk.ErrInvalidArgument, name, strings.Join(names, ", "))
	}
	if h := st.health.Load(); h != nil && !h.ok {
		s.kickHealth() // recover as soon as it answers again
		return nil, fmt.Errorf("%w: strategy %q is unhealthy since its check at %s: %s",
			sdk.ErrUnavailable, name, h.checkedAt.UTC().Format(time.RFC3339), h.message)
	}
	return st, nil
}

// noteError asks for a health check now when an operation found the
// strategy unreachable, so that the next requests fail fast.
func (s *Service) noteError(err error) {
	if errors.Is(err, sdk.ErrUnavailable) {
		s.kickHealth()
	}
}

// kickHealth asks the health loop for a check now; the loop spaces such
// checks by minKickSpacing.
func (s *Service) kickHealth() {
	select {
	case s.healthKick <- struct{}{}:
	default:
	}
}
