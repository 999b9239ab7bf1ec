package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/datawarehouse/dw/config"
)

// constantTimeCompare compares token digests; a variable so that a test can
// check that every configured token is compared, whatever matches.
var constantTimeCompare = subtle.ConstantTimeCompare

// grant is what an authenticated token may do.
type grant struct {
	// name is the token's name: the caller identity.
	name string
	// policy is the token's policy (config.PolicyRead…).
	policy string
	// reach is the highest route scope the policy allows.
	reach Scope
	// subsystems, when not nil, are the only subsystems the token may
	// touch.
	subsystems []string
}

// authenticator checks bearer tokens. It keeps only SHA-256 digests of the
// tokens, so that every comparison is over 32 bytes (no length leak) and
// the token values are not kept around in memory.
type authenticator struct {
	digests [][sha256.Size]byte
	grants  []grant
}

// newAuthenticator returns nil for no credentials (no authentication).
// Errors never contain token values.
func newAuthenticator(creds []config.Credential) (*authenticator, error) {
	if len(creds) == 0 {
		return nil, nil
	}
	a := &authenticator{}
	seen := make(map[[sha256.Size]byte]string, len(creds))
	for _, c := range creds {
		who := "token " + strconv.Quote(c.Name)
		switch {
		case c.Name == "":
			return nil, errors.New("a token has an empty name")
		case strings.TrimSpace(c.Value) == "":
			return nil, errors.New(who + " is empty")
		case c.Value != strings.TrimSpace(c.Value):
			return nil, errors.New(who + " begins or ends with white space")
		case len(c.Value) < config.MinTokenBytes:
			return nil, fmt.Errorf("%s has %d bytes; tokens must be at least %d bytes", who, len(c.Value), config.MinTokenBytes)
		}
		reach, ok := policyReach[c.PolicyOrAdmin()]
		if !ok {
			return nil, fmt.Errorf("%s has policy %q; allowed: %s", who, c.Policy, strings.Join(config.Policies, ", "))
		}
		d := sha256.Sum256([]byte(c.Value))
		if prev, dup := seen[d]; dup {
			return nil, fmt.Errorf("%s is the same token as token %q", who, prev)
		}
		seen[d] = c.Name
		g := grant{name: c.Name, policy: c.PolicyOrAdmin(), reach: reach}
		if len(c.Subsystems) > 0 {
			g.subsystems = slices.Clone(c.Subsystems)
		}
		a.digests = append(a.digests, d)
		a.grants = append(a.grants, g)
	}
	return a, nil
}

// policyReach is the highest route scope of each token policy.
var policyReach = map[string]Scope{
	config.PolicyRead:  ScopeRead,
	config.PolicyWrite: ScopeWrite,
	config.PolicyAdmin: ScopeAdmin,
}

const challenge = `Bearer realm="dw"`

// errInvalidToken is the answer to a token that matches none.
var errInvalidToken = &httpError{status: http.StatusUnauthorized, code: "unauthenticated",
	challenge: challenge + `, error="invalid_token"`, msg: "invalid bearer token"}

// authenticate returns the grant of the request's bearer token. It
// compares the token with every configured token in constant time,
// without stopping at a match. guess reports a refusal of a token that
// was presented well-formed, i.e. a possible guess (see failTable).
func (a *authenticator) authenticate(r *http.Request) (g *grant, guess bool, err *httpError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, false, &httpError{status: http.StatusUnauthorized, code: "unauthenticated", challenge: challenge,
			msg: "missing bearer token: send the header Authorization: Bearer <token>"}
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return nil, false, &httpError{status: http.StatusUnauthorized, code: "unauthenticated", challenge: challenge + `, error="invalid_request"`,
			msg: "malformed Authorization header: want Authorization: Bearer <token>"}
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := -1
	for i := range a.digests {
		if constantTimeCompare(d[:], a.digests[i][:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return nil, true, errInvalidToken
	}
	return &a.grants[match], false, nil
}
