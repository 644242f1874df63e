package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/swarmlet/swarmlet/api"
)

// feedStore is the in-memory store with a change feed: it keeps the snapshot
// of every index it handed out and names, for ChangedSince, every object that
// differs between that snapshot and the current state (objects are replaced on
// change, so a changed object is a different pointer). That is the feed's
// contract, exactly.
type feedStore struct {
	*memStore
	mu    sync.Mutex
	snaps map[uint64]Snapshot
}

func newFeedStore() *feedStore {
	return &feedStore{memStore: newMemStore(), snaps: map[uint64]Snapshot{}}
}

func (s *feedStore) Snapshot() Snapshot {
	snap := s.memStore.Snapshot()
	s.mu.Lock()
	s.snaps[snap.Index()] = snap
	s.mu.Unlock()
	return snap
}

func (s *feedStore) WaitIndex(ctx context.Context, index uint64) {
	sessionStore{memStore: s.memStore}.WaitIndex(ctx, index)
}
func (s *feedStore) Voters() ([]string, error) { return nil, nil }

func (s *feedStore) ChangedSince(index uint64) ([]Change, uint64, bool) {
	s.mu.Lock()
	old, ok := s.snaps[index]
	s.mu.Unlock()
	if !ok {
		return nil, 0, false
	}
	cur := s.memStore.Snapshot()
	var out []Change
	diff := func(kind ChangeKind, a, b map[string]any) {
		for id, x := range a {
			if y, ok := b[id]; !ok || x != y {
				out = append(out, Change{kind, id})
			}
		}
		for id := range b {
			if _, ok := a[id]; !ok {
				out = append(out, Change{kind, id})
			}
		}
	}
	diff(ChangeNode, objs(old.Nodes(), func(n *api.Node) string { return n.ID }), objs(cur.Nodes(), func(n *api.Node) string { return n.ID }))
	diff(ChangeService, objs(old.Services(), func(s *api.Service) string { return s.ID }), objs(cur.Services(), func(s *api.Service) string { return s.ID }))
	diff(ChangeTask, objs(old.Tasks(), func(t *api.Task) string { return t.ID }), objs(cur.Tasks(), func(t *api.Task) string { return t.ID }))
	return out, cur.Index(), true
}

func objs[T any](l []*T, id func(*T) string) map[string]any {
	m := map[string]any{}
	for _, x := range l {
		m[id(x)] = x
	}
	return m
}

