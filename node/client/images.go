package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/swarmlet/swarmlet/api"
)

// Images: create and update with registry credentials and a resolve mode, a
// node's own images (node to node), and prune.

// ImageOptions go with a create or update.
type ImageOptions struct {
	// RegistryAuth is the X-Registry-Auth value (--with-registry-auth), "" for none.
	RegistryAuth string
	// Resolve is api.ResolveAlways, ResolveChanged or ResolveNever; "" is the
	// manager's default (always on create, changed on update).
	Resolve string
}

func (o ImageOptions) query() string {
	if o.Resolve == "" {
		return ""
	}
	return "?resolve_image=" + url.QueryEscape(o.Resolve)
}

func (o ImageOptions) header() http.Header {
	h := http.Header{}
	if o.RegistryAuth != "" {
		h.Set(api.RegistryAuthHeader, o.RegistryAuth)
	}
	return h
}

// CreateServiceWith creates a service; the answer carries the manager's
// warnings (an image it could not pin).
func (c *Client) CreateServiceWith(ctx context.Context, spec api.ServiceSpec, opt ImageOptions) (api.ServiceCreateAnswer, error) {
	var out api.ServiceCreateAnswer
	err := c.doHeader(ctx, http.MethodPost, "/v1/services"+opt.query(), opt.header(), spec, &out)
	return out, err
}

// UpdateServiceWith updates a service as UpdateService does, with credentials
// and a resolve mode (ResolveAlways re-pins a moved tag: the API side of --force).
func (c *Client) UpdateServiceWith(ctx context.Context, name string, req api.ServiceUpdateRequest, opt ImageOptions) (api.ServiceCreateAnswer, error) {
	var out api.ServiceCreateAnswer
	err := c.doHeader(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(name)+"/update"+opt.query(), opt.header(), req, &out)
	return out, err
}

// LocalImage describes the image ref resolves to on the node this client talks to.
func (c *Client) LocalImage(ctx context.Context, ref string) (api.ImageInfo, error) {
	var out api.ImageInfo
	_, err := c.Do(ctx, http.MethodGet, "/v1/local/images/"+url.PathEscape(ref), nil, &out)
	return out, err
}

// PruneImages asks the node this client talks to to remove the images it
// fetched that nothing uses.
func (c *Client) PruneImages(ctx context.Context) (api.ImagePruneReport, error) {
	var out api.ImagePruneReport
	_, err := c.Do(ctx, http.MethodPost, "/v1/local/images/prune", nil, &out)
	return out, err
}

// ImageArchive streams an image from the node this client talks to, with what
// that node announces about it. The stream has no overall deadline (an image may
// be large); ctx ends it. The caller closes the reader.
func (c *Client) ImageArchive(ctx context.Context, ref string) (io.ReadCloser, api.ImageInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/local/images/"+url.PathEscape(ref)+"/archive", nil)
	if err != nil {
		return nil, api.ImageInfo{}, err
	}
	// The same transport (and so the same dialing and, later, TLS) without the
	// client's per-request timeout.
	hc := &http.Client{Transport: c.hc.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, api.ImageInfo{}, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.host, unwrapURL(err))
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, api.ImageInfo{}, answerError(resp, http.MethodGet, "/v1/local/images/.../archive")
	}
	size, _ := strconv.ParseInt(resp.Header.Get(api.ImageSizeHeader), 10, 64)
	return resp.Body, api.ImageInfo{ID: resp.Header.Get(api.ImageIDHeader), Size: size}, nil
}

// doHeader is Do with extra request headers and no index.
func (c *Client) doHeader(ctx context.Context, method, path string, hdr http.Header, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		if !isDialError(err) {
			return &Error{Kind: api.ErrKindUnknown, Msg: fmt.Sprintf("outcome unknown: the change may or may not have been applied (%s: %v)", c.host, unwrapURL(err))}
		}
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.host, unwrapURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return answerError(resp, method, path)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s answer: %w", path, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // keep the connection (client.go, Do)
	return nil
}

func answerError(resp *http.Response, method, path string) error {
	var eb api.ErrorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
		eb = api.ErrorBody{Error: fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b))), Kind: api.ErrKindInternal}
	}
	return &Error{Status: resp.StatusCode, Kind: eb.Kind, Msg: eb.Error}
}
