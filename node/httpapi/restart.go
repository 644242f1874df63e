package httpapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/raftstore"
)

// handleRestarting records that the caller's daemon is stopping to restart, not
// to leave (api/restart.go): the leader keeps its tasks for the cluster's
// restart grace. Only a node itself says so, as with registration.
func (s *Server) handleRestarting(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	nodeID, err := caller(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if st.Snapshot().Node(nodeID) == nil {
		writeError(w, fmt.Errorf("node %s is not part of the cluster (removed?): %w", nodeID, api.ErrNotFound))
		return
	}
	res, err := apply(r, st, &raftstore.NodeRestarting{NodeID: nodeID, At: time.Now().UTC()})
	if err != nil {
		writeError(w, err)
		return
	}
	n, _ := res.(*api.Node)
	var out api.RestartingResponse
	if n != nil {
		out.Until = n.RestartingUntil
	}
	writeJSON(w, st.State().Index(), out)
}
