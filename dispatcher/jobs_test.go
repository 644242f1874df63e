package dispatcher

import (
	"fmt"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"pgregory.net/rapid"
)

// job makes a replicated job of n completions, at most mc at once (0: all).
func job(n, mc uint64, opts ...func(*api.Service)) *api.Service {
	s := mkService("j", n, func(s *api.Service) {
		s.Spec.Mode, s.Spec.MaxConcurrent, s.JobRun = api.ModeReplicatedJob, mc, 1
		s.Spec.RestartPolicy = api.RestartPolicy{Condition: api.RestartOnFailure}
	})
	for _, o := range opts {
		o(s)
	}
	return s
}

func globalJob(opts ...func(*api.Service)) *api.Service {
	s := mkService("g", 0, func(s *api.Service) {
		s.Spec.Mode, s.JobRun = api.ModeGlobalJob, 1
		s.Spec.RestartPolicy = api.RestartPolicy{Condition: api.RestartOnFailure}
	})
	for _, o := range opts {
		o(s)
	}
	return s
}

// rerun is update --force: a new spec version, so a new run of the job.
func rerun(s *api.Service) { s.SpecVersion++; s.Spec.ForceUpdate++; s.JobRun = s.SpecVersion }

// pinTo makes a global task bound to its node, as the orchestrator makes them.
func pinTo(t *api.Task) {
	t.Spec.Constraints = append(t.Spec.Constraints, "node.id=="+t.NodeID)
}

// fromRun makes a task of an earlier run of the job (spec version v).
func fromRun(v uint64) func(*api.Task) {
	return func(t *api.Task) { t.SpecVersion = v; t.Spec.ForceUpdate = v - 1 }
}

