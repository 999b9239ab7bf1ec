package sdktest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/datawarehouse/dw/sdk/v6"
	dwv1 "github.com/datawarehouse/dw/sdk/v6/proto/dw/v1"
)

// statStore is a FileStore whose Stat calls StatFunc.
type statStore struct {
	dwv1.UnimplementedFileStoreServer
	StatFunc func(*dwv1.StatFileRequest) (*dwv1.StatFileResponse, error)
}

func (s *statStore) Stat(_ context.Context, r *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) {
	return s.StatFunc(r)
}

func TestServeInProcess(t *testing.T) {
	store := &statStore{StatFunc: func(r *dwv1.StatFileRequest) (*dwv1.StatFileResponse, error) {
		switch r.GetPath() {
		case "missing":
			return nil, fmt.Errorf("stat %q: %w", r.GetPath(), sdk.ErrNotFound)
		case "bug":
			panic("boom")
		}
		return &dwv1.StatFileResponse{Info: &dwv1.FileInfo{Path: r.GetPath()}}, nil
	}}
	conn := ServeInProcess(t, func(s *grpc.Server) { dwv1.RegisterFileStoreServer(s, store) })
	c := dwv1.NewFileStoreClient(conn)
	ctx := context.Background()
	if _, err := c.Stat(ctx, &dwv1.StatFileRequest{Path: "missing"}); !errors.Is(err, sdk.ErrNotFound) || err.Error() != `stat "missing": not found` {
		t.Errorf("missing: %v", err)
	}
	if _, err := c.Stat(ctx, &dwv1.StatFileRequest{Path: "bug"}); !errors.Is(err, sdk.ErrPanicked) ||
		!strings.HasPrefix(err.Error(), "panicked in Stat: boom (sdktest/inprocess_test.go:") {
		t.Errorf("bug: %v", err)
	}
	if r, err := c.Stat(ctx, &dwv1.StatFileRequest{Path: "a"}); err != nil || r.GetInfo().GetPath() != "a" {
		t.Errorf("a: %v %v", r, err)
	}
	if _, err := c.Delete(ctx, &dwv1.DeleteFileRequest{Path: "a"}); !errors.Is(err, sdk.ErrUnimplemented) {
		t.Errorf("unimplemented: %v", err)
	}
}
