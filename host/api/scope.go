package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Scope is what a route needs of the token that calls it. Every route is
// registered with one; a token's policy reaches a scope (read reaches
// ScopeRead, write ScopeWrite, admin everything).
//
// Which route needs what (a test keeps this table and the registrations
// in step):
//
//	public  GET /healthz, GET /readyz (no token needed; /readyz shows its
//	        detail only to a valid token, see readyz)
//	read    every GET (and so HEAD) route
//	write   data: PUT and DELETE of objects and files, POST /v1/backups,
//	        POST /v1/backups/restores, POST /v1/backups/verify (it starts
//	        a job), DELETE /v1/backups/jobs/{id} (cancels one), and the
//	        gateway POST /v1/subsystems/{name}/rpc/…
//	admin   POST /v1/config/reload, POST /v1/config/validate, POST
//	        /v1/plugins/{name}/restart, POST /v1/backups/prune, DELETE
//	        /v1/backups/snapshots/{id} (forget), and whatever operator
//	        route comes next (PUT /v1/config, /debug/pprof)
type Scope int

// Route scopes, weakest first. The zero Scope is not a scope: registering
// a route with it panics.
const (
	ScopePublic Scope = iota + 1
	ScopeRead
	ScopeWrite
	ScopeAdmin
)

func (s Scope) String() string {
	switch s {
	case ScopePublic:
		return "public"
	case ScopeRead:
		return "read"
	case ScopeWrite:
		return "write"
	case ScopeAdmin:
		return "admin"
	}
	return fmt.Sprintf("Scope(%d)", int(s))
}

// subsystemFromPath marks a route whose subsystem is its {name} path
// value (/v1/subsystems/{name}/…, /v1/plugins/{name}/…: plugins are named
// after their subsystem).
const subsystemFromPath = "{name}"

// Route is a registered route and what it needs, for Server.Routes.
type Route struct {
	// Pattern is the ServeMux pattern, also the route label of metrics and
	// the audit log.
	Pattern string
	// Scope is what the calling token's policy must reach.
	Scope Scope
	// Subsystem is the subsystem the route touches: a subsystem name (the
	// same constants the handlers find their plugin by, such as
	// ObjectsSubsystem), "{name}" for the route's {name} path value, or ""
	// for a host-wide route, which a token limited to some subsystems
	// may call as its policy allows.
	Subsystem string
}

// subsystemOf returns the subsystem r touches on rt ("" for host-wide).
// For "{name}" routes it needs r's path values, set by the ServeMux.
func (rt *Route) subsystemOf(r *http.Request) string {
	if rt.Subsystem == subsystemFromPath {
		return r.PathValue("name")
	}
	return rt.Subsystem
}

// Routes returns every registered route, sorted by pattern.
func (s *Server) Routes() []Route {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Route, 0, len(s.routes))
	for _, rt := range s.routes {
		out = append(out, *rt)
	}
	slices.SortFunc(out, func(a, b Route) int { return strings.Compare(a.Pattern, b.Pattern) })
	return out
}

// authorize checks the grant g (nil: no authentication) against route rt
// for r, and returns the subsystem r touches.
func authorize(g *grant, rt *Route, r *http.Request) (subsystem string, err *httpError) {
	subsystem = rt.subsystemOf(r)
	if g == nil || rt.Scope == ScopePublic {
		return subsystem, nil
	}
	if g.reach < rt.Scope {
		return subsystem, &httpError{status: http.StatusForbidden, code: "forbidden", msg: fmt.Sprintf(
			"token %q (policy %s) may not %s: needs %s", g.name, g.policy, rt.Pattern, rt.Scope)}
	}
	if subsystem != "" && g.subsystems != nil && !slices.Contains(g.subsystems, subsystem) {
		return subsystem, &httpError{status: http.StatusForbidden, code: "forbidden", msg: fmt.Sprintf(
			"token %q may not touch subsystem %s (%s): it is limited to %s", g.name, shown(subsystem), rt.Pattern,
			strings.Join(g.subsystems, ", "))}
	}
	return subsystem, nil
}

// requestState is what the layers of one request learn about it: the
// authentication in ServeHTTP, the route's checks in serveRoute, the
// audit log at the end.
type requestState struct {
	grant     *grant // nil: anonymous
	route     *Route // nil: no route matched
	subsystem string
	// refused marks an answer of the auth layer (401, 403, 429) that the
	// audit log records whatever the method.
	refused bool
	// auditFailed marks an admin request refused because its "request"
	// line could not be written: no "response" line is tried.
	auditFailed bool
}

type stateKey struct{}

func stateOf(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}
