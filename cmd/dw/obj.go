package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/datawarehouse/dw/host/api"
	"github.com/datawarehouse/dw/sdk/v6"
)

// progressThreshold is the size from which --progress=auto shows a bar
// (unknown sizes always get one on a terminal).
const progressThreshold = 8 << 20

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

func newObjCmd(g *globalFlags) *cobra.Command {
	o := &objFlags{g: g}
	cmd := &cobra.Command{
		Use:   "obj",
		Short: "Store, fetch, list and remove objects (the dbstorage subsystem)",
		Long: "Store, fetch, list and remove objects of the dbstorage subsystem through the host's /v1/objects API.\n" +
			"Keys are 1 to 1024 bytes of UTF-8; they are sent exactly as given (slashes, dots and all).\n" +
			"Transfers stream in bounded memory; on a terminal, large ones show a progress bar on stderr.",
	}
	cmd.PersistentFlags().StringVar(&o.strategy, "strategy", "", "storage strategy (default: the subsystem's default_strategy)")
	cmd.AddCommand(newObjPutCmd(o), newObjGetCmd(o), newObjStatCmd(o), newObjLsCmd(o), newObjRmCmd(o))
	return cmd
}

// objFlags are the flags every obj subcommand shares.
type objFlags struct {
	g        *globalFlags
	strategy string
}

// transferClient streams objects and files to and from the host. Unlike
// apiClient it has no overall timeout (a large transfer takes as long as
// it takes; ^C stops it) and never reads a whole body into memory.
type transferClient struct {
	base  string
	token string
	// header is sent with every request.
	header http.Header
	http   *http.Client
	// err is a bad --addr or TLS option, returned by every request.
	err error
}

func newTransferClient(g *globalFlags) *transferClient {
	ac := newAPIClient(g)
	c := &transferClient{base: ac.base, token: ac.token, header: http.Header{}, http: &http.Client{}, err: ac.err}
	if tr, ok := ac.http.Transport.(*http.Transport); ok {
		tr = tr.Clone()
		tr.ResponseHeaderTimeout = 0
		c.http.Transport = tr
	}
	return c
}

// close releases the client's idle connections.
func (c *transferClient) close() { c.http.CloseIdleConnections() }

// objClient is the transferClient of the obj commands.
type objClient struct {
	*transferClient
	strategy string
}

func (o *objFlags) client() *objClient {
	return &objClient{transferClient: newTransferClient(o.g), strategy: o.strategy}
}

// checkKey catches what the host would refuse, without a round trip.
var checkKey = sdk.ValidateObjectKey

// escapeKey percent-encodes every byte of key except the unreserved ones,
// '/' included, so that no proxy or client library can clean "a//b" or
// "x/../y" on the way (the host decodes %2F back to '/').
func escapeKey(key string) string {
	if key == "." || key == ".." {
		return strings.Repeat("%2E", len(key)) // not a dot segment
	}
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func (c *objClient) objectURL(key string) string {
	u := c.base + "/v1/objects/" + escapeKey(key)
	if c.strategy != "" {
		u += "?strategy=" + url.QueryEscape(c.strategy)
	}
	return u
}

// do sends req and returns the response of a 2xx (or 304) answer; any
// other answer becomes an *apiError and its body is closed.
func (c *transferClient) do(req *http.Request) (*http.Response, error) {
	if c.err != nil {
		return nil, c.err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s %s: interrupted: %w", req.Method, req.URL.Path, ctxErr)
		}
		return nil, reachError(c.base, err)
	}
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotModified {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, errorOf(resp)
}

// errorOf reads an error answer (at most maxErrorBody of it).
func errorOf(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	ae := &apiError{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(data))}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
		ae.Code, ae.Message = e.Error.Code, e.Error.Message
	}
	if ae.Message == "" { // HEAD answers have no body
		ae.Message = resp.Request.Method + " " + resp.Request.URL.Path + ": " + strings.ToLower(http.StatusText(resp.StatusCode))
	}
	if m := plainToTLS(resp, data); m != "" {
		ae.Message = m
	}
	if resp.StatusCode == http.StatusUnauthorized {
		ae.Message += " (set DW_TOKEN or --token)"
	}
	return ae
}

