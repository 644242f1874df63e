package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dispatcher"
	"github.com/swarmlet/swarmlet/node/authn"
	"github.com/swarmlet/swarmlet/node/forward"
	"github.com/swarmlet/swarmlet/raftstore"
)

// Node is what the handlers need from the daemon beyond the store.
type Node interface {
	// ID is this node's ID.
	ID() string
	// Info describes this node; st is its store (nil on a worker).
	Info(st *raftstore.Store) api.Info
	// Leave stops this node's tasks, removes it from the cluster and then stops the
	// daemon, forgetting the cluster.
	Leave(ctx context.Context) error
	// TaskLogs copies the log of a task that runs on this node.
	TaskLogs(ctx context.Context, taskID string, opt api.LogOptions, w io.Writer) error
	// Dispatcher serves sessions while this node leads; nil otherwise.
	Dispatcher() *dispatcher.Dispatcher
	// MembersChanged nudges the leader's member reconciliation (a role change).
	MembersChanged()
	// RoleOf is the role a caller with a verified certificate for certRole is
	// authorized as: its role in the node table as this node knows it ("" when it
	// is not a member), not its certificate's alone.
	RoleOf(nodeID string, certRole api.NodeRole) api.NodeRole
}

// Config wires the API.
type Config struct {
	Node    Node
	Router  *forward.Router
	Peers   *forward.Peers
	Logger  *slog.Logger
	Version string
	// Images is this node's engine images (images.go); nil if it runs none.
	Images ImageHost
	// AdvertiseAddr is where this node's own connections (to registries) leave from.
	AdvertiseAddr string
	// Metrics serves /metrics (nil: 404); ObserveRequest, if set, is told of
	// each request's route pattern, status and duration.
	Metrics        http.Handler
	ObserveRequest func(route string, code int, d time.Duration)
	// ObserveSession, if set, is told of each session answer: whole or delta,
	// and its size.
	ObserveSession func(kind string, bytes int)
	// UI serves the dashboard's files under /ui/ (nil: 404).
	UI http.Handler
	// Limits caps requests that hold a goroutine and a connection for long; zero
	// fields take DefaultLimits.
	Limits Limits
}

// Server is the API's handler set.
type Server struct {
	cfg    Config
	log    *slog.Logger
	mux    *http.ServeMux
	limits limits
}

// New builds the routes.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), limits: newLimits(cfg.Limits)}
	s.routes()
	return s
}

// Handler is the API's http.Handler.
func (s *Server) Handler() http.Handler { return s.mux }

// routes is the one list of the API's endpoints: a newcomer looking for where a
// request is handled starts here.
func (s *Server) routes() {
	h := func(pattern string, kind forward.Kind, a access, f forward.Handler) {
		s.mux.HandleFunc(pattern, s.instrument(pattern, s.guard(kind, a, s.cfg.Router.Route(kind, f))))
	}
	// This node itself.
	h("GET /v1/info", forward.Local, admin, s.handleInfo)
	h("GET /v1/debug/state", forward.Local, admin, s.handleDebugState)
	h("POST /v1/leave", forward.Local, admin, s.handleLeave)
	h("GET /v1/local/tasks/{id}/logs", forward.Local, admin, s.handleLocalLogs)
	// Images this node holds, for other nodes that lack them (node to node).
	h("GET /v1/local/images/{ref}", forward.Local, nodes, s.handleLocalImage)
	h("GET /v1/local/images/{ref}/archive", forward.Local, nodes, s.handleLocalImageArchive)
	h("POST /v1/local/images/prune", forward.Local, admin, s.handleImagePrune)
	// The operator's view: metrics and the dashboard, with the API's access.
	h("GET /metrics", forward.Local, admin, s.handleMetrics)
	h("GET /ui/", forward.Local, admin, s.handleUI)
	h("GET /{$}", forward.Local, admin, s.handleRoot)
	// Cluster membership and tokens.
	h("POST /v1/cluster/join", forward.Write, anyone, s.handleJoin)
	h("GET /v1/join-tokens", forward.Read, admin, s.handleJoinTokens)
	h("POST /v1/join-tokens/rotate", forward.Write, admin, s.handleRotate)
	// Trust: the CA, operators' certificates, the unlock key.
	h("GET /v1/ca", forward.Read, admin, s.handleCA)
	h("POST /v1/ca/rotate", forward.Write, admin, s.handleCARotate)
	h("POST /v1/ca/issue-client", forward.Write, admin, s.handleIssueClient)
	h("GET /v1/gossip-key", forward.Read, admin, s.handleGossipKey)
	h("POST /v1/gossip-key/rotate", forward.Write, admin, s.handleGossipRotate)
	h("GET /v1/unlock-key", forward.Read, admin, s.handleUnlockKey)
	h("POST /v1/unlock-key/rotate", forward.Write, admin, s.handleUnlockKeyRotate)
	// Nodes.
	h("GET /v1/nodes", forward.Read, admin, s.handleNodes)
	h("GET /v1/nodes/{id}", forward.Read, admin, s.handleNode)
	h("POST /v1/nodes/{id}/update", forward.Write, admin, s.handleNodeUpdate)
	h("DELETE /v1/nodes/{id}", forward.Write, admin, s.handleNodeRemove)
	// Services and tasks.
	h("GET /v1/services", forward.Read, admin, s.handleServices)
	h("POST /v1/services", forward.Write, admin, s.handleServiceCreate)
	h("GET /v1/services/{name}", forward.Read, admin, s.handleService)
	h("POST /v1/services/{name}/scale", forward.Write, admin, s.handleServiceScale)
	h("POST /v1/services/{name}/update", forward.Write, admin, s.handleServiceUpdate)
	h("POST /v1/services/{name}/rollback", forward.Write, admin, s.handleServiceRollback)
	h("DELETE /v1/services/{name}", forward.Write, admin, s.handleServiceRemove)
	h("GET /v1/services/{name}/tasks", forward.Read, admin, s.handleTasks)
	h("GET /v1/services/{name}/logs", forward.Read, admin, s.handleServiceLogs)
	h("GET /v1/tasks", forward.Read, admin, s.handleAllTasks)
	h("GET /v1/events", forward.Read, admin, s.handleEvents)
	h("GET /v1/endpoints", forward.Read, admin, s.handleEndpoints)
	// Secrets and configs (secrets.go): /v1/secrets..., /v1/configs...
	s.secretRoutes(h)
	// Worker sessions (node to node, with the leader): each node for itself.
	h("GET /v1/dispatcher/assignments", forward.Session, nodes, s.handleAssignments)
	h("POST /v1/dispatcher/status", forward.Session, nodes, s.handleStatus)
	h("POST /v1/dispatcher/register", forward.Write, nodes, s.handleRegister)
	h("POST /v1/dispatcher/depart", forward.Write, nodes, s.handleDepart)
	h("POST /v1/dispatcher/certificate", forward.Write, nodes, s.handleRenew)
	h("POST /v1/dispatcher/restarting", forward.Write, nodes, s.handleRestarting)
}

