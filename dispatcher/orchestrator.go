package dispatcher

import (
	"cmp"
	"slices"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// HistoryPerSlot is how many terminal tasks each slot keeps for `service ps`; older
// ones are deleted so the store stays bounded however often a task crashes.
const HistoryPerSlot = 5

// maxHistoryPerSlot caps the longer history kept when a restart window needs more
// tasks to count attempts in.
const maxHistoryPerSlot = 50

// Reconcile compares one service with its tasks and returns the task ops that move
// the cluster toward the spec. It is pure: time and new task IDs are passed in, and
// applying its ops and calling it again on the result returns no ops (until time
// passes a restart delay), which is what keeps the control loop from writing in a loop.
//
// next, when not zero, is the earliest time at which Reconcile would decide
// differently with no change to the store (a restart delay or window expiring); the
// caller should look again then.
//
// tasks are the service's tasks, terminal history included.
func Reconcile(svc *api.Service, nodes []*api.Node, tasks []*api.Task, now time.Time, newID func() string) (ops []api.TaskOp, next time.Time) {
	r := newReconciler(svc, nodes, now, newID)
	if svc.Spec.Mode == api.ModeGlobal {
		r.global(tasks)
	} else {
		r.replicated(tasks)
	}
	return r.ops, r.next
}

// Remove returns the ops that wind down the tasks of a deleted service: every task
// is asked to shut down, tasks on lost nodes are marked orphaned, tasks that never
// reached a node are stopped at once, and terminal tasks are deleted (no `service ps`
// can show them any more). Like Reconcile, applying its ops and calling it again
// returns nothing new until a worker reports a task stopped.
func Remove(nodes []*api.Node, tasks []*api.Task, now time.Time) []api.TaskOp {
	r := newReconciler(nil, nodes, now, nil)
	tasks = slices.Clone(tasks)
	slices.SortFunc(tasks, func(a, b *api.Task) int { return cmp.Compare(a.ID, b.ID) })
	for _, t := range tasks {
		st := r.orphanIfLost(t)
		if !st.Terminal() {
			st = r.stop(t, st)
		}
		if st.Terminal() {
			r.ops = append(r.ops, api.TaskOp{Kind: api.TaskOpDelete, TaskID: t.ID, At: now})
		}
	}
	return r.ops
}

type reconciler struct {
	svc   *api.Service
	nodes map[string]*api.Node
	now   time.Time
	newID func() string
	ops   []api.TaskOp
	next  time.Time
	// state is each task's observed state after the ops emitted so far.
	state map[string]api.TaskState
	// updates are slots whose running task has an older spec version, waiting for
	// their turn in the rolling update.
	updates []slotRef
	busy    bool // a task at the current spec version is placed and still starting
}

type slotRef struct {
	cur    *api.Task
	slot   uint64
	nodeID string
}

func newReconciler(svc *api.Service, nodes []*api.Node, now time.Time, newID func() string) *reconciler {
	r := &reconciler{svc: svc, nodes: make(map[string]*api.Node, len(nodes)), now: now, newID: newID, state: map[string]api.TaskState{}}
	for _, n := range nodes {
		r.nodes[n.ID] = n
	}
	return r
}

func (r *reconciler) replicated(tasks []*api.Task) {
	bySlot := map[uint64][]*api.Task{}
	for _, t := range tasks {
		bySlot[t.Slot] = append(bySlot[t.Slot], t)
	}
	want := r.svc.Spec.Replicas
	slots := make([]uint64, 0, len(bySlot)+int(want))
	for s := uint64(1); s <= want; s++ {
		slots = append(slots, s)
	}
	for s := range bySlot {
		if s == 0 || s > want {
			slots = append(slots, s)
		}
	}
	slices.Sort(slots)
	for _, s := range slots {
		ts := bySlot[s]
		cur := r.current(ts)
		switch {
		case s == 0 || s > want:
			// Scale down: the highest slots go, so the survivors keep 1..N.
			if cur != nil {
				r.stop(cur, r.state[cur.ID])
			}
		case cur == nil:
			r.create(s, "", maxAttempt(ts))
		default:
			r.keep(cur, ts, s, "")
		}
		r.prune(ts, cur)
	}
	r.rollingUpdate(tasks)
}

func (r *reconciler) global(tasks []*api.Task) {
	byNode := map[string][]*api.Task{}
	for _, t := range tasks {
		id := pinnedNode(t)
		byNode[id] = append(byNode[id], t)
	}
	keys := make([]string, 0, len(r.nodes)+len(byNode))
	for id := range r.nodes {
		keys = append(keys, id)
	}
	for id := range byNode {
		if r.nodes[id] == nil {
			keys = append(keys, id)
		}
	}
	slices.Sort(keys)
	for _, id := range keys {
		ts := byNode[id]
		cur := r.current(ts)
		n := r.nodes[id]
		switch {
		case n == nil || !r.globalEligible(n):
			// Down, drained, removed, or no longer matching the constraints: the
			// node's task goes and nothing replaces it.
			if cur != nil {
				r.stop(cur, r.state[cur.ID])
			}
		case cur == nil:
			// Pause takes nothing new; the node gets its task once it is active.
			if isActive(n) {
				r.create(0, id, maxAttempt(ts))
			}
		default:
			r.keep(cur, ts, 0, id)
		}
		r.prune(ts, cur)
	}
	r.rollingUpdate(tasks)
}

func (r *reconciler) globalEligible(n *api.Node) bool {
	return n.Status == api.NodeReady && n.Availability != api.AvailabilityDrain && r.constraintsHold(n)
}

func isActive(n *api.Node) bool {
	return n.Availability == api.AvailabilityActive || n.Availability == ""
}

// current returns the task that holds the slot: the newest one still meant to run.
// Every other task of the slot is history or on its way out. It first marks tasks on
// lost nodes orphaned, so the decisions below see them as terminal.
func (r *reconciler) current(ts []*api.Task) *api.Task {
	var cur *api.Task
	for _, t := range ts {
		r.state[t.ID] = r.orphanIfLost(t)
		if t.DesiredState > api.TaskRunning {
			continue
		}
		if cur == nil || newer(t, cur) {
			cur = t
		}
	}
	// Two live tasks in one slot should not happen; if a bug or a race made them,
	// keep the newest rather than let both run.
	for _, t := range ts {
		if t != cur && t.DesiredState <= api.TaskRunning {
			r.state[t.ID] = r.stop(t, r.state[t.ID])
		}
	}
	return cur
}

func newer(a, b *api.Task) bool {
	return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.Attempt, b.Attempt), cmp.Compare(a.ID, b.ID)) > 0
}

