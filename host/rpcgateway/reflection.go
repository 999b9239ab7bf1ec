//lint:file-ignore SA1019 v1alpha reflection is deprecated, and is our fallback for plugins that serve only it.

package rpcgateway

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/datawarehouse/dw/sdk/v6"
)

// maxFiles bounds how many files one service may pull in through its
// dependencies.
const maxFiles = 1000

// reflector asks a plugin's reflection service, over v1 or, if the plugin
// only serves that, v1alpha (whose messages are wire-identical).
type reflector struct {
	conn  *grpc.ClientConn
	ctx   context.Context
	v1    rpb.ServerReflection_ServerReflectionInfoClient
	alpha rpbalpha.ServerReflection_ServerReflectionInfoClient
}

func (r *reflector) close() {
	if r.v1 != nil {
		_ = r.v1.CloseSend()
	}
	if r.alpha != nil {
		_ = r.alpha.CloseSend()
	}
}

// ask sends one request and returns its answer.
func (r *reflector) ask(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
	if r.alpha == nil {
		if r.v1 == nil {
			s, err := rpb.NewServerReflectionClient(r.conn).ServerReflectionInfo(r.ctx)
			if err != nil {
				return nil, err
			}
			r.v1 = s
		}
		resp, err := r.askV1(req)
		if status.Code(err) != codes.Unimplemented {
			return resp, err
		}
		// The plugin serves only the older v1alpha reflection.
		_ = r.v1.CloseSend()
		s, err := rpbalpha.NewServerReflectionClient(r.conn).ServerReflectionInfo(r.ctx)
		if err != nil {
			return nil, err
		}
		r.alpha = s
	}
	return r.askAlpha(req)
}

func (r *reflector) askV1(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
	if err := r.v1.Send(req); err != nil {
		// The real error comes with Recv.
		_, rerr := r.v1.Recv()
		if rerr != nil {
			return nil, rerr
		}
		return nil, err
	}
	return r.v1.Recv()
}

