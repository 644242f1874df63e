package raftstore

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// deployHistory: a service created, updated to a new image (an update starts), the
// loop pauses it, an operator rolls it back, the loop completes the rollback.
func deployHistory() []Command {
	v2 := spec("web", 3)
	v2.Image = "/bin/true"
	task := &api.Task{ID: "t1", ServiceID: "s1", ServiceName: "web", Slot: 1, DesiredState: api.TaskReady, CrashLoop: 2,
		RestartAt: t0.Add(2 * time.Second), Status: api.TaskStatus{State: api.TaskNew, Timestamp: t0}}
	return []Command{
		&ClusterInit{ClusterID: "c1", ClusterNetwork: api.ClusterNetwork{ServiceRange: "127.128.0.0/16"}, PortRange: [2]int{30000, 30999}, At: t0},
		&NodeUpsert{Node: api.Node{ID: "n1", Hostname: "h1", Addr: "127.0.0.1", Role: api.RoleManager}},
		&ServiceCreate{ID: "s1", Spec: spec("web", 3), At: t0},
		&ServiceUpdate{Name: "web", ExpectedVersion: 1, Spec: v2, At: t0.Add(time.Second)},
		&TaskOps{Ops: []api.TaskOp{{Kind: api.TaskOpCreate, Task: task}, {Kind: api.TaskOpDesired, TaskID: "t1", Desired: api.TaskRunning},
			{Kind: api.TaskOpAssign, TaskID: "t1", NodeID: "n1", At: t0}}},
		&TaskOps{Ops: []api.TaskOp{{Kind: api.TaskOpStatus, TaskID: "t1", NodeID: "n1",
			Status: api.TaskStatus{State: api.TaskRunning, Health: api.HealthStarting, Timestamp: t0.Add(3 * time.Second)}}}},
		&ServiceUpdateStatus{ServiceID: "s1", SpecVersion: 2, Status: api.UpdateStatus{State: api.UpdatePaused, Message: "task t1 failed", StartedAt: t0.Add(time.Second)}},
		&ServiceRollback{Name: "web", ExpectedVersion: 2, At: t0.Add(4 * time.Second)},
		&ServiceUpdateStatus{ServiceID: "s1", SpecVersion: 3, Status: api.UpdateStatus{State: api.UpdateRollbackCompleted, StartedAt: t0.Add(4 * time.Second), CompletedAt: t0.Add(9 * time.Second)}},
	}
}

