package raftstore

import (
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/swarmlet/swarmlet/api"
)

// The event log. Apply derives events from each command it applies, in the same
// transaction, from the command and the state before and after: so they are as
// deterministic as the state, every manager holds the same log, and snapshots
// carry it. IDs count from 1 without gaps; the log keeps the last EventRingSize.

// EventRingSize is how many events the state keeps (more while one entry's own
// events exceed it). It bounds how long a client can be away and still resume
// without a gap; it costs a manager a few MB of memory and its snapshots as much.
const EventRingSize = 8192

const tableEvents = "events"

// eventsBefore is what a command's events need of the state before it applies.
type eventsBefore struct {
	node  *api.Node
	nodes map[string]*api.Node // NodeStatuses: each node named, as it was
	tasks map[string]*api.Task // the tasks the command may change, by ID
	order []string             // their IDs in the order events are written
}

// captureBefore reads, before c applies, what its events will compare against.
func captureBefore(txn *memdb.Txn, c Command) eventsBefore {
	var b eventsBefore
	addTask := func(id string) {
		if b.tasks == nil {
			b.tasks = map[string]*api.Task{}
		}
		if _, seen := b.tasks[id]; seen {
			return
		}
		var t *api.Task
		if raw, _ := txn.First(tableTasks, "id", id); raw != nil {
			t = raw.(*api.Task)
		}
		b.tasks[id] = t
		b.order = append(b.order, id)
	}
	addTasks := func(index, arg string) {
		it, _ := txn.Get(tableTasks, index, arg)
		for raw := it.Next(); raw != nil; raw = it.Next() {
			addTask(raw.(*api.Task).ID)
		}
	}
	switch c := c.(type) {
	case *NodeUpsert:
		b.node = getNode(txn, c.Node.ID)
	case *NodeStatus:
		b.node = getNode(txn, c.NodeID)
	case *NodeStatuses:
		b.nodes = map[string]*api.Node{}
		for _, st := range c.Statuses {
			b.nodes[st.NodeID] = getNode(txn, st.NodeID)
		}
	case *NodeUpdate:
		b.node = getNode(txn, c.NodeID)
	case *NodeRemove:
		addTasks("node", c.NodeID)
	case *ServiceRemove:
		if svc := getService(txn, c.Name); svc != nil {
			addTasks("service", svc.ID)
		}
	case *TaskOps:
		for _, op := range c.Ops {
			if op.Kind == api.TaskOpCreate && op.Task != nil {
				addTask(op.Task.ID)
			} else {
				addTask(op.TaskID)
			}
		}
	}
	return b
}

