package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/datawarehouse/dw/config"
	"github.com/datawarehouse/dw/sdk/v6"
)

// ConfigSource is what the config endpoints need of the host. The api
// package does not know the host's types: it encodes what these methods
// return as JSON, as it is.
type ConfigSource interface {
	// ConfigInfo describes the running configuration, for GET /v1/config:
	// generation, file, hash, loaded_at and the last reload.
	ConfigInfo() any
	// ReloadFile reloads the host's config file now and returns when the
	// reload is over, with its result. err is nil when the reload succeeded
	// and says why it was rejected otherwise (result then still describes
	// the attempt). source names who asked, for the log and the result.
	ReloadFile(ctx context.Context, source string) (result any, err error)
	// ValidateConfig checks the candidate configuration yaml (the content
	// of a config file) against the running host and its plugins, changing
	// nothing, and returns the verdict (ok, problems, changed keys, the
	// plugins a reload would restart). A candidate with problems is a
	// verdict, not an error.
	ValidateConfig(ctx context.Context, yaml []byte) any
}

// ReloadRejectedBody is the answer of POST /v1/config/reload when the
// reload was rejected (422): the usual error object, code
// "reload_rejected", plus the result of the attempt.
type ReloadRejectedBody struct {
	Error  ErrorDetail `json:"error"`
	Result any         `json:"result"`
}

// HandleConfig registers the config endpoints, served by src:
//
//	GET  /v1/config           200 with src.ConfigInfo()
//	POST /v1/config/reload    reloads the config file now; 200 with the
//	                          result, or 422 {"error":{"code":"reload_rejected",
//	                          "message"}, "result":{…}} when it was rejected
//	                          (the previous configuration keeps running)
//	POST /v1/config/validate  body: a candidate config file (YAML, at most
//	                          config.MaxFileSize bytes, else 413); 200 with
//	                          {ok, problems, changed_keys, restarts} whether
//	                          or not the candidate is valid; 400 for an
//	                          empty body
//
// The handlers pass the request's context to src; the host's ConfigSource
// does not let a client that goes away cancel a reload.
func (s *Server) HandleConfig(src ConfigSource) {
	s.Handle("GET /v1/config", ScopeRead, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, src.ConfigInfo())
	}))
	s.Handle("POST /v1/config/reload", ScopeAdmin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller := Caller(r.Context())
		s.logger.Info("config reload requested", "caller", caller)
		res, err := src.ReloadFile(r.Context(), "api (caller "+caller+")")
		if err != nil {
			WriteJSON(w, http.StatusUnprocessableEntity, ReloadRejectedBody{
				Error:  ErrorDetail{Code: "reload_rejected", Message: err.Error()},
				Result: res,
			})
			return
		}
		WriteJSON(w, http.StatusOK, res)
	}))
	s.Handle("POST /v1/config/validate", ScopeAdmin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, config.MaxFileSize))
		if err != nil {
			var mbe *http.MaxBytesError
			if !errors.As(err, &mbe) {
				err = fmt.Errorf("read the candidate config: %w: %w", sdk.ErrInvalidArgument, err)
			}
			WriteError(w, err)
			return
		}
		if len(bytes.TrimSpace(body)) == 0 {
			WriteError(w, fmt.Errorf("validate config: %w: the request body is empty; send the candidate config file (YAML) as the body", sdk.ErrInvalidArgument))
			return
		}
		WriteJSON(w, http.StatusOK, src.ValidateConfig(r.Context(), body))
	}))
}

// SetTokens replaces the accepted bearer tokens (empty: no
// authentication) for every request that follows; requests in flight
// finish with the tokens they were checked against. On error (see
// ValidateTokens) nothing changes.
func (s *Server) SetTokens(creds []config.Credential) error {
	a, err := newAuthenticator(creds)
	if err != nil {
		return fmt.Errorf("set api tokens: %w", err)
	}
	s.auth.Store(a)
	return nil
}

// ValidateTokens checks tokens as New and SetTokens do (no empty token or
// name, no white space around a token, at least config.MinTokenBytes, a
// known policy, no token twice), changing nothing. Errors never contain
// token values.
func ValidateTokens(creds []config.Credential) error {
	_, err := newAuthenticator(creds)
	return err
}
