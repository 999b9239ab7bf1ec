package service

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/datawarehouse/dw/plugins/fabric/internal/node"
	"github.com/datawarehouse/dw/sdk/v6"
)

// Limits are fabric's live limits (subsystems.fabric.limits).
type Limits struct {
	// MaxNodes is the most nodes each topology admits.
	MaxNodes MaxNodes `dw:"max_nodes" doc:"most nodes each topology admits; a join past it is refused"`
	// Topology is the configured topology; a change switches the fabric.
	Topology string `dw:"topology" enum:"star,mesh,federated" doc:"the topology in force; a change switches the whole fabric"`
	// Switching says when and whether to move between topologies.
	Switching Switching `dw:"switching" doc:"when and whether to move between topologies"`
	// HeartbeatInterval is the time between a node's heartbeats.
	HeartbeatInterval time.Duration `dw:"heartbeat_interval" min:"10ms" max:"1h" doc:"time between a node's heartbeats"`
	// MissedHeartbeats in a row make a node dead (fewer: suspect).
	MissedHeartbeats int `dw:"missed_heartbeats" min:"1" max:"1000" doc:"heartbeats missed in a row that make a node dead (fewer: suspect)"`
}

// MaxNodes is limits.max_nodes.
type MaxNodes struct {
	Star      int `dw:"star" min:"1" max:"1000000" doc:"most nodes in the star topology"`
	Mesh      int `dw:"mesh" min:"1" max:"1000000" doc:"most nodes in the mesh topology"`
	Federated int `dw:"federated" min:"1" max:"1000000" doc:"most nodes in the federated topology"`
}

// Switching is limits.switching.
type Switching struct {
	Mode   string  `dw:"mode" enum:"auto,recommend,off" doc:"auto switches the fabric, recommend only reports, off does neither"`
	UpAt   float64 `dw:"up_at" max:"1" doc:"share of max_nodes at which to move up (star, mesh, federated); above 0"`
	DownAt float64 `dw:"down_at" max:"1" doc:"share of the smaller topology's max_nodes below which to move down; below up_at"`
}

// DefaultLimits are the limits of DESIGN.md.
func DefaultLimits() Limits {
	return Limits{
		MaxNodes:          MaxNodes{Star: 1000, Mesh: 500, Federated: 10000},
		Topology:          "star",
		Switching:         Switching{Mode: "recommend", UpAt: 0.8, DownAt: 0.5},
		HeartbeatInterval: 15 * time.Second,
		MissedHeartbeats:  3,
	}
}

// Validate applies the rules between fields.
func (l *Limits) Validate() error {
	var de sdk.DecodeError
	if l.Switching.UpAt <= 0 || l.Switching.UpAt > 1 {
		de.Problems = append(de.Problems, sdk.FieldProblem{Path: "switching.up_at",
			Message: fmt.Sprintf("%g must be above 0 and at most 1 (a share of max_nodes)", l.Switching.UpAt)})
	}
	if l.Switching.DownAt <= 0 || l.Switching.DownAt >= l.Switching.UpAt {
		de.Problems = append(de.Problems, sdk.FieldProblem{Path: "switching.down_at",
			Message: fmt.Sprintf("%g must be above 0 and below switching.up_at (%g), so that switching has hysteresis", l.Switching.DownAt, l.Switching.UpAt)})
	}
	if len(de.Problems) > 0 {
		return &de
	}
	return nil
}

// node converts validated limits to the node's.
func (l Limits) node() node.Limits {
	return node.Limits{
		MaxNodes:          node.MaxNodes{Star: l.MaxNodes.Star, Mesh: l.MaxNodes.Mesh, Federated: l.MaxNodes.Federated},
		Topology:          node.Topology(l.Topology),
		Switching:         node.Switching{Mode: node.Mode(l.Switching.Mode), UpAt: l.Switching.UpAt, DownAt: l.Switching.DownAt},
		HeartbeatInterval: l.HeartbeatInterval,
		MissedHeartbeats:  l.MissedHeartbeats,
	}
}

