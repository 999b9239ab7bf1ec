package api

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStoredContentHeaders(t *testing.T) {
	for _, tc := range []struct {
		ct, name, disposition string // disposition "": none
	}{
		{"text/html", "site/index.html", "attachment; filename*=UTF-8''index.html"},
		{"TEXT/HTML; charset=utf-8", "a.htm", "attachment; filename*=UTF-8''a.htm"},
		{"text/html;charset=UTF-8", "x", "attachment; filename*=UTF-8''x"},
		{"image/svg+xml", "logo.svg", "attachment; filename*=UTF-8''logo.svg"},
		{"application/xhtml+xml", "p", "attachment; filename*=UTF-8''p"},
		{"text/xml", "p.xml", "attachment; filename*=UTF-8''p.xml"},
		{"application/xml", "p.xml", "attachment; filename*=UTF-8''p.xml"},
		{"text/javascript", "app.js", "attachment; filename*=UTF-8''app.js"},
		{"application/javascript", "app.js", "attachment; filename*=UTF-8''app.js"},
		{"text/xsl", "t.xsl", "attachment; filename*=UTF-8''t.xsl"},
		{"application/pdf", "r.pdf", "attachment; filename*=UTF-8''r.pdf"},
		{"multipart/x-mixed-replace; boundary=x", "m", "attachment; filename*=UTF-8''m"},
		{"", "empty-type", "attachment; filename*=UTF-8''empty-type"},
		{"not a type", "bad", "attachment; filename*=UTF-8''bad"},
		{"text/html", "dir/", "attachment"},
		{"text/html", "d/naïve file;\"x\".html", "attachment; filename*=UTF-8''na%C3%AFve%20file%3B%22x%22.html"},
		{"text/html", "bad\xffutf8", "attachment"},
		{"text/html", "crlf\r\nSet-Cookie: a=b", "attachment; filename*=UTF-8''crlf%0D%0ASet-Cookie%3A%20a%3Db"},
		// Passive types are shown inline.
		{"application/octet-stream", "blob", ""},
		{"text/plain; charset=utf-8", "notes.txt", ""},
		{"Text/Plain", "notes.txt", ""},
		{"text/csv", "t.csv", ""},
		{"application/json", "j", ""},
		{"image/png", "i.png", ""},
		{"image/jpeg", "i.jpg", ""},
		{"video/mp4", "v.mp4", ""},
		{"audio/ogg", "a.ogg", ""},
	} {
		h := http.Header{}
		h.Set("Content-Type", tc.ct)
		setStoredContentHeaders(h, tc.name)
		if got := h.Get("Content-Disposition"); got != tc.disposition {
			t.Errorf("%q named %q: Content-Disposition %q, want %q", tc.ct, tc.name, got, tc.disposition)
		}
		for k, want := range map[string]string{
			"X-Content-Type-Options":       "nosniff",
			"Content-Security-Policy":      "default-src 'none'; style-src 'unsafe-inline'; sandbox",
			"Cross-Origin-Resource-Policy": "same-origin",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%q: %s = %q, want %q", tc.ct, k, got, want)
			}
		}
	}
}

// FuzzAttachment: for any key, the Content-Disposition is visible ASCII
// and its filename* decodes back to the key's last segment.
func FuzzAttachment(f *testing.F) {
	for _, s := range []string{"a/b.html", "", "/", "x\r\ny", "naïve file.txt", "\xff", "a%20b", "''", "日本/語.html"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		v := attachment(name)
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] > 0x7e {
				t.Fatalf("attachment(%q) = %q: byte %#x is not visible ASCII", name, v, v[i])
			}
		}
		enc, ok := strings.CutPrefix(v, "attachment; filename*=UTF-8''")
		seg := name[strings.LastIndexByte(name, '/')+1:]
		if !ok {
			if v != "attachment" || (seg != "" && utf8.ValidString(seg)) {
				t.Fatalf("attachment(%q) = %q", name, v)
			}
			return
		}
		if strings.ContainsAny(enc, " ;\"'\\,") {
			t.Fatalf("attachment(%q) = %q: a separator is not encoded", name, v)
		}
		dec, err := url.PathUnescape(enc)
		if err != nil || dec != seg {
			t.Fatalf("attachment(%q) = %q decodes to %q (%v), want %q", name, v, dec, err, seg)
		}
	})
}
