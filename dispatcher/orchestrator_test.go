package dispatcher

import (
	"fmt"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

func at(d time.Duration) time.Time { return t0.Add(d) }

func failedAt(d time.Duration) func(*api.Task) {
	return func(t *api.Task) { t.Status.Timestamp = t0.Add(d) }
}
func createdAt(d time.Duration) func(*api.Task) {
	return func(t *api.Task) { t.CreatedAt = t0.Add(d) }
}
func attempt(n uint64) func(*api.Task) { return func(t *api.Task) { t.Attempt = n } }
func stopping(t *api.Task)             { t.DesiredState = api.TaskShutdown }

// version makes a task of an older spec: another version and another image.
func version(v uint64) func(*api.Task) {
	return func(t *api.Task) { t.SpecVersion, t.Spec.Image = v, fmt.Sprintf("img:v%d", v) }
}
func restartPolicy(p api.RestartPolicy) func(*api.Service) {
	return func(s *api.Service) { s.Spec.RestartPolicy = p }
}

func TestReconcile(t *testing.T) {
	web := func(replicas uint64, opts ...func(*api.Service)) *api.Service {
		return mkService("web", replicas, opts...)
	}
	ready := []*api.Node{mkNode("1"), mkNode("2"), mkNode("3")}
	tests := []struct {
		name  string
		svc   *api.Service
		nodes []*api.Node
		tasks func(svc *api.Service) []*api.Task
		now   time.Time
		want  []string
		next  time.Time
	}{
		{name: "creates missing slots",
			svc: web(3), nodes: ready,
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("t2", s, 2, "1", api.TaskRunning)} },
			want:  []string{"create n1 slot=1", "create n2 slot=3"}},
		{name: "steady state writes nothing",
			svc: web(2), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskRunning), mkTask("t2", s, 2, "", api.TaskPending)}
			}},
		{name: "scale down shuts down the highest slots",
			svc: web(2), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{
					mkTask("t1", s, 1, "1", api.TaskRunning), mkTask("t2", s, 2, "2", api.TaskRunning),
					mkTask("t3", s, 3, "3", api.TaskRunning), mkTask("t4", s, 4, "", api.TaskPending),
				}
			},
			want: []string{"desired t3 shutdown", "desired t4 shutdown", "status t4 shutdown"}},
		{name: "restart waits for the delay",
			svc: web(1, restartPolicy(api.RestartPolicy{Condition: api.RestartAny, Delay: dur(10 * time.Second)})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskFailed, failedAt(0))}
			},
			now: at(5 * time.Second), next: at(10 * time.Second),
			want: []string{"desired t1 shutdown", "create n1 slot=1 attempt=1 held"}},
		{name: "restart after the delay, same slot, one more attempt",
			svc: web(1, restartPolicy(api.RestartPolicy{Condition: api.RestartAny, Delay: dur(10 * time.Second)})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskFailed, failedAt(0))}
			},
			now:  at(10 * time.Second),
			want: []string{"desired t1 shutdown", "create n1 slot=1 attempt=1"}},
		{name: "condition none leaves the slot ended",
			svc: web(1, restartPolicy(api.RestartPolicy{Condition: api.RestartNone})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("t1", s, 1, "1", api.TaskFailed)} }},
		{name: "on-failure does not restart a completed task",
			svc: web(1, restartPolicy(api.RestartPolicy{Condition: api.RestartOnFailure})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("t1", s, 1, "1", api.TaskComplete)} }},
		{name: "on-failure restarts a failed task",
			svc: web(1, restartPolicy(api.RestartPolicy{Condition: api.RestartOnFailure})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("t1", s, 1, "1", api.TaskRejected)} },
			want:  []string{"desired t1 shutdown", "create n1 slot=1 attempt=1"}},
		{name: "on-failure restarts a task the worker shut down",
			svc: web(1, restartPolicy(api.RestartPolicy{Condition: api.RestartOnFailure})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("t1", s, 1, "1", api.TaskShutdown)} },
			want:  []string{"desired t1 shutdown", "create n1 slot=1 attempt=1"}},
		{name: "any restarts a completed task",
			svc: web(1), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskComplete, attempt(4))}
			},
			want: []string{"desired t1 shutdown", "create n1 slot=1 attempt=5"}},
		{name: "max attempts reached",
			svc: web(1, restartPolicy(api.RestartPolicy{Condition: api.RestartAny, MaxAttempts: 3})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskFailed, attempt(3))}
			}},
		{name: "max attempts not yet reached",
			svc: web(1, restartPolicy(api.RestartPolicy{Condition: api.RestartAny, MaxAttempts: 3})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskFailed, attempt(2))}
			},
			want: []string{"desired t1 shutdown", "create n1 slot=1 attempt=3"}},
		{name: "max attempts within the window waits for the window to slide",
			svc: web(1, restartPolicy(api.RestartPolicy{Condition: api.RestartAny, MaxAttempts: 2, Window: time.Minute})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{
					mkTask("t0", s, 1, "1", api.TaskFailed, stopping, createdAt(0)),
					mkTask("t1", s, 1, "1", api.TaskFailed, stopping, attempt(1), createdAt(10*time.Second)),
					mkTask("t1b", s, 1, "2", api.TaskShutdown, stopping, attempt(1), createdAt(15*time.Second)), // drained away: no attempt
					mkTask("t2", s, 1, "1", api.TaskFailed, attempt(2), createdAt(20*time.Second), failedAt(25*time.Second)),
				}
			},
			now: at(30 * time.Second), next: at(70 * time.Second)},
		{name: "max attempts within the window: old attempts fall out",
			svc: web(1, restartPolicy(api.RestartPolicy{Condition: api.RestartAny, MaxAttempts: 2, Window: time.Minute})), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{
					mkTask("t0", s, 1, "1", api.TaskFailed, stopping, createdAt(0)),
					mkTask("t1", s, 1, "1", api.TaskFailed, stopping, attempt(1), createdAt(10*time.Second)),
					mkTask("t2", s, 1, "1", api.TaskFailed, attempt(2), createdAt(20*time.Second), failedAt(25*time.Second)),
				}
			},
			now:  at(71 * time.Second),
			want: []string{"desired t2 shutdown", "create n1 slot=1 attempt=3"}},
		{name: "down node: orphaned and replaced at once, whatever the policy",
			svc: web(2, restartPolicy(api.RestartPolicy{Condition: api.RestartNone, Delay: dur(time.Hour)})), nodes: []*api.Node{mkNode("1", down), mkNode("2")},
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskRunning, attempt(2)), mkTask("t2", s, 2, "9", api.TaskStarting)}
			},
			want: []string{"status t1 orphaned", "desired t1 shutdown", "create n1 slot=1 attempt=2",
				"status t2 orphaned", "desired t2 shutdown", "create n2 slot=2"}},
		{name: "down node: a task already stopping is only marked orphaned",
			svc: web(1), nodes: []*api.Node{mkNode("1", down), mkNode("2")},
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskRunning, stopping), mkTask("t2", s, 1, "2", api.TaskRunning, createdAt(time.Second))}
			},
			want: []string{"status t1 orphaned"}},
		{name: "drained node: replaced elsewhere without waiting",
			svc: web(1), nodes: []*api.Node{mkNode("1", drained), mkNode("2")},
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("t1", s, 1, "1", api.TaskRunning)} },
			want:  []string{"desired t1 shutdown", "create n1 slot=1"}},
		{name: "paused node keeps its task",
			svc: web(1), nodes: []*api.Node{mkNode("1", paused), mkNode("2")},
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("t1", s, 1, "1", api.TaskRunning)} }},
		{name: "node no longer matching the constraints: replaced",
			svc:   web(1, func(s *api.Service) { s.Spec.Constraints = []string{"node.labels.zone==a"} }),
			nodes: []*api.Node{mkNode("1", label("zone", "b")), mkNode("2", label("zone", "a"))},
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("t1", s, 1, "1", api.TaskRunning)} },
			want:  []string{"desired t1 shutdown", "create n1 slot=1"}},
		{name: "spec update replaces one slot at a time",
			svc: web(3, func(s *api.Service) { s.SpecVersion = 2 }), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskRunning, version(1)), mkTask("t2", s, 2, "2", api.TaskRunning, version(1)),
					mkTask("t3", s, 3, "3", api.TaskRunning, version(1))}
			},
			want: []string{"desired t1 shutdown", "create n1 slot=1 held"}},
		{name: "spec update waits while the old task stops",
			svc: web(2, func(s *api.Service) { s.SpecVersion = 2 }), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskRunning, version(1), stopping), mkTask("u1", s, 1, "", api.TaskPending, createdAt(time.Second)),
					mkTask("t2", s, 2, "2", api.TaskRunning, version(1))}
			}},
		{name: "spec update waits while the new task starts",
			svc: web(2, func(s *api.Service) { s.SpecVersion = 2 }), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskShutdown, version(1), stopping), mkTask("u1", s, 1, "2", api.TaskStarting, createdAt(time.Second)),
					mkTask("t2", s, 2, "2", api.TaskRunning, version(1))}
			}},
		{name: "spec update moves on once the new task runs",
			svc: web(2, func(s *api.Service) { s.SpecVersion = 2 }), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskShutdown, version(1), stopping), mkTask("u1", s, 1, "2", api.TaskRunning, createdAt(time.Second)),
					mkTask("t2", s, 2, "2", api.TaskRunning, version(1))}
			},
			want: []string{"desired t2 shutdown", "create n1 slot=2 held"}},
		{name: "outdated tasks not yet placed are replaced at once",
			svc: web(2, func(s *api.Service) { s.SpecVersion = 2 }), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "", api.TaskPending, version(1)), mkTask("t2", s, 2, "", api.TaskNew, version(1))}
			},
			want: []string{"desired t1 shutdown", "status t1 shutdown", "create n1 slot=1", "desired t2 shutdown", "status t2 shutdown", "create n2 slot=2"}},
		{name: "history is bounded per slot",
			svc: web(1), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				ts := []*api.Task{mkTask("cur", s, 1, "1", api.TaskRunning, createdAt(time.Hour))}
				for i := range 8 {
					ts = append(ts, mkTask(fmt.Sprintf("h%d", i), s, 1, "1", api.TaskFailed, stopping, createdAt(time.Duration(i)*time.Minute)))
				}
				return ts
			},
			want: []string{"delete h2", "delete h1", "delete h0"}},
		{name: "two live tasks in one slot: the newest stays",
			svc: web(1), nodes: ready,
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("a", s, 1, "1", api.TaskRunning), mkTask("b", s, 1, "2", api.TaskRunning, createdAt(time.Second))}
			},
			want: []string{"desired a shutdown"}},
		{name: "global: one task per eligible node",
			svc:   mkService("g", 0, global, func(s *api.Service) { s.Spec.Constraints = []string{"node.labels.zone!=x"} }),
			nodes: []*api.Node{mkNode("1"), mkNode("2", paused), mkNode("3", drained), mkNode("4", down), mkNode("5", label("zone", "x")), mkNode("6")},
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{
					mkTask("g2", s, 0, "2", api.TaskRunning), mkTask("g3", s, 0, "3", api.TaskRunning), mkTask("g4", s, 0, "4", api.TaskRunning),
					mkTask("g5", s, 0, "5", api.TaskRunning), mkTask("g6", s, 0, "6", api.TaskRunning), mkTask("g7", s, 0, "7", api.TaskRunning),
				}
			},
			want: []string{"create n1 slot=0 node=1", "desired g3 shutdown", "status g4 orphaned", "desired g4 shutdown",
				"desired g5 shutdown", "status g7 orphaned", "desired g7 shutdown"}},
		{name: "global: restart keeps the node",
			svc: mkService("g", 0, global), nodes: []*api.Node{mkNode("1")},
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("g1", s, 0, "1", api.TaskFailed)} },
			want:  []string{"desired g1 shutdown", "create n1 slot=0 node=1 attempt=1"}},
		{name: "global: a node back up gets a new task",
			svc: mkService("g", 0, global), nodes: []*api.Node{mkNode("1")},
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("g1", s, 0, "1", api.TaskOrphaned, stopping)}
			},
			want: []string{"create n1 slot=0 node=1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			tasks := tc.tasks(tc.svc)
			p := Reconcile(tc.svc, tc.nodes, tasks, now, ids("n"))
			ops, next := p.Ops, p.Next
			checkOps(t, ops, tc.want...)
			if !next.Equal(tc.next) {
				t.Errorf("next = %v, want %v", next, tc.next)
			}
			// Idempotent: on the result of its own ops, Reconcile has nothing to add.
			again := Reconcile(tc.svc, tc.nodes, applyToList(tasks, ops), now, ids("m"))
			if len(again.Ops) != 0 || again.Update != nil {
				t.Errorf("second pass wrote %v %+v", opStrings(again.Ops), again.Update)
			}
		})
	}
}