// wholeTables is what Endpoints and the node list say, in the keeper's order.
func wholeTables(snap Snapshot) ([]api.ServiceEndpoints, []api.Node) {
	eps := Endpoints(snap)
	sort.Slice(eps, func(i, j int) bool { return eps[i].Service < eps[j].Service })
	for i := range eps {
		sort.Slice(eps[i].Tasks, func(a, b int) bool { return eps[i].Tasks[a].TaskID < eps[i].Tasks[b].TaskID })
	}
	var nodes []api.Node
	for _, n := range snap.Nodes() {
		nodes = append(nodes, *n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	return eps, nodes
}

func normEndpoints(eps []api.ServiceEndpoints) []api.ServiceEndpoints {
	out := []api.ServiceEndpoints{}
	for _, se := range eps {
		if len(se.Tasks) == 0 {
			se.Tasks = nil
		}
		for i := range se.Tasks {
			if len(se.Tasks[i].Ports) == 0 {
				se.Tasks[i].Ports = nil
			}
		}
		out = append(out, se)
	}
	return out
}

// The keeper's tables, moved forward from the feed, are the tables rebuilt from
// the state; a worker's view fed deltas from any earlier version ends with the
// same tables; and a worker whose own assignments changed is told it must hear
// at once.
func TestTableKeeperFollowsTheState(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		st := newFeedStore()
		for i := range 3 {
			st.putNode(mkNode(fmt.Sprint(i)))
		}
		k := newTableKeeper(st)
		k.advance()
		type viewer struct {
			node  string
			view  api.SessionView
			since uint64
			mine  map[string]taskMark
		}
		marksOf := func(snap Snapshot, node string) map[string]taskMark {
			m := map[string]taskMark{}
			for _, t := range snap.TasksByNode(node) {
				if listed(t) {
					m[t.ID] = taskMark{node: t.NodeID, desired: t.DesiredState, listed: true}
				}
			}
			return m
		}
		var viewers []*viewer
		nextID := 0
		svcs := []string{}
		for step, n := 0, rapid.IntRange(1, 60).Draw(rt, "steps"); step < n; step++ {
			snap := st.memStore.Snapshot()
			tasks := snap.Tasks()
			switch rapid.IntRange(0, 9).Draw(rt, "event") {
			case 0: // a service comes, or goes
				if len(svcs) > 0 && rapid.Bool().Draw(rt, "remove") {
					i := rapid.IntRange(0, len(svcs)-1).Draw(rt, "svc")
					st.removeService(svcs[i])
					svcs = append(svcs[:i], svcs[i+1:]...)
				} else {
					nextID++
					id := fmt.Sprintf("s%d", nextID)
					st.putService(mkService(id, 3, func(s *api.Service) { s.VIP = "10.43.0." + fmt.Sprint(nextID) }))
					svcs = append(svcs, id)
				}
			case 1: // a service changes its name or VIP
				if len(svcs) == 0 {
					continue
				}
				id := rapid.SampledFrom(svcs).Draw(rt, "svc")
				s := *snapService(snap, id)
				if rapid.Bool().Draw(rt, "rename") {
					s.Spec.Name += "x"
				} else {
					s.VIP += "9"
				}
				st.putService(&s)
			case 2, 3, 4: // a task is created on a node, placed or not
				if len(svcs) == 0 {
					continue
				}
				svc := snapService(snap, rapid.SampledFrom(svcs).Draw(rt, "svc"))
				nextID++
				node := rapid.SampledFrom([]string{"", "0", "1", "2"}).Draw(rt, "node")
				state := rapid.SampledFrom([]api.TaskState{api.TaskNew, api.TaskAssigned, api.TaskRunning}).Draw(rt, "state")
				if node == "" {
					state = api.TaskNew
				}
				st.ApplyTaskOps(context.Background(), []api.TaskOp{{Kind: api.TaskOpCreate, Task: mkTask(fmt.Sprintf("t%d", nextID), svc, 1, node, state,
					func(t *api.Task) { t.Status.Addr = "10.42.0." + fmt.Sprint(nextID) })}})
			case 5: // a worker reports
				var placed []*api.Task
				for _, tk := range tasks {
					if tk.NodeID != "" {
						placed = append(placed, tk)
					}
				}
				if len(placed) == 0 {
					continue
				}
				tk := rapid.SampledFrom(placed).Draw(rt, "task")
				stt := tk.Status
				stt.State = rapid.SampledFrom([]api.TaskState{api.TaskRunning, api.TaskFailed, api.TaskComplete, api.TaskShutdown}).Draw(rt, "report")
				stt.Addr += "1"
				st.ApplyTaskOps(context.Background(), []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: tk.ID, Status: stt}})
			case 6: // asked to stop
				if len(tasks) == 0 {
					continue
				}
				tk := rapid.SampledFrom(tasks).Draw(rt, "task")
				st.ApplyTaskOps(context.Background(), []api.TaskOp{{Kind: api.TaskOpDesired, TaskID: tk.ID, Desired: api.TaskShutdown}})
			case 7: // history pruned
				var done []*api.Task
				for _, tk := range tasks {
					if tk.Status.State.Terminal() || tk.NodeID == "" && tk.Status.State < api.TaskAssigned {
						done = append(done, tk)
					}
				}
				if len(done) == 0 {
					continue
				}
				tk := rapid.SampledFrom(done).Draw(rt, "task")
				st.ApplyTaskOps(context.Background(), []api.TaskOp{{Kind: api.TaskOpDelete, TaskID: tk.ID}})
			case 8: // a node goes down or comes back, moves, or joins
				switch rapid.IntRange(0, 2).Draw(rt, "how") {
				case 0:
					id := fmt.Sprint(rapid.IntRange(0, 2).Draw(rt, "node"))
					st.updateNode(id, func(n *api.Node) {
						if n.Status == api.NodeReady {
							n.Status = api.NodeDown
						} else {
							n.Status = api.NodeReady
						}
					})
				case 1:
					id := fmt.Sprint(rapid.IntRange(0, 2).Draw(rt, "node"))
					st.updateNode(id, func(n *api.Node) { n.Addr += "0" })
				default:
					nextID++
					st.putNode(mkNode(fmt.Sprintf("x%d", nextID)))
				}
			case 9: // a worker starts a session at the current version
				k.advance()
				v := &viewer{node: fmt.Sprint(rapid.IntRange(0, 2).Draw(rt, "node"))}
				snap, tables, _ := k.answer(0)
				whole := SessionAnswer{Assignments: api.Assignments{Index: snap.Index()}, Tables: tables}.Whole()
				if _, err := v.view.Apply(whole); err != nil {
					rt.Fatal(err)
				}
				v.since, v.mine = snap.Index(), marksOf(snap, v.node)
				viewers = append(viewers, v)
			}
			if rapid.IntRange(0, 2).Draw(rt, "advance") == 0 {
				continue // several entries before the keeper looks
			}
			k.advance()
			snap = st.memStore.Snapshot()
			wantEps, wantNodes := wholeTables(snap)
			_, full, _ := k.answer(0)
			if !reflect.DeepEqual(normEndpoints(full.Endpoints), normEndpoints(wantEps)) {
				rt.Fatalf("keeper's endpoints\n%+v\nrebuilt\n%+v", full.Endpoints, wantEps)
			}
			if !reflect.DeepEqual(full.Nodes, wantNodes) {
				rt.Fatalf("keeper's nodes %+v, rebuilt %+v", full.Nodes, wantNodes)
			}
			for _, v := range viewers {
				_, urgent, _, _, _ := k.pending(v.node, v.since)
				now := marksOf(snap, v.node)
				changed := false
				for id, m := range now {
					if v.mine[id] != m {
						changed = true
					}
				}
				if changed && !urgent {
					rt.Fatalf("node %s: its tasks changed since %d (%v -> %v) but the session is not told at once", v.node, v.since, v.mine, now)
				}
				if rapid.Bool().Draw(rt, "answer") {
					_, tables, delta := k.answer(v.since)
					if !delta {
						rt.Fatalf("since %d: no delta though the keeper holds it", v.since)
					}
					ans := SessionAnswer{Assignments: api.Assignments{Index: snap.Index(), Since: v.since, Delta: true}, Tables: tables}
					d := ans.Whole()
					if rapid.Bool().Draw(rt, "wire") {
						d = overTheWire(rt, ans)
					}
					got, err := v.view.Apply(d)
					if err != nil {
						rt.Fatal(err)
					}
					if !reflect.DeepEqual(normEndpoints(got.Endpoints), normEndpoints(wantEps)) {
						rt.Fatalf("view after delta since %d\n%+v\nwant\n%+v", v.since, got.Endpoints, wantEps)
					}
					if !reflect.DeepEqual(got.Nodes, wantNodes) {
						rt.Fatalf("view's nodes %+v, want %+v", got.Nodes, wantNodes)
					}
					v.since, v.mine = snap.Index(), now
				}
			}
		}
	})
}

