package dispatcher

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/swarmlet/swarmlet/api"
)

// The tables every node follows (the endpoint table its DNS and balancer serve,
// the node table for SRV targets and the overlay) used to cross every session
// whole on every change: nodes x endpoints bytes for a one-task change, and a
// rebuild from every task per answer. The keeper holds them for one leadership,
// moves them forward from the store's change feed (work in proportion to what
// changed), and remembers for a while what each version changed, so a worker
// at version V is sent what changed since V. Only the latest version's snapshot
// is kept: older ones would pin every task they replaced.

// ChangeKind says which table a Change is about.
type ChangeKind int

const (
	ChangeNode ChangeKind = iota
	ChangeService
	ChangeTask
	ChangeCluster // the cluster record (trust: roots, gossip keys)
)

// Change names one object a committed entry changed.
type Change struct {
	Kind ChangeKind
	ID   string
}

// Tables is the shared part of session answers at one version: the whole tables,
// or what changed between two versions. Every session at the same pair gets the
// same value; it must not be modified.
type Tables struct {
	Endpoints     []api.ServiceEndpoints
	EndpointsGone []string
	Nodes         []api.Node
	NodesGone     []string

	once sync.Once
	json []byte
}

func (t *Tables) empty() bool {
	return len(t.Endpoints)+len(t.EndpointsGone)+len(t.Nodes)+len(t.NodesGone) == 0
}

// Versions are dropped, oldest first, past these bounds; a worker older than
// the oldest is sent the whole tables.
const (
	keepVersions = 4096
	keepIDs      = 1 << 18
)

type tableKeeper struct {
	store SessionStore

	mu      sync.Mutex
	built   bool
	index   uint64
	snap    Snapshot
	svcs    map[string]*svcTable // by service name
	svcName map[string]string    // service ID -> name
	epSvc   map[string]string    // task ID -> the service whose table holds its endpoint
	marks   map[string]taskMark  // task ID -> what its worker acts on
	nodes   map[string]*api.Node

	versions []*tableVersion // oldest first; the last is the current one
	held     int

	full   *Tables
	deltas map[uint64]*Tables // since -> changes up to the current version

	global  chan struct{}            // closed at the next version with table changes
	waiters map[string]chan struct{} // node -> closed at the next version that concerns it
}

type svcTable struct {
	head api.ServiceEndpoints // without Tasks
	eps  map[string]api.Endpoint
}

// taskMark is what a worker acts on: which node holds the task, what it is asked
// to do, and whether it is in that node's list. A change of status alone (the
// worker's own report, as a rule) leaves it alone, and so wakes no session early.
type taskMark struct {
	node    string
	desired api.TaskState
	listed  bool
}

// tableVersion is what one step of the tables changed.
type tableVersion struct {
	index  uint64
	eps    map[string][]string // service name -> task IDs whose endpoint changed or left
	nodes  map[string]bool     // nodes changed or removed
	urgent map[string]bool     // nodes whose own assignments changed
	all    bool                // every node is concerned (the cluster record)
}

func newTableKeeper(store SessionStore) *tableKeeper {
	return &tableKeeper{store: store, global: make(chan struct{}), waiters: map[string]chan struct{}{}}
}

// listed is whether a task is in its node's assignments (AssignmentsFor).
func listed(t *api.Task) bool {
	return t.NodeID != "" && !(t.Status.State.Terminal() && t.DesiredState >= api.TaskShutdown)
}

func markOf(t *api.Task) taskMark {
	if t == nil {
		return taskMark{}
	}
	return taskMark{node: t.NodeID, desired: t.DesiredState, listed: listed(t)}
}

func header(s *api.Service) api.ServiceEndpoints {
	return api.ServiceEndpoints{Service: s.Spec.Name, VIP: s.VIP, EndpointMode: s.Spec.EndpointMode, Ports: s.Ports}
}

func sameHeader(a, b api.ServiceEndpoints) bool {
	return a.Service == b.Service && a.VIP == b.VIP && a.EndpointMode == b.EndpointMode && slices.Equal(a.Ports, b.Ports)
}

func sameEndpoint(a, b api.Endpoint) bool {
	return a.Service == b.Service && a.TaskID == b.TaskID && a.Slot == b.Slot && a.NodeID == b.NodeID &&
		a.NodeIP == b.NodeIP && a.Addr == b.Addr && slices.Equal(a.Ports, b.Ports)
}

