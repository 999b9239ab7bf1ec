package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/datawarehouse/dw/host/api"
	"github.com/datawarehouse/dw/sdk/v6"
)

// maxPageBytes bounds one listing page read from the host.
const maxPageBytes = 256 << 20

func newFsCmd(g *globalFlags) *cobra.Command {
	f := &fsFlags{g: g}
	cmd := &cobra.Command{
		Use:   "fs",
		Short: "Store, fetch, list and remove files (the filesystem subsystem)",
		Long: "Store, fetch, list and remove files of the filesystem subsystem through the host's /v1/files API.\n" +
			"A path is relative to the store's root: '/'-separated names, no empty, '.' or '..' names, no '\\\\'.\n" +
			"Every request carries --priority (high, normal or low) for the plugin's I/O scheduler.\n" +
			"Transfers stream in bounded memory; on a terminal, large ones show a progress bar on stderr.",
	}
	cmd.PersistentFlags().StringVar(&f.priority, "priority", "normal", "I/O priority of every request: high, normal or low")
	cmd.AddCommand(newFsPutCmd(f), newFsGetCmd(f), newFsStatCmd(f), newFsLsCmd(f), newFsRmCmd(f))
	return cmd
}

// fsFlags are the flags every fs subcommand shares.
type fsFlags struct {
	g        *globalFlags
	priority string
}

// fsClient is the transferClient of the fs commands: every request
// carries X-DW-Priority.
type fsClient struct{ *transferClient }

func (f *fsFlags) client() (*fsClient, error) {
	p := strings.ToLower(f.priority)
	if p != "high" && p != "normal" && p != "low" {
		return nil, fmt.Errorf("--priority %q: must be high, normal or low", f.priority)
	}
	c := &fsClient{newTransferClient(f.g)}
	c.header.Set("X-DW-Priority", p)
	return c, nil
}

// checkPath catches a path the host would refuse, without a round trip.
func checkPath(p string) error { return sdk.ValidateFilePath(p) }

// escapePath percent-encodes each name of a valid path (see escapeKey),
// keeping the '/' between them: no name is "." or "..", so nothing on the
// way can clean the path.
func escapePath(p string) string {
	names := strings.Split(p, "/")
	for i, n := range names {
		names[i] = escapeKey(n)
	}
	return strings.Join(names, "/")
}

func (c *fsClient) fileURL(p string) string { return c.base + "/v1/files/" + escapePath(p) }

// folderURL is the listing of folder dir ("": the root).
func (c *fsClient) folderURL(dir string) string {
	if dir == "" {
		return c.base + "/v1/files/"
	}
	return c.fileURL(dir) + "/"
}

// fileFromHeaders rebuilds the file JSON from GET or HEAD headers.
func fileFromHeaders(p string, h http.Header, size int64) api.File {
	return api.File{Path: p, Name: p[strings.LastIndexByte(p, '/')+1:], Size: size, Mode: h.Get("X-DW-Mode"),
		ModifiedAt: h.Get("X-DW-Modified-At"), IsDir: h.Get("X-DW-Is-Dir") == "true"}
}

