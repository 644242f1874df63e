package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/token"
	"github.com/swarmlet/swarmlet/raftstore"
)

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	info := s.cfg.Node.Info(st)
	writeJSON(w, info.RaftIndex, info)
}

func (s *Server) handleDebugState(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	if st == nil {
		writeError(w, badRequest("a worker holds no cluster state"))
		return
	}
	snap := st.Snapshot()
	// Raft exposes term and leader separately; read the term on both sides of the
	// leader so the pair reported belongs to one term (checkers count leaders per term).
	var (
		term   uint64
		leader string
	)
	for range 10 {
		term = st.Term()
		leader, _ = st.Leader()
		if st.Term() == term {
			break
		}
	}
	writeJSON(w, snap.Index(), api.DebugState{NodeID: s.cfg.Node.ID(), Index: snap.Index(), Term: term, Leader: leader, Digest: snap.Digest()})
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	var req api.JoinRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	cl := st.Snapshot().Cluster()
	if cl == nil {
		writeError(w, raftstore.ErrNotInitialized)
		return
	}
	digest, secret, err := token.Parse(req.Token)
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	if digest != token.ClusterDigest(cl.ID) {
		writeError(w, badRequest("join token is for another cluster"))
		return
	}
	var role api.NodeRole
	switch {
	case token.SecretEqual(secret, cl.WorkerSecret):
		role = api.RoleWorker
	case token.SecretEqual(secret, cl.ManagerSecret):
		role = api.RoleManager
	default:
		writeError(w, badRequest("invalid join token (wrong or rotated): get a current one with 'swarmlet join-token worker|manager'"))
		return
	}
	n := req.Node
	if n.ID == "" || n.Addr == "" || n.APIPort == 0 {
		writeError(w, badRequest("join request lacks node ID or address"))
		return
	}
	if err := api.ValidateID(n.ID); err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	if st.Snapshot().Node(n.ID) != nil {
		writeError(w, fmt.Errorf("node ID %s is already a member: %w", n.ID, api.ErrConflict))
		return
	}
	n.Role, n.Status, n.StatusAt = role, api.NodeReady, time.Now().UTC()
	if _, err := apply(r, st, &raftstore.NodeUpsert{Node: n}); err != nil {
		writeError(w, err)
		return
	}
	snap := st.Snapshot()
	resp := api.JoinResponse{ClusterID: cl.ID, Role: role, Network: cl.Network()}
	for _, m := range snap.Nodes() {
		if m.Role == api.RoleManager {
			resp.Managers = append(resp.Managers, *m)
		}
	}
	s.log.Info("node joined", "target", n.ID, "role", role, "addr", n.Addr)
	writeJSON(w, snap.Index(), resp)
}

func (s *Server) handleJoinTokens(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := st.Snapshot()
	cl := snap.Cluster()
	if cl == nil {
		writeError(w, raftstore.ErrNotInitialized)
		return
	}
	writeJSON(w, snap.Index(), api.JoinTokens{Worker: token.Make(cl.ID, cl.WorkerSecret), Manager: token.Make(cl.ID, cl.ManagerSecret)})
}

func (s *Server) handleRotate(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	role := api.NodeRole(r.URL.Query().Get("role"))
	if role != api.RoleWorker && role != api.RoleManager {
		writeError(w, badRequest("role must be worker or manager"))
		return
	}
	if _, err := apply(r, st, &raftstore.TokenRotate{Role: role, Secret: token.RandomID(25)}); err != nil {
		writeError(w, err)
		return
	}
	s.handleJoinTokens(w, r, st)
}

func (s *Server) handleLeave(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	if st != nil && !force {
		voters, _ := st.Voters()
		if len(voters) > 1 && len(voters) <= 2 {
			writeError(w, badRequest("leaving would cost the cluster its quorum (%d managers): demote this node first, or use --force", len(voters)))
			return
		}
		if len(voters) == 1 {
			writeError(w, badRequest("this is the last manager: leaving destroys the cluster; use --force to do it anyway"))
			return
		}
	}
	if err := s.cfg.Node.Leave(r.Context()); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 0, struct{}{})
}
