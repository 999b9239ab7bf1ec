package pluginhost

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/datawarehouse/dw/sdk/v6"
)

// ModulePath is the Go module path of the SDK of major version 6.
const ModulePath = "github.com/datawarehouse/dw/sdk/v6"

// SemVer is a parsed MAJOR.MINOR.PATCH version (pre-release and build
// suffixes are kept as text and ignored by the compatibility rule).
type SemVer struct {
	Major, Minor, Patch int
	Suffix              string
}

// String formats v as MAJOR.MINOR.PATCH[suffix].
func (v SemVer) String() string {
	return fmt.Sprintf("%d.%d.%d%s", v.Major, v.Minor, v.Patch, v.Suffix)
}

// ParseSemVer parses "MAJOR.MINOR.PATCH" with an optional leading "v" and an
// optional "-pre" or "+build" suffix.
func ParseSemVer(s string) (SemVer, error) {
	in := s
	s = strings.TrimPrefix(s, "v")
	var suffix string
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s, suffix = s[:i], s[i:]
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return SemVer{}, fmt.Errorf("invalid version %q: want MAJOR.MINOR.PATCH such as %q", in, sdk.Version)
	}
	var n [3]int
	for i, p := range parts {
		if p == "" || len(p) > 9 || strings.TrimLeft(p, "0123456789") != "" {
			return SemVer{}, fmt.Errorf("invalid version %q: %q is not a number", in, p)
		}
		n[i], _ = strconv.Atoi(p)
	}
	return SemVer{Major: n[0], Minor: n[1], Patch: n[2], Suffix: suffix}, nil
}

// AcceptedRange describes, for people, which plugin SDK versions a host built
// with SDK version host accepts, e.g. ">= 6.0.0, < 6.2.0".
func AcceptedRange(host string) string {
	h, err := ParseSemVer(host)
	if err != nil {
		return "unknown (host version " + host + " is invalid)"
	}
	return fmt.Sprintf(">= %d.0.0, < %d.%d.0", h.Major, h.Major, h.Minor+1)
}

// GetCommand is the command that makes a plugin module build against the
// SDK of a host built with SDK version host.
func GetCommand(host string) string {
	h, err := ParseSemVer(host)
	if err != nil {
		return "go get " + ModulePath + "@latest"
	}
	path := "github.com/datawarehouse/dw/sdk"
	if h.Major >= 2 {
		path += "/v" + strconv.Itoa(h.Major)
	}
	return fmt.Sprintf("go get %s@v%d.%d.%d", path, h.Major, h.Minor, h.Patch)
}

// Compatible reports whether a plugin built with SDK version plugin can be
// loaded by a host built with SDK version host: the majors must be equal and
// the plugin's minor must not be newer than the host's. Patch levels never
// matter. The error says what to do, with the go get command that fixes the
// plugin's module.
func Compatible(host, plugin string) error {
	h, err := ParseSemVer(host)
	if err != nil {
		return fmt.Errorf("host sdk version: %w", err)
	}
	p, err := ParseSemVer(plugin)
	if err != nil {
		return fmt.Errorf("plugin sdk version: %w", err)
	}
	switch {
	case p.Major != h.Major:
		return fmt.Errorf("plugin sdk %s has major version %d, host accepts %s: rebuild the plugin against sdk %d (in its module: %s, with imports of github.com/datawarehouse/dw/sdk/v%d), or run a dw host built with sdk %d",
			plugin, p.Major, AcceptedRange(host), h.Major, GetCommand(host), h.Major, p.Major)
	case p.Minor > h.Minor:
		return fmt.Errorf("plugin sdk %s is newer than this host (accepts %s): upgrade dw to a release with sdk %d.%d or newer, or rebuild the plugin against this host's sdk (in its module: %s)",
			plugin, AcceptedRange(host), p.Major, p.Minor, GetCommand(host))
	}
	return nil
}
