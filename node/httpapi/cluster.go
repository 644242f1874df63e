package httpapi

import (
	"net/http"
	"strconv"

	"github.com/swarmlet/swarmlet/api"
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
