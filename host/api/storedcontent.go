package api

import (
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Stored content is the caller's data, served from the API's own origin:
// opened in a browser, an object stored as text/html (or SVG, XML,
// JavaScript) would run its scripts with the API's origin, and could call
// it (POST /v1/config/reload when no tokens are configured). So every GET
// and HEAD of an object or a file (ranges too) answers with:
//
//   - X-Content-Type-Options: nosniff: a browser never guesses a type
//     (objects stored without one are application/octet-stream; files
//     always are), so only the stored type decides.
//   - Content-Security-Policy: storedContentCSP: the content runs in a
//     sandbox of its own (an opaque origin: no scripts, no forms, no
//     same-origin requests with the API's cookies or storage) and loads
//     nothing; inline styles stay, so that text and images render (the
//     policy GitHub serves raw files with).
//   - Cross-Origin-Resource-Policy: same-origin: other sites cannot embed
//     it (an image, a script) in their pages.
//   - Content-Disposition: attachment for every type that is not on the
//     short list of passive ones (inlineTypes): the browser downloads it
//     instead of showing it. An allow list, so that a type a browser may
//     execute and nobody thought of (text/xsl, application/xhtml+xml,
//     multipart/x-mixed-replace, a malformed value) is downloaded too.
//     The file name is the last segment of the key or path, in RFC 6266's
//     filename* parameter (UTF-8, percent-encoded); none when that segment
//     is empty or not UTF-8. Content-Disposition only matters to a browser
//     navigating to the URL; API clients ignore it.
const storedContentCSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"

// inlineTypes are the media types a browser may show inline: none of them
// runs code. Besides these, audio/* and video/*.
var inlineTypes = map[string]bool{
	"application/octet-stream": true, // downloaded by browsers anyway
	"application/json":         true,
	"text/plain":               true,
	"text/csv":                 true,
	"image/png":                true,
	"image/jpeg":               true,
	"image/gif":                true,
	"image/webp":               true,
	"image/avif":               true,
	"image/bmp":                true,
}

// setStoredContentHeaders sets the headers above on the response to a GET
// or HEAD of stored content named name, after its Content-Type is set.
func setStoredContentHeaders(h http.Header, name string) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", storedContentCSP)
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !inlineType(h.Get("Content-Type")) {
		h.Set("Content-Disposition", attachment(name))
	}
}

// inlineType reports whether a Content-Type value is a passive type
// (case and parameters do not matter); empty or malformed is not.
func inlineType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return inlineTypes[mt] || strings.HasPrefix(mt, "audio/") || strings.HasPrefix(mt, "video/")
}

// attachment is the Content-Disposition of a download of name: its last
// segment as the file name, RFC 6266 / RFC 8187 encoded.
func attachment(name string) string {
	seg := name[strings.LastIndexByte(name, '/')+1:]
	if seg == "" || !utf8.ValidString(seg) {
		return "attachment"
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.WriteString("attachment; filename*=UTF-8''")
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if attrChar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// attrChar reports whether c may appear unencoded in an RFC 8187 value.
func attrChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~", c) >= 0
}
