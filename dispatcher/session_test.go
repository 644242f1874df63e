package dispatcher

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// sessionStore is the in-memory store with what sessions need on top.
type sessionStore struct {
	*memStore
	voters []string
}

func (s sessionStore) WaitIndex(ctx context.Context, index uint64) {
	for {
		ch := s.Watch()
		if s.Snapshot().Index() > index {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

func (s sessionStore) Voters() ([]string, error) { return s.voters, nil }

// ChangedSince has no feed: the tables are rebuilt at every step (feedStore in
// tables_test.go has one).
func (s sessionStore) ChangedSince(uint64) ([]Change, uint64, bool) { return nil, 0, false }

func seedSession() (*memStore, *api.Service) {
	st := newMemStore()
	st.putNode(mkNode("1"))
	st.putNode(mkNode("2"))
	st.putNode(mkNode("3", down))
	web := mkService("web", 3)
	web.VIP = "10.43.0.2"
	web.Ports = []api.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: api.PublishIngress}}
	st.putService(web)
	st.ApplyTaskOps(context.Background(), []api.TaskOp{
		{Kind: api.TaskOpCreate, Task: mkTask("a", web, 1, "1", api.TaskRunning, func(t *api.Task) { t.Status.Addr = "10.42.1.2" })},
		{Kind: api.TaskOpCreate, Task: mkTask("b", web, 2, "2", api.TaskStarting)},
		{Kind: api.TaskOpCreate, Task: mkTask("c", web, 3, "3", api.TaskRunning)},
		{Kind: api.TaskOpCreate, Task: mkTask("d", web, 4, "1", api.TaskRunning, func(t *api.Task) { t.DesiredState = api.TaskShutdown })},
		{Kind: api.TaskOpCreate, Task: mkTask("e", web, 5, "1", api.TaskFailed, func(t *api.Task) { t.DesiredState = api.TaskShutdown })},
		{Kind: api.TaskOpCreate, Task: mkTask("f", web, 6, "2", api.TaskComplete)},
	})
	return st, web
}

func TestEndpoints(t *testing.T) {
	st, _ := seedSession()
	eps := Endpoints(st.Snapshot())
	if len(eps) != 1 || eps[0].Service != "web" || eps[0].VIP != "10.43.0.2" || len(eps[0].Ports) != 1 {
		t.Fatalf("endpoints %+v", eps)
	}
	// Only a running task meant to run, on a ready node, serves: not b (starting),
	// not c (its node is down), not d (asked to stop), not e or f (ended).
	if got := eps[0].Tasks; len(got) != 1 || got[0].TaskID != "a" || got[0].Addr != "10.42.1.2" || got[0].NodeIP != "10.0.0.1" {
		t.Fatalf("serving tasks %+v", got)
	}
}

func TestAssignmentsFor(t *testing.T) {
	st, _ := seedSession()
	as, err := AssignmentsFor(st.Snapshot(), "1", []string{"2", "1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tk := range as.Tasks {
		got = append(got, tk.ID)
	}
	// e is terminal and asked to stop: the worker is done with it.
	if want := []string{"a", "d"}; !equal(got, want) {
		t.Fatalf("tasks for node 1 = %v, want %v", got, want)
	}
	if as.Node == nil || as.Node.ID != "1" || len(as.Nodes) != 3 || !equal(as.Voters, []string{"1", "2"}) || as.Index != st.Snapshot().Index() {
		t.Fatalf("assignments %+v", as)
	}
	if len(as.Endpoints) != 1 {
		t.Fatalf("no endpoint table")
	}
	if _, err := AssignmentsFor(st.Snapshot(), "9", nil); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("unknown node: %v", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCheckStatusReport(t *testing.T) {
	st, _ := seedSession()
	running := api.TaskStatus{State: api.TaskRunning, Timestamp: t0}
	for _, tc := range []struct {
		name string
		node string
		ops  []api.TaskOp
		want error // nil: accepted
		kept int
	}{
		{"own task", "2", []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: "b", Status: running}}, nil, 1},
		{"deleted task dropped", "2", []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: "gone", Status: running}}, nil, 0},
		{"another node's task", "2", []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: "b", Status: running}, {Kind: api.TaskOpStatus, TaskID: "a", Status: running}}, api.ErrForbidden, 0},
		{"not a status op", "1", []api.TaskOp{{Kind: api.TaskOpDesired, TaskID: "a", Desired: api.TaskShutdown}}, api.ErrForbidden, 0},
		{"create op", "1", []api.TaskOp{{Kind: api.TaskOpCreate, Task: &api.Task{ID: "x"}}}, api.ErrForbidden, 0},
		{"orphaned is the manager's word", "1", []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: "a", Status: api.TaskStatus{State: api.TaskOrphaned}}}, api.ErrInvalid, 0},
		{"pending is the scheduler's word", "1", []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: "a", Status: api.TaskStatus{State: api.TaskPending}}}, api.ErrInvalid, 0},
		{"unknown node", "9", []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: "a", Status: running}}, api.ErrNotFound, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := CheckStatusReport(st.Snapshot(), tc.node, tc.ops)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if len(ops) != tc.kept {
				t.Fatalf("kept %d ops, want %d", len(ops), tc.kept)
			}
			for _, op := range ops {
				if op.NodeID != tc.node {
					t.Fatalf("op does not carry the reporting node: %+v", op)
				}
			}
		})
	}
}

