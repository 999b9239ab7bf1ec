package api

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/datawarehouse/dw/sdk/v6"
)

// httpError is an error of the HTTP layer itself (authentication, routing)
// with its status and code.
type httpError struct {
	status int
	code   string
	msg    string
	// challenge is the WWW-Authenticate value of a 401.
	challenge string
}

func (e *httpError) Error() string { return e.msg }

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong: a stable snake_case code and a message
// for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorStatuses maps the sdk sentinels to HTTP statuses and codes. Order
// matters: the first match wins.
var errorStatuses = []struct {
	err    error
	status int
	code   string
}{
	{sdk.ErrNotFound, http.StatusNotFound, "not_found"},
	{sdk.ErrInvalidLimits, http.StatusBadRequest, "invalid_limits"},
	{sdk.ErrInvalidSettings, http.StatusBadRequest, "invalid_settings"},
	{sdk.ErrInvalidArgument, http.StatusBadRequest, "invalid_argument"},
	{sdk.ErrAlreadyExists, http.StatusConflict, "already_exists"},
	{sdk.ErrFailedPrecondition, http.StatusConflict, "failed_precondition"},
	{sdk.ErrPermissionDenied, http.StatusForbidden, "permission_denied"},
	{sdk.ErrUnimplemented, http.StatusNotImplemented, "unimplemented"},
	{sdk.ErrBackpressure, http.StatusTooManyRequests, "backpressure"},
	{sdk.ErrQuotaExceeded, http.StatusTooManyRequests, "quota_exceeded"},
	{sdk.ErrOutOfRange, http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable"},
	{sdk.ErrPluginShutdown, http.StatusServiceUnavailable, "plugin_shutdown"},
	{sdk.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	// A plugin's handler panicked (the SDK recovered it): a bug, so a 500,
	// but named, so that it is not taken for the host's own failure.
	{sdk.ErrPanicked, http.StatusInternalServerError, "plugin_panicked"},
	{context.DeadlineExceeded, http.StatusGatewayTimeout, "deadline_exceeded"},
	// The client went away; nobody reads this, but metrics and logs do.
	{context.Canceled, 499, "canceled"},
}

// StatusOf returns the HTTP status and error code for err: the one place
// where errors become statuses.
//
//	sdk.ErrNotFound                               404 not_found
//	sdk.ErrInvalidArgument                        400 invalid_argument
//	sdk.ErrInvalidLimits, sdk.ErrInvalidSettings  400 invalid_limits, invalid_settings
//	a request body over the limit                 413 payload_too_large
//	sdk.ErrAlreadyExists                          409 already_exists
//	sdk.ErrFailedPrecondition                     409 failed_precondition
//	sdk.ErrPermissionDenied                       403 permission_denied
//	sdk.ErrUnimplemented                          501 unimplemented
//	sdk.ErrBackpressure, sdk.ErrQuotaExceeded     429 backpressure, quota_exceeded
//	sdk.ErrOutOfRange                             416 range_not_satisfiable
//	sdk.ErrUnavailable, sdk.ErrPluginShutdown     503 unavailable, plugin_shutdown
//	sdk.ErrPanicked                               500 plugin_panicked
//	context.DeadlineExceeded                      504 deadline_exceeded
//	context.Canceled                              499 canceled
//	missing or wrong bearer token                 401 unauthenticated
//	a request body slower than the minimum rate   408 request_timeout
//	  (os.ErrDeadlineExceeded: the host's body deadline, netguard)
//	anything else                                 500 internal
func StatusOf(err error) (status int, code string) {
	var he *httpError
	if errors.As(err, &he) {
		return he.status, he.code
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, "payload_too_large"
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return http.StatusRequestTimeout, "request_timeout"
	}
	for _, e := range errorStatuses {
		if errors.Is(err, e.err) {
			return e.status, e.code
		}
	}
	return http.StatusInternalServerError, "internal"
}

// retryAfterSeconds is the Retry-After value for err: its sdk.RetryAfter
// hint in whole seconds, rounded up, at least 1 and at most a day.
func retryAfterSeconds(err error) int {
	d, ok := sdk.RetryAfter(err)
	if !ok || d <= 0 {
		return 1
	}
	d = min(d, 24*time.Hour)
	return max(int(math.Ceil(d.Seconds())), 1)
}

// WriteError answers err as {"error":{"code","message"}} with the status
// StatusOf gives; a 429 gets Retry-After.
func WriteError(w http.ResponseWriter, err error) {
	status, code := StatusOf(err)
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(err)))
	}
	if rec, ok := w.(*responseRecorder); ok {
		rec.err = err
	}
	msg := err.Error()
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		msg = "request body is larger than " + strconv.FormatInt(mbe.Limit, 10) + " bytes, the most this endpoint accepts"
	}
	WriteJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorBody{Error: ErrorDetail{Code: "internal", Message: "encode response: " + err.Error()}})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
