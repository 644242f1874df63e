package api

import (
	"encoding/json"
	"fmt"
	"strings"
)

// TaskState is ordered: a task only ever moves to a higher state.
type TaskState int

const (
	TaskNew TaskState = iota
	TaskPending
	TaskAssigned
	// TaskPreparing: the node is getting what the task needs before it can start
	// (the image: pulled, or fetched from another node); the message says how far.
	// Inserted between assigned and starting: states travel and persist by name,
	// so the numbers may move as long as the order holds.
	TaskPreparing
	// TaskReady is a desired state only: the task waits (for a restart delay, or for
	// the old task of its slot to stop) before it is placed and started.
	TaskReady
	TaskStarting
	TaskRunning
	TaskComplete
	TaskShutdown
	TaskFailed
	TaskRejected
	TaskOrphaned
)

var taskStateNames = [...]string{"new", "pending", "assigned", "preparing", "ready", "starting", "running", "complete", "shutdown", "failed", "rejected", "orphaned"}

func (s TaskState) String() string {
	if s < 0 || int(s) >= len(taskStateNames) {
		return fmt.Sprintf("state(%d)", int(s))
	}
	return taskStateNames[s]
}

// Terminal reports whether the task will never run again.
func (s TaskState) Terminal() bool { return s >= TaskComplete }

// ParseTaskState maps a lower-case name back to its state.
func ParseTaskState(name string) (TaskState, error) {
	for i, n := range taskStateNames {
		if n == strings.ToLower(name) {
			return TaskState(i), nil
		}
	}
	return 0, fmt.Errorf("unknown task state %q", name)
}

func (s TaskState) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

func (s *TaskState) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	v, err := ParseTaskState(name)
	if err != nil {
		return err
	}
	*s = v
	return nil
}