func TestReconcileNewTask(t *testing.T) {
	svc := mkService("web", 1, func(s *api.Service) { s.SpecVersion = 7; s.Spec.Env = []string{"A=1"} })
	ops := Reconcile(svc, nil, nil, t0, ids("n")).Ops
	if len(ops) != 1 || ops[0].Kind != api.TaskOpCreate {
		t.Fatalf("ops = %v", opStrings(ops))
	}
	got := ops[0].Task
	if got.ID != "n1" || ops[0].TaskID != "n1" || got.ServiceID != "web" || got.ServiceName != "web" || got.Slot != 1 ||
		got.SpecVersion != 7 || got.Spec.Env[0] != "A=1" || got.DesiredState != api.TaskRunning ||
		got.Status.State != api.TaskNew || !got.Status.Timestamp.Equal(t0) || !got.CreatedAt.Equal(t0) || got.NodeID != "" {
		t.Errorf("new task = %+v", got)
	}
}

func TestRemove(t *testing.T) {
	svc := mkService("web", 1)
	nodes := []*api.Node{mkNode("1"), mkNode("2", down)}
	tasks := []*api.Task{
		mkTask("a", svc, 1, "1", api.TaskRunning),
		mkTask("b", svc, 2, "", api.TaskPending),
		mkTask("c", svc, 3, "1", api.TaskFailed),
		mkTask("d", svc, 4, "2", api.TaskRunning),
		mkTask("e", svc, 5, "1", api.TaskRunning, stopping),
	}
	ops := Remove(nodes, tasks, t0)
	checkOps(t, ops, "desired a shutdown", "desired b shutdown", "status b shutdown", "delete b", "delete c",
		"status d orphaned", "delete d")
	if again := Remove(nodes, applyToList(tasks, ops), t0); len(again) != 0 {
		t.Errorf("second pass wrote %v", opStrings(again))
	}
}
