package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func spec(name string, replicas uint64) api.ServiceSpec {
	return api.ServiceSpec{Name: name, Image: "/bin/sleep", Command: []string{"1000"}, Replicas: replicas,
		Ports: []api.PortConfig{{TargetPort: 80}}}
}

// history is a log that touches every command type.
func history() []Command {
	task := &api.Task{ID: "t1", ServiceID: "s1", ServiceName: "web", Slot: 1, DesiredState: api.TaskRunning,
		Status: api.TaskStatus{State: api.TaskNew, Timestamp: t0}}
	return []Command{
		&ClusterInit{ClusterID: "c1", Trust: ClusterTrust{CACert: []byte("ca1"), CAKey: []byte("k1"),
			WorkerToken: TokenSecret{Hash: "w"}, ManagerToken: TokenSecret{Hash: "m"}, GossipKeys: [][]byte{make([]byte, 32)}}, ClusterNetwork: api.ClusterNetwork{ServiceRange: "127.128.0.0/16"}, PortRange: [2]int{30000, 30999}, At: t0},
		&NodeUpsert{Node: api.Node{ID: "n1", Hostname: "h1", Addr: "127.0.0.1", Role: api.RoleManager}},
		&NodeUpsert{Node: api.Node{ID: "n2", Hostname: "h2", Addr: "127.0.0.2", Role: api.RoleWorker}},
		&NodeUpdate{NodeID: "n2", Availability: api.AvailabilityDrain, LabelAdd: map[string]string{"zone": "a"}},
		&NodeStatus{NodeID: "n2", Status: api.NodeDown, At: t0},
		&ServiceCreate{ID: "s1", Spec: spec("web", 2), At: t0},
		&ServiceScale{Name: "web", Replicas: 3, At: t0},
		&ServiceUpdate{Name: "web", ExpectedVersion: 1, Spec: spec("web", 3), At: t0},
		&TaskOps{Ops: []api.TaskOp{{Kind: api.TaskOpCreate, Task: task}, {Kind: api.TaskOpAssign, TaskID: "t1", NodeID: "n1", At: t0}}},
		&TaskOps{Ops: []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: "t1", NodeID: "n1", Status: api.TaskStatus{State: api.TaskRunning, Timestamp: t0}}}},
		&TokenRotate{Role: api.RoleWorker, Generation: 1, Hash: "w2"},
		&CAUpdate{Prev: []byte("ca1"), CACert: []byte("ca2"), CAKey: []byte("k2"), WorkerHash: "w3", ManagerHash: "m3"},
		&GossipKeysSet{Keys: [][]byte{make([]byte, 16), make([]byte, 32)}},
		&UnlockKeySet{Key: "SWLKEY-1-" + strings.Repeat("0", 49) + "1"},
		&NodeCert{NodeID: "n1", Issuer: "root2", Expiry: t0},
		&ServiceCreate{ID: "s2", Spec: spec("api", 1), At: t0},
		&ServiceRemove{Name: "api", At: t0},
		&NodeRestarting{NodeID: "n2", At: t0},
		&NodeRemove{NodeID: "n2"},
		&SecretCreate{ID: "sec1", Kind: api.KindSecret, Name: "db", Data: []byte("pw1"), At: t0},
		&SecretUpdate{Kind: api.KindSecret, Name: "db", Data: []byte("pw2"), At: t0},
		&SecretCreate{ID: "cfg1", Kind: api.KindConfig, Name: "gone", Data: []byte("x"), At: t0},
		&SecretRemove{Kind: api.KindConfig, Name: "gone", At: t0},
		// n1 is ready already and n2 was removed: nothing changes (nodestatuses_test.go has one that does).
		&NodeStatuses{Statuses: []NodeStatus{{NodeID: "n1", Status: api.NodeReady, At: t0}, {NodeID: "n2", Status: api.NodeReady, At: t0}}},
	}
}

