package worker

import (
	"context"
	"errors"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// The engine may go away and come back while the worker runs: dockerd restarted
// for an upgrade. While it is gone nothing is known about the tasks, so nothing
// is reported: not failed, not stopped (they may well still run: Docker's
// live-restore keeps containers running across a restart of dockerd). When it
// answers again, what still runs is adopted as after a worker restart, and a
// task that ran before and no longer does is started again on this node, as the
// same task: it did not fail, its engine went away. Only a task that cannot be
// started again is reported failed, once the engine is back.

// outagePoll is how often an engine that went away is asked again.
const outagePoll = 250 * time.Millisecond

// outage is the engine's absence: since the last time it answered, with what ran then.
type outage struct {
	since   time.Time
	running map[string]bool // task IDs running at the last answer
}

// listed records a successful List: what runs, for the next outage to know.
// It returns the tasks an outage that just ended took down, to start again.
func (a *Agent) listed(insts []engine.Instance) (restore map[string]bool) {
	running := make(map[string]bool, len(insts))
	for _, in := range insts {
		if in.State == api.TaskRunning {
			running[in.TaskID] = true
		}
	}
	now := a.cfg.Clock()
	a.mu.Lock()
	o := a.outage
	a.outage, a.lastListed, a.lastRunning = nil, now, running
	a.mu.Unlock()
	if o == nil {
		return nil
	}
	restore = map[string]bool{}
	for id := range o.running {
		if !running[id] {
			restore[id] = true
		}
	}
	a.log.Info("engine back", "engine", a.cfg.Engine.Name(), "away", now.Sub(o.since).Round(time.Millisecond),
		"still_running", len(o.running)-len(restore), "to_restart", len(restore))
	return restore
}

// engineGone records a failed List: the engine is unreachable until it answers.
func (a *Agent) engineGone(err error) {
	a.mu.Lock()
	first := a.outage == nil
	if first {
		a.outage = &outage{since: a.lastListed, running: a.lastRunning}
		if a.outage.running == nil {
			a.outage.running = map[string]bool{}
		}
	}
	n := len(a.outage.running)
	a.mu.Unlock()
	if first {
		a.log.Warn("engine unreachable; its tasks are left as they are until it answers again",
			"engine", a.cfg.Engine.Name(), "tasks", n, "err", err)
	}
	time.AfterFunc(outagePoll, a.poke)
}

// engineAway reports whether the engine is known to be gone.
func (a *Agent) engineAway() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.outage != nil
}

// startFailedByOutage tells a start that failed because the engine went away
// from one the task caused: it asks the engine, and an engine that does not
// answer is an outage (the task is started once the engine is back).
func (a *Agent) startFailedByOutage(ctx context.Context) bool {
	if a.engineAway() {
		return true
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := a.cfg.Engine.List(lctx); err != nil && ctx.Err() == nil {
		a.engineGone(err)
		return true
	}
	return false
}

// restoring reports whether t is being started again after an outage.
func (a *Agent) restoring(taskID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.starting["restore:"+taskID]
}

// restoreAsync starts t again after an outage took its workload down: the same
// task, on its verified image, reported running with its new workload (or failed
// if it cannot start).
func (a *Agent) restoreAsync(ctx context.Context, t *api.Task) {
	a.mu.Lock()
	if a.starting["restore:"+t.ID] {
		a.mu.Unlock()
		return
	}
	a.starting["restore:"+t.ID] = true
	a.mu.Unlock()
	a.log.Info("restarting task its engine took down", "task", t.ID, "service", t.ServiceName, "slot", t.Slot)
	go func() {
		defer func() {
			a.mu.Lock()
			delete(a.starting, "restore:"+t.ID)
			a.mu.Unlock()
			a.poke()
		}()
		tc := t.Clone()
		if tc.Spec.ImageID == "" {
			tc.Spec.ImageID = t.Status.ImageID // what this node verified and ran
		}
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := a.cfg.Engine.Stop(sctx, t.ID); err != nil { // the exited workload
			a.log.Warn("remove exited workload", "task", t.ID, "err", err)
		}
		in, err := a.startExpanded(sctx, tc)
		switch {
		case ctx.Err() != nil:
		case err != nil && a.startFailedByOutage(ctx):
			// Gone again: its next return tries again.
			a.mu.Lock()
			if a.outage != nil {
				a.outage.running[t.ID] = true
			}
			a.mu.Unlock()
		case err != nil:
			st := api.TaskStatus{State: api.TaskFailed, Message: "not restarted after its engine restarted", Err: err.Error()}
			if errors.Is(err, engine.ErrRejected) {
				st.State = api.TaskRejected
			}
			a.log.Warn("task not restarted after its engine restarted", "task", t.ID, "err", err)
			a.report(t.ID, st)
		default:
			a.log.Info("task restarted after its engine restarted", "task", t.ID, "id", in.ID)
			a.mu.Lock()
			delete(a.reported, t.ID) // a new workload: its address and ports changed
			a.mu.Unlock()
			a.report(t.ID, a.runningStatus(t, in))
		}
	}()
}
