// Package contract holds what both sides of a dw plugin connection must
// agree on and no plugin author needs to see: the go-plugin handshake, the
// transport settings, environment and metadata names, and the JSON
// encoding of limits. Package sdk (the plugin side) and package pluginhost
// (the host side) both build on it.
package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

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

// EnvHostPID names the environment variable in which the host passes its
// pid to a plugin, so the plugin can tell when its host is gone.
const EnvHostPID = "DW_HOST_PID"

// EnvLogLevel names the environment variable in which the host passes the
// log level plugins should log at.
const EnvLogLevel = "DW_PLUGIN_LOG_LEVEL"

// CallerMetadataKey is the gRPC metadata key in which the host passes the
// identity of the API caller (the auth token's name, or "anonymous") to a
// plugin's domain services.
const CallerMetadataKey = "dw-caller"

// Handshake returns the go-plugin handshake shared by the dw host and its
// plugins. The protocol version is negotiated through VersionedPlugins.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}

// Flow-control windows of the host–plugin connection. gRPC's default
// stream window (64 KiB, grown by BDP estimation) makes a stream of 1 MiB
// messages wait for window updates many times per message; fixed larger
// windows let a bulk stream (an object, a file) run at memory speed. They
// also bound what a receiver may buffer unread: StreamWindow per stream.
// (grpc-go acknowledges the connection window as data arrives, not as it
// is read, so ConnWindow bounds what is in flight, not what is buffered:
// a receiver that reads n streams slowly holds up to n × StreamWindow.)
// Measured for the filesystem plugin, 1 MiB and 2 MiB stream windows gave
// no better high-priority latency under a flood and no better throughput.
const (
	StreamWindow = 4 << 20
	ConnWindow   = 16 << 20
	// transportBuffer is the size of the connection's read and write
	// buffers.
	transportBuffer = 256 << 10
)

// DialOptions are the transport options of the host's side of a plugin
// connection, matching ServerOptions.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(StreamWindow),
		grpc.WithInitialConnWindowSize(ConnWindow),
		grpc.WithReadBufferSize(transportBuffer),
		grpc.WithWriteBufferSize(transportBuffer),
	}
}

// ServerOptions are the transport options of the plugin's gRPC server.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(StreamWindow),
		grpc.InitialConnWindowSize(ConnWindow),
		grpc.ReadBufferSize(transportBuffer),
		grpc.WriteBufferSize(transportBuffer),
	}
}

// MaxLimitsJSONBytes bounds an encoded limits (or settings) object. Limits
// are a few keys; the bound stops a hostile or broken peer from making the
// other side decode an arbitrarily large document.
const MaxLimitsJSONBytes = 4 << 20

// EncodeJSON encodes a limits map as a JSON object. A nil map is "{}".
// Integers of any Go integer type keep every digit (unlike
// google.protobuf.Struct, which carries every number as a double).
func EncodeJSON(m map[string]any) ([]byte, error) {
	if m == nil {
		return []byte("{}"), nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode limits as JSON: %w", err)
	}
	if len(b) > MaxLimitsJSONBytes {
		return nil, fmt.Errorf("encode limits as JSON: %d bytes, at most %d allowed", len(b), MaxLimitsJSONBytes)
	}
	return b, nil
}

// DecodeJSON decodes a JSON object into a map without losing a digit: a
// number written without fraction or exponent becomes an int64, or a uint64
// above the int64 range; any other number a float64 (one that does not fit
// a float64 is an error). Anything but one object (an array, a number,
// trailing data) is an error; empty input is an empty map.
func DecodeJSON(b []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return map[string]any{}, nil
	}
	if len(b) > MaxLimitsJSONBytes {
		return nil, fmt.Errorf("decode limits JSON: %d bytes, at most %d allowed", len(b), MaxLimitsJSONBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode limits JSON: %w", err)
	}
	if m == nil {
		return nil, errors.New("decode limits JSON: null is not an object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode limits JSON: data after the object")
	}
	for k, v := range m {
		n, err := numbers(v)
		if err != nil {
			return nil, fmt.Errorf("decode limits JSON: %w", err)
		}
		m[k] = n
	}
	return m, nil
}

// numbers replaces the json.Numbers in v by int64, uint64 or float64.
func numbers(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		s := string(v)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i, nil
			}
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				return u, nil
			}
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("number %s is out of range", s)
		}
		return f, nil
	case map[string]any:
		for k, e := range v {
			n, err := numbers(e)
			if err != nil {
				return nil, err
			}
			v[k] = n
		}
	case []any:
		for i, e := range v {
			n, err := numbers(e)
			if err != nil {
				return nil, err
			}
			v[i] = n
		}
	}
	return v, nil
}

// MaxHistogramBuckets bounds the buckets of one histogram: each bucket is
// a time series on the host.
const MaxHistogramBuckets = 64

// CheckHistogram reports what makes a histogram unexportable, as it
// crosses the wire: one cumulative count per upper bound, at most
// MaxHistogramBuckets of them, bounds finite and strictly ascending,
// counts never decreasing and none above count (the +Inf bucket).
func CheckHistogram(upperBounds []float64, cumulativeCounts []uint64, count uint64) error {
	if len(upperBounds) != len(cumulativeCounts) || len(upperBounds) > MaxHistogramBuckets {
		return fmt.Errorf("%d bounds and %d counts, want the same number, at most %d", len(upperBounds), len(cumulativeCounts), MaxHistogramBuckets)
	}
	for i, b := range upperBounds {
		if math.IsNaN(b) || math.IsInf(b, 0) || (i > 0 && b <= upperBounds[i-1]) {
			return fmt.Errorf("bounds must be finite and strictly ascending, got %v", upperBounds)
		}
		if c := cumulativeCounts[i]; (i > 0 && c < cumulativeCounts[i-1]) || c > count {
			return fmt.Errorf("counts must be cumulative and at most count %d, got %v", count, cumulativeCounts)
		}
	}
	return nil
}

// ShortDuration drops the zero minutes and seconds of a duration's String
// ("24h0m0s" → "24h", "1m0s" → "1m"), as people write durations;
// time.ParseDuration reads both forms.
func ShortDuration(s string) string {
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
