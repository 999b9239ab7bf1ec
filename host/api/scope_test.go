package api

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/config"
)

// wantRoutes is the scope and subsystem every route must be registered
// with: the route table of the issue, written out independently of the
// registrations.
var wantRoutes = map[string]Route{
	"GET /healthz": {Scope: ScopePublic},
	"GET /readyz":  {Scope: ScopePublic},
	"GET /metrics": {Scope: ScopeRead},

	"GET /v1/plugins":                                   {Scope: ScopeRead},
	"POST /v1/plugins/{name}/restart":                   {Scope: ScopeAdmin, Subsystem: "{name}"},
	"GET /v1/subsystems/{name}/limits":                  {Scope: ScopeRead, Subsystem: "{name}"},
	"GET /v1/subsystems/{name}/metrics":                 {Scope: ScopeRead, Subsystem: "{name}"},
	"GET /v1/subsystems/{name}/health":                  {Scope: ScopeRead, Subsystem: "{name}"},
	"POST /v1/subsystems/{name}/rpc/{service}/{method}": {Scope: ScopeWrite, Subsystem: "{name}"},

	"GET /v1/config":           {Scope: ScopeRead},
	"POST /v1/config/reload":   {Scope: ScopeAdmin},
	"POST /v1/config/validate": {Scope: ScopeAdmin},

	"GET /v1/objects":                   {Scope: ScopeRead, Subsystem: "dbstorage"},
	"GET /v1/objects/{key...}":          {Scope: ScopeRead, Subsystem: "dbstorage"},
	"HEAD /v1/objects/{key...}":         {Scope: ScopeRead, Subsystem: "dbstorage"},
	"PUT /v1/objects/{key...}":          {Scope: ScopeWrite, Subsystem: "dbstorage"},
	"DELETE /v1/objects/{key...}":       {Scope: ScopeWrite, Subsystem: "dbstorage"},
	"GET /v1/files":                     {Scope: ScopeRead, Subsystem: "filesystem"},
	"GET /v1/files/{path...}":           {Scope: ScopeRead, Subsystem: "filesystem"},
	"HEAD /v1/files/{path...}":          {Scope: ScopeRead, Subsystem: "filesystem"},
	"PUT /v1/files/{path...}":           {Scope: ScopeWrite, Subsystem: "filesystem"},
	"DELETE /v1/files/{path...}":        {Scope: ScopeWrite, Subsystem: "filesystem"},
	"POST /v1/backups":                  {Scope: ScopeWrite, Subsystem: "dataprotection"},
	"GET /v1/backups/jobs":              {Scope: ScopeRead, Subsystem: "dataprotection"},
	"GET /v1/backups/jobs/{id}":         {Scope: ScopeRead, Subsystem: "dataprotection"},
	"DELETE /v1/backups/jobs/{id}":      {Scope: ScopeWrite, Subsystem: "dataprotection"},
	"GET /v1/backups/snapshots":         {Scope: ScopeRead, Subsystem: "dataprotection"},
	"DELETE /v1/backups/snapshots/{id}": {Scope: ScopeAdmin, Subsystem: "dataprotection"},
	"POST /v1/backups/prune":            {Scope: ScopeAdmin, Subsystem: "dataprotection"},
	"POST /v1/backups/restores":         {Scope: ScopeWrite, Subsystem: "dataprotection"},
	"POST /v1/backups/verify":           {Scope: ScopeWrite, Subsystem: "dataprotection"},
	"GET /v1/fabric":                    {Scope: ScopeRead, Subsystem: "fabric"},
	"GET /v1/fabric/nodes":              {Scope: ScopeRead, Subsystem: "fabric"},
}

// serverWithConfig is a Server with every route the host registers: the
// built-in ones and the config endpoints, added as the host adds them.
func serverWithConfig(t testing.TB, creds ...config.Credential) *Server {
	t.Helper()
	s, _ := newTestServer(t, &fakePlugins{}, nil)
	s.HandleConfig(&fakeConfig{
		InfoFunc:     func() any { return map[string]any{"generation": 1} },
		ReloadFunc:   func(context.Context, string) (any, error) { return map[string]any{"ok": true}, nil },
		ValidateFunc: func(context.Context, []byte) any { return map[string]any{"ok": true} },
	})
	if err := s.SetTokens(creds); err != nil {
		t.Fatal(err)
	}
	return s
}