// advance moves the tables to the store's current state.
func (k *tableKeeper) advance() {
	k.mu.Lock()
	defer k.mu.Unlock()
	snap := k.store.Snapshot()
	if k.built && snap.Index() == k.index {
		return
	}
	var (
		changed []Change
		ok      bool
	)
	if k.built {
		// Taken after the snapshot: it names at least every object the
		// snapshot's entries changed (more is harmless, each is read again).
		changed, _, ok = k.store.ChangedSince(k.index)
	}
	if !ok {
		k.rebuild(snap)
	} else {
		k.step(snap, changed)
	}
}

// rebuild makes the tables afresh from snap; the versions before are forgotten,
// so every session is sent the whole tables once.
func (k *tableKeeper) rebuild(snap Snapshot) {
	k.svcs, k.svcName, k.epSvc = map[string]*svcTable{}, map[string]string{}, map[string]string{}
	k.marks, k.nodes = map[string]taskMark{}, map[string]*api.Node{}
	for _, n := range snap.Nodes() {
		k.nodes[n.ID] = n
	}
	for _, s := range snap.Services() {
		k.svcName[s.ID] = s.Spec.Name
		k.svcs[s.Spec.Name] = &svcTable{head: header(s), eps: map[string]api.Endpoint{}}
	}
	for _, t := range snap.Tasks() {
		k.marks[t.ID] = markOf(t)
		if ep, name, ok := k.endpointOf(t); ok {
			k.svcs[name].eps[t.ID] = ep
			k.epSvc[t.ID] = name
		}
	}
	k.built, k.index, k.snap = true, snap.Index(), snap
	k.versions, k.held = nil, 0
	k.publish(&tableVersion{index: snap.Index(), all: true})
}

// endpointOf is a task's entry in the endpoint table, if it has one (Endpoints
// says when).
func (k *tableKeeper) endpointOf(t *api.Task) (api.Endpoint, string, bool) {
	if t == nil || !TaskServes(t) {
		return api.Endpoint{}, "", false
	}
	n := k.nodes[t.NodeID]
	name, ok := k.svcName[t.ServiceID]
	if n == nil || !n.TasksServe() || !ok {
		return api.Endpoint{}, "", false
	}
	return api.Endpoint{Service: name, TaskID: t.ID, Slot: t.Slot, NodeID: t.NodeID, NodeIP: n.Addr,
		Addr: t.Status.Addr, Ports: slices.Clone(t.Status.Ports)}, name, true
}

// step applies what the entries since the last version changed.
func (k *tableKeeper) step(snap Snapshot, changed []Change) {
	v := &tableVersion{index: snap.Index(), eps: map[string][]string{}, nodes: map[string]bool{}, urgent: map[string]bool{}}
	tasks := map[string]bool{}
	var nodeIDs, svcIDs []string
	seen := map[Change]bool{}
	for _, c := range changed {
		if seen[c] {
			continue
		}
		seen[c] = true
		switch c.Kind {
		case ChangeNode:
			nodeIDs = append(nodeIDs, c.ID)
		case ChangeService:
			svcIDs = append(svcIDs, c.ID)
		case ChangeTask:
			tasks[c.ID] = true
		case ChangeCluster:
			v.all = true
		}
	}
	// Nodes and services first: a task's entry depends on its node and service.
	for _, id := range nodeIDs {
		n, old := snap.Node(id), k.nodes[id]
		switch {
		case n == nil && old == nil:
			continue
		case n == nil:
			delete(k.nodes, id)
		case old == n: // the same record (objects are replaced, never changed in place)
			continue
		default:
			k.nodes[id] = n
		}
		v.nodes[id] = true
		// A task never changes node, so these are all the entries it affects
		// (deleted tasks come as task changes of their own).
		for _, t := range snap.TasksByNode(id) {
			tasks[t.ID] = true
		}
	}
	if len(svcIDs) > 0 {
		byID := map[string]*api.Service{}
		for _, s := range snap.Services() {
			byID[s.ID] = s
		}
		for _, id := range svcIDs {
			s, oldName := byID[id], k.svcName[id]
			if oldName != "" && (s == nil || s.Spec.Name != oldName) {
				// Gone (or renamed): its table goes, and with it every entry (named,
				// in case a new service takes the name in the same step).
				for tid := range k.svcs[oldName].eps {
					delete(k.epSvc, tid)
					v.eps[oldName] = append(v.eps[oldName], tid)
				}
				delete(k.svcs, oldName)
				delete(k.svcName, id)
				v.eps[oldName] = append(v.eps[oldName], "")
			}
			if s == nil {
				continue
			}
			name := s.Spec.Name
			tbl := k.svcs[name]
			if tbl == nil {
				tbl = &svcTable{head: header(s), eps: map[string]api.Endpoint{}}
				k.svcs[name], k.svcName[id] = tbl, name
				v.eps[name] = append(v.eps[name], "")
				for _, t := range snap.TasksByService(id) {
					tasks[t.ID] = true
				}
			} else if h := header(s); !sameHeader(h, tbl.head) {
				tbl.head = h
				v.eps[name] = append(v.eps[name], "")
			}
		}
	}
	for id := range tasks {
		t := snap.Task(id)
		k.stepTask(id, t, v)
	}
	k.index, k.snap = snap.Index(), snap
	k.publish(v)
}

