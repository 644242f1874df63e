package raftstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

func eventLine(e *api.Event) string {
	s := fmt.Sprintf("%d@%d %s %s %s", e.ID, e.Index, e.Type, e.Action, e.Name)
	if e.Type == api.EventTask {
		s += " " + e.Attributes["state"] + "/" + e.Attributes["desired"]
	}
	return s
}

func allEvents(s *State) []string {
	evs, _ := s.Snapshot().Events(0, 0)
	var out []string
	for _, e := range evs {
		out = append(out, eventLine(e))
	}
	return out
}

// TestEventsOfEachCommand: the history that touches every command yields one
// ordered log, numbered without gaps, each event at its command's index.
func TestEventsOfEachCommand(t *testing.T) {
	s := NewState()
	cmds := append(history(), &LeaderElected{NodeID: "n1", Hostname: "h1", Term: 3, At: t0})
	applyAll(t, s, cmds)
	// Indexes 12-15 (trust), 18 (a restart mark) and 20 (statuses already so)
	// change no object an event is about.
	want := []string{
		"1@1 cluster init ",
		"2@2 node join h1",
		"3@3 node join h2",
		"4@4 node availability h2",
		"5@4 node labels h2",
		"6@5 node down h2",
		"7@6 service create web",
		"8@7 service scale web",
		"9@8 service update web",
		"10@9 task create web.1 new/running",
		"11@9 task assigned web.1 assigned/running",
		"12@10 task running web.1 running/running",
		"13@11 cluster token-rotate ",
		"14@16 service create api",
		"15@17 service remove api",
		"16@19 node remove h2",
		"17@20 secret create db",
		"18@21 secret update db",
		"19@22 config create gone",
		"20@23 config remove gone",
		"21@25 leader elected h1",
	}
	if got := allEvents(s); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A create and an assign in one entry are both told.
	evs, first := s.Snapshot().Events(9, 1)
	if first != 1 || len(evs) != 1 || evs[0].ID != 10 || evs[0].ObjectID != "t1" || !evs[0].Time.Equal(t0) {
		t.Fatalf("Events(9, 1) = %+v, first %d", evs, first)
	}
}

func TestTaskEvents(t *testing.T) {
	s := NewState()
	applyAll(t, s, history()[:6]) // cluster, nodes, service web
	task := func(id string, slot uint64) *api.Task {
		return &api.Task{ID: id, ServiceID: "s1", ServiceName: "web", Slot: slot, DesiredState: api.TaskRunning, Status: api.TaskStatus{State: api.TaskNew}}
	}
	steps := []struct {
		ops  []api.TaskOp
		want []string
	}{
		{[]api.TaskOp{{Kind: api.TaskOpCreate, Task: task("a", 1)}, {Kind: api.TaskOpCreate, Task: task("b", 2)}},
			[]string{"task create web.1 new/running", "task create web.2 new/running"}},
		{[]api.TaskOp{{Kind: api.TaskOpAssign, TaskID: "a", NodeID: "n1", At: t0}, {Kind: api.TaskOpPending, TaskID: "b", Reason: "no suitable node (1 node: 1 drained)", At: t0}},
			[]string{"task assigned web.1 assigned/running", "task pending web.2 pending/running"}},
		// Rewriting the same reason changes nothing: no event.
		{[]api.TaskOp{{Kind: api.TaskOpPending, TaskID: "b", Reason: "no suitable node (1 node: 1 drained)", At: t0}}, nil},
		{[]api.TaskOp{{Kind: api.TaskOpPending, TaskID: "b", Reason: "no suitable node (1 node: 1 down)", At: t0}},
			[]string{"task pending web.2 pending/running"}},
		{[]api.TaskOp{{Kind: api.TaskOpStatus, TaskID: "a", NodeID: "n1", Status: api.TaskStatus{State: api.TaskFailed, Err: "exit 1", Timestamp: t0}},
			{Kind: api.TaskOpDesired, TaskID: "b", Desired: api.TaskShutdown, At: t0}},
			[]string{"task failed web.1 failed/running", "task desired web.2 pending/shutdown"}},
		// An op on a task that no longer exists is skipped, and says nothing.
		{[]api.TaskOp{{Kind: api.TaskOpDelete, TaskID: "a"}, {Kind: api.TaskOpDelete, TaskID: "gone"}},
			[]string{"task delete web.1 failed/running"}},
	}
	index := uint64(100)
	for i, st := range steps {
		lastID := s.Snapshot().LastEventID()
		index++
		if _, err := s.Apply(index, &TaskOps{Ops: st.ops}); err != nil {
			t.Fatal(err)
		}
		evs, _ := s.Snapshot().Events(lastID, 0)
		var got []string
		for _, e := range evs {
			if e.Index != index {
				t.Fatalf("step %d: event %d at index %d, want %d", i, e.ID, e.Index, index)
			}
			got = append(got, strings.SplitN(eventLine(e), " ", 2)[1])
		}
		if strings.Join(got, "|") != strings.Join(st.want, "|") {
			t.Errorf("step %d: %q, want %q", i, got, st.want)
		}
	}
	evs, _ := s.Snapshot().Events(0, 0)
	if e := evs[len(evs)-3]; e.Attributes["error"] != "exit 1" || e.Attributes["node"] != "n1" {
		t.Errorf("failed event attributes %v", e.Attributes)
	}
}