// Every registered route has a declared scope, and the one of the table.
func TestRouteScopes(t *testing.T) {
	s := serverWithConfig(t)
	seen := map[string]bool{}
	for _, rt := range s.Routes() {
		seen[rt.Pattern] = true
		if rt.Scope < ScopePublic || rt.Scope > ScopeAdmin {
			t.Errorf("route %s has no declared scope (%v)", rt.Pattern, rt.Scope)
		}
		want, ok := wantRoutes[rt.Pattern]
		if !ok {
			t.Errorf("route %s (scope %s, subsystem %q) is not in wantRoutes: add it with the scope it needs", rt.Pattern, rt.Scope, rt.Subsystem)
			continue
		}
		if rt.Scope != want.Scope || rt.Subsystem != want.Subsystem {
			t.Errorf("route %s: scope %s subsystem %q, want %s %q", rt.Pattern, rt.Scope, rt.Subsystem, want.Scope, want.Subsystem)
		}
	}
	for p := range wantRoutes {
		if !seen[p] {
			t.Errorf("route %s of wantRoutes is not registered", p)
		}
	}
	// The subsystems are those the handlers find their plugin by.
	for sub, want := range map[string]string{ObjectsSubsystem: "dbstorage", FilesSubsystem: "filesystem",
		BackupsSubsystem: "dataprotection", FabricSubsystem: "fabric"} {
		if sub != want {
			t.Errorf("subsystem constant %s, the table says %s", sub, want)
		}
	}
}

func TestHandleWithoutScopePanics(t *testing.T) {
	s, _ := newTestServer(t, &fakePlugins{}, nil)
	for _, scope := range []Scope{0, ScopeAdmin + 1, -1} {
		func() {
			defer func() {
				if v := recover(); v == nil || !strings.Contains(v.(string), "without a valid scope") {
					t.Errorf("Handle with scope %v: recovered %v", scope, v)
				}
			}()
			s.Handle("GET /unscoped", scope, http.NotFoundHandler())
		}()
	}
}

// Tokens of the scope tests.
const (
	readToken   = "read-token-0123456789"
	writeToken  = "write-token-0123456789"
	adminToken  = "admin-token-0123456789"
	objectsOnly = "objects-only-0123456789"
)

func scopedCreds() []config.Credential {
	return []config.Credential{
		cred("dash", readToken, config.PolicyRead),
		cred("cron", writeToken, config.PolicyWrite),
		cred("ops", adminToken, ""), // no policy: admin
		{Token: config.Token{Name: "objbot", Policy: config.PolicyWrite, Subsystems: []string{"dbstorage"}}, Value: objectsOnly},
	}
}

