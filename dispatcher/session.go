package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// The dispatcher's side of a worker session: what a node is told to run, the
// endpoint table every node's DNS and balancer follow, and the check of what a
// worker reports back. The first three are pure functions of a snapshot; the
// Dispatcher adds the blocking wait and batches status reports into Raft entries.

// AssignmentsFor is what node nodeID is told at snap: its own record, the tasks it
// must run or stop, the endpoint table, every node (SRV targets, managers) and the
// Raft voters (how a demoted manager learns it was removed). ErrNotFound: the node is
// not (or no longer) in the cluster.
func AssignmentsFor(snap Snapshot, nodeID string, voters []string) (api.Assignments, error) {
	n := snap.Node(nodeID)
	if n == nil {
		return api.Assignments{}, fmt.Errorf("node %q is not part of the cluster (removed?): %w", nodeID, api.ErrNotFound)
	}
	out := api.Assignments{Index: snap.Index(), Node: n, Tasks: []*api.Task{}, Endpoints: Endpoints(snap)}
	for _, t := range snap.TasksByNode(nodeID) {
		// Terminal tasks are the worker's concern only until it has reported them.
		if t.Status.State.Terminal() && t.DesiredState >= api.TaskShutdown {
			continue
		}
		out.Tasks = append(out.Tasks, t)
	}
	for _, m := range snap.Nodes() {
		out.Nodes = append(out.Nodes, *m)
	}
	out.Voters = slices.Clone(voters)
	sort.Strings(out.Voters)
	imageInfo(snap, nodeID, out.Tasks, &out)
	fileValues(snap, out.Tasks, &out)
	return out, nil
}

// Endpoints is the discovery table: every service with the tasks that serve it.
func Endpoints(snap Snapshot) []api.ServiceEndpoints {
	nodes := map[string]*api.Node{}
	for _, n := range snap.Nodes() {
		nodes[n.ID] = n
	}
	out := []api.ServiceEndpoints{}
	for _, s := range snap.Services() {
		se := api.ServiceEndpoints{Service: s.Spec.Name, VIP: s.VIP, EndpointMode: s.Spec.EndpointMode, Ports: s.Ports, Tasks: []api.Endpoint{}}
		for _, t := range snap.TasksByService(s.ID) {
			if !TaskServes(t) {
				continue
			}
			n := nodes[t.NodeID]
			if n == nil || !n.TasksServe() {
				continue // a restarting node's tasks still serve (api/restart.go)
			}
			se.Tasks = append(se.Tasks, api.Endpoint{Service: s.Spec.Name, TaskID: t.ID, Slot: t.Slot, NodeID: t.NodeID,
				NodeIP: n.Addr, Addr: t.Status.Addr, Ports: slices.Clone(t.Status.Ports)})
		}
		out = append(out, se)
	}
	return out
}

// TaskServes says whether a task belongs in DNS and behind the VIP: running, meant
// to keep running (a task asked to stop leaves before it is stopped), and healthy
// if it has a health check (a task joins only once its check has passed, and
// leaves as soon as it fails).
func TaskServes(t *api.Task) bool {
	return t.Status.State == api.TaskRunning && t.DesiredState == api.TaskRunning && healthOK(t.Status.Health)
}

// CheckStatusReport vets what node nodeID reports: only status ops, only for tasks
// assigned to it. Ops for tasks that no longer exist are dropped (the report raced
// with the deletion of history); anything else wrong refuses the whole report, so
// nothing of a bad report is applied. The ops returned carry the node, so the FSM
// checks the assignment again where it applies them.
func CheckStatusReport(snap Snapshot, nodeID string, ops []api.TaskOp) ([]api.TaskOp, error) {
	if snap.Node(nodeID) == nil {
		return nil, fmt.Errorf("node %q is not part of the cluster: %w", nodeID, api.ErrNotFound)
	}
	out := make([]api.TaskOp, 0, len(ops))
	for _, op := range ops {
		if op.Kind != api.TaskOpStatus {
			return nil, fmt.Errorf("a worker may only report task status, not %q: %w", op.Kind, api.ErrForbidden)
		}
		// One lookup per op: a report is checked against the tasks it names, not
		// against every task of the cluster.
		t := snap.Task(op.TaskID)
		if t == nil {
			continue
		}
		if t.NodeID != nodeID {
			return nil, fmt.Errorf("task %s is not assigned to node %s: %w", op.TaskID, nodeID, api.ErrForbidden)
		}
		if op.Status.State < api.TaskAssigned || op.Status.State == api.TaskOrphaned {
			return nil, fmt.Errorf("task %s: a worker cannot report state %s: %w", op.TaskID, op.Status.State, api.ErrInvalid)
		}
		op.NodeID = nodeID
		out = append(out, op)
	}
	return out, nil
}

