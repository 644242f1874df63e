package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"pgregory.net/rapid"
)

// An update scenario: nodes all ready, a replicated service converged at one
// image, then a new image rolled out while the loops, the workers and the health
// checks interleave at random.
type updateSim struct {
	*sim
	svcID string
}

func newUpdateSim(t tb, rt *rapid.T, replicas uint64, cfg api.UpdateConfig, withHealth bool) *updateSim {
	s := &updateSim{sim: newSim(), svcID: "web"}
	for i := range rapid.IntRange(1, 4).Draw(rt, "nodes") {
		s.store.putNode(mkNode(fmt.Sprint(i)))
	}
	svc := mkService("web", replicas, func(sv *api.Service) {
		sv.Spec.Update = &cfg
		if withHealth {
			sv.Spec.Ports = []api.PortConfig{{TargetPort: 80, Protocol: "tcp"}}
			sv.Spec.Health = &api.HealthCheck{HTTPPath: "/health"}
		}
		sv.Spec.Normalize()
	})
	s.store.putService(svc)
	s.converge(t, 200)
	return s
}

func (s *updateSim) service() *api.Service { return s.store.Snapshot().Services()[0] }

// orchestrateChecked is one orchestrator pass that also checks the loop's first
// rule: on the result of its own writes, a pass has nothing to add (but after a
// rollback, which changes the spec).
func (s *updateSim) orchestrateChecked(t tb) {
	ops, updates, _ := s.orch.plan(s.store.Snapshot(), s.now)
	s.apply(ops)
	rollback := false
	for _, u := range updates {
		if err := s.store.ApplyUpdateOp(context.Background(), u); err != nil {
			t.Fatalf("update op %+v refused: %v", u, err)
		}
		rollback = rollback || u.Kind == api.UpdateOpRollback
	}
	if again, againUp, _ := s.orch.plan(s.store.Snapshot(), s.now); !rollback && (len(again) > 0 || len(againUp) > 0) {
		t.Fatalf("a second pass on the result of the first wrote %v %+v\n%s", opStrings(again), againUp, dump(s.store.Snapshot()))
	}
}

// slotsUpdating counts the slots between "new task exists" and "the new task
// serves and the old one is gone".
func slotsUpdating(snap Snapshot, svc *api.Service) int {
	type slot struct{ newest, oldLive *api.Task }
	slots := map[uint64]*slot{}
	for _, t := range snap.TasksByService(svc.ID) {
		s := slots[t.Slot]
		if s == nil {
			s = &slot{}
			slots[t.Slot] = s
		}
		switch {
		case api.SameTaskSpec(t.Spec, svc.Spec):
			if t.DesiredState <= api.TaskRunning && (s.newest == nil || newer(t, s.newest)) {
				s.newest = t
			}
		case !t.Status.State.Terminal():
			s.oldLive = t
		}
	}
	n := 0
	for _, s := range slots {
		if s.newest != nil && (!TaskServes(s.newest) || s.oldLive != nil) {
			n++
		}
	}
	return n
}

func servingSlots(snap Snapshot, svcID string) int {
	slots := map[uint64]bool{}
	for _, t := range snap.TasksByService(svcID) {
		if TaskServes(t) {
			slots[t.Slot] = true
		}
	}
	return len(slots)
}

