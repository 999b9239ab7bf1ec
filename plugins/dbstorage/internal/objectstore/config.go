package objectstore

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

// Limits are dbstorage's live limits (subsystems.dbstorage.limits). The SDK
// decodes them strictly onto DefaultLimits and enforces the min/max tags;
// ValidateLimits adds the checks between fields.
type Limits struct {
	// MaxBufferBytes bounds the object data the plugin holds in flight,
	// over all requests (see package buffer). At least 1 MiB so that one
	// chunk of the largest chunk size always fits.
	MaxBufferBytes sdk.Size `dw:"max_buffer_bytes" min:"1MiB" max:"64GiB" doc:"object data held in flight over all requests; when it is spent, transfers wait"`
	// HealthTimeout bounds each strategy's health check.
	HealthTimeout time.Duration `dw:"health_timeout" min:"10ms" max:"5m" doc:"time bound of each strategy's health check; at most health_interval"`
	// HealthInterval is the time between background health checks.
	HealthInterval time.Duration `dw:"health_interval" min:"100ms" max:"24h" doc:"time between background health checks of all strategies"`
	// DefaultPageSize is the page size of a listing without limit.
	DefaultPageSize int `dw:"default_page_size" min:"1" max:"100000" doc:"page size of a listing without limit; at most max_page_size"`
	// MaxPageSize caps the limit of a listing.
	MaxPageSize int `dw:"max_page_size" min:"1" max:"100000" doc:"largest page a listing may ask for (limit)"`
}

// DefaultLimits are the limits of DESIGN.md.
func DefaultLimits() Limits {
	return Limits{
		MaxBufferBytes:  64 * sdk.MiB,
		HealthTimeout:   5 * time.Second,
		HealthInterval:  30 * time.Second,
		DefaultPageSize: 100,
		MaxPageSize:     1000,
	}
}

// Validate applies the rules between fields (sdk.Validator); the SDK has
// checked each field and prefixes the paths with "limits".
func (l *Limits) Validate() error {
	var de sdk.DecodeError
	if l.DefaultPageSize > l.MaxPageSize {
		de.Problems = append(de.Problems, sdk.FieldProblem{Path: "default_page_size",
			Message: fmt.Sprintf("%d must not exceed max_page_size (%d)", l.DefaultPageSize, l.MaxPageSize)})
	}
	if l.HealthTimeout > l.HealthInterval {
		de.Problems = append(de.Problems, sdk.FieldProblem{Path: "health_timeout",
			Message: fmt.Sprintf("%s must not exceed health_interval (%s): a check would still run when the next one is due", l.HealthTimeout, l.HealthInterval)})
	}
	if len(de.Problems) > 0 {
		return &de
	}
	return nil
}

// check is Validate for limits that did not come through the SDK's
// decoder; errors wrap sdk.ErrInvalidLimits.
func (l Limits) check() error {
	if err := l.Validate(); err != nil {
		return fmt.Errorf("%w: %w", sdk.ErrInvalidLimits, err)
	}
	return nil
}

var _ sdk.Validator = (*Limits)(nil)

// Settings are dbstorage's start-time settings (subsystems.dbstorage
// without enabled and limits). A change restarts the plugin.
type Settings struct {
	// Strategies are the databases objects can live on. None given means
	// one SQLite strategy "primary" at db/objects.sqlite under data_dir.
	Strategies []StrategySettings `dw:"strategies" doc:"databases objects live on; none means one SQLite strategy primary at db/objects.sqlite"`
	// DefaultStrategy is where a request without ?strategy= goes; empty
	// means the first strategy.
	DefaultStrategy string `dw:"default_strategy" doc:"strategy of a request without ?strategy=; empty means the first one"`
}

// StrategySettings configure one strategy.
type StrategySettings struct {
	// Name identifies the strategy in requests (?strategy=), health and
	// metrics: 1–64 of [a-z0-9_-], starting with a letter or digit.
	Name string `dw:"name" doc:"names the strategy in requests (?strategy=), health and metrics: 1–64 of a-z, 0-9, _ and -"`
	// Driver is sqlite or postgres.
	Driver string `dw:"driver" enum:"sqlite,postgres" doc:"database driver"`
	// DSN is, for sqlite, the database file (relative to data_dir unless
	// absolute); for postgres, a libpq connection string or URL.
	DSN string `dw:"dsn" doc:"sqlite: the database file (relative to data_dir unless absolute); postgres: a connection string or URL"`
	// DSNEnv names an environment variable holding the DSN instead, so
	// that passwords stay out of the config file. Exactly one of dsn and
	// dsn_env is set.
	DSNEnv string `dw:"dsn_env" doc:"environment variable holding the DSN instead of dsn (keeps passwords out of the file); set one of the two"`
	// ChunkSize is the size of the rows objects are cut into; 0 means the
	// driver's default (1 MiB). It applies to objects written from now on.
	ChunkSize sdk.Size `dw:"chunk_size" max:"4MiB" doc:"size of the rows objects are cut into, at least 4KiB; 0 means 1MiB; applies to objects written from then on"`
}

