package worker

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// Preparer gets what a task needs onto this node before the engine can start it:
// for the docker engine, its image (node/images). It returns the image ID the task
// is then started from, so the engine runs exactly the bits that were verified.
// An error wrapping engine.ErrRejected means the task can never start here.
type Preparer interface {
	Prepare(ctx context.Context, t *api.Task, progress func(msg string)) (imageID string, err error)
}

// progressEvery bounds how often one task's preparing progress is reported
// (each report is a Raft write, batched with others).
const progressEvery = time.Second

// prepState is the agent's bookkeeping for preparing.
type prepState struct {
	latest atomic.Pointer[api.Assignments]
	said   map[string]time.Time // task -> last progress reported; under Agent.mu
}

// Latest is the last session answer, for what a Preparer needs beyond the task:
// the service's registry credentials, which nodes hold an image, every node.
func (a *Agent) Latest() *api.Assignments {
	if as := a.prep.latest.Load(); as != nil {
		return as
	}
	return &api.Assignments{}
}

// prepare runs the Preparer for t, reporting PREPARING progress, and returns the
// task to start (pinned to the prepared image) or false when the task failed
// or is no longer wanted.
func (a *Agent) prepare(ctx context.Context, t *api.Task) (*api.Task, bool) {
	if a.cfg.Images == nil {
		return t, true
	}
	id, err := a.cfg.Images.Prepare(ctx, t, func(msg string) { a.progress(t.ID, msg) })
	a.mu.Lock()
	delete(a.prep.said, t.ID)
	cur, assigned := a.assigned[t.ID]
	a.mu.Unlock()
	switch {
	case ctx.Err() != nil:
		return nil, false
	case errors.Is(err, engine.ErrRejected):
		a.log.Warn("task rejected", "task", t.ID, "image", t.Spec.Image, "err", err)
		a.report(t.ID, api.TaskStatus{State: api.TaskRejected, Message: "rejected", Err: err.Error()})
		return nil, false
	case err != nil:
		a.log.Warn("preparing task failed", "task", t.ID, "image", t.Spec.Image, "err", err)
		a.report(t.ID, api.TaskStatus{State: api.TaskFailed, Message: "preparing failed", Err: err.Error()})
		return nil, false
	case !assigned || cur.DesiredState > api.TaskRunning:
		return nil, false // asked to stop meanwhile: reconcile reports it
	}
	a.report(t.ID, api.TaskStatus{State: api.TaskStarting, Message: "starting", ImageID: id})
	tc := t.Clone()
	tc.Spec.ImageID = id
	return tc, true
}

// progress reports what preparing is doing, at most every progressEvery, and only
// while the task is still preparing (a later state must not be followed by one).
func (a *Agent) progress(taskID, msg string) {
	now := a.cfg.Clock()
	a.mu.Lock()
	if a.reported[taskID].state != api.TaskPreparing || now.Sub(a.prep.said[taskID]) < progressEvery {
		a.mu.Unlock()
		return
	}
	if a.prep.said == nil {
		a.prep.said = map[string]time.Time{}
	}
	a.prep.said[taskID] = now
	a.mu.Unlock()
	a.reports <- api.TaskOp{Kind: api.TaskOpStatus, TaskID: taskID, NodeID: a.cfg.NodeID,
		Status: api.TaskStatus{State: api.TaskPreparing, Message: msg, Timestamp: now.UTC()}}
}
