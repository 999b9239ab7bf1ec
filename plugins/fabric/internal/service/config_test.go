package service

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
	"github.com/datawarehouse/dw/sdk/v6/sdktest"
)

func TestParseSettings(t *testing.T) {
	key32 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	env := map[string]string{"KEY32": key32, "KEY7": base64.StdEncoding.EncodeToString([]byte("sevenby")), "JUNK": "%%%", "EMPTY": "  "}
	getenv := func(k string) string { return env[k] }
	cfg := func(settings map[string]any) sdk.Config {
		return sdk.Config{Subsystem: "fabric", DataDir: t.TempDir(), Settings: settings}
	}
	r, err := parseSettings(cfg(map[string]any{}), getenv)
	if err != nil {
		t.Fatal(err)
	}
	if r.bind != "127.0.0.1:7946" || len(r.join) != 0 || r.federation != "default" || r.key != nil {
		t.Errorf("defaults resolved to %+v", r)
	}
	r, err = parseSettings(cfg(map[string]any{"bind": "0.0.0.0:0", "join": []any{"10.0.0.1:7946", "seed.example:7000"},
		"federation": "eu-west.1", "encrypt_key_env": "KEY32"}), getenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.key) != 32 || len(r.join) != 2 || r.federation != "eu-west.1" || r.bind != "0.0.0.0:0" {
		t.Errorf("resolved %+v", r)
	}
	manySeeds := make([]any, maxJoin+1)
	for i := range manySeeds {
		manySeeds[i] = "10.0.0.1:1"
	}
	for _, tc := range []struct {
		name     string
		settings map[string]any
		want     string
	}{
		{"bind without port", map[string]any{"bind": "127.0.0.1"}, "subsystems.fabric.bind"},
		{"bind without host", map[string]any{"bind": ":7946"}, "has no host"},
		{"bind port too big", map[string]any{"bind": "127.0.0.1:65536"}, "from 0 to 65535"},
		{"bind port not a number", map[string]any{"bind": "127.0.0.1:http"}, "not a number"},
		{"bind oversized", map[string]any{"bind": strings.Repeat("a", 2000) + ":1"}, "at most 1024"},
		{"seed port 0", map[string]any{"join": []any{"10.0.0.1:0"}}, "join[0]"},
		{"seed garbage", map[string]any{"join": []any{"10.0.0.1:1", "\x00"}}, "join[1]"},
		{"too many seeds", map[string]any{"join": manySeeds}, "at most 256"},
		{"join not a list", map[string]any{"join": "10.0.0.1:1"}, "join"},
		{"federation empty", map[string]any{"federation": ""}, "federation"},
		{"federation hostile", map[string]any{"federation": "../eu"}, "not a valid federation name"},
		{"federation too long", map[string]any{"federation": strings.Repeat("f", 65)}, "federation"},
		{"key env unset", map[string]any{"encrypt_key_env": "NOPE"}, "NOPE, which is not set"},
		{"key env blank", map[string]any{"encrypt_key_env": "EMPTY"}, "not set or empty"},
		{"key not base64", map[string]any{"encrypt_key_env": "JUNK"}, "standard base64"},
		{"key of 7 bytes", map[string]any{"encrypt_key_env": "KEY7"}, "7 bytes"},
		{"key env not a name", map[string]any{"encrypt_key_env": "A-B"}, "not an environment variable name"},
		{"unknown key", map[string]any{"bnid": "x"}, "bnid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseSettings(cfg(tc.settings), getenv)
			if !errors.Is(err, sdk.ErrInvalidSettings) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want ErrInvalidSettings mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	l := DefaultLimits()
	if err := sdk.Decode(&l, map[string]any{"topology": "mesh", "heartbeat_interval": "200ms", "missed_heartbeats": 3,
		"switching": map[string]any{"mode": "auto", "up_at": 0.9, "down_at": 0.4}, "max_nodes": map[string]any{"mesh": 3}}, "limits"); err != nil {
		t.Fatal(err)
	}
	n := l.node()
	if n.Topology != "mesh" || n.MaxNodes.Mesh != 3 || n.MaxNodes.Star != 1000 || n.Switching.Mode != "auto" || n.HeartbeatInterval.Milliseconds() != 200 {
		t.Errorf("node limits %+v", n)
	}
	for _, tc := range []struct {
		name string
		src  map[string]any
		want string
	}{
		{"unknown topology", map[string]any{"topology": "ring"}, "limits.topology"},
		{"unknown mode", map[string]any{"switching": map[string]any{"mode": "sometimes"}}, "limits.switching.mode"},
		{"down above up", map[string]any{"switching": map[string]any{"up_at": 0.5, "down_at": 0.6}}, "limits.switching.down_at"},
		{"down equals up", map[string]any{"switching": map[string]any{"up_at": 0.5, "down_at": 0.5}}, "hysteresis"},
		{"up above 1", map[string]any{"switching": map[string]any{"up_at": 1.5}}, "limits.switching.up_at"},
		{"up zero", map[string]any{"switching": map[string]any{"up_at": 0, "down_at": 0}}, "limits.switching.up_at"},
		{"down negative", map[string]any{"switching": map[string]any{"down_at": -0.1}}, "limits.switching.down_at"},
		{"max zero", map[string]any{"max_nodes": map[string]any{"star": 0}}, "limits.max_nodes.star"},
		{"max negative", map[string]any{"max_nodes": map[string]any{"federated": -1}}, "limits.max_nodes.federated"},
		{"max huge", map[string]any{"max_nodes": map[string]any{"mesh": 1 << 40}}, "limits.max_nodes.mesh"},
		{"interval too short", map[string]any{"heartbeat_interval": "1ms"}, "limits.heartbeat_interval"},
		{"interval not a duration", map[string]any{"heartbeat_interval": 15}, "limits.heartbeat_interval"},
		{"missed zero", map[string]any{"missed_heartbeats": 0}, "limits.missed_heartbeats"},
		{"missed fractional", map[string]any{"missed_heartbeats": 2.5}, "limits.missed_heartbeats"},
		{"unknown key", map[string]any{"max_node": 3}, "limits.max_node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := DefaultLimits()
			err := sdk.Decode(&l, tc.src, "limits")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want one naming %q", err, tc.want)
			}
			if l != DefaultLimits() {
				t.Errorf("a refused decode changed the limits: %+v", l)
			}
		})
	}
}

