package api

// The object endpoints: /v1/objects and /v1/objects/{key...}, served by
// the ObjectStore gRPC service of the dbstorage subsystem's plugin.
//
// HTTP behaviours chosen here (the plugin enforces the storage rules, this
// file the request syntax):
//
//   - The key is the escaped path after "/v1/objects/", percent-decoded
//     here, so "a//b", "x/../y", "%2F", "%3F" and "%25" all reach the plugin
//     as written; these routes bypass the ServeMux's path cleaning (see
//     objectRoute). "/v1/objects/" (empty key) is 400; the listing is
//     exactly "/v1/objects".
//   - Query parameters are checked strictly: an unknown or repeated
//     parameter is 400 naming it and the allowed ones.
//   - Range: one "bytes=first-last", "bytes=first-" or "bytes=-suffix".
//     A malformed Range or several ranges is 400 with the reason (RFC 9110
//     allows ignoring an invalid Range and serving 200; we prefer a clear
//     error so that a client never takes a whole object for the part it
//     asked). A range outside the object, a suffix of 0 bytes and any range
//     of an empty object are 416 with "Content-Range: bytes */size".
//     If-Range (an ETag or a date) is honoured; If-None-Match answers 304.
//   - An error of the plugin before the first byte of a GET is a normal
//     JSON error; after the headers went out the connection is aborted, so
//     the client sees a body shorter than Content-Length, never a silently
//     short one.
//   - PUT answers 200 with the object's JSON and its ETag. A request body
//     that fails (the client aborts) cancels the plugin's Put stream, which
//     then stores nothing; a partial PUT (Content-Range) is 400.
//   - Streaming calls (PUT, GET, stream=true listings) have no deadline:
//     they last while the client reads or writes and end when it goes
//     away. Stat, Delete and List are bounded by the request timeout.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/datawarehouse/dw/sdk"
	dwv1 "github.com/datawarehouse/dw/sdk/proto/dw/v1"
)

// ObjectsSubsystem is the subsystem whose plugin serves the object store
// behind /v1/objects.
const ObjectsSubsystem = "dbstorage"

// Rules of the object endpoints.
const (
	objectsPath         = "/v1/objects"
	maxKeyBytes         = sdk.MaxObjectKeyBytes
	maxPrefixBytes      = sdk.MaxObjectKeyBytes
	maxStrategyBytes    = 255
	maxContentTypeBytes = 255
	maxMetaEntries      = 64
	maxMetaNameBytes    = 128
	maxMetaBytes        = 8 << 10
	maxPageTokenBytes   = 4 << 10
	putMessageBytes     = 1 << 20
	defaultContentType  = "application/octet-stream"
	metaHeaderPrefix    = "X-Dw-Meta-" // canonical form of X-DW-Meta-
	sha256Header        = "X-Dw-Content-Sha256"

	// ndjsonFlushLines and ndjsonStallFlush decide when streamed listing
	// lines leave the buffer: every so many lines, and when lines wait
	// that long without a new one.
	ndjsonFlushLines  = 128
	ndjsonStallFlush  = 20 * time.Millisecond
	ndjsonBufferBytes = 32 << 10
)

// objectPatterns are the object routes' patterns, which are also their
// route labels in metrics.
var objectPatterns = []string{
	"GET " + objectsPath,
	"PUT " + objectsPath + "/{key...}",
	"GET " + objectsPath + "/{key...}",
	"HEAD " + objectsPath + "/{key...}",
	"DELETE " + objectsPath + "/{key...}",
}

// registerObjectRoutes registers the object routes like every route (so
// that a conflicting Handle is caught), although route dispatches them
// itself through objectRoute before the ServeMux could clean their paths.
func (s *Server) registerObjectRoutes() {
	serve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, pattern, ok := s.objectRoute(r); ok && pattern != "" {
			h.ServeHTTP(w, r)
			return
		}
		WriteError(w, &httpError{status: http.StatusNotFound, code: "not_found", msg: "no route for " + r.Method + " " + r.URL.Path})
	})
	for _, p := range objectPatterns {
		s.handle(p, serve, false)
	}
}

// objectRoute matches the object endpoints on the request's escaped path,
// instead of the ServeMux, which would clean "a//b" or "x/../y" and
// redirect. ok reports whether the path is an object path. For an allowed
// method, h serves it and pattern is its route label; for another method,
// pattern is empty and h answers 405 with Allow (for serveUnmatched).
func (s *Server) objectRoute(r *http.Request) (h http.Handler, pattern string, ok bool) {
	escapedKey, list, ok := splitObjectPath(r.URL.EscapedPath())
	if !ok {
		return nil, "", false
	}
	if list {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return http.HandlerFunc(s.listObjects), "GET " + objectsPath, true
		}
		return allowOnly("GET, HEAD"), "", true
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.serveObject(w, r, escapedKey)
		}), r.Method + " " + objectsPath + "/{key...}", true
	}
	return allowOnly("DELETE, GET, HEAD, PUT"), "", true
}

// allowOnly answers 405 with the Allow header, as the ServeMux does.
func allowOnly(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", allow)
		w.WriteHeader(http.StatusMethodNotAllowed)
	})
}

