package api

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func validSpec(opts ...func(*ServiceSpec)) ServiceSpec {
	s := ServiceSpec{Name: "web", Image: "img", Replicas: 2, Ports: []PortConfig{{TargetPort: 80}}}
	for _, o := range opts {
		o(&s)
	}
	s.Normalize()
	return s
}

func dur(d time.Duration) *time.Duration { return &d }

func TestNormalizeFillsDockerDefaults(t *testing.T) {
	s := validSpec()
	want := UpdateConfig{Parallelism: 1, FailureAction: FailurePause, Monitor: 5 * time.Second, Order: OrderStopFirst}
	if *s.Update != want || *s.Rollback != want {
		t.Fatalf("update %+v rollback %+v, want %+v", *s.Update, *s.Rollback, want)
	}
	if s.StopGrace() != 10*time.Second || s.RestartPolicy.Delay != nil {
		t.Fatalf("stop grace %s, restart delay %v", s.StopGrace(), s.RestartPolicy.Delay)
	}
	// A partly given config keeps what was given and gets the rest.
	s = validSpec(func(s *ServiceSpec) { s.Update = &UpdateConfig{Parallelism: 3} })
	if s.Update.Parallelism != 3 || s.Update.Order != OrderStopFirst || s.Update.FailureAction != FailurePause {
		t.Fatalf("partial config: %+v", *s.Update)
	}
}

func TestValidateDeploy(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*ServiceSpec)
		want string
	}{
		{"negative parallelism", func(s *ServiceSpec) { s.Update.Parallelism = -1 }, "--update-parallelism -1"},
		{"ratio above 1", func(s *ServiceSpec) { s.Rollback.MaxFailureRatio = 1.5 }, "--rollback-max-failure-ratio"},
		{"ratio below 0", func(s *ServiceSpec) { s.Update.MaxFailureRatio = -0.1 }, "between 0 and 1"},
		{"negative delay", func(s *ServiceSpec) { s.Update.Delay = -time.Second }, "--update-delay"},
		{"negative monitor", func(s *ServiceSpec) { s.Rollback.Monitor = -time.Second }, "--rollback-monitor"},
		{"bad action", func(s *ServiceSpec) { s.Update.FailureAction = "explode" }, "pause, continue or rollback"},
		{"bad order", func(s *ServiceSpec) { s.Update.Order = "random" }, "stop-first or start-first"},
		{"negative grace", func(s *ServiceSpec) { s.StopGracePeriod = dur(-time.Second) }, "--stop-grace-period"},
		{"negative restart delay", func(s *ServiceSpec) { s.RestartPolicy.Delay = dur(-time.Second) }, "--restart-delay"},
		{"negative retries", func(s *ServiceSpec) { s.Health = &HealthCheck{Retries: -1} }, "--health-retries"},
		{"negative interval", func(s *ServiceSpec) { s.Health = &HealthCheck{Interval: -time.Second} }, "cannot be negative"},
		{"http without slash", func(s *ServiceSpec) { s.Health = &HealthCheck{HTTPPath: "health"} }, "must start with /"},
		{"http and tcp", func(s *ServiceSpec) { s.Health = &HealthCheck{HTTPPath: "/h", TCP: true} }, "cannot be used together"},
		{"check without port", func(s *ServiceSpec) { s.Ports = nil; s.Health = &HealthCheck{TCP: true} }, "needs a port"},
		{"bad test", func(s *ServiceSpec) { s.Health = &HealthCheck{Test: []string{"RUN", "x"}} }, "CMD, CMD-SHELL or NONE"},
		{"empty cmd", func(s *ServiceSpec) { s.Health = &HealthCheck{Test: []string{"CMD-SHELL"}} }, "no command"},
		{"bad signal", func(s *ServiceSpec) { s.StopSignal = "sig term" }, "--stop-signal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec()
			tc.mod(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
	ok := validSpec(func(s *ServiceSpec) {
		s.Health = &HealthCheck{HTTPPath: "/health", Interval: time.Second, Retries: 2}
		s.Update = &UpdateConfig{Parallelism: 0, MaxFailureRatio: 1, Order: OrderStartFirst, FailureAction: FailureRollback}
		s.StopSignal = "SIGINT"
	})
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid spec refused: %v", err)
	}
}

func TestSameTaskSpec(t *testing.T) {
	a := validSpec()
	cases := []struct {
		name string
		mod  func(*ServiceSpec)
		same bool
	}{
		{"replicas", func(s *ServiceSpec) { s.Replicas = 9 }, true},
		{"update config", func(s *ServiceSpec) { s.Update = &UpdateConfig{Parallelism: 4} }, true},
		{"empty env vs nil", func(s *ServiceSpec) { s.Env = []string{} }, true},
		{"image", func(s *ServiceSpec) { s.Image = "img2" }, false},
		{"env", func(s *ServiceSpec) { s.Env = []string{"A=1"} }, false},
		{"force", func(s *ServiceSpec) { s.ForceUpdate++ }, false},
		{"health", func(s *ServiceSpec) { s.Health = &HealthCheck{TCP: true} }, false},
		{"grace", func(s *ServiceSpec) { s.StopGracePeriod = dur(time.Second) }, false},
	}
	for _, tc := range cases {
		b := a.Clone()
		tc.mod(&b)
		if got := SameTaskSpec(a, b); got != tc.same {
			t.Errorf("%s: SameTaskSpec = %v, want %v", tc.name, got, tc.same)
		}
	}
}

func TestWithSpecAndRollback(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v1 := &Service{ID: "s1", Spec: validSpec(), SpecVersion: 1}
	if _, err := v1.RolledBack(t0, ""); !errors.Is(err, ErrNoPreviousSpec) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("rollback without previous spec: %v", err)
	}
	// A replicas-only change keeps the tasks: no update starts.
	scaled := validSpec(func(s *ServiceSpec) { s.Replicas = 5 })
	v2, err := v1.WithSpec(scaled, t0)
	if err != nil || v2.UpdateStatus != nil || v2.SpecVersion != 2 || v2.PreviousSpec.Replicas != 2 {
		t.Fatalf("replicas change: %+v %v", v2, err)
	}
	img := validSpec(func(s *ServiceSpec) { s.Image = "img2" })
	v3, err := v2.WithSpec(img, t0.Add(time.Second))
	if err != nil || v3.UpdateStatus == nil || v3.UpdateStatus.State != UpdateUpdating || !v3.UpdateStatus.StartedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("image change: %+v %v", v3.UpdateStatus, err)
	}
	if v3.PreviousSpec.Image != "img" {
		t.Fatalf("previous spec %+v", v3.PreviousSpec)
	}
	v4, err := v3.RolledBack(t0.Add(2*time.Second), "")
	if err != nil || v4.Spec.Image != "img" || v4.PreviousSpec.Image != "img2" || v4.SpecVersion != 4 ||
		v4.UpdateStatus.State != UpdateRollbackStarted || v4.UpdateStatus.Message != "manually requested rollback" {
		t.Fatalf("rollback: %+v %+v %v", v4, v4.UpdateStatus, err)
	}
	if v3.Spec.Image != "img2" {
		t.Fatal("rollback changed the service it was given")
	}
	if _, err := v1.WithSpec(validSpec(func(s *ServiceSpec) { s.Mode = ModeGlobal; s.Replicas = 0 }), t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("mode change: %v", err)
	}
}

