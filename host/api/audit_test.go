package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/host/supervisor"
)

// auditServer is a Server with the scoped tokens and every host route,
// auditing to a, and counting reloads.
func auditServer(t testing.TB, a config.Audit, logger hclog.Logger) (*Server, *int) {
	t.Helper()
	s, err := New(Options{Plugins: &fakePlugins{}, Credentials: scopedCreds(), Audit: a, Logger: logger, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.audit.sink.close() })
	reloads := new(int)
	s.HandleConfig(&fakeConfig{
		InfoFunc: func() any { return map[string]any{"generation": 1} },
		ReloadFunc: func(_ context.Context, _ string) (any, error) {
			*reloads++
			return map[string]any{"ok": true}, nil
		},
		ValidateFunc: func(context.Context, []byte) any { return map[string]any{"ok": true} },
	})
	return s, reloads
}

// readAudit returns the lines of an audit file.
func readAudit(t testing.TB, path string) []auditLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []auditLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func TestAuditFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	s, reloads := auditServer(t, config.Audit{Path: path}, nil)
	h := s.Handler()
	longKey := strings.Repeat("k", 1000)
	calls := []struct {
		method, path, token, body string
		code                      int
	}{
		{"GET", "/v1/plugins", adminToken, "", 200},                       // not audited
		{"PUT", "/v1/objects/a%20b", writeToken, "hello", 503},            // mutating
		{"PUT", "/v1/objects/" + longKey, writeToken, "", 503},            // mutating, long path
		{"DELETE", "/v1/objects/x", readToken, "", 403},                   // refused
		{"GET", "/v1/plugins", "", "", 401},                               // refused
		{"GET", "/v1/plugins", "wrong-0123456789abcdef", "", 401},         // refused
		{"POST", "/v1/config/reload", adminToken, "", 200},                // admin: two lines
		{"POST", "/v1/config/validate", writeToken, "log: {}", 403},       // refused
		{"POST", "/no/such/route", adminToken, "", 404},                   // mutating, unmatched
		{"GET", "/v1/subsystems/filesystem/limits", objectsOnly, "", 403}, // refused (subsystem)
		{"POST", "/v1/config/validate", adminToken, "log: {}", 200},       // admin: two lines
	}
	for _, c := range calls {
		if r := do(t, h, c.method, c.path, c.token, c.body); r.code != c.code {
			t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, r.code, r.body, c.code)
		}
	}
	if *reloads != 1 {
		t.Fatalf("%d reloads", *reloads)
	}
	lines := readAudit(t, path)
	type brief struct {
		Stage, Token, Method, Route, Subsystem string
		Status                                 int
	}
	var got []brief
	for _, l := range lines {
		got = append(got, brief{l.Stage, l.Token, l.Method, l.Route, l.Subsystem, l.Status})
		if _, err := time.Parse(time.RFC3339Nano, l.Time); err != nil || !strings.HasSuffix(l.Time, "Z") {
			t.Errorf("time %q: %v", l.Time, err)
		}
		if l.Remote != "192.0.2.1:1234" {
			t.Errorf("remote %q", l.Remote)
		}
		if len(l.Path) > auditMaxField {
			t.Errorf("path of %d bytes", len(l.Path))
		}
	}
	want := []brief{
		{"response", "cron", "PUT", "PUT /v1/objects/{key...}", "dbstorage", 503},
		{"response", "cron", "PUT", "PUT /v1/objects/{key...}", "dbstorage", 503},
		{"response", "dash", "DELETE", "DELETE /v1/objects/{key...}", "dbstorage", 403},
		{"response", "", "GET", "GET /v1/plugins", "", 401},
		{"response", "", "GET", "GET /v1/plugins", "", 401},
		{"request", "ops", "POST", "POST /v1/config/reload", "", 0},
		{"response", "ops", "POST", "POST /v1/config/reload", "", 200},
		{"response", "cron", "POST", "POST /v1/config/validate", "", 403},
		{"response", "ops", "POST", "unmatched", "", 404},
		{"response", "objbot", "GET", "GET /v1/subsystems/{name}/limits", "filesystem", 403},
		{"request", "ops", "POST", "POST /v1/config/validate", "", 0},
		{"response", "ops", "POST", "POST /v1/config/validate", "", 200},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("audit lines:\n got %v\nwant %v", got, want)
	}
	if lines[0].Path != "/v1/objects/a%20b" || lines[0].BytesOut == 0 || lines[0].Error != "unavailable" {
		t.Errorf("first line %+v", lines[0])
	}
	if l := lines[len(lines)-1]; l.BytesIn != int64(len("log: {}")) || l.BytesOut == 0 || l.DurationMS <= 0 {
		t.Errorf("validate's line %+v, want the bytes read and written", l)
	}
	if !strings.HasSuffix(lines[1].Path, "…") {
		t.Errorf("long path not cut: %q", lines[1].Path)
	}
	if lines[2].Error != "forbidden" || lines[3].Error != "unauthenticated" {
		t.Errorf("error codes %q %q", lines[2].Error, lines[3].Error)
	}
	data, _ := os.ReadFile(path)
	for _, c := range scopedCreds() {
		if bytes.Contains(data, []byte(c.Value)) {
			t.Errorf("the audit file holds the token of %s", c.Name)
		}
	}
	if bytes.Contains(data, []byte("wrong-0123456789abcdef")) {
		t.Error("the audit file holds a refused token")
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode %v (%v), want 0600", fi.Mode(), err)
	}
}

