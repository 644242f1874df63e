package raftstore

import (
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

// One entry carries a member reconciliation's verdicts: each applies as a
// NodeStatus would (status, time, an event), a node removed meanwhile is
// skipped, and one already so is left alone.
func TestNodeStatuses(t *testing.T) {
	s := NewState()
	applyAll(t, s, history()[:3]) // init, n1, n2
	idx := s.Index() + 1
	res, err := s.Apply(idx, &NodeStatuses{Statuses: []NodeStatus{
		{NodeID: "n1", Status: api.NodeDown, At: t0},
		{NodeID: "gone", Status: api.NodeDown, At: t0},
		{NodeID: "n2", Status: api.NodeReady, At: t0},
	}})
	if err != nil || res.(int) != 1 {
		t.Fatalf("apply: %v, %v; want 1 changed", res, err)
	}
	snap := s.Snapshot()
	if n := snap.Node("n1"); n.Status != api.NodeDown || !n.StatusAt.Equal(t0) || n.ModifyIndex != idx {
		t.Fatalf("n1 %+v", n)
	}
	if n := snap.Node("n2"); n.ModifyIndex == idx {
		t.Fatalf("n2 was ready already, yet rewritten: %+v", n)
	}
	evs, _ := snap.Events(0, 0)
	last := evs[len(evs)-1]
	if last.Index != idx || last.Action != "down" || last.Type != "node" {
		t.Fatalf("last event %+v, want node down at %d", last, idx)
	}
}