// timeouts bound how long a client may take to send a request and how long an
// idle kept-alive connection stays open (variables so tests can shorten them).
var timeouts = struct{ header, read, idle time.Duration }{10 * time.Second, 30 * time.Second, 2 * time.Minute}

// ServeOptions say what a listener is.
type ServeOptions struct {
	// Socket marks the unix socket: its callers are the operator.
	Socket bool
	// ConnState, if set, is the server's connection hook (the daemon tracks TLS
	// connections by peer to cut off removed nodes).
	ConnState func(net.Conn, http.ConnState)
}

// Serve serves the API on ln until the server is shut down. On TCP, ln must be a
// TLS listener whose handshakes are complete (pki.Listener): the handlers take the
// caller from the connection's certificate.
func (s *Server) Serve(ln net.Listener, o ServeOptions) *http.Server {
	srv := &http.Server{Handler: s.mux,
		// A slow or idle client holds a connection for bounded time. No write
		// timeout: blocking queries and followed logs answer late by design (they
		// are capped in number instead, see limits).
		ReadHeaderTimeout: timeouts.header, ReadTimeout: timeouts.read, IdleTimeout: timeouts.idle,
		MaxHeaderBytes: 64 << 10, ConnState: o.ConnState,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	if o.Socket {
		srv.ConnContext = func(ctx context.Context, _ net.Conn) context.Context { return authn.MarkSocket(ctx) }
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api server", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return srv
}

func writeJSON(w http.ResponseWriter, index uint64, v any) {
	w.Header().Set("Content-Type", "application/json")
	if index > 0 {
		w.Header().Set("X-Swarmlet-Index", strconv.FormatUint(index, 10))
	}
	_ = json.NewEncoder(w).Encode(v)
}

var writeError = forward.WriteError

// badRequest wraps a validation message as a refusal of bad input.
func badRequest(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), api.ErrInvalid)
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 8<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("decode request: %v", err)
	}
	return nil
}

// blockingWait reads ?index=N&wait=D (Consul/Nomad blocking queries).
func blockingWait(r *http.Request) (index uint64, wait time.Duration) {
	q := r.URL.Query()
	index, err := strconv.ParseUint(q.Get("index"), 10, 64)
	if err != nil || index == 0 {
		return 0, 0
	}
	wait, err = time.ParseDuration(q.Get("wait"))
	if err != nil || wait <= 0 || wait > 5*time.Minute {
		wait = 30 * time.Second
	}
	return index, wait
}

// blockingSnapshot returns once the state is past ?index or the ?wait is over.
func blockingSnapshot(r *http.Request, st *raftstore.Store) *raftstore.Snapshot {
	if idx, wait := blockingWait(r); idx > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		st.State().WaitIndex(ctx, idx)
		cancel()
	}
	return st.Snapshot()
}

func apply(r *http.Request, st *raftstore.Store, c raftstore.Command) (any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	return st.Apply(ctx, c)
}