// Settings are fabric's start-time settings (subsystems.fabric without
// enabled and limits); a change restarts the plugin.
type Settings struct {
	// Bind is the gossip address, host:port (UDP and TCP).
	Bind string `dw:"bind" doc:"gossip address, host:port (UDP and TCP); port 0 picks a free one"`
	// Join lists seed nodes' gossip addresses.
	Join []string `dw:"join" doc:"seed nodes' gossip addresses (host:port), at most 256"`
	// Federation is this node's group in the federated topology.
	Federation string `dw:"federation" doc:"this node's group in the federated topology"`
	// EncryptKeyEnv names the environment variable holding the gossip key.
	EncryptKeyEnv string `dw:"encrypt_key_env" doc:"environment variable holding the base64 gossip key (16, 24 or 32 bytes); empty: unencrypted"`
}

func defaultSettings() Settings {
	return Settings{Bind: "127.0.0.1:7946", Join: []string{}, Federation: "default"}
}

// DefaultSettings declares the settings (sdk.SettingsDeclarer): the
// defaults parseSettings decodes them onto.
func (s *Service) DefaultSettings() any { return defaultSettings() }

var _ sdk.SettingsDeclarer = (*Service)(nil)

// maxJoin bounds the seed list.
const maxJoin = 256

var (
	federationName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	envName        = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,255}$`)
)

// resolved are checked settings.
type resolved struct {
	bind       string
	join       []string
	federation string
	keyEnv     string
	key        []byte // nil: unencrypted
}

// parseSettings decodes and checks the settings; getenv reads the key.
func parseSettings(cfg sdk.Config, getenv func(string) string) (resolved, error) {
	s := defaultSettings()
	if err := cfg.DecodeSettings(&s); err != nil {
		return resolved{}, err
	}
	root := "subsystems." + cfg.Subsystem
	var problems []string
	bad := func(key, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s.%s: %s", root, key, fmt.Sprintf(format, args...)))
	}
	r := resolved{bind: s.Bind, federation: s.Federation, keyEnv: s.EncryptKeyEnv}
	if err := checkHostPort(s.Bind, true); err != nil {
		bad("bind", "%v", err)
	}
	if len(s.Join) > maxJoin {
		bad("join", "%d seeds; at most %d", len(s.Join), maxJoin)
	} else {
		for i, j := range s.Join {
			if err := checkHostPort(j, false); err != nil {
				bad(fmt.Sprintf("join[%d]", i), "%v", err)
				continue
			}
			r.join = append(r.join, j)
		}
	}
	if !federationName.MatchString(s.Federation) {
		bad("federation", "%q is not a valid federation name (1–64 of letters, digits, '_', '-' and '.', starting with a letter or digit)", s.Federation)
	}
	if s.EncryptKeyEnv != "" {
		key, err := gossipKey(s.EncryptKeyEnv, getenv)
		if err != nil {
			bad("encrypt_key_env", "%v", err)
		}
		r.key = key
	}
	if len(problems) > 0 {
		return r, fmt.Errorf("%w: %s", sdk.ErrInvalidSettings, strings.Join(problems, "; "))
	}
	return r, nil
}

// checkHostPort checks a host:port; port 0 (any free port) only when
// anyPort.
func checkHostPort(a string, anyPort bool) error {
	if len(a) > 1024 {
		return fmt.Errorf("address of %d bytes; at most 1024", len(a))
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", a, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host; give an IP address or a name (0.0.0.0 for every interface)", a)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 || (p == 0 && !anyPort) {
		lo := 1
		if anyPort {
			lo = 0
		}
		return fmt.Errorf("%q: port %q is not a number from %d to 65535", a, port, lo)
	}
	return nil
}

// gossipKey reads the key from the variable named name.
func gossipKey(name string, getenv func(string) string) ([]byte, error) {
	if !envName.MatchString(name) {
		return nil, fmt.Errorf("%q is not an environment variable name (letters, digits and '_', not starting with a digit)", name)
	}
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return nil, fmt.Errorf("names %s, which is not set or empty; set it to a base64 key of 16, 24 or 32 bytes (e.g. `head -c 32 /dev/urandom | base64`)", name)
	}
	key, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("%s does not hold standard base64: %v", name, err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("%s holds a key of %d bytes; a gossip key has 16, 24 or 32", name, n)
	}
	return key, nil
}

// isLoopback reports whether a bind address's host is a loopback address.
func isLoopback(bind string) bool {
	host, _, err := net.SplitHostPort(bind)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// hostname returns the node-id prefix: the host name, lowercased, with
// anything but letters, digits and '-' dropped.
func hostname() string {
	h, _ := os.Hostname()
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		}
		if b.Len() >= 48 {
			break
		}
	}
	if b.Len() == 0 {
		return "node"
	}
	return b.String()
}
