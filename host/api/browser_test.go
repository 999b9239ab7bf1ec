package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/datawarehouse/dw/sdk/v6"
)

func TestBrowserGuard(t *testing.T) {
	for _, tc := range []struct {
		name     string
		host     string
		headers  map[string]string
		loopback bool
		ok       bool
	}{
		{"cli on loopback", "127.0.0.1:7070", nil, true, true},
		{"localhost", "localhost:7070", nil, true, true},
		{"ipv6 loopback", "[::1]:7070", nil, true, true},
		{"127/8", "127.1.2.3", nil, true, true},
		{"same origin page", "127.0.0.1:7070", map[string]string{"Origin": "http://127.0.0.1:7070", "Sec-Fetch-Site": "same-origin"}, true, true},
		{"user typed url", "127.0.0.1:7070", map[string]string{"Sec-Fetch-Site": "none"}, true, true},
		{"cross-site post", "127.0.0.1:7070", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, true, false},
		{"cross origin without fetch metadata", "127.0.0.1:7070", map[string]string{"Origin": "https://evil.example"}, true, false},
		{"same-site", "127.0.0.1:7070", map[string]string{"Sec-Fetch-Site": "same-site"}, true, false},
		{"null origin", "127.0.0.1:7070", map[string]string{"Origin": "null"}, true, false},
		{"rebound name", "evil.example:7070", nil, true, false},
		{"lan address without tokens", "192.168.1.5:7070", nil, true, false},
		{"lan address with tokens", "192.168.1.5:7070", nil, false, true},
		{"cross-site with tokens", "dw.internal:7070", map[string]string{"Sec-Fetch-Site": "cross-site"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://"+tc.host+"/v1/backups/prune", nil)
			r.Host = tc.host
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			err := browserGuard(r, tc.loopback)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, sdk.ErrPermissionDenied) {
				t.Fatalf("err %v, want ErrPermissionDenied", err)
			}
		})
	}
}

// TestBrowserGuardInTheServer: the guard runs before authentication and
// routing, and the Host rule only with LoopbackHosts and no tokens.
func TestBrowserGuardInTheServer(t *testing.T) {
	s, err := New(Options{Plugins: &fakePlugins{}, LoopbackHosts: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host, origin string
		want         int
	}{
		{"127.0.0.1:7070", "", http.StatusOK},
		{"evil.example", "", http.StatusForbidden},
		{"127.0.0.1:7070", "http://evil.example", http.StatusForbidden},
	} {
		r := httptest.NewRequest(http.MethodGet, "/healthz", nil)
		r.Host = tc.host
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("Host %s Origin %q: %d, want %d", tc.host, tc.origin, w.Code, tc.want)
		}
	}
}
