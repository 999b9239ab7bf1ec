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
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/datawarehouse/dw/sdk/v6"
	"github.com/datawarehouse/dw/sdk/v6/pluginhost"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
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

// registerDirectRoutes registers routes that route dispatches itself
// through match before the ServeMux could clean their paths (objectRoute,
// fileRoute) like every route, so that a conflicting Handle is caught.
// They touch subsystem; GET and HEAD need the read scope, the other
// methods (PUT, DELETE) write.
func (s *Server) registerDirectRoutes(patterns []string, subsystem string, match func(*http.Request) (http.Handler, string, bool)) {
	serve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, pattern, ok := match(r); ok && pattern != "" {
			h.ServeHTTP(w, r)
			return
		}
		WriteError(w, &httpError{status: http.StatusNotFound, code: "not_found", msg: "no route for " + r.Method + " " + r.URL.Path})
	})
	for _, p := range patterns {
		scope := ScopeWrite
		if method, _, _ := strings.Cut(p, " "); method == http.MethodGet || method == http.MethodHead {
			scope = ScopeRead
		}
		s.handle(Route{Pattern: p, Scope: scope, Subsystem: subsystem}, serve)
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
		return listingRoute(r, objectsPath, s.listObjects)
	}
	return itemRoute(r, objectsPath+"/{key...}", func(w http.ResponseWriter, r *http.Request) {
		s.serveObject(w, r, escapedKey)
	})
}

// listingRoute routes r to the listing serve, whose route label is "GET
// "+path, for GET and HEAD, and to a 405 otherwise.
func listingRoute(r *http.Request, path string, serve http.HandlerFunc) (http.Handler, string, bool) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return serve, "GET " + path, true
	}
	return allowOnly("GET, HEAD"), "", true
}

// itemRoute routes r to serve, which serves one item (an object, a file)
// and whose route label is the method and path, for PUT, GET, HEAD and
// DELETE, and to a 405 otherwise.
func itemRoute(r *http.Request, path string, serve http.HandlerFunc) (http.Handler, string, bool) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
		return serve, r.Method + " " + path, true
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
			list := strings.Join(allowed, ", ")
			if list == "" {
				list = "none"
			}
			return nil, fmt.Errorf("query parameter %s on %s: %w: unknown; allowed: %s", shown(name), where, sdk.ErrInvalidArgument, list)
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
	conn, err := s.storeConn(ObjectsSubsystem, "object store")
	if err != nil {
		return nil, err
	}
	return dwv1.NewObjectStoreClient(conn), nil
}

// storeConn returns the connection to the plugin of subsystem, which
// serves the store named what. A plugin that is missing, disabled or down
// is sdk.ErrUnavailable (503).
func (s *Server) storeConn(subsystem, what string) (*grpc.ClientConn, error) {
	c, err := s.plugins.Client(subsystem)
	if err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			// Not the object or file that is missing: the store is.
			return nil, fmt.Errorf("%s: %w: subsystem %s is not loaded (%v)", what, sdk.ErrUnavailable, subsystem, err)
		}
		return nil, fmt.Errorf("%s: subsystem %s: %w", what, subsystem, err)
	}
	return c.Conn(), nil
}

// callerCtx is the request's context carrying the caller identity to the
// plugin.
func callerCtx(r *http.Request) context.Context {
	return pluginhost.WithCaller(r.Context(), Caller(r.Context()))
}

// storeError turns an error of an ObjectStore call into one that maps to
// its status.
func storeError(r *http.Request, op, key string, err error) error {
	return callError(r, op, "object", key, err)
}

// callError turns an error of a store's call on the item what ("object",
// "file") named name into one that maps to its status.
func callError(r *http.Request, op, what, name string, err error) error {
	return pluginError(r, fmt.Errorf("%s %s %s: %w", op, what, shown(name), err))
}

