package node

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/gossip"
	"github.com/swarmlet/swarmlet/raftstore"
)

func (d *Daemon) handleInfo(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	id, st := d.id, d.store
	d.mu.Unlock()
	info := api.Info{NodeID: id.NodeID, Hostname: d.cfg.Hostname, Addr: d.cfg.AdvertiseAddr, Role: id.Role,
		ClusterID: id.ClusterID, Engine: d.engineName(), LB: d.cfg.LB, DataDir: d.cfg.DataDir, Version: Version}
	if d.gossip != nil {
		info.GossipAlive = d.gossip.NumAlive()
	}
	if d.cfg.DNSPort > 0 {
		info.DNSAddr = fmt.Sprintf("%s:%d", d.cfg.AdvertiseAddr, d.cfg.DNSPort)
	}
	if st != nil {
		snap := st.Snapshot()
		info.LeaderID, _ = st.Leader()
		info.IsLeader = st.IsLeader()
		info.RaftIndex, info.RaftTerm = snap.Index(), st.Term()
		info.Nodes, info.Services, info.Tasks = len(snap.Nodes()), len(snap.Services()), len(snap.Tasks())
		voters, _ := st.Voters()
		info.Managers = len(voters)
		for _, m := range d.gossip.Members() {
			if _, ok := voters[m.Name]; ok && m.State == gossip.Alive {
				info.ManagersUp++
			}
		}
		writeJSON(w, snap.Index(), info)
		return
	}
	writeJSON(w, 0, info)
}

func (d *Daemon) handleDebugState(w http.ResponseWriter, r *http.Request) {
	if d.store == nil {
		writeError(w, fmt.Errorf("a worker holds no cluster state: %w", errBadRequest))
		return
	}
	snap := d.store.Snapshot()
	// Raft exposes term and leader separately; read the term on both sides of the
	// leader so the pair reported belongs to one term (checkers count leaders per term).
	var (
		term   uint64
		leader string
	)
	for range 10 {
		term = d.store.Term()
		leader, _ = d.store.Leader()
		if d.store.Term() == term {
			break
		}
	}
	writeJSON(w, snap.Index(), api.DebugState{NodeID: d.id.NodeID, Index: snap.Index(), Term: term, Leader: leader, Digest: snap.Digest()})
}

