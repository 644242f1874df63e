package dispatcher

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// memStore is the in-memory fake of Store. applyOp mirrors, op for op, the semantics
// written down in DESIGN.md that the raftstore FSM implements.
type memStore struct {
	mu       sync.Mutex
	index    uint64
	nodes    map[string]*api.Node
	services map[string]*api.Service
	tasks    map[string]*api.Task
	watch    chan struct{}
	batches  int // ApplyTaskOps calls
	updates  int // ApplyUpdateOp calls that changed a service
	applyErr error
}

func newMemStore() *memStore {
	return &memStore{
		index:    1,
		nodes:    map[string]*api.Node{},
		services: map[string]*api.Service{},
		tasks:    map[string]*api.Task{},
		watch:    make(chan struct{}),
	}
}

// changed bumps the index and wakes watchers; callers hold mu.
func (s *memStore) changed() {
	s.index++
	close(s.watch)
	s.watch = make(chan struct{})
}

func (s *memStore) Watch() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watch
}

func (s *memStore) ApplyTaskOps(_ context.Context, ops []api.TaskOp) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applyErr != nil {
		return s.applyErr
	}
	// Like raftstore, every entry bumps the index and wakes watchers, even one whose
	// ops were all no-ops: a loop that proposes no-ops then shows up as a write storm.
	applyOps(s.tasks, ops, s.index+1)
	s.batches++
	s.changed()
	return nil
}

// ApplyUpdateOp applies a rolling-update decision with the FSM's own rules
// (api.ApplyUpdateOp); a refusal changes nothing and wakes nobody, as in raftstore.
func (s *memStore) ApplyUpdateOp(_ context.Context, op api.UpdateOp) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applyErr != nil {
		return s.applyErr
	}
	svc, err := api.ApplyUpdateOp(s.services[op.ServiceID], op)
	if err != nil {
		return err
	}
	s.services[svc.ID] = svc
	s.updates++
	s.changed()
	return nil
}

// updateService changes a service as an operator's update would (Service.WithSpec).
func (s *memStore) updateService(id string, f func(spec *api.ServiceSpec), at time.Time) *api.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.services[id]
	spec := old.Spec.Clone()
	f(&spec)
	spec.Normalize()
	svc, err := old.WithSpec(spec, at)
	if err != nil {
		panic(err)
	}
	s.services[id] = svc
	s.changed()
	return svc
}

// applyOps applies one batch as one entry at index; it reports whether anything changed.
func applyOps(tasks map[string]*api.Task, ops []api.TaskOp, index uint64) bool {
	changed := false
	for _, op := range ops {
		if applyOp(tasks, op, index) {
			changed = true
		}
	}
	return changed
}

// applyOp applies one op with the FSM's own rules (api.ApplyTaskOp).
func applyOp(tasks map[string]*api.Task, op api.TaskOp, index uint64) bool {
	id := op.TaskID
	if op.Kind == api.TaskOpCreate && op.Task != nil {
		id = op.Task.ID
	}
	next, res, err := api.ApplyTaskOp(tasks[id], op, index)
	if err != nil {
		// The FSM fails the whole batch here; the loops never propose it.
		panic(err)
	}
	switch res {
	case api.OpChanged:
		tasks[id] = next
	case api.OpDeleted:
		delete(tasks, id)
	}
	return res != api.OpSkipped
}

// Test helpers that stand in for the API (nodes, services) and for workers.

func (s *memStore) putNode(n *api.Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *n
	c.Labels = maps.Clone(n.Labels)
	s.nodes[n.ID] = &c
	s.changed()
}

func (s *memStore) updateNode(id string, f func(n *api.Node)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *s.nodes[id]
	f(&c)
	s.nodes[id] = &c
	s.changed()
}

func (s *memStore) putService(svc *api.Service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *svc
	s.services[svc.ID] = &c
	s.changed()
}

func (s *memStore) removeService(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.services, id)
	s.changed()
}

