package filestore

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"syscall"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/datawarehouse/dw/plugins/internal/token64"
	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// checkPath applies the contract's path rule and refuses the staging
// folder. listing allows the empty path (the root).
func (s *Service) checkPath(ctx context.Context, op, p string, listing bool) error {
	if listing && p == "" {
		return nil
	}
	err := sdk.ValidateFilePath(p)
	if err == nil && (p == stagingDir || strings.HasPrefix(p, stagingDir+"/")) {
		err = fmt.Errorf("file path %q: the name %s is reserved for uploads in progress: %w", p, stagingDir, sdk.ErrInvalidArgument)
	}
	if err != nil {
		s.refuse(ctx, op, p, err)
	}
	return err
}

// refuse logs a path that was refused for trying to leave the root or for
// breaking the path rule, and counts it.
func (s *Service) refuse(ctx context.Context, op, p string, err error) {
	s.stats.refusedPaths.Add(1)
	s.logger.Warn("refused file path", "op", op, "caller", sdk.Caller(ctx), "path", fmt.Sprintf("%.300q", p), "error", err)
}

// fileError maps an error of an os.Root operation on p to the contract's
// sentinels. A path that resolves outside the root (a symlink pointing
// out, say) is ErrInvalidArgument and logged.
func (s *Service) fileError(ctx context.Context, op, p string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %q: %w", op, p, sdk.ErrNotFound)
	case escapes(err):
		err = fmt.Errorf("%s %q: the path resolves outside the root (through a symlink or '..'): %w", op, p, sdk.ErrInvalidArgument)
		s.refuse(ctx, op, p, err)
		return err
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%s %q: a parent of the path is a file, not a folder: %w", op, p, sdk.ErrInvalidArgument)
	case errors.Is(err, syscall.EISDIR):
		return fmt.Errorf("%s %q: is a folder: %w", op, p, sdk.ErrInvalidArgument)
	case errors.Is(err, syscall.ENOTEMPTY):
		return fmt.Errorf("%s %q: the folder is not empty: %w", op, p, sdk.ErrFailedPrecondition)
	case errors.Is(err, syscall.ELOOP):
		return fmt.Errorf("%s %q: too many levels of symlinks: %w", op, p, sdk.ErrInvalidArgument)
	case errors.Is(err, syscall.ENAMETOOLONG):
		return fmt.Errorf("%s %q: name too long: %w", op, p, sdk.ErrInvalidArgument)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s %q: %w: %v", op, p, sdk.ErrPermissionDenied, err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%s %q: %w: %v", op, p, sdk.ErrUnavailable, err)
	}
	return fmt.Errorf("%s %q: %w", op, p, err)
}

// escapes reports whether err is os.Root's refusal of a name that
// resolves outside the root. The os package keeps that error unexported,
// so it is recognised by its text, anywhere in the chain (MkdirAll nests
// path errors).
func escapes(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "path escapes from parent" {
			return true
		}
	}
	return false
}

// fileInfo converts fi, found at p.
func fileInfo(p string, fi fs.FileInfo) *dwv1.FileInfo {
	info := &dwv1.FileInfo{
		Path:       p,
		Mode:       uint32(fi.Mode().Perm()),
		ModifiedAt: timestamppb.New(fi.ModTime()),
		IsDir:      fi.IsDir(),
	}
	if !fi.IsDir() {
		info.Size = fi.Size()
	}
	info.Etag = etag(fi)
	return info
}

// etag is a validator that changes when the content does: the inode (a
// Put renames a new file into place), the size and the modification time
// in nanoseconds.
func etag(fi fs.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%x-%x-%x", ino, fi.Size(), fi.ModTime().UnixNano())
}

// stat returns p's info, following symlinks inside the root.
func (s *Service) stat(ctx context.Context, p string) (*dwv1.FileInfo, error) {
	fi, err := s.root.Stat(p)
	if err != nil {
		return nil, s.fileError(ctx, "stat", p, err)
	}
	return fileInfo(p, fi), nil
}

// remove deletes p (a file, symlink or empty folder) and makes the removal
// durable by syncing the parent folder.
func (s *Service) remove(ctx context.Context, p string) (existed bool, err error) {
	if err := s.root.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, s.fileError(ctx, "delete", p, err)
	}
	if err := s.syncDir(parentOf(p)); err != nil {
		return true, fmt.Errorf("delete %q: sync folder: %w", p, err)
	}
	return true, nil
}