func (d *Daemon) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req api.JoinRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	cl := d.store.Snapshot().Cluster()
	if cl == nil {
		writeError(w, raftstore.ErrNotInitialized)
		return
	}
	digest, secret, err := parseToken(req.Token)
	if err != nil {
		writeError(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	if digest != clusterDigest(cl.ID) {
		writeError(w, fmt.Errorf("join token is for another cluster: %w", errBadRequest))
		return
	}
	var role api.NodeRole
	switch secret {
	case cl.WorkerSecret:
		role = api.RoleWorker
	case cl.ManagerSecret:
		role = api.RoleManager
	default:
		writeError(w, fmt.Errorf("invalid join token (wrong or rotated): get a current one with 'swarmlet join-token worker|manager': %w", errBadRequest))
		return
	}
	n := req.Node
	if n.ID == "" || n.Addr == "" || n.APIPort == 0 {
		writeError(w, fmt.Errorf("join request lacks node ID or address: %w", errBadRequest))
		return
	}
	n.Role, n.Status, n.StatusAt = role, api.NodeReady, time.Now().UTC()
	if _, err := d.apply(r, &raftstore.NodeUpsert{Node: n}); err != nil {
		writeError(w, err)
		return
	}
	snap := d.store.Snapshot()
	resp := api.JoinResponse{ClusterID: cl.ID, Role: role}
	for _, m := range snap.Nodes() {
		if m.Role == api.RoleManager {
			resp.Managers = append(resp.Managers, *m)
		}
	}
	d.log.Info("node joined", "target", n.ID, "role", role, "addr", n.Addr)
	writeJSON(w, snap.Index(), resp)
}

func (d *Daemon) handleInternalApply(w http.ResponseWriter, r *http.Request) {
	var b []byte
	if err := decodeBody(r, &b); err != nil {
		writeError(w, err)
		return
	}
	c, err := raftstore.Decode(b)
	if err != nil {
		writeError(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	if _, err := d.apply(r, c); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, d.store.State().Index(), struct{}{})
}

func (d *Daemon) handleJoinTokens(w http.ResponseWriter, r *http.Request) {
	snap := d.store.Snapshot()
	cl := snap.Cluster()
	if cl == nil {
		writeError(w, raftstore.ErrNotInitialized)
		return
	}
	writeJSON(w, snap.Index(), api.JoinTokens{Worker: makeToken(cl.ID, cl.WorkerSecret), Manager: makeToken(cl.ID, cl.ManagerSecret)})
}

func (d *Daemon) handleRotate(w http.ResponseWriter, r *http.Request) {
	role := api.NodeRole(r.URL.Query().Get("role"))
	if role != api.RoleWorker && role != api.RoleManager {
		writeError(w, fmt.Errorf("role must be worker or manager: %w", errBadRequest))
		return
	}
	if _, err := d.apply(r, &raftstore.TokenRotate{Role: role, Secret: randomID(25)}); err != nil {
		writeError(w, err)
		return
	}
	d.handleJoinTokens(w, r)
}

// nodeView adds the leader flag to the stored node.
type nodeView struct {
	api.Node
	Leader bool `json:"leader"`
}

func (d *Daemon) handleNodes(w http.ResponseWriter, r *http.Request) {
	snap := d.blockingSnapshot(r)
	leader, _ := d.store.Leader()
	out := []nodeView{}
	for _, n := range snap.Nodes() {
		out = append(out, nodeView{Node: *n, Leader: n.ID == leader})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname+out[i].Addr < out[j].Hostname+out[j].Addr })
	writeJSON(w, snap.Index(), out)
}

// findNode resolves an ID, an ID prefix, a hostname or an address.
func findNode(snap *raftstore.Snapshot, ref string) (*api.Node, error) {
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
		return nil, fmt.Errorf("node %q: %w", ref, raftstore.ErrNotFound)
	default:
		return nil, fmt.Errorf("node %q is ambiguous (%d nodes match): use the node ID: %w", ref, len(found), errBadRequest)
	}
}

func (d *Daemon) handleNode(w http.ResponseWriter, r *http.Request) {
	snap := d.store.Snapshot()
	n, err := findNode(snap, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	leader, _ := d.store.Leader()
	writeJSON(w, snap.Index(), nodeView{Node: *n, Leader: n.ID == leader})
}

func (d *Daemon) handleNodeUpdate(w http.ResponseWriter, r *http.Request) {
	var req api.NodeUpdateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	snap := d.store.Snapshot()
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
			writeError(w, fmt.Errorf("cannot demote the last manager: %w", errBadRequest))
			return
		}
	}
	res, err := d.apply(r, &raftstore.NodeUpdate{NodeID: n.ID, Availability: req.Availability, Role: req.Role, LabelAdd: req.LabelAdd, LabelRm: req.LabelRm})
	if err != nil {
		writeError(w, err)
		return
	}
	select {
	case d.memberChanged <- struct{}{}:
	default:
	}
	writeJSON(w, d.store.State().Index(), res)
}

func (d *Daemon) handleNodeRemove(w http.ResponseWriter, r *http.Request) {
	snap := d.store.Snapshot()
	n, err := findNode(snap, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	if n.ID == d.id.NodeID {
		writeError(w, fmt.Errorf("node %s is the leader; use 'swarmlet leave' on it or demote it first: %w", n.ID, errBadRequest))
		return
	}
	if n.Role == api.RoleManager && !force {
		writeError(w, fmt.Errorf("node %s is a manager: demote it first, or use --force: %w", n.ID, errBadRequest))
		return
	}
	if _, err := d.apply(r, &raftstore.NodeRemove{NodeID: n.ID, Force: force}); err != nil {
		writeError(w, err)
		return
	}
	if n.Role == api.RoleManager {
		if err := d.store.RemoveServer(n.ID); err != nil {
			d.log.Warn("remove voter", "target", n.ID, "err", err)
		}
	}
	writeJSON(w, d.store.State().Index(), n)
}

func (d *Daemon) handleLeave(w http.ResponseWriter, r *http.Request) {
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	d.mu.Lock()
	st := d.store
	d.mu.Unlock()
	if st != nil && !force {
		voters, _ := st.Voters()
		if len(voters) > 1 && len(voters) <= 2 {
			writeError(w, fmt.Errorf("leaving would cost the cluster its quorum (%d managers): demote this node first, or use --force: %w", len(voters), errBadRequest))
			return
		}
		if len(voters) == 1 {
			writeError(w, fmt.Errorf("this is the last manager: leaving destroys the cluster; use --force to do it anyway: %w", errBadRequest))
			return
		}
	}
	if err := d.leave(r.Context()); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 0, struct{}{})
	go func() {
		select {
		case <-d.leaving:
		default:
			close(d.leaving)
		}
	}()
}