// TestPropertyRollingUpdate: however the loops, workers and health checks
// interleave, never more than Parallelism slots are updating at once, start-first
// never has fewer than Replicas slots serving, no pass writes on the result of its
// own writes, and the update ends completed with every slot at the new spec.
func TestPropertyRollingUpdate(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		replicas := rapid.Uint64Range(1, 8).Draw(rt, "replicas")
		cfg := randomUpdateConfig(rt, api.FailurePause)
		s := newUpdateSim(rt, rt, replicas, cfg, rapid.Bool().Draw(rt, "health"))
		svc := s.store.updateService(s.svcID, func(spec *api.ServiceSpec) { spec.Image = "img:v2" }, s.now)
		check := func() {
			snap := s.store.Snapshot()
			if n := slotsUpdating(snap, svc); cfg.Parallelism > 0 && n > int(cfg.Parallelism) {
				rt.Fatalf("%d slots updating at once, parallelism %d\n%s", n, cfg.Parallelism, dump(snap))
			}
			if n := servingSlots(snap, svc.ID); cfg.Order == api.OrderStartFirst && uint64(n) < replicas {
				rt.Fatalf("start-first: %d of %d slots serving\n%s", n, replicas, dump(snap))
			}
		}
		for range rapid.IntRange(0, 80).Draw(rt, "steps") {
			switch rapid.IntRange(0, 4).Draw(rt, "event") {
			case 0:
				s.orchestrateChecked(rt)
			case 1:
				s.schedule()
			case 2:
				s.store.workerStep(s.now)
			case 3:
				s.store.healthStep(s.now, func(*api.Task) bool { return rapid.Bool().Draw(rt, "passes") })
			case 4:
				s.now = s.now.Add(time.Duration(rapid.IntRange(1, 3000).Draw(rt, "ms")) * time.Millisecond)
			}
			check()
		}
		s.converge(rt, 400)
		check()
		snap := s.store.Snapshot()
		got := s.service()
		if got.UpdateStatus == nil || got.UpdateStatus.State != api.UpdateCompleted {
			rt.Fatalf("update ended %+v\n%s", got.UpdateStatus, dump(snap))
		}
		checkConverged(rt, snap, got)
	})
}

// TestPropertyFailedUpdate: an update whose new tasks fail (crash, or turn
// unhealthy) is paused, or rolled back to the old spec, as its failure action says;
// a rollback ends with every slot at the old spec and the state saying so.
func TestPropertyFailedUpdate(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		replicas := rapid.Uint64Range(1, 6).Draw(rt, "replicas")
		action := rapid.SampledFrom([]api.FailureAction{api.FailurePause, api.FailureRollback}).Draw(rt, "action")
		cfg := randomUpdateConfig(rt, action)
		cfg.Monitor = 10 * time.Second
		s := newUpdateSim(rt, rt, replicas, cfg, true)
		old := s.service().Spec
		s.store.updateService(s.svcID, func(spec *api.ServiceSpec) { spec.Image = "img:bad"; spec.Rollback = &cfg }, s.now)
		unhealthy := rapid.Bool().Draw(rt, "unhealthy")
		// Workers: tasks of the bad image fail their check (or crash) once running.
		failBad := func() {
			var ops []api.TaskOp
			for _, tk := range s.store.Snapshot().Tasks() {
				if tk.Spec.Image != "img:bad" || tk.Status.State != api.TaskRunning || tk.Status.Health == api.HealthUnhealthy {
					continue
				}
				st := api.TaskStatus{State: api.TaskFailed, Err: "exit status 1", Timestamp: s.now}
				if unhealthy {
					st = tk.Status
					st.Health, st.Timestamp = api.HealthUnhealthy, s.now
				}
				ops = append(ops, api.TaskOp{Kind: api.TaskOpStatus, TaskID: tk.ID, NodeID: tk.NodeID, Status: st})
			}
			s.apply(ops)
		}
		for range 300 {
			s.now = s.now.Add(time.Second)
			s.orchestrateChecked(rt)
			s.schedule()
			s.store.workerStep(s.now)
			failBad()
			s.store.healthStep(s.now, func(tk *api.Task) bool { return tk.Spec.Image != "img:bad" })
			if st := s.service().UpdateStatus; st.State == api.UpdatePaused || st.State == api.UpdateRollbackCompleted {
				break
			}
		}
		got := s.service()
		switch action {
		case api.FailurePause:
			if got.UpdateStatus.State != api.UpdatePaused || got.Spec.Image != "img:bad" {
				rt.Fatalf("want paused at the bad spec, got %+v %s", got.UpdateStatus, got.Spec.Image)
			}
		case api.FailureRollback:
			if got.UpdateStatus.State != api.UpdateRollbackCompleted || !api.SameTaskSpec(got.Spec, old) {
				rt.Fatalf("want rolled back, got %+v %s\n%s", got.UpdateStatus, got.Spec.Image, dump(s.store.Snapshot()))
			}
			checkConverged(rt, s.store.Snapshot(), got)
		}
	})
}