// splitObjectPath tells whether an escaped path is the listing
// (/v1/objects) or an object (/v1/objects/…), and returns the still
// escaped key of the latter.
func splitObjectPath(escaped string) (escapedKey string, list, ok bool) {
	if escaped == objectsPath {
		return "", true, true
	}
	if rest, found := strings.CutPrefix(escaped, objectsPath+"/"); found {
		return rest, false, true
	}
	return "", false, false
}

// parseObjectKey percent-decodes the escaped key and checks the key rules.
func parseObjectKey(escaped string) (string, error) {
	key, err := url.PathUnescape(escaped)
	if err != nil {
		return "", fmt.Errorf("object key %s: %w: malformed percent-encoding (%v)", shown(escaped), sdk.ErrInvalidArgument, err)
	}
	if err := validateKey(key); err != nil {
		return "", err
	}
	return key, nil
}

// validateKey checks the ObjectStore key rule (sdk.ValidateObjectKey); an
// empty key also says where the key goes. The error wraps
// sdk.ErrInvalidArgument.
func validateKey(key string) error {
	if key == "" {
		return fmt.Errorf("object key is empty: %w: put the key after /v1/objects/; list objects with GET /v1/objects", sdk.ErrInvalidArgument)
	}
	return sdk.ValidateObjectKey(key)
}

// shown quotes s for a message, cut after 100 bytes.
func shown(s string) string {
	const max = 100
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > max-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}

// parseQuery parses a raw query whose parameters must each appear at most
// once and be among allowed. It returns the single values by name.
func parseQuery(raw, where string, allowed ...string) (map[string]string, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("query of %s: %w: %v", where, sdk.ErrInvalidArgument, err)
	}
	out := make(map[string]string, len(q))
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(allowed, name) {
			return nil, fmt.Errorf("query parameter %s on %s: %w: unknown; allowed: %s",
				shown(name), where, sdk.ErrInvalidArgument, strings.Join(allowed, ", "))
		}
		if n := len(q[name]); n > 1 {
			return nil, fmt.Errorf("query parameter %s on %s: %w: given %d times; give it once", name, where, sdk.ErrInvalidArgument, n)
		}
		out[name] = q[name][0]
	}
	return out, nil
}

// validateStrategy checks the syntax of a strategy name; the plugin knows
// which names exist.
func validateStrategy(name string) error {
	switch {
	case len(name) > maxStrategyBytes:
		return fmt.Errorf("strategy of %d bytes: %w: at most %d bytes", len(name), sdk.ErrInvalidArgument, maxStrategyBytes)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, isControl):
		return fmt.Errorf("strategy %s: %w: must be UTF-8 without control characters", shown(name), sdk.ErrInvalidArgument)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// objectStore returns the ObjectStore client of the dbstorage plugin. A
// plugin that is missing, disabled or down is sdk.ErrUnavailable (503).
func (s *Server) objectStore() (dwv1.ObjectStoreClient, error) {
	c, err := s.plugins.Client(ObjectsSubsystem)
	if err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			// Not the object that is missing: the store is.
			return nil, fmt.Errorf("object store: %w: subsystem %s is not loaded (%v)", sdk.ErrUnavailable, ObjectsSubsystem, err)
		}
		return nil, fmt.Errorf("object store: subsystem %s: %w", ObjectsSubsystem, err)
	}
	return dwv1.NewObjectStoreClient(c.Conn()), nil
}

// objectCtx is the request's context carrying the caller identity to the
// plugin.
func objectCtx(r *http.Request) context.Context {
	return sdk.WithCaller(r.Context(), Caller(r.Context()))
}

// storeError turns an error of an ObjectStore call into one that maps to
// its status.
func storeError(r *http.Request, op, key string, err error) error {
	return pluginError(r, fmt.Errorf("%s object %s: %w", op, shown(key), sdk.FromStatus(err)))
}

// objectJSON is an object's info in every /v1/objects answer.
type objectJSON struct {
	Key         string            `json:"key"`
	Size        int64             `json:"size"`
	SHA256      string            `json:"sha256"`
	ContentType string            `json:"content_type"`
	Metadata    map[string]string `json:"metadata"`
	CreatedAt   string            `json:"created_at"`
	ModifiedAt  string            `json:"modified_at"`
	Strategy    string            `json:"strategy"`
}

func rfc3339(ts *timestamppb.Timestamp) string {
	return ts.AsTime().UTC().Format(time.RFC3339Nano)
}

func toObjectJSON(info *dwv1.ObjectInfo) objectJSON {
	md := info.GetMetadata()
	if md == nil {
		md = map[string]string{}
	}
	return objectJSON{
		Key: info.GetKey(), Size: info.GetSize(), SHA256: info.GetSha256(), ContentType: info.GetContentType(),
		Metadata: md, CreatedAt: rfc3339(info.GetCreatedAt()), ModifiedAt: rfc3339(info.GetModifiedAt()),
		Strategy: info.GetStrategy(),
	}
}

func etagOf(info *dwv1.ObjectInfo) string { return `"` + info.GetSha256() + `"` }

