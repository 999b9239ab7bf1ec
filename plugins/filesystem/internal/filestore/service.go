package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/datawarehouse/dw/plugins/filesystem/internal/device"
	"github.com/datawarehouse/dw/plugins/filesystem/internal/probe"
	"github.com/datawarehouse/dw/plugins/filesystem/internal/quota"
	"github.com/datawarehouse/dw/plugins/filesystem/internal/scheduler"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// Version is the plugin's own version, reported in GetInfo.
const Version = "0.1.0"

// stagingDir is the folder under the root where uploads are written before
// they are renamed into place. It is reserved: no request may name it, and
// listings of the root do not show it. Whatever is left in it when the
// plugin starts is the debris of uploads a crash interrupted, and is
// removed.
const stagingDir = ".dw-staging"

// Service is the filesystem subsystem: it owns the root, the I/O queue, the
// quotas and the capability probes, and serves dw.sdk.v1.FileStore.
type Service struct {
	dwv1.UnimplementedFileStoreServer

	logger hclog.Logger
	limits atomic.Pointer[Limits]

	// probes replaces the real capability probes (tests).
	probes probe.Funcs

	mu         sync.Mutex // Configure, ApplyLimits and Shutdown
	configured atomic.Bool
	rootDir    string
	root       *os.Root
	dev        device.Detection
	sched      *scheduler.Queue
	quotas     atomic.Pointer[quota.Quotas]
	admitted   atomic.Bool // a request has been admitted since Configure
	detector   *probe.Detector
	path       atomic.Pointer[ioPath]
	bufs       *bufferPool
	shutdown   bool

	stats   stats
	latency *requestLatency
}

var (
	_ sdk.Subsystem[Limits] = (*Service)(nil)
	_ sdk.GRPCRegistrar     = (*Service)(nil)
	_ sdk.Shutdowner        = (*Service)(nil)
	_ dwv1.FileStoreServer  = (*Service)(nil)
)

// Option changes a Service made by New.
type Option func(*Service)

// WithProbes replaces the capability probes; tests use it to change what
// the kernel appears to offer while the plugin runs.
func WithProbes(f probe.Funcs) Option { return func(s *Service) { s.probes = f } }

// New returns an unconfigured Service.
func New(opts ...Option) *Service {
	s := &Service{logger: hclog.NewNullLogger(), bufs: newBufferPool(maxBuffers), latency: newRequestLatency()}
	l := DefaultLimits()
	s.limits.Store(&l)
	for _, o := range opts {
		o(s)
	}
	return s
}

// Info says who the plugin is.
func (s *Service) Info() sdk.Info {
	return sdk.Info{Name: "filesystem", Version: Version, Capabilities: []string{"filestore", "priority-queue", "quota", "direct-io"}}
}

// DefaultLimits returns DESIGN.md's limits.
func (s *Service) DefaultLimits() Limits { return DefaultLimits() }

// RegisterGRPC serves the FileStore on the plugin's connection.
func (s *Service) RegisterGRPC(g *grpc.Server) { dwv1.RegisterFileStoreServer(g, s) }