func applyAll(t *testing.T, s *State, cmds []Command) {
	t.Helper()
	for i, c := range cmds {
		// Round-trip through the log encoding, as Raft would.
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		dc, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(uint64(i+1), dc); err != nil {
			t.Fatalf("apply %d %s: %v", i+1, c.Type(), err)
		}
	}
}

func TestApplyEachCommand(t *testing.T) {
	s := NewState()
	applyAll(t, s, history())
	v := s.Snapshot()
	if v.Index() != uint64(len(history())) {
		t.Fatalf("index %d", v.Index())
	}
	if c := v.Cluster(); c == nil || c.Trust.WorkerToken != (TokenSecret{Hash: "w3", Generation: 1}) ||
		c.Trust.ManagerToken != (TokenSecret{Hash: "m3"}) || string(c.Trust.CACert) != "ca2" || string(c.Trust.CAKey) != "k2" ||
		len(c.Trust.GossipKeys) != 2 || c.Trust.UnlockKey == "" {
		t.Fatalf("cluster %+v", c)
	}
	if n := v.Node("n1"); n.CertIssuer != "root2" || !n.CertExpiry.Equal(t0) {
		t.Fatalf("node cert %+v", n)
	}
	if v.Node("n2") != nil || v.Node("n1") == nil {
		t.Fatal("node remove")
	}
	web := v.Service("web")
	if web == nil || web.Spec.Replicas != 3 || web.SpecVersion != 2 || web.VIP != "127.128.0.1" {
		t.Fatalf("web %+v", web)
	}
	if len(web.Ports) != 1 || web.Ports[0].PublishedPort != 30000 {
		t.Fatalf("web ports %+v", web.Ports)
	}
	if v.Service("api") != nil {
		t.Fatal("api not removed")
	}
	task := v.Task("t1")
	if task == nil || task.NodeID != "n1" || task.Status.State != api.TaskRunning {
		t.Fatalf("task %+v", task)
	}
	if got := v.TasksByNode("n1"); len(got) != 1 {
		t.Fatalf("by node %d", len(got))
	}
	if got := v.TasksByService("s1"); len(got) != 1 {
		t.Fatalf("by service %d", len(got))
	}
}

func TestRefusalsChangeNothing(t *testing.T) {
	cases := []struct {
		name string
		cmd  Command
		want error
	}{
		{"duplicate name", &ServiceCreate{ID: "s9", Spec: spec("web", 1)}, ErrNameTaken},
		{"stale version", &ServiceUpdate{Name: "web", ExpectedVersion: 1, Spec: spec("web", 1)}, ErrVersionConflict},
		{"unknown service", &ServiceScale{Name: "nope", Replicas: 1}, ErrNotFound},
		{"unknown node", &NodeUpdate{NodeID: "nope", Availability: api.AvailabilityDrain}, ErrNotFound},
		{"bad availability", &NodeUpdate{NodeID: "n1", Availability: "sleepy"}, ErrInvalid},
		{"remove ready node", &NodeRemove{NodeID: "n1"}, ErrInvalid},
		{"bad spec", &ServiceCreate{ID: "s9", Spec: api.ServiceSpec{Name: "Bad_Name", Image: "x"}}, ErrInvalid},
		{"second init", &ClusterInit{ClusterID: "c2"}, ErrInvalid},
		{"token generation skipped", &TokenRotate{Role: api.RoleWorker, Generation: 3, Hash: "x"}, ErrVersionConflict},
		{"token generation replayed", &TokenRotate{Role: api.RoleWorker, Generation: 1, Hash: "x"}, ErrVersionConflict},
		{"token of no role", &TokenRotate{Role: "boss", Generation: 2, Hash: "x"}, ErrInvalid},
		{"CA replaced from a stale view", &CAUpdate{Prev: []byte("ca1"), CACert: []byte("ca3"), CAKey: []byte("k3"), WorkerHash: "w", ManagerHash: "m"}, ErrVersionConflict},
		{"CA without key", &CAUpdate{Prev: []byte("ca2"), CACert: []byte("ca3"), WorkerHash: "w", ManagerHash: "m"}, ErrInvalid},
		{"gossip key of a bad size", &GossipKeysSet{Keys: [][]byte{make([]byte, 7)}}, ErrInvalid},
		{"empty gossip keyring", &GossipKeysSet{}, ErrInvalid},
		{"malformed unlock key", &UnlockKeySet{Key: "SWLKEY-1-short"}, ErrInvalid},
		{"cert of an unknown node", &NodeCert{NodeID: "nope", Issuer: "x"}, ErrNotFound},
		{"port taken", &ServiceCreate{ID: "s9", Spec: api.ServiceSpec{Name: "other", Image: "x", Ports: []api.PortConfig{{TargetPort: 80, PublishedPort: 30000}}}}, ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewState()
			applyAll(t, s, history())
			before := s.Snapshot().Digest()
			if _, err := s.Apply(100, tc.cmd); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if after := s.Snapshot().Digest(); after != before {
				t.Fatal("a refused command changed the state")
			}
		})
	}
}