func (d *Daemon) handleServices(w http.ResponseWriter, r *http.Request) {
	snap := d.blockingSnapshot(r)
	out := []serviceView{}
	for _, s := range snap.Services() {
		out = append(out, newServiceView(s, snap.TasksByService(s.ID), snap.Nodes()))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	writeJSON(w, snap.Index(), out)
}

// serviceView adds live counts to the stored service.
type serviceView struct {
	api.Service
	Running int    `json:"running"`
	Desired uint64 `json:"desired"`
}

func newServiceView(s *api.Service, tasks []*api.Task, nodes []*api.Node) serviceView {
	v := serviceView{Service: *s}
	for _, t := range tasks {
		if t.Status.State == api.TaskRunning && t.DesiredState == api.TaskRunning {
			v.Running++
		}
	}
	if s.Spec.Mode == api.ModeGlobal {
		for _, t := range tasks {
			if t.DesiredState == api.TaskRunning {
				v.Desired++
			}
		}
	} else {
		v.Desired = s.Spec.Replicas
	}
	return v
}

func (d *Daemon) handleService(w http.ResponseWriter, r *http.Request) {
	snap := d.store.Snapshot()
	s := snap.Service(r.PathValue("name"))
	if s == nil {
		writeError(w, fmt.Errorf("service %q: %w", r.PathValue("name"), raftstore.ErrNotFound))
		return
	}
	writeJSON(w, snap.Index(), newServiceView(s, snap.TasksByService(s.ID), snap.Nodes()))
}

func (d *Daemon) handleServiceCreate(w http.ResponseWriter, r *http.Request) {
	var spec api.ServiceSpec
	if err := decodeBody(r, &spec); err != nil {
		writeError(w, err)
		return
	}
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		writeError(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	res, err := d.apply(r, &raftstore.ServiceCreate{ID: randomID(12), Spec: spec, At: time.Now().UTC()})
	if err != nil {
		writeError(w, err)
		return
	}
	d.log.Info("service created", "service", spec.Name)
	writeJSON(w, d.store.State().Index(), res)
}

func (d *Daemon) handleServiceScale(w http.ResponseWriter, r *http.Request) {
	var req api.ScaleRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	res, err := d.apply(r, &raftstore.ServiceScale{Name: r.PathValue("name"), Replicas: req.Replicas, At: time.Now().UTC()})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, d.store.State().Index(), res)
}

func (d *Daemon) handleServiceUpdate(w http.ResponseWriter, r *http.Request) {
	var req api.ServiceUpdateRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	res, err := d.apply(r, &raftstore.ServiceUpdate{Name: r.PathValue("name"), ExpectedVersion: req.Version, Spec: req.Spec, At: time.Now().UTC()})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, d.store.State().Index(), res)
}

func (d *Daemon) handleServiceRemove(w http.ResponseWriter, r *http.Request) {
	res, err := d.apply(r, &raftstore.ServiceRemove{Name: r.PathValue("name"), At: time.Now().UTC()})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, d.store.State().Index(), res)
}

