package api

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/datawarehouse/dw/sdk/v6"
)

// FuzzFabricPageQuery checks that the query of GET /v1/fabric/nodes either
// fails with a 400 whose message is bounded UTF-8, or yields a limit from
// 0 (not given) to MaxFabricPageSize and a page token within the listing
// rule that survives being sent back as a query. Run it with
//
//	go test -run '^$' -fuzz FuzzFabricPageQuery ./host/api/
func FuzzFabricPageQuery(f *testing.F) {
	for _, s := range []string{"", "limit=1", "limit=1000", "limit=1001", "limit=0", "limit=-1", "limit=%2B1", "limit=1e3",
		"page_token=abc", "page_token=a%00b", "page_token=%FF", "limit=5&page_token=n1", "limit=5&limit=6", "x=1", "%zz", ";", "limit=0000000005"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		token, limit, err := fabricPageQuery(raw)
		if err != nil {
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("%q: error %v does not wrap ErrInvalidArgument", raw, err)
			}
			if msg := err.Error(); !utf8.ValidString(msg) || len(msg) > 600 {
				t.Fatalf("%q: error message of %d bytes, UTF-8 %t", raw, len(msg), utf8.ValidString(msg))
			}
			return
		}
		if limit < 0 || limit > MaxFabricPageSize {
			t.Fatalf("%q: accepted limit %d", raw, limit)
		}
		if len(token) > maxPageTokenBytes || !utf8.ValidString(token) || strings.ContainsFunc(token, isControl) {
			t.Fatalf("%q: accepted token %q", raw, token)
		}
		q := url.Values{}
		if limit > 0 {
			q.Set("limit", strconv.Itoa(int(limit)))
		}
		if token != "" {
			q.Set("page_token", token)
		}
		again, limit2, err := fabricPageQuery(q.Encode())
		if err != nil || again != token || limit2 != limit {
			t.Fatalf("%q → %q: %q %d %v, want %q %d", raw, q.Encode(), again, limit2, err, token, limit)
		}
	})
}
