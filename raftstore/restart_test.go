package raftstore

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

func restartHistory(grace *time.Duration) []Command {
	return []Command{
		&ClusterInit{ClusterID: "c1", ClusterNetwork: api.ClusterNetwork{ServiceRange: "127.128.0.0/16"}, PortRange: [2]int{30000, 30999}, At: t0, RestartGrace: grace},
		&NodeUpsert{Node: api.Node{ID: "n1", Hostname: "h1", Addr: "127.0.0.1", Role: api.RoleManager}},
		&NodeUpsert{Node: api.Node{ID: "n2", Hostname: "h2", Addr: "127.0.0.2", Role: api.RoleWorker}},
	}
}

// TestNodeRestarting: the mark is the command's time plus the cluster's grace
// (the default when init named none, none when it said 0); it survives the
// node going down and a refresh while down, and goes when the node is back.
func TestNodeRestarting(t *testing.T) {
	d := func(v time.Duration) *time.Duration { return &v }
	at := t0.Add(time.Hour)
	for _, tc := range []struct {
		name  string
		grace *time.Duration
		want  time.Time
	}{
		{"default grace", nil, at.Add(api.DefaultRestartGrace)},
		{"grace of init", d(5 * time.Second), at.Add(5 * time.Second)},
		{"no grace", d(0), time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewState()
			applyAll(t, s, restartHistory(tc.grace))
			applyAll2(t, s, &NodeRestarting{NodeID: "n2", At: at})
			if got := s.Snapshot().Node("n2").RestartingUntil; !got.Equal(tc.want) {
				t.Fatalf("restarting until %v, want %v", got, tc.want)
			}
		})
	}

	s := NewState()
	applyAll(t, s, restartHistory(nil))
	until := at.Add(api.DefaultRestartGrace)
	steps := []struct {
		cmd  Command
		want time.Time
	}{
		{&NodeRestarting{NodeID: "n2", At: at}, until},
		{&NodeStatus{NodeID: "n2", Status: api.NodeDown, At: at}, until},
		// Registering while the leader still sees it down: the mark stays until
		// it is seen ready, or its tasks would be orphaned in between.
		{&NodeUpsert{Node: api.Node{ID: "n2", Hostname: "h2", Addr: "127.0.0.2", Role: api.RoleWorker, Status: api.NodeDown}, Refresh: true}, until},
		{&NodeStatus{NodeID: "n2", Status: api.NodeReady, At: at}, time.Time{}},
		// Back before the leader saw it go: its registration clears the mark.
		{&NodeRestarting{NodeID: "n2", At: at}, until},
		{&NodeUpsert{Node: api.Node{ID: "n2", Hostname: "h2", Addr: "127.0.0.2", Role: api.RoleWorker, Status: api.NodeReady, RestartingUntil: until}, Refresh: true}, time.Time{}},
	}
	for i, st := range steps {
		applyAll2(t, s, st.cmd)
		if got := s.Snapshot().Node("n2").RestartingUntil; !got.Equal(st.want) {
			t.Fatalf("step %d (%s): restarting until %v, want %v", i, st.cmd.Type(), got, st.want)
		}
	}

	if _, err := s.Apply(s.Index()+1, &NodeRestarting{NodeID: "n9", At: at}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown node: %v", err)
	}
}

// TestRestartSnapshotRoundTrip: the grace and a node's mark survive a snapshot.
func TestRestartSnapshotRoundTrip(t *testing.T) {
	g := 7 * time.Second
	s := NewState()
	applyAll(t, s, restartHistory(&g))
	applyAll2(t, s, &NodeRestarting{NodeID: "n2", At: t0})
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := NewState()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if a, b := s.Snapshot().Digest(), r.Snapshot().Digest(); a != b {
		t.Fatalf("digest %s != %s", a, b)
	}
	if got := r.Snapshot().Cluster().RestartGraceOrDefault(); got != g {
		t.Fatalf("grace %v", got)
	}
	if got := r.Snapshot().Node("n2").RestartingUntil; !got.Equal(t0.Add(g)) {
		t.Fatalf("mark %v", got)
	}
}

// applyAll2 applies commands after what the state already holds, through the
// log encoding.
func applyAll2(t *testing.T, s *State, cmds ...Command) {
	t.Helper()
	for _, c := range cmds {
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		dc, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(s.Index()+1, dc); err != nil {
			t.Fatalf("apply %s: %v", c.Type(), err)
		}
	}
}

// A node's registration is built from the copy of its record its handler read;
// a NodeStatus committed in between must win: liveness is gossip's. (A node back
// from a restart was set down again by its own stale registration, and its tasks
// were orphaned and replaced.)
func TestRegistrationKeepsLiveness(t *testing.T) {
	s := NewState()
	applyAll(t, s, restartHistory(nil))
	stale := *s.Snapshot().Node("n2")
	stale.Status = api.NodeDown
	applyAll2(t, s, &NodeRestarting{NodeID: "n2", At: t0}, &NodeStatus{NodeID: "n2", Status: api.NodeDown, At: t0},
		&NodeStatus{NodeID: "n2", Status: api.NodeReady, At: t0.Add(time.Second)},
		&NodeUpsert{Node: stale, Refresh: true})
	if n := s.Snapshot().Node("n2"); n.Status != api.NodeReady || !n.StatusAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("after a stale registration: status %s at %v, want ready at %v", n.Status, n.StatusAt, t0.Add(time.Second))
	}
}