func (k *tableKeeper) stepTask(id string, t *api.Task, v *tableVersion) {
	ep, name, serves := k.endpointOf(t)
	if cur, had := k.epSvc[id]; had && (!serves || cur != name) {
		delete(k.svcs[cur].eps, id)
		delete(k.epSvc, id)
		v.eps[cur] = append(v.eps[cur], id)
	}
	if serves {
		tbl := k.svcs[name]
		if old, ok := tbl.eps[id]; !ok || !sameEndpoint(old, ep) {
			tbl.eps[id] = ep
			k.epSvc[id] = name
			v.eps[name] = append(v.eps[name], id)
		}
	}
	m, old := markOf(t), k.marks[id]
	if t == nil {
		delete(k.marks, id)
	} else {
		k.marks[id] = m
	}
	if m.node != old.node || m.desired != old.desired || m.listed && !old.listed {
		for _, n := range []string{m.node, old.node} {
			if n != "" {
				v.urgent[n] = true
			}
		}
	}
}

// publish makes v the current version and wakes the sessions it concerns.
func (k *tableKeeper) publish(v *tableVersion) {
	k.versions = append(k.versions, v)
	k.held += len(v.nodes) + len(v.urgent) + 1
	for _, ids := range v.eps {
		k.held += len(ids)
	}
	for len(k.versions) > 1 && (len(k.versions) > keepVersions || k.held > keepIDs) {
		old := k.versions[0]
		k.held -= len(old.nodes) + len(old.urgent) + 1
		for _, ids := range old.eps {
			k.held -= len(ids)
		}
		k.versions[0] = nil
		k.versions = k.versions[1:]
	}
	k.full, k.deltas = nil, map[uint64]*Tables{}
	if v.all {
		for n, ch := range k.waiters {
			close(ch)
			delete(k.waiters, n)
		}
	} else {
		for n := range v.urgent {
			if ch, ok := k.waiters[n]; ok {
				close(ch)
				delete(k.waiters, n)
			}
		}
		for n := range v.nodes {
			if ch, ok := k.waiters[n]; ok {
				close(ch)
				delete(k.waiters, n)
			}
		}
	}
	if len(v.eps) > 0 || len(v.nodes) > 0 || v.all {
		close(k.global)
		k.global = make(chan struct{})
	}
}

// find is the position of the version at index, or -1.
func (k *tableKeeper) find(index uint64) int {
	i := sort.Search(len(k.versions), func(i int) bool { return k.versions[i].index >= index })
	if i < len(k.versions) && k.versions[i].index == index {
		return i
	}
	return -1
}

// pending says, for a session of node at since: whether since is a version the
// keeper still knows (if not, the session is sent everything at once); whether
// something the node must act on changed since (its tasks, its record, the
// cluster's trust); whether the tables changed since. With it come the channels
// closed when that may change: urgent for the node, global for the tables.
func (k *tableKeeper) pending(node string, since uint64) (known, urgent, global bool, urgentCh, globalCh <-chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.find(since)
	if i < 0 {
		return false, false, false, nil, nil
	}
	for _, v := range k.versions[i+1:] {
		if v.all || v.urgent[node] || v.nodes[node] {
			urgent = true
		}
		if len(v.eps) > 0 || len(v.nodes) > 0 {
			global = true
		}
	}
	ch, ok := k.waiters[node]
	if !ok {
		ch = make(chan struct{})
		k.waiters[node] = ch
	}
	return true, urgent, global, ch, k.global
}

