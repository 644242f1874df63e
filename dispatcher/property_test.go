package dispatcher

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"pgregory.net/rapid"
)

// tb is what the helpers need of *testing.T and *rapid.T alike.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

// sim drives the loops' passes by hand on the fake store, with a clock that only
// moves when the test says so.
type sim struct {
	store *memStore
	orch  *Orchestrator
	sched *Scheduler
	now   time.Time
}

func newSim() *sim {
	s := &sim{store: newMemStore(), now: t0}
	clock := func() time.Time { return s.now }
	s.orch = NewOrchestrator(s.store, nil, clock)
	s.orch.NewID = ids("t")
	s.sched = NewScheduler(s.store, nil, clock)
	return s
}

func (s *sim) orchestrate() bool {
	ops, _ := s.orch.plan(s.store.Snapshot(), s.now)
	return s.apply(ops)
}

func (s *sim) schedule() bool { return s.apply(s.sched.plan(s.store.Snapshot(), s.now)) }

func (s *sim) apply(ops []api.TaskOp) bool {
	if len(ops) == 0 {
		return false
	}
	before := s.store.Snapshot().Index()
	s.store.ApplyTaskOps(context.Background(), ops)
	return s.store.Snapshot().Index() != before
}

// converge runs orchestrator, scheduler and workers until a whole round changes
// nothing; it fails if that takes more than rounds.
func (s *sim) converge(t tb, rounds int) {
	for range rounds {
		s.now = s.now.Add(time.Second)
		changed := s.orchestrate()
		changed = s.schedule() || changed
		changed = s.store.workerStep(s.now) || changed
		if !changed {
			return
		}
	}
	t.Fatalf("no convergence after %d rounds", rounds)
}

func TestPropertyConverges(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := newSim()
		nNodes := rapid.IntRange(1, 6).Draw(rt, "nodes")
		for i := range nNodes {
			s.store.putNode(mkNode(fmt.Sprint(i), randomNodeState(rt, fmt.Sprintf("node%d", i))))
		}
		isGlobal := rapid.Bool().Draw(rt, "global")
		mode := func(svc *api.Service) {
			if isGlobal {
				global(svc)
			}
		}
		svc := mkService("web", rapid.Uint64Range(0, 10).Draw(rt, "replicas"), mode)
		s.store.putService(svc)

		// Interleave the loops with events: failures, node changes, scaling, updates.
		for i, n := 0, rapid.IntRange(0, 40).Draw(rt, "steps"); i < n; i++ {
			s.now = s.now.Add(time.Second)
			switch rapid.IntRange(0, 7).Draw(rt, "event") {
			case 0, 1:
				s.orchestrate()
			case 2, 3:
				s.schedule()
			case 4:
				s.store.workerStep(s.now)
			case 5:
				running := s.running()
				if len(running) > 0 {
					tk := rapid.SampledFrom(running).Draw(rt, "fail")
					s.store.reportStatus(tk.ID, rapid.SampledFrom([]api.TaskState{api.TaskFailed, api.TaskComplete, api.TaskShutdown}).Draw(rt, "how"), s.now)
				}
			case 6:
				id := fmt.Sprint(rapid.IntRange(0, nNodes-1).Draw(rt, "node"))
				s.store.updateNode(id, randomNodeState(rt, "change"))
			case 7:
				svc = mkService("web", rapid.Uint64Range(0, 10).Draw(rt, "scale"), mode, func(n *api.Service) { n.SpecVersion = svc.SpecVersion })
				if rapid.Bool().Draw(rt, "update") {
					svc.SpecVersion++
				}
				s.store.putService(svc)
			}
		}
		s.converge(rt, 200)
		if isGlobal {
			checkConvergedGlobal(rt, s.store.Snapshot(), svc)
		} else {
			checkConverged(rt, s.store.Snapshot(), svc)
		}
	})
}

func randomNodeState(rt *rapid.T, label string) func(*api.Node) {
	status := rapid.SampledFrom([]api.NodeStatus{api.NodeReady, api.NodeReady, api.NodeDown}).Draw(rt, label+"-status")
	avail := rapid.SampledFrom([]api.Availability{api.AvailabilityActive, api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain}).Draw(rt, label+"-availability")
	return func(n *api.Node) { n.Status, n.Availability = status, avail }
}

func (s *sim) running() []*api.Task {
	var out []*api.Task
	for _, t := range s.store.Snapshot().Tasks() {
		if t.Status.State == api.TaskRunning {
			out = append(out, t)
		}
	}
	return out
}