// Configure decodes the settings, opens (and creates) the root, clears the
// staging folder of interrupted uploads, decides the device class and
// starts the capability probes.
func (s *Service) Configure(ctx context.Context, cfg sdk.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.configured.Load() {
		return fmt.Errorf("configure: %w: already configured (a settings change restarts the plugin)", sdk.ErrFailedPrecondition)
	}
	if cfg.Logger != nil {
		s.logger = cfg.Logger
	}
	settings := defaultSettings()
	if err := cfg.DecodeSettings(&settings); err != nil {
		return err
	}
	if settings.Root == "" {
		return fmt.Errorf("%w: subsystems.%s.root: is empty; name the folder files live under (relative to data_dir or absolute)", sdk.ErrInvalidSettings, cfg.Subsystem)
	}
	override, isOverride, err := device.FromSetting(settings.DeviceClass)
	if err != nil {
		return fmt.Errorf("%w: %w", sdk.ErrInvalidSettings, err)
	}
	rootDir, err := filepath.Abs(cfg.ResolvePath(settings.Root))
	if err != nil {
		return fmt.Errorf("root %q: %w", settings.Root, err)
	}
	if err := os.MkdirAll(rootDir, 0o755); err != nil {
		return fmt.Errorf("create root: %w", err)
	}
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return fmt.Errorf("open root: %w", err)
	}
	removed, err := resetStaging(root)
	if err != nil {
		root.Close()
		return fmt.Errorf("staging folder %s: %w", filepath.Join(rootDir, stagingDir), err)
	}
	if removed > 0 {
		s.logger.Warn("removed uploads interrupted by a crash", "count", removed, "folder", filepath.Join(rootDir, stagingDir))
	}

	dev := override
	if !isOverride {
		if dev, err = device.Detect(rootDir); err != nil {
			root.Close()
			return fmt.Errorf("device class of %s: %w", rootDir, err)
		}
	}
	l := *s.limits.Load()
	s.rootDir, s.root, s.dev = rootDir, root, dev
	s.sched = scheduler.New(l.MaxQueueDepth, l.QueueDepth.For(dev.Class))
	s.sched.SetBackground(backgroundAnticipation, backgroundTrickle)
	s.quotas.Store(quota.New(l.quotaConfig()))
	// The O_DIRECT probe runs in the staging folder: the root's file
	// system, out of sight of listings.
	s.detector = probe.NewDetector(filepath.Join(rootDir, stagingDir), l.RedetectInterval, s.probes, s.probeChanged)
	s.detector.Start()
	s.setPath(s.detector.Current(), "start")
	s.logger.Info("filesystem ready", "root", rootDir, "device_class", dev.Class, "device", dev.Device,
		"class_source", dev.Source, "class_reason", dev.Reason, "io_path", s.path.Load().name)
	s.configured.Store(true)
	return nil
}