// Object is an object's info in every /v1/objects answer (and each line of
// a streamed listing): Metadata is never null, CreatedAt and ModifiedAt are
// RFC 3339 in UTC. The CLI decodes it too.
type Object struct {
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

func toObjectJSON(info *dwv1.ObjectInfo) Object {
	md := info.GetMetadata()
	if md == nil {
		md = map[string]string{}
	}
	return Object{
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
	if err := checkWholeBody(h, "object", key); err != nil {
		return nil, err
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
	sum, err := contentSHA256(h, "object", key)
	if err != nil {
		return nil, err
	}
	return &dwv1.PutObjectHeader{Key: key, Strategy: strategy, ContentType: ct, Metadata: md, Size: bodySize(r), Sha256: sum}, nil
}

// checkWholeBody refuses a partial PUT of the item what named name.
func checkWholeBody(h http.Header, what, name string) error {
	if _, ok := h["Content-Range"]; ok {
		return fmt.Errorf("put %s %s: %w: partial PUT (Content-Range) is not supported; send the whole %s", what, shown(name), sdk.ErrInvalidArgument, what)
	}
	return nil
}

// contentSHA256 returns the X-DW-Content-SHA256 of a PUT of the item what
// named name: 64 lowercase hex digits, or empty when not given.
func contentSHA256(h http.Header, what, name string) (string, error) {
	switch vs := h.Values(sha256Header); {
	case len(vs) > 1:
		return "", fmt.Errorf("put %s %s: %w: X-DW-Content-SHA256 given %d times; give it once", what, shown(name), sdk.ErrInvalidArgument, len(vs))
	case len(vs) == 1:
		if !isSHA256Hex(vs[0]) {
			return "", fmt.Errorf("put %s %s: X-DW-Content-SHA256 %s: %w: must be 64 lowercase hex digits",
				what, shown(name), shown(vs[0]), sdk.ErrInvalidArgument)
		}
		return vs[0], nil
	}
	return "", nil
}

// bodySize is the size a PUT announces (Content-Length), or -1.
func bodySize(r *http.Request) int64 {
	if r.ContentLength < 0 {
		return -1
	}
	return r.ContentLength
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
	ctx, cancel := context.WithCancel(callerCtx(r))
	defer cancel()
	info, err := sendObject(ctx, cancel, store, hdr, r.Body)
	if err != nil {
		WriteError(w, uploadError(r, "object", hdr.GetKey(), err))
		return
	}
	w.Header().Set("ETag", etagOf(info))
	WriteJSON(w, http.StatusOK, toObjectJSON(info))
}

// uploadError turns an error of sendBody for the item what ("object",
// "file") named name into one that maps to its status: a body that failed
// is the client's error (400, or 499 when it went away), anything else the
// plugin's.
func uploadError(r *http.Request, what, name string, err error) error {
	if !errors.Is(err, errBody) {
		return callError(r, "put", what, name, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The body came too slowly (the host's body deadline): 408, although
		// the failed read also ended the request's context.
		return fmt.Errorf("put %s %s: %w", what, shown(name), err)
	}
	if r.Context().Err() != nil {
		return fmt.Errorf("put %s %s: %w (the client went away)", what, shown(name), r.Context().Err())
	}
	return fmt.Errorf("put %s %s: %w: %w", what, shown(name), sdk.ErrInvalidArgument, err)
}

// errBody marks a failure to read the request body.
var errBody = errors.New("read request body")

// sendObject sends hdr and then body to the ObjectStore's Put (sendBody).
func sendObject(ctx context.Context, cancel context.CancelFunc, store dwv1.ObjectStoreClient, hdr *dwv1.PutObjectHeader, body io.Reader) (*dwv1.ObjectInfo, error) {
	part := &dwv1.PutObjectRequest_Data{}
	msg := &dwv1.PutObjectRequest{Part: part}
	resp, err := sendBody(ctx, cancel, store.Put, &dwv1.PutObjectRequest{Part: &dwv1.PutObjectRequest_Header{Header: hdr}},
		hdr.GetSize(), body, func(b []byte) *dwv1.PutObjectRequest { part.Data = b; return msg })
	if err != nil {
		return nil, err
	}
	if resp.GetInfo() == nil {
		return nil, errors.New("plugin answered the upload without the object's info")
	}
	return resp.GetInfo(), nil
}

// sendBody runs a store's client-streaming Put (put): it sends header, then
// body (of size bytes, -1: unknown) in messages of putMessageBytes through
// one reused buffer (grpc-go marshals a message before Send returns);
// data returns the data message holding a piece of the body. A body that
// fails cancels the call (cancel), so that the plugin sees an aborted
// stream, never a normal end; the error then wraps errBody. Other errors
// are the plugin's (sdk errors: the connection converts them).
//
// The plugin's stream is opened, and the large buffer taken, only once the
// body's first bytes (or its end) have arrived: a client that sends the
// headers of a PUT and stalls holds firstReadBytes of the host and nothing
// of the plugin until the body deadline ends it.
func sendBody[Req, Resp any](ctx context.Context, cancel context.CancelFunc,
	put func(context.Context, ...grpc.CallOption) (grpc.ClientStreamingClient[Req, Resp], error),
	header *Req, size int64, body io.Reader, data func([]byte) *Req) (*Resp, error) {
	buf := make([]byte, firstReadBytes)
	if size >= 0 && size < firstReadBytes {
		buf = make([]byte, size+1) // one read also sees the end
	}
	n, rerr := readSome(body, buf)
	if rerr != nil && rerr != io.EOF {
		return nil, fmt.Errorf("%w: %w", errBody, rerr)
	}
	stream, err := put(ctx)
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
	if err := stream.Send(header); err != nil {
		return nil, sendFailed(err)
	}
	if rerr == nil && len(buf) == firstReadBytes {
		// More is coming: the buffer of the size's messages.
		big, release := putBuffer(size)
		defer release()
		n = copy(big, buf[:n])
		buf = big
	}
	for {
		if rerr == nil {
			var m int
			m, rerr = fill(body, buf[n:])
			n += m
			if rerr != nil && rerr != io.EOF {
				cancel()
				return nil, fmt.Errorf("%w: %w", errBody, rerr)
			}
		}
		if n > 0 {
			if err := stream.Send(data(buf[:n])); err != nil {
				return nil, sendFailed(err)
			}
			n = 0
		}
		if rerr == io.EOF {
			break
		}
	}
	return stream.CloseAndRecv()
}

// firstReadBytes bounds the first read of an upload's body, made before
// the plugin's stream is opened (sendBody).
const firstReadBytes = 16 << 10

// readSome reads into buf until it holds at least one byte, or the body
// ends (io.EOF) or fails.
func readSome(r io.Reader, buf []byte) (int, error) {
	for {
		n, err := r.Read(buf)
		if n > 0 || err != nil {
			return n, err
		}
	}
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

// objectMeta is what GET and HEAD answer of an object.
func objectMeta(info *dwv1.ObjectInfo) bodyMeta {
	return bodyMeta{name: info.GetKey(), size: info.GetSize(), etag: etagOf(info), modified: info.GetModifiedAt().AsTime(),
		headers: func(h http.Header) { setObjectHeaders(h, info) }}
}

// setObjectHeaders sets the object's own headers of a GET or HEAD.
func setObjectHeaders(h http.Header, info *dwv1.ObjectInfo) {
	ct := info.GetContentType()
	if ct == "" {
		ct = defaultContentType
	}
	h.Set("Content-Type", ct)
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

// objectDownload is the GET of one object.
func (s *Server) objectDownload(r *http.Request, store dwv1.ObjectStoreClient, key, strategy string) download {
	return download{
		what: "object", name: key, logName: "key",
		fail: func(err error) error { return storeError(r, "get", key, err) },
		stat: func(ctx context.Context) (bodyMeta, error) {
			ctx, cancel := context.WithTimeout(ctx, s.requestTimeout)
			defer cancel()
			resp, err := store.Stat(ctx, &dwv1.StatObjectRequest{Key: key, Strategy: strategy})
			if err == nil && resp.GetInfo() == nil {
				err = errors.New("plugin answered without the object's info")
			}
			if err != nil {
				return bodyMeta{}, storeError(r, "stat", key, err)
			}
			return objectMeta(resp.GetInfo()), nil
		},
		get: func(ctx context.Context, offset int64, length *int64) (bodyStream, error) {
			req := &dwv1.GetObjectRequest{Key: key, Strategy: strategy, Offset: offset, Length: length}
			first, next, err := openBody(store.Get(ctx, req, grpc.ForceCodecV2(objectCodec{})))
			h := first.GetHeader()
			return startedBody(objectMeta(h.GetInfo()), h.GetInfo() != nil, h.GetOffset(), h.GetLength(), next, err)
		},
	}
}

func (s *Server) headObject(w http.ResponseWriter, r *http.Request, store dwv1.ObjectStoreClient, key, strategy string) {
	m, err := s.objectDownload(r, store, key, strategy).stat(callerCtx(r))
	if err != nil {
		WriteError(w, err)
		return
	}
	serveHead(w, r, m)
}

func (s *Server) deleteObject(w http.ResponseWriter, r *http.Request, store dwv1.ObjectStoreClient, key, strategy string) {
	s.serveDelete(w, r, "object", key, func(ctx context.Context) error {
		_, err := store.Delete(ctx, &dwv1.DeleteObjectRequest{Key: key, Strategy: strategy})
		return err
	})
}

// serveDelete answers a DELETE of the item what ("object", "file") named
// name: del runs the store's Delete under the request timeout.
func (s *Server) serveDelete(w http.ResponseWriter, r *http.Request, what, name string, del func(context.Context) error) {
	ctx, cancel := context.WithTimeout(callerCtx(r), s.requestTimeout)
	defer cancel()
	if err := del(ctx); err != nil {
		WriteError(w, callError(r, "delete", what, name, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getObject(w http.ResponseWriter, r *http.Request, store dwv1.ObjectStoreClient, key, strategy string, rng byteRange) {
	s.serveDownload(w, r, s.objectDownload(r, store, key, strategy), rng)
}

// The GET and HEAD of a stored body, an object or a file, whichever store
// serves it.

// bodyMeta is what GET and HEAD answer of a stored body.
type bodyMeta struct {
	// name is the object's key or the file's path: its last segment names
	// the download of an active type (setStoredContentHeaders).
	name string
	size int64
	// etag is the quoted ETag; empty: none (no If-None-Match or If-Range
	// by tag matches).
	etag     string
	modified time.Time
	// headers sets Content-Type and the store's own headers of a 200, 206
	// or HEAD answer.
	headers func(http.Header)
}

// download is one GET of a stored body: what the shared Range, conditional
// and streaming logic needs of the store.
type download struct {
	what, name string // "object" and its key, or "file" and its path
	logName    string // the log attribute naming it: "key" or "path"
	// fail maps an error of the store's Get call.
	fail func(err error) error
	// stat returns the body's current meta under the request timeout; its
	// errors are mapped.
	stat func(ctx context.Context) (bodyMeta, error)
	// get starts the store's Get of length bytes (nil: to the end) from
	// offset and reads its header; its errors go through fail.
	get func(ctx context.Context, offset int64, length *int64) (bodyStream, error)
}

// bodyStream is a started Get: its header and the data that follows.
type bodyStream struct {
	meta           bodyMeta
	offset, length int64
	// next receives the next data message: its bytes, valid until the
	// next call; other reports a message that is not data.
	next func() (data []byte, other bool, err error)
}

// errNoHeader is a Get stream that does not start with its header.
var errNoHeader = errors.New("plugin sent no header first")

// openBody reads the first message of a Get stream (err: the error of
// starting it), which must be the header, and returns it with the
// receiver of the data messages that follow (streamData, objectCodec).
func openBody[M any, PM interface {
	*M
	proto.Message
}](stream grpc.ServerStreamingClient[M], err error) (PM, func() ([]byte, bool, error), error) {
	if err != nil {
		return nil, nil, err
	}
	d := new(streamData[M, PM])
	if err := stream.RecvMsg(d); err != nil {
		return nil, nil, err
	}
	if d.Other == nil {
		return nil, nil, errNoHeader
	}
	return d.Other, func() ([]byte, bool, error) {
		err := stream.RecvMsg(d)
		return d.Data, d.Other != nil, err
	}, nil
}

// startedBody is the bodyStream of a Get that openBody started: the
// header's meta (hasInfo: the header had the info), offset and length.
func startedBody(m bodyMeta, hasInfo bool, offset, length int64, next func() ([]byte, bool, error), err error) (bodyStream, error) {
	if err == nil && !hasInfo {
		err = errNoHeader
	}
	return bodyStream{meta: m, offset: offset, length: length, next: next}, err
}

// setBodyHeaders sets the headers GET and HEAD answer for a body (not
// Content-Length), also of a range.
func setBodyHeaders(h http.Header, m bodyMeta) {
	setValidators(h, m)
	h.Set("Accept-Ranges", "bytes")
	m.headers(h)
	setStoredContentHeaders(h, m.name)
}

// setValidators sets ETag and Last-Modified (also on a 304).
func setValidators(h http.Header, m bodyMeta) {
	if m.etag != "" {
		h.Set("ETag", m.etag)
	}
	h.Set("Last-Modified", m.modified.UTC().Format(http.TimeFormat))
}

// notModified answers 304 when If-None-Match matches m.
func notModified(w http.ResponseWriter, r *http.Request, m bodyMeta) bool {
	if !noneMatch(r.Header.Values("If-None-Match"), m.etag) {
		return false
	}
	setValidators(w.Header(), m)
	w.WriteHeader(http.StatusNotModified)
	return true
}

// noneMatch reports whether If-None-Match matches etag (weak comparison).
func noneMatch(values []string, etag string) bool {
	for _, v := range values {
		for tag := range strings.SplitSeq(v, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || etag != "" && strings.TrimPrefix(tag, "W/") == etag {
				return true
			}
		}
	}
	return false
}

// ifRangeMatches reports whether an If-Range value selects the current
// body: its strong ETag, or exactly its Last-Modified date.
func ifRangeMatches(v string, m bodyMeta) bool {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, `"`) {
		return m.etag != "" && v == m.etag
	}
	if strings.HasPrefix(v, "W/") {
		return false // weak tags never match If-Range
	}
	t, err := http.ParseTime(v)
	return err == nil && t.Equal(m.modified.Truncate(time.Second))
}

// serveHead answers a HEAD of a body from its meta.
func serveHead(w http.ResponseWriter, r *http.Request, m bodyMeta) {
	if notModified(w, r, m) {
		return
	}
	setBodyHeaders(w.Header(), m)
	w.Header().Set("Content-Length", strconv.FormatInt(m.size, 10))
	w.WriteHeader(http.StatusOK)
}

// notSatisfiable answers 416 with "Content-Range: bytes */size"; size < 0
// asks the store for it.
func (d download) notSatisfiable(ctx context.Context, w http.ResponseWriter, size int64, cause error) {
	if size < 0 {
		m, err := d.stat(ctx)
		if err != nil {
			WriteError(w, err)
			return
		}
		size = m.size
	}
	w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
	WriteError(w, cause)
}

// getAttempts bounds how often a GET starts over because the body changed
// between its Stat and its Get (suffix ranges) or If-Range did not match.
const getAttempts = 3

// serveDownload answers a GET of d for the Range rng.
func (s *Server) serveDownload(w http.ResponseWriter, r *http.Request, d download, rng byteRange) {
	ctx := callerCtx(r)
	a := getAttempt{rng: rng, ifRange: r.Header.Get("If-Range")}
	for attempt := 1; ; attempt++ {
		a.offset, a.length, a.statSize, a.last = 0, nil, -1, attempt == getAttempts
		switch rng := a.rng; {
		case rng.suffix:
			m, err := d.stat(ctx)
			if err != nil {
				WriteError(w, err)
				return
			}
			a.statSize = m.size
			if a.statSize == 0 || rng.suffixLen == 0 {
				d.notSatisfiable(ctx, w, a.statSize, fmt.Errorf("get %s %s: range %s: %w: the %s has %d bytes",
					d.what, shown(d.name), rng, sdk.ErrOutOfRange, d.what, a.statSize))
				return
			}
			n := min(rng.suffixLen, a.statSize)
			a.offset, a.length = a.statSize-n, &n
		case rng.set:
			a.offset = rng.first
			if rng.last >= 0 && rng.last < math.MaxInt64 {
				n := rng.last - rng.first + 1
				a.length = &n
			}
		}
		switch s.streamDownload(ctx, w, r, d, a) {
		case retryChanged:
			continue
		case retryWhole:
			a.rng = byteRange{}
			continue
		}
		return
	}
}

// getAttempt is one try of a GET.
type getAttempt struct {
	rng      byteRange
	ifRange  string
	offset   int64
	length   *int64 // nil: to the end
	statSize int64  // the size a suffix range was computed from
	last     bool   // no more tries after this one
}

type getOutcome int

const (
	done         getOutcome = iota
	retryChanged            // the body changed between Stat and Get
	retryWhole              // If-Range did not match: serve the whole body
)

// streamDownload runs one Get and, unless it asks for another attempt,
// answers the request.
func (s *Server) streamDownload(ctx context.Context, w http.ResponseWriter, r *http.Request, d download, a getAttempt) getOutcome {
	ctx, cancel := context.WithCancel(ctx) // ends the call on every return, and on an abort's panic
	defer cancel()
	body, err := d.get(ctx, a.offset, a.length)
	if err != nil {
		err = d.fail(err)
		if errors.Is(err, sdk.ErrOutOfRange) {
			d.notSatisfiable(ctx, w, -1, err)
			return done
		}
		WriteError(w, err)
		return done
	}
	m := body.meta
	switch {
	case a.rng.suffix && m.size != a.statSize:
		if !a.last {
			return retryChanged
		}
		WriteError(w, fmt.Errorf("get %s %s: %w: the %s keeps changing while read; retry", d.what, shown(d.name), sdk.ErrUnavailable, d.what))
		return done
	case a.rng.set && a.ifRange != "" && !ifRangeMatches(a.ifRange, m):
		return retryWhole
	}
	if notModified(w, r, m) {
		return done
	}
	if a.rng.set && body.length == 0 {
		// Only an empty body serves 0 bytes for a range: nothing in it can
		// be satisfied.
		d.notSatisfiable(ctx, w, m.size, fmt.Errorf("get %s %s: range %s: %w: the %s is empty",
			d.what, shown(d.name), a.rng, sdk.ErrOutOfRange, d.what))
		return done
	}
	h := w.Header()
	setBodyHeaders(h, m)
	h.Set("Content-Length", strconv.FormatInt(body.length, 10))
	status := http.StatusOK
	if a.rng.set {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", body.offset, body.offset+body.length-1, m.size))
	}
	w.WriteHeader(status)
	s.copyBody(w, r, d, body)
	return done
}

// copyBody writes the data of a Get whose headers are out, flushing each
// message; a plugin that fails or breaks the stream aborts the response.
func (s *Server) copyBody(w http.ResponseWriter, r *http.Request, d download, body bodyStream) {
	rc := http.NewResponseController(w)
	var sent int64
	for {
		data, other, err := body.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if r.Context().Err() != nil {
				return // the client is gone
			}
			s.abortDownload(r, d, d.fail(err))
		}
		if other || sent+int64(len(data)) > body.length {
			s.abortDownload(r, d, fmt.Errorf("get %s %s: plugin sent more than the %d bytes it announced, or a second header", d.what, shown(d.name), body.length))
		}
		if len(data) == 0 {
			continue
		}
		if _, err := w.Write(data); err != nil {
			return // the client is gone
		}
		sent += int64(len(data))
		if err := rc.Flush(); err != nil {
			return
		}
	}
	if sent != body.length {
		s.abortDownload(r, d, fmt.Errorf("get %s %s: plugin ended after %d of the %d bytes it announced", d.what, shown(d.name), sent, body.length))
	}
}

// abortDownload ends a response whose headers are out: it aborts the
// connection so that the client sees a truncated body.
func (s *Server) abortDownload(r *http.Request, d download, err error) {
	s.logger.Warn(d.what+" download aborted after its headers were sent", d.logName, d.name, "caller", Caller(r.Context()), "error", err)
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
	if out.pageToken, out.limit, err = pageQuery(q); err != nil {
		return listQuery{}, err
	}
	if v, ok := q["offset"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if !allDigits(v) || err != nil {
			return listQuery{}, fmt.Errorf("offset %s: %w: must be an integer from 0 to %d", shown(v), sdk.ErrInvalidArgument, int64(math.MaxInt64))
		}
		out.offset = n
	}
	if out.count, err = boolParam(q, "count"); err != nil {
		return listQuery{}, err
	}
	if out.stream, err = boolParam(q, "stream"); err != nil {
		return listQuery{}, err
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

// boolParam reads the boolean query parameter name of q (from
// parseQuery): true or false; absent is false.
func boolParam(q map[string]string, name string) (bool, error) {
	switch v, ok := q[name]; {
	case !ok, v == "false":
		return false, nil
	case v == "true":
		return true, nil
	default:
		return false, fmt.Errorf("%s %s: %w: must be true or false", name, shown(v), sdk.ErrInvalidArgument)
	}
}

// pageQuery checks the page_token and limit of a listing query (q from
// parseQuery); limit 0 means not given.
func pageQuery(q map[string]string) (token string, limit int32, err error) {
	token = q["page_token"]
	switch {
	case len(token) > maxPageTokenBytes:
		return "", 0, fmt.Errorf("page_token of %d bytes: %w: at most %d bytes; pass next_page_token of the previous page unchanged",
			len(token), sdk.ErrInvalidArgument, maxPageTokenBytes)
	case !utf8.ValidString(token) || strings.ContainsFunc(token, isControl):
		return "", 0, fmt.Errorf("page_token: %w: not a token of this API; pass next_page_token of the previous page unchanged", sdk.ErrInvalidArgument)
	}
	if v, ok := q["limit"]; ok {
		n, err := strconv.ParseInt(v, 10, 32)
		if !allDigits(v) || err != nil || n < 1 {
			return "", 0, fmt.Errorf("limit %s: %w: must be an integer from 1 to %d (the plugin caps it at its max_page_size)",
				shown(v), sdk.ErrInvalidArgument, math.MaxInt32)
		}
		limit = int32(n)
	}
	return token, limit, nil
}

// ObjectList is GET /v1/objects without stream=true: one page, continued
// with page_token=NextPageToken while HasMore; TotalCount only with
// count=true and a plugin that counts.
type ObjectList struct {
	Items         []Object `json:"items"`
	TotalCount    *int64   `json:"total_count,omitempty"`
	HasMore       bool     `json:"has_more"`
	NextPageToken string   `json:"next_page_token"`
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
	ctx, cancel := context.WithTimeout(callerCtx(r), s.requestTimeout)
	defer cancel()
	resp, err := store.List(ctx, &dwv1.ListObjectsRequest{
		Strategy: q.strategy, Prefix: q.prefix, Limit: q.limit, Offset: q.offset, PageToken: q.pageToken, Count: q.count,
	})
	if err != nil {
		WriteError(w, pluginError(r, fmt.Errorf("list objects with prefix %s: %w", shown(q.prefix), err)))
		return
	}
	out := ObjectList{Items: make([]Object, len(resp.GetItems())), HasMore: resp.GetHasMore(), NextPageToken: resp.GetNextPageToken()}
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
	ctx, cancel := context.WithCancel(callerCtx(r))
	defer cancel()
	stream, err := store.ListStream(ctx, &dwv1.ListObjectsStreamRequest{Strategy: q.strategy, Prefix: q.prefix})
	listErr := func(err error) error {
		return pluginError(r, fmt.Errorf("list objects with prefix %s: %w", shown(q.prefix), err))
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