func newFsPutCmd(f *fsFlags) *cobra.Command {
	var progress string
	cmd := &cobra.Command{
		Use:   "put PATH [FILE|-]",
		Short: "Store FILE (or stdin) as file PATH, replacing it atomically",
		Long: "Store FILE, or stdin with - or no FILE, as file PATH; missing folders are created. A regular file is sent\n" +
			"with its length and its SHA-256, which the plugin checks before it commits; other input is streamed (chunked)\n" +
			"and not checked, unless the host answers a SHA-256 to compare.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := args[0]
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.close()
			src, body, size, closeSource, err := uploadSource(cmd, args, checkPath, progress)
			if err != nil {
				return err
			}
			defer closeSource()
			header := http.Header{}
			// The file store hashes only on request: a file that can be
			// read twice is hashed first, so that the plugin checks the
			// data before it commits (a damaged upload is never stored).
			if sum, ok, err := presum(body); err != nil {
				return fmt.Errorf("put %s: read %s: %w", p, src, err)
			} else if ok {
				header.Set("X-DW-Content-SHA256", sum)
			}
			raw, err := c.upload(cmd, c.fileURL(p), header, transfer{what: "file", name: p, source: src, progress: progress}, body, size)
			if err != nil {
				return err
			}
			if f.g.output == "json" {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			var fi api.File
			if err := json.Unmarshal(raw, &fi); err != nil {
				return fmt.Errorf("put %s: decode answer: %w", p, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stored %s: %s, sha256 %s\n", p, humanSize(fi.Size), fi.SHA256)
			return nil
		},
	}
	progressFlag(cmd, &progress)
	return cmd
}

func newFsGetCmd(f *fsFlags) *cobra.Command {
	var (
		rng      string
		progress string
	)
	cmd := &cobra.Command{
		Use:   "get PATH [FILE|-]",
		Short: "Fetch file PATH into FILE (or stdout)",
		Long: "Fetch file PATH into FILE, or to stdout with - or no FILE. FILE is written through a temporary file in\n" +
			"the same folder and renamed at the end, so an interrupted or failed download never leaves a partial FILE.\n" +
			"--range fetches part of the file: 0-99, 100- or -50 (the last 50 bytes).",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := args[0]
			if err := checkPath(p); err != nil {
				return err
			}
			dst, err := downloadTarget(args, progress, rng)
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.close()
			var fi api.File
			n, _, err := c.download(cmd, c.fileURL(p), rng, dst, transfer{what: "file", name: p, progress: progress}, func(resp *http.Response) string {
				fi = fileFromHeaders(p, resp.Header, resp.ContentLength)
				if total, ok := rangeTotal(resp); ok {
					fi.Size = total
				}
				return "" // the host has no checksum of a file to check a download against
			})
			if err != nil || dst == "-" {
				return err
			}
			if f.g.output == "json" {
				raw, _ := json.Marshal(fi)
				return printJSON(cmd.OutOrStdout(), raw)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s\n", dst, humanSize(n))
			return nil
		},
	}
	cmd.Flags().StringVar(&rng, "range", "", rangeUsage)
	progressFlag(cmd, &progress)
	return cmd
}

func newFsStatCmd(f *fsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "stat PATH",
		Short: "Show a file's or folder's size, mode, modification time and ETag",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := args[0]
			if err := checkPath(p); err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.close()
			resp, err := c.head(cmd, c.fileURL(p), "file", p)
			if err != nil {
				return err
			}
			fi := fileFromHeaders(p, resp.Header, resp.ContentLength)
			out := cmd.OutOrStdout()
			if f.g.output == "json" {
				raw, _ := json.Marshal(fi)
				return printJSON(out, raw)
			}
			kind := "file"
			if fi.IsDir {
				kind = "folder"
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "path\t%s\n", fi.Path)
			fmt.Fprintf(tw, "type\t%s\n", kind)
			fmt.Fprintf(tw, "size\t%d (%s)\n", fi.Size, humanSize(fi.Size))
			fmt.Fprintf(tw, "mode\t%s\n", fi.Mode)
			fmt.Fprintf(tw, "modified\t%s\n", fi.ModifiedAt)
			fmt.Fprintf(tw, "etag\t%s\n", dash(resp.Header.Get("ETag")))
			return tw.Flush()
		},
	}
}

