package api

// The file endpoints: /v1/files, /v1/files/ and /v1/files/{path...},
// served by the FileStore gRPC service of the filesystem subsystem's
// plugin.
//
// HTTP behaviours chosen here (the plugin confines names to its root and
// schedules the I/O; this file checks the request syntax):
//
//   - The path is the escaped path after "/v1/files/", percent-decoded
//     exactly once and checked with sdk.ValidateFilePath before any plugin
//     call: "..", "%2e%2e", "a//b", "/abs", "%2Fabs", backslashes, NUL and
//     control characters are 400, logged at warn with the caller and the
//     path as sent. "%252e%252e" is the literal name "%2e%2e" (one decoding
//     only), which stays inside the root. These routes bypass the
//     ServeMux's path cleaning (see fileRoute) so that nothing is cleaned
//     into a different, valid path.
//   - A path that ends in '/' (as sent: "%2F" does not count) is a folder
//     listing: "/v1/files" and "/v1/files/" list the root,
//     "/v1/files/{dir}/" lists dir; GET and HEAD only. Query: limit,
//     page_token; anything else is 400. Without the slash a folder is what
//     the plugin makes of it: GET is INVALID_ARGUMENT (400), HEAD answers
//     its info with X-DW-Is-Dir: true, DELETE removes it when empty and is
//     409 otherwise.
//   - X-DW-Priority: high, normal or low, in any case; absent is normal;
//     anything else (an empty value too, or the header twice) is 400. Every
//     plugin call carries it, and the caller as gRPC metadata.
//   - PUT streams the body like an object PUT (sendBody), with
//     Content-Length as the announced size and the optional
//     X-DW-Content-SHA256; it answers 201 with the file's JSON and the
//     SHA-256 of what was written. A partial PUT (Content-Range) is 400.
//   - GET and HEAD share the object endpoints' Range, If-None-Match and
//     If-Range handling (serveDownload). The ETag is the plugin's etag,
//     quoted; one that is not a valid entity tag is left out, and then
//     only "If-None-Match: *" matches. Content-Type is always
//     application/octet-stream with nosniff: the store keeps no type, and
//     a guessed one would let a stored file run as a page.
//   - Backpressure and quota refusals of the plugin arrive as
//     RESOURCE_EXHAUSTED with a retry hint and leave as 429 with
//     Retry-After, through the one error mapping (WriteError).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/grpc"

	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// FilesSubsystem is the subsystem whose plugin serves the file store
// behind /v1/files.
const FilesSubsystem = "filesystem"

const (
	filesPath      = "/v1/files"
	priorityHeader = "X-Dw-Priority" // canonical form of X-DW-Priority
	priorityRule   = "allowed: high, normal or low (any case); without the header: normal"
)

// filePatterns are the file routes' patterns, which are also their route
// labels in metrics; "GET /v1/files" labels every listing.
var filePatterns = []string{
	"GET " + filesPath,
	"PUT " + filesPath + "/{path...}",
	"GET " + filesPath + "/{path...}",
	"HEAD " + filesPath + "/{path...}",
	"DELETE " + filesPath + "/{path...}",
}

// fileRoute matches the file endpoints on the request's escaped path (see
// objectRoute for why not the ServeMux). ok reports whether the path is a
// file path. For an allowed method, h serves it and pattern is its route
// label; for another method, pattern is empty and h answers 405 with
// Allow.
func (s *Server) fileRoute(r *http.Request) (h http.Handler, pattern string, ok bool) {
	rest, found := strings.CutPrefix(r.URL.EscapedPath(), filesPath)
	if !found || rest != "" && rest[0] != '/' {
		return nil, "", false
	}
	if rest == "" || strings.HasSuffix(rest, "/") {
		return listingRoute(r, filesPath, func(w http.ResponseWriter, r *http.Request) { s.listFiles(w, r, rest) })
	}
	return itemRoute(r, filesPath+"/{path...}", func(w http.ResponseWriter, r *http.Request) {
		s.serveFile(w, r, rest[1:])
	})
}