// objectFromHeaders rebuilds the object JSON from GET or HEAD headers.
func objectFromHeaders(key string, h http.Header, size int64) api.Object {
	o := api.Object{Key: key, Size: size, SHA256: h.Get("X-DW-Content-SHA256"), ContentType: h.Get("Content-Type"),
		Metadata: map[string]string{}, CreatedAt: h.Get("X-DW-Created-At"), ModifiedAt: h.Get("X-DW-Modified-At"),
		Strategy: h.Get("X-DW-Strategy")}
	for k, vs := range h {
		if name, ok := strings.CutPrefix(http.CanonicalHeaderKey(k), "X-Dw-Meta-"); ok && len(vs) > 0 {
			o.Metadata[strings.ToLower(name)] = vs[0]
		}
	}
	return o
}

// interruptible returns a context that ends on ^C or SIGTERM, so that a
// transfer stops cleanly (and get removes its temporary file).
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// newProgress returns a progress bar on w for a transfer of size bytes (-1:
// unknown), or nil when mode says there should be none: "auto" shows one
// when w is a terminal and the size is unknown or at least
// progressThreshold; "always" and "never" are what they say.
func newProgress(mode string, w io.Writer, size int64, desc string) *progressbar.ProgressBar {
	switch mode {
	case "never":
		return nil
	case "auto":
		if !isTerminal(w) || size >= 0 && size < progressThreshold {
			return nil
		}
	}
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionSetSpinnerChangeInterval(0), // no goroutine of its own
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
}

// progressFlag adds --progress to a command that transfers a body.
func progressFlag(cmd *cobra.Command, mode *string) {
	cmd.Flags().StringVar(mode, "progress", "auto", "progress bar on stderr: auto (on a terminal, for 8 MiB or more or an unknown size), always or never")
}

// rangeUsage is the help of --range.
const rangeUsage = "fetch only bytes FIRST-LAST, FIRST- or -COUNT (the last COUNT bytes)"