func TestDispatcherBatchesReports(t *testing.T) {
	st, _ := seedSession()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := NewDispatcher(ctx, sessionStore{memStore: st, voters: []string{"1"}}, testLogger(t))
	go d.Run(ctx)
	before := st.batches
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for _, r := range []struct{ node, task string }{{"1", "a"}, {"1", "d"}, {"2", "b"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- d.ReportStatus(ctx, r.node, []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: r.task, Status: api.TaskStatus{State: api.TaskComplete, Timestamp: t0}}})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	snap := st.Snapshot()
	for _, id := range []string{"a", "b", "d"} {
		if s := findTask(snap, id).Status.State; s != api.TaskComplete {
			t.Fatalf("task %s is %s after its report", id, s)
		}
	}
	st.mu.Lock()
	n := st.batches - before
	st.mu.Unlock()
	if n < 1 || n > 3 {
		t.Fatalf("%d entries for 3 reports", n)
	}
	// A bad report is refused whole and applies nothing.
	err := d.ReportStatus(ctx, "2", []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: "a", Status: api.TaskStatus{State: api.TaskFailed}}})
	if !errors.Is(err, api.ErrForbidden) || findTask(st.Snapshot(), "a").Status.State != api.TaskComplete {
		t.Fatalf("bad report: %v", err)
	}
}

func TestDispatcherAssignmentsWaitAndEnd(t *testing.T) {
	st, web := seedSession()
	ctx, cancel := context.WithCancel(context.Background())
	d := NewDispatcher(ctx, sessionStore{memStore: st, voters: []string{"1"}}, testLogger(t))
	idx := st.Snapshot().Index()
	done := make(chan api.Assignments, 1)
	go func() {
		as, _ := d.Assignments(context.Background(), "2", idx, 10*time.Second)
		done <- as
	}()
	st.ApplyTaskOps(context.Background(), []api.TaskOp{{Kind: api.TaskOpCreate, Task: mkTask("g", web, 7, "2", api.TaskAssigned)}})
	select {
	case as := <-done:
		if as.Index <= idx || len(as.Tasks) != 3 {
			t.Fatalf("woke with index %d and %d tasks", as.Index, len(as.Tasks))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a change did not wake the session")
	}
	// A session blocked when the leadership ends returns at once, refused.
	errc := make(chan error, 1)
	go func() {
		_, err := d.Assignments(context.Background(), "2", st.Snapshot().Index(), time.Minute)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it block; the assertion below does not depend on it
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, api.ErrNotLeader) {
			t.Fatalf("after leadership ended: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session outlived the leadership")
	}
}

func findTask(snap Snapshot, id string) *api.Task {
	for _, t := range snap.Tasks() {
		if t.ID == id {
			return t
		}
	}
	return nil
}
