// Package client is the Go client of swarmlet's HTTP API, used by the CLI, by
// joining nodes and by workers talking to managers.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/swarmlet/swarmlet/api"
)

// Error is an error the API returned; Kind says what it guarantees (api.ErrKind*).
type Error struct {
	Status int
	Kind   string
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap is the api sentinel of the error's kind, so errors.Is(err, api.ErrNotFound)
// works on an error that crossed the wire as on the server's own.
func (e *Error) Unwrap() error { return api.SentinelOf(e.Kind) }

// ErrUnreachable wraps failures to reach the daemon at all: nothing was sent.
var ErrUnreachable = errors.New("cannot reach the swarmlet daemon")

// Client talks to one node's API.
type Client struct {
	base string // https://host or http://unix
	hc   *http.Client
	host string
}

// Options tune a client.
type Options struct {
	// LocalAddr, if set, is the address outgoing TCP connections leave from (DESIGN.md:
	// every connection of a node leaves from its advertise address).
	LocalAddr string
	Timeout   time.Duration // per request, default 30 s (blocking queries add their wait)
	// TLS is required for tcp:// hosts: the API on TCP admits only clients that show
	// a certificate of the cluster, and this config also says which servers the
	// client accepts. A node passes its own (the server learns the caller's node ID
	// and role from it); the CLI an operator certificate.
	TLS *tls.Config
	// WrapConn, if set, wraps each TCP connection before TLS (hollow nodes count
	// the bytes their managers send them).
	WrapConn func(net.Conn) net.Conn
}

// ErrNoTLS: a tcp:// host without TLS options.
var ErrNoTLS = errors.New("the API on TCP needs TLS with a client certificate of the cluster")

// ErrTLS wraps a failed TLS handshake: the server was reached but one side refused
// the other's certificate, so nothing was sent. The wrapped error says why (with
// node/pki's sentinels, e.g. pki.ErrCAMismatch).
var ErrTLS = errors.New("TLS handshake refused")

type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// isHandshakeError: our side refused the server (handshakeError), or the server
// answered the handshake with an alert (TLS 1.3 reports a refused client
// certificate on the first read).
func isHandshakeError(err error) bool {
	var he *handshakeError
	var op *net.OpError
	return errors.As(err, &he) || errors.As(err, &op) && op.Op == "remote error"
}

// Dialer dials node-to-node TCP connections: from local (the advertise address, if
// given), with keepalives and a TCP user timeout of a few seconds, so a connection
// into a partition fails in seconds instead of hanging on retransmissions; a long
// poll sent before a partition is dropped by the keepalive and retried afresh
// once the network heals, rather than waiting out TCP's backoff.
func Dialer(local string, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{
		Timeout:         timeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 2 * time.Second, Interval: time.Second, Count: 3},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 5000)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	return d
}

// New parses unix:///path or tcp://host:port (or host:port).
func New(host string, opt Options) (*Client, error) {
	if opt.Timeout == 0 {
		opt.Timeout = 30 * time.Second
	}
	d := Dialer(opt.LocalAddr, 3*time.Second)
	// Keep-alive: a TLS handshake costs about 2 ms (node/pki/DESIGN.md), so node-to-
	// node traffic pays it once per connection, not per request.
	tr := &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second, TLSHandshakeTimeout: 5 * time.Second}
	c := &Client{hc: &http.Client{Transport: tr, Timeout: opt.Timeout}, host: host}
	tcp := func(addr string) error {
		if opt.TLS == nil {
			return fmt.Errorf("%s: %w", host, ErrNoTLS)
		}
		tr.DialTLSContext = func(ctx context.Context, network, a string) (net.Conn, error) {
			raw, err := d.DialContext(ctx, network, a)
			if err != nil {
				return nil, err
			}
			if opt.WrapConn != nil {
				raw = opt.WrapConn(raw)
			}
			cfg := opt.TLS
			if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
				cfg = cfg.Clone()
				cfg.ServerName, _, _ = net.SplitHostPort(a)
			}
			tc := tls.Client(raw, cfg)
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := tc.HandshakeContext(hctx); err != nil {
				raw.Close()
				return nil, &handshakeError{err}
			}
			return tc, nil
		}
		c.base = "https://" + addr
		return nil
	}
	switch {
	case strings.HasPrefix(host, "unix://"):
		path := strings.TrimPrefix(host, "unix://")
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var ud net.Dialer
			return ud.DialContext(ctx, "unix", path)
		}
		c.base = "http://swarmlet"
	case strings.HasPrefix(host, "tcp://"):
		if err := tcp(strings.TrimPrefix(host, "tcp://")); err != nil {
			return nil, err
		}
	case host != "" && !strings.Contains(host, "://"):
		if err := tcp(host); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("invalid host %q: use unix:///path/to/swarmlet.sock or tcp://HOST:PORT", host)
	}
	return c, nil
}

