package raftstore

import (
	"errors"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// A job's spec change is a new run of it, never a rolling update; a replicated
// job scales (its run goes on), a global one does not; a job has no rollback.
func TestJobCommands(t *testing.T) {
	s := NewState()
	j := spec("j", 3)
	j.Mode, j.MaxConcurrent = api.ModeReplicatedJob, 2
	g := spec("g", 0)
	g.Mode = api.ModeGlobalJob
	applyAll(t, s, []Command{
		&ClusterInit{ClusterID: "c1", ClusterNetwork: api.ClusterNetwork{ServiceRange: "127.128.0.0/16"}, PortRange: [2]int{30000, 30999}, At: t0},
		&NodeUpsert{Node: api.Node{ID: "n1", Hostname: "h1", Addr: "127.0.0.1", Role: api.RoleManager,
			Platform: api.Platform{OS: "linux", Arch: "x86_64"}, EngineLabels: map[string]string{"disk": "ssd"}}},
		&ServiceCreate{ID: "s1", Spec: j, At: t0},
		&ServiceCreate{ID: "s2", Spec: g, At: t0},
	})
	snap := s.Snapshot()
	got := snap.Service("j")
	if got.Spec.RestartPolicy.Condition != api.RestartOnFailure || got.Spec.Update != nil || got.JobRun != 1 {
		t.Fatalf("job spec normalized to %+v", got.Spec)
	}
	if n := snap.Node("n1"); n.Platform.Arch != "x86_64" || n.EngineLabels["disk"] != "ssd" {
		t.Fatalf("node lost its platform or engine labels: %+v", n)
	}
	forced := got.Spec.Clone()
	forced.ForceUpdate++
	if _, err := s.Apply(10, &ServiceUpdate{Name: "j", ExpectedVersion: 1, Spec: forced, At: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if got = s.Snapshot().Service("j"); got.SpecVersion != 2 || got.JobRun != 2 || got.UpdateStatus != nil {
		t.Fatalf("update --force of a job: version %d, run %d, update status %+v; want a new run at 2 and no update", got.SpecVersion, got.JobRun, got.UpdateStatus)
	}
	if _, err := s.Apply(11, &ServiceScale{Name: "j", Replicas: 5, At: t0}); err != nil {
		t.Fatal(err)
	}
	if got = s.Snapshot().Service("j"); got.Spec.Replicas != 5 || got.SpecVersion != 2 || got.JobRun != 2 {
		t.Fatalf("scaled job: %d replicas at version %d, run %d; want 5 at 2, the same run", got.Spec.Replicas, got.SpecVersion, got.JobRun)
	}
	if _, err := s.Apply(12, &ServiceScale{Name: "g", Replicas: 5, At: t0}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("scale of a global job: %v", err)
	}
	if _, err := s.Apply(13, &ServiceRollback{Name: "j", At: t0}); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("rollback of a job: %v", err)
	}
	bad := got.Spec.Clone()
	bad.MaxConcurrent, bad.Mode = 2, api.ModeGlobalJob
	if _, err := s.Apply(14, &ServiceUpdate{Name: "j", Spec: bad, At: t0}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid job update: %v", err)
	}
}