func TestTaskOpsMoveForwardOnly(t *testing.T) {
	s := NewState()
	applyAll(t, s, history())
	ops := []api.TaskOp{
		{Kind: api.TaskOpStatus, TaskID: "t1", NodeID: "n1", Status: api.TaskStatus{State: api.TaskStarting}},
		{Kind: api.TaskOpDesired, TaskID: "t1", Desired: api.TaskNew},
		{Kind: api.TaskOpAssign, TaskID: "t1", NodeID: "n9"},
		{Kind: api.TaskOpStatus, TaskID: "t1", NodeID: "n9", Status: api.TaskStatus{State: api.TaskFailed}},
		{Kind: api.TaskOpStatus, TaskID: "missing", Status: api.TaskStatus{State: api.TaskFailed}},
	}
	if _, err := s.Apply(100, &TaskOps{Ops: ops}); err != nil {
		t.Fatal(err)
	}
	task := s.Snapshot().Task("t1")
	if task.Status.State != api.TaskRunning || task.DesiredState != api.TaskRunning || task.NodeID != "n1" {
		t.Fatalf("task moved backwards: %+v", task)
	}
	if _, err := s.Apply(101, &TaskOps{Ops: []api.TaskOp{{Kind: api.TaskOpDelete, TaskID: "t1"}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("delete of a running task: %v", err)
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	s := NewState()
	applyAll(t, s, history())
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
	if r.Index() != s.Index() {
		t.Fatalf("index %d != %d", r.Index(), s.Index())
	}
	// The restored state keeps working: indexes are rebuilt, new commands apply.
	if _, err := r.Apply(200, &ServiceCreate{ID: "s3", Spec: spec("db", 1), At: t0}); err != nil {
		t.Fatal(err)
	}
	if got := r.Snapshot().Service("db"); got == nil || got.VIP != "127.128.0.2" {
		t.Fatalf("db %+v", got)
	}
}

func TestSameLogSameState(t *testing.T) {
	a, b := NewState(), NewState()
	cmds := history()
	for i := range 50 {
		cmds = append(cmds, &ServiceCreate{ID: fmt.Sprintf("x%d", i), Spec: spec(fmt.Sprintf("svc%d", i), uint64(i)), At: t0})
	}
	applyAll(t, a, cmds)
	applyAll(t, b, cmds)
	if a.Snapshot().Digest() != b.Snapshot().Digest() {
		t.Fatal("two FSMs diverged on the same log")
	}
}

func TestWatchAndWaitIndex(t *testing.T) {
	s := NewState()
	ch := s.Watch()
	go func() { _, _ = s.Apply(7, history()[0]) }()
	<-ch
	ctx, cancel := contextWithTimeout(t, 5*time.Second)
	defer cancel()
	if got := s.WaitIndex(ctx, 6); got != 7 {
		t.Fatalf("WaitIndex = %d", got)
	}
}