// answer is the current version's snapshot with the tables for a session at
// since: what changed since then, or (delta false) everything.
func (k *tableKeeper) answer(since uint64) (snap Snapshot, tables *Tables, delta bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.find(since)
	if since == 0 || i < 0 {
		if k.full == nil {
			k.full = k.fullTables()
		}
		return k.snap, k.full, false
	}
	t, ok := k.deltas[since]
	if !ok {
		t = k.deltaTables(k.versions[i+1:])
		k.deltas[since] = t
	}
	return k.snap, t, true
}

func (k *tableKeeper) fullTables() *Tables {
	t := &Tables{Endpoints: []api.ServiceEndpoints{}, Nodes: []api.Node{}}
	for _, name := range sortedKeys(k.svcs) {
		tbl := k.svcs[name]
		se := tbl.head
		se.Tasks = make([]api.Endpoint, 0, len(tbl.eps))
		for _, id := range sortedKeys(tbl.eps) {
			se.Tasks = append(se.Tasks, tbl.eps[id])
		}
		t.Endpoints = append(t.Endpoints, se)
	}
	for _, id := range sortedKeys(k.nodes) {
		t.Nodes = append(t.Nodes, *k.nodes[id])
	}
	return t
}

func (k *tableKeeper) deltaTables(vs []*tableVersion) *Tables {
	eps := map[string]map[string]bool{}
	nodes := map[string]bool{}
	for _, v := range vs {
		for name, ids := range v.eps {
			if eps[name] == nil {
				eps[name] = map[string]bool{}
			}
			for _, id := range ids {
				if id != "" {
					eps[name][id] = true
				}
			}
		}
		for n := range v.nodes {
			nodes[n] = true
		}
	}
	t := &Tables{}
	for _, name := range sortedKeys(eps) {
		tbl := k.svcs[name]
		if tbl == nil {
			t.EndpointsGone = append(t.EndpointsGone, name)
			continue
		}
		se := tbl.head
		se.Tasks = []api.Endpoint{}
		for _, id := range sortedKeys(eps[name]) {
			if ep, ok := tbl.eps[id]; ok {
				se.Tasks = append(se.Tasks, ep)
			} else {
				se.Gone = append(se.Gone, id)
			}
		}
		t.Endpoints = append(t.Endpoints, se)
	}
	for _, id := range sortedKeys(nodes) {
		if n := k.nodes[id]; n != nil {
			t.Nodes = append(t.Nodes, *n)
		} else {
			t.NodesGone = append(t.NodesGone, id)
		}
	}
	return t
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// tablesJSON is the tables' part of a session answer on the wire: the members
// of api.Assignments they fill, by the same names, endpoints as rows.
type tablesJSON struct {
	Rows          []api.ServiceRows `json:"rows,omitempty"`
	EndpointsGone []string          `json:"endpoints_gone,omitempty"`
	Nodes         []api.Node        `json:"nodes,omitempty"`
	NodesGone     []string          `json:"nodes_gone,omitempty"`
}

// JSON is the tables as members of a JSON object (no braces; empty when there
// is nothing), encoded once however many sessions are sent them.
func (t *Tables) JSON() []byte {
	t.once.Do(func() {
		if t.empty() {
			return
		}
		rows := make([]api.ServiceRows, 0, len(t.Endpoints))
		for _, se := range t.Endpoints {
			sr := api.ServiceRows{Service: se.Service, VIP: se.VIP, EndpointMode: se.EndpointMode, Ports: se.Ports, Gone: se.Gone}
			for _, e := range se.Tasks {
				sr.Rows = append(sr.Rows, api.RowOf(e))
			}
			rows = append(rows, sr)
		}
		b, err := json.Marshal(tablesJSON{rows, t.EndpointsGone, t.Nodes, t.NodesGone})
		if err != nil {
			panic(fmt.Sprintf("dispatcher: encode tables: %v", err)) // plain data: a bug
		}
		t.json = b[1 : len(b)-1]
	})
	return t.json
}