// TestUpdateCarriesOnAfterLeaderChange: halfway through an update the leader is
// gone; a new one, with a fresh orchestrator and the state rebuilt from a
// snapshot of the store (as a follower's FSM holds it), finishes the update under
// the same settings.
func TestUpdateCarriesOnAfterLeaderChange(t *testing.T) {
	cfg := api.UpdateConfig{Parallelism: 2, FailureAction: api.FailurePause, Monitor: 2 * time.Second, Order: api.OrderStopFirst}
	s := &updateSim{sim: newSim(), svcID: "web"}
	for i := range 3 {
		s.store.putNode(mkNode(fmt.Sprint(i)))
	}
	svc := mkService("web", 6, func(sv *api.Service) { sv.Spec.Update = &cfg; sv.Spec.Normalize() })
	s.store.putService(svc)
	s.converge(t, 100)
	s.store.updateService("web", func(spec *api.ServiceSpec) { spec.Image = "img:v2" }, s.now)
	atNew := func(snap Snapshot) int {
		n := 0
		for _, tk := range snap.Tasks() {
			if tk.Spec.Image == "img:v2" && TaskServes(tk) {
				n++
			}
		}
		return n
	}
	for atNew(s.store.Snapshot()) < 2 {
		s.now = s.now.Add(time.Second)
		s.orchestrate()
		s.schedule()
		s.store.workerStep(s.now)
	}
	// The old leader is gone mid-update: rebuild from a snapshot.
	next := &sim{store: restoreMemStore(t, s.store), now: s.now}
	clock := func() time.Time { return next.now }
	next.orch = NewOrchestrator(next.store, nil, clock)
	next.orch.NewID = ids("new")
	next.sched = NewScheduler(next.store, nil, clock)
	if n := atNew(next.store.Snapshot()); n < 2 || n == 6 {
		t.Fatalf("snapshot taken at %d of 6 updated, want mid-update", n)
	}
	maxUpdating := 0
	for range 100 {
		next.now = next.now.Add(time.Second)
		next.orchestrate()
		next.schedule()
		next.store.workerStep(next.now)
		maxUpdating = max(maxUpdating, slotsUpdating(next.store.Snapshot(), next.store.Snapshot().Services()[0]))
	}
	snap := next.store.Snapshot()
	got := snap.Services()[0]
	if got.UpdateStatus == nil || got.UpdateStatus.State != api.UpdateCompleted || atNew(snap) != 6 {
		t.Fatalf("after the leader change: %+v, %d of 6 at the new image\n%s", got.UpdateStatus, atNew(snap), dump(snap))
	}
	if maxUpdating > 2 {
		t.Fatalf("the new leader updated %d slots at once, parallelism 2", maxUpdating)
	}
	checkConverged(t, snap, got)
}

// restoreMemStore rebuilds a store from a JSON copy of another's content, as a
// manager's state is rebuilt from a Raft snapshot: nothing but the data survives.
func restoreMemStore(t *testing.T, from *memStore) *memStore {
	t.Helper()
	from.mu.Lock()
	b, err := json.Marshal(struct {
		Nodes    map[string]*api.Node
		Services map[string]*api.Service
		Tasks    map[string]*api.Task
	}{from.nodes, from.services, from.tasks})
	from.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	to := newMemStore()
	var data struct {
		Nodes    map[string]*api.Node
		Services map[string]*api.Service
		Tasks    map[string]*api.Task
	}
	if err := json.Unmarshal(b, &data); err != nil {
		t.Fatal(err)
	}
	to.nodes, to.services, to.tasks = data.Nodes, data.Services, data.Tasks
	return to
}
