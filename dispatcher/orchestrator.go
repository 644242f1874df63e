package dispatcher

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// HistoryPerSlot is how many terminal tasks each slot keeps for `service ps`; older
// ones are deleted so the store stays bounded however often a task crashes.
const HistoryPerSlot = 5

// maxHistoryPerSlot caps the longer history kept when a restart window needs more
// tasks to count attempts in.
const maxHistoryPerSlot = 50

// Plan is what Reconcile decided about one service.
type Plan struct {
	// Ops are the task changes, committed as one batch.
	Ops []api.TaskOp
	// Update, when set, is a decision of the service's rolling update (paused,
	// completed, rolled back), written after Ops. A rollback comes alone: the
	// pass after it plans on the spec it returned to.
	Update *api.UpdateOp
	// Next, when not zero, is the earliest time at which Reconcile would decide
	// differently with no change to the store (a restart delay, an update delay or
	// monitor window running out); the caller should look again then.
	Next time.Time
}

// Reconcile compares one service with its tasks and returns what moves the cluster
// toward the spec: task ops, and the rolling update's progress. It is pure: time
// and new task IDs are passed in, and applying its ops and calling it again on the
// result returns nothing (until time passes a delay, or but for a rollback, which
// changes the spec), which is what keeps the control loop from writing in a loop.
// The update's state lives in the store (the service's UpdateStatus, the tasks),
// so a new leader carries an update on where the old one left it.
//
// tasks are the service's tasks, terminal history included.
func Reconcile(svc *api.Service, nodes []*api.Node, tasks []*api.Task, now time.Time, newID func() string) Plan {
	r := newReconciler(svc, nodes, now, newID)
	switch svc.Spec.Mode {
	case api.ModeReplicatedJob:
		r.replicatedJob(tasks) // jobs.go; a job has no rolling update
		return Plan{Ops: r.ops, Next: r.next}
	case api.ModeGlobalJob:
		r.globalJob(tasks)
		return Plan{Ops: r.ops, Next: r.next}
	case api.ModeGlobal:
		r.global(tasks)
	default:
		r.replicated(tasks)
	}
	r.rollingUpdate(tasks)
	return Plan{Ops: r.ops, Update: r.update, Next: r.next}
}

// Remove returns the ops that wind down the tasks of a deleted service: every task
// is asked to shut down, tasks on lost nodes are marked orphaned, tasks that never
// reached a node are stopped at once, and terminal tasks are deleted (no `service ps`
// can show them any more). Like Reconcile, applying its ops and calling it again
// returns nothing new until a worker reports a task stopped.
func Remove(nodes []*api.Node, tasks []*api.Task, now time.Time) []api.TaskOp {
	ops, _ := removePlan(nodes, tasks, now)
	return ops
}

// removePlan is Remove with the time to look again (a restarting node's grace
// running out: its tasks are then orphaned and can go).
func removePlan(nodes []*api.Node, tasks []*api.Task, now time.Time) ([]api.TaskOp, time.Time) {
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
	return r.ops, r.next
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
	// slots are the service's wanted slots (replicated) or eligible nodes (global)
	// as the rolling update sees them.
	slots []slotState
	// sameSpec memoizes, per spec version, whether tasks made at it run what the
	// service's spec says (every task of one version was made from one spec).
	sameSpec    map[uint64]bool
	update      *api.UpdateOp
	created     int // tasks created so far in this pass
	lastCreated *api.Task
	stopped     map[string]bool // tasks asked to stop in this pass
}

func newReconciler(svc *api.Service, nodes []*api.Node, now time.Time, newID func() string) *reconciler {
	r := &reconciler{svc: svc, nodes: make(map[string]*api.Node, len(nodes)), now: now, newID: newID, state: map[string]api.TaskState{},
		sameSpec: map[uint64]bool{}, stopped: map[string]bool{}}
	for _, n := range nodes {
		r.nodes[n.ID] = n
	}
	return r
}

func (r *reconciler) replicated(tasks []*api.Task) {
	r.state = make(map[string]api.TaskState, len(tasks))
	r.slots = make([]slotState, 0, r.svc.Spec.Replicas)
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
		cur, old := r.current(ts)
		switch {
		case s == 0 || s > want:
			// Scale down: the highest slots go, so the survivors keep 1..N.
			for _, t := range []*api.Task{cur, old} {
				if t != nil {
					r.stop(t, r.state[t.ID])
				}
			}
		case cur == nil:
			r.create(s, "", maxAttempt(ts), hold{})
			r.slots = append(r.slots, slotState{slot: s}) // on its way: counts as updating
		default:
			r.keep(cur, old, ts, s, "")
		}
		r.prune(ts, cur)
	}
}