// checkConverged: exactly N tasks meant to run, in slots 1..N, each running on a
// ready node that is not drained — or, when no node can take new tasks, pending
// with a reason. Nothing else is left running, and history is bounded.
func checkConverged(t tb, snap Snapshot, svc *api.Service) {
	nodes := map[string]*api.Node{}
	canTake := false
	for _, n := range snap.Nodes() {
		nodes[n.ID] = n
		canTake = canTake || (n.Status == api.NodeReady && n.Availability == api.AvailabilityActive)
	}
	slots := map[uint64]*api.Task{}
	history := map[uint64]int{}
	for _, tk := range snap.Tasks() {
		st := tk.Status.State
		if st.Terminal() {
			history[tk.Slot]++
			continue
		}
		if tk.DesiredState > api.TaskRunning {
			t.Fatalf("task %s slot %d still %s though asked to stop", tk.ID, tk.Slot, st)
		}
		if slots[tk.Slot] != nil {
			t.Fatalf("slot %d has two live tasks: %s and %s", tk.Slot, slots[tk.Slot].ID, tk.ID)
		}
		slots[tk.Slot] = tk
		if tk.Slot < 1 || tk.Slot > svc.Spec.Replicas {
			t.Fatalf("task %s in slot %d, want 1..%d", tk.ID, tk.Slot, svc.Spec.Replicas)
		}
		if tk.SpecVersion != svc.SpecVersion {
			t.Fatalf("task %s at spec version %d, want %d", tk.ID, tk.SpecVersion, svc.SpecVersion)
		}
		switch st {
		case api.TaskRunning:
			n := nodes[tk.NodeID]
			if n.Status != api.NodeReady || n.Availability == api.AvailabilityDrain {
				t.Fatalf("task %s runs on node %s which is %s/%s", tk.ID, n.ID, n.Status, n.Availability)
			}
		case api.TaskPending:
			if canTake || tk.PendingReason == "" {
				t.Fatalf("task %s pending (%q) though a node can take it", tk.ID, tk.PendingReason)
			}
		default:
			t.Fatalf("task %s left in state %s", tk.ID, st)
		}
	}
	if uint64(len(slots)) != svc.Spec.Replicas {
		t.Fatalf("%d live tasks, want %d", len(slots), svc.Spec.Replicas)
	}
	for slot, n := range history {
		if n > HistoryPerSlot {
			t.Fatalf("slot %d keeps %d terminal tasks, want at most %d", slot, n, HistoryPerSlot)
		}
	}
}

// checkConvergedGlobal: one running task on every ready active node, none on a node
// that is down or drained, at most one live task per node (paused nodes keep theirs
// or have none), all at the current spec version.
func checkConvergedGlobal(t tb, snap Snapshot, svc *api.Service) {
	perNode := map[string]*api.Task{}
	for _, tk := range snap.Tasks() {
		if tk.Status.State.Terminal() {
			continue
		}
		if tk.DesiredState > api.TaskRunning {
			t.Fatalf("task %s still %s though asked to stop", tk.ID, tk.Status.State)
		}
		pin := pinnedNode(tk)
		if perNode[pin] != nil {
			t.Fatalf("node %s has two live tasks", pin)
		}
		perNode[pin] = tk
		if tk.SpecVersion != svc.SpecVersion {
			t.Fatalf("task %s at spec version %d, want %d", tk.ID, tk.SpecVersion, svc.SpecVersion)
		}
	}
	for _, n := range snap.Nodes() {
		tk := perNode[n.ID]
		delete(perNode, n.ID)
		switch {
		case n.Status != api.NodeReady || n.Availability == api.AvailabilityDrain:
			if tk != nil {
				t.Fatalf("node %s (%s/%s) has live task %s", n.ID, n.Status, n.Availability, tk.ID)
			}
		case n.Availability == api.AvailabilityActive:
			if tk == nil || tk.Status.State != api.TaskRunning || tk.NodeID != n.ID {
				t.Fatalf("active node %s has no running task: %+v", n.ID, tk)
			}
		default: // paused
			if tk != nil && tk.Status.State != api.TaskRunning && tk.Status.State != api.TaskPending {
				t.Fatalf("paused node %s has task %s in state %s", n.ID, tk.ID, tk.Status.State)
			}
		}
	}
	if len(perNode) != 0 {
		t.Fatalf("live tasks on unknown nodes: %v", perNode)
	}
}