func checkProgressMode(mode string) error {
	if mode != "auto" && mode != "always" && mode != "never" {
		return fmt.Errorf("--progress %q: must be auto, always or never", mode)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressWriter counts bytes into a bar that may be nil.
type progressWriter struct{ bar *progressbar.ProgressBar }

func (p progressWriter) Write(b []byte) (int, error) {
	if p.bar != nil {
		_ = p.bar.Add(len(b))
	}
	return len(b), nil
}

func (p progressWriter) finish(ok bool) {
	switch {
	case p.bar == nil:
	case ok:
		_ = p.bar.Finish()
	default:
		_ = p.bar.Exit()
	}
}

func newObjPutCmd(o *objFlags) *cobra.Command {
	var (
		contentType string
		meta        []string
		progress    string
	)
	cmd := &cobra.Command{
		Use:   "put KEY [FILE|-]",
		Short: "Store FILE (or stdin) as object KEY, replacing any object of that key",
		Long: "Store FILE, or stdin with - or no FILE, as object KEY. A regular file is sent with its length;\n" +
			"other input is streamed (chunked). The content type is --content-type, else guessed from FILE's\n" +
			"extension, else application/octet-stream. The SHA-256 the host stored is checked against what was sent.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			header := http.Header{}
			for _, m := range meta {
				name, value, ok := strings.Cut(m, "=")
				if !ok || name == "" {
					return fmt.Errorf("--meta %q: want name=value", m)
				}
				header.Set("X-DW-Meta-"+name, value)
			}
			src, body, size, closeSource, err := uploadSource(cmd, args, checkKey, progress)
			if err != nil {
				return err
			}
			defer closeSource()
			if contentType == "" && src != "-" {
				contentType = mime.TypeByExtension(filepath.Ext(src))
			}
			if contentType != "" {
				header.Set("Content-Type", contentType)
			}
			c := o.client()
			defer c.close()
			raw, err := c.upload(cmd, c.objectURL(key), header, transfer{what: "object", name: key, source: src, progress: progress}, body, size)
			if err != nil {
				return err
			}
			var obj api.Object
			if err := json.Unmarshal(raw, &obj); err != nil {
				return fmt.Errorf("put %s: decode answer: %w", key, err)
			}
			if o.g.output == "json" {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stored %s: %s, sha256 %s, strategy %s\n", key, humanSize(obj.Size), obj.SHA256, obj.Strategy)
			return nil
		},
	}
	cmd.Flags().StringVar(&contentType, "content-type", "", "content type (default: guessed from FILE's extension, else application/octet-stream)")
	cmd.Flags().StringArrayVar(&meta, "meta", nil, "user metadata name=value (repeatable; names: a-z, 0-9, '-', '_')")
	progressFlag(cmd, &progress)
	return cmd
}

// transfer names one upload or download for messages and progress.
type transfer struct {
	what, name string // "object" and its key, "file" and its path
	source     string // upload: the FILE or "-"
	progress   string // --progress: auto, always or never
}

// uploadSource checks the args of a put (NAME [FILE|-]) with check and
// its --progress, then opens what it sends (openSource).
func uploadSource(cmd *cobra.Command, args []string, check func(string) error, progress string) (src string, body io.Reader, size int64, done func(), err error) {
	if err := check(args[0]); err != nil {
		return "", nil, 0, nil, err
	}
	if err := checkProgressMode(progress); err != nil {
		return "", nil, 0, nil, err
	}
	src = "-"
	if len(args) == 2 {
		src = args[1]
	}
	body, size, done, err = openSource(cmd, src)
	if err != nil {
		return "", nil, 0, nil, fmt.Errorf("put %s: %w", args[0], err)
	}
	return src, body, size, done, nil
}

// openSource opens what an upload sends: FILE, or stdin for "-". size is
// what is left to read of a regular file, else -1; done closes FILE.
func openSource(cmd *cobra.Command, src string) (body io.Reader, size int64, done func(), err error) {
	if src == "-" {
		body = cmd.InOrStdin()
		size = -1
		if f, ok := body.(*os.File); ok {
			size = regularRemaining(f)
		}
		return body, size, func() {}, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, 0, nil, err
	}
	st, err := f.Stat()
	if err == nil && st.IsDir() {
		err = fmt.Errorf("%s is a folder, not a file", src)
	}
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	return f, regularRemaining(f), func() { f.Close() }, nil
}

// upload PUTs body (size bytes, -1: unknown) to u with header, showing
// progress, and returns the answer's JSON once its "sha256" matches what
// was sent.
func (c *transferClient) upload(cmd *cobra.Command, u string, header http.Header, t transfer, body io.Reader, size int64) ([]byte, error) {
	ctx, stop := interruptible(cmd.Context())
	defer stop()
	bar := progressWriter{newProgress(t.progress, cmd.ErrOrStderr(), size, "put "+t.name)}
	// A sum in the header (dw fs put of a regular file, hashed before the
	// upload) is checked by the store before it commits: the answer is
	// compared with it, and the body is not hashed a second time.
	presummed := header.Get("X-DW-Content-SHA256")
	var sum hash.Hash
	var sink io.Writer = bar
	if presummed == "" {
		sum = sha256.New()
		sink = io.MultiWriter(sum, bar)
	}
	source := &sourceReader{r: body, name: t.source}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, io.TeeReader(source, sink))
	if err != nil {
		return nil, fmt.Errorf("put %s: %w", t.name, err)
	}
	req.Header = header
	if size == 0 {
		req.Body = http.NoBody // a length of 0 with a body would read as unknown
	}
	if size >= 0 {
		req.ContentLength = size
	}
	resp, err := c.do(req)
	bar.finish(err == nil)
	if source.err != nil && err != nil {
		// The transport reports a failing body as its own error.
		return nil, fmt.Errorf("put %s: read %s: %w (nothing was stored)", t.name, source.name, source.err)
	}
	if err != nil {
		return nil, fmt.Errorf("put %s: %w", t.name, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("put %s: read answer: %w", t.name, err)
	}
	var stored struct {
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(raw, &stored); err != nil {
		return nil, fmt.Errorf("put %s: decode answer: %w", t.name, err)
	}
	if stored.SHA256 == "" && t.what == "file" && presummed == "" {
		// A file store hashes only when asked: nothing to compare.
		return raw, nil
	}
	sent := presummed
	if sum != nil {
		sent = hex.EncodeToString(sum.Sum(nil))
	}
	if stored.SHA256 != sent {
		return nil, fmt.Errorf("put %s: the host stored SHA-256 %s but %s was sent; the %s is damaged, put it again", t.name, stored.SHA256, sent, t.what)
	}
	return raw, nil
}

// sourceReader remembers why reading the upload's source failed.
type sourceReader struct {
	r    io.Reader
	name string
	err  error
}

func (s *sourceReader) Read(b []byte) (int, error) {
	n, err := s.r.Read(b)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// regularRemaining returns how many bytes are left to read from f when it
// is a regular file, else -1.
func regularRemaining(f *os.File) int64 {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return -1
	}
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil || pos > st.Size() {
		return -1
	}
	return st.Size() - pos
}

var rangeRE = regexp.MustCompile(`^([0-9]+-[0-9]*|-[0-9]+)$`)

func newObjGetCmd(o *objFlags) *cobra.Command {
	var (
		rng      string
		progress string
	)
	cmd := &cobra.Command{
		Use:   "get KEY [FILE|-]",
		Short: "Fetch object KEY into FILE (or stdout)",
		Long: "Fetch object KEY into FILE, or to stdout with - or no FILE. FILE is written through a temporary\n" +
			"file in the same folder and renamed at the end, so an interrupted or failed download never leaves\n" +
			"a partial FILE. A whole object is checked against its SHA-256; a mismatch is an error (and, with\n" +
			"FILE, leaves FILE untouched). --range fetches part of the object: 0-99, 100- or -50 (the last 50 bytes).",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			if err := checkKey(key); err != nil {
				return err
			}
			dst, err := downloadTarget(args, progress, rng)
			if err != nil {
				return err
			}
			c := o.client()
			defer c.close()
			var obj api.Object
			t := transfer{what: "object", name: key, progress: progress}
			n, whole, err := c.download(cmd, c.objectURL(key), rng, dst, t, func(resp *http.Response) string {
				obj = objectFromHeaders(key, resp.Header, resp.ContentLength)
				if total, ok := rangeTotal(resp); ok {
					obj.Size = total
				}
				return obj.SHA256
			})
			if err != nil || dst == "-" {
				return err
			}
			if o.g.output == "json" {
				raw, _ := json.Marshal(obj)
				return printJSON(cmd.OutOrStdout(), raw)
			}
			verified := ""
			if whole && obj.SHA256 != "" {
				verified = ", sha256 verified"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s%s\n", dst, humanSize(n), verified)
			return nil
		},
	}
	cmd.Flags().StringVar(&rng, "range", "", rangeUsage)
	progressFlag(cmd, &progress)
	return cmd
}

// downloadTarget checks the flags of a get (args: NAME [FILE|-]) and
// returns where it writes: FILE, or "-" for stdout.
func downloadTarget(args []string, progress, rng string) (string, error) {
	name := args[0]
	if err := checkProgressMode(progress); err != nil {
		return "", err
	}
	if rng != "" && !rangeRE.MatchString(rng) {
		return "", fmt.Errorf("--range %q: want FIRST-LAST, FIRST- or -COUNT (bytes, from 0), e.g. 0-99, 100- or -50", rng)
	}
	dst := "-"
	if len(args) == 2 {
		dst = args[1]
	}
	if dst != "-" {
		if st, err := os.Stat(dst); err == nil && st.IsDir() {
			return "", fmt.Errorf("get %s: %s is a folder; name the file to write", name, dst)
		}
	}
	return dst, nil
}

// download GETs u (only the bytes rng, e.g. "0-99", when set) into dst
// ("-": stdout), showing progress. FILE is written through
// writeAtomically. answered reads the answer's headers and returns the
// SHA-256 a whole body must have (empty: not checked). whole reports
// whether the whole body came (200).
func (c *transferClient) download(cmd *cobra.Command, u, rng, dst string, t transfer, answered func(*http.Response) string) (n int64, whole bool, err error) {
	ctx, stop := interruptible(cmd.Context())
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, false, fmt.Errorf("get %s: %w", t.name, err)
	}
	if rng != "" {
		req.Header.Set("Range", "bytes="+rng)
	}
	resp, err := c.do(req)
	if err != nil {
		return 0, false, fmt.Errorf("get %s: %w", t.name, err)
	}
	defer resp.Body.Close()
	want := answered(resp)
	whole = resp.StatusCode == http.StatusOK
	bar := progressWriter{newProgress(t.progress, cmd.ErrOrStderr(), resp.ContentLength, "get "+t.name)}

	copyBody := func(w io.Writer) (int64, error) {
		hash := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, hash, bar), resp.Body)
		if err != nil {
			if ctx.Err() != nil {
				return n, fmt.Errorf("interrupted after %d bytes", n)
			}
			return n, fmt.Errorf("download failed after %d bytes: %w", n, err)
		}
		if resp.ContentLength >= 0 && n != resp.ContentLength {
			return n, fmt.Errorf("download ended after %d of %d bytes", n, resp.ContentLength)
		}
		if got := hex.EncodeToString(hash.Sum(nil)); whole && want != "" && got != want {
			return n, fmt.Errorf("SHA-256 mismatch: the data read has %s, the %s has %s", got, t.what, want)
		}
		return n, nil
	}
	if dst == "-" {
		n, err = copyBody(cmd.OutOrStdout())
	} else {
		err = writeAtomically(dst, func(f io.Writer) error {
			var err error
			n, err = copyBody(f)
			return err
		})
	}
	bar.finish(err == nil)
	if err != nil {
		if dst != "-" {
			return n, whole, fmt.Errorf("get %s: %w (%s was not written)", t.name, err, dst)
		}
		return n, whole, fmt.Errorf("get %s: %w", t.name, err)
	}
	return n, whole, nil
}

