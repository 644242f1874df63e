package dispatcher

import (
	"fmt"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// The rolling update: which outdated slots move next, under the service's update
// (or rollback) settings, and what the update has reached. It is part of the
// orchestrator's pure pass (Reconcile): everything it needs is in the store, the
// service's UpdateStatus and its tasks, so nothing is lost when leadership moves.

// slotState is one wanted slot (replicated) or eligible node (global) as the update
// sees it after the pass's other decisions.
type slotState struct {
	cur, old *api.Task
	slot     uint64
	nodeID   string
	// outdated: its task runs an older spec and waits for its turn.
	outdated bool
	// done: it runs the spec and serves, with nothing of its old task left.
	done bool
	// failed: its new task failed and waits for a restart.
	failed bool
	// blocked: outdated on a paused node, which takes nothing new.
	blocked bool
	// readyAt is when a done slot's task became ready (its last status).
	readyAt time.Time
}

// record notes a slot's standing once keep has decided about it; created is how
// many tasks the pass had made before keep ran.
func (r *reconciler) record(cur, old *api.Task, history []*api.Task, slot uint64, nodeID string, created int) {
	s := slotState{cur: cur, old: old, slot: slot, nodeID: nodeID}
	st := r.state[cur.ID]
	switch {
	case r.created > created && r.lastCreated.RestartAt.IsZero():
		// Replaced in this pass (restart, drain, never placed): its new task is at
		// the spec and on its way.
	case r.created > created || cur.DesiredState == api.TaskReady && !cur.RestartAt.IsZero():
		// Waiting out a restart backoff after a failure: the failure counts (see
		// failures), but the slot holds no place in the update, as Docker's updater
		// moves on from a failed task.
		s.failed = true
	case st.Terminal():
		// Ended for good (the restart policy says so): nothing to roll.
		s.done = true
	case r.outdated(cur) && nodeID != "" && !isActive(r.nodes[nodeID]):
		// A paused node keeps what it runs and takes nothing new: its task keeps
		// the old spec until the node is active again, and the update is not
		// complete before.
		s.blocked = true
	case r.outdated(cur):
		s.outdated = true
	case old == nil && r.ready(cur) && !stoppingIn(r, history, cur):
		s.done, s.readyAt = true, cur.Status.Timestamp
	}
	r.slots = append(r.slots, s)
}

// updateConfig is the settings the current rollout runs with: the rollback's while
// rolling back.
func (r *reconciler) updateConfig() api.UpdateConfig {
	c := r.svc.Spec.Update
	if st := r.svc.UpdateStatus; st != nil && st.State.Rollback() {
		c = r.svc.Spec.Rollback
	}
	if c == nil {
		return api.DefaultUpdateConfig()
	}
	return *c
}

// rollingUpdate decides the update's next step once every slot has been looked at.
// Slots count as updating from the moment their new task exists until it serves
// and the old one is gone; at most Parallelism of them at once. A new task at the
// spec that fails (or turns unhealthy) within Monitor of its start counts as a
// failure; past MaxFailureRatio of the slots the failure action applies.
func (r *reconciler) rollingUpdate(tasks []*api.Task) {
	status := r.svc.UpdateStatus
	if status != nil && !status.State.Active() {
		return // paused or completed: outdated slots stay as they are
	}
	cfg := r.updateConfig()
	var outdated []slotState
	updating, blocked := 0, 0
	var lastReady time.Time
	for _, s := range r.slots {
		switch {
		case s.outdated:
			outdated = append(outdated, s)
		case s.failed:
		case s.blocked:
			blocked++
		case !s.done:
			updating++
		case status != nil && s.cur != nil && !s.cur.CreatedAt.Before(status.StartedAt) && s.readyAt.After(lastReady):
			lastReady = s.readyAt
		}
	}
	if status != nil {
		if failed, reason := r.failures(tasks, status.StartedAt, cfg.Monitor); failed > 0 &&
			float64(failed)/float64(max(len(r.slots), 1)) > cfg.MaxFailureRatio && r.onFailure(cfg, reason) {
			return
		}
	}
	if len(outdated) == 0 {
		if updating > 0 || blocked > 0 || status == nil {
			return
		}
		// Done once the last new task has served for the monitor window too: a task
		// that fails just after it got ready still stops the update.
		if end := lastReady.Add(cfg.Monitor); r.now.Before(end) {
			r.wake(end)
			return
		}
		r.setStatus(completedStatus(status, r.now))
		return
	}
	budget := len(outdated)
	if cfg.Parallelism > 0 {
		budget = min(budget, int(cfg.Parallelism)-updating)
	}
	if budget <= 0 {
		return
	}
	if at := lastReady.Add(cfg.Delay); cfg.Delay > 0 && !lastReady.IsZero() && r.now.Before(at) {
		r.wake(at)
		return
	}
	for _, s := range outdated[:budget] {
		if cfg.Order == api.OrderStartFirst {
			// The old task keeps serving until the new one does (current() pairs them).
			r.create(s.slot, s.nodeID, s.cur.Attempt, hold{})
			continue
		}
		r.replace(s.cur, s.slot, s.nodeID, s.cur.Attempt, hold{waitStop: true, msg: fmt.Sprintf("waiting for task %s to stop", s.cur.ID)})
	}
}

// failures counts the tasks at the spec, made since the update started, that ended
// (or turned unhealthy) within monitor of their start, or without ever running.
// Tasks stopped on purpose report shutdown and lost nodes orphaned: neither counts.
func (r *reconciler) failures(tasks []*api.Task, since time.Time, monitor time.Duration) (n int, reason string) {
	var first *api.Task
	for _, t := range tasks {
		if t.CreatedAt.Before(since) || r.outdated(t) {
			continue
		}
		st := r.state[t.ID]
		bad := st == api.TaskFailed || st == api.TaskRejected || st == api.TaskComplete ||
			st == api.TaskRunning && t.Status.Health == api.HealthUnhealthy
		if !bad || !t.StartedAt.IsZero() && t.Status.Timestamp.Sub(t.StartedAt) > monitor {
			continue
		}
		n++
		if first == nil || newer(first, t) {
			first = t
		}
	}
	if first != nil {
		why := firstOf(first.Status.Err, first.Status.Message)
		if first.Status.Health == api.HealthUnhealthy && first.Status.State == api.TaskRunning {
			why = "unhealthy"
		}
		reason = fmt.Sprintf("task %s (slot %d) %s: %s", first.ID, first.Slot, first.Status.State, why)
	}
	return n, reason
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return "no reason given"
}

// onFailure applies the failure action and reports whether the update stops here.
func (r *reconciler) onFailure(cfg api.UpdateConfig, reason string) bool {
	rollingBack := r.svc.UpdateStatus.State.Rollback()
	switch {
	case cfg.FailureAction == api.FailureContinue:
		return false
	case cfg.FailureAction == api.FailureRollback && !rollingBack && r.svc.PreviousSpec != nil:
		r.update = &api.UpdateOp{Kind: api.UpdateOpRollback, ServiceID: r.svc.ID, SpecVersion: r.svc.SpecVersion, At: r.now,
			Status: api.UpdateStatus{Message: "update rolled back: " + reason}}
		// The pass after the rollback plans on the spec it returns to.
		r.ops, r.next = nil, time.Time{}
		return true
	}
	st := api.UpdateStatus{State: api.UpdatePaused, Message: "update paused: " + reason, StartedAt: r.svc.UpdateStatus.StartedAt}
	if rollingBack {
		st.State, st.Message = api.UpdateRollbackPaused, "rollback paused: "+reason
	}
	r.setStatus(st)
	return true
}

func completedStatus(cur *api.UpdateStatus, now time.Time) api.UpdateStatus {
	st := api.UpdateStatus{State: api.UpdateCompleted, Message: "update completed", StartedAt: cur.StartedAt, CompletedAt: now}
	if cur.State.Rollback() {
		st.State, st.Message = api.UpdateRollbackCompleted, "rollback completed"
		if cur.Message != "" {
			st.Message += " (" + cur.Message + ")"
		}
	}
	return st
}

func (r *reconciler) setStatus(st api.UpdateStatus) {
	r.update = &api.UpdateOp{Kind: api.UpdateOpStatus, ServiceID: r.svc.ID, SpecVersion: r.svc.SpecVersion, Status: st, At: r.now}
}

// Restart backoff, in the shape of Kubernetes' CrashLoopBackOff: the first exit is
// replaced at once, each further quick exit in a row doubles the wait from
// BackoffBase up to BackoffMax, and a task that ran BackoffReset or more starts
// the count afresh. RestartPolicy.Delay, when given, replaces it with a fixed wait.
const (
	BackoffBase  = time.Second
	BackoffMax   = 5 * time.Minute
	BackoffReset = 10 * time.Minute
)

// RestartBackoff is the wait before restarting a slot whose task ended as the
// loop-th quick exit in a row: 0, 1 s, 2 s, 4 s, ... BackoffMax.
func RestartBackoff(loop uint64) time.Duration {
	if loop <= 1 {
		return 0
	}
	d := BackoffBase
	for i := uint64(2); i < loop && d < BackoffMax; i++ {
		d *= 2
	}
	return min(d, BackoffMax)
}

// crashLoop is the count of quick exits in a row that t's end makes.
func crashLoop(t *api.Task) uint64 {
	if !t.StartedAt.IsZero() && t.Status.Timestamp.Sub(t.StartedAt) >= BackoffReset {
		return 1
	}
	return t.CrashLoop + 1
}