// An existing audit file readable by others is made 0600.
func TestAuditFileTightensMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	auditServer(t, config.Audit{Path: path}, nil)
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
}

func TestAuditFileRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	s, _ := auditServer(t, config.Audit{Path: path, MaxSize: 600, MaxFiles: 2}, nil)
	for i := range 20 {
		do(t, s.Handler(), "PUT", fmt.Sprintf("/v1/objects/%d", i), writeToken, "x")
	}
	names, _ := filepath.Glob(path + "*")
	if fmt.Sprint(names) != fmt.Sprint([]string{path, path + ".1", path + ".2"}) {
		t.Fatalf("files %v, want audit.log, .1 and .2", names)
	}
	total := 0
	for _, n := range names {
		fi, _ := os.Stat(n)
		if fi.Size() > 600 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %d bytes, mode %v", n, fi.Size(), fi.Mode())
		}
		total += len(readAudit(t, n))
	}
	// The newest lines are kept: the last is in audit.log, and the
	// rotated files hold the ones before.
	last := readAudit(t, path)
	if got := last[len(last)-1].Path; got != "/v1/objects/19" {
		t.Errorf("last line %s", got)
	}
	if older := readAudit(t, path+".1"); older[len(older)-1].Path >= last[0].Path && len(last[0].Path) == len(older[0].Path) {
		t.Errorf("audit.log.1 ends with %s, audit.log begins with %s", older[len(older)-1].Path, last[0].Path)
	}
	if total >= 20 {
		t.Errorf("%d lines kept with max_files 2; the oldest should be gone", total)
	}
}

// max_files 0 keeps no rotated file.
func TestAuditFileRotatesWithoutKeeping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	s, _ := auditServer(t, config.Audit{Path: path, MaxSize: 400}, nil)
	for i := range 10 {
		do(t, s.Handler(), "PUT", fmt.Sprintf("/v1/objects/%d", i), writeToken, "x")
	}
	if names, _ := filepath.Glob(path + "*"); len(names) != 1 {
		t.Errorf("files %v, want audit.log alone", names)
	}
}