// SessionStore is what serving sessions needs from the replicated state.
type SessionStore interface {
	Store
	// WaitIndex returns once the state is past index or ctx ends.
	WaitIndex(ctx context.Context, index uint64)
	// Voters lists the Raft voters' node IDs.
	Voters() ([]string, error)
	// ChangedSince names what the entries after index changed, and the index it
	// reaches; ok false when it no longer reaches back that far.
	ChangedSince(index uint64) (changed []Change, upto uint64, ok bool)
}

// Dispatcher serves worker sessions on the leader for one term of leadership:
// blocking assignment reads, and status reports from many workers merged into one
// Raft entry per short window (SwarmKit batches on the manager the same way).
type Dispatcher struct {
	store   SessionStore
	log     *slog.Logger
	reports chan statusReport
	lead    context.Context // the leadership this dispatcher serves
	open    openSessions
	tables  *tableKeeper
	follow  sync.Once // starts the keeper's loop
	started time.Time
}

type statusReport struct {
	ops    []api.TaskOp
	result chan error
}

// Status batching: wait this long for more reports once one arrives, and put at
// most this many ops in one entry.
const (
	statusGap    = 5 * time.Millisecond
	statusMaxOps = 1024
)

// NewDispatcher makes a dispatcher whose sessions and reports end with ctx (the
// leadership's context). Run must be running for reports to be applied.
func NewDispatcher(ctx context.Context, store SessionStore, log *slog.Logger) *Dispatcher {
	return &Dispatcher{store: store, log: log, reports: make(chan statusReport), lead: ctx, tables: newTableKeeper(store), started: time.Now()}
}

// Assignments waits (at most wait) until the state is past index, then answers
// what nodeID must run. It ends early, with ErrNotLeader, when the leadership ends:
// a deposed leader's state stops moving.
func (d *Dispatcher) Assignments(ctx context.Context, nodeID string, index uint64, wait time.Duration) (api.Assignments, error) {
	defer d.open.enter(nodeID)()
	if index > 0 && wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		stop := context.AfterFunc(d.lead, cancel)
		d.store.WaitIndex(wctx, index)
		stop()
		cancel()
	}
	if d.lead.Err() != nil {
		return api.Assignments{}, fmt.Errorf("leadership lost: %w", api.ErrNotLeader)
	}
	voters, err := d.store.Voters()
	if err != nil {
		return api.Assignments{}, fmt.Errorf("read voters: %w", api.ErrNotLeader)
	}
	return AssignmentsFor(d.store.Snapshot(), nodeID, voters)
}

// SessionAnswer is what Session answers: the node's own part (its record, its
// tasks, the voters, image help) and the tables every node shares, either whole
// or (Delta) what changed since the index the worker sent.
type SessionAnswer struct {
	api.Assignments // Endpoints, Nodes and their Gone lists empty: they are in Tables
	Tables          *Tables
}

// Whole folds the tables into the assignments (for a caller in process).
func (a SessionAnswer) Whole() api.Assignments {
	out := a.Assignments
	out.Endpoints, out.EndpointsGone, out.Nodes, out.NodesGone = a.Tables.Endpoints, a.Tables.EndpointsGone, a.Tables.Nodes, a.Tables.NodesGone
	return out
}

// globalGap is how long a session whose worker's own assignments did not change
// waits, after its request came in, before it is answered with table changes:
// those come with nearly every entry while tasks start, and answering each
// would answer every node many times a second. It grows with the sessions
// open, so the rate of such answers stays about the same however many nodes
// there are: 20 ms for ten nodes, 100 ms for a hundred, a second for a
// thousand (DNS then follows within about a second, as Swarm's gossiped tables
// do). Changes to a node's own tasks are answered at once.
func globalGap(sessions int) time.Duration {
	return min(2*time.Second, max(20*time.Millisecond, time.Duration(sessions)*time.Millisecond))
}

// Session is the blocking session read for workers that take deltas: it answers
// at once if the worker's index is unknown here (its first call, a new leader,
// too far behind: the whole tables), at once if the node's own assignments
// changed since, after globalGap if only the tables did, and otherwise when wait
// runs out. It ends early with ErrNotLeader when the leadership ends.
func (d *Dispatcher) Session(ctx context.Context, nodeID string, since uint64, wait time.Duration) (SessionAnswer, error) {
	defer d.open.enter(nodeID)()
	d.follow.Do(func() {
		d.tables.advance()
		go d.followTables()
	})
	start := time.Now()
	deadline := start.Add(wait)
	for since > 0 && wait > 0 {
		known, urgent, global, urgentCh, globalCh := d.tables.pending(nodeID, since)
		if !known || urgent {
			break
		}
		next := deadline
		if global {
			next = start.Add(globalGap(d.Sessions()))
			globalCh = nil
		}
		if !time.Now().Before(next) {
			break
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case <-urgentCh:
		case <-globalCh:
		case <-timer.C:
		case <-ctx.Done():
		case <-d.lead.Done():
		}
		timer.Stop()
		if ctx.Err() != nil || d.lead.Err() != nil {
			break
		}
	}
	if d.lead.Err() != nil {
		return SessionAnswer{}, fmt.Errorf("leadership lost: %w", api.ErrNotLeader)
	}
	if err := ctx.Err(); err != nil {
		return SessionAnswer{}, err
	}
	voters, err := d.store.Voters()
	if err != nil {
		return SessionAnswer{}, fmt.Errorf("read voters: %w", api.ErrNotLeader)
	}
	snap, tables, delta := d.tables.answer(since)
	return sessionFor(snap, nodeID, since, delta, voters, tables)
}