// rangeTotal is the size of the whole body from a 206's Content-Range
// ("bytes first-last/size").
func rangeTotal(resp *http.Response) (int64, bool) {
	if resp.StatusCode != http.StatusPartialContent {
		return 0, false
	}
	_, total, ok := strings.Cut(resp.Header.Get("Content-Range"), "/")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil
}

// writeAtomically writes path through a temporary file in its folder that
// is renamed over path only when write succeeds; otherwise the temporary
// file is removed and path is left as it was. A new file gets the usual
// permissions (0666 less the umask), a replaced one keeps its own. A path
// that exists and is not a regular file (/dev/null, a named pipe) is
// written directly: renaming over it would replace the device.
func writeAtomically(path string, write func(io.Writer) error) (err error) {
	if st, serr := os.Stat(path); serr == nil && !st.Mode().IsRegular() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if err := write(f); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	var f *os.File
	var tmp string
	for range 10 {
		var rnd [6]byte
		_, _ = rand.Read(rnd[:])
		tmp = filepath.Join(dir, "."+base+"."+hex.EncodeToString(rnd[:])+".dw-part")
		f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("create a temporary file next to %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = write(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if st, serr := os.Stat(path); serr == nil && st.Mode().IsRegular() {
		_ = f.Chmod(st.Mode().Perm())
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	// The rename is durable only once the folder is synced.
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("sync folder of %s: %w", path, err)
		}
	}
	return nil
}

