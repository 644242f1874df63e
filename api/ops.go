package api

import "time"

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
