package host_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/datawarehouse/dw/host"
	"github.com/datawarehouse/dw/host/api"
	"github.com/datawarehouse/dw/internal/hosttest"
)

// Every route of the real host, those it adds to the API (the config
// endpoints) included, is registered with a scope, and they are the
// routes the api package's route-scope test checks one by one: a route
// added by the host alone fails here.
func TestHostRoutesAllScoped(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	cfg := mustParse(t, fmt.Sprintf("server: {listen: 127.0.0.1:0}\ndata_dir: %s\nplugins: {dir: %s}\n", filepath.Join(dir, "data"), dir))
	h, err := host.New(cfg, host.Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(context.Background())
	routes := host.APIRoutes(h)
	bare, err := api.New(api.Options{Plugins: h.Plugins()})
	if err != nil {
		t.Fatal(err)
	}
	bare.HandleConfig(nil) // the api test's set: built-in routes and the config endpoints
	want := map[string]api.Route{}
	for _, rt := range bare.Routes() {
		want[rt.Pattern] = rt
	}
	for _, rt := range routes {
		if rt.Scope < api.ScopePublic || rt.Scope > api.ScopeAdmin {
			t.Errorf("route %s has no declared scope", rt.Pattern)
		}
		if w, ok := want[rt.Pattern]; !ok || w != rt {
			t.Errorf("host route %+v is not checked by host/api's TestRouteScopes (there: %+v); add it to wantRoutes", rt, w)
		}
	}
	if len(routes) != len(want) {
		t.Errorf("host has %d routes, the api %d", len(routes), len(want))
	}
}

// tokenOf makes a distinct 32-byte token.
func tokenOf(name string) string { return fmt.Sprintf("%-24s%08x", name+"-token", len(name)*7919) }

// The real host with the real dbstorage and filesystem plugins, scoped
// tokens from the config (through the environment) and the audit log
// switched live from the host log to a file, then to /dev/full, then back:
// each mutating or refused request is one line (admin ones two), no line
// holds a token, the file is 0600, and while the audit log cannot be
// written admin requests are refused and do not run.
func TestAuditAndScopesOnRealHost(t *testing.T) {
	dir := t.TempDir()
	hosttest.Plugin(t, dir, "dbstorage")
	hosttest.Plugin(t, dir, "filesystem")
	ops, dash, cron := tokenOf("ops"), tokenOf("dash"), tokenOf("cron")
	subsystems := "subsystems:\n" +
		"  dbstorage:\n    enabled: true\n    strategies:\n      - {name: primary, driver: sqlite, dsn: db/objects.sqlite}\n    default_strategy: primary\n" +
		"  filesystem:\n    enabled: true\n    root: files\n"
	h := hosttest.Start(t, dir, subsystems,
		"DW_SERVER__AUTH__TOKENS=[{name: ops, token_env: DW_T_OPS}, {name: dash, token_env: DW_T_DASH, policy: read},"+
			" {name: cron, token_env: DW_T_CRON, policy: write, subsystems: [dbstorage]}]",
		"DW_T_OPS="+ops, "DW_T_DASH="+dash, "DW_T_CRON="+cron)
	h.Token = ops
	h.WaitServing(t, "dbstorage", 60*time.Second)
	fsPID := h.WaitServing(t, "filesystem", 60*time.Second).PID

	call := func(token, method, path, body string, want int) []byte {
		t.Helper()
		h.Token = token
		defer func() { h.Token = ops }()
		code, data := h.Call(t, method, path, body)
		if code != want && !(want == 200 && code/100 == 2) {
			t.Fatalf("%s %s: %d %s, want %d", method, path, code, data, want)
		}
		return data
	}
	// switchAudit rewrites server.audit in the config file and waits for
	// the file watcher's reload.
	generation := 1
	switchAudit := func(auditYAML string) {
		t.Helper()
		h.Base = strings.Replace(h.Base, "server:\n", "server:\n"+auditYAML, 1)
		h.WriteConfig(t, subsystems)
		h.Base = strings.Replace(h.Base, auditYAML, "", 1)
		generation++
		hosttest.WaitFor(t, 30*time.Second, "the reload of server.audit", func() bool {
			var info struct{ Generation int }
			h.JSON(t, "GET", "/v1/config", nil, &info)
			return info.Generation == generation
		})
	}

	// 1. Without server.audit.path: the host log, logger "audit".
	call(ops, "PUT", "/v1/objects/in-log", "x", 200)
	hosttest.WaitFor(t, 10*time.Second, "the audit line in the host log", func() bool {
		return strings.Contains(h.Logs(), `"@module":"dw.api.audit"`) && strings.Contains(h.Logs(), `"route":"PUT /v1/objects/{key...}"`)
	})

	// 2. Switched live to a file.
	auditDir := filepath.Join(dir, "audit")
	if err := os.Mkdir(auditDir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(auditDir, "audit.log")
	switchAudit(fmt.Sprintf("  audit: {path: %s}\n", path))
	call(ops, "PUT", "/v1/objects/a", "hello", 200)
	call(ops, "PUT", "/v1/files/f.txt", "file", 200)
	call(ops, "DELETE", "/v1/objects/a", "", 200)
	call(cron, "PUT", "/v1/objects/b", "bee", 200)
	call(cron, "PUT", "/v1/files/g.txt", "no", 403)
	call(cron, "POST", "/v1/config/reload", "", 403)
	call(cron, "POST", "/v1/plugins/dbstorage/restart", "", 403)
	if got := call(dash, "GET", "/v1/objects/b", "", 200); string(got) != "bee" {
		t.Fatalf("GET with the read token: %s", got)
	}
	call(dash, "PUT", "/v1/objects/c", "no", 403)
	call(dash, "DELETE", "/v1/objects/b", "", 403)
	call(dash, "POST", "/v1/config/reload", "", 403)
	call("", "PUT", "/v1/objects/x", "no", 401)
	call("wrong-token-0123456789abcdef", "DELETE", "/v1/objects/b", "", 401)
	call(ops, "POST", "/v1/config/reload", "", 200)
	// /readyz: without a token, ready or not and nothing more.
	if got := call("", "GET", "/readyz", "", 200); strings.TrimSpace(string(got)) != `{"status":"ready"}` {
		t.Errorf("readyz without a token: %s", got)
	}
	call(dash, "GET", "/readyz", "", 200)

	type brief struct{ Stage, Token, Method, Route, Subsystem, Status string }
	var got []brief
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l struct {
			Stage, Token, Method, Route, Subsystem string
			Status                                 int
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %s: %v", sc.Text(), err)
		}
		got = append(got, brief{l.Stage, l.Token, l.Method, l.Route, l.Subsystem, fmt.Sprint(l.Status)})
	}
	// The first line is the response of the reload that opened the file.
	want := []brief{
		{"response", "ops", "PUT", "PUT /v1/objects/{key...}", "dbstorage", "201"},
		{"response", "ops", "PUT", "PUT /v1/files/{path...}", "filesystem", "201"},
		{"response", "ops", "DELETE", "DELETE /v1/objects/{key...}", "dbstorage", "204"},
		{"response", "cron", "PUT", "PUT /v1/objects/{key...}", "dbstorage", "201"},
		{"response", "cron", "PUT", "PUT /v1/files/{path...}", "filesystem", "403"},
		{"response", "cron", "POST", "POST /v1/config/reload", "", "403"},
		{"response", "cron", "POST", "POST /v1/plugins/{name}/restart", "dbstorage", "403"},
		{"response", "dash", "PUT", "PUT /v1/objects/{key...}", "dbstorage", "403"},
		{"response", "dash", "DELETE", "DELETE /v1/objects/{key...}", "dbstorage", "403"},
		{"response", "dash", "POST", "POST /v1/config/reload", "", "403"},
		{"response", "", "PUT", "PUT /v1/objects/{key...}", "dbstorage", "401"},
		{"response", "", "DELETE", "DELETE /v1/objects/{key...}", "dbstorage", "401"},
		{"request", "ops", "POST", "POST /v1/config/reload", "", "0"},
		{"response", "ops", "POST", "POST /v1/config/reload", "", "200"},
	}
	fix := func(bs []brief) string {
		var lines []string
		for _, b := range bs {
			lines = append(lines, fmt.Sprint(b))
		}
		return strings.Join(lines, "\n")
	}
	// Statuses of successful writes may be 200, 201 or 204: compare the
	// class.
	for i := range got {
		if i < len(want) && want[i].Status[0] == '2' && got[i].Status[0] == '2' {
			got[i].Status = want[i].Status
		}
	}
	if fix(got) != fix(want) {
		t.Errorf("audit file:\n%s\nwant:\n%s", fix(got), fix(want))
	}
	for name, v := range map[string]string{"ops": ops, "dash": dash, "cron": cron} {
		if bytes.Contains(data, []byte(v)) || strings.Contains(h.Logs(), v) {
			t.Errorf("the token of %s is in the audit file or the host log", name)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode: %v %v", fi.Mode(), err)
	}

	// 3. An audit log that cannot be written: admin requests are refused
	// and do not run; data requests go on; the failures are counted and
	// logged.
	switchAudit("  audit: {path: /dev/full}\n")
	code, body := h.Call(t, "POST", "/v1/plugins/filesystem/restart", nil)
	if code != http.StatusInternalServerError || !strings.Contains(string(body), `"audit_failed"`) {
		t.Fatalf("restart with a broken audit log: %d %s", code, body)
	}
	if pid := h.Plugin(t, "filesystem").PID; pid != fsPID {
		t.Fatalf("filesystem restarted (pid %d → %d) although its request could not be audited", fsPID, pid)
	}
	call(cron, "PUT", "/v1/objects/d", "still", 200)
	_, metrics := h.Call(t, "GET", "/metrics", nil)
	if !regexpMatch(`(?m)^dw_audit_write_errors_total [1-9]`, string(metrics)) {
		t.Error("dw_audit_write_errors_total is not counted in GET /metrics")
	}
	if !strings.Contains(h.Logs(), "audit log write failed") {
		t.Error("the audit failure is not in the host log")
	}

	// 4. Repaired by the file watcher (the API's reload is an admin
	// request, refused meanwhile): admin requests run again.
	path2 := filepath.Join(auditDir, "audit2.log")
	switchAudit(fmt.Sprintf("  audit: {path: %s}\n", path2))
	call(ops, "POST", "/v1/config/validate", "log: {level: info}\n", 200)
	if data, _ := os.ReadFile(path2); bytes.Count(data, []byte("POST /v1/config/validate")) != 2 {
		t.Errorf("audit2.log:\n%s", data)
	}
}
