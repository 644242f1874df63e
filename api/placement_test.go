package api

import (
	"strings"
	"testing"
)

func TestConstraintHolds(t *testing.T) {
	n := &Node{ID: "n1", Hostname: "h1", Labels: map[string]string{"zone": "a"}, EngineLabels: map[string]string{"disk": "ssd"},
		Platform: Platform{OS: "linux", Arch: "amd64"}}
	bare := &Node{ID: "n2"}
	for _, tc := range []struct {
		expr string
		node *Node
		want bool
	}{
		{"node.labels.zone==a", n, true},
		{"node.labels.zone!=a", n, false},
		{"node.labels.zone!=a", bare, true}, // a missing label equals nothing
		{"engine.labels.disk==ssd", n, true},
		{"engine.labels.disk==ssd", bare, false},
		{"engine.labels.disk!=hdd", n, true},
		{"node.platform.os==linux", n, true},
		{"node.platform.os==Linux", n, true}, // Swarm matches platforms without case
		{"node.platform.os==windows", n, false},
		{"node.platform.arch==x86_64", n, true}, // Swarm's spelling of Go's amd64
		{"node.platform.arch==amd64", n, true},
		{"node.platform.arch==aarch64", n, false},
		{"node.platform.arch!=aarch64", n, true},
		{"node.platform.os==linux", bare, false}, // a node that did not say
		{"node.platform.os!=linux", bare, true},
	} {
		c, err := ParseConstraint(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Holds(tc.node); got != tc.want {
			t.Errorf("%s on %s: %v, want %v", tc.expr, tc.node.ID, got, tc.want)
		}
	}
}

func TestParsePlacementPref(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "spread=node.labels.zone", want: "node.labels.zone"},
		{in: "spread = engine.labels.rack", want: "engine.labels.rack"},
		{in: "spread=node.platform.arch", want: "node.platform.arch"},
		{in: "spread=node.labels.", err: "unknown spread key"},
		{in: "spread=node.hostname", err: "unknown spread key"},
		{in: "spread=zone", err: "unknown spread key"},
		{in: "pack=node.labels.zone", err: "only spread is supported"},
		{in: "node.labels.zone", err: "expected spread=KEY"},
	} {
		p, err := ParsePlacementPref(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err == "" && p.Spread != tc.want:
			t.Errorf("%q: spread %q, want %q", tc.in, p.Spread, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one with %q", tc.in, err, tc.err)
		}
	}
}

func TestValidateJobsAndPlacement(t *testing.T) {
	base := func(mode ServiceMode, f func(*ServiceSpec)) ServiceSpec {
		s := ServiceSpec{Name: "j", Image: "img", Mode: mode}
		if mode == ModeReplicated || mode == ModeReplicatedJob {
			s.Replicas = 3
		}
		if f != nil {
			f(&s)
		}
		s.Normalize()
		return s
	}
	for _, tc := range []struct {
		name string
		spec ServiceSpec
		err  string
	}{
		{name: "replicated job", spec: base(ModeReplicatedJob, func(s *ServiceSpec) { s.MaxConcurrent = 2 })},
		{name: "global job", spec: base(ModeGlobalJob, nil)},
		{name: "max concurrent on a service", spec: base(ModeReplicated, func(s *ServiceSpec) { s.MaxConcurrent = 2 }), err: "--max-concurrent can only be used with --mode replicated-job"},
		{name: "max concurrent on a global job", spec: base(ModeGlobalJob, func(s *ServiceSpec) { s.MaxConcurrent = 2 }), err: "--max-concurrent can only be used"},
		{name: "replicas on a global job", spec: base(ModeGlobalJob, func(s *ServiceSpec) { s.Replicas = 2 }), err: "--replicas cannot be used with --mode global-job"},
		{name: "max per node on global", spec: base(ModeGlobal, func(s *ServiceSpec) { s.MaxReplicasPerNode = 1 }), err: "--replicas-max-per-node can only be used"},
		{name: "max per node on a replicated job", spec: base(ModeReplicatedJob, func(s *ServiceSpec) { s.MaxReplicasPerNode = 1 })},
		{name: "update settings on a job", spec: func() ServiceSpec {
			s := base(ModeReplicatedJob, nil)
			c := DefaultUpdateConfig()
			s.Update = &c
			return s
		}(), err: "do not apply to jobs"},
		{name: "unknown spread key", spec: base(ModeReplicated, func(s *ServiceSpec) { s.PlacementPrefs = []PlacementPref{{Spread: "zone"}} }), err: "unknown spread key"},
		{name: "nested spread", spec: base(ModeReplicated, func(s *ServiceSpec) {
			s.PlacementPrefs = []PlacementPref{{Spread: "node.labels.dc"}, {Spread: "node.labels.rack"}}
		})},
		{name: "unknown mode", spec: base("batch", nil), err: "use replicated, global, replicated-job or global-job"},
	} {
		err := tc.spec.Validate()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.err)
		}
	}
}

func TestNormalizeJob(t *testing.T) {
	s := ServiceSpec{Name: "j", Image: "img", Mode: ModeReplicatedJob, Replicas: 2}
	s.Normalize()
	if s.RestartPolicy.Condition != RestartOnFailure {
		t.Errorf("a job's default restart condition is %q, want on-failure (as Swarm)", s.RestartPolicy.Condition)
	}
	if s.Update != nil || s.Rollback != nil {
		t.Errorf("a job got update settings: %+v %+v", s.Update, s.Rollback)
	}
	svc := &Service{Spec: s, SpecVersion: 1, JobRun: 1}
	s2 := s.Clone()
	s2.ForceUpdate++
	next, err := svc.WithSpec(s2, svc.CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	if next.UpdateStatus != nil || next.SpecVersion != 2 || next.JobRun != 2 {
		t.Errorf("a job's update --force: status %+v at version %d, run %d; want no rolling update, a new run at version 2", next.UpdateStatus, next.SpecVersion, next.JobRun)
	}
	s3 := next.Spec.Clone()
	s3.Replicas, s3.MaxConcurrent = 5, 2
	if more, err := next.WithSpec(s3, svc.CreatedAt); err != nil || more.JobRun != 2 || more.SpecVersion != 3 {
		t.Errorf("more replicas and another max-concurrent: run %d at version %d (%v); want the run of version 2 going on", more.JobRun, more.SpecVersion, err)
	}
	if _, err := next.RolledBack(svc.CreatedAt, ""); err == nil || !strings.Contains(err.Error(), "is a job") {
		t.Errorf("rollback of a job: %v", err)
	}
}