// TestEventRingAndSnapshot: the log keeps the last EventRingSize events, a
// snapshot carries them, and numbering goes on after a restore.
func TestEventRingAndSnapshot(t *testing.T) {
	s := NewState()
	applyAll(t, s, history()[:6])
	index := uint64(10)
	for batch := 0; s.Snapshot().LastEventID() <= EventRingSize+10; batch++ {
		var ops []api.TaskOp
		for i := range 2000 {
			ops = append(ops, api.TaskOp{Kind: api.TaskOpCreate, Task: &api.Task{ID: fmt.Sprintf("t%d-%d", batch, i), ServiceID: "s1", ServiceName: "web", Slot: uint64(i + 1)}})
		}
		index++
		if _, err := s.Apply(index, &TaskOps{Ops: ops}); err != nil {
			t.Fatal(err)
		}
	}
	// One entry that alone makes more events than the ring holds is kept whole.
	var big []api.TaskOp
	for i := range EventRingSize + 100 {
		big = append(big, api.TaskOp{Kind: api.TaskOpCreate, Task: &api.Task{ID: fmt.Sprintf("big-%d", i), ServiceID: "s1", ServiceName: "web", Slot: uint64(i + 1)}})
	}
	index++
	bigFirst := s.Snapshot().LastEventID() + 1
	if _, err := s.Apply(index, &TaskOps{Ops: big}); err != nil {
		t.Fatal(err)
	}
	if evs, first := s.Snapshot().Events(0, 0); first != bigFirst || len(evs) != EventRingSize+100 {
		t.Fatalf("after a big entry: %d events from %d, want %d from %d", len(evs), first, EventRingSize+100, bigFirst)
	}
	// The next entry brings the ring back to its size.
	index++
	if _, err := s.Apply(index, &LeaderElected{NodeID: "n1", Term: 4, At: t0}); err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	last := snap.LastEventID()
	evs, first := snap.Events(0, 0)
	if len(evs) != EventRingSize || first != last-EventRingSize+1 || evs[0].ID != first || evs[len(evs)-1].ID != last {
		t.Fatalf("ring: %d events, first %d, last %d", len(evs), first, last)
	}
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := NewState()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	revs, rfirst := r.Snapshot().Events(0, 0)
	a, _ := json.Marshal(evs)
	b, _ := json.Marshal(revs)
	if rfirst != first || !bytes.Equal(a, b) {
		t.Fatal("restored event log differs")
	}
	if _, err := r.Apply(index+1, &LeaderElected{NodeID: "n1", Term: 9, At: t0}); err != nil {
		t.Fatal(err)
	}
	if got := r.Snapshot().LastEventID(); got != last+1 {
		t.Fatalf("after restore the next event is %d, want %d", got, last+1)
	}
}

func TestSameLogSameEvents(t *testing.T) {
	a, b := NewState(), NewState()
	applyAll(t, a, history())
	applyAll(t, b, history())
	ea, _ := a.Snapshot().Events(0, 0)
	eb, _ := b.Snapshot().Events(0, 0)
	ja, _ := json.Marshal(ea)
	jb, _ := json.Marshal(eb)
	if !bytes.Equal(ja, jb) {
		t.Fatal("two FSMs wrote different event logs for the same log")
	}
}