func (r *reconciler) global(tasks []*api.Task) {
	r.state = make(map[string]api.TaskState, len(tasks))
	r.slots = make([]slotState, 0, len(r.nodes))
	byNode, keys := r.tasksByNode(tasks)
	for _, id := range keys {
		ts := byNode[id]
		cur, old := r.current(ts)
		n := r.nodes[id]
		switch {
		case n == nil || !r.globalEligible(n):
			// Down, drained, removed, or no longer matching the constraints: the
			// node's task goes and nothing replaces it.
			for _, t := range []*api.Task{cur, old} {
				if t != nil {
					r.stop(t, r.state[t.ID])
				}
			}
		case cur != nil && !isActive(n) && r.state[cur.ID] <= api.TaskPending:
			// Paused: a task not yet placed there never will be; it goes, and the
			// node gets a new one once it is active. A task it still runs stays.
			r.stop(cur, r.state[cur.ID])
			if old != nil {
				r.keep(old, nil, ts, 0, id)
			}
		case cur == nil:
			// Pause takes nothing new; the node gets its task once it is active
			// (and a restarting one once it is back).
			if isActive(n) && n.Status == api.NodeReady {
				r.create(0, id, maxAttempt(ts), hold{})
				r.slots = append(r.slots, slotState{nodeID: id})
			}
		default:
			r.keep(cur, old, ts, 0, id)
		}
		r.prune(ts, cur)
	}
}

func (r *reconciler) globalEligible(n *api.Node) bool {
	// A restarting node keeps its task: it still runs (api/restart.go).
	up := n.Status == api.NodeReady || n.Restarting(r.now)
	return up && n.Availability != api.AvailabilityDrain && r.constraintsHold(n) && engineHonours(&r.svc.Spec, n)
}

func isActive(n *api.Node) bool {
	return n.Availability == api.AvailabilityActive || n.Availability == ""
}

// current returns the task that holds the slot: the newest one still meant to run
// that runs the service's spec (or, if none does, the newest). Every other task of
// the slot is history or on its way out, but for one: during a start-first update,
// old is the outdated task that keeps serving until cur, the new one, serves. It
// first marks tasks on lost nodes orphaned, so the decisions below see them as
// terminal.
func (r *reconciler) current(ts []*api.Task) (cur, old *api.Task) {
	var live []*api.Task
	for _, t := range ts {
		r.state[t.ID] = r.orphanIfLost(t)
		if t.DesiredState <= api.TaskRunning {
			live = append(live, t)
		}
	}
	switch len(live) {
	case 0:
		return nil, nil
	case 1:
		return live[0], nil // the usual case: nothing to choose between
	}
	// A rollback makes the newest task of a slot the outdated one: prefer the task
	// that runs the spec, so a good old task is not stopped for a bad new one.
	slices.SortFunc(live, func(a, b *api.Task) int {
		if oa, ob := r.outdated(a), r.outdated(b); oa != ob {
			if oa {
				return 1
			}
			return -1
		}
		if newer(a, b) {
			return -1
		}
		return 1
	})
	cur = live[0]
	for _, t := range live[1:] {
		if old == nil && r.overlaps(cur, t) {
			old = t
			continue
		}
		// Two live tasks in one slot, start-first aside, should not happen; if a bug
		// or a race made them, keep one rather than let both run.
		r.state[t.ID] = r.stop(t, r.state[t.ID])
	}
	if old != nil && r.state[cur.ID].Terminal() {
		// The new task of a start-first slot ended; the old one still serves and
		// keeps the slot. The failure counts against the update, which tries the
		// slot again if it goes on.
		r.stop(cur, r.state[cur.ID])
		cur, old = old, nil
	}
	return cur, old
}

// overlaps: o is the outdated task a start-first update keeps running while n, the
// slot's new task, gets ready.
func (r *reconciler) overlaps(n, o *api.Task) bool {
	return !r.outdated(n) && r.outdated(o) && !r.ready(n) && r.state[o.ID] == api.TaskRunning
}

// outdated reports whether a task runs something other than the service's spec. A
// change of replicas or of the update settings moves no task, and after a rollback
// the tasks never updated are current again.
func (r *reconciler) outdated(t *api.Task) bool {
	if t.SpecVersion == r.svc.SpecVersion {
		return false
	}
	same, ok := r.sameSpec[t.SpecVersion]
	if !ok {
		spec := t.Spec
		if (r.svc.Spec.Mode == api.ModeGlobal || r.svc.Spec.Mode == api.ModeGlobalJob) && len(spec.Constraints) > 0 && strings.HasPrefix(spec.Constraints[len(spec.Constraints)-1], "node.id==") {
			spec.Constraints = spec.Constraints[:len(spec.Constraints)-1] // the pin create adds
		}
		same = api.SameTaskSpec(spec, r.svc.Spec)
		r.sameSpec[t.SpecVersion] = same
	}
	return !same
}

// ready: the task serves (running, meant to, and healthy if it has a check).
func (r *reconciler) ready(t *api.Task) bool {
	return r.state[t.ID] == api.TaskRunning && t.DesiredState == api.TaskRunning && healthOK(t.Status.Health)
}

func healthOK(h api.Health) bool { return h == "" || h == api.HealthNone || h == api.HealthHealthy }