// serveObject serves PUT, GET, HEAD and DELETE of one object.
func (s *Server) serveObject(w http.ResponseWriter, r *http.Request, escapedKey string) {
	key, err := parseObjectKey(escapedKey)
	if err != nil {
		WriteError(w, err)
		return
	}
	q, err := parseQuery(r.URL.RawQuery, r.Method+" "+objectsPath+"/{key}", "strategy")
	if err != nil {
		WriteError(w, err)
		return
	}
	strategy := q["strategy"]
	if err := validateStrategy(strategy); err != nil {
		WriteError(w, err)
		return
	}
	var put *dwv1.PutObjectHeader
	var rng byteRange
	switch r.Method {
	case http.MethodPut:
		if put, err = putHeader(r, key, strategy); err != nil {
			WriteError(w, err)
			return
		}
	case http.MethodGet:
		if rng, err = parseRange(r.Header.Values("Range")); err != nil {
			WriteError(w, err)
			return
		}
	}
	store, err := s.objectStore()
	if err != nil {
		WriteError(w, err)
		return
	}
	switch r.Method {
	case http.MethodPut:
		s.putObject(w, r, store, put)
	case http.MethodGet:
		s.getObject(w, r, store, key, strategy, rng)
	case http.MethodHead:
		s.headObject(w, r, store, key, strategy)
	case http.MethodDelete:
		s.deleteObject(w, r, store, key, strategy)
	}
}

