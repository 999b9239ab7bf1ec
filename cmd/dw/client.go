package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// apiClient talks to a running host.
type apiClient struct {
	base  string
	token string
	http  *http.Client
	// err is a bad --addr or TLS option, returned by every request.
	err error
}

func newAPIClient(g *globalFlags) *apiClient {
	base, err := baseURL(g.addr)
	c := &apiClient{base: base, token: g.token, err: err, http: &http.Client{Timeout: 30 * time.Second}}
	if tr, err := g.httpTransport(); err != nil {
		c.err = errors.Join(c.err, err)
	} else {
		c.http.Transport = tr
	}
	return c
}

// apiError is an error answer of the host.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (HTTP %d %s)", e.Message, e.Status, e.Code)
}

// do sends a request and returns the raw JSON body of a 2xx answer. A 503
// from /readyz is returned as body plus error so status can show it.
func (c *apiClient) do(method, path string, body []byte) ([]byte, error) {
	return c.doContent(method, path, body, "application/json")
}

// doContent is do with a given request content type.
func (c *apiClient) doContent(method, path string, body []byte, contentType string) ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, reachError(c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return data, nil
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	ae := &apiError{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(data))}
	if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
		ae.Code, ae.Message = e.Error.Code, e.Error.Message
	}
	if m := plainToTLS(resp, data); m != "" {
		ae.Message = m
	}
	if resp.StatusCode == http.StatusUnauthorized {
		ae.Message += " (set DW_TOKEN or --token)"
	}
	return data, ae
}

func (c *apiClient) getJSON(path string, out any) ([]byte, error) {
	data, err := c.do(http.MethodGet, path, nil)
	if err != nil {
		return data, err
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return data, fmt.Errorf("GET %s: decode answer: %w", path, err)
		}
	}
	return data, nil
}

// printJSON re-indents raw JSON to stdout.
func printJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		_, err = w.Write(raw)
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func isAPIStatus(err error, status int) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == status
}