var strategyName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// DefaultChunkSize is the chunk size of a strategy without chunk_size:
// see the store package for the measurements behind it.
const DefaultChunkSize = sdk.MiB

// minChunkSize is the smallest chunk_size accepted when one is set.
const minChunkSize = 4 * sdk.KiB

// defaultStrategies are used when the settings name none.
func defaultStrategies() []StrategySettings {
	return []StrategySettings{{Name: "primary", Driver: "sqlite", DSN: "db/objects.sqlite"}}
}

// DefaultSettings declares the settings (sdk.SettingsDeclarer): what
// parseSettings decodes onto, with the strategies used when none are given.
func (s *Service) DefaultSettings() any { return Settings{Strategies: defaultStrategies()} }

var _ sdk.SettingsDeclarer = (*Service)(nil)

// resolved is one strategy's settings ready to open.
type resolved struct {
	StrategySettings
	dsn string // from dsn or dsn_env; sqlite paths absolute
}

// parseSettings decodes and checks the settings; errors wrap
// sdk.ErrInvalidSettings and name the key path.
func parseSettings(cfg sdk.Config) (Settings, []resolved, error) {
	var s Settings
	if err := cfg.DecodeSettings(&s); err != nil {
		return s, nil, err
	}
	if len(s.Strategies) == 0 {
		s.Strategies = defaultStrategies()
		if s.DefaultStrategy == "" {
			s.DefaultStrategy = "primary"
		}
	}
	root := "subsystems." + cfg.Subsystem
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	seen := map[string]bool{}
	out := make([]resolved, 0, len(s.Strategies))
	for i, st := range s.Strategies {
		path := fmt.Sprintf("%s.strategies[%d]", root, i)
		if !strategyName.MatchString(st.Name) {
			bad("%s.name: %q is not a valid strategy name (1–64 of a-z, 0-9, '_' and '-', starting with a letter or digit)", path, st.Name)
		} else if seen[st.Name] {
			bad("%s.name: strategy %q is defined twice", path, st.Name)
		}
		seen[st.Name] = true
		if st.ChunkSize != 0 && st.ChunkSize < minChunkSize {
			bad("%s.chunk_size: %s is below the minimum of 4KiB (0 means the default, 1MiB)", path, st.ChunkSize)
		}
		dsn := st.DSN
		switch {
		case st.DSN != "" && st.DSNEnv != "":
			bad("%s: set dsn or dsn_env, not both", path)
		case st.DSNEnv != "":
			dsn = os.Getenv(st.DSNEnv)
			if dsn == "" {
				bad("%s.dsn_env: environment variable %q is empty or not set", path, st.DSNEnv)
			}
		case st.DSN == "":
			bad("%s.dsn: missing (for sqlite a file path, for postgres a connection string)", path)
		}
		if st.Driver == "sqlite" && dsn != "" {
			if strings.HasPrefix(dsn, "file:") || strings.Contains(dsn, "?") {
				bad("%s.dsn: for sqlite give a plain file path (relative to data_dir or absolute), not a URI: %q", path, dsn)
			}
			dsn = cfg.ResolvePath(dsn)
		}
		if st.ChunkSize == 0 {
			st.ChunkSize = DefaultChunkSize
		}
		out = append(out, resolved{StrategySettings: st, dsn: dsn})
	}
	if s.DefaultStrategy == "" && len(s.Strategies) > 0 {
		s.DefaultStrategy = s.Strategies[0].Name
	}
	if !seen[s.DefaultStrategy] {
		names := make([]string, 0, len(s.Strategies))
		for _, st := range s.Strategies {
			names = append(names, st.Name)
		}
		bad("%s.default_strategy: %q is not one of the strategies (%s)", root, s.DefaultStrategy, strings.Join(names, ", "))
	}
	if len(problems) > 0 {
		return s, nil, fmt.Errorf("%w: %s", sdk.ErrInvalidSettings, strings.Join(problems, "; "))
	}
	return s, out, nil
}