func TestReconcileJobs(t *testing.T) {
	ready := []*api.Node{mkNode("1"), mkNode("2"), mkNode("3")}
	tests := []struct {
		name  string
		svc   *api.Service
		nodes []*api.Node
		tasks func(svc *api.Service) []*api.Task
		want  []string
	}{
		{name: "a new job starts at most max-concurrent tasks, lowest slots first",
			svc: job(5, 2), nodes: ready, tasks: func(*api.Service) []*api.Task { return nil },
			want: []string{"create n1 slot=1", "create n2 slot=2"}},
		{name: "max-concurrent 0 starts every slot",
			svc: job(3, 0), nodes: ready, tasks: func(*api.Service) []*api.Task { return nil },
			want: []string{"create n1 slot=1", "create n2 slot=2", "create n3 slot=3"}},
		{name: "a completion frees a place for the next slot",
			svc: job(5, 2), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("a", s, 1, "1", api.TaskComplete), mkTask("b", s, 2, "2", api.TaskRunning)}
			},
			want: []string{"create n1 slot=3"}},
		{name: "at max-concurrent nothing starts",
			svc: job(5, 2), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("a", s, 1, "1", api.TaskRunning), mkTask("b", s, 2, "", api.TaskPending)}
			}},
		{name: "a finished job writes nothing",
			svc: job(2, 1), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("a", s, 1, "1", api.TaskComplete), mkTask("b", s, 2, "2", api.TaskComplete)}
			}},
		{name: "exit 0 is never restarted, even with restart condition any",
			svc: job(1, 1, restartPolicy(api.RestartPolicy{Condition: api.RestartAny})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("a", s, 1, "1", api.TaskComplete)} }},
		{name: "a failure is retried in its slot, before fresh slots",
			svc: job(4, 2), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("a", s, 1, "1", api.TaskFailed), mkTask("b", s, 2, "2", api.TaskRunning)}
			},
			want: []string{"desired a shutdown", "create n1 slot=1 attempt=1"}},
		{name: "a failure the policy gives up on frees its place",
			svc: job(3, 2, restartPolicy(api.RestartPolicy{Condition: api.RestartOnFailure, MaxAttempts: 1})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("a", s, 1, "1", api.TaskFailed, attempt(1)), mkTask("b", s, 2, "2", api.TaskRunning)}
			},
			want: []string{"create n1 slot=3"}},
		{name: "restart none leaves a failed slot failed",
			svc: job(1, 1, restartPolicy(api.RestartPolicy{Condition: api.RestartNone})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("a", s, 1, "1", api.TaskFailed)} }},
		{name: "a retry waits for a place too",
			svc: job(3, 1), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("a", s, 1, "1", api.TaskFailed), mkTask("b", s, 2, "2", api.TaskRunning)}
			}},
		{name: "a retry's backoff holds its place",
			svc: job(3, 2), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{
					mkTask("a", s, 1, "1", api.TaskFailed, func(t *api.Task) { t.CrashLoop = 3 }),
					mkTask("b", s, 2, "2", api.TaskRunning),
				}
			},
			want: []string{"desired a shutdown", "create n1 slot=1 attempt=1 held"}},
		{name: "a task on a node that went down is replaced at once",
			svc: job(2, 2), nodes: []*api.Node{mkNode("1", down), mkNode("2")},
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("a", s, 1, "1", api.TaskRunning), mkTask("b", s, 2, "2", api.TaskComplete)}
			},
			want: []string{"status a orphaned", "desired a shutdown", "create n1 slot=1"}},
		{name: "a task on a drained node moves",
			svc: job(1, 1), nodes: []*api.Node{mkNode("1", drained), mkNode("2")},
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("a", s, 1, "1", api.TaskRunning)} },
			want:  []string{"desired a shutdown", "create n1 slot=1"}},
		{name: "a completion ends the slot: a duplicate still running stops",
			svc: job(1, 1), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("a", s, 1, "1", api.TaskComplete, stopping), mkTask("b", s, 1, "2", api.TaskRunning, createdAt(time.Second))}
			},
			want: []string{"desired b shutdown"}},
		{name: "update --force runs the job again: the last run is history",
			svc: job(3, 2, rerun), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{
					mkTask("a", s, 1, "1", api.TaskComplete, fromRun(1)), mkTask("b", s, 2, "2", api.TaskComplete, fromRun(1)),
					mkTask("c", s, 3, "3", api.TaskRunning, fromRun(1)),
				}
			},
			want: []string{"desired a shutdown", "desired b shutdown", "desired c shutdown", "create n1 slot=1", "create n2 slot=2"}},
		{name: "the new run's completions count, not the last run's",
			svc: job(2, 2, rerun), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{
					mkTask("a", s, 1, "1", api.TaskComplete, fromRun(1), stopping), mkTask("b", s, 2, "2", api.TaskComplete, fromRun(1), stopping),
					mkTask("c", s, 1, "1", api.TaskComplete, createdAt(time.Second)),
				}
			},
			want: []string{"create n1 slot=2"}},
		{name: "scaling up keeps the run: only the slots added run",
			svc: job(4, 4), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("a", s, 1, "1", api.TaskComplete), mkTask("b", s, 2, "2", api.TaskComplete)}
			},
			want: []string{"create n1 slot=3", "create n2 slot=4"}},
		{name: "update --replicas or --max-concurrent goes on with the run",
			svc: job(4, 3, func(s *api.Service) { s.SpecVersion = 3 }), nodes: ready, // JobRun 1: the task spec never changed
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("a", s, 1, "1", api.TaskComplete, fromRun(1)), mkTask("b", s, 2, "2", api.TaskRunning, fromRun(2))}
			},
			want: []string{"create n1 slot=3", "create n2 slot=4"}},
		{name: "scaling down stops the slots above",
			svc: job(1, 1), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("a", s, 1, "1", api.TaskComplete), mkTask("b", s, 2, "2", api.TaskRunning)}
			},
			want: []string{"desired b shutdown"}},
		{name: "global job: one completion per eligible node",
			svc:   globalJob(func(s *api.Service) { s.Spec.Constraints = []string{"node.labels.zone!=x"} }),
			nodes: []*api.Node{mkNode("1"), mkNode("2"), mkNode("3", drained), mkNode("4", label("zone", "x")), mkNode("5", paused), mkNode("6")},
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{
					mkTask("g1", s, 0, "1", api.TaskComplete, pinTo),
					mkTask("g3", s, 0, "3", api.TaskRunning, pinTo),
					mkTask("g4", s, 0, "4", api.TaskComplete, pinTo), // done before the label came: kept as it is
					mkTask("g6", s, 0, "6", api.TaskRunning, pinTo),
				}
			},
			want: []string{"create n1 slot=0 node=2", "desired g3 shutdown"}},
		{name: "global job: a failure is retried on its node",
			svc: globalJob(), nodes: []*api.Node{mkNode("1")},
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("g1", s, 0, "1", api.TaskFailed, pinTo)} },
			want:  []string{"desired g1 shutdown", "create n1 slot=0 node=1 attempt=1"}},
		{name: "global job: a node that joins later runs it too",
			svc: globalJob(), nodes: []*api.Node{mkNode("1"), mkNode("7")},
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("g1", s, 0, "1", api.TaskComplete, pinTo)} },
			want:  []string{"create n1 slot=0 node=7"}},
		{name: "global job: update --force runs it again on every node",
			svc: globalJob(rerun), nodes: []*api.Node{mkNode("1"), mkNode("2")},
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("g1", s, 0, "1", api.TaskComplete, pinTo, fromRun(1)), mkTask("g2", s, 0, "2", api.TaskComplete, pinTo, fromRun(1))}
			},
			want: []string{"desired g1 shutdown", "create n1 slot=0 node=1", "desired g2 shutdown", "create n2 slot=0 node=2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tasks := tc.tasks(tc.svc)
			p := Reconcile(tc.svc, tc.nodes, tasks, t0, ids("n"))
			checkOps(t, p.Ops, tc.want...)
			if p.Update != nil {
				t.Errorf("a job got an update decision: %+v", p.Update)
			}
			again := Reconcile(tc.svc, tc.nodes, applyToList(tasks, p.Ops), t0, ids("m"))
			if len(again.Ops) != 0 {
				t.Errorf("second pass wrote %v", opStrings(again.Ops))
			}
		})
	}
}

