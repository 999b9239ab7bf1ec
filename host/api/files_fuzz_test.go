package api

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
)

// FuzzFilePath sends GET /v1/files/{escaped} to a host whose filesystem
// plugin is down: a request is either refused (400) or gets as far as the
// store (503), and then the path it carries is the escaped path decoded
// once, valid under sdk.ValidateFilePath, so without a ".." name: nothing
// escapes the root on its way through the host. Run it with
//
//	go test -run '^$' -fuzz FuzzFilePath ./host/api/
func FuzzFilePath(f *testing.F) {
	for _, p := range append(traversalPaths, "a", "a/b", "a/", "", "%252e%252e", "...", "a%2Fb", "d/sub/") {
		f.Add(p)
	}
	down := &fakePlugins{ClientFunc: func(name string) (*pluginhost.Client, error) {
		return nil, fmt.Errorf("plugin %s: %w", name, sdk.ErrUnavailable)
	}}
	s, _ := newTestServer(f, down, nil)
	h := s.Handler()
	f.Fuzz(func(t *testing.T, escaped string) {
		u, err := url.ParseRequestURI(filesPath + "/" + escaped)
		if err != nil || u.RawQuery != "" || u.ForceQuery {
			return
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.URL = u
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case 400:
			return
		case 503:
		default:
			t.Fatalf("GET %s: %d %s", u.EscapedPath(), w.Code, w.Body)
		}
		rest := strings.TrimPrefix(u.EscapedPath(), filesPath+"/")
		if rest == "" {
			return // the root folder
		}
		p, err := url.PathUnescape(strings.TrimSuffix(rest, "/"))
		if err != nil {
			t.Fatalf("GET %s passed with a malformed escape: %v", u.EscapedPath(), err)
		}
		if err := sdk.ValidateFilePath(p); err != nil {
			t.Fatalf("GET %s passed with path %q: %v", u.EscapedPath(), p, err)
		}
		for name := range strings.SplitSeq(p, "/") {
			if name == ".." || name == "." || name == "" {
				t.Fatalf("GET %s passed with path %q", u.EscapedPath(), p)
			}
		}
	})
}