// putHeader builds the Put header message from the request headers.
func putHeader(r *http.Request, key, strategy string) (*dwv1.PutObjectHeader, error) {
	h := r.Header
	if _, ok := h["Content-Range"]; ok {
		return nil, fmt.Errorf("put object %s: %w: partial PUT (Content-Range) is not supported; send the whole object", shown(key), sdk.ErrInvalidArgument)
	}
	ct := defaultContentType
	switch vs := h.Values("Content-Type"); {
	case len(vs) > 1:
		return nil, fmt.Errorf("put object %s: %w: Content-Type given %d times; give it once", shown(key), sdk.ErrInvalidArgument, len(vs))
	case len(vs) == 1 && vs[0] != "":
		ct = vs[0]
	}
	if len(ct) > maxContentTypeBytes || !utf8.ValidString(ct) || strings.ContainsFunc(ct, isControl) {
		return nil, fmt.Errorf("put object %s: Content-Type %s: %w: must be at most %d bytes of UTF-8 without control characters",
			shown(key), shown(ct), sdk.ErrInvalidArgument, maxContentTypeBytes)
	}
	md, err := metadataOf(h)
	if err != nil {
		return nil, fmt.Errorf("put object %s: %w", shown(key), err)
	}
	var sum string
	switch vs := h.Values(sha256Header); {
	case len(vs) > 1:
		return nil, fmt.Errorf("put object %s: %w: X-DW-Content-SHA256 given %d times; give it once", shown(key), sdk.ErrInvalidArgument, len(vs))
	case len(vs) == 1:
		if !isSHA256Hex(vs[0]) {
			return nil, fmt.Errorf("put object %s: X-DW-Content-SHA256 %s: %w: must be 64 lowercase hex digits",
				shown(key), shown(vs[0]), sdk.ErrInvalidArgument)
		}
		sum = vs[0]
	}
	size := r.ContentLength
	if size < 0 {
		size = -1
	}
	return &dwv1.PutObjectHeader{Key: key, Strategy: strategy, ContentType: ct, Metadata: md, Size: size, Sha256: sum}, nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

const metaRule = "names are 1 to 128 of a-z, 0-9, '-' and '_'; at most 64 entries and 8 KiB of names and values"

// metadataOf collects the X-DW-Meta-<name> headers, names in lower case.
func metadataOf(h http.Header) (map[string]string, error) {
	var names []string
	for k := range h {
		if len(k) >= len(metaHeaderPrefix) && strings.EqualFold(k[:len(metaHeaderPrefix)], metaHeaderPrefix) {
			if len(names) == maxMetaEntries {
				return nil, fmt.Errorf("metadata: %w: more than %d X-DW-Meta-* headers (%s)", sdk.ErrInvalidArgument, maxMetaEntries, metaRule)
			}
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	slices.Sort(names) // deterministic errors
	md := make(map[string]string, len(names))
	total := 0
	for _, k := range names {
		name := strings.ToLower(k[len(metaHeaderPrefix):])
		if !validMetaName(name) {
			return nil, fmt.Errorf("metadata header %s: %w: bad name %s (%s)", shown(k), sdk.ErrInvalidArgument, shown(name), metaRule)
		}
		if _, dup := md[name]; dup || len(h[k]) > 1 {
			return nil, fmt.Errorf("metadata header X-DW-Meta-%s: %w: given more than once; give each name once", name, sdk.ErrInvalidArgument)
		}
		v := h[k][0]
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("metadata header X-DW-Meta-%s: %w: value is not valid UTF-8", name, sdk.ErrInvalidArgument)
		}
		total += len(name) + len(v)
		if total > maxMetaBytes {
			return nil, fmt.Errorf("metadata: %w: names and values exceed %d bytes (%s)", sdk.ErrInvalidArgument, maxMetaBytes, metaRule)
		}
		md[name] = v
	}
	return md, nil
}

func validMetaName(name string) bool {
	if name == "" || len(name) > maxMetaNameBytes {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// putObject streams the request body to the plugin's Put.
func (s *Server) putObject(w http.ResponseWriter, r *http.Request, store dwv1.ObjectStoreClient, hdr *dwv1.PutObjectHeader) {
	ctx, cancel := context.WithCancel(objectCtx(r))
	defer cancel()
	info, err := sendObject(ctx, cancel, store, hdr, r.Body)
	if err != nil {
		if errors.Is(err, errBody) {
			if r.Context().Err() != nil {
				err = fmt.Errorf("put object %s: %w (the client went away)", shown(hdr.GetKey()), r.Context().Err())
			} else {
				err = fmt.Errorf("put object %s: %w: %w", shown(hdr.GetKey()), sdk.ErrInvalidArgument, err)
			}
			WriteError(w, err)
			return
		}
		WriteError(w, storeError(r, "put", hdr.GetKey(), err))
		return
	}
	w.Header().Set("ETag", etagOf(info))
	WriteJSON(w, http.StatusOK, toObjectJSON(info))
}

// errBody marks a failure to read the request body.
var errBody = errors.New("read request body")

// sendObject sends hdr and then body in messages of putMessageBytes,
// through one reused buffer (grpc-go marshals a message before Send
// returns). A body that fails cancels the call (cancel), so that the
// plugin sees an aborted stream, never a normal end; the error then wraps
// errBody. Other errors are the plugin's, not yet through FromStatus.
func sendObject(ctx context.Context, cancel context.CancelFunc, store dwv1.ObjectStoreClient, hdr *dwv1.PutObjectHeader, body io.Reader) (*dwv1.ObjectInfo, error) {
	stream, err := store.Put(ctx)
	if err != nil {
		return nil, err
	}
	// sendFailed returns the call's status after a failed Send: io.EOF
	// means the plugin ended the call, and CloseAndRecv has its status.
	sendFailed := func(err error) error {
		if errors.Is(err, io.EOF) {
			if _, rerr := stream.CloseAndRecv(); rerr != nil {
				return rerr
			}
			return fmt.Errorf("plugin ended the upload before the body was sent: %w", sdk.ErrFailedPrecondition)
		}
		return err
	}
	if err := stream.Send(&dwv1.PutObjectRequest{Part: &dwv1.PutObjectRequest_Header{Header: hdr}}); err != nil {
		return nil, sendFailed(err)
	}
	buf, release := putBuffer(hdr.GetSize())
	defer release()
	data := &dwv1.PutObjectRequest_Data{}
	msg := &dwv1.PutObjectRequest{Part: data}
	for {
		n, rerr := fill(body, buf)
		if rerr != nil && rerr != io.EOF {
			cancel()
			return nil, fmt.Errorf("%w: %w", errBody, rerr)
		}
		if n > 0 {
			data.Data = buf[:n]
			if err := stream.Send(msg); err != nil {
				return nil, sendFailed(err)
			}
		}
		if rerr == io.EOF {
			break
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	if resp.GetInfo() == nil {
		return nil, errors.New("plugin answered the upload without the object's info")
	}
	return resp.GetInfo(), nil
}

// putBuffers recycles the 1 MiB message buffers of large uploads: zeroing
// a fresh megabyte per PUT was a tenth of the host's CPU under small PUTs.
var putBuffers = sync.Pool{New: func() any { b := make([]byte, putMessageBytes); return &b }}

// putBuffer returns the buffer an upload of size bytes (-1: unknown) reads
// its body into, and the func that gives it back. A small body with a
// known size gets a buffer one byte larger than itself, so that one read
// also sees the end.
func putBuffer(size int64) ([]byte, func()) {
	if size >= 0 && size < putMessageBytes {
		return make([]byte, size+1), func() {}
	}
	b := putBuffers.Get().(*[]byte)
	return *b, func() { putBuffers.Put(b) }
}

// fill reads into buf until it is full, the body ends (io.EOF) or fails.
// Unlike io.ReadFull it never turns a failure into a short read: a body
// that fails with io.ErrUnexpectedEOF is an error, not the end.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// setObjectHeaders sets the headers GET and HEAD answer for an object
// (not Content-Length).
func setObjectHeaders(h http.Header, info *dwv1.ObjectInfo) {
	ct := info.GetContentType()
	if ct == "" {
		ct = defaultContentType
	}
	h.Set("Content-Type", ct)
	setValidators(h, info)
	h.Set("Accept-Ranges", "bytes")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(sha256Header, info.GetSha256())
	h.Set("X-Dw-Strategy", info.GetStrategy())
	h.Set("X-Dw-Created-At", rfc3339(info.GetCreatedAt()))
	h.Set("X-Dw-Modified-At", rfc3339(info.GetModifiedAt()))
	for name, v := range info.GetMetadata() {
		if validMetaName(name) { // a third-party plugin's odd names are not headers
			h.Set(metaHeaderPrefix+name, v)
		}
	}
}

// setValidators sets ETag and Last-Modified (also on a 304).
func setValidators(h http.Header, info *dwv1.ObjectInfo) {
	h.Set("ETag", etagOf(info))
	h.Set("Last-Modified", info.GetModifiedAt().AsTime().UTC().Format(http.TimeFormat))
}

// noneMatch reports whether If-None-Match matches etag (weak comparison).
func noneMatch(values []string, etag string) bool {
	for _, v := range values {
		for tag := range strings.SplitSeq(v, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
				return true
			}
		}
	}
	return false
}

// ifRangeMatches reports whether an If-Range value selects the current
// object: its strong ETag, or exactly its Last-Modified date.
func ifRangeMatches(v, etag string, info *dwv1.ObjectInfo) bool {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, `"`) {
		return v == etag
	}
	if strings.HasPrefix(v, "W/") {
		return false // weak tags never match If-Range
	}
	t, err := http.ParseTime(v)
	return err == nil && t.Equal(info.GetModifiedAt().AsTime().Truncate(time.Second))
}

func (s *Server) headObject(w http.ResponseWriter, r *http.Request, store dwv1.ObjectStoreClient, key, strategy string) {
	ctx, cancel := context.WithTimeout(objectCtx(r), s.requestTimeout)
	defer cancel()
	resp, err := store.Stat(ctx, &dwv1.StatObjectRequest{Key: key, Strategy: strategy})
	if err != nil {
		WriteError(w, storeError(r, "stat", key, err))
		return
	}
	info := resp.GetInfo()
	if noneMatch(r.Header.Values("If-None-Match"), etagOf(info)) {
		setValidators(w.Header(), info)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	setObjectHeaders(w.Header(), info)
	w.Header().Set("Content-Length", strconv.FormatInt(info.GetSize(), 10))
	w.WriteHeader(http.StatusOK)
}

func (s *Server) deleteObject(w http.ResponseWriter, r *http.Request, store dwv1.ObjectStoreClient, key, strategy string) {
	ctx, cancel := context.WithTimeout(objectCtx(r), s.requestTimeout)
	defer cancel()
	if _, err := store.Delete(ctx, &dwv1.DeleteObjectRequest{Key: key, Strategy: strategy}); err != nil {
		WriteError(w, storeError(r, "delete", key, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// stat returns an object's info under the request timeout.
func (s *Server) stat(ctx context.Context, r *http.Request, store dwv1.ObjectStoreClient, key, strategy string) (*dwv1.ObjectInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, s.requestTimeout)
	defer cancel()
	resp, err := store.Stat(ctx, &dwv1.StatObjectRequest{Key: key, Strategy: strategy})
	if err != nil {
		return nil, storeError(r, "stat", key, err)
	}
	return resp.GetInfo(), nil
}

// notSatisfiable answers 416 with "Content-Range: bytes */size"; size < 0
// asks the plugin for it.
func (s *Server) notSatisfiable(w http.ResponseWriter, r *http.Request, store dwv1.ObjectStoreClient, key, strategy string, size int64, cause error) {
	if size < 0 {
		info, err := s.stat(objectCtx(r), r, store, key, strategy)
		if err != nil {
			WriteError(w, err)
			return
		}
		size = info.GetSize()
	}
	w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
	WriteError(w, cause)
}

// getAttempts bounds how often a GET starts over because the object changed
// between its Stat and its Get (suffix ranges) or If-Range did not match.
const getAttempts = 3

func (s *Server) getObject(w http.ResponseWriter, r *http.Request, store dwv1.ObjectStoreClient, key, strategy string, rng byteRange) {
	ctx := objectCtx(r)
	ifRange := r.Header.Get("If-Range")
	for attempt := 1; ; attempt++ {
		req := &dwv1.GetObjectRequest{Key: key, Strategy: strategy}
		statSize := int64(-1)
		switch {
		case rng.suffix:
			info, err := s.stat(ctx, r, store, key, strategy)
			if err != nil {
				WriteError(w, err)
				return
			}
			statSize = info.GetSize()
			if statSize == 0 || rng.suffixLen == 0 {
				s.notSatisfiable(w, r, store, key, strategy, statSize, fmt.Errorf("get object %s: range %s: %w: the object has %d bytes",
					shown(key), rng, sdk.ErrOutOfRange, statSize))
				return
			}
			n := min(rng.suffixLen, statSize)
			req.Offset, req.Length = statSize-n, &n
		case rng.set:
			req.Offset = rng.first
			if rng.last >= 0 && rng.last < math.MaxInt64 {
				n := rng.last - rng.first + 1
				req.Length = &n
			}
		}
		switch s.streamObject(ctx, w, r, store, key, strategy, req, rng, statSize, ifRange, attempt == getAttempts) {
		case retryChanged:
			continue
		case retryWhole:
			rng = byteRange{}
			continue
		}
		return
	}
}

type getOutcome int

const (
	done         getOutcome = iota
	retryChanged            // the object changed between Stat and Get
	retryWhole              // If-Range did not match: serve the whole object
)

// streamObject runs one Get and, unless it asks for another attempt,
// answers the request.
func (s *Server) streamObject(ctx context.Context, w http.ResponseWriter, r *http.Request, store dwv1.ObjectStoreClient,
	key, strategy string, req *dwv1.GetObjectRequest, rng byteRange, statSize int64, ifRange string, last bool) getOutcome {
	ctx, cancel := context.WithCancel(ctx) // ends the call on every return, and on an abort's panic
	defer cancel()
	stream, err := store.Get(ctx, req, grpc.ForceCodecV2(objectCodec{}))
	var first *dwv1.GetObjectResponse
	if err == nil {
		first, err = stream.Recv()
	}
	if err != nil {
		err = storeError(r, "get", key, err)
		if errors.Is(err, sdk.ErrOutOfRange) {
			s.notSatisfiable(w, r, store, key, strategy, -1, err)
			return done
		}
		WriteError(w, err)
		return done
	}
	hdr := first.GetHeader()
	info := hdr.GetInfo()
	if info == nil {
		WriteError(w, fmt.Errorf("get object %s: plugin sent no header first", shown(key)))
		return done
	}
	etag := etagOf(info)
	switch {
	case rng.suffix && info.GetSize() != statSize:
		if !last {
			return retryChanged
		}
		WriteError(w, fmt.Errorf("get object %s: %w: the object keeps changing while read; retry", shown(key), sdk.ErrUnavailable))
		return done
	case rng.set && ifRange != "" && !ifRangeMatches(ifRange, etag, info):
		return retryWhole
	}
	if noneMatch(r.Header.Values("If-None-Match"), etag) {
		setValidators(w.Header(), info)
		w.WriteHeader(http.StatusNotModified)
		return done
	}
	if rng.set && hdr.GetLength() == 0 {
		// Only an empty object serves 0 bytes for a range: nothing in it
		// can be satisfied.
		s.notSatisfiable(w, r, store, key, strategy, info.GetSize(), fmt.Errorf("get object %s: range %s: %w: the object is empty",
			shown(key), rng, sdk.ErrOutOfRange))
		return done
	}
	h := w.Header()
	setObjectHeaders(h, info)
	h.Set("Content-Length", strconv.FormatInt(hdr.GetLength(), 10))
	status := http.StatusOK
	if rng.set {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", hdr.GetOffset(), hdr.GetOffset()+hdr.GetLength()-1, info.GetSize()))
	}
	w.WriteHeader(status)

	rc := http.NewResponseController(w)
	var sent int64
	var msg objectData // its buffer is reused for every data message
	for {
		err := stream.RecvMsg(&msg)
		if err == io.EOF {
			break
		}
		if err != nil {
			if r.Context().Err() != nil {
				return done // the client is gone
			}
			s.abortObject(r, key, storeError(r, "get", key, err))
		}
		data := msg.Data
		if msg.Other != nil || sent+int64(len(data)) > hdr.GetLength() {
			s.abortObject(r, key, fmt.Errorf("get object %s: plugin sent more than the %d bytes it announced, or a second header", shown(key), hdr.GetLength()))
		}
		if len(data) == 0 {
			continue
		}
		if _, err := w.Write(data); err != nil {
			return done // the client is gone
		}
		sent += int64(len(data))
		if err := rc.Flush(); err != nil {
			return done
		}
	}
	if sent != hdr.GetLength() {
		s.abortObject(r, key, fmt.Errorf("get object %s: plugin ended after %d of the %d bytes it announced", shown(key), sent, hdr.GetLength()))
	}
	return done
}

// abortObject ends a response whose headers are out: it aborts the
// connection so that the client sees a truncated body.
func (s *Server) abortObject(r *http.Request, key string, err error) {
	s.logger.Warn("object download aborted after its headers were sent", "key", key, "caller", Caller(r.Context()), "error", err)
	panic(http.ErrAbortHandler)
}

// byteRange is a parsed Range header.
type byteRange struct {
	set bool // a Range was asked for
	// suffix: the last suffixLen bytes (bytes=-N).
	suffix    bool
	suffixLen int64
	// first and last (inclusive) byte; last -1 means to the end. Numbers
	// too large for int64 saturate at math.MaxInt64.
	first, last int64
}

func (b byteRange) String() string {
	switch {
	case !b.set:
		return "(none)"
	case b.suffix:
		return fmt.Sprintf("bytes=-%d", b.suffixLen)
	case b.last < 0:
		return fmt.Sprintf("bytes=%d-", b.first)
	}
	return fmt.Sprintf("bytes=%d-%d", b.first, b.last)
}

const rangeRule = "want one range: bytes=first-last, bytes=first- or bytes=-count"

// parseRange parses the Range header values of a request: none, or one
// single range of bytes. Anything else wraps sdk.ErrInvalidArgument.
func parseRange(values []string) (byteRange, error) {
	switch len(values) {
	case 0:
		return byteRange{}, nil
	case 1:
	default:
		return byteRange{}, fmt.Errorf("range: %w: %d Range headers (%s)", sdk.ErrInvalidArgument, len(values), rangeRule)
	}
	v := values[0]
	bad := func(why string) error {
		return fmt.Errorf("range %s: %w: %s (%s)", shown(v), sdk.ErrInvalidArgument, why, rangeRule)
	}
	unit, set, ok := strings.Cut(strings.TrimSpace(v), "=")
	if !ok {
		return byteRange{}, bad("no '='")
	}
	if !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return byteRange{}, bad("unit " + shown(strings.TrimSpace(unit)) + " is not supported, only bytes")
	}
	if strings.Contains(set, ",") {
		return byteRange{}, bad("several ranges are not supported")
	}
	set = strings.TrimSpace(set)
	firstS, lastS, ok := strings.Cut(set, "-")
	if !ok {
		return byteRange{}, bad("no '-'")
	}
	if firstS == "" {
		n, ok := parseDigits(lastS)
		if !ok {
			return byteRange{}, bad("the suffix length must be digits")
		}
		return byteRange{set: true, suffix: true, suffixLen: n}, nil
	}
	first, ok := parseDigits(firstS)
	if !ok {
		return byteRange{}, bad("the first byte must be digits")
	}
	if lastS == "" {
		return byteRange{set: true, first: first, last: -1}, nil
	}
	last, ok := parseDigits(lastS)
	if !ok {
		return byteRange{}, bad("the last byte must be digits")
	}
	if last < first {
		return byteRange{}, bad("the last byte comes before the first")
	}
	return byteRange{set: true, first: first, last: last}, nil
}

// allDigits reports whether s is a non-empty string of ASCII digits (no
// sign, no space).
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseDigits parses a non-empty string of ASCII digits, saturating at
// math.MaxInt64.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + d
	}
	return n, true
}

// listParams are the query parameters of GET /v1/objects.
var listParams = []string{"prefix", "limit", "offset", "page_token", "count", "strategy", "stream"}

// listQuery is a validated GET /v1/objects query.
type listQuery struct {
	strategy, prefix, pageToken string
	limit                       int32
	offset                      int64
	count, stream               bool
}

// parseListQuery checks the query of GET /v1/objects; errors wrap
// sdk.ErrInvalidArgument and say what is allowed.
func parseListQuery(raw string) (listQuery, error) {
	q, err := parseQuery(raw, "GET "+objectsPath, listParams...)
	if err != nil {
		return listQuery{}, err
	}
	var out listQuery
	out.strategy = q["strategy"]
	if err := validateStrategy(out.strategy); err != nil {
		return listQuery{}, err
	}
	out.prefix = q["prefix"]
	switch p := out.prefix; {
	case len(p) > maxPrefixBytes:
		return listQuery{}, fmt.Errorf("prefix of %d bytes: %w: at most %d bytes", len(p), sdk.ErrInvalidArgument, maxPrefixBytes)
	case !utf8.ValidString(p) || strings.IndexByte(p, 0) >= 0:
		return listQuery{}, fmt.Errorf("prefix %s: %w: must be UTF-8 without NUL", shown(p), sdk.ErrInvalidArgument)
	}
	out.pageToken = q["page_token"]
	switch t := out.pageToken; {
	case len(t) > maxPageTokenBytes:
		return listQuery{}, fmt.Errorf("page_token of %d bytes: %w: at most %d bytes; pass next_page_token of the previous page unchanged",
			len(t), sdk.ErrInvalidArgument, maxPageTokenBytes)
	case !utf8.ValidString(t) || strings.ContainsFunc(t, isControl):
		return listQuery{}, fmt.Errorf("page_token: %w: not a token of this API; pass next_page_token of the previous page unchanged", sdk.ErrInvalidArgument)
	}
	if v, ok := q["limit"]; ok {
		n, err := strconv.ParseInt(v, 10, 32)
		if !allDigits(v) || err != nil || n < 1 {
			return listQuery{}, fmt.Errorf("limit %s: %w: must be an integer from 1 to %d (the plugin caps it at its max_page_size)",
				shown(v), sdk.ErrInvalidArgument, math.MaxInt32)
		}
		out.limit = int32(n)
	}
	if v, ok := q["offset"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if !allDigits(v) || err != nil {
			return listQuery{}, fmt.Errorf("offset %s: %w: must be an integer from 0 to %d", shown(v), sdk.ErrInvalidArgument, int64(math.MaxInt64))
		}
		out.offset = n
	}
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"count", &out.count}, {"stream", &out.stream}} {
		switch v, ok := q[b.name]; {
		case !ok, v == "false":
		case v == "true":
			*b.dst = true
		default:
			return listQuery{}, fmt.Errorf("%s %s: %w: must be true or false", b.name, shown(v), sdk.ErrInvalidArgument)
		}
	}
	_, hasOffset := q["offset"]
	_, hasToken := q["page_token"]
	if hasOffset && hasToken {
		return listQuery{}, fmt.Errorf("query of GET %s: %w: offset and page_token exclude each other; page by token (next_page_token) or by offset", objectsPath, sdk.ErrInvalidArgument)
	}
	if out.stream {
		for _, name := range []string{"limit", "offset", "page_token", "count"} {
			if _, ok := q[name]; ok {
				return listQuery{}, fmt.Errorf("query of GET %s: %w: stream=true returns every match and excludes limit, offset, page_token and count; got %s",
					objectsPath, sdk.ErrInvalidArgument, name)
			}
		}
	}
	return out, nil
}

// listBody is GET /v1/objects.
type listBody struct {
	Items         []objectJSON `json:"items"`
	TotalCount    *int64       `json:"total_count,omitempty"`
	HasMore       bool         `json:"has_more"`
	NextPageToken string       `json:"next_page_token"`
}

func (s *Server) listObjects(w http.ResponseWriter, r *http.Request) {
	q, err := parseListQuery(r.URL.RawQuery)
	if err != nil {
		WriteError(w, err)
		return
	}
	store, err := s.objectStore()
	if err != nil {
		WriteError(w, err)
		return
	}
	if q.stream {
		s.streamList(w, r, store, q)
		return
	}
	ctx, cancel := context.WithTimeout(objectCtx(r), s.requestTimeout)
	defer cancel()
	resp, err := store.List(ctx, &dwv1.ListObjectsRequest{
		Strategy: q.strategy, Prefix: q.prefix, Limit: q.limit, Offset: q.offset, PageToken: q.pageToken, Count: q.count,
	})
	if err != nil {
		WriteError(w, pluginError(r, fmt.Errorf("list objects with prefix %s: %w", shown(q.prefix), sdk.FromStatus(err))))
		return
	}
	out := listBody{Items: make([]objectJSON, len(resp.GetItems())), HasMore: resp.GetHasMore(), NextPageToken: resp.GetNextPageToken()}
	for i, info := range resp.GetItems() {
		out.Items[i] = toObjectJSON(info)
	}
	if q.count && resp.TotalCount != nil {
		n := resp.GetTotalCount()
		out.TotalCount = &n
	}
	WriteJSON(w, http.StatusOK, out)
}

// streamList answers stream=true: one object JSON per line from
// ListStream. An error before the first line is a normal error response;
// a later one is a last line {"error":{...}}.
func (s *Server) streamList(w http.ResponseWriter, r *http.Request, store dwv1.ObjectStoreClient, q listQuery) {
	ctx, cancel := context.WithCancel(objectCtx(r))
	defer cancel()
	stream, err := store.ListStream(ctx, &dwv1.ListObjectsStreamRequest{Strategy: q.strategy, Prefix: q.prefix})
	listErr := func(err error) error {
		return pluginError(r, fmt.Errorf("list objects with prefix %s: %w", shown(q.prefix), sdk.FromStatus(err)))
	}
	if err != nil {
		WriteError(w, listErr(err))
		return
	}
	var out *ndjsonWriter
	start := func() {
		h := w.Header()
		h.Set("Content-Type", "application/x-ndjson")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		out = newNDJSONWriter(w)
	}
	for {
		info, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			err = listErr(err)
			if out == nil {
				WriteError(w, err)
				return
			}
			if r.Context().Err() != nil {
				_ = out.close()
				return
			}
			_, code := StatusOf(err)
			line, _ := json.Marshal(ErrorBody{Error: ErrorDetail{Code: code, Message: err.Error()}})
			_ = out.writeLine(line)
			_ = out.close()
			if rec, ok := w.(*responseRecorder); ok {
				rec.err = err
			}
			s.logger.Warn("object listing stream ended with an error", "prefix", q.prefix, "error", err)
			return
		}
		if out == nil {
			start()
		}
		line, err := json.Marshal(toObjectJSON(info))
		if err != nil {
			s.logger.Error("encode object for listing", "key", info.GetKey(), "error", err)
			continue
		}
		if err := out.writeLine(line); err != nil {
			_ = out.close()
			return // the client is gone
		}
	}
	if out == nil {
		start() // no match: 200 with no lines
	}
	_ = out.close()
}

// ndjsonWriter buffers lines and flushes them to the client every
// ndjsonFlushLines lines and, while lines wait, ndjsonStallFlush after the
// last one, so that a stream that stalls still delivers what it has. Its
// timer is its only goroutine; close stops it from touching the response.
type ndjsonWriter struct {
	mu      sync.Mutex
	bw      *bufio.Writer
	rc      *http.ResponseController
	pending int
	timer   *time.Timer
	armed   bool
	closed  bool
	err     error
}

func newNDJSONWriter(w http.ResponseWriter) *ndjsonWriter {
	n := &ndjsonWriter{bw: bufio.NewWriterSize(w, ndjsonBufferBytes), rc: http.NewResponseController(w)}
	n.timer = time.AfterFunc(time.Hour, n.stalled)
	n.timer.Stop()
	return n
}

// writeLine writes b and a newline.
func (n *ndjsonWriter) writeLine(b []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.err != nil {
		return n.err
	}
	if _, err := n.bw.Write(b); err != nil {
		n.err = err
		return err
	}
	if err := n.bw.WriteByte('\n'); err != nil {
		n.err = err
		return err
	}
	n.pending++
	if n.pending >= ndjsonFlushLines {
		return n.flushLocked()
	}
	if !n.armed {
		n.armed = true
		n.timer.Reset(ndjsonStallFlush)
	}
	return nil
}

func (n *ndjsonWriter) stalled() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.armed = false
	if !n.closed && n.pending > 0 {
		_ = n.flushLocked()
	}
}

func (n *ndjsonWriter) flushLocked() error {
	if n.err != nil {
		return n.err
	}
	n.pending = 0
	if err := n.bw.Flush(); err != nil {
		n.err = err
		return err
	}
	if err := n.rc.Flush(); err != nil {
		n.err = err
		return err
	}
	return nil
}

// close flushes what is left; the writer is not used after it.
func (n *ndjsonWriter) close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.timer.Stop()
	if n.closed {
		return n.err
	}
	n.closed = true
	return n.flushLocked()
}