// workerStep plays every live worker once: placed tasks meant to run start, and
// tasks asked to stop report shut down. Workers on down nodes say nothing. It reports
// whether it changed anything.
func (s *memStore) workerStep(at time.Time) bool {
	var ops []api.TaskOp
	s.mu.Lock()
	for _, t := range sortedTasks(s.tasks) {
		n := s.nodes[t.NodeID]
		if n == nil || n.Status != api.NodeReady || t.Status.State < api.TaskAssigned || t.Status.State.Terminal() {
			continue
		}
		switch {
		case t.DesiredState > api.TaskRunning:
			ops = append(ops, api.TaskOp{Kind: api.TaskOpStatus, TaskID: t.ID, Status: api.TaskStatus{State: api.TaskShutdown, Message: "shut down", Timestamp: at}})
		case t.Status.State < api.TaskRunning:
			st := api.TaskStatus{State: api.TaskRunning, Message: "started", Timestamp: at}
			if t.Spec.Health != nil {
				st.Health = api.HealthStarting // healthStep decides when it passes
			}
			ops = append(ops, api.TaskOp{Kind: api.TaskOpStatus, TaskID: t.ID, Status: st})
		}
	}
	s.mu.Unlock()
	if len(ops) == 0 {
		return false
	}
	s.ApplyTaskOps(context.Background(), ops)
	return true
}

// healthStep passes the health check of every running task still starting that
// pass picks (nil: all); it reports whether it changed anything.
func (s *memStore) healthStep(at time.Time, pass func(*api.Task) bool) bool {
	var ops []api.TaskOp
	s.mu.Lock()
	for _, t := range sortedTasks(s.tasks) {
		if t.Status.State == api.TaskRunning && t.Status.Health == api.HealthStarting && (pass == nil || pass(t)) {
			st := t.Status
			st.Health, st.Timestamp = api.HealthHealthy, at
			ops = append(ops, api.TaskOp{Kind: api.TaskOpStatus, TaskID: t.ID, NodeID: t.NodeID, Status: st})
		}
	}
	s.mu.Unlock()
	if len(ops) == 0 {
		return false
	}
	s.ApplyTaskOps(context.Background(), ops)
	return true
}

// reportStatus reports a task state as its worker would.
func (s *memStore) reportStatus(id string, st api.TaskState, at time.Time) {
	s.ApplyTaskOps(context.Background(), []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: id, Status: api.TaskStatus{State: st, Timestamp: at}}})
}

func sortedTasks(m map[string]*api.Task) []*api.Task {
	ts := slices.Collect(maps.Values(m))
	slices.SortFunc(ts, func(a, b *api.Task) int { return cmp.Compare(a.ID, b.ID) })
	return ts
}

func (s *memStore) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Objects are replaced, never changed in place, so sharing pointers is safe.
	snap := &memSnapshot{index: s.index, byService: map[string][]*api.Task{}, byNode: map[string][]*api.Task{}, byID: map[string]*api.Task{}}
	snap.nodes = slices.Collect(maps.Values(s.nodes))
	slices.SortFunc(snap.nodes, func(a, b *api.Node) int { return cmp.Compare(a.ID, b.ID) })
	snap.services = slices.Collect(maps.Values(s.services))
	slices.SortFunc(snap.services, func(a, b *api.Service) int { return cmp.Compare(a.ID, b.ID) })
	snap.tasks = sortedTasks(s.tasks)
	for _, t := range snap.tasks {
		snap.byID[t.ID] = t
		snap.byService[t.ServiceID] = append(snap.byService[t.ServiceID], t)
		if t.NodeID != "" {
			snap.byNode[t.NodeID] = append(snap.byNode[t.NodeID], t)
		}
	}
	return snap
}

type memSnapshot struct {
	index     uint64
	nodes     []*api.Node
	services  []*api.Service
	tasks     []*api.Task
	byService map[string][]*api.Task
	byNode    map[string][]*api.Task
	byID      map[string]*api.Task
}

func (s *memSnapshot) Index() uint64      { return s.index }
func (s *memSnapshot) Nodes() []*api.Node { return s.nodes }
func (s *memSnapshot) Node(id string) *api.Node {
	for _, n := range s.nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}
func (s *memSnapshot) Services() []*api.Service              { return s.services }
func (s *memSnapshot) Tasks() []*api.Task                    { return s.tasks }
func (s *memSnapshot) Task(id string) *api.Task              { return s.byID[id] }
func (s *memSnapshot) TasksByService(id string) []*api.Task  { return s.byService[id] }
func (s *memSnapshot) TasksByNode(nodeID string) []*api.Task { return s.byNode[nodeID] }