// jobWorkerStep plays the workers for a job: placed tasks start, running ones
// end (exit 0, or failed when fail says so), tasks asked to stop report it. It
// returns how many of the service's tasks ran at once before it ended them.
func (s *sim) jobWorkerStep(fail func(*api.Task) bool) (running int) {
	s.store.workerStep(s.now)
	var ops []api.TaskOp
	for _, t := range s.store.Snapshot().Tasks() {
		if t.Status.State != api.TaskRunning || t.DesiredState != api.TaskRunning {
			continue
		}
		running++
		st := api.TaskStatus{State: api.TaskComplete, Message: "finished", Timestamp: s.now}
		if fail != nil && fail(t) {
			st = api.TaskStatus{State: api.TaskFailed, Message: "exited with code 1", ExitCode: 1, Timestamp: s.now}
		}
		ops = append(ops, api.TaskOp{Kind: api.TaskOpStatus, TaskID: t.ID, Status: st})
	}
	s.apply(ops)
	return running
}

// completions counts, per slot, the tasks of run v that completed.
func completions(snap Snapshot, v uint64) map[uint64]int {
	out := map[uint64]int{}
	for _, t := range snap.Tasks() {
		if t.SpecVersion == v && t.Status.State == api.TaskComplete {
			out[t.Slot]++
		}
	}
	return out
}

// TestJobRuns drives the loops and workers over a replicated job of 7
// completions, 3 at once: it runs exactly 7, never more than 3 at a time, the
// failures among them retried, and update --force runs it again with the first
// run kept as history.
func TestJobRuns(t *testing.T) {
	s := newSim()
	for i := range 4 {
		s.store.putNode(mkNode(fmt.Sprint(i)))
	}
	svc := job(7, 3, func(s *api.Service) { s.Spec.Normalize() })
	s.store.putService(svc)
	failed := map[uint64]bool{}
	failOnce := func(t *api.Task) bool {
		if t.Slot%3 == 0 && !failed[t.Slot+100*t.SpecVersion] { // slots 3 and 6 fail their first try
			failed[t.Slot+100*t.SpecVersion] = true
			return true
		}
		return false
	}
	run := func(v uint64) {
		t.Helper()
		for range 100 {
			s.now = s.now.Add(time.Second)
			changed := s.orchestrate()
			changed = s.schedule() || changed
			if n := s.jobWorkerStep(failOnce); n > 3 {
				t.Fatalf("%d tasks ran at once, max-concurrent is 3\n%s", n, dump(s.store.Snapshot()))
			}
			if !changed && len(completions(s.store.Snapshot(), v)) == 7 {
				break
			}
		}
		snap := s.store.Snapshot()
		done := completions(snap, v)
		for slot := uint64(1); slot <= 7; slot++ {
			if done[slot] != 1 {
				t.Fatalf("run %d: slot %d completed %d times, want once\n%s", v, slot, done[slot], dump(snap))
			}
		}
		s.now = s.now.Add(time.Hour)
		if s.orchestrate() || s.schedule() {
			t.Fatalf("run %d: a finished job still writes\n%s", v, dump(snap))
		}
	}
	run(1)
	s.store.updateService("j", func(spec *api.ServiceSpec) { spec.ForceUpdate++ }, s.now)
	if st := s.store.Snapshot().Services()[0].UpdateStatus; st != nil {
		t.Fatalf("update --force of a job started a rolling update: %+v", st)
	}
	run(2)
	snap := s.store.Snapshot()
	if first := completions(snap, 1); len(first) != 7 {
		t.Errorf("the first run's completions were not kept as history: %v", first)
	}
	for _, tk := range snap.Tasks() {
		if tk.SpecVersion == 1 && tk.DesiredState <= api.TaskRunning {
			t.Errorf("task %s of the first run is still meant to run", tk.ID)
		}
	}
}

