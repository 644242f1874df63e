package httpapi

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/raftstore"
)

func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := blockingSnapshot(r, st)
	leader, _ := st.Leader()
	out := []api.NodeInfo{}
	for _, n := range snap.Nodes() {
		out = append(out, api.NodeInfo{Node: *n, Leader: n.ID == leader})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname+out[i].Addr < out[j].Hostname+out[j].Addr })
	writeJSON(w, snap.Index(), out)
}

// findNode resolves an ID, an ID prefix, a hostname or an address.
func findNode(snap *raftstore.Snapshot, ref string) (*api.Node, error) {
	if err := checkRef("node", ref); err != nil {
		return nil, err
	}
	if n := snap.Node(ref); n != nil {
		return n, nil
	}
	var found []*api.Node
	for _, n := range snap.Nodes() {
		if n.Hostname == ref || n.Addr == ref || (len(ref) >= 3 && len(n.ID) > len(ref) && n.ID[:len(ref)] == ref) {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("node %q: %w", ref, api.ErrNotFound)
	default:
		return nil, badRequest("node %q is ambiguous (%d nodes match): use the node ID", ref, len(found))
	}
}

func (s *Server) handleNode(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := st.Snapshot()
	n, err := findNode(snap, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	leader, _ := st.Leader()
	writeJSON(w, snap.Index(), api.NodeInfo{Node: *n, Leader: n.ID == leader})
}

func (s *Server) handleNodeUpdate(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	var req api.NodeUpdateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	snap := st.Snapshot()
	n, err := findNode(snap, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if req.Role == api.RoleWorker && n.Role == api.RoleManager {
		managers := 0
		for _, m := range snap.Nodes() {
			if m.Role == api.RoleManager {
				managers++
			}
		}
		if managers <= 1 {
			writeError(w, badRequest("cannot demote the last manager"))
			return
		}
	}
	res, err := apply(r, st, &raftstore.NodeUpdate{NodeID: n.ID, Availability: req.Availability, Role: req.Role, LabelAdd: req.LabelAdd, LabelRm: req.LabelRm})
	if err != nil {
		writeError(w, err)
		return
	}
	s.cfg.Node.MembersChanged()
	writeJSON(w, st.State().Index(), res)
}

func (s *Server) handleNodeRemove(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := st.Snapshot()
	n, err := findNode(snap, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	if n.ID == s.cfg.Node.ID() {
		writeError(w, badRequest("node %s is the leader; use 'swarmlet leave' on it or demote it first", n.ID))
		return
	}
	if n.Role == api.RoleManager && !force {
		writeError(w, badRequest("node %s is a manager: demote it first, or use --force", n.ID))
		return
	}
	if _, err := apply(r, st, &raftstore.NodeRemove{NodeID: n.ID, Force: force}); err != nil {
		writeError(w, err)
		return
	}
	if n.Role == api.RoleManager {
		if err := st.RemoveServer(n.ID); err != nil {
			s.log.Warn("remove voter", "target", n.ID, "err", err)
		}
	}
	writeJSON(w, st.State().Index(), n)
}