// Host is the address this client talks to.
func (c *Client) Host() string { return c.host }

// Close drops the client's idle connections (one made for a single exchange, such
// as a join, would otherwise stay open until the server's idle timeout).
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Do sends a request with an optional JSON body and decodes a JSON answer into out.
// It returns the Raft index the answer reflects (0 if none).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) (uint64, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if isHandshakeError(err) {
			return 0, fmt.Errorf("%w by %s: %w", ErrTLS, c.host, unwrapURL(err))
		}
		if method != http.MethodGet && !isDialError(err) {
			// The request may have reached the daemon before the connection broke.
			return 0, &Error{Kind: api.ErrKindUnknown, Msg: fmt.Sprintf("outcome unknown: the change may or may not have been applied (%s: %v)", c.host, unwrapURL(err))}
		}
		return 0, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.host, unwrapURL(err))
	}
	defer resp.Body.Close()
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Swarmlet-Index"), 10, 64)
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb = api.ErrorBody{Error: fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b))), Kind: api.ErrKindInternal}
		}
		return idx, &Error{Status: resp.StatusCode, Kind: eb.Kind, Msg: eb.Error}
	}
	if f, ok := out.(streamFunc); ok {
		f(resp)
		return idx, nil
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
		return idx, err
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return idx, fmt.Errorf("decode %s answer: %w", path, err)
		}
	}
	// A body closed before its end takes the connection with it: the decoder
	// stops at the end of the value (the encoder's newline and a chunked body's
	// last chunk are still unread), and an answer nobody decodes ({} to a status
	// report) is not read at all. Each such answer cost the next request a TLS
	// handshake: at 1,000 nodes most of both sides' CPU.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	return idx, nil
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Blocking returns the query string of a blocking read.
func Blocking(index uint64, wait time.Duration) string {
	return fmt.Sprintf("index=%d&wait=%s", index, wait)
}

func (c *Client) Info(ctx context.Context) (api.Info, error) {
	var out api.Info
	_, err := c.Do(ctx, http.MethodGet, "/v1/info", nil, &out)
	return out, err
}

func (c *Client) Join(ctx context.Context, req api.JoinRequest) (api.JoinResponse, error) {
	var out api.JoinResponse
	_, err := c.Do(ctx, http.MethodPost, "/v1/cluster/join", req, &out)
	return out, err
}

func (c *Client) Nodes(ctx context.Context) ([]api.NodeInfo, uint64, error) {
	var out []api.NodeInfo
	idx, err := c.Do(ctx, http.MethodGet, "/v1/nodes", nil, &out)
	return out, idx, err
}

func (c *Client) Node(ctx context.Context, id string) (api.NodeInfo, error) {
	var out api.NodeInfo
	_, err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(id), nil, &out)
	return out, err
}

func (c *Client) UpdateNode(ctx context.Context, id string, req api.NodeUpdateRequest) (api.Node, error) {
	var out api.Node
	_, err := c.Do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(id)+"/update", req, &out)
	return out, err
}

func (c *Client) RemoveNode(ctx context.Context, id string, force bool) error {
	_, err := c.Do(ctx, http.MethodDelete, "/v1/nodes/"+url.PathEscape(id)+"?force="+strconv.FormatBool(force), nil, nil)
	return err
}

func (c *Client) JoinTokens(ctx context.Context) (api.JoinTokens, error) {
	var out api.JoinTokens
	_, err := c.Do(ctx, http.MethodGet, "/v1/join-tokens", nil, &out)
	return out, err
}

func (c *Client) RotateToken(ctx context.Context, role api.NodeRole) (api.JoinTokens, error) {
	var out api.JoinTokens
	_, err := c.Do(ctx, http.MethodPost, "/v1/join-tokens/rotate?role="+string(role), nil, &out)
	return out, err
}

// Leave asks the node this client talks to to leave the cluster.
func (c *Client) Leave(ctx context.Context, force bool) error {
	_, err := c.Do(ctx, http.MethodPost, "/v1/leave?force="+strconv.FormatBool(force), nil, nil)
	return err
}

func (c *Client) Services(ctx context.Context) ([]api.ServiceInfo, uint64, error) {
	var out []api.ServiceInfo
	idx, err := c.Do(ctx, http.MethodGet, "/v1/services", nil, &out)
	return out, idx, err
}

