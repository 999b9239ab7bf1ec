package sdk

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is the version of this SDK. A plugin reports the SDK version it was
// built with in GetInfo; the host accepts it when [Compatible] says so.
const Version = "6.0.0"

// ProtocolVersion is the go-plugin application protocol version of the dw
// plugin contract. It is negotiated in the go-plugin handshake, separately
// from the SDK version.
const ProtocolVersion = 1

// Handshake values shared by host and plugins. They are not a security
// measure: they stop a user from running a plugin binary by hand.
const (
	MagicCookieKey   = "DW_PLUGIN_MAGIC_COOKIE"
	MagicCookieValue = "d6f0a7a4-dw-scalable-subsystem"
)

// PluginName is the name of the dw contract in go-plugin's plugin map.
const PluginName = "subsystem"

// EnvHostPID names the environment variable in which the host passes its pid
// to a plugin, so the plugin can tell when its host is gone.
const EnvHostPID = "DW_HOST_PID"

// Test hooks, set with -ldflags "-X" only when building test plugins that
// must pretend to be built with another SDK or protocol. Empty means the real
// values above.
var (
	reportedSDKVersion      string
	reportedProtocolVersion string
)

func sdkVersionReported() string {
	if reportedSDKVersion != "" {
		return reportedSDKVersion
	}
	return Version
}

func protocolVersionServed() int {
	if reportedProtocolVersion != "" {
		if v, err := strconv.Atoi(reportedProtocolVersion); err == nil {
			return v
		}
	}
	return ProtocolVersion
}

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
		return SemVer{}, fmt.Errorf("invalid version %q: want MAJOR.MINOR.PATCH such as %q", in, Version)
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
// with SDK version host accepts, e.g. ">= 6.0.0, < 6.1.0".
func AcceptedRange(host string) string {
	h, err := ParseSemVer(host)
	if err != nil {
		return "unknown (host version " + host + " is invalid)"
	}
	return fmt.Sprintf(">= %d.0.0, < %d.%d.0", h.Major, h.Major, h.Minor+1)
}

// Compatible reports whether a plugin built with SDK version plugin can be
// loaded by a host built with SDK version host: the majors must be equal and
// the plugin's minor must not be newer than the host's. Patch levels never
// matter. The error says what to do.
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
		return fmt.Errorf("plugin sdk %s has major version %d, host accepts %s: rebuild the plugin with dw sdk %d.x",
			plugin, p.Major, AcceptedRange(host), h.Major)
	case p.Minor > h.Minor:
		return fmt.Errorf("plugin sdk %s is newer than this host (accepts %s): upgrade dw to a release with sdk %d.%d or newer, or rebuild the plugin with sdk %s",
			plugin, AcceptedRange(host), p.Major, p.Minor, host)
	}
	return nil
}