func TestServiceUpdateKeepsPreviousSpecAndStartsUpdate(t *testing.T) {
	s := NewState()
	cmds := deployHistory()
	applyAll(t, s, cmds[:4])
	web := s.Snapshot().Service("web")
	if web.SpecVersion != 2 || web.Spec.Image != "/bin/true" || web.PreviousSpec == nil || web.PreviousSpec.Image != "/bin/sleep" {
		t.Fatalf("after update: %+v", web)
	}
	if st := web.UpdateStatus; st == nil || st.State != api.UpdateUpdating || !st.StartedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("update status %+v", web.UpdateStatus)
	}
	// A replicas-only change moves no task: no new update, the previous spec follows.
	scaled := web.Spec.Clone()
	scaled.Replicas = 5
	if _, err := s.Apply(10, &ServiceUpdate{Name: "web", ExpectedVersion: 2, Spec: scaled, At: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	web = s.Snapshot().Service("web")
	if !web.UpdateStatus.StartedAt.Equal(t0.Add(time.Second)) || web.PreviousSpec.Replicas != 3 {
		t.Fatalf("replicas change: %+v %+v", web.UpdateStatus, web.PreviousSpec)
	}
}

func TestRollbackAndUpdateStatus(t *testing.T) {
	s := NewState()
	applyAll(t, s, deployHistory())
	v := s.Snapshot()
	web := v.Service("web")
	if web.SpecVersion != 3 || web.Spec.Image != "/bin/sleep" || web.PreviousSpec.Image != "/bin/true" {
		t.Fatalf("after rollback: %+v", web)
	}
	if st := web.UpdateStatus; st.State != api.UpdateRollbackCompleted || !st.CompletedAt.Equal(t0.Add(9*time.Second)) {
		t.Fatalf("update status %+v", st)
	}
	if web.VIP == "" || len(web.Ports) != 1 || web.Ports[0].PublishedPort != 30000 {
		t.Fatalf("rollback lost the VIP or ports: %+v %+v", web.VIP, web.Ports)
	}
	task := v.Task("t1")
	if !task.StartedAt.Equal(t0.Add(3*time.Second)) || task.Status.Health != api.HealthStarting {
		t.Fatalf("task %+v", task)
	}
}

func TestDeployRefusalsChangeNothing(t *testing.T) {
	base := deployHistory()[:3] // web created, never updated
	cases := []struct {
		name string
		cmds []Command // applied first
		cmd  Command
		want error
		text string
	}{
		{"rollback without previous spec", nil, &ServiceRollback{Name: "web", At: t0}, api.ErrNoPreviousSpec, "no previous spec"},
		{"rollback of a missing service", nil, &ServiceRollback{Name: "nope", At: t0}, ErrNotFound, "nope"},
		{"rollback at a stale version", deployHistory()[3:4], &ServiceRollback{Name: "web", ExpectedVersion: 1, At: t0}, ErrVersionConflict, "version"},
		{"status at a stale version", deployHistory()[3:4], &ServiceUpdateStatus{ServiceID: "s1", SpecVersion: 1,
			Status: api.UpdateStatus{State: api.UpdateCompleted}}, api.ErrConflict, "spec version"},
		{"status of a missing service", nil, &ServiceUpdateStatus{ServiceID: "nope", SpecVersion: 1, Status: api.UpdateStatus{State: api.UpdatePaused}}, ErrNotFound, ""},
		{"bad status", nil, &ServiceUpdateStatus{ServiceID: "s1", SpecVersion: 1, Status: api.UpdateStatus{State: "sideways"}}, ErrInvalid, "sideways"},
		{"mode change", nil, &ServiceUpdate{Name: "web", Spec: api.ServiceSpec{Name: "web", Image: "x", Mode: api.ModeGlobal}}, ErrInvalid, "mode"},
		{"negative parallelism", nil, &ServiceUpdate{Name: "web", Spec: func() api.ServiceSpec {
			sp := spec("web", 1)
			sp.Update = &api.UpdateConfig{Parallelism: -1}
			return sp
		}()}, ErrInvalid, "--update-parallelism"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewState()
			applyAll(t, s, append(append([]Command{}, base...), tc.cmds...))
			before := s.Snapshot().Digest()
			_, err := s.Apply(100, tc.cmd)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v naming %q", err, tc.want, tc.text)
			}
			if after := s.Snapshot().Digest(); after != before {
				t.Fatal("a refused command changed the state")
			}
		})
	}
}

func TestDeploySnapshotRoundTripAndDeterminism(t *testing.T) {
	s := NewState()
	applyAll(t, s, deployHistory())
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
	web := r.Snapshot().Service("web")
	if web.PreviousSpec == nil || web.UpdateStatus == nil || web.UpdateStatus.State != api.UpdateRollbackCompleted || web.Spec.Update == nil {
		t.Fatalf("restored service lost deployment fields: %+v", web)
	}
	task := r.Snapshot().Task("t1")
	if task.CrashLoop != 2 || !task.RestartAt.Equal(t0.Add(2*time.Second)) || task.StartedAt.IsZero() || task.Status.Health != api.HealthStarting {
		t.Fatalf("restored task lost fields: %+v", task)
	}
	// A second rollback goes forward again (the specs swap), so it is never stuck.
	if _, err := r.Apply(200, &ServiceRollback{Name: "web", At: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := r.Snapshot().Service("web"); got.Spec.Image != "/bin/true" || got.UpdateStatus.State != api.UpdateRollbackStarted {
		t.Fatalf("second rollback: %+v", got)
	}
	a, b := NewState(), NewState()
	applyAll(t, a, deployHistory())
	applyAll(t, b, deployHistory())
	if a.Snapshot().Digest() != b.Snapshot().Digest() {
		t.Fatal("two FSMs diverged on the same log")
	}
}