// recordEvents writes the events of c, applied at index with result res.
func recordEvents(txn *memdb.Txn, index uint64, c Command, before eventsBefore, res any) {
	rec := eventWriter{txn: txn, index: index, next: lastEventID(txn) + 1}
	switch c := c.(type) {
	case *ClusterInit:
		rec.add(api.Event{Time: c.At, Type: api.EventCluster, Action: "init", ObjectID: c.ClusterID})
	case *TokenRotate:
		rec.add(api.Event{Type: api.EventCluster, Action: "token-rotate", Attributes: map[string]string{"role": string(c.Role)}})
	case *LeaderElected:
		rec.add(api.Event{Time: c.At, Type: api.EventLeader, Action: "elected", ObjectID: c.NodeID, Name: c.Hostname,
			Attributes: map[string]string{"term": strconv.FormatUint(c.Term, 10)}})
	case *ServiceCreate:
		svc := res.(*api.Service)
		rec.add(serviceEvent(svc, "create", c.At))
	case *ServiceUpdate:
		svc := res.(*api.Service)
		e := serviceEvent(svc, "update", c.At)
		e.Attributes["version"] = strconv.FormatUint(svc.SpecVersion, 10)
		rec.add(e)
	case *ServiceScale:
		rec.add(serviceEvent(res.(*api.Service), "scale", c.At))
	case *ServiceRollback:
		svc := res.(*api.Service)
		e := serviceEvent(svc, "rollback", c.At)
		e.Attributes["version"] = strconv.FormatUint(svc.SpecVersion, 10)
		rec.add(e)
	case *ServiceUpdateStatus:
		// The rolling update's progress: updating, paused, completed, rolled back.
		svc := res.(*api.Service)
		e := serviceEvent(svc, "update-"+string(c.Status.State), c.Status.CompletedAt)
		if c.Status.Message != "" {
			e.Attributes["message"] = c.Status.Message
		}
		rec.add(e)
	case *ServiceRemove:
		rec.add(serviceEvent(res.(*api.Service), "remove", c.At))
		rec.taskChanges(before, c.At)
	case *NodeUpsert:
		n := res.(*api.Node)
		switch old := before.node; {
		case old == nil:
			rec.add(nodeEvent(n, "join", n.StatusAt))
		case old.Addr != n.Addr || old.Hostname != n.Hostname || old.Engine != n.Engine || old.APIPort != n.APIPort:
			rec.add(nodeEvent(n, "update", time.Time{}))
		}
	case *NodeStatus:
		n := res.(*api.Node)
		if old := before.node; old != nil && old.Status != n.Status {
			action := "up"
			if n.Status == api.NodeDown {
				action = "down"
			}
			rec.add(nodeEvent(n, action, c.At))
		}
	case *NodeStatuses:
		for _, st := range c.Statuses {
			old, n := before.nodes[st.NodeID], getNode(txn, st.NodeID)
			if old != nil && n != nil && old.Status != n.Status {
				action := "up"
				if n.Status == api.NodeDown {
					action = "down"
				}
				rec.add(nodeEvent(n, action, st.At))
			}
		}
	case *NodeUpdate:
		n, old := res.(*api.Node), before.node
		if old.Role != n.Role {
			action := "promote"
			if n.Role == api.RoleWorker {
				action = "demote"
			}
			rec.add(nodeEvent(n, action, time.Time{}))
		}
		if old.Availability != n.Availability {
			rec.add(nodeEvent(n, "availability", time.Time{}))
		}
		if len(c.LabelAdd) > 0 || len(c.LabelRm) > 0 {
			rec.add(nodeEvent(n, "labels", time.Time{}))
		}
	case *SecretCreate:
		rec.add(secretEvent(res.(*api.Secret), "create", c.At))
	case *SecretRemove:
		rec.add(secretEvent(res.(*api.Secret), "remove", c.At))
	case *SecretUpdate:
		r := res.(*SecretUpdated)
		if r.Secret.ModifyIndex != index {
			break // the value it had: nothing changed
		}
		rec.add(secretEvent(r.Secret, "update", c.At))
		for _, svc := range r.Services {
			e := serviceEvent(svc, "update", c.At)
			e.Attributes["version"] = strconv.FormatUint(svc.SpecVersion, 10)
			e.Attributes[string(c.Kind)] = r.Secret.Name
			rec.add(e)
		}
	case *NodeRemove:
		rec.add(nodeEvent(res.(*api.Node), "remove", time.Time{}))
		rec.taskChanges(before, time.Time{})
	case *TaskOps:
		at := map[string]time.Time{}
		for _, op := range c.Ops {
			id := op.TaskID
			if op.Kind == api.TaskOpCreate && op.Task != nil {
				id = op.Task.ID
			}
			at[id] = op.At
		}
		rec.taskChangesAt(before, at)
	}
	rec.prune()
}

type eventWriter struct {
	txn   *memdb.Txn
	index uint64
	next  uint64
}

func (w *eventWriter) add(e api.Event) {
	e.ID, e.Index = w.next, w.index
	w.next++
	mustInsert(w.txn, tableEvents, &e)
}

// prune drops the oldest events beyond EventRingSize, but never one of this
// entry's: an entry that alone makes more (a scale to thousands) is kept whole,
// so a reader that was current before it can read all of it.
func (w *eventWriter) prune() {
	last := w.next - 1
	for last > EventRingSize {
		raw, _ := w.txn.First(tableEvents, "id")
		if raw == nil {
			return
		}
		old := raw.(*api.Event)
		if old.ID > last-EventRingSize || old.Index == w.index {
			return
		}
		if err := w.txn.Delete(tableEvents, old); err != nil {
			panic(fmt.Sprintf("raftstore: prune event: %v", err))
		}
	}
}

// taskChanges writes the changes of the captured tasks, all at one time.
func (w *eventWriter) taskChanges(before eventsBefore, at time.Time) {
	times := map[string]time.Time{}
	for _, id := range before.order {
		times[id] = at
	}
	w.taskChangesAt(before, times)
}

