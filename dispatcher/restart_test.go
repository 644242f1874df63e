package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// restarting is a node down after announcing a restart whose grace ends at t0+d.
func restarting(d time.Duration) func(*api.Node) {
	return func(n *api.Node) { n.Status, n.RestartingUntil = api.NodeDown, at(d) }
}

// TestReconcileRestartingNode: the tasks of a node that said it restarts stay
// put for its grace, and are replaced as for any lost node once it runs out; a
// node down without a word is handled at once, as before.
func TestReconcileRestartingNode(t *testing.T) {
	web := func(n uint64) *api.Service { return mkService("web", n) }
	two := func(s *api.Service) []*api.Task {
		return []*api.Task{mkTask("t1", s, 1, "1", api.TaskRunning), mkTask("t2", s, 2, "1", api.TaskRunning, attempt(3))}
	}
	tests := []struct {
		name  string
		svc   *api.Service
		nodes []*api.Node
		tasks func(*api.Service) []*api.Task
		now   time.Time
		want  []string
		next  time.Time
	}{
		{name: "within the grace: nothing moves, look again when it ends",
			svc: web(2), nodes: []*api.Node{mkNode("1", restarting(time.Minute)), mkNode("2")}, tasks: two,
			now: at(10 * time.Second), next: at(time.Minute)},
		{name: "grace over: orphaned and replaced, attempts carried",
			svc: web(2), nodes: []*api.Node{mkNode("1", restarting(time.Minute)), mkNode("2")}, tasks: two,
			now: at(time.Minute),
			want: []string{"status t1 orphaned", "desired t1 shutdown", "create n1 slot=1",
				"status t2 orphaned", "desired t2 shutdown", "create n2 slot=2 attempt=3"}},
		{name: "down without a word: replaced at once",
			svc: web(2), nodes: []*api.Node{mkNode("1", down), mkNode("2")}, tasks: two,
			want: []string{"status t1 orphaned", "desired t1 shutdown", "create n1 slot=1",
				"status t2 orphaned", "desired t2 shutdown", "create n2 slot=2 attempt=3"}},
		{name: "ready with a stale mark: as any ready node",
			svc: web(2), nodes: []*api.Node{mkNode("1", func(n *api.Node) { n.RestartingUntil = at(-time.Hour) }), mkNode("2")}, tasks: two},
		{name: "a task that ended before the restart is restarted as usual",
			svc: web(1), nodes: []*api.Node{mkNode("1", restarting(time.Minute)), mkNode("2")},
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("t1", s, 1, "1", api.TaskFailed)} },
			want:  []string{"desired t1 shutdown", "create n1 slot=1 attempt=1"}},
		{name: "a task asked to stop waits for the node to stop it",
			svc: web(1), nodes: []*api.Node{mkNode("1", restarting(time.Minute)), mkNode("2")},
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskRunning, stopping), mkTask("t2", s, 1, "2", api.TaskRunning, createdAt(time.Second))}
			},
			next: at(time.Minute)},
		{name: "global: the restarting node keeps its task, a new one waits for its return",
			svc: mkService("g", 0, global), nodes: []*api.Node{mkNode("1", restarting(time.Minute)), mkNode("2", restarting(time.Minute)), mkNode("3")},
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("g1", s, 0, "1", api.TaskRunning), mkTask("g3", s, 0, "3", api.TaskRunning)}
			},
			next: at(time.Minute)},
		{name: "global: grace over: the task goes and nothing replaces it",
			svc: mkService("g", 0, global), nodes: []*api.Node{mkNode("1", restarting(time.Minute))},
			tasks: func(s *api.Service) []*api.Task { return []*api.Task{mkTask("g1", s, 0, "1", api.TaskRunning)} },
			now:   at(2 * time.Minute),
			want:  []string{"status g1 orphaned", "desired g1 shutdown"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			tasks := tc.tasks(tc.svc)
			p := Reconcile(tc.svc, tc.nodes, tasks, now, ids("n"))
			checkOps(t, p.Ops, tc.want...)
			if !p.Next.Equal(tc.next) {
				t.Errorf("next = %v, want %v", p.Next, tc.next)
			}
			again := Reconcile(tc.svc, tc.nodes, applyToList(tasks, p.Ops), now, ids("m"))
			if len(again.Ops) != 0 || again.Update != nil {
				t.Errorf("second pass wrote %v %+v", opStrings(again.Ops), again.Update)
			}
		})
	}
}

// TestRemoveRestartingNode: a deleted service's task on a restarting node is
// asked to stop (its node does that when back), and the pass looks again when
// the grace runs out.
func TestRemoveRestartingNode(t *testing.T) {
	svc := mkService("web", 1)
	nodes := []*api.Node{mkNode("1", restarting(time.Minute))}
	tasks := []*api.Task{mkTask("a", svc, 1, "1", api.TaskRunning)}
	ops, next := removePlan(nodes, tasks, t0)
	checkOps(t, ops, "desired a shutdown")
	if !next.Equal(at(time.Minute)) {
		t.Fatalf("next = %v", next)
	}
	checkOps(t, Remove(nodes, tasks, at(time.Minute)), "status a orphaned", "delete a")
}

// TestEndpointsRestartingNode: a restarting node's tasks still serve, so they
// stay in the table; a node down without a word loses its tasks from it.
func TestEndpointsRestartingNode(t *testing.T) {
	st := newMemStore()
	st.putNode(mkNode("1", restarting(time.Minute)))
	st.putNode(mkNode("2", down))
	web := mkService("web", 2)
	st.putService(web)
	st.ApplyTaskOps(context.Background(), []api.TaskOp{
		{Kind: api.TaskOpCreate, Task: mkTask("a", web, 1, "1", api.TaskRunning)},
		{Kind: api.TaskOpCreate, Task: mkTask("b", web, 2, "2", api.TaskRunning)},
	})
	eps := Endpoints(st.Snapshot())
	if len(eps) != 1 || len(eps[0].Tasks) != 1 || eps[0].Tasks[0].TaskID != "a" {
		t.Fatalf("endpoints %+v", eps)
	}
}
