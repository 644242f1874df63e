package httpapi

import (
	"net/http"
	"sort"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/raftstore"
)

// handleAllTasks lists the tasks of every service, or of one node (?node=, an ID,
// prefix, hostname or address): `node ps` and the dashboard's grid.
func (s *Server) handleAllTasks(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := blockingSnapshot(r, st)
	var tasks []*api.Task
	if ref := r.URL.Query().Get("node"); ref != "" {
		n, err := findNode(snap, ref)
		if err != nil {
			writeError(w, err)
			return
		}
		tasks = snap.TasksByNode(n.ID)
	} else {
		tasks = snap.Tasks()
	}
	out := make([]*api.Task, 0, len(tasks))
	out = append(out, tasks...)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.ServiceName != b.ServiceName {
			return a.ServiceName < b.ServiceName
		}
		if a.Slot != b.Slot {
			return a.Slot < b.Slot
		}
		if a.Slot == 0 && a.NodeID != b.NodeID {
			return a.NodeID < b.NodeID
		}
		return a.CreateIndex > b.CreateIndex
	})
	writeJSON(w, snap.Index(), out)
}