func (r *reflector) askAlpha(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
	var areq rpbalpha.ServerReflectionRequest
	if err := convert(req, &areq); err != nil {
		return nil, err
	}
	if err := r.alpha.Send(&areq); err != nil {
		_, rerr := r.alpha.Recv()
		if rerr != nil {
			return nil, rerr
		}
		return nil, err
	}
	aresp, err := r.alpha.Recv()
	if err != nil {
		return nil, err
	}
	var resp rpb.ServerReflectionResponse
	if err := convert(aresp, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// convert copies a message into its wire-identical twin of the other
// reflection version.
func convert(from, to proto.Message) error {
	b, err := proto.Marshal(from)
	if err != nil {
		return fmt.Errorf("convert reflection message: %w", err)
	}
	if err := proto.Unmarshal(b, to); err != nil {
		return fmt.Errorf("convert reflection message: %w", err)
	}
	return nil
}

// wellKnown reports whether a file is one of protobuf's own, which the host
// takes from its own registry.
func wellKnown(path string) bool { return strings.HasPrefix(path, "google/protobuf/") }

// resolveService asks the plugin for the files describing service and its
// dependencies, transitively, and builds them into descriptors.
func resolveService(ctx context.Context, conn *grpc.ClientConn, name string) (*service, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &reflector{conn: conn, ctx: ctx}
	defer r.close()

	fail := func(err error) (*service, error) {
		return nil, fmt.Errorf("resolve service %s over reflection: %w", name, err)
	}

	protos := make(map[string]*descriptorpb.FileDescriptorProto)
	add := func(resp *rpb.ServerReflectionResponse) error {
		if e := resp.GetErrorResponse(); e != nil {
			return status.Error(codes.Code(e.GetErrorCode()), e.GetErrorMessage())
		}
		fdr := resp.GetFileDescriptorResponse()
		if fdr == nil {
			return fmt.Errorf("unexpected reflection answer %T", resp.GetMessageResponse())
		}
		for _, b := range fdr.GetFileDescriptorProto() {
			fdp := new(descriptorpb.FileDescriptorProto)
			if err := proto.Unmarshal(b, fdp); err != nil {
				return fmt.Errorf("decode file descriptor: %w", err)
			}
			if _, ok := protos[fdp.GetName()]; !ok {
				protos[fdp.GetName()] = fdp
			}
		}
		return nil
	}

	resp, err := r.ask(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: name},
	})
	if err != nil {
		return fail(err)
	}
	if err := add(resp); err != nil {
		if status.Code(err) == codes.NotFound {
			return nil, fmt.Errorf("service %s: %w: the plugin lists it but does not describe it over reflection", name, sdk.ErrNotFound)
		}
		return fail(err)
	}

	// Fetch missing dependencies until the set is closed. Well-known files
	// come from the host's registry; other files the plugin does not have
	// may come from it too (a plugin built against the same SDK protos).
	fromGlobal := make(map[string]bool)
	for {
		var missing []string
		for _, fdp := range protos {
			for _, dep := range fdp.GetDependency() {
				if _, ok := protos[dep]; ok || fromGlobal[dep] {
					continue
				}
				if wellKnown(dep) {
					if _, err := protoregistry.GlobalFiles.FindFileByPath(dep); err == nil {
						fromGlobal[dep] = true
						continue
					}
				}
				missing = append(missing, dep)
			}
		}
		if len(missing) == 0 {
			break
		}
		if len(protos)+len(missing) > maxFiles {
			return fail(fmt.Errorf("service depends on more than %d files", maxFiles))
		}
		for _, dep := range missing {
			if _, ok := protos[dep]; ok || fromGlobal[dep] {
				continue
			}
			resp, err := r.ask(&rpb.ServerReflectionRequest{
				MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: dep},
			})
			if err == nil {
				err = add(resp)
			}
			if err == nil {
				if _, ok := protos[dep]; !ok {
					err = fmt.Errorf("asked for %s, got other files", dep)
				}
			}
			if err != nil {
				if _, gerr := protoregistry.GlobalFiles.FindFileByPath(dep); gerr == nil {
					fromGlobal[dep] = true
					continue
				}
				return fail(fmt.Errorf("dependency %s: %w", dep, err))
			}
		}
	}

	files, err := buildFiles(protos)
	if err != nil {
		return fail(err)
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return fail(fmt.Errorf("find %s in its files: %w", name, err))
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s: %w: it is a %T, not a service", name, sdk.ErrNotFound, d)
	}
	return &service{desc: sd, types: dynamicpb.NewTypes(files)}, nil
}

// buildFiles turns file descriptor protos into a registry, dependencies
// first. Well-known files, and any dependency not among protos, come from
// protoregistry.GlobalFiles.
func buildFiles(protos map[string]*descriptorpb.FileDescriptorProto) (*protoregistry.Files, error) {
	files := new(protoregistry.Files)
	building := make(map[string]bool)
	var build func(path string, depth int) error
	build = func(path string, depth int) error {
		if _, err := files.FindFileByPath(path); err == nil {
			return nil
		}
		if depth > maxFiles {
			return errors.New("dependency chain too deep")
		}
		fdp, ok := protos[path]
		if !ok || wellKnown(path) {
			fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
			if err != nil {
				return fmt.Errorf("file %s: not described by the plugin nor known to the host", path)
			}
			// Its own dependencies make Any resolution of their types work.
			for i := range fd.Imports().Len() {
				if err := build(fd.Imports().Get(i).Path(), depth+1); err != nil {
					return err
				}
			}
			if err := files.RegisterFile(fd); err != nil {
				return fmt.Errorf("register %s: %w", path, err)
			}
			return nil
		}
		if building[path] {
			return fmt.Errorf("file %s: import cycle", path)
		}
		building[path] = true
		for _, dep := range fdp.GetDependency() {
			if err := build(dep, depth+1); err != nil {
				return err
			}
		}
		fd, err := protodesc.NewFile(fdp, files)
		if err != nil {
			return fmt.Errorf("file %s: %w", path, err)
		}
		if err := files.RegisterFile(fd); err != nil {
			return fmt.Errorf("register %s: %w", path, err)
		}
		return nil
	}
	for path := range protos {
		if err := build(path, 0); err != nil {
			return nil, err
		}
	}
	return files, nil
}