// sessionFor is the node's part of a session answer at snap.
func sessionFor(snap Snapshot, nodeID string, since uint64, delta bool, voters []string, tables *Tables) (SessionAnswer, error) {
	n := snap.Node(nodeID)
	if n == nil {
		return SessionAnswer{}, fmt.Errorf("node %q is not part of the cluster (removed?): %w", nodeID, api.ErrNotFound)
	}
	out := api.Assignments{Index: snap.Index(), Node: n, Tasks: []*api.Task{}, Delta: delta}
	var mine []*api.Task
	for _, t := range snap.TasksByNode(nodeID) {
		if !listed(t) {
			continue
		}
		mine = append(mine, t)
		if delta {
			out.TaskIDs = append(out.TaskIDs, t.ID)
			if t.ModifyIndex <= since {
				continue
			}
		}
		out.Tasks = append(out.Tasks, t)
	}
	if delta {
		out.Since = since
	}
	out.Voters = slices.Clone(voters)
	sort.Strings(out.Voters)
	imageInfo(snap, nodeID, mine, &out)
	// Whole on every answer, delta or not: a worker keeps no values of its own
	// between answers (they are few, and only its live tasks').
	fileValues(snap, mine, &out)
	return SessionAnswer{Assignments: out, Tables: tables}, nil
}

// followTables moves the tables forward at every change, for this leadership.
func (d *Dispatcher) followTables() {
	for {
		watch := d.store.Watch()
		d.tables.advance()
		select {
		case <-watch:
		case <-d.lead.Done():
			return
		}
	}
}

// Heard records that nodeID's session answer reached it (its transport wrote
// it): a slow reader is alive while it reads.
func (d *Dispatcher) Heard(nodeID string) { d.open.touch(nodeID) }

// ReportStatus checks a report from nodeID and returns once it is committed as
// part of a batch.
func (d *Dispatcher) ReportStatus(ctx context.Context, nodeID string, ops []api.TaskOp) error {
	d.open.touch(nodeID)
	ops, err := CheckStatusReport(d.store.Snapshot(), nodeID, ops)
	if err != nil || len(ops) == 0 {
		return err
	}
	rep := statusReport{ops: ops, result: make(chan error, 1)}
	select {
	case d.reports <- rep:
	case <-ctx.Done():
		return fmt.Errorf("report status: %w", ctx.Err())
	case <-d.lead.Done():
		return fmt.Errorf("leadership lost: %w", api.ErrNotLeader)
	}
	select {
	case err := <-rep.result:
		return err
	case <-ctx.Done():
		return fmt.Errorf("report status: %v: %w", ctx.Err(), api.ErrOutcomeUnknown)
	}
}

// statusInFlight is how many status batches may wait for their commit at once:
// Raft commits concurrent proposals together, so while one batch waits on its
// round trip the next is gathered and proposed, instead of every worker's report
// queueing behind one commit (status only moves forward, so batches committing
// in another order lose nothing).
const statusInFlight = 4

// Run applies batched status reports until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	inflight := make(chan struct{}, statusInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var batch []statusReport
		select {
		case <-ctx.Done():
			return nil
		case r := <-d.reports:
			batch = append(batch, r)
		}
		n := len(batch[0].ops)
		timer := time.NewTimer(statusGap)
	gather:
		for n < statusMaxOps {
			select {
			case r := <-d.reports:
				batch = append(batch, r)
				n += len(r.ops)
			case <-timer.C:
				break gather
			case <-ctx.Done():
				break gather
			}
		}
		timer.Stop()
		ops := make([]api.TaskOp, 0, n)
		for _, r := range batch {
			ops = append(ops, r.ops...)
		}
		select {
		case inflight <- struct{}{}:
		case <-ctx.Done():
			for _, r := range batch {
				r.result <- fmt.Errorf("leadership lost: %w", api.ErrNotLeader)
			}
			return nil
		}
		wg.Add(1)
		go func() {
			defer func() { <-inflight; wg.Done() }()
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := d.store.ApplyTaskOps(actx, ops)
			cancel()
			if err != nil {
				d.log.Warn("apply status batch", "reports", len(batch), "ops", len(ops), "err", err)
			}
			for _, r := range batch {
				r.result <- err
			}
		}()
	}
}
