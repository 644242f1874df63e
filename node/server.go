package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/raftstore"
)

// Route kinds decide where a request is served.
const (
	routeLocal   = iota // this node answers from itself (info, local logs, leave)
	routeRead           // the leader answers, after confirming it still leads (?stale: any manager)
	routeWrite          // the leader answers
	routeManager        // any manager answers from its own state (blocking session reads)
)

const (
	forwardedHeader = "X-Swarmlet-Forwarded" // sent to the leader: do not forward again
	viaHeader       = "X-Swarmlet-Via"       // sent by a manager that knew no leader
)

func (d *Daemon) startAPI() error {
	mux := http.NewServeMux()
	handle := func(pattern string, kind int, h http.HandlerFunc) {
		mux.HandleFunc(pattern, d.route(kind, h))
	}
	handle("GET /v1/info", routeLocal, d.handleInfo)
	handle("GET /v1/debug/state", routeLocal, d.handleDebugState)
	handle("POST /v1/leave", routeLocal, d.handleLeave)
	handle("GET /v1/local/tasks/{id}/logs", routeLocal, d.handleLocalLogs)
	handle("POST /v1/cluster/join", routeWrite, d.handleJoin)
	handle("POST /v1/internal/apply", routeWrite, d.handleInternalApply)
	handle("GET /v1/join-tokens", routeRead, d.handleJoinTokens)
	handle("POST /v1/join-tokens/rotate", routeWrite, d.handleRotate)
	handle("GET /v1/nodes", routeRead, d.handleNodes)
	handle("GET /v1/nodes/{id}", routeRead, d.handleNode)
	handle("POST /v1/nodes/{id}/update", routeWrite, d.handleNodeUpdate)
	handle("DELETE /v1/nodes/{id}", routeWrite, d.handleNodeRemove)
	handle("GET /v1/services", routeRead, d.handleServices)
	handle("POST /v1/services", routeWrite, d.handleServiceCreate)
	handle("GET /v1/services/{name}", routeRead, d.handleService)
	handle("POST /v1/services/{name}/scale", routeWrite, d.handleServiceScale)
	handle("POST /v1/services/{name}/update", routeWrite, d.handleServiceUpdate)
	handle("DELETE /v1/services/{name}", routeWrite, d.handleServiceRemove)
	handle("GET /v1/services/{name}/tasks", routeRead, d.handleTasks)
	handle("GET /v1/services/{name}/logs", routeRead, d.handleServiceLogs)
	handle("GET /v1/dispatcher/assignments", routeManager, d.handleAssignments)
	handle("POST /v1/dispatcher/status", routeWrite, d.handleStatus)
	handle("GET /v1/endpoints", routeManager, d.handleEndpoints)

	sock := d.cfg.socketPath()
	_ = os.Remove(sock) // a stale socket of a dead daemon; the data-dir lock says none runs
	uln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		uln.Close()
		return fmt.Errorf("chmod %s: %w", sock, err)
	}
	tln, err := net.Listen("tcp", d.cfg.apiAddr())
	if err != nil {
		uln.Close()
		return fmt.Errorf("listen on %s: %w (is another node using port %d on %s?)", d.cfg.apiAddr(), err, d.cfg.PortBase, d.cfg.AdvertiseAddr)
	}
	for _, ln := range []net.Listener{uln, tln} {
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		d.servers = append(d.servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("api server", "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
	return nil
}

// route sends a request where its kind says it is served: here, or on the leader
// (forwarded whole), or on a manager (for workers).
func (d *Daemon) route(kind int, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		st := d.store
		d.mu.Unlock()
		switch kind {
		case routeLocal:
			h(w, r)
			return
		case routeManager:
			switch {
			case st == nil:
				d.forwardToManager(w, r)
			case st.IsLeader() && d.waitReady(r.Context(), st):
				h(w, r)
			case r.Header.Get(forwardedHeader) != "":
				writeError(w, fmt.Errorf("leadership changed while forwarding: %w", raftstore.ErrNotLeader))
			default:
				// Sessions are with the leader: only its state is current (a follower
				// may be replaying a long log after a restart).
				id, addr := d.waitLeader(r.Context(), 3*time.Second)
				if id == "" || id == d.id.NodeID {
					d.noLeaderHere(w, r)
					return
				}
				d.proxy(w, r, addr)
			}
			return
		case routeRead:
			if st != nil && r.URL.Query().Has("stale") {
				h(w, r)
				return
			}
		}
		if st == nil {
			d.forwardToManager(w, r)
			return
		}
		if !st.IsLeader() {
			if r.Header.Get(forwardedHeader) != "" && !d.becomingLeader(r.Context(), st) {
				// Forwarded to us as the leader, but we are not: the sender retries.
				writeError(w, fmt.Errorf("leadership changed while forwarding: %w", raftstore.ErrNotLeader))
				return
			}
			id, addr := d.waitLeader(r.Context(), 3*time.Second)
			switch {
			case id == "":
				d.noLeaderHere(w, r)
				return
			case id != d.id.NodeID:
				d.proxy(w, r, addr)
				return
			case !d.becomingLeader(r.Context(), st):
				writeError(w, fmt.Errorf("leadership is changing: %w", raftstore.ErrNotLeader))
				return
			}
		}
		if kind == routeRead && r.URL.Query().Get("index") == "" {
			// A new leader's state may lag what earlier leaders committed until its
			// barrier is applied; a deposed leader that has not noticed yet would
			// serve stale data. Waiting for the barrier of this term and confirming
			// with a quorum makes reads linearizable.
			if !d.waitReady(r.Context(), st) {
				writeError(w, fmt.Errorf("new leader still catching up: %w", raftstore.ErrNotLeader))
				return
			}
			if err := st.Raft().VerifyLeader().Error(); err != nil {
				writeError(w, fmt.Errorf("this node lost leadership: %w", raftstore.ErrNotLeader))
				return
			}
		}
		h(w, r)
	}
}

// waitReady waits a bounded time for this leader's barrier of the current term.
func (d *Daemon) waitReady(ctx context.Context, st *raftstore.Store) bool {
	deadline := time.Now().Add(3 * time.Second)
	for {
		if d.readyTerm.Load() == st.Term() && st.IsLeader() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// becomingLeader covers the moment after an election when Raft names this node
// leader but has not yet switched it to the leader state.
func (d *Daemon) becomingLeader(ctx context.Context, st *raftstore.Store) bool {
	if id, _ := st.Leader(); id != d.id.NodeID {
		return false
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st.IsLeader() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return st.IsLeader()
}

// forwardToManager is how a worker serves the API: through any reachable manager.
func (d *Daemon) forwardToManager(w http.ResponseWriter, r *http.Request) {
	if !d.tryManagers(w, r, false) {
		writeError(w, fmt.Errorf("no manager reachable from this worker: %w", raftstore.ErrNoQuorum))
	}
}

// noLeaderHere answers for a manager that knows no leader. It may be the one that
// is cut off (an old leader just healed hears of the new one only when Raft's
// backoff lets the leader call again, up to ~10 s), so it asks the other managers
// once; only if none can help is quorum lost.
func (d *Daemon) noLeaderHere(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(viaHeader) == "" && d.tryManagers(w, r, true) {
		return
	}
	writeError(w, d.noQuorumError())
}

// tryManagers proxies the request to the first other manager that accepts a
// connection; false if none does.
func (d *Daemon) tryManagers(w http.ResponseWriter, r *http.Request, markVia bool) bool {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
	}
	for _, c := range d.managerClients() {
		host := strings.TrimPrefix(c.Host(), "tcp://")
		conn, err := localDialer(d.cfg.AdvertiseAddr, time.Second).DialContext(r.Context(), "tcp", host)
		if err != nil {
			continue
		}
		conn.Close()
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		r.ContentLength = int64(len(body))
		if markVia {
			r.Header.Set(viaHeader, d.id.NodeID)
		}
		d.proxyManager(w, r, host)
		return true
	}
	return false
}

func (d *Daemon) proxyManager(w http.ResponseWriter, r *http.Request, addr string) {
	d.reverseProxy(addr, false).ServeHTTP(w, r)
}

func (d *Daemon) proxy(w http.ResponseWriter, r *http.Request, addr string) {
	d.reverseProxy(addr, true).ServeHTTP(w, r)
}

func (d *Daemon) reverseProxy(addr string, markForwarded bool) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: addr}
	tr := &http.Transport{DialContext: localDialer(d.cfg.AdvertiseAddr, 3*time.Second).DialContext}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			if markForwarded {
				pr.Out.Header.Set(forwardedHeader, d.id.NodeID)
			}
		},
		Transport:     tr,
		FlushInterval: -1, // stream logs as they come
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var op *net.OpError
			if r.Method == http.MethodGet || (errors.As(err, &op) && op.Op == "dial") {
				writeError(w, fmt.Errorf("forward to %s: %v: %w", addr, err, raftstore.ErrNotLeader))
				return
			}
			writeError(w, fmt.Errorf("forward to %s: %v: %w", addr, err, raftstore.ErrOutcomeUnknown))
		},
	}
}