// filePath percent-decodes an escaped path once and checks it with
// sdk.ValidateFilePath. A refusal is logged: it may be an attempt to leave
// the root.
func (s *Server) filePath(r *http.Request, escaped string) (string, error) {
	p, err := url.PathUnescape(escaped)
	if err != nil {
		err = fmt.Errorf("file path %s: %w: malformed percent-encoding (%v)", shown(escaped), sdk.ErrInvalidArgument, err)
	} else {
		err = sdk.ValidateFilePath(p)
	}
	if err != nil {
		s.logger.Warn("file path refused", "caller", Caller(r.Context()), "method", r.Method,
			"path", shown(r.URL.EscapedPath()), "error", err)
		return "", err
	}
	return p, nil
}

// parsePriority reads X-DW-Priority.
func parsePriority(h http.Header) (dwv1.Priority, error) {
	vs := h.Values(priorityHeader)
	switch len(vs) {
	case 0:
		return dwv1.Priority_PRIORITY_NORMAL, nil
	case 1:
	default:
		return 0, fmt.Errorf("header X-DW-Priority: %w: given %d times; give it once (%s)", sdk.ErrInvalidArgument, len(vs), priorityRule)
	}
	for _, p := range []struct {
		name string
		prio dwv1.Priority
	}{{"high", dwv1.Priority_PRIORITY_HIGH}, {"normal", dwv1.Priority_PRIORITY_NORMAL}, {"low", dwv1.Priority_PRIORITY_LOW}} {
		if strings.EqualFold(vs[0], p.name) {
			return p.prio, nil
		}
	}
	return 0, fmt.Errorf("header X-DW-Priority %s: %w: %s", shown(vs[0]), sdk.ErrInvalidArgument, priorityRule)
}

// fileStore returns the FileStore client of the filesystem plugin. A
// plugin that is missing, disabled or down is sdk.ErrUnavailable (503).
func (s *Server) fileStore() (dwv1.FileStoreClient, error) {
	conn, err := s.storeConn(FilesSubsystem, "file store")
	if err != nil {
		return nil, err
	}
	return dwv1.NewFileStoreClient(conn), nil
}

// File is a file's or folder's info in every /v1/files answer: Name is
// the last element of Path, Mode the permission bits in octal ("0644"),
// ModifiedAt RFC 3339 in UTC; SHA256 only in the answer of a PUT. The CLI
// decodes it too.
type File struct {
	Path       string `json:"path"`
	Name       string `json:"name"`
	Size       int64  `json:"size"`
	Mode       string `json:"mode"` // octal permission bits, "0644"
	ModifiedAt string `json:"modified_at"`
	IsDir      bool   `json:"is_dir"`
	SHA256     string `json:"sha256,omitempty"`
}

func toFileJSON(info *dwv1.FileInfo) File {
	p := info.GetPath()
	return File{Path: p, Name: p[strings.LastIndexByte(p, '/')+1:], Size: info.GetSize(), Mode: fileMode(info),
		ModifiedAt: rfc3339(info.GetModifiedAt()), IsDir: info.GetIsDir()}
}

// fileMode is the permission bits in octal, at least four digits.
func fileMode(info *dwv1.FileInfo) string { return fmt.Sprintf("%04o", info.GetMode()&0o7777) }

// fileETag is the plugin's etag quoted, or empty when it has none or one
// that is not a valid entity tag (RFC 9110: no '"', no controls, no space).
func fileETag(info *dwv1.FileInfo) string {
	tag := info.GetEtag()
	if tag == "" {
		return ""
	}
	for i := 0; i < len(tag); i++ {
		if c := tag[i]; c <= ' ' || c == '"' || c == 0x7f {
			return ""
		}
	}
	return `"` + tag + `"`
}

// fileMeta is what GET and HEAD answer of a file.
func fileMeta(info *dwv1.FileInfo) bodyMeta {
	return bodyMeta{name: info.GetPath(), size: info.GetSize(), etag: fileETag(info), modified: info.GetModifiedAt().AsTime(),
		headers: func(h http.Header) {
			h.Set("Content-Type", defaultContentType)
			h.Set("X-Dw-Mode", fileMode(info))
			h.Set("X-Dw-Modified-At", rfc3339(info.GetModifiedAt()))
			h.Set("X-Dw-Is-Dir", strconv.FormatBool(info.GetIsDir()))
		}}
}

