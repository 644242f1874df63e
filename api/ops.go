package api

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"
)

// TaskOpKind names one change to one task. Task changes travel to Raft as a batch of
// ops, so the leader can place a thousand tasks in one log entry and a worker can
// report many status changes at once.
type TaskOpKind string

const (
	TaskOpCreate  TaskOpKind = "create"  // Task holds the new task
	TaskOpAssign  TaskOpKind = "assign"  // NodeID: placed; state becomes assigned
	TaskOpPending TaskOpKind = "pending" // Reason: why no node fits; state becomes pending
	TaskOpDesired TaskOpKind = "desired" // Desired: new desired state (only ever raised)
	TaskOpStatus  TaskOpKind = "status"  // Status: observed state (only ever moves forward)
	TaskOpDelete  TaskOpKind = "delete"  // drop a terminal task from history
)

// TaskOp is one change in a batch. Fields unused by Kind stay zero.
type TaskOp struct {
	Kind    TaskOpKind `json:"kind"`
	TaskID  string     `json:"task_id,omitempty"`
	Task    *Task      `json:"task,omitempty"`
	NodeID  string     `json:"node_id,omitempty"`
	Desired TaskState  `json:"desired,omitempty"`
	Reason  string     `json:"reason,omitempty"`
	Status  TaskStatus `json:"status,omitzero"`
	At      time.Time  `json:"at,omitzero"`
}

// OpResult is what applying one op to one task did.
type OpResult int

const (
	OpSkipped OpResult = iota // precondition failed or unknown kind target: no change
	OpChanged                 // the returned task replaces the old one
	OpDeleted                 // the task is to be removed
)

// ApplyTaskOp is the one statement of the task-op rules (dispatcher/DESIGN.md): it
// returns what op does to cur (nil: no such task) at index. The FSM and the
// dispatcher's in-memory test store both apply ops through it. cur is never
// modified: a changed task is a copy, so snapshots handed out keep their view.
// An error means the op is malformed or forbidden and fails the whole batch.
func ApplyTaskOp(cur *Task, op TaskOp, index uint64) (*Task, OpResult, error) {
	if op.Kind == TaskOpCreate {
		if op.Task == nil || op.Task.ID == "" {
			return nil, OpSkipped, fmt.Errorf("create op without task: %w", ErrInvalid)
		}
		if cur != nil {
			return nil, OpSkipped, nil
		}
		t := op.Task.shallow()
		t.Status.Ports = slices.Clone(t.Status.Ports)
		t.CreateIndex, t.ModifyIndex = index, index
		return t, OpChanged, nil
	}
	if cur == nil {
		// A worker's report may race with the deletion of old history.
		return nil, OpSkipped, nil
	}
	switch op.Kind {
	case TaskOpAssign:
		if cur.Status.State > TaskPending || cur.NodeID != "" {
			return nil, OpSkipped, nil // already placed: a stale plan must not move a task
		}
		t := cur.shallow()
		t.NodeID, t.PendingReason = op.NodeID, ""
		t.Status = TaskStatus{State: TaskAssigned, Message: "assigned", Timestamp: op.At}
		t.ModifyIndex = index
		return t, OpChanged, nil
	case TaskOpPending:
		if cur.Status.State > TaskPending {
			return nil, OpSkipped, nil
		}
		t := cur.shallow()
		t.PendingReason = op.Reason
		t.Status = TaskStatus{State: TaskPending, Message: op.Reason, Timestamp: op.At}
		t.ModifyIndex = index
		return t, OpChanged, nil
	case TaskOpDesired:
		if op.Desired <= cur.DesiredState {
			return nil, OpSkipped, nil // desired state is only ever raised
		}
		t := cur.shallow()
		t.DesiredState = op.Desired
		t.ModifyIndex = index
		return t, OpChanged, nil
	case TaskOpStatus:
		if op.Status.State < cur.Status.State || (op.Status.State == cur.Status.State && reflect.DeepEqual(op.Status, cur.Status)) {
			return nil, OpSkipped, nil // observed state moves forward only
		}
		if op.NodeID != "" && op.NodeID != cur.NodeID {
			return nil, OpSkipped, nil // a report from a node the task is not assigned to
		}
		t := cur.shallow()
		if op.Status.State >= TaskRunning && cur.Status.State < TaskRunning && op.Status.State != TaskOrphaned {
			// When it first ran, from the report itself: how long a task ran (restart
			// backoff, update monitoring) must survive later status changes.
			t.StartedAt = op.Status.Timestamp
			if t.StartedAt.IsZero() {
				t.StartedAt = op.At
			}
			if op.Status.State > TaskRunning {
				t.StartedAt = time.Time{} // it ended without ever being seen running
			}
		}
		t.Status = op.Status
		t.Status.Ports = slices.Clone(op.Status.Ports)
		t.ModifyIndex = index
		return t, OpChanged, nil
	case TaskOpDelete:
		if !cur.Status.State.Terminal() && cur.Status.State > TaskPending {
			return nil, OpSkipped, fmt.Errorf("delete of live task %s: %w", cur.ID, ErrInvalid)
		}
		return nil, OpDeleted, nil
	default:
		return nil, OpSkipped, fmt.Errorf("task op %q: %w", op.Kind, ErrInvalid)
	}
}

// shallow copies a task for an op that changes its state, never its spec: the
// copy shares the spec (tasks are never changed in place, so neither copy
// changes it), which keeps a thousand tasks of one service from holding a
// thousand copies of it after their status reports.
func (t *Task) shallow() *Task {
	c := *t
	return &c
}

// Clone copies a task deeply enough that changing the copy's slices and maps leaves
// the original alone.
func (t *Task) Clone() *Task {
	c := *t
	c.Spec = t.Spec.Clone()
	c.Status.Ports = slices.Clone(t.Status.Ports)
	return &c
}

// Clone copies a spec's slices and maps.
func (s ServiceSpec) Clone() ServiceSpec {
	c := s
	c.Command = slices.Clone(s.Command)
	c.Env = slices.Clone(s.Env)
	c.Labels = maps.Clone(s.Labels)
	c.Ports = slices.Clone(s.Ports)
	c.Constraints = slices.Clone(s.Constraints)
	c.PlacementPrefs = slices.Clone(s.PlacementPrefs)
	c.Secrets, c.Configs = slices.Clone(s.Secrets), slices.Clone(s.Configs)
	c.RestartPolicy.Delay = clonePtr(s.RestartPolicy.Delay)
	c.StopGracePeriod = clonePtr(s.StopGracePeriod)
	c.Update, c.Rollback = clonePtr(s.Update), clonePtr(s.Rollback)
	c.Mounts, c.Container = cloneOptions(s)
	if s.Health != nil {
		h := *s.Health
		h.Test = slices.Clone(s.Health.Test)
		c.Health = &h
	}
	return c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