func newObjStatCmd(o *objFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "stat KEY",
		Short: "Show an object's size, SHA-256, content type, metadata and times",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			if err := checkKey(key); err != nil {
				return err
			}
			c := o.client()
			defer c.close()
			resp, err := c.head(cmd, c.objectURL(key), "object", key)
			if err != nil {
				return err
			}
			obj := objectFromHeaders(key, resp.Header, resp.ContentLength)
			out := cmd.OutOrStdout()
			if o.g.output == "json" {
				raw, _ := json.Marshal(obj)
				return printJSON(out, raw)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "key\t%s\n", obj.Key)
			fmt.Fprintf(tw, "size\t%d (%s)\n", obj.Size, humanSize(obj.Size))
			fmt.Fprintf(tw, "sha256\t%s\n", obj.SHA256)
			fmt.Fprintf(tw, "content type\t%s\n", obj.ContentType)
			fmt.Fprintf(tw, "strategy\t%s\n", obj.Strategy)
			fmt.Fprintf(tw, "created\t%s\n", obj.CreatedAt)
			fmt.Fprintf(tw, "modified\t%s\n", obj.ModifiedAt)
			for _, name := range slices.Sorted(maps.Keys(obj.Metadata)) {
				fmt.Fprintf(tw, "meta %s\t%s\n", name, obj.Metadata[name])
			}
			return tw.Flush()
		},
	}
}