func newFsLsCmd(f *fsFlags) *cobra.Command {
	var (
		limit     int
		pageToken string
		all       bool
	)
	cmd := &cobra.Command{
		Use:   "ls [FOLDER]",
		Short: "List a folder (default: the root), one page at a time or --all",
		Long: "List the entries of FOLDER, or of the root, in name order: one page (--limit, --page-token for the next\n" +
			"one), or every entry with --all, page after page. Each line: mode, modified time, size in bytes, name\n" +
			"(a folder's ends in /). With -o json: the page as JSON, or with --all one JSON entry per line.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := ""
			if len(args) == 1 {
				dir = strings.TrimSuffix(args[0], "/")
				if dir != "" { // "/" is the root
					if err := checkPath(dir); err != nil {
						return err
					}
				}
			}
			q := url.Values{}
			if all && cmd.Flags().Changed("page-token") {
				return fmt.Errorf("--all lists every entry; it does not take --page-token")
			}
			if cmd.Flags().Changed("limit") {
				if limit < 1 {
					return fmt.Errorf("--limit %d: must be at least 1", limit)
				}
				q.Set("limit", strconv.Itoa(limit))
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.close()
			ctx, stop := interruptible(cmd.Context())
			defer stop()
			out, asJSON := cmd.OutOrStdout(), f.g.output == "json"
			for token, entries := pageToken, 0; ; {
				if token != "" {
					q.Set("page_token", token)
				}
				u := c.folderURL(dir)
				if len(q) > 0 {
					u += "?" + q.Encode()
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				if err != nil {
					return fmt.Errorf("list %s: %w", dir, err)
				}
				raw, page, err := c.listPage(req)
				if err != nil {
					if entries > 0 {
						return fmt.Errorf("list: stopped after %d entries: %w", entries, err)
					}
					return fmt.Errorf("list: %w", err)
				}
				entries += len(page.Items)
				switch {
				case asJSON && !all:
					return printJSON(out, raw)
				case asJSON:
					for _, fi := range page.Items {
						line, _ := json.Marshal(fi)
						fmt.Fprintf(out, "%s\n", line)
					}
				default:
					for _, fi := range page.Items {
						writeFileLine(out, fi)
					}
				}
				if !page.HasMore {
					return nil
				}
				if !all {
					fmt.Fprintf(cmd.ErrOrStderr(), "more entries follow: add --page-token %s\n", page.NextPageToken)
					return nil
				}
				token = page.NextPageToken
			}
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "page size (default: the subsystem's; capped at its maximum)")
	cmd.Flags().StringVar(&pageToken, "page-token", "", "continue after the page that gave this token")
	cmd.Flags().BoolVar(&all, "all", false, "list every entry, page after page")
	return cmd
}

// listPage sends a listing request and reads its page (at most
// maxPageBytes).
func (c *fsClient) listPage(req *http.Request) ([]byte, api.FileList, error) {
	var page api.FileList
	resp, err := c.do(req)
	if err != nil {
		return nil, page, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxPageBytes))
	if err != nil {
		return nil, page, fmt.Errorf("read answer: %w", err)
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return nil, page, fmt.Errorf("decode answer: %w", err)
	}
	if page.HasMore && page.NextPageToken == "" {
		return nil, page, fmt.Errorf("the host said more entries follow but gave no next_page_token")
	}
	return raw, page, nil
}

// writeFileLine prints one listing line: mode, modified time, size, name.
func writeFileLine(w io.Writer, fi api.File) {
	mod := fi.ModifiedAt
	if t, err := time.Parse(time.RFC3339Nano, mod); err == nil {
		mod = t.UTC().Format("2006-01-02 15:04:05")
	}
	name := fi.Name
	if fi.IsDir {
		name += "/"
	}
	fmt.Fprintf(w, "%s  %s  %12d  %s\n", fi.Mode, mod, fi.Size, name)
}

func newFsRmCmd(f *fsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm PATH...",
		Short: "Remove files or empty folders (a path that does not exist is not an error)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.close()
			return c.removeEach(cmd, f.g, args, checkPath, c.fileURL, "files")
		},
	}
}

// presum returns the SHA-256 of what is left of body when it is a regular
// file, and rewinds it; ok is false for other input (stdin from a pipe).
func presum(body io.Reader) (sum string, ok bool, err error) {
	f, isFile := body.(*os.File)
	if !isFile {
		return "", false, nil
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return "", false, nil
	}
	start, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", false, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", false, err
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return "", false, err
	}
	return hex.EncodeToString(h.Sum(nil)), true, nil
}
