package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/datawarehouse/dw/plugins/fabric/internal/node"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// Version is the plugin's own version, reported in GetInfo.
const Version = "0.1.0"

// nodeIDKey is the host-KV key of this node's id.
const nodeIDKey = "node-id"

// Service is the fabric subsystem.
type Service struct {
	dwv1.UnimplementedFabricServer

	getenv func(string) string

	mu       sync.Mutex // Configure, ApplyLimits, Shutdown
	cfg      sdk.Config
	settings resolved
	nodeID   string
	shutdown bool

	node atomic.Pointer[node.Node]
}

var (
	_ sdk.Subsystem[Limits]       = (*Service)(nil)
	_ sdk.LimitsValidator[Limits] = (*Service)(nil)
	_ sdk.GRPCRegistrar           = (*Service)(nil)
	_ sdk.Shutdowner              = (*Service)(nil)
	_ dwv1.FabricServer           = (*Service)(nil)
)

// New returns an unconfigured fabric service.
func New() *Service { return &Service{getenv: os.Getenv} }

// Info says who the plugin is.
func (s *Service) Info() sdk.Info {
	return sdk.Info{Name: "fabric", Version: Version, Capabilities: []string{"memberlist", "topology:star", "topology:mesh", "topology:federated", "switching"}}
}

// DefaultLimits are DESIGN.md's.
func (s *Service) DefaultLimits() Limits { return DefaultLimits() }

// RegisterGRPC serves dw.sdk.v1.Fabric.
func (s *Service) RegisterGRPC(g *grpc.Server) { dwv1.RegisterFabricServer(g, s) }

// Configure checks the settings and finds (or makes) the node id. The node
// starts at the first ApplyLimits.
func (s *Service) Configure(ctx context.Context, cfg sdk.Config) error {
	r, err := parseSettings(cfg, s.getenv)
	if err != nil {
		return err
	}
	id, err := loadNodeID(ctx, cfg.KV, cfg.Logger)
	if err != nil {
		return fmt.Errorf("configure fabric: node id: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg, s.settings, s.nodeID = cfg, r, id
	return nil
}

var nodeIDPattern = regexp.MustCompile(`^[a-z0-9-]{1,48}-[0-9a-f]{8}$`)

// loadNodeID returns the id kept in kv, making and keeping one if there is
// none (or kv is nil). A stored value this plugin cannot have made is
// replaced, and the change of identity logged (log may be nil): peers
// will show the old id as dead or left until their caches drop it.
func loadNodeID(ctx context.Context, kv sdk.KV, log hclog.Logger) (string, error) {
	if kv != nil {
		b, err := kv.Get(ctx, nodeIDKey)
		switch {
		case err == nil && nodeIDPattern.Match(b):
			return string(b), nil
		case err == nil:
			if log != nil {
				log.Warn("stored fabric node id is not one this plugin makes; replacing it: this node joins under a new id",
					"key", nodeIDKey, "stored", fmt.Sprintf("%.64q", b))
			}
		case !errors.Is(err, sdk.ErrNotFound):
			return "", fmt.Errorf("read %s: %w", nodeIDKey, err)
		}
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	id := hostname() + "-" + hex.EncodeToString(rnd[:])
	if kv != nil {
		if err := kv.Put(ctx, nodeIDKey, []byte(id)); err != nil {
			return "", fmt.Errorf("keep %s: %w", nodeIDKey, err)
		}
	}
	return id, nil
}

// ValidateLimits accepts every limit set that decoded (the cross-field
// rules are in Limits.Validate); a node is never refused a limit change:
// lowering a max below the count refuses new joins and recommends a
// switch instead of evicting.
func (s *Service) ValidateLimits(context.Context, Limits) error { return nil }

// ApplyLimits starts the node on the first call and applies the limits
// live afterwards.
func (s *Service) ApplyLimits(ctx context.Context, l Limits) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return fmt.Errorf("apply fabric limits: %w: shutting down", sdk.ErrUnavailable)
	}
	if s.nodeID == "" {
		return fmt.Errorf("apply fabric limits: %w: not configured", sdk.ErrFailedPrecondition)
	}
	if n := s.node.Load(); n != nil {
		n.Apply(l.node())
		return nil
	}
	logger := s.cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	n, err := node.Start(node.Config{
		ID:         s.nodeID,
		Federation: s.settings.federation,
		APIAddress: s.cfg.HostAPIAddress,
		Version:    s.cfg.HostVersion,
		BindAddr:   s.settings.bind,
		Join:       s.settings.join,
		SecretKey:  s.settings.key,
		Limits:     l.node(),
		Logger:     logger,
	})
	if err != nil {
		return fmt.Errorf("subsystems.%s.bind %s: %w", s.cfg.Subsystem, s.settings.bind, err)
	}
	s.node.Store(n)
	logger.Info("fabric node started", "node", s.nodeID, "bind", n.Addr(), "federation", s.settings.federation,
		"seeds", len(s.settings.join), "encrypted", s.settings.key != nil, "topology", l.Topology)
	return nil
}

// Shutdown leaves the fabric (so that the others see "left" at once) and
// stops the node.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdown = true
	n := s.node.Swap(nil)
	if n == nil {
		return nil
	}
	if err := n.Close(ctx); err != nil {
		return fmt.Errorf("leave fabric: %w", err)
	}
	return nil
}

// running returns the node, or an error saying why there is none.
func (s *Service) running(op string) (*node.Node, error) {
	if n := s.node.Load(); n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("%s: %w: the fabric node is not running", op, sdk.ErrUnavailable)
}