// resetStaging creates the staging folder, or empties it of what a crash
// left, and returns how many entries it removed.
func resetStaging(root *os.Root) (int, error) {
	if err := root.Mkdir(stagingDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return 0, err
	}
	fi, err := root.Lstat(stagingDir)
	if err != nil {
		return 0, err
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("%s exists and is not a folder; move it away", stagingDir)
	}
	d, err := root.Open(stagingDir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	removed := 0
	for {
		names, err := d.Readdirnames(256)
		for _, n := range names {
			if err := root.RemoveAll(stagingDir + "/" + n); err != nil {
				return removed, err
			}
			removed++
		}
		if err != nil {
			break // io.EOF, or an error the next start retries
		}
	}
	return removed, nil
}

// ApplyLimits applies the limits live: the queue bound and dispatch depth,
// the quotas (keeping each caller's spent tokens) and the probe interval.
func (s *Service) ApplyLimits(ctx context.Context, l Limits) error {
	if err := l.Validate(); err != nil {
		return fmt.Errorf("%w: %w", sdk.ErrInvalidLimits, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits.Store(&l)
	if !s.configured.Load() || s.shutdown {
		return nil
	}
	s.sched.SetLimits(l.MaxQueueDepth, l.QueueDepth.For(s.dev.Class))
	if !s.admitted.Load() {
		// Before any traffic (the SDK applies the configured limits
		// right after Configure) callers start with full buckets, not
		// with the empty ones a change from unlimited gives them (see
		// package quota): nobody has used anything yet.
		s.quotas.Store(quota.New(l.quotaConfig()))
	} else {
		s.quotas.Load().Update(l.quotaConfig())
	}
	s.detector.SetInterval(l.RedetectInterval)
	return nil
}

// Shutdown stops the probes and closes the root. Transfers still running
// fail.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return nil
	}
	s.shutdown = true
	if !s.configured.Load() {
		return nil
	}
	s.detector.Stop()
	return s.root.Close()
}

// Low priority is background work: while high-priority work is present,
// and for backgroundAnticipation after it, low steps are dispatched at most
// one per backgroundTrickle (see package scheduler). The figures behind
// these values are in the README (BenchmarkHighPriorityLatency).
const (
	backgroundAnticipation = 100 * time.Millisecond
	backgroundTrickle      = 20 * time.Millisecond
)

// ioPath is the I/O path chosen from the last probe.
type ioPath struct {
	name   string // "direct" or "buffered"
	direct bool   // low-priority bulk transfers use O_DIRECT (useDirect)
	reason string
	since  time.Time
}

// directThreshold is the transfer size from which a low-priority transfer
// on the direct path, when available, reads and writes with O_DIRECT:
// below it, the page cache serves better (small reads hit it; small
// writes are cheap to buffer).
const directThreshold = 8 << 20

// useDirect reports whether a transfer of class and length (bytes) on
// path bypasses the page cache. Only low-priority bulk transfers do: they
// are the background work (backups reading, bulk copies) whose data would
// push hot files out of the cache. Normal and high priority go through
// the page cache, as any file server's reads do: a hot file is served
// from memory (O_DIRECT read it from the disk every time, a third of
// http.FileServer's speed on a cached file).
func useDirect(path *ioPath, class scheduler.Class, length int64) bool {
	return path.direct && class == scheduler.Low && length >= directThreshold
}

// choosePath decides the I/O path from a probe result.
func choosePath(r probe.Result) ioPath {
	p := ioPath{name: "buffered", since: r.At}
	switch {
	case r.ODirect.Available:
		p.name, p.direct = "direct", true
		p.reason = fmt.Sprintf("O_DIRECT is available: low-priority transfers of %d MiB and more bypass the page cache with aligned buffers; the others use the page cache", directThreshold>>20)
	default:
		p.reason = "O_DIRECT is not available (" + r.ODirect.Detail + "): every transfer is buffered"
	}
	if r.IOURing.Available {
		p.reason += "; io_uring is available but not used for data (see the package doc)"
	}
	return p
}

// setPath installs the path for r, logging a switch.
func (s *Service) setPath(r probe.Result, why string) {
	p := choosePath(r)
	if old := s.path.Load(); old != nil && old.name == p.name {
		p.since = old.since
	}
	old := s.path.Swap(&p)
	if old != nil && old.name != p.name {
		s.stats.pathSwitches.Add(1)
		s.logger.Warn("I/O path switched", "from", old.name, "to", p.name, "reason", p.reason, "trigger", why)
	}
}

// probeChanged is the detector's change callback.
func (s *Service) probeChanged(old, cur probe.Result) {
	s.logger.Info("kernel capabilities changed",
		"io_uring", cur.IOURing.Available, "io_uring_detail", cur.IOURing.Detail,
		"o_direct", cur.ODirect.Available, "o_direct_detail", cur.ODirect.Detail)
	s.setPath(cur, "re-detection")
}

// Health reports the root, the device class and the I/O capabilities.
func (s *Service) Health(ctx context.Context) sdk.Health {
	if !s.configured.Load() {
		return sdk.Health{Status: sdk.HealthNotServing, Message: "not configured"}
	}
	now := time.Now()
	h := sdk.Health{Status: sdk.HealthServing, Message: "serving " + s.rootDir}
	rootH := sdk.ComponentHealth{Name: "root", Status: sdk.HealthServing, Message: s.rootDir + " is accessible", CheckedAt: now}
	if _, err := s.root.Stat("."); err != nil {
		rootH.Status, rootH.Message = sdk.HealthNotServing, fmt.Sprintf("%s: %v", s.rootDir, err)
		h.Status, h.Message = sdk.HealthNotServing, "root is not accessible"
	}
	res := s.detector.Current()
	p := s.path.Load()
	capability := func(c probe.Capability) string {
		if c.Available {
			return "available (" + c.Detail + ")"
		}
		return "unavailable (" + c.Detail + ")"
	}
	h.Components = append(h.Components, rootH,
		sdk.ComponentHealth{Name: "device", Status: sdk.HealthServing, CheckedAt: now,
			Message: fmt.Sprintf("class %s (%s, device %q): %s; queue depth %d", s.dev.Class, s.dev.Source, s.dev.Device, s.dev.Reason, s.sched.Stats().Depth)},
		sdk.ComponentHealth{Name: "io_uring", Status: sdk.HealthServing, CheckedAt: res.At, Message: capability(res.IOURing)},
		sdk.ComponentHealth{Name: "o_direct", Status: sdk.HealthServing, CheckedAt: res.At, Message: capability(res.ODirect)},
		sdk.ComponentHealth{Name: "io_path", Status: sdk.HealthServing, CheckedAt: res.At,
			Message: fmt.Sprintf("%s since %s: %s; last probe %s", p.name, p.since.UTC().Format(time.RFC3339), p.reason, res.At.UTC().Format(time.RFC3339))},
	)
	return h
}