// writeError maps an error to a status code and an error kind the client can act on.
func writeError(w http.ResponseWriter, err error) {
	code, kind := http.StatusInternalServerError, api.ErrKindInternal
	var ce *client.Error
	switch {
	case errors.As(err, &ce):
		code, kind = ce.Status, ce.Kind
		if code == 0 {
			code = http.StatusBadGateway
		}
	case errors.Is(err, raftstore.ErrOutcomeUnknown):
		code, kind = http.StatusGatewayTimeout, api.ErrKindUnknown
	case errors.Is(err, raftstore.ErrNoQuorum):
		code, kind = http.StatusServiceUnavailable, api.ErrKindNoQuorum
	case errors.Is(err, raftstore.ErrNotLeader):
		code, kind = http.StatusServiceUnavailable, api.ErrKindRefused
	case errors.Is(err, raftstore.ErrNotFound):
		code, kind = http.StatusNotFound, api.ErrKindNotFound
	case errors.Is(err, raftstore.ErrNameTaken), errors.Is(err, raftstore.ErrVersionConflict):
		code, kind = http.StatusConflict, api.ErrKindConflict
	case errors.Is(err, raftstore.ErrInvalid), errors.Is(err, errBadRequest):
		code, kind = http.StatusBadRequest, api.ErrKindInvalid
	}
	msg := err.Error()
	if kind == api.ErrKindUnknown && !strings.Contains(msg, "outcome unknown") {
		msg = "outcome unknown: the change may or may not have been applied: " + msg
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: msg, Kind: kind})
}

var errBadRequest = errors.New("bad request")

func writeJSON(w http.ResponseWriter, index uint64, v any) {
	w.Header().Set("Content-Type", "application/json")
	if index > 0 {
		w.Header().Set("X-Swarmlet-Index", strconv.FormatUint(index, 10))
	}
	_ = json.NewEncoder(w).Encode(v)
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 8<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode request: %v: %w", err, errBadRequest)
	}
	return nil
}

// blockingSnapshot honours ?index=N&wait=D: it returns once the state is past N or
// the wait is over (Consul/Nomad blocking queries).
func (d *Daemon) blockingSnapshot(r *http.Request) *raftstore.Snapshot {
	q := r.URL.Query()
	if idx, err := strconv.ParseUint(q.Get("index"), 10, 64); err == nil && idx > 0 {
		wait, err := time.ParseDuration(q.Get("wait"))
		if err != nil || wait <= 0 || wait > 5*time.Minute {
			wait = 30 * time.Second
		}
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		d.store.State().WaitIndex(ctx, idx)
		cancel()
	}
	return d.store.Snapshot()
}

func (d *Daemon) apply(r *http.Request, c raftstore.Command) (any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	return d.store.Apply(ctx, c)
}