// TestPropertyJobs: whatever fails, whichever nodes come and go, a replicated
// job never has more than MaxConcurrent tasks of its current run at work, with
// on-failure restarts every slot ends completed, and no task is made for a slot
// after it completed.
func TestPropertyJobs(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := newSim()
		nNodes := rapid.IntRange(1, 4).Draw(rt, "nodes")
		for i := range nNodes {
			s.store.putNode(mkNode(fmt.Sprint(i)))
		}
		n := rapid.Uint64Range(0, 8).Draw(rt, "completions")
		mc := rapid.Uint64Range(0, 4).Draw(rt, "max-concurrent")
		limit := mc
		if limit == 0 || limit > n {
			limit = n
		}
		s.store.putService(job(n, mc, func(s *api.Service) { s.Spec.Normalize() }))
		check := func() {
			atWork := 0
			for _, tk := range s.store.Snapshot().Tasks() {
				if tk.DesiredState <= api.TaskRunning && !tk.Status.State.Terminal() {
					atWork++
				}
			}
			if uint64(atWork) > limit {
				rt.Fatalf("%d tasks at work, max-concurrent %d\n%s", atWork, limit, dump(s.store.Snapshot()))
			}
		}
		for i, steps := 0, rapid.IntRange(0, 40).Draw(rt, "steps"); i < steps; i++ {
			s.now = s.now.Add(time.Second)
			switch rapid.IntRange(0, 5).Draw(rt, "event") {
			case 0, 1:
				s.orchestrate()
			case 2:
				s.schedule()
			case 3:
				s.store.workerStep(s.now)
			case 4:
				if running := s.running(); len(running) > 0 {
					tk := rapid.SampledFrom(running).Draw(rt, "end")
					s.store.reportStatus(tk.ID, rapid.SampledFrom([]api.TaskState{api.TaskFailed, api.TaskComplete, api.TaskRejected}).Draw(rt, "how"), s.now)
				}
			case 5:
				id := fmt.Sprint(rapid.IntRange(0, nNodes-1).Draw(rt, "node"))
				s.store.updateNode(id, randomNodeState(rt, "change"))
			}
			check()
		}
		for i := range nNodes {
			s.store.updateNode(fmt.Sprint(i), func(n *api.Node) { n.Status, n.Availability = api.NodeReady, api.AvailabilityActive })
		}
		for range 400 {
			s.now = s.now.Add(time.Second)
			changed := s.orchestrate()
			changed = s.schedule() || changed
			if s.jobWorkerStep(nil) > 0 {
				changed = true
			}
			check()
			if !changed {
				if _, _, next := s.orch.plan(s.store.Snapshot(), s.now); next.IsZero() {
					break
				}
				s.now = s.now.Add(BackoffMax)
			}
		}
		// Every slot completes. Once is the rule, but not a promise: a task moved
		// off a drained node may complete on its way out after its replacement
		// started (Swarm's jobs are at least once too). What must never happen
		// is a task made for a slot after it completed.
		snap := s.store.Snapshot()
		done := completions(snap, 1)
		for slot := uint64(1); slot <= n; slot++ {
			if done[slot] < 1 {
				rt.Fatalf("slot %d never completed\n%s", slot, dump(snap))
			}
		}
		if len(done) != int(n) {
			rt.Fatalf("completions %v, want slots 1..%d", done, n)
		}
		first := map[uint64]time.Time{}
		for _, tk := range snap.Tasks() {
			if at, ok := first[tk.Slot]; tk.Status.State == api.TaskComplete && (!ok || tk.Status.Timestamp.Before(at)) {
				first[tk.Slot] = tk.Status.Timestamp
			}
		}
		for _, tk := range snap.Tasks() {
			if at, ok := first[tk.Slot]; ok && tk.CreatedAt.After(at) {
				rt.Fatalf("task %s made for slot %d at %s, after it completed at %s\n%s", tk.ID, tk.Slot, tk.CreatedAt, at, dump(snap))
			}
		}
	})
}
