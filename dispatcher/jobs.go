package dispatcher

import (
	"slices"

	"github.com/swarmlet/swarmlet/api"
)

// Jobs (replicated-job, global-job) run tasks to completion. A job's run
// (api.Service.InJobRun) starts at its creation and at every change of what its
// tasks run, update --force included; its tasks replace the last run's in the
// same slots, and the last run's tasks are stopped if they still run and stay as
// history. A change of replicas or max-concurrent goes on with the run. A slot (replicated) or node (global) is done once a task of the
// current run completed (exit 0): it is never restarted, whatever the restart
// condition. A task that failed is retried under the restart policy (Normalize
// makes on-failure the default, as Swarm's); one the policy gives up on leaves
// its slot failed. No rolling update applies: there is nothing to keep serving.

// replicatedJob reconciles a replicated job: slots 1..Replicas each want one
// completion of the current run, and at most MaxConcurrent of them (0: all) have
// a task at work at once, lowest slots first, retries before fresh slots. A task
// at work is one not yet ended, held for a restart delay or not yet placed too;
// a slot that failed for good frees its place (Swarm keeps it taken, which stalls
// the job).
func (r *reconciler) replicatedJob(tasks []*api.Task) {
	r.state = make(map[string]api.TaskState, len(tasks))
	want := r.svc.Spec.Replicas
	limit := r.svc.Spec.MaxConcurrent
	if limit == 0 || limit > want {
		limit = want
	}
	bySlot := map[uint64][]*api.Task{}
	for _, t := range tasks {
		bySlot[t.Slot] = append(bySlot[t.Slot], t)
	}
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
	type waiting struct {
		slot uint64
		cur  *api.Task // the failed task to retry; nil for a slot not started
		ts   []*api.Task
	}
	var retries, fresh []waiting
	active := uint64(0)
	for _, s := range slots {
		ts := bySlot[s]
		if s == 0 || s > want {
			// Scaled down: the slot's tasks stop; what completed stays as history.
			for _, t := range ts {
				if st := r.orphanIfLost(t); t.DesiredState <= api.TaskRunning {
					r.stop(t, st)
				}
			}
			r.prune(ts, nil)
			continue
		}
		cur, done := r.jobSlot(ts)
		switch {
		case done != nil:
			cur = done // kept by prune: the slot's record
		case cur == nil:
			fresh = append(fresh, waiting{slot: s, ts: ts})
		case r.state[cur.ID].Terminal():
			retries = append(retries, waiting{slot: s, cur: cur, ts: ts})
		default:
			active++
			r.keep(cur, nil, ts, s, "") // a drain or a constraint change moves it; a held task is released
		}
		r.prune(ts, cur)
	}
	for _, w := range append(retries, fresh...) {
		if active >= limit {
			break
		}
		if w.cur == nil {
			r.create(w.slot, "", maxAttempt(w.ts), hold{})
			active++
			continue
		}
		before := r.created
		r.keep(w.cur, nil, w.ts, w.slot, "") // the restart policy decides
		if r.created > before {
			active++
		}
	}
}

// globalJob reconciles a global job: every eligible node (ready, active, matching
// the constraints) wants one completion of the current run, nodes that join later
// too, as Swarm's. A node no longer eligible has its unfinished task stopped.
func (r *reconciler) globalJob(tasks []*api.Task) {
	r.state = make(map[string]api.TaskState, len(tasks))
	byNode, keys := r.tasksByNode(tasks)
	for _, id := range keys {
		ts := byNode[id]
		cur, done := r.jobSlot(ts)
		n := r.nodes[id]
		switch {
		case done != nil:
			cur = done
		case n == nil || !r.globalEligible(n):
			if cur != nil && !r.state[cur.ID].Terminal() {
				r.stop(cur, r.state[cur.ID])
			}
		case cur != nil && !isActive(n) && r.state[cur.ID] <= api.TaskPending:
			// Paused: a task not yet placed there never will be; the node gets a
			// new one once it is active.
			r.stop(cur, r.state[cur.ID])
		case cur == nil:
			if isActive(n) && n.Status == api.NodeReady {
				r.create(0, id, maxAttempt(ts), hold{})
			}
		default:
			r.keep(cur, nil, ts, 0, id)
		}
		r.prune(ts, cur)
	}
}

// jobSlot sorts one slot's (or node's) tasks for a job: it marks tasks on lost
// nodes orphaned, stops every task of an earlier run still meant to run (they
// stay as history: `service ps --all` shows them), and returns the current run's
// task meant to run (the newest; other live ones are duplicates and stop), or,
// when a task of the current run completed, that task as done: the slot then
// keeps nothing else running.
func (r *reconciler) jobSlot(ts []*api.Task) (cur, done *api.Task) {
	for _, t := range ts {
		r.state[t.ID] = r.orphanIfLost(t)
		if r.svc.InJobRun(t) && r.state[t.ID] == api.TaskComplete && (done == nil || newer(t, done)) {
			done = t
		}
	}
	for _, t := range ts {
		st := r.state[t.ID]
		switch {
		case t.DesiredState > api.TaskRunning || t == done:
		case !r.svc.InJobRun(t) || done != nil:
			r.state[t.ID] = r.stop(t, st)
		case cur == nil || newer(t, cur):
			if cur != nil {
				r.state[cur.ID] = r.stop(cur, r.state[cur.ID])
			}
			cur = t
		default:
			r.state[t.ID] = r.stop(t, st)
		}
	}
	return cur, done
}