// taskChangesAt writes an event for each captured task that changed: created,
// deleted, a new observed state (or pending reason), a raised desired state.
func (w *eventWriter) taskChangesAt(before eventsBefore, at map[string]time.Time) {
	for _, id := range before.order {
		old := before.tasks[id]
		var cur *api.Task
		if raw, _ := w.txn.First(tableTasks, "id", id); raw != nil {
			cur = raw.(*api.Task)
		}
		switch {
		case old == nil && cur == nil:
		case old == nil:
			e := taskEvent(cur, "create", at[id])
			e.Attributes["state"] = api.TaskNew.String()
			w.add(e)
			if cur.Status.State != api.TaskNew {
				// Created and moved on in one entry: both changes are told.
				w.add(taskEvent(cur, cur.Status.State.String(), at[id]))
			}
		case cur == nil:
			w.add(taskEvent(old, "delete", at[id]))
		default:
			if cur.Status.State != old.Status.State || cur.PendingReason != old.PendingReason {
				t := at[id]
				if !cur.Status.Timestamp.IsZero() {
					t = cur.Status.Timestamp
				}
				w.add(taskEvent(cur, cur.Status.State.String(), t))
			}
			if cur.DesiredState != old.DesiredState {
				w.add(taskEvent(cur, "desired", at[id]))
			}
		}
	}
}

func serviceEvent(s *api.Service, action string, at time.Time) api.Event {
	return api.Event{Time: at, Type: api.EventService, Action: action, ObjectID: s.ID, Name: s.Spec.Name,
		Attributes: map[string]string{"mode": string(s.Spec.Mode), "replicas": strconv.FormatUint(s.Spec.Replicas, 10), "image": s.Spec.Image}}
}

// secretEvent names a secret or config and its version, never its value.
func secretEvent(s *api.Secret, action string, at time.Time) api.Event {
	t := api.EventSecret
	if s.Kind == api.KindConfig {
		t = api.EventConfig
	}
	return api.Event{Time: at, Type: t, Action: action, ObjectID: s.ID, Name: s.Name,
		Attributes: map[string]string{"version": strconv.FormatUint(s.Version, 10)}}
}

func nodeEvent(n *api.Node, action string, at time.Time) api.Event {
	return api.Event{Time: at, Type: api.EventNode, Action: action, ObjectID: n.ID, Name: n.Hostname,
		Attributes: map[string]string{"role": string(n.Role), "status": string(n.Status), "availability": string(n.Availability), "addr": n.Addr}}
}

func taskEvent(t *api.Task, action string, at time.Time) api.Event {
	name := t.ServiceName + "." + strconv.FormatUint(t.Slot, 10)
	if t.Slot == 0 {
		name = t.ServiceName + "." + t.NodeID
	}
	attrs := map[string]string{"service": t.ServiceName, "service_id": t.ServiceID, "state": t.Status.State.String(), "desired": t.DesiredState.String()}
	if t.NodeID != "" {
		attrs["node"] = t.NodeID
	}
	if t.Status.Err != "" {
		attrs["error"] = t.Status.Err
	}
	if t.PendingReason != "" && t.Status.State == api.TaskPending {
		attrs["reason"] = t.PendingReason
	}
	return api.Event{Time: at, Type: api.EventTask, Action: action, ObjectID: t.ID, Name: name, Attributes: attrs}
}

func lastEventID(txn *memdb.Txn) uint64 {
	if raw, _ := txn.Last(tableEvents, "id"); raw != nil {
		return raw.(*api.Event).ID
	}
	return 0
}

// Events returns up to limit events with IDs above after, in order (limit <= 0:
// all). first is the oldest ID the log still holds (0 if it is empty): a client
// resuming after an ID below first-1 has missed events.
func (v *Snapshot) Events(after uint64, limit int) (events []*api.Event, first uint64) {
	if raw, _ := v.txn.First(tableEvents, "id"); raw != nil {
		first = raw.(*api.Event).ID
	}
	it, _ := v.txn.LowerBound(tableEvents, "id", after+1)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		events = append(events, raw.(*api.Event))
		if limit > 0 && len(events) >= limit {
			break
		}
	}
	return events, first
}

// LastEventID is the ID of the newest event (0: none yet).
func (v *Snapshot) LastEventID() uint64 { return lastEventID(v.txn) }
