package dispatcher

import (
	"context"

	"github.com/swarmlet/swarmlet/api"
)

// Snapshot is a consistent, read-only view of the cluster at one Raft index.
// Callers must not modify the objects it returns: they may be shared with the store.
type Snapshot interface {
	Index() uint64
	Nodes() []*api.Node
	Node(id string) *api.Node // nil if there is no such node
	Services() []*api.Service
	Tasks() []*api.Task       // all tasks, including terminal history
	Task(id string) *api.Task // nil if there is no such task
	TasksByService(serviceID string) []*api.Task
	TasksByNode(nodeID string) []*api.Task
}

// Store is what the control loops need from the replicated state. The raftstore
// package implements it; the loops never touch Raft themselves, so they run the same
// against an in-memory fake in tests.
type Store interface {
	Snapshot() Snapshot
	// Watch returns a channel that is closed at the next change after the call.
	// Take the watch before the snapshot so that no change can fall between them.
	Watch() <-chan struct{}
	// ApplyTaskOps commits the whole batch as one Raft entry. The ops' semantics,
	// including when an op is a no-op, are written down in DESIGN.md.
	ApplyTaskOps(ctx context.Context, ops []api.TaskOp) error
	// ApplyUpdateOp commits one decision of a rolling update (api.ApplyUpdateOp
	// says what it does); a decision made on a spec version the service has left
	// is refused with api.ErrConflict and changes nothing.
	ApplyUpdateOp(ctx context.Context, op api.UpdateOp) error
}
