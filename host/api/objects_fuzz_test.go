package api

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/datawarehouse/dw/sdk/v6"
)

// The seed corpus is under testdata/fuzz/<FuzzName>/; `go test` runs it as
// ordinary tests. Run a fuzzer with, e.g.,
//
//	go test -run '^$' -fuzz FuzzParseRange ./host/api/

// FuzzParseRange checks that parseRange never panics, that every error is
// a 400, and that what it accepts is a well-formed range that prints back
// to a header it parses the same way.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-99", "bytes=5-", "bytes=-5", "bytes=0-1,2-3", "bytes=99999999999999999999-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, err := parseRange([]string{v})
		if err != nil {
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("%q: error %v does not wrap ErrInvalidArgument", v, err)
			}
			if !utf8.ValidString(err.Error()) {
				t.Fatalf("%q: error message is not UTF-8: %q", v, err.Error())
			}
			return
		}
		if !r.set {
			t.Fatalf("%q: accepted but not set", v)
		}
		switch {
		case r.suffix:
			if r.suffixLen < 0 {
				t.Fatalf("%q: suffix %d", v, r.suffixLen)
			}
		case r.first < 0 || (r.last != -1 && r.last < r.first):
			t.Fatalf("%q: range %d-%d", v, r.first, r.last)
		}
		if strings.Contains(v, ",") {
			t.Fatalf("%q: several ranges accepted", v)
		}
		again, err := parseRange([]string{r.String()})
		if err != nil || again != r {
			t.Fatalf("%q → %s → %+v, %v", v, r, again, err)
		}
	})
}

// FuzzParseObjectKey checks that an escaped path either fails with a 400
// or yields a key that follows the key rules and survives escaping.
func FuzzParseObjectKey(f *testing.F) {
	for _, s := range []string{"a", "a//b", "x/../y", "a%2Fb", "%25", "%FF", "a%00b", "%zz", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, escaped string) {
		key, err := parseObjectKey(escaped)
		if err != nil {
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("%q: error %v does not wrap ErrInvalidArgument", escaped, err)
			}
			if len(err.Error()) > 600 {
				t.Fatalf("%q: error message of %d bytes", escaped, len(err.Error()))
			}
			return
		}
		if key == "" || len(key) > maxKeyBytes || !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0 {
			t.Fatalf("%q: accepted key %q breaks the rules", escaped, key)
		}
		if again, err := parseObjectKey(url.PathEscape(key)); err != nil || again != key {
			t.Fatalf("%q: key %q does not survive escaping: %q %v", escaped, key, again, err)
		}
	})
}

// FuzzParseListQuery checks that parseListQuery never panics, that every
// error is a 400, and that an accepted query is within the rules.
func FuzzParseListQuery(f *testing.F) {
	for _, s := range []string{"prefix=a&limit=10", "stream=true", "offset=5&page_token=x", "limit=0", "lmit=1", "a;b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseListQuery(raw)
		if err != nil {
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("%q: error %v does not wrap ErrInvalidArgument", raw, err)
			}
			return
		}
		values, perr := url.ParseQuery(raw)
		if perr != nil {
			t.Fatalf("%q: accepted a query url.ParseQuery refuses: %v", raw, perr)
		}
		_, hasLimit := values["limit"]
		switch {
		case q.limit < 0 || hasLimit && q.limit < 1:
			t.Fatalf("%q: limit %d", raw, q.limit)
		case q.offset < 0:
			t.Fatalf("%q: offset %d", raw, q.offset)
		case q.offset > 0 && q.pageToken != "":
			t.Fatalf("%q: offset and page_token", raw)
		case q.stream && (q.limit != 0 || q.offset != 0 || q.pageToken != "" || q.count):
			t.Fatalf("%q: stream with paging", raw)
		case len(q.prefix) > maxPrefixBytes || !utf8.ValidString(q.prefix) || strings.IndexByte(q.prefix, 0) >= 0:
			t.Fatalf("%q: prefix %q", raw, q.prefix)
		case len(q.pageToken) > maxPageTokenBytes || !utf8.ValidString(q.pageToken):
			t.Fatalf("%q: page token", raw)
		}
		for name, vs := range values {
			if len(vs) != 1 || !slices.Contains(listParams, name) {
				t.Fatalf("%q: accepted parameter %q %v", raw, name, vs)
			}
		}
	})
}