// When the audit log cannot be written, an admin request is refused with
// 500 audit_failed and does not run; other requests run, and every
// failure is counted and logged.
func TestAuditFailureRefusesAdminRequests(t *testing.T) {
	var logs bytes.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	s, reloads := auditServer(t, config.Audit{Path: "/dev/full"}, logger)
	h := s.Handler()
	r := do(t, h, "POST", "/v1/config/reload", adminToken, "")
	if e := errorOf(t, r); r.code != 500 || e.Code != "audit_failed" {
		t.Fatalf("reload with a broken audit log: %d %+v", r.code, e)
	}
	if *reloads != 0 {
		t.Fatal("the reload ran although it could not be audited")
	}
	if r := do(t, h, "PUT", "/v1/objects/x", writeToken, "x"); r.code == 500 {
		t.Errorf("a write request failed on the audit log: %s", r.body)
	}
	var m dto.Metric
	if err := s.audit.errors.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 2 {
		t.Errorf("dw_audit_write_errors_total = %v, want 2", n)
	}
	if !strings.Contains(logs.String(), "[ERROR] audit log write failed") {
		t.Errorf("no error logged:\n%s", logs.String())
	}
	// A parent that is a regular file cannot hold the audit log: New
	// refuses it.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	_, err := New(Options{Plugins: &fakePlugins{}, Audit: config.Audit{Path: filepath.Join(file, "audit.log")}})
	if err == nil || !strings.Contains(err.Error(), "server.audit.path") {
		t.Errorf("New with an audit path under a file: %v", err)
	}
	// SetAudit switches to a working file; a bad one keeps the current.
	good := filepath.Join(t.TempDir(), "audit.log")
	if err := s.SetAudit(config.Audit{Path: filepath.Join(file, "x")}); err == nil {
		t.Error("SetAudit to a path under a file succeeded")
	}
	if err := s.SetAudit(config.Audit{Path: good}); err != nil {
		t.Fatal(err)
	}
	if r := do(t, h, "POST", "/v1/config/reload", adminToken, ""); r.code != 200 || *reloads != 1 {
		t.Fatalf("reload after switching to a good audit file: %d %s", r.code, r.body)
	}
	if lines := readAudit(t, good); len(lines) != 2 {
		t.Errorf("%d lines in the new audit file, want 2", len(lines))
	}
}

// Without a path, the audit log is the host log, logger "audit".
func TestAuditToHostLog(t *testing.T) {
	var logs bytes.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Name: "api", Output: &logs, Level: hclog.Info, JSONFormat: true})
	s, _ := auditServer(t, config.Audit{}, logger)
	do(t, s.Handler(), "DELETE", "/v1/objects/k", readToken, "")
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["@module"] == "api.audit" {
			line = m
		}
	}
	if line == nil || line["token"] != "dash" || line["route"] != "DELETE /v1/objects/{key...}" || line["status"] != float64(403) {
		t.Errorf("audit line in the host log: %v\n%s", line, logs.String())
	}
	if strings.Contains(logs.String(), readToken) {
		t.Error("the host log holds a token")
	}
}

// The reproduction: the headers of a PUT with Content-Length: 10,
// no body and no token. The 401 must come at once and the connection
// close, instead of the server waiting for the body.
func TestRefusalDoesNotWaitForTheBody(t *testing.T) {
	s, _ := newTestServer(t, &fakePlugins{}, map[string]string{tok: "alice"})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	for _, c := range []struct{ name, auth string }{
		{"no token", ""},
		{"wrong token", "Authorization: Bearer wrong-0123456789abcdef\r\n"},
		{"read-only 403", ""}, // replaced below
	} {
		auth := c.auth
		if c.name == "read-only 403" {
			if err := s.SetTokens(append(scopedCreds(), cred("alice", tok, ""))); err != nil {
				t.Fatal(err)
			}
			auth = "Authorization: Bearer " + readToken + "\r\n"
		}
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "PUT /v1/objects/x HTTP/1.1\r\nHost: dw\r\n%sContent-Length: 10\r\n\r\n", auth)
		// Generous: the test fails on a missing answer, not on a slow one.
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatalf("%s: no answer before the body was sent: %v", c.name, err)
		}
		rest, err := io.ReadAll(io.MultiReader(resp.Body, conn))
		conn.Close()
		if err != nil {
			t.Errorf("%s: the connection was not closed after the answer: %v", c.name, err)
		}
		want := http.StatusUnauthorized
		if c.name == "read-only 403" {
			want = http.StatusForbidden
		}
		if resp.StatusCode != want || !resp.Close {
			t.Errorf("%s: %d close=%v %s, want %d and Connection: close", c.name, resp.StatusCode, resp.Close, rest, want)
		}
	}
}

// /readyz shows its detail when the API runs without tokens (loopback).
func TestReadyzDetailWithoutTokensConfigured(t *testing.T) {
	s, _ := newTestServer(t, &fakePlugins{StatusesFunc: func() []supervisor.Status {
		return []supervisor.Status{{Name: "b", State: supervisor.StateRefused, LastError: "/opt/dw/plugins/dw-plugin-b: bad"}}
	}}, nil)
	r := do(t, s.Handler(), "GET", "/readyz", "", "")
	if r.code != 503 || !strings.Contains(r.body, "/opt/dw/plugins") {
		t.Errorf("readyz without tokens configured: %d %s", r.code, r.body)
	}
}