func TestApplyUpdateOp(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := validSpec()
	svc := &Service{ID: "s1", Spec: validSpec(func(s *ServiceSpec) { s.Image = "v2" }), SpecVersion: 3, PreviousSpec: &prev,
		UpdateStatus: &UpdateStatus{State: UpdateUpdating, StartedAt: t0}}
	done := UpdateStatus{State: UpdateCompleted, Message: "update completed", StartedAt: t0, CompletedAt: t0.Add(time.Minute)}
	got, err := ApplyUpdateOp(svc, UpdateOp{Kind: UpdateOpStatus, ServiceID: "s1", SpecVersion: 3, Status: done})
	if err != nil || *got.UpdateStatus != done || svc.UpdateStatus.State != UpdateUpdating {
		t.Fatalf("status op: %+v %v", got, err)
	}
	if _, err := ApplyUpdateOp(svc, UpdateOp{Kind: UpdateOpStatus, ServiceID: "s1", SpecVersion: 2, Status: done}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale op: %v", err)
	}
	if _, err := ApplyUpdateOp(svc, UpdateOp{Kind: UpdateOpStatus, ServiceID: "s1", SpecVersion: 3, Status: UpdateStatus{State: "weird"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad state: %v", err)
	}
	rb, err := ApplyUpdateOp(svc, UpdateOp{Kind: UpdateOpRollback, ServiceID: "s1", SpecVersion: 3, At: t0, Status: UpdateStatus{Message: "task x failed"}})
	if err != nil || rb.Spec.Image != "img" || rb.UpdateStatus.State != UpdateRollbackStarted || rb.UpdateStatus.Message != "task x failed" {
		t.Fatalf("rollback op: %+v %v", rb, err)
	}
}

func TestStatusOpRecordsStartedAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cur := &Task{ID: "a", NodeID: "n1", Status: TaskStatus{State: TaskStarting}}
	run, _, _ := ApplyTaskOp(cur, TaskOp{Kind: TaskOpStatus, TaskID: "a", Status: TaskStatus{State: TaskRunning, Timestamp: t0}}, 2)
	if !run.StartedAt.Equal(t0) {
		t.Fatalf("started at %v", run.StartedAt)
	}
	healthy, _, _ := ApplyTaskOp(run, TaskOp{Kind: TaskOpStatus, TaskID: "a", Status: TaskStatus{State: TaskRunning, Health: HealthHealthy, Timestamp: t0.Add(time.Second)}}, 3)
	failed, _, _ := ApplyTaskOp(healthy, TaskOp{Kind: TaskOpStatus, TaskID: "a", Status: TaskStatus{State: TaskFailed, Timestamp: t0.Add(time.Minute)}}, 4)
	if !failed.StartedAt.Equal(t0) {
		t.Fatalf("a later report moved StartedAt to %v", failed.StartedAt)
	}
	never, _, _ := ApplyTaskOp(cur, TaskOp{Kind: TaskOpStatus, TaskID: "a", Status: TaskStatus{State: TaskFailed, Timestamp: t0}}, 2)
	if !never.StartedAt.IsZero() {
		t.Fatalf("a task that never ran has StartedAt %v", never.StartedAt)
	}
}