func (d *Daemon) handleTasks(w http.ResponseWriter, r *http.Request) {
	snap := d.blockingSnapshot(r)
	s := snap.Service(r.PathValue("name"))
	if s == nil {
		writeError(w, fmt.Errorf("service %q: %w", r.PathValue("name"), raftstore.ErrNotFound))
		return
	}
	tasks := snap.TasksByService(s.ID)
	out := make([]*api.Task, 0, len(tasks))
	out = append(out, tasks...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Slot != out[j].Slot {
			return out[i].Slot < out[j].Slot
		}
		if out[i].Slot == 0 && out[i].NodeID != out[j].NodeID {
			return out[i].NodeID < out[j].NodeID
		}
		return out[i].CreateIndex > out[j].CreateIndex
	})
	writeJSON(w, snap.Index(), out)
}

func (d *Daemon) handleAssignments(w http.ResponseWriter, r *http.Request) {
	nodeID := r.URL.Query().Get("node")
	lc := d.leaderCtx.Load()
	if lc == nil {
		writeError(w, fmt.Errorf("sessions are served by the leader: %w", raftstore.ErrNotLeader))
		return
	}
	// A session blocked here must end with this leadership: our state stops
	// moving once we no longer lead.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(*lc, cancel)()
	snap := d.blockingSnapshot(r.WithContext(ctx))
	if (*lc).Err() != nil {
		writeError(w, fmt.Errorf("leadership lost: %w", raftstore.ErrNotLeader))
		return
	}
	n := snap.Node(nodeID)
	if n == nil {
		writeError(w, fmt.Errorf("node %q is not part of the cluster (removed?): %w", nodeID, raftstore.ErrNotFound))
		return
	}
	out := api.Assignments{Index: snap.Index(), Node: n, Tasks: []*api.Task{}, Endpoints: endpoints(snap)}
	for _, t := range snap.TasksByNode(nodeID) {
		// Terminal tasks are the worker's concern only until it has reported them.
		if t.Status.State.Terminal() && t.DesiredState >= api.TaskShutdown {
			continue
		}
		out.Tasks = append(out.Tasks, t)
	}
	for _, m := range snap.Nodes() {
		out.Nodes = append(out.Nodes, *m)
	}
	if voters, err := d.store.Voters(); err == nil {
		for id := range voters {
			out.Voters = append(out.Voters, id)
		}
		sort.Strings(out.Voters)
	}
	writeJSON(w, snap.Index(), out)
}

func (d *Daemon) handleEndpoints(w http.ResponseWriter, r *http.Request) {
	snap := d.blockingSnapshot(r)
	writeJSON(w, snap.Index(), endpoints(snap))
}

// endpoints builds the discovery table: every service with its running tasks.
func endpoints(snap *raftstore.Snapshot) []api.ServiceEndpoints {
	nodes := map[string]*api.Node{}
	for _, n := range snap.Nodes() {
		nodes[n.ID] = n
	}
	out := []api.ServiceEndpoints{}
	for _, s := range snap.Services() {
		se := api.ServiceEndpoints{Service: s.Spec.Name, VIP: s.VIP, EndpointMode: s.Spec.EndpointMode, Ports: s.Ports, Tasks: []api.Endpoint{}}
		for _, t := range snap.TasksByService(s.ID) {
			if t.Status.State != api.TaskRunning || t.DesiredState != api.TaskRunning {
				continue
			}
			n := nodes[t.NodeID]
			if n == nil || n.Status != api.NodeReady {
				continue
			}
			se.Tasks = append(se.Tasks, api.Endpoint{Service: s.Spec.Name, TaskID: t.ID, Slot: t.Slot, NodeID: t.NodeID,
				NodeIP: n.Addr, Addr: t.Status.Addr, Ports: slices.Clone(t.Status.Ports)})
		}
		out = append(out, se)
	}
	return out
}

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	var rep api.StatusReport
	if err := decodeBody(r, &rep); err != nil {
		writeError(w, err)
		return
	}
	for i := range rep.Ops {
		if rep.Ops[i].Kind != api.TaskOpStatus {
			writeError(w, fmt.Errorf("a worker may only report status: %w", errBadRequest))
			return
		}
		rep.Ops[i].NodeID = rep.NodeID
	}
	if _, err := d.apply(r, &raftstore.TaskOps{Ops: rep.Ops}); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, d.store.State().Index(), struct{}{})
}
