package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/config"
)

// fakeConfig is a ConfigSource with function fields.
type fakeConfig struct {
	InfoFunc     func() any
	ReloadFunc   func(ctx context.Context, source string) (any, error)
	ValidateFunc func(ctx context.Context, yaml []byte) any
}

func (f *fakeConfig) ConfigInfo() any { return f.InfoFunc() }
func (f *fakeConfig) ReloadFile(ctx context.Context, source string) (any, error) {
	return f.ReloadFunc(ctx, source)
}
func (f *fakeConfig) ValidateConfig(ctx context.Context, yaml []byte) any {
	return f.ValidateFunc(ctx, yaml)
}

func TestConfigRoutes(t *testing.T) {
	var gotSource string
	var gotYAML []byte
	reloadErr := error(nil)
	src := &fakeConfig{
		InfoFunc: func() any { return map[string]any{"generation": 3, "file": "/etc/dw.yaml"} },
		ReloadFunc: func(_ context.Context, source string) (any, error) {
			gotSource = source
			return map[string]any{"ok": reloadErr == nil, "generation": 4}, reloadErr
		},
		ValidateFunc: func(_ context.Context, yaml []byte) any {
			gotYAML = yaml
			return map[string]any{"ok": false, "problems": []string{"x"}}
		},
	}
	s, _ := newTestServer(t, &fakePlugins{}, map[string]string{tok: "ops"})
	s.HandleConfig(src)

	r := do(t, s, "GET", "/v1/config", tok, "")
	if r.code != http.StatusOK || !strings.Contains(r.body, `"generation":3`) {
		t.Errorf("GET /v1/config: %d %s", r.code, r.body)
	}
	if r := do(t, s, "GET", "/v1/config", "", ""); r.code != http.StatusUnauthorized {
		t.Errorf("GET /v1/config without a token: %d", r.code)
	}

	r = do(t, s, "POST", "/v1/config/reload", tok, "")
	if r.code != http.StatusOK || !strings.Contains(r.body, `"generation":4`) || gotSource != "api (caller ops)" {
		t.Errorf("POST /v1/config/reload: %d %s (source %q)", r.code, r.body, gotSource)
	}
	reloadErr = errors.New("reload rejected: subsystems.a.limits.x: too big")
	r = do(t, s, "POST", "/v1/config/reload", tok, "")
	var rej struct {
		Error  ErrorDetail    `json:"error"`
		Result map[string]any `json:"result"`
	}
	if err := json.Unmarshal([]byte(r.body), &rej); err != nil {
		t.Fatal(err)
	}
	if r.code != http.StatusUnprocessableEntity || rej.Error.Code != "reload_rejected" || rej.Error.Message != reloadErr.Error() || rej.Result["ok"] != false {
		t.Errorf("rejected reload: %d %s", r.code, r.body)
	}
	if r := do(t, s, "GET", "/v1/config/reload", tok, ""); r.code != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/config/reload: %d", r.code)
	}

	r = do(t, s, "POST", "/v1/config/validate", tok, "log: {level: debug}\n")
	if r.code != http.StatusOK || string(gotYAML) != "log: {level: debug}\n" || !strings.Contains(r.body, `"ok":false`) {
		t.Errorf("POST /v1/config/validate: %d %s", r.code, r.body)
	}
	r = do(t, s, "POST", "/v1/config/validate", tok, " \n")
	if e := errorOf(t, r); r.code != http.StatusBadRequest || e.Code != "invalid_argument" || !strings.Contains(e.Message, "empty") {
		t.Errorf("empty body: %d %s", r.code, r.body)
	}
	r = do(t, s, "POST", "/v1/config/validate", tok, strings.Repeat("#", config.MaxFileSize+1))
	if e := errorOf(t, r); r.code != http.StatusRequestEntityTooLarge || e.Code != "payload_too_large" {
		t.Errorf("large body: %d %s", r.code, r.body)
	}
	if r := do(t, s, "POST", "/v1/config/validate", tok, strings.Repeat("#", config.MaxFileSize)); r.code != http.StatusOK {
		t.Errorf("body of exactly MaxFileSize: %d", r.code)
	}
}

func TestSetTokens(t *testing.T) {
	s, _ := newTestServer(t, &fakePlugins{}, nil)
	if r := do(t, s, "GET", "/v1/plugins", "", ""); r.code != http.StatusOK {
		t.Fatalf("no tokens: %d", r.code)
	}
	const newToken = "new-token-0123456789"
	if err := s.SetTokens([]config.Credential{cred("ops", newToken, config.PolicyRead)}); err != nil {
		t.Fatal(err)
	}
	if r := do(t, s, "GET", "/v1/plugins", "", ""); r.code != http.StatusUnauthorized {
		t.Errorf("after SetTokens, no token: %d", r.code)
	}
	if r := do(t, s, "GET", "/v1/plugins", newToken, ""); r.code != http.StatusOK {
		t.Errorf("after SetTokens, the new token: %d", r.code)
	}
	if r := do(t, s, "GET", "/healthz", "", ""); r.code != http.StatusOK {
		t.Errorf("healthz stays public: %d", r.code)
	}
	// A bad set changes nothing.
	for _, bad := range [][]config.Credential{
		{cred("ops", " padded-0123456789 ", "")},
		{cred("ops", "short-s3cret", "")},
		{cred("ops", "policy-s3cret-0123456789", "root")},
		{cred("ops", "twice-s3cret-0123456789", ""), cred("ci", "twice-s3cret-0123456789", "")},
	} {
		if err := s.SetTokens(bad); err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "padded") {
			t.Errorf("SetTokens(%s…): %v; want an error without the token", bad[0].Value, err)
		}
	}
	if r := do(t, s, "GET", "/v1/plugins", newToken, ""); r.code != http.StatusOK {
		t.Errorf("after a refused SetTokens, the token in force: %d", r.code)
	}
	if err := ValidateTokens([]config.Credential{cred("", "s3cret-0123456789", "")}); err == nil {
		t.Error("ValidateTokens accepted an empty caller name")
	}
	if err := s.SetTokens(nil); err != nil {
		t.Fatal(err)
	}
	if r := do(t, s, "GET", "/v1/plugins", "", ""); r.code != http.StatusOK {
		t.Errorf("after removing the tokens: %d", r.code)
	}
}

// cred is a credential of the tests.
func cred(name, value, policy string) config.Credential {
	return config.Credential{Token: config.Token{Name: name, Policy: policy}, Value: value}
}