// syncDir fsyncs the folder dir ("" or "." is the root).
func (s *Service) syncDir(dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// parentOf returns the folder of p, "" for the root.
func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// Listing sizes: a page holds at most maxPageSize entries.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	readDirBatch    = 256
)

// pageToken is the cursor of a listing: the folder and the last name
// served, so that the next page starts after it. It carries no secret: a
// forged token can only name a place to start in a folder the caller may
// list anyway.
func pageToken(dir, after string) string {
	return token64.Encode([]byte("v1\x00" + dir + "\x00" + after))
}

// parsePageToken returns the name to start after, checking the token was
// made for dir.
func parsePageToken(tok, dir string) (string, error) {
	if tok == "" {
		return "", nil
	}
	bad := func(why string) error {
		return fmt.Errorf("page token: %s; pass next_page_token of the previous page of the same folder unchanged: %w", why, sdk.ErrInvalidArgument)
	}
	if len(tok) > 2*(sdk.MaxFilePathBytes+sdk.MaxFileNameBytes) {
		return "", bad("too long")
	}
	raw, err := token64.Decode(tok)
	if err != nil {
		return "", bad(err.Error())
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || parts[0] != "v1" {
		return "", bad("malformed")
	}
	if parts[1] != dir {
		return "", bad(fmt.Sprintf("made for folder %q, not %q", parts[1], dir))
	}
	if parts[2] == "" || strings.Contains(parts[2], "/") {
		return "", bad("malformed")
	}
	return parts[2], nil
}

// list returns one page of dir's entries in byte order of their names,
// starting after the token's name. It reads the folder in batches and keeps
// only the limit+1 smallest names after the cursor, so a folder of any size
// is listed in memory bounded by the page; each page costs a read of the
// whole folder, the price of a stable order without an index.
func (s *Service) list(ctx context.Context, dir, token string, limit int) (*dwv1.ListFilesResponse, error) {
	after, err := parsePageToken(token, dir)
	if err != nil {
		return nil, err
	}
	switch {
	case limit < 0:
		return nil, fmt.Errorf("list %q: limit %d is negative; use 1 to %d, or 0 for %d: %w", dir, limit, maxPageSize, defaultPageSize, sdk.ErrInvalidArgument)
	case limit == 0:
		limit = defaultPageSize
	case limit > maxPageSize:
		limit = maxPageSize
	}
	name := dir
	if name == "" {
		name = "."
	}
	d, err := s.root.Open(name)
	if err != nil {
		return nil, s.fileError(ctx, "list", dir, err)
	}
	defer d.Close()
	if fi, err := d.Stat(); err != nil {
		return nil, s.fileError(ctx, "list", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("list %q: is a file, not a folder: %w", dir, sdk.ErrInvalidArgument)
	}
	h := &entryHeap{}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch, rerr := d.ReadDir(readDirBatch)
		for _, e := range batch {
			n := e.Name()
			if n <= after || (dir == "" && n == stagingDir) {
				continue
			}
			if h.Len() <= limit {
				heap.Push(h, e)
			} else if n < (*h)[0].Name() {
				(*h)[0] = e
				heap.Fix(h, 0)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, s.fileError(ctx, "list", dir, rerr)
		}
	}
	entries := make([]fs.DirEntry, h.Len())
	for i := len(entries) - 1; i >= 0; i-- {
		entries[i] = heap.Pop(h).(fs.DirEntry)
	}
	resp := &dwv1.ListFilesResponse{}
	if len(entries) > limit {
		entries = entries[:limit]
		resp.HasMore = true
		resp.NextPageToken = pageToken(dir, entries[limit-1].Name())
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since the folder was read
			}
			return nil, s.fileError(ctx, "list", dir, err)
		}
		p := e.Name()
		if dir != "" {
			p = dir + "/" + p
		}
		resp.Items = append(resp.Items, fileInfo(p, fi))
	}
	return resp, nil
}

// entryHeap is a max-heap of entries by name: its top is the largest name
// kept, the one to drop when a smaller one comes.
type entryHeap []fs.DirEntry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return cmp.Less(h[j].Name(), h[i].Name()) }
func (h entryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *entryHeap) Push(x any)        { *h = append(*h, x.(fs.DirEntry)) }
func (h *entryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}