func newer(a, b *api.Task) bool {
	return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.Attempt, b.Attempt), cmp.Compare(a.ID, b.ID)) > 0
}

// keep decides about a slot's current task on a node that may still hold it.
func (r *reconciler) keep(cur, old *api.Task, history []*api.Task, slot uint64, nodeID string) {
	defer r.record(cur, old, history, slot, nodeID, r.created)
	st := r.state[cur.ID]
	if st.Terminal() {
		if st == api.TaskOrphaned {
			// The node failed, not the task: replace it at once, whatever the restart
			// policy, and without counting an attempt.
			r.replace(cur, slot, nodeID, cur.Attempt, hold{})
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
			r.replace(cur, slot, nodeID, cur.Attempt, hold{})
			return
		}
	}
	if r.outdated(cur) && st <= api.TaskPending {
		// Not running anywhere yet: nothing to roll, replace it now.
		r.replace(cur, slot, nodeID, cur.Attempt, hold{})
		return
	}
	if cur.DesiredState == api.TaskReady {
		r.release(cur, history)
	}
}

// release lets a held task start once its restart time has come and no older task
// of its slot is still stopping (stop-first: the old one must be gone first).
func (r *reconciler) release(t *api.Task, slot []*api.Task) {
	if r.now.Before(t.RestartAt) {
		r.wake(t.RestartAt)
		return
	}
	if stoppingIn(r, slot, t) {
		return // its stop report wakes the loop
	}
	r.ops = append(r.ops, api.TaskOp{Kind: api.TaskOpDesired, TaskID: t.ID, Desired: api.TaskRunning, At: r.now})
}

// stoppingIn reports whether a task of the slot other than t is placed, asked to
// stop and not yet stopped.
func stoppingIn(r *reconciler, slot []*api.Task, t *api.Task) bool {
	for _, o := range slot {
		if st := r.state[o.ID]; o != t && (o.DesiredState > api.TaskRunning || r.stopped[o.ID]) && st >= api.TaskAssigned && !st.Terminal() {
			return true
		}
	}
	return false
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
	loop := crashLoop(cur)
	delay := RestartBackoff(loop)
	if pol.Delay != nil {
		delay = *pol.Delay
	}
	h := hold{crashLoop: loop}
	if at := cur.Status.Timestamp.Add(delay); r.now.Before(at) {
		// The replacement exists at once, held until then, so `service ps` shows
		// why the slot waits and until when.
		h.until = at
		h.msg = fmt.Sprintf("restart delayed %s until %s", delay, at.UTC().Format(time.RFC3339))
		if pol.Delay == nil {
			h.msg = fmt.Sprintf("restart backoff: %d quick exits in a row; next try in %s, at %s", loop, delay, at.UTC().Format(time.RFC3339))
		}
		r.wake(at)
	}
	r.replace(cur, slot, nodeID, cur.Attempt+1, h)
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
	case n.Restarting(r.now):
		// Its daemon said it restarts: the task still runs and serves, and the
		// node adopts it when it is back. Look again when the grace runs out.
		r.wake(n.RestartingUntil)
		return st
	case n.Status == api.NodeDown:
		msg = "node down"
		if !n.RestartingUntil.IsZero() {
			msg = "node down: not back within its restart grace"
		}
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
		if r.stopped != nil {
			r.stopped[t.ID] = true
		}
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

// hold says how a new task waits before it is placed and started: until a time
// (a restart delay), or until the task it replaces has stopped (stop-first).
type hold struct {
	until     time.Time
	waitStop  bool
	msg       string
	crashLoop uint64
}

func (r *reconciler) replace(cur *api.Task, slot uint64, nodeID string, attempt uint64, h hold) {
	if st := r.stop(cur, r.state[cur.ID]); h.waitStop && st.Terminal() {
		h.waitStop = false // nothing left to wait for
	}
	r.create(slot, nodeID, attempt, h)
}

// create adds a task for the slot (replicated) or node (global) from the current spec.
// New tasks are always in state new with no node: the scheduler places them. A
// held task has desired state ready and is placed only once released.
func (r *reconciler) create(slot uint64, nodeID string, attempt uint64, h hold) {
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
		CrashLoop:    h.crashLoop,
		CreatedAt:    r.now,
	}
	if !h.until.IsZero() || h.waitStop {
		t.DesiredState, t.RestartAt = api.TaskReady, h.until
		if h.msg != "" {
			t.Status.Message = h.msg
		}
	}
	r.ops = append(r.ops, api.TaskOp{Kind: api.TaskOpCreate, TaskID: t.ID, Task: t, At: r.now})
	r.created, r.lastCreated = r.created+1, t
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

// tasksByNode groups a global service's tasks by the node they are pinned to,
// and lists every node to look at, in order: the known ones, and those gone
// that still hold a task.
func (r *reconciler) tasksByNode(tasks []*api.Task) (map[string][]*api.Task, []string) {
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
	return byNode, keys
}