// fileRequest is a request of the file endpoints, checked.
type fileRequest struct {
	path  string // "" for the root folder
	query map[string]string
	prio  dwv1.Priority
	put   *dwv1.PutFileHeader // PUT
	rng   byteRange           // GET of a file
	store dwv1.FileStoreClient
}

// checkFileRequest checks all of r that it can before a plugin call: the
// escaped path ("" is the root folder), the query (the allowed
// parameters), X-DW-Priority and, for a file, the PUT headers or the
// Range; then it finds the store.
func (s *Server) checkFileRequest(r *http.Request, escaped string, listing bool, allowed ...string) (fileRequest, error) {
	var q fileRequest
	var err error
	where := r.Method + " " + filesPath + "/{path}"
	if listing {
		where = "GET " + filesPath + "/{folder}/"
	}
	if escaped != "" {
		if q.path, err = s.filePath(r, escaped); err != nil {
			return q, err
		}
	}
	if q.query, err = parseQuery(r.URL.RawQuery, where, allowed...); err != nil {
		return q, err
	}
	if q.prio, err = parsePriority(r.Header); err != nil {
		return q, err
	}
	switch {
	case listing:
	case r.Method == http.MethodPut:
		q.put, err = filePutHeader(r, q.path, q.prio)
	case r.Method == http.MethodGet:
		q.rng, err = parseRange(r.Header.Values("Range"))
	}
	if err == nil {
		q.store, err = s.fileStore()
	}
	return q, err
}

// serveFile serves PUT, GET, HEAD and DELETE of one file.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, escaped string) {
	q, err := s.checkFileRequest(r, escaped, false)
	if err != nil {
		WriteError(w, err)
		return
	}
	switch r.Method {
	case http.MethodPut:
		s.putFile(w, r, q.store, q.put)
	case http.MethodGet:
		s.serveDownload(w, r, s.fileDownload(r, q.store, q.path, q.prio), q.rng)
	case http.MethodHead:
		info, err := s.statFile(callerCtx(r), r, q.store, q.path, q.prio)
		if err != nil {
			WriteError(w, err)
			return
		}
		serveHead(w, r, fileMeta(info))
	case http.MethodDelete:
		s.serveDelete(w, r, "file", q.path, func(ctx context.Context) error {
			_, err := q.store.Delete(ctx, &dwv1.DeleteFileRequest{Path: q.path, Priority: q.prio})
			return err
		})
	}
}

// filePutHeader builds the Put header message from the request headers.
func filePutHeader(r *http.Request, p string, prio dwv1.Priority) (*dwv1.PutFileHeader, error) {
	if err := checkWholeBody(r.Header, "file", p); err != nil {
		return nil, err
	}
	sum, err := contentSHA256(r.Header, "file", p)
	if err != nil {
		return nil, err
	}
	return &dwv1.PutFileHeader{Path: p, Priority: prio, Size: bodySize(r), Sha256: sum}, nil
}

// putFile streams the request body to the plugin's Put.
func (s *Server) putFile(w http.ResponseWriter, r *http.Request, store dwv1.FileStoreClient, hdr *dwv1.PutFileHeader) {
	ctx, cancel := context.WithCancel(callerCtx(r))
	defer cancel()
	part := &dwv1.PutFileRequest_Data{}
	msg := &dwv1.PutFileRequest{Part: part}
	resp, err := sendBody(ctx, cancel, store.Put, &dwv1.PutFileRequest{Part: &dwv1.PutFileRequest_Header{Header: hdr}},
		hdr.GetSize(), r.Body, func(b []byte) *dwv1.PutFileRequest { part.Data = b; return msg })
	if err == nil && resp.GetInfo() == nil {
		err = errors.New("plugin answered the upload without the file's info")
	}
	if err != nil {
		WriteError(w, uploadError(r, "file", hdr.GetPath(), err))
		return
	}
	if etag := fileETag(resp.GetInfo()); etag != "" {
		w.Header().Set("ETag", etag)
	}
	out := toFileJSON(resp.GetInfo())
	out.SHA256 = resp.GetSha256()
	WriteJSON(w, http.StatusCreated, out)
}

