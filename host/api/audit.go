package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/datawarehouse/dw/config"
)

// The audit log records who changed what: one JSON line for every
// mutating request (any method but GET, HEAD and OPTIONS) and for every
// request the auth layer refused (401, 403, 429) or that was answered 401
// or 403 anyway.
//
//   - Fields: time (RFC 3339, nanoseconds, UTC), stage, token (the token's
//     name, "" without one), remote, method, route (the registered pattern,
//     "unmatched" when none), path (the escaped path without the query,
//     cut at auditMaxField bytes: paths hold object keys and file names,
//     which are user data, but "which object was deleted" is what an
//     audit is for; queries, which hold page tokens, are left out),
//     subsystem, status, error (the error code of an error answer),
//     bytes_in (body bytes the handler read), bytes_out, duration_ms.
//     The token value never appears; every string field is cut at
//     auditMaxField bytes, so a line stays under about 2 KiB.
//   - Admin routes are written twice: a "request" line before the action
//     runs, and a "response" line after. If the request line cannot be
//     written, the action does not run and the answer is 500 audit_failed
//     (as Vault refuses requests it cannot audit). Other requests get one
//     "response" line after the answer.
//   - Sink: server.audit.path, a file opened O_APPEND 0600 (made 0600 if it
//     was wider), rotated when a line would take it past max_size
//     (audit.log → audit.log.1 → … → audit.log.<max_files>, the oldest
//     removed; max_files 0 keeps none). Admin request lines are fsynced.
//     Without a path, the host log (logger "audit", one line per request).
//   - Failed writes are logged at error and counted in
//     dw_audit_write_errors_total.
//   - One mutex covers write, rotation and the switch to a new sink
//     (SetAudit, on a reload of server.audit).
const auditMaxField = 256

// auditLine is one line of the audit log.
type auditLine struct {
	Time       string  `json:"time"`
	Stage      string  `json:"stage"`
	Token      string  `json:"token"`
	Remote     string  `json:"remote"`
	Method     string  `json:"method"`
	Route      string  `json:"route"`
	Path       string  `json:"path"`
	Subsystem  string  `json:"subsystem"`
	Status     int     `json:"status"`
	Error      string  `json:"error,omitempty"`
	BytesIn    int64   `json:"bytes_in"`
	BytesOut   int64   `json:"bytes_out"`
	DurationMS float64 `json:"duration_ms"`
}

// Audit line stages.
const (
	auditStageRequest  = "request"
	auditStageResponse = "response"
)

// cut bounds a field of the audit log to auditMaxField bytes, on a rune
// boundary, marking a cut with "…".
func cut(s string) string {
	if len(s) <= auditMaxField {
		return s
	}
	n := auditMaxField - len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// auditSink writes audit lines.
type auditSink interface {
	// write writes one line; sync asks for it to be on disk on return.
	write(l *auditLine, sync bool) error
	close() error
}

// auditor is the audit log of a Server.
type auditor struct {
	logger hclog.Logger // the api's logger, for write errors
	errors prometheus.Counter

	mu   sync.Mutex
	sink auditSink
}

// newAuditSink opens the sink c asks for: the file c.Path, or logger
// named "audit" when c.Path is empty.
func newAuditSink(c config.Audit, logger hclog.Logger) (auditSink, error) {
	if c.Path == "" {
		return hostLogSink{logger.Named("audit")}, nil
	}
	return openAuditFile(c)
}

// write writes l, reporting a failure; the error is for admin requests,
// which must not run unaudited.
func (a *auditor) write(l *auditLine, sync bool) error {
	a.mu.Lock()
	err := a.sink.write(l, sync)
	a.mu.Unlock()
	if err != nil {
		a.errors.Inc()
		a.logger.Error("audit log write failed", "error", err, "method", l.Method, "route", l.Route, "token", l.Token)
	}
	return err
}

// swap makes s the sink and closes the previous one.
func (a *auditor) swap(s auditSink) error {
	a.mu.Lock()
	old := a.sink
	a.sink = s
	a.mu.Unlock()
	return old.close()
}

// hostLogSink writes audit lines to the host log.
type hostLogSink struct{ l hclog.Logger }

func (s hostLogSink) write(l *auditLine, _ bool) error {
	s.l.Info("audit", "time", l.Time, "stage", l.Stage, "token", l.Token, "remote", l.Remote, "method", l.Method,
		"route", l.Route, "path", l.Path, "subsystem", l.Subsystem, "status", l.Status, "error", l.Error,
		"bytes_in", l.BytesIn, "bytes_out", l.BytesOut, "duration_ms", l.DurationMS)
	return nil
}

func (hostLogSink) close() error { return nil }

// auditFile is a size-rotated audit file.
type auditFile struct {
	path     string
	maxSize  int64
	maxFiles int
	f        *os.File // nil after a failed rotation: reopened on the next write
	size     int64
	// regular is false for a device such as /dev/stdout: never rotated.
	regular bool
}

// openAuditFile opens (creating) the audit file of c.
func openAuditFile(c config.Audit) (*auditFile, error) {
	a := &auditFile{path: c.Path, maxSize: c.MaxSize, maxFiles: c.MaxFiles}
	if a.maxSize <= 0 {
		a.maxSize = config.DefaultAuditMaxSize
	}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *auditFile) open() error {
	// The folder is made as data_dir is: an audit path under data_dir
	// works on a fresh machine.
	if err := os.MkdirAll(filepath.Dir(a.path), 0o700); err != nil {
		return fmt.Errorf("open audit log %s (server.audit.path): %w", a.path, err)
	}
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open audit log %s (server.audit.path): %w", a.path, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() && fi.Mode()&fs.ModeCharDevice == 0 {
		err = fmt.Errorf("it is not a regular file (%s)", fi.Mode().Type())
	}
	if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&^0o600 != 0 {
		err = f.Chmod(0o600)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("open audit log %s (server.audit.path): %w", a.path, err)
	}
	a.f, a.size, a.regular = f, fi.Size(), fi.Mode().IsRegular()
	return nil
}

