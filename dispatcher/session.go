package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
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
}

type statusReport struct {
	ops    []api.TaskOp
	result chan error
}

// Status batching: wait this long for more reports once one arrives, and put at
// most this many ops in one entry.
const (
	statusGap    = 5 * time.Millisecond
	statusMaxOps = 2048
)

// NewDispatcher makes a dispatcher whose sessions and reports end with ctx (the
// leadership's context). Run must be running for reports to be applied.
func NewDispatcher(ctx context.Context, store SessionStore, log *slog.Logger) *Dispatcher {
	return &Dispatcher{store: store, log: log, reports: make(chan statusReport), lead: ctx}
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

// ReportStatus checks a report from nodeID and returns once it is committed as
// part of a batch.
func (d *Dispatcher) ReportStatus(ctx context.Context, nodeID string, ops []api.TaskOp) error {
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

// Run applies batched status reports until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
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
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := d.store.ApplyTaskOps(actx, ops)
		cancel()
		if err != nil {
			d.log.Warn("apply status batch", "reports", len(batch), "ops", n, "err", err)
		}
		for _, r := range batch {
			r.result <- err
		}
	}
}