// A read token gets 403 on PUT, DELETE and reload, a write token on every
// admin route, naming the token, its policy and the scope missing; an
// admin token passes every check. (Behind the checks, the fake plugins
// answer what they answer: only 403 forbidden matters here.)
func TestScopeRefusals(t *testing.T) {
	s := serverWithConfig(t, scopedCreds()...)
	h := s.Handler()
	type call struct{ method, path string }
	cases := []struct {
		token  string
		call   call
		refuse string // "" = passes the scope check
	}{
		{readToken, call{"GET", "/v1/objects/x"}, ""},
		{readToken, call{"HEAD", "/v1/files/x"}, ""},
		{readToken, call{"GET", "/v1/config"}, ""},
		{readToken, call{"GET", "/metrics"}, ""},
		{readToken, call{"PUT", "/v1/objects/x"}, `token "dash" (policy read) may not PUT /v1/objects/{key...}: needs write`},
		{readToken, call{"DELETE", "/v1/objects/x"}, `token "dash" (policy read) may not DELETE /v1/objects/{key...}: needs write`},
		{readToken, call{"DELETE", "/v1/files/x"}, `may not DELETE /v1/files/{path...}: needs write`},
		{readToken, call{"POST", "/v1/config/reload"}, `token "dash" (policy read) may not POST /v1/config/reload: needs admin`},
		{readToken, call{"POST", "/v1/subsystems/echo/rpc/a.B/C"}, `needs write`},
		{readToken, call{"POST", "/v1/backups"}, `needs write`},
		{writeToken, call{"PUT", "/v1/objects/x"}, ""},
		{writeToken, call{"POST", "/v1/backups/restores"}, ""},
		{writeToken, call{"POST", "/v1/subsystems/echo/rpc/a.B/C"}, ""},
		{writeToken, call{"POST", "/v1/config/reload"}, `token "cron" (policy write) may not POST /v1/config/reload: needs admin`},
		{writeToken, call{"POST", "/v1/config/validate"}, `needs admin`},
		{writeToken, call{"POST", "/v1/plugins/dbstorage/restart"}, `may not POST /v1/plugins/{name}/restart: needs admin`},
		{writeToken, call{"POST", "/v1/backups/prune"}, `may not POST /v1/backups/prune: needs admin`},
		{writeToken, call{"DELETE", "/v1/backups/snapshots/abc"}, `may not DELETE /v1/backups/snapshots/{id}: needs admin`},
		{adminToken, call{"POST", "/v1/config/reload"}, ""},
		{adminToken, call{"POST", "/v1/plugins/dbstorage/restart"}, ""},
		{adminToken, call{"DELETE", "/v1/backups/snapshots/abc"}, ""},
		// Limited to dbstorage: its routes as the policy allows, other
		// subsystems refused, host-wide routes as the policy allows.
		{objectsOnly, call{"PUT", "/v1/objects/x"}, ""},
		{objectsOnly, call{"GET", "/v1/subsystems/dbstorage/limits"}, ""},
		{objectsOnly, call{"POST", "/v1/subsystems/dbstorage/rpc/a.B/C"}, ""},
		{objectsOnly, call{"GET", "/v1/plugins"}, ""},
		{objectsOnly, call{"GET", "/metrics"}, ""},
		{objectsOnly, call{"PUT", "/v1/files/x"}, `token "objbot" may not touch subsystem "filesystem" (PUT /v1/files/{path...}): it is limited to dbstorage`},
		{objectsOnly, call{"GET", "/v1/backups/jobs"}, `may not touch subsystem "dataprotection"`},
		{objectsOnly, call{"GET", "/v1/fabric"}, `may not touch subsystem "fabric"`},
		{objectsOnly, call{"GET", "/v1/subsystems/filesystem/health"}, `may not touch subsystem "filesystem"`},
		{objectsOnly, call{"POST", "/v1/subsystems/fabric/rpc/a.B/C"}, `may not touch subsystem "fabric"`},
		{objectsOnly, call{"POST", "/v1/plugins/dbstorage/restart"}, `needs admin`},
		{objectsOnly, call{"POST", "/v1/config/reload"}, `needs admin`},
	}
	for _, c := range cases {
		r := do(t, h, c.call.method, c.call.path, c.token, "")
		if c.refuse == "" {
			if r.code == http.StatusForbidden || r.code == http.StatusUnauthorized {
				t.Errorf("%s %s with %s: %d %s, want it past the checks", c.call.method, c.call.path, c.token, r.code, r.body)
			}
			continue
		}
		if r.code != http.StatusForbidden {
			t.Errorf("%s %s with %s: %d %s, want 403", c.call.method, c.call.path, c.token, r.code, r.body)
			continue
		}
		if c.call.method == "HEAD" {
			continue
		}
		e := errorOf(t, r)
		if e.Code != "forbidden" || !strings.Contains(e.Message, c.refuse) {
			t.Errorf("%s %s with %s: %+v, want forbidden with %q", c.call.method, c.call.path, c.token, e, c.refuse)
		}
		if strings.Contains(r.body, c.token) {
			t.Errorf("403 shows the token: %s", r.body)
		}
		if r.header.Get("Connection") != "close" {
			t.Errorf("%s %s with %s: 403 without Connection: close", c.call.method, c.call.path, c.token)
		}
	}
}

// A write token stores an object (2xx) through the real gRPC path; a read
// token reads it back and cannot delete it.
func TestScopedTokensOnObjects(t *testing.T) {
	e := newObjectEnv(t)
	if err := e.server.SetTokens(scopedCreds()); err != nil {
		t.Fatal(err)
	}
	e.token = writeToken
	if r := e.call(t, "PUT", "/v1/objects/scoped", "data", nil); r.code/100 != 2 {
		t.Fatalf("PUT with the write token: %d %s", r.code, r.body)
	}
	e.token = readToken
	if r := e.call(t, "GET", "/v1/objects/scoped", "", nil); r.code != 200 || r.body != "data" {
		t.Fatalf("GET with the read token: %d %s", r.code, r.body)
	}
	if r := e.call(t, "DELETE", "/v1/objects/scoped", "", nil); r.code != http.StatusForbidden {
		t.Fatalf("DELETE with the read token: %d %s", r.code, r.body)
	}
	e.token = objectsOnly
	if r := e.call(t, "DELETE", "/v1/objects/scoped", "", nil); r.code/100 != 2 {
		t.Fatalf("DELETE with the dbstorage-only write token: %d %s", r.code, r.body)
	}
}

// Without tokens (loopback only) every route is open, as before.
func TestNoTokensNoScopes(t *testing.T) {
	s := serverWithConfig(t)
	if r := do(t, s.Handler(), "POST", "/v1/config/reload", "", ""); r.code != 200 {
		t.Errorf("reload without tokens configured: %d %s", r.code, r.body)
	}
}