func TestPageRequest(t *testing.T) {
	tok := pageToken("node-b")
	for _, tc := range []struct {
		name      string
		req       *dwv1.ListNodesRequest
		size      int
		after     string
		wantError string
	}{
		{"defaults", &dwv1.ListNodesRequest{}, defaultPageSize, "", ""},
		{"size and token", &dwv1.ListNodesRequest{PageSize: 7, PageToken: tok}, 7, "node-b", ""},
		{"max size", &dwv1.ListNodesRequest{PageSize: maxPageSize}, maxPageSize, "", ""},
		{"size above max", &dwv1.ListNodesRequest{PageSize: maxPageSize + 1}, 0, "", "page_size 1001"},
		{"negative size", &dwv1.ListNodesRequest{PageSize: -1}, 0, "", "page_size -1"},
		{"token not base64", &dwv1.ListNodesRequest{PageToken: "!!"}, 0, "", "not a token"},
		{"token padded", &dwv1.ListNodesRequest{PageToken: tok + "=="}, 0, "", "not a token"},
		{"token of no listing", &dwv1.ListNodesRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte("node-b"))}, 0, "", "not a token"},
		{"token without an id", &dwv1.ListNodesRequest{PageToken: pageToken("")}, 0, "", "not a token"},
		{"token oversized", &dwv1.ListNodesRequest{PageToken: strings.Repeat("A", maxTokenBytes+1)}, 0, "", "at most 512"},
		{"token at the size bound", &dwv1.ListNodesRequest{PageToken: strings.Repeat("A", maxTokenBytes)}, 0, "", "not a token"},
		{"token with CR/LF inserted", &dwv1.ListNodesRequest{PageToken: tok[:8] + "\r\n" + tok[8:]}, 0, "", `'\r' at offset 8`},
		{"token with LF appended", &dwv1.ListNodesRequest{PageToken: tok + "\n"}, 0, "", `'\n' at offset`},
		{"token with NUL", &dwv1.ListNodesRequest{PageToken: tok[:4] + "\x00" + tok[4:]}, 0, "", `'\x00' at offset 4`},
		{"token in the standard alphabet", &dwv1.ListNodesRequest{PageToken: base64.StdEncoding.EncodeToString([]byte(tokenPrefix + "n?>"))}, 0, "", "not base64url"},
		{"token with stray bits", &dwv1.ListNodesRequest{PageToken: "ZmFicmljLW5vZGVzL3YxAG4xMh"}, 0, "", "not canonical"}, // pageToken("n12") ends in "Mg"
	} {
		t.Run(tc.name, func(t *testing.T) {
			size, after, err := pageRequest(tc.req)
			if tc.wantError != "" {
				if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantError) {
					t.Errorf("error %v; want ErrInvalidArgument mentioning %q", err, tc.wantError)
				}
				return
			}
			if err != nil || size != tc.size || after != tc.after {
				t.Errorf("got %d %q %v; want %d %q", size, after, err, tc.size, tc.after)
			}
		})
	}
}

func FuzzPageRequest(f *testing.F) {
	f.Add(int32(0), "")
	f.Add(int32(5), base64.RawURLEncoding.EncodeToString([]byte("n1")))
	f.Add(int32(5), pageToken("n1"))
	f.Add(int32(-3), "%%")
	f.Add(int32(1001), strings.Repeat("A", 600))
	f.Fuzz(func(t *testing.T, size int32, token string) {
		n, after, err := pageRequest(&dwv1.ListNodesRequest{PageSize: size, PageToken: token})
		if err != nil {
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("error %v is not ErrInvalidArgument", err)
			}
			return
		}
		if n < 1 || n > maxPageSize || (token == "") != (after == "") {
			t.Fatalf("accepted size %d token %q as %d %q", size, token, n, after)
		}
		if token != "" && pageToken(after) != token {
			t.Fatalf("accepted token %q, which is not the canonical %q", token, pageToken(after))
		}
	})
}

func TestNodeIDIsKept(t *testing.T) {
	ctx := context.Background()
	kv := sdktest.NewMemKV()
	a, err := loadNodeID(ctx, kv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !nodeIDPattern.MatchString(a) {
		t.Fatalf("node id %q does not match %v", a, nodeIDPattern)
	}
	b, err := loadNodeID(ctx, kv, nil)
	if err != nil || b != a {
		t.Fatalf("second load %q, %v; want the kept %q", b, err, a)
	}
	// A value that is not one of ours is replaced.
	if err := kv.Put(ctx, nodeIDKey, []byte("../../evil\n")); err != nil {
		t.Fatal(err)
	}
	c, err := loadNodeID(ctx, kv, nil)
	kept, _ := kv.Get(ctx, nodeIDKey)
	if err != nil || c == a || !nodeIDPattern.MatchString(c) || string(kept) != c {
		t.Fatalf("after a foreign value: %q, %v (kept %q)", c, err, kept)
	}
	// Without a KV each start makes a new id.
	d, err := loadNodeID(ctx, nil, nil)
	if err != nil || !nodeIDPattern.MatchString(d) {
		t.Fatalf("without a KV: %q, %v", d, err)
	}
}