func (a *auditFile) write(l *auditLine, sync bool) error {
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("encode audit line: %w", err)
	}
	b = append(b, '\n')
	if a.f == nil {
		if err := a.open(); err != nil {
			return err
		}
	}
	if a.regular && a.size > 0 && a.size+int64(len(b)) > a.maxSize {
		if err := a.rotate(); err != nil {
			return err
		}
	}
	n, err := a.f.Write(b)
	a.size += int64(n)
	if err == nil && sync {
		err = a.f.Sync()
	}
	if err != nil {
		return fmt.Errorf("write audit log %s: %w", a.path, err)
	}
	return nil
}

// rotate shifts path.i to path.i+1 (dropping path.maxFiles), path to
// path.1, and opens a new path.
func (a *auditFile) rotate() error {
	if err := a.f.Close(); err != nil {
		return fmt.Errorf("rotate audit log %s: %w", a.path, err)
	}
	a.f = nil
	var errs []error
	if a.maxFiles == 0 {
		if err := os.Remove(a.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	} else {
		if err := os.Remove(a.rotated(a.maxFiles)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		for i := a.maxFiles - 1; i >= 1; i-- {
			if err := os.Rename(a.rotated(i), a.rotated(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if err := os.Rename(a.path, a.rotated(1)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Keep writing to the same file rather than lose lines.
		if oerr := a.open(); oerr != nil {
			return errors.Join(fmt.Errorf("rotate audit log %s: %w", a.path, err), oerr)
		}
		a.size = 0 // try the rotation again after another max_size
		return nil
	}
	return a.open()
}

func (a *auditFile) rotated(i int) string { return a.path + "." + strconv.Itoa(i) }

func (a *auditFile) close() error {
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// SetAudit switches the audit log to c (a reload of server.audit): the
// new sink is opened first, and on error the current one stays. Lines
// being written finish on the sink they began on.
func (s *Server) SetAudit(c config.Audit) error {
	sink, err := newAuditSink(c, s.logger)
	if err != nil {
		return fmt.Errorf("set audit log: %w", err)
	}
	if err := s.audit.swap(sink); err != nil {
		s.logger.Warn("closing the previous audit log failed", "error", err)
	}
	return nil
}

// auditMutating reports whether a request method changes something.
func auditMutating(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// auditLineOf describes a request for the audit log.
func auditLineOf(st *requestState, r *http.Request, stage string, start time.Time) *auditLine {
	l := &auditLine{
		Time:      time.Now().UTC().Format(time.RFC3339Nano),
		Stage:     stage,
		Remote:    cut(r.RemoteAddr),
		Method:    cut(r.Method),
		Route:     "unmatched",
		Path:      cut(r.URL.EscapedPath()),
		Subsystem: cut(st.subsystem),
	}
	if st.grant != nil {
		l.Token = cut(st.grant.name)
	}
	if st.route != nil {
		l.Route = st.route.Pattern
		if l.Subsystem == "" && st.route.Subsystem != subsystemFromPath {
			l.Subsystem = st.route.Subsystem
		}
	}
	if stage == auditStageResponse {
		l.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	}
	return l
}
