package raftstore

import (
	"github.com/hashicorp/go-memdb"

	"github.com/swarmlet/swarmlet/api"
)

// The change feed: which objects each recent entry changed, by table and ID.
// The leader's session dispatcher follows it to keep the endpoint and node
// tables every worker is sent up to date in time proportional to what changed,
// instead of rebuilding them from every task on each entry. It is derived from
// memdb's own change tracking as each entry commits, holds IDs only (the objects
// are read from a snapshot), and is bounded: a reader too far behind is told
// so and rebuilds from a snapshot.

// Changed names one object an entry inserted, replaced or deleted.
type Changed struct {
	Table string // "nodes", "services", "tasks" or "cluster"
	ID    string
}

// Table names of the change feed.
const (
	ChangedNodes    = tableNodes
	ChangedServices = tableServices
	ChangedTasks    = tableTasks
	ChangedCluster  = tableCluster
)

// feedMax bounds the IDs the feed holds (about 32 bytes each).
const feedMax = 1 << 17

type feedEntry struct {
	index   uint64
	changed []Changed
}

// feed is guarded by State.mu.
type feed struct {
	entries []feedEntry // in index order
	size    int
	// from: the feed covers every change after this index (0 with a fresh
	// state: since the beginning).
	from uint64
}

func changedOf(ch memdb.Changes) []Changed {
	var out []Changed
	for _, c := range ch {
		obj := c.After
		if obj == nil {
			obj = c.Before
		}
		switch o := obj.(type) {
		case *api.Node:
			out = append(out, Changed{tableNodes, o.ID})
		case *serviceRow:
			out = append(out, Changed{tableServices, o.ID})
		case *api.Task:
			out = append(out, Changed{tableTasks, o.ID})
		case *clusterRow:
			out = append(out, Changed{tableCluster, o.ID})
		}
	}
	return out
}

func (f *feed) add(index uint64, changed []Changed) {
	f.entries = append(f.entries, feedEntry{index, changed})
	f.size += len(changed) + 1
	for f.size > feedMax && len(f.entries) > 1 {
		f.from = f.entries[0].index
		f.size -= len(f.entries[0].changed) + 1
		f.entries[0] = feedEntry{}
		f.entries = f.entries[1:]
	}
}

// reset forgets everything before index (a restored snapshot).
func (f *feed) reset(index uint64) { *f = feed{from: index} }

// ChangedSince lists what the entries after index and up to the state's current
// index changed (an object may be named more than once), with that current index.
// ok is false when the feed no longer reaches back to index: rebuild from a
// snapshot taken after the call instead.
func (s *State) ChangedSince(index uint64) (changed []Changed, upto uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index < s.feed.from {
		return nil, s.index, false
	}
	for i := len(s.feed.entries) - 1; i >= 0 && s.feed.entries[i].index > index; i-- {
		changed = append(changed, s.feed.entries[i].changed...)
	}
	return changed, s.index, true
}
