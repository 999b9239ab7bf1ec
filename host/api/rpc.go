package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/datawarehouse/dw/host/rpcgateway"
)

// rpc serves POST /v1/subsystems/{name}/rpc/{service}/{method}: JSON in,
// JSON out (NDJSON for server-streaming methods), through the gateway.
func (s *Server) rpc(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r)
	if !ok {
		return
	}
	service, method := r.PathValue("service"), r.PathValue("method")
	client, err := s.plugins.Client(name)
	if err != nil {
		WriteError(w, fmt.Errorf("subsystem %s: %w", name, err))
		return
	}
	st, _ := s.status(name)

	ctx := metadata.AppendToOutgoingContext(r.Context(), rpcgateway.CallerMetadataKey, Caller(r.Context()))
	lookupCtx, cancel := context.WithTimeout(ctx, s.requestTimeout)
	m, err := s.gateway.Lookup(lookupCtx, client.Conn(), st.Services, service, method)
	cancel()
	if err != nil {
		WriteError(w, pluginError(r, fmt.Errorf("subsystem %s: %w", name, err)))
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		WriteError(w, fmt.Errorf("read request body: %w", err))
		return
	}
	req, err := m.DecodeRequest(body)
	if err != nil {
		WriteError(w, err)
		return
	}

	if !m.ServerStreaming() {
		callCtx, cancel := context.WithTimeout(ctx, s.requestTimeout)
		defer cancel()
		reply, err := m.Call(callCtx, req)
		if err != nil {
			WriteError(w, pluginError(r, fmt.Errorf("subsystem %s: %w", name, err)))
			return
		}
		out, err := m.EncodeReply(reply)
		if err != nil {
			WriteError(w, err)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(out, '\n'))
		return
	}

	// Server-streaming: one JSON object per line, flushed as it comes. The
	// status is only committed with the first reply, so an error before it
	// is a normal error response; a later one is a last line
	// {"error":{...}}.
	rc := http.NewResponseController(w)
	started := false
	start := func() {
		h := w.Header()
		h.Set("Content-Type", "application/x-ndjson")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		started = true
	}
	var line []byte
	err = m.Stream(ctx, req, func(msg proto.Message) error {
		out, err := m.EncodeReply(msg)
		if err != nil {
			return err
		}
		if !started {
			start()
		}
		line = append(append(line[:0], out...), '\n')
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("write reply to client: %w", err)
		}
		if err := rc.Flush(); err != nil {
			return fmt.Errorf("flush reply to client: %w", err)
		}
		return nil
	})
	if err == nil {
		if !started {
			start() // an empty stream: 200 with no lines
		}
		return
	}
	err = pluginError(r, fmt.Errorf("subsystem %s: %w", name, err))
	if !started {
		WriteError(w, err)
		return
	}
	if r.Context().Err() != nil {
		return // the client is gone
	}
	_, code := StatusOf(err)
	b, _ := json.Marshal(ErrorBody{Error: ErrorDetail{Code: code, Message: err.Error()}})
	_, _ = w.Write(append(b, '\n'))
	_ = rc.Flush()
	if rec, ok := w.(*responseRecorder); ok {
		rec.err = err
	}
	s.logger.Warn("rpc stream ended with an error", "subsystem", name, "method", m.FullMethod(), "error", err)
}
