package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// constantTimeCompare compares token digests; a variable so that a test can
// check that every configured token is compared, whatever matches.
var constantTimeCompare = subtle.ConstantTimeCompare

// authenticator checks bearer tokens. It keeps only SHA-256 digests of the
// tokens, so that every comparison is over 32 bytes (no length leak) and
// the token values are not kept around in memory.
type authenticator struct {
	digests [][sha256.Size]byte
	names   []string
}

// newAuthenticator returns nil for no tokens (no authentication). Errors
// never contain token values.
func newAuthenticator(tokens map[string]string) (*authenticator, error) {
	if len(tokens) == 0 {
		return nil, nil
	}
	a := &authenticator{}
	for token, name := range tokens {
		switch {
		case strings.TrimSpace(token) == "":
			return nil, errors.New("token of caller " + strconv.Quote(name) + " is empty")
		case token != strings.TrimSpace(token):
			return nil, errors.New("token of caller " + strconv.Quote(name) + " begins or ends with white space")
		case name == "":
			return nil, errors.New("a token has an empty caller name")
		}
		a.digests = append(a.digests, sha256.Sum256([]byte(token)))
		a.names = append(a.names, name)
	}
	return a, nil
}

const challenge = `Bearer realm="dw"`

// authenticate returns the caller named by the request's bearer token. It
// compares the token with every configured token in constant time, without
// stopping at a match.
func (a *authenticator) authenticate(r *http.Request) (string, *httpError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", &httpError{status: http.StatusUnauthorized, code: "unauthenticated", challenge: challenge,
			msg: "missing bearer token: send the header Authorization: Bearer <token>"}
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", &httpError{status: http.StatusUnauthorized, code: "unauthenticated", challenge: challenge + `, error="invalid_request"`,
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
		return "", &httpError{status: http.StatusUnauthorized, code: "unauthenticated", challenge: challenge + `, error="invalid_token"`,
			msg: "invalid bearer token"}
	}
	return a.names[match], nil
}