// keep decides about a slot's current task on a node that may still hold it.
func (r *reconciler) keep(cur *api.Task, history []*api.Task, slot uint64, nodeID string) {
	st := r.state[cur.ID]
	if st.Terminal() {
		if st == api.TaskOrphaned {
			// The node failed, not the task: replace it at once, whatever the restart
			// policy, and without counting an attempt.
			r.replace(cur, slot, nodeID, cur.Attempt)
			return
		}
		r.restart(cur, history, slot, nodeID)
		return
	}
	if cur.NodeID != "" && st >= api.TaskAssigned && nodeID == "" {
		n := r.nodes[cur.NodeID]
		if n.Availability == api.AvailabilityDrain || !r.constraintsHold(n) {
			// Start the replacement now rather than after the old task stops: the
			// scheduler keeps the old one's resources until then, and the service is
			// short of a replica for less time.
			r.replace(cur, slot, nodeID, cur.Attempt)
			return
		}
	}
	if cur.SpecVersion < r.svc.SpecVersion {
		if st <= api.TaskPending {
			// Not running anywhere yet: nothing to roll, replace it now.
			r.replace(cur, slot, nodeID, cur.Attempt)
			return
		}
		r.updates = append(r.updates, slotRef{cur, slot, nodeID})
		return
	}
	if st == api.TaskAssigned || st == api.TaskPreparing || st == api.TaskStarting {
		r.busy = true
	}
}

// rollingUpdate replaces one outdated task at a time: only when no task of the
// service is on a node and still starting or still stopping. A bad spec then stops
// at one broken slot instead of taking all of them down. Tasks waiting for a node
// do not hold the update back, since they may wait forever.
func (r *reconciler) rollingUpdate(tasks []*api.Task) {
	if r.busy || len(r.updates) == 0 {
		return
	}
	for _, t := range tasks {
		if st := r.state[t.ID]; t.DesiredState > api.TaskRunning && st >= api.TaskAssigned && !st.Terminal() {
			return
		}
	}
	u := r.updates[0]
	r.replace(u.cur, u.slot, u.nodeID, u.cur.Attempt)
}

// restart applies the restart policy to a slot whose current task has ended.
func (r *reconciler) restart(cur *api.Task, history []*api.Task, slot uint64, nodeID string) {
	pol := r.svc.Spec.RestartPolicy
	switch pol.Condition {
	case api.RestartNone:
		return
	case api.RestartOnFailure:
		if cur.Status.State == api.TaskComplete {
			return
		}
	}
	if pol.MaxAttempts > 0 {
		if pol.Window <= 0 {
			if cur.Attempt >= pol.MaxAttempts {
				return
			}
		} else if n, oldest := restartsSince(history, cur.Attempt, r.now.Add(-pol.Window)); n >= pol.MaxAttempts {
			// The window slides: once the oldest counted restart leaves it, try again.
			r.wake(oldest.Add(pol.Window))
			return
		}
	}
	if at := cur.Status.Timestamp.Add(pol.Delay); r.now.Before(at) {
		r.wake(at)
		return
	}
	r.replace(cur, slot, nodeID, cur.Attempt+1)
}