// statFile returns a file's or folder's info under the request timeout.
func (s *Server) statFile(ctx context.Context, r *http.Request, store dwv1.FileStoreClient, p string, prio dwv1.Priority) (*dwv1.FileInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, s.requestTimeout)
	defer cancel()
	resp, err := store.Stat(ctx, &dwv1.StatFileRequest{Path: p, Priority: prio})
	if err == nil && resp.GetInfo() == nil {
		err = errors.New("plugin answered without the file's info")
	}
	if err != nil {
		return nil, callError(r, "stat", "file", p, err)
	}
	return resp.GetInfo(), nil
}

// fileDownload is the GET of one file.
func (s *Server) fileDownload(r *http.Request, store dwv1.FileStoreClient, p string, prio dwv1.Priority) download {
	return download{
		what: "file", name: p, logName: "path",
		fail: func(err error) error { return callError(r, "get", "file", p, err) },
		stat: func(ctx context.Context) (bodyMeta, error) {
			info, err := s.statFile(ctx, r, store, p, prio)
			if err == nil && info.GetIsDir() {
				err = fmt.Errorf("get file %s: %w: it is a folder; list it with GET %s/%s/", shown(p), sdk.ErrInvalidArgument, filesPath, p)
			}
			return fileMeta(info), err
		},
		get: func(ctx context.Context, offset int64, length *int64) (bodyStream, error) {
			req := &dwv1.GetFileRequest{Path: p, Priority: prio, Offset: offset, Length: length}
			first, next, err := openBody(store.Get(ctx, req, grpc.ForceCodecV2(objectCodec{})))
			h := first.GetHeader()
			return startedBody(fileMeta(h.GetInfo()), h.GetInfo() != nil, h.GetOffset(), h.GetLength(), next, err)
		},
	}
}

// FileList is GET /v1/files/ and /v1/files/{dir}/: one page of a folder
// listing, continued with page_token=NextPageToken while HasMore.
type FileList struct {
	Items         []File `json:"items"`
	HasMore       bool   `json:"has_more"`
	NextPageToken string `json:"next_page_token"`
}

// listFiles answers a folder listing; rest is the escaped path after
// /v1/files: empty or "/" for the root, else "/{dir}/".
func (s *Server) listFiles(w http.ResponseWriter, r *http.Request, rest string) {
	escaped := ""
	if rest != "" && rest != "/" {
		if escaped = strings.TrimSuffix(rest[1:], "/"); escaped == "" {
			_, err := s.filePath(r, escaped) // "//" is an empty name, not the root
			WriteError(w, err)
			return
		}
	}
	q, err := s.checkFileRequest(r, escaped, true, "limit", "page_token")
	if err == nil {
		var token string
		var limit int32
		if token, limit, err = pageQuery(q.query); err == nil {
			s.listFolder(w, r, q, &dwv1.ListFilesRequest{Path: q.path, Priority: q.prio, Limit: limit, PageToken: token})
			return
		}
	}
	WriteError(w, err)
}

// listFolder runs one List and answers its page.
func (s *Server) listFolder(w http.ResponseWriter, r *http.Request, q fileRequest, req *dwv1.ListFilesRequest) {
	ctx, cancel := context.WithTimeout(callerCtx(r), s.requestTimeout)
	defer cancel()
	resp, err := q.store.List(ctx, req)
	if err != nil {
		where := "the root folder"
		if req.GetPath() != "" {
			where = "folder " + shown(req.GetPath())
		}
		WriteError(w, pluginError(r, fmt.Errorf("list %s: %w", where, err)))
		return
	}
	out := FileList{Items: make([]File, len(resp.GetItems())), HasMore: resp.GetHasMore(), NextPageToken: resp.GetNextPageToken()}
	for i, info := range resp.GetItems() {
		out.Items[i] = toFileJSON(info)
	}
	WriteJSON(w, http.StatusOK, out)
}
