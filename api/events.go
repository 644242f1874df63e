package api

import "time"

// EventType is what an event is about.
type EventType string

const (
	EventService EventType = "service"
	EventTask    EventType = "task"
	EventNode    EventType = "node"
	EventLeader  EventType = "leader"
	EventCluster EventType = "cluster"
	EventSecret  EventType = "secret"
	EventConfig  EventType = "config"
)

// Event is one entry of the cluster's event log. Events are derived from applied
// Raft entries, so every manager holds the same log; ID numbers them from 1 without
// gaps, which is what makes a stream resumable (GET /v1/events?since=ID) with
// nothing missed or repeated.
type Event struct {
	ID     uint64    `json:"id"`
	Index  uint64    `json:"index"` // Raft index of the change
	Time   time.Time `json:"time,omitzero"`
	Type   EventType `json:"type"`
	Action string    `json:"action"` // create, update, remove, running, down, elected, ...
	// ObjectID and Name say what changed: the service, task, node or leader's node.
	ObjectID   string            `json:"object_id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}