// restartsSince counts the slot's restarts that happened after since. Attempt numbers
// rise by one per restart and are carried by other replacements (drain, node down,
// update), so the first task created with each attempt number is that restart.
func restartsSince(history []*api.Task, attempt uint64, since time.Time) (n uint64, oldest time.Time) {
	first := map[uint64]time.Time{}
	for _, t := range history {
		if t.Attempt == 0 || t.Attempt > attempt {
			continue
		}
		if at, ok := first[t.Attempt]; !ok || t.CreatedAt.Before(at) {
			first[t.Attempt] = t.CreatedAt
		}
	}
	for _, at := range first {
		if at.After(since) {
			n++
			if oldest.IsZero() || at.Before(oldest) {
				oldest = at
			}
		}
	}
	return n, oldest
}

func maxAttempt(ts []*api.Task) uint64 {
	var m uint64
	for _, t := range ts {
		m = max(m, t.Attempt)
	}
	return m
}

func (r *reconciler) wake(at time.Time) {
	if r.next.IsZero() || at.Before(r.next) {
		r.next = at
	}
}

func (r *reconciler) constraintsHold(n *api.Node) bool {
	for _, expr := range r.svc.Spec.Constraints {
		c, err := api.ParseConstraint(expr)
		if err != nil || !constraintHolds(c, n) {
			return false
		}
	}
	return true
}

// orphanIfLost marks a task orphaned when the node it was given to is down or gone:
// no worker will ever report on it again. It returns the task's state after that.
func (r *reconciler) orphanIfLost(t *api.Task) api.TaskState {
	st := t.Status.State
	if t.NodeID == "" || st < api.TaskAssigned || st.Terminal() {
		return st
	}
	msg := ""
	switch n := r.nodes[t.NodeID]; {
	case n == nil:
		msg = "node removed"
	case n.Status == api.NodeDown:
		msg = "node down"
	default:
		return st
	}
	r.ops = append(r.ops, api.TaskOp{Kind: api.TaskOpStatus, TaskID: t.ID, At: r.now,
		Status: api.TaskStatus{State: api.TaskOrphaned, Message: msg, Timestamp: r.now}})
	return api.TaskOrphaned
}

// stop asks a task to shut down. A task that never reached a node has no worker to
// report its end, so the orchestrator records it as shut down itself.
func (r *reconciler) stop(t *api.Task, st api.TaskState) api.TaskState {
	if t.DesiredState < api.TaskShutdown {
		r.ops = append(r.ops, api.TaskOp{Kind: api.TaskOpDesired, TaskID: t.ID, Desired: api.TaskShutdown, At: r.now})
	}
	if st <= api.TaskPending {
		r.ops = append(r.ops, api.TaskOp{Kind: api.TaskOpStatus, TaskID: t.ID, At: r.now,
			Status: api.TaskStatus{State: api.TaskShutdown, Message: "shut down before it was placed", Timestamp: r.now}})
		st = api.TaskShutdown
	}
	if r.state != nil {
		r.state[t.ID] = st
	}
	return st
}

func (r *reconciler) replace(cur *api.Task, slot uint64, nodeID string, attempt uint64) {
	r.stop(cur, r.state[cur.ID])
	r.create(slot, nodeID, attempt)
}

// create adds a task for the slot (replicated) or node (global) from the current spec.
// New tasks are always in state new with no node: the scheduler places them.
func (r *reconciler) create(slot uint64, nodeID string, attempt uint64) {
	spec := r.svc.Spec
	if nodeID != "" {
		// A global task is bound to its node by a constraint rather than a preset
		// NodeID: the FSM assigns only unplaced tasks, and the scheduler still checks
		// that the node is ready, active and has room.
		spec.Constraints = append(slices.Clone(spec.Constraints), "node.id=="+nodeID)
	}
	t := &api.Task{
		ID:           r.newID(),
		ServiceID:    r.svc.ID,
		ServiceName:  r.svc.Spec.Name,
		Slot:         slot,
		Spec:         spec,
		SpecVersion:  r.svc.SpecVersion,
		DesiredState: api.TaskRunning,
		Status:       api.TaskStatus{State: api.TaskNew, Message: "created", Timestamp: r.now},
		Attempt:      attempt,
		CreatedAt:    r.now,
	}
	r.ops = append(r.ops, api.TaskOp{Kind: api.TaskOpCreate, TaskID: t.ID, Task: t, At: r.now})
}

// prune deletes a slot's terminal tasks beyond the most recent few. The current task
// stays even when terminal: it records why the slot is not running.
func (r *reconciler) prune(ts []*api.Task, cur *api.Task) {
	keep := HistoryPerSlot
	if pol := r.svc.Spec.RestartPolicy; pol.Window > 0 && pol.MaxAttempts > 0 {
		// Counting attempts within the window needs the tasks that made them.
		keep = int(min(max(uint64(keep), pol.MaxAttempts+1), maxHistoryPerSlot))
	}
	var done []*api.Task
	for _, t := range ts {
		if t.Status.State.Terminal() {
			done = append(done, t)
		}
	}
	if len(done) <= keep {
		return
	}
	slices.SortFunc(done, func(a, b *api.Task) int {
		if newer(a, b) {
			return -1
		}
		return 1
	})
	for _, t := range done[keep:] {
		if t != cur {
			r.ops = append(r.ops, api.TaskOp{Kind: api.TaskOpDelete, TaskID: t.ID, At: r.now})
		}
	}
}