// head sends HEAD u for the item what ("object", "file") named name; the
// answer's body is closed.
func (c *transferClient) head(cmd *cobra.Command, u, what, name string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodHead, u, nil)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", name, err)
	}
	resp, err := c.do(req)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			ae.Message = fmt.Sprintf("%s %q not found", what, name)
		}
		return nil, fmt.Errorf("stat %s: %w", name, err)
	}
	resp.Body.Close()
	return resp, nil
}

func newObjLsCmd(o *objFlags) *cobra.Command {
	var (
		limit     int
		pageToken string
		count     bool
		all       bool
	)
	cmd := &cobra.Command{
		Use:   "ls [PREFIX]",
		Short: "List objects whose key starts with PREFIX, one page at a time or --all",
		Long: "List objects whose key starts with PREFIX, in key order: one page (--limit, --page-token for the\n" +
			"next one, --count for the number of matches), or every match with --all, streamed as it comes.\n" +
			"Each line: modified time, size in bytes, key. With -o json: the page as JSON, or with --all one JSON\n" +
			"object per line.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			q := url.Values{}
			if prefix != "" {
				q.Set("prefix", prefix)
			}
			if o.strategy != "" {
				q.Set("strategy", o.strategy)
			}
			if all {
				for _, name := range []string{"limit", "page-token", "count"} {
					if cmd.Flags().Changed(name) {
						return fmt.Errorf("--all lists every match; it does not take --%s", name)
					}
				}
				q.Set("stream", "true")
			} else {
				if cmd.Flags().Changed("limit") {
					if limit < 1 {
						return fmt.Errorf("--limit %d: must be at least 1", limit)
					}
					q.Set("limit", strconv.Itoa(limit))
				}
				if pageToken != "" {
					q.Set("page_token", pageToken)
				}
				if count {
					q.Set("count", "true")
				}
			}
			c := o.client()
			defer c.close()
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			u := c.base + "/v1/objects"
			if len(q) > 0 {
				u += "?" + q.Encode()
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return fmt.Errorf("list: %w", err)
			}
			resp, err := c.do(req)
			if err != nil {
				return fmt.Errorf("list: %w", err)
			}
			defer resp.Body.Close()
			out := cmd.OutOrStdout()
			if all {
				return streamListing(out, resp.Body, o.g.output == "json")
			}
			raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20)) // one page, bounded by the host's max_page_size
			if err != nil {
				return fmt.Errorf("list: read answer: %w", err)
			}
			var page api.ObjectList
			if err := json.Unmarshal(raw, &page); err != nil {
				return fmt.Errorf("list: decode answer: %w", err)
			}
			if o.g.output == "json" {
				return printJSON(out, raw)
			}
			for _, obj := range page.Items {
				writeListLine(out, obj)
			}
			if page.TotalCount != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d objects match\n", *page.TotalCount)
			}
			if page.HasMore {
				fmt.Fprintf(cmd.ErrOrStderr(), "more objects follow: add --page-token %s\n", page.NextPageToken)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "page size (default: the subsystem's default_page_size; capped at its max_page_size)")
	cmd.Flags().StringVar(&pageToken, "page-token", "", "continue after the page that gave this token")
	cmd.Flags().BoolVar(&count, "count", false, "also count every match")
	cmd.Flags().BoolVar(&all, "all", false, "list every match, streamed")
	return cmd
}