// overTheWire is an answer as a worker reads it: the node's part encoded, the
// tables spliced in (as httpapi writes it), decoded.
func overTheWire(t interface{ Fatal(...any) }, ans SessionAnswer) api.Assignments {
	b, err := json.Marshal(ans.Assignments)
	if err != nil {
		t.Fatal(err)
	}
	if tables := ans.Tables.JSON(); len(tables) > 0 {
		b = append(append(append(b[:len(b)-1], ','), tables...), '}')
	}
	var out api.Assignments
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err, string(b))
	}
	return out
}

func snapService(snap Snapshot, id string) *api.Service {
	for _, s := range snap.Services() {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// Sessions are answered at once when their own tasks change, after the gap
// when only the tables do, and with everything when their index is unknown.
func TestSessionWaits(t *testing.T) {
	st := newFeedStore()
	st.putNode(mkNode("1"))
	st.putNode(mkNode("2"))
	web := mkService("web", 2)
	st.putService(web)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := NewDispatcher(ctx, st, nil)
	first, err := d.Session(ctx, "1", 0, time.Second)
	if err != nil || first.Delta || len(first.Tables.Nodes) != 2 {
		t.Fatalf("first call: %+v, %v; want the whole tables", first, err)
	}
	type result struct {
		a   SessionAnswer
		err error
		at  time.Duration
	}
	ask := func(node string, since uint64) chan result {
		ch := make(chan result, 1)
		t0 := time.Now()
		go func() {
			a, err := d.Session(ctx, node, since, 5*time.Second)
			ch <- result{a, err, time.Since(t0)}
		}()
		return ch
	}
	// Another node's task starting running changes the tables only: node 1
	// hears after the gap, with the new endpoint and not the other's task.
	wait := ask("1", first.Index)
	time.Sleep(10 * time.Millisecond)
	st.ApplyTaskOps(ctx, []api.TaskOp{{Kind: api.TaskOpCreate, Task: mkTask("t2", web, 1, "2", api.TaskRunning)}})
	r := <-wait
	if r.err != nil || !r.a.Delta || len(r.a.Tasks) != 0 || len(r.a.Tables.Endpoints) != 1 || len(r.a.Tables.Endpoints[0].Tasks) != 1 {
		t.Fatalf("after another node's task: %+v, %v", r.a, r.err)
	}
	if gap := globalGap(1); r.at < gap {
		t.Fatalf("answered after %s, before the gap %s", r.at, gap)
	}
	// A task assigned to node 1 is answered at once, whatever the gap.
	wait = ask("1", r.a.Index)
	time.Sleep(10 * time.Millisecond)
	t0 := time.Now()
	st.ApplyTaskOps(ctx, []api.TaskOp{{Kind: api.TaskOpCreate, Task: mkTask("t1", web, 2, "1", api.TaskAssigned)}})
	r = <-wait
	if r.err != nil || !r.a.Delta || len(r.a.Tasks) != 1 || r.a.Tasks[0].ID != "t1" || len(r.a.TaskIDs) != 1 {
		t.Fatalf("after its own task: %+v, %v", r.a, r.err)
	}
	if took := time.Since(t0); took > time.Second {
		t.Fatalf("its own task was answered after %s", took)
	}
	// An index the keeper never had gets everything at once.
	r = <-ask("1", 99999)
	if r.err != nil || r.a.Delta || len(r.a.Tables.Endpoints) != 1 {
		t.Fatalf("unknown index: %+v, %v", r.a, r.err)
	}
	// The leadership ending ends the session.
	wait = ask("1", r.a.Index)
	cancel()
	if r = <-wait; r.err == nil {
		t.Fatal("a session outlived its leadership")
	}
}
