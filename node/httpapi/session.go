package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dispatcher"
	"github.com/swarmlet/swarmlet/raftstore"
)

// The worker side of the API: each node calls these for itself only; whose
// session, tasks or record it is comes from caller(r), never from the request.

func (s *Server) dispatcher(w http.ResponseWriter) *dispatcher.Dispatcher {
	d := s.cfg.Node.Dispatcher()
	if d == nil {
		writeError(w, fmt.Errorf("sessions are served by the leader: %w", api.ErrNotLeader))
	}
	return d
}

func (s *Server) handleAssignments(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	nodeID, err := caller(r)
	if err != nil {
		writeError(w, err)
		return
	}
	d := s.dispatcher(w)
	if d == nil {
		return
	}
	index, wait := blockingWait(r)
	if r.URL.Query().Get("delta") == "1" {
		s.session(w, r, st, d, nodeID, index, wait)
		return
	}
	as, err := d.Assignments(r.Context(), nodeID, index, wait)
	if err != nil {
		writeError(w, err)
		return
	}
	// The trust a worker follows through its session: the roots (CA rotation) and
	// the gossip keyring. It reads the cluster record of the same store.
	if _, ca, err := clusterCA(st.Snapshot()); err == nil {
		as.CA = string(ca.Bundle().PEM())
	}
	if cl := st.Snapshot().Cluster(); cl != nil {
		as.GossipKeys = cl.Trust.GossipKeys
	}
	if s.cfg.ObserveSession != nil {
		cw := &countingWriter{ResponseWriter: w}
		defer func() { s.cfg.ObserveSession("legacy", cw.n) }()
		w = cw
	}
	writeJSON(w, as.Index, as)
}

type countingWriter struct {
	http.ResponseWriter
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += n
	return n, err
}

// session answers a worker that takes deltas (api.Assignments says what they
// are). The tables' part is encoded once per version for every session sent it.
func (s *Server) session(w http.ResponseWriter, r *http.Request, st *raftstore.Store, d *dispatcher.Dispatcher, nodeID string, index uint64, wait time.Duration) {
	ans, err := d.Session(r.Context(), nodeID, index, wait)
	if err != nil {
		writeError(w, err)
		return
	}
	as := ans.Assignments
	snap := st.Snapshot()
	if cl := snap.Cluster(); cl != nil && (!as.Delta || cl.ModifyIndex > as.Since) {
		if _, ca, err := clusterCA(snap); err == nil {
			as.CA = string(ca.Bundle().PEM())
		}
		as.GossipKeys = cl.Trust.GossipKeys
	}
	b, err := json.Marshal(as)
	if err != nil {
		writeError(w, fmt.Errorf("encode session answer: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Swarmlet-Index", strconv.FormatUint(as.Index, 10))
	defer d.Heard(nodeID)
	tables := ans.Tables.JSON()
	if s.cfg.ObserveSession != nil {
		kind := "whole"
		if as.Delta {
			kind = "delta"
		}
		s.cfg.ObserveSession(kind, len(b)+len(tables))
	}
	if len(tables) == 0 {
		_, _ = w.Write(b)
		return
	}
	_, _ = w.Write(b[:len(b)-1]) // the object without its closing brace
	_, _ = w.Write([]byte{','})
	_, _ = w.Write(tables)
	_, _ = w.Write([]byte{'}'})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, _ *raftstore.Store) {
	nodeID, err := caller(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var rep api.StatusReport
	if err := decodeBody(r, &rep); err != nil {
		writeError(w, err)
		return
	}
	d := s.dispatcher(w)
	if d == nil {
		return
	}
	if err := d.ReportStatus(r.Context(), nodeID, rep.Ops); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 0, struct{}{})
}

// handleRegister refreshes the caller's own record after a restart: what it may
// change is its address, ports, engine (its platform and labels too) and
// resources, never its role, status or
// availability (the cluster owns those).
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	nodeID, err := caller(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req api.RegisterRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Node.ID != nodeID {
		writeError(w, fmt.Errorf("node %s may register only itself, not %q: %w", nodeID, req.Node.ID, api.ErrForbidden))
		return
	}
	cur := st.Snapshot().Node(nodeID)
	if cur == nil {
		writeError(w, fmt.Errorf("node %s is not part of the cluster (removed?): %w", nodeID, api.ErrNotFound))
		return
	}
	n := *cur
	n.Hostname, n.Addr, n.Engine, n.Resources = req.Node.Hostname, req.Node.Addr, req.Node.Engine, req.Node.Resources
	n.Platform, n.EngineLabels = req.Node.Platform, req.Node.EngineLabels
	n.APIPort, n.RaftPort, n.GossipPort, n.DNSPort = req.Node.APIPort, req.Node.RaftPort, req.Node.GossipPort, req.Node.DNSPort
	if err := checkSelf(n); err != nil {
		writeError(w, err)
		return
	}
	if _, err := apply(r, st, &raftstore.NodeUpsert{Node: n, Refresh: true}); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, st.State().Index(), struct{}{})
}

// handleDepart removes the caller from the cluster: the last step of its leave.
func (s *Server) handleDepart(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	nodeID, err := caller(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if st.Snapshot().Node(nodeID) == nil {
		writeJSON(w, st.State().Index(), struct{}{}) // already gone
		return
	}
	if _, err := apply(r, st, &raftstore.NodeRemove{NodeID: nodeID, Force: true}); err != nil {
		writeError(w, err)
		return
	}
	// A departing manager's voter goes with the leader's next member
	// reconciliation, like any other removed manager's.
	s.cfg.Node.MembersChanged()
	writeJSON(w, st.State().Index(), struct{}{})
}

func (s *Server) handleEndpoints(w http.ResponseWriter, r *http.Request, st *raftstore.Store) {
	snap := blockingSnapshot(r, st)
	writeJSON(w, snap.Index(), dispatcher.Endpoints(snap))
}