// writeListLine prints one listing line: modified time, size, key.
func writeListLine(w io.Writer, obj api.Object) {
	mod := obj.ModifiedAt
	if t, err := time.Parse(time.RFC3339Nano, mod); err == nil {
		mod = t.UTC().Format("2006-01-02 15:04:05")
	}
	fmt.Fprintf(w, "%s  %12d  %s\n", mod, obj.Size, obj.Key)
}

// streamListing copies an NDJSON listing to w as it comes: raw lines for
// JSON output, listing lines otherwise. A last line {"error":...} is
// returned as the error.
func streamListing(w io.Writer, body io.Reader, asJSON bool) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	bw := bufio.NewWriter(w)
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		var v struct {
			api.Object
			Error *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &v); err != nil {
			return fmt.Errorf("list: decode line %d: %w", n+1, err)
		}
		if v.Error != nil {
			_ = bw.Flush()
			return fmt.Errorf("list: stopped after %d objects: %w", n, &apiError{Status: http.StatusOK, Code: v.Error.Code, Message: v.Error.Message})
		}
		n++
		if asJSON {
			_, _ = bw.Write(line)
			_ = bw.WriteByte('\n') // a write error stays in bw: Flush reports it
		} else {
			writeListLine(bw, v.Object)
		}
		if n%256 == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		_ = bw.Flush()
		return fmt.Errorf("list: stopped after %d objects: %w", n, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("list: write: %w", err)
	}
	return nil
}

func newObjRmCmd(o *objFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm KEY...",
		Short: "Remove objects (a key that does not exist is not an error)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := o.client()
			defer c.close()
			return c.removeEach(cmd, o.g, args, checkKey, c.objectURL, "objects")
		},
	}
}

// removeEach DELETEs each of names (checked by check; at urlOf(name)),
// saying what became of each, and fails if any could not be removed;
// what names them in that error ("objects").
func (c *transferClient) removeEach(cmd *cobra.Command, g *globalFlags, names []string, check func(string) error, urlOf func(string) string, what string) error {
	var removed []string
	var failed int
	for _, name := range names {
		err := check(name)
		if err == nil {
			var req *http.Request
			req, err = http.NewRequestWithContext(cmd.Context(), http.MethodDelete, urlOf(name), nil)
			if err == nil {
				var resp *http.Response
				if resp, err = c.do(req); err == nil {
					resp.Body.Close()
				}
			}
		}
		if err != nil {
			failed++
			fmt.Fprintf(cmd.ErrOrStderr(), "dw: rm %s: %v\n", name, err)
			continue
		}
		removed = append(removed, name)
		if g.output != "json" {
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", name)
		}
	}
	if g.output == "json" {
		if removed == nil {
			removed = []string{}
		}
		raw, _ := json.Marshal(map[string]any{"removed": removed})
		if err := printJSON(cmd.OutOrStdout(), raw); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("rm: %d of %d %s could not be removed", failed, len(names), what)
	}
	return nil
}

// humanSize writes n bytes in IEC units.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
