package api

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/datawarehouse/dw/sdk/v6"
)

// browserGuard refuses what a web page could make a browser send to the
// API: the API serves programs (dw, curl, scripts), not pages, and without
// tokens a page on any site could otherwise POST to a loopback listener
// (a "simple" cross-origin request needs no preflight) or reach it through
// DNS rebinding. So:
//
//   - a request a browser marks as cross-site (Sec-Fetch-Site: cross-site
//     or same-site), or whose Origin is not the API's own, is 403;
//   - without tokens (the loopback-only mode), a Host that is not a
//     loopback address or "localhost" is 403: a rebound name cannot reach
//     the API.
//
// Programs send neither header and are not affected.
func browserGuard(r *http.Request, loopbackMode bool) error {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "cross-site", "same-site":
		return fmt.Errorf("%w: the API refuses requests a browser sends from another site (Sec-Fetch-Site: %s)", sdk.ErrPermissionDenied, site)
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
			return fmt.Errorf("%w: the API refuses cross-origin requests (Origin %.100q, host %.100q)", sdk.ErrPermissionDenied, origin, r.Host)
		}
	}
	if loopbackMode && !loopbackHost(r.Host) {
		return fmt.Errorf("%w: without tokens the API answers only loopback hosts (127.0.0.1, ::1, localhost), not Host %.100q", sdk.ErrPermissionDenied, r.Host)
	}
	return nil
}

// loopbackHost reports whether a Host header names this machine's
// loopback: an IP in 127.0.0.0/8 or ::1, or "localhost", with or without a
// port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
