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
	TaskLogs(ctx context.Context, taskID string, follow bool, tail int, w io.Writer) error
	// Dispatcher serves sessions while this node leads; nil otherwise.
	Dispatcher() *dispatcher.Dispatcher
	// MembersChanged nudges the leader's member reconciliation (a role change).
	MembersChanged()
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
}

// Server is the API's handler set.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New builds the routes.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	s.routes()
	return s
}

// Handler is the API's http.Handler.
func (s *Server) Handler() http.Handler { return s.mux }

// routes is the one list of the API's endpoints: a newcomer looking for where a
// request is handled starts here.
func (s *Server) routes() {
	h := func(pattern string, kind forward.Kind, f forward.Handler) {
		s.mux.HandleFunc(pattern, s.cfg.Router.Route(kind, f))
	}
	// This node itself.
	h("GET /v1/info", forward.Local, s.handleInfo)
	h("GET /v1/debug/state", forward.Local, s.handleDebugState)
	h("POST /v1/leave", forward.Local, s.handleLeave)
	h("GET /v1/local/tasks/{id}/logs", forward.Local, s.handleLocalLogs)
	h("GET /v1/local/images/{ref}", forward.Local, s.handleLocalImage)
	h("GET /v1/local/images/{ref}/archive", forward.Local, s.handleLocalImageArchive)
	h("POST /v1/local/images/prune", forward.Local, s.handleImagePrune)
	// Cluster membership and tokens.
	h("POST /v1/cluster/join", forward.Write, s.handleJoin)
	h("GET /v1/join-tokens", forward.Read, s.handleJoinTokens)
	h("POST /v1/join-tokens/rotate", forward.Write, s.handleRotate)
	// Nodes.
	h("GET /v1/nodes", forward.Read, s.handleNodes)
	h("GET /v1/nodes/{id}", forward.Read, s.handleNode)
	h("POST /v1/nodes/{id}/update", forward.Write, s.handleNodeUpdate)
	h("DELETE /v1/nodes/{id}", forward.Write, s.handleNodeRemove)
	// Services and tasks.
	h("GET /v1/services", forward.Read, s.handleServices)
	h("POST /v1/services", forward.Write, s.handleServiceCreate)
	h("GET /v1/services/{name}", forward.Read, s.handleService)
	h("POST /v1/services/{name}/scale", forward.Write, s.handleServiceScale)
	h("POST /v1/services/{name}/update", forward.Write, s.handleServiceUpdate)
	h("POST /v1/services/{name}/rollback", forward.Write, s.handleServiceRollback)
	h("DELETE /v1/services/{name}", forward.Write, s.handleServiceRemove)
	h("GET /v1/services/{name}/tasks", forward.Read, s.handleTasks)
	h("GET /v1/services/{name}/logs", forward.Read, s.handleServiceLogs)
	h("GET /v1/endpoints", forward.Read, s.handleEndpoints)
	// Worker sessions (node to node, with the leader).
	h("GET /v1/dispatcher/assignments", forward.Session, s.handleAssignments)
	h("POST /v1/dispatcher/status", forward.Session, s.handleStatus)
	h("POST /v1/dispatcher/register", forward.Write, s.handleRegister)
	h("POST /v1/dispatcher/depart", forward.Write, s.handleDepart)
	h("POST /v1/dispatcher/restarting", forward.Write, s.handleRestarting)
}

// Serve serves the API on ln until the server is shut down.
func (s *Server) Serve(ln net.Listener) *http.Server {
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
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
