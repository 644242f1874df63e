package dispatcher

import (
	"context"
	"fmt"
	"strings"
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
	ops, updates, _ := s.orch.plan(s.store.Snapshot(), s.now)
	changed := s.apply(ops)
	for _, u := range updates {
		if s.store.ApplyUpdateOp(context.Background(), u) == nil {
			changed = true
		}
	}
	return changed
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
// nothing and the orchestrator has no timer left; it fails if that takes more than
// rounds. A round with nothing to do jumps the clock to the orchestrator's timer.
func (s *sim) converge(t tb, rounds int) {
	for range rounds {
		s.now = s.now.Add(time.Second)
		changed := s.orchestrate()
		changed = s.schedule() || changed
		changed = s.store.workerStep(s.now) || changed
		changed = s.store.healthStep(s.now, nil) || changed
		if !changed {
			_, _, next := s.orch.plan(s.store.Snapshot(), s.now)
			if next.IsZero() {
				return
			}
			s.now = next
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
		svc := mkService("web", rapid.Uint64Range(0, 10).Draw(rt, "replicas"), mode, func(s *api.Service) { s.Spec.Normalize() })
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
				replicas := rapid.Uint64Range(0, 10).Draw(rt, "scale")
				update := rapid.Bool().Draw(rt, "update")
				cfg := randomUpdateConfig(rt, api.FailureContinue)
				s.store.updateService("web", func(spec *api.ServiceSpec) {
					if !isGlobal {
						spec.Replicas = replicas
					}
					if update {
						spec.Image = fmt.Sprintf("img:%d", i)
						spec.Update = &cfg
					}
				}, s.now)
			}
		}
		s.converge(rt, 400)
		snap := s.store.Snapshot()
		svc = snap.Services()[0]
		if isGlobal {
			checkConvergedGlobal(rt, snap, svc)
		} else {
			checkConverged(rt, snap, svc)
		}
		// The update completes, unless a task of it cannot be placed (it then
		// holds the update, as in Docker, rather than let it take down every slot).
		if st := svc.UpdateStatus; st != nil && st.State != api.UpdateCompleted && !anyPending(snap) && !outdatedOnPaused(snap, svc) {
			rt.Fatalf("converged with the update %s: %s", st.State, st.Message)
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
		if tk.Slot < 1 || tk.Slot > svc.Spec.Replicas {
			t.Fatalf("task %s in slot %d, want 1..%d", tk.ID, tk.Slot, svc.Spec.Replicas)
		}
		if !api.SameTaskSpec(tk.Spec, svc.Spec) {
			// Start-first keeps the old task serving while the new one of its slot
			// cannot be placed; nothing else runs an old spec once converged.
			if !keptFor(snap, tk, svc) || canTake && pendingInSlot(snap, tk) {
				t.Fatalf("task %s runs spec version %d (%s), not the service's %d (%s)\n%s", tk.ID, tk.SpecVersion, tk.Spec.Image, svc.SpecVersion, svc.Spec.Image, dump(snap))
			}
			if pendingInSlot(snap, tk) {
				continue // the slot is counted by its new task
			}
		}
		if slots[tk.Slot] != nil {
			t.Fatalf("slot %d has two live tasks: %s and %s", tk.Slot, slots[tk.Slot].ID, tk.ID)
		}
		slots[tk.Slot] = tk
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
		if spec := withoutPin(tk.Spec); !api.SameTaskSpec(spec, svc.Spec) {
			n := snap.Node(pinnedNode(tk))
			// A paused node keeps what it runs, even through an update; start-first
			// keeps the old task while the new one cannot be placed.
			if !(n != nil && n.Availability == api.AvailabilityPause) && !keptFor(snap, tk, svc) {
				t.Fatalf("task %s runs spec version %d (%s), not the service's %d (%s)\n%s", tk.ID, tk.SpecVersion, tk.Spec.Image, svc.SpecVersion, svc.Spec.Image, dump(snap))
			}
			if keptFor(snap, tk, svc) {
				continue
			}
		}
		pin := pinnedNode(tk)
		if perNode[pin] != nil {
			t.Fatalf("node %s has two live tasks\n%s", pin, dump(snap))
		}
		perNode[pin] = tk
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

// withoutPin is a global task's spec without the node.id constraint create adds.
func withoutPin(spec api.ServiceSpec) api.ServiceSpec {
	if n := len(spec.Constraints); n > 0 && strings.HasPrefix(spec.Constraints[n-1], "node.id==") {
		spec.Constraints = spec.Constraints[:n-1]
	}
	return spec
}

// randomUpdateConfig draws update settings with the given failure action.
func randomUpdateConfig(rt *rapid.T, action api.FailureAction) api.UpdateConfig {
	return api.UpdateConfig{
		Parallelism:   rapid.Int64Range(0, 3).Draw(rt, "parallelism"),
		Delay:         time.Duration(rapid.IntRange(0, 3).Draw(rt, "delay")) * time.Second,
		Monitor:       time.Duration(rapid.IntRange(0, 5).Draw(rt, "monitor")) * time.Second,
		FailureAction: action,
		Order:         rapid.SampledFrom([]api.UpdateOrder{api.OrderStopFirst, api.OrderStartFirst}).Draw(rt, "order"),
	}
}

func anyPending(snap Snapshot) bool {
	for _, t := range snap.Tasks() {
		if t.DesiredState <= api.TaskRunning && t.Status.State <= api.TaskPending {
			return true
		}
	}
	return false
}

// keptFor: old is a running task of an older spec that an unfinished update may
// leave: its slot has a pending task of the current spec (start-first keeps it
// serving meanwhile), or the update is held by a task no node can take.
func keptFor(snap Snapshot, old *api.Task, svc *api.Service) bool {
	if old.Status.State != api.TaskRunning || svc.Spec.Update == nil {
		return false
	}
	if svc.UpdateStatus != nil && svc.UpdateStatus.State.Active() && anyPending(snap) {
		return true // a task that cannot be placed holds the update, as in Docker
	}
	if svc.Spec.Update.Order != api.OrderStartFirst {
		return false
	}
	for _, t := range snap.TasksByService(svc.ID) {
		if t.Slot == old.Slot && (svc.Spec.Mode != api.ModeGlobal || pinnedNode(t) == pinnedNode(old)) && t != old && t.DesiredState == api.TaskRunning && t.Status.State == api.TaskPending && api.SameTaskSpec(withoutPin(t.Spec), svc.Spec) {
			return true
		}
	}
	return false
}

// dump lists a snapshot's services and tasks for a failure message.
func dump(snap Snapshot) string {
	var b strings.Builder
	for _, svc := range snap.Services() {
		fmt.Fprintf(&b, "service %s v%d %s update=%+v\n", svc.ID, svc.SpecVersion, svc.Spec.Image, svc.UpdateStatus)
	}
	for _, n := range snap.Nodes() {
		fmt.Fprintf(&b, "node %s %s/%s\n", n.ID, n.Status, n.Availability)
	}
	for _, t := range snap.Tasks() {
		fmt.Fprintf(&b, "task %s slot=%d node=%s v%d %s desired=%s state=%s health=%s %q\n", t.ID, t.Slot, t.NodeID, t.SpecVersion, t.Spec.Image,
			t.DesiredState, t.Status.State, t.Status.Health, t.Status.Message)
	}
	return b.String()
}

// pendingInSlot: another task of old's slot waits for a node.
func pendingInSlot(snap Snapshot, old *api.Task) bool {
	for _, t := range snap.TasksByService(old.ServiceID) {
		if t != old && t.Slot == old.Slot && t.DesiredState == api.TaskRunning && t.Status.State == api.TaskPending {
			return true
		}
	}
	return false
}

// outdatedOnPaused: a paused node still runs a task of an older spec (it takes
// nothing new, so the update waits for it).
func outdatedOnPaused(snap Snapshot, svc *api.Service) bool {
	for _, t := range snap.TasksByService(svc.ID) {
		if n := snap.Node(t.NodeID); n != nil && n.Availability == api.AvailabilityPause && t.DesiredState == api.TaskRunning &&
			!t.Status.State.Terminal() && !api.SameTaskSpec(withoutPin(t.Spec), svc.Spec) {
			return true
		}
	}
	return false
}