func (c *Client) Service(ctx context.Context, name string) (api.ServiceInfo, error) {
	var out api.ServiceInfo
	_, err := c.Do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(name), nil, &out)
	return out, err
}

func (c *Client) CreateService(ctx context.Context, spec api.ServiceSpec) (api.Service, error) {
	var out api.Service
	_, err := c.Do(ctx, http.MethodPost, "/v1/services", spec, &out)
	return out, err
}

func (c *Client) ScaleService(ctx context.Context, name string, replicas uint64) (api.Service, error) {
	var out api.Service
	_, err := c.Do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(name)+"/scale", api.ScaleRequest{Replicas: replicas}, &out)
	return out, err
}

func (c *Client) UpdateService(ctx context.Context, name string, req api.ServiceUpdateRequest) (api.Service, error) {
	var out api.Service
	_, err := c.Do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(name)+"/update", req, &out)
	return out, err
}

// RollbackService returns a service to its previous spec, if it is still at
// version (0: whatever its version).
func (c *Client) RollbackService(ctx context.Context, name string, version uint64) (api.Service, error) {
	var out api.Service
	_, err := c.Do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(name)+"/rollback", api.ServiceRollbackRequest{Version: version}, &out)
	return out, err
}

func (c *Client) RemoveService(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(name), nil, nil)
	return err
}

// Tasks lists a service's tasks; with index > 0 it blocks until the state passes index.
func (c *Client) Tasks(ctx context.Context, service string, index uint64, wait time.Duration) ([]api.Task, uint64, error) {
	var out []api.Task
	idx, err := c.Do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"/tasks?"+Blocking(index, wait), nil, &out)
	return out, idx, err
}

// Logs copies a service's task logs to w.
func (c *Client) Logs(ctx context.Context, service string, opt api.LogOptions, w io.Writer) error {
	_, err := c.Do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"/logs?"+opt.Query().Encode(), nil, w)
	return err
}

func (c *Client) DebugState(ctx context.Context) (api.DebugState, error) {
	var out api.DebugState
	_, err := c.Do(ctx, http.MethodGet, "/v1/debug/state", nil, &out)
	return out, err
}

// Assignments is the calling node's session long-poll.
func (c *Client) Assignments(ctx context.Context, index uint64, wait time.Duration) (api.Assignments, error) {
	var out api.Assignments
	_, err := c.Do(ctx, http.MethodGet, "/v1/dispatcher/assignments?"+Blocking(index, wait), nil, &out)
	return out, err
}

// Session is the calling node's session long-poll for a worker that takes
// deltas (api.Assignments says what they are; api.SessionView applies them).
func (c *Client) Session(ctx context.Context, index uint64, wait time.Duration) (api.Assignments, error) {
	var out api.Assignments
	_, err := c.Do(ctx, http.MethodGet, "/v1/dispatcher/assignments?"+Blocking(index, wait)+"&delta=1", nil, &out)
	return out, err
}

// ReportStatus sends a batch of status changes of the calling node's tasks.
func (c *Client) ReportStatus(ctx context.Context, ops []api.TaskOp) error {
	_, err := c.Do(ctx, http.MethodPost, "/v1/dispatcher/status", api.StatusReport{Ops: ops}, nil)
	return err
}

// Register refreshes the calling node's own record.
func (c *Client) Register(ctx context.Context, n api.Node) error {
	_, err := c.Do(ctx, http.MethodPost, "/v1/dispatcher/register", api.RegisterRequest{Node: n}, nil)
	return err
}

// Depart removes the calling node from the cluster (the last step of its leave).
func (c *Client) Depart(ctx context.Context) error {
	_, err := c.Do(ctx, http.MethodPost, "/v1/dispatcher/depart", nil, nil)
	return err
}

// TaskLogs streams one local task's log (node-to-node, for service logs).
func (c *Client) TaskLogs(ctx context.Context, taskID string, opt api.LogOptions, w io.Writer) error {
	_, err := c.Do(ctx, http.MethodGet, "/v1/local/tasks/"+url.PathEscape(taskID)+"/logs?"+opt.Query().Encode(), nil, w)
	return err
}

// ReverseProxy forwards requests to the daemon this client talks to, over its
// transport (the unix socket, or TCP with the client's certificate), so a local
// tool such as a browser reaches the API and the dashboard as the client would.
func (c *Client) ReverseProxy() *httputil.ReverseProxy {
	target, _ := url.Parse(c.base)
	return &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = target.Host },
		Transport:     c.hc.Transport,
		FlushInterval: -1, // event streams and followed logs as they come
	}
}
