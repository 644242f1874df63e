package dispatcher

import (
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// updating is a service at spec version 2 (image img) in the middle of an update
// that started at t0, with cfg as its update settings.
func updating(replicas uint64, cfg api.UpdateConfig, opts ...func(*api.Service)) *api.Service {
	return mkService("web", replicas, append([]func(*api.Service){func(s *api.Service) {
		prev := s.Spec.Clone()
		prev.Image = "img:v1"
		s.SpecVersion, s.PreviousSpec = 2, &prev
		s.Spec.Update, s.Spec.Rollback = &cfg, &cfg
		s.UpdateStatus = &api.UpdateStatus{State: api.UpdateUpdating, StartedAt: t0}
	}}, opts...)...)
}

func cfgWith(f func(c *api.UpdateConfig)) api.UpdateConfig {
	c := api.DefaultUpdateConfig()
	f(&c)
	return c
}

func healthy(t *api.Task)   { t.Status.Health = api.HealthHealthy }
func starting(t *api.Task)  { t.Status.Health = api.HealthStarting }
func unhealthy(t *api.Task) { t.Status.Health = api.HealthUnhealthy }
func held(t *api.Task)      { t.DesiredState = api.TaskReady }
func ranFor(start, end time.Duration) func(*api.Task) {
	return func(t *api.Task) { t.StartedAt, t.Status.Timestamp = t0.Add(start), t0.Add(end) }
}
func crashLoopOf(n uint64) func(*api.Task) { return func(t *api.Task) { t.CrashLoop = n } }

// oldTasks are n running tasks of the previous spec, one per slot, on node 1.
func oldTasks(s *api.Service, n int, opts ...func(*api.Task)) []*api.Task {
	var ts []*api.Task
	for i := 1; i <= n; i++ {
		ts = append(ts, mkTask("o"+string(rune('0'+i)), s, uint64(i), "1", api.TaskRunning, append([]func(*api.Task){version(1), createdAt(-time.Hour)}, opts...)...))
	}
	return ts
}

func TestRollingUpdate(t *testing.T) {
	ready := []*api.Node{mkNode("1"), mkNode("2")}
	tests := []struct {
		name   string
		svc    *api.Service
		tasks  func(s *api.Service) []*api.Task
		now    time.Time
		want   []string
		update string // "kind state: message prefix"
		next   time.Time
	}{
		{name: "stop-first: parallelism slots at a time, each new task held until the old one stops",
			svc:   updating(4, cfgWith(func(c *api.UpdateConfig) { c.Parallelism = 2 })),
			tasks: func(s *api.Service) []*api.Task { return oldTasks(s, 4) },
			want:  []string{"desired o1 shutdown", "create n1 slot=1 held", "desired o2 shutdown", "create n2 slot=2 held"}},
		{name: "parallelism 0 updates every slot at once",
			svc:   updating(3, cfgWith(func(c *api.UpdateConfig) { c.Parallelism = 0 })),
			tasks: func(s *api.Service) []*api.Task { return oldTasks(s, 3) },
			want: []string{"desired o1 shutdown", "create n1 slot=1 held", "desired o2 shutdown", "create n2 slot=2 held",
				"desired o3 shutdown", "create n3 slot=3 held"}},
		{name: "a held task starts once the old one has stopped",
			svc: updating(2, api.DefaultUpdateConfig()),
			tasks: func(s *api.Service) []*api.Task {
				ts := oldTasks(s, 2)
				ts[0].Status.State, ts[0].DesiredState = api.TaskShutdown, api.TaskShutdown
				return append(ts, mkTask("u1", s, 1, "", api.TaskNew, held))
			},
			want: []string{"desired u1 running"}},
		{name: "a held task waits while the old one stops; the slot holds the update",
			svc: updating(2, api.DefaultUpdateConfig()),
			tasks: func(s *api.Service) []*api.Task {
				ts := oldTasks(s, 2)
				ts[0].DesiredState = api.TaskShutdown
				return append(ts, mkTask("u1", s, 1, "", api.TaskNew, held))
			}},
		{name: "a new task not yet healthy holds the update",
			svc: updating(2, api.DefaultUpdateConfig()),
			tasks: func(s *api.Service) []*api.Task {
				ts := oldTasks(s, 2)
				ts[0].Status.State, ts[0].DesiredState = api.TaskShutdown, api.TaskShutdown
				return append(ts, mkTask("u1", s, 1, "2", api.TaskRunning, starting))
			}},
		{name: "start-first: the new task starts beside the old one",
			svc:   updating(2, cfgWith(func(c *api.UpdateConfig) { c.Order = api.OrderStartFirst })),
			tasks: func(s *api.Service) []*api.Task { return oldTasks(s, 2) },
			want:  []string{"create n1 slot=1"}},
		{name: "start-first: the old task keeps serving while the new one is not healthy",
			svc: updating(2, cfgWith(func(c *api.UpdateConfig) { c.Order = api.OrderStartFirst })),
			tasks: func(s *api.Service) []*api.Task {
				return append(oldTasks(s, 2), mkTask("u1", s, 1, "2", api.TaskRunning, starting))
			}},
		{name: "start-first: the old task stops once the new one is healthy",
			svc: updating(2, cfgWith(func(c *api.UpdateConfig) { c.Order = api.OrderStartFirst })),
			tasks: func(s *api.Service) []*api.Task {
				return append(oldTasks(s, 2), mkTask("u1", s, 1, "2", api.TaskRunning, healthy))
			},
			want: []string{"desired o1 shutdown"}},
		{name: "start-first: a failed new task leaves the old one serving and pauses the update",
			svc: updating(2, cfgWith(func(c *api.UpdateConfig) { c.Order = api.OrderStartFirst })),
			tasks: func(s *api.Service) []*api.Task {
				return append(oldTasks(s, 2), mkTask("u1", s, 1, "2", api.TaskFailed, ranFor(time.Second, 2*time.Second)))
			},
			want:   []string{"desired u1 shutdown"},
			update: "status paused: update paused: task u1 (slot 1) failed"},
		{name: "the delay runs from the last slot done",
			svc: updating(2, cfgWith(func(c *api.UpdateConfig) { c.Delay = 10 * time.Second })),
			tasks: func(s *api.Service) []*api.Task {
				ts := oldTasks(s, 2)[1:]
				return append(ts, mkTask("u1", s, 1, "2", api.TaskRunning, ranFor(time.Second, 2*time.Second)))
			},
			now: at(5 * time.Second), next: at(12 * time.Second)},
		{name: "after the delay the next slot goes",
			svc: updating(2, cfgWith(func(c *api.UpdateConfig) { c.Delay = 10 * time.Second })),
			tasks: func(s *api.Service) []*api.Task {
				ts := oldTasks(s, 2)[1:]
				return append(ts, mkTask("u1", s, 1, "2", api.TaskRunning, ranFor(time.Second, 2*time.Second)))
			},
			now: at(12 * time.Second), want: []string{"desired o2 shutdown", "create n1 slot=2 held"}},
		{name: "a failure within the monitor window pauses the update",
			svc: updating(3, api.DefaultUpdateConfig()),
			tasks: func(s *api.Service) []*api.Task {
				u1 := mkTask("u1", s, 1, "2", api.TaskFailed, ranFor(time.Second, 3*time.Second))
				u1.Status.Err = "exit status 1"
				return append(oldTasks(s, 3)[1:], u1)
			},
			now:    at(3 * time.Second),
			want:   []string{"desired u1 shutdown", "create n1 slot=1 attempt=1"},
			update: "status paused: update paused: task u1 (slot 1) failed: exit status 1"},
		{name: "a failure after the monitor window does not count",
			svc: updating(2, api.DefaultUpdateConfig()),
			tasks: func(s *api.Service) []*api.Task {
				return append(oldTasks(s, 2)[1:], mkTask("u1", s, 1, "2", api.TaskFailed, ranFor(time.Second, 7*time.Second)))
			},
			now:  at(7 * time.Second),
			want: []string{"desired u1 shutdown", "create n1 slot=1 attempt=1"}},
		{name: "an unhealthy new task counts as a failure at once",
			svc: updating(2, api.DefaultUpdateConfig()),
			tasks: func(s *api.Service) []*api.Task {
				return append(oldTasks(s, 2)[1:], mkTask("u1", s, 1, "2", api.TaskRunning, unhealthy, ranFor(time.Second, 2*time.Second)))
			},
			update: "status paused: update paused: task u1 (slot 1) running: unhealthy"},
		{name: "failure action rollback: the rollback comes alone",
			svc: updating(3, cfgWith(func(c *api.UpdateConfig) { c.FailureAction = api.FailureRollback })),
			tasks: func(s *api.Service) []*api.Task {
				return append(oldTasks(s, 3)[1:], mkTask("u1", s, 1, "2", api.TaskRejected, ranFor(0, 0)))
			},
			update: "rollback : update rolled back: task u1 (slot 1) rejected"},
		{name: "failure action continue goes on",
			svc: updating(3, cfgWith(func(c *api.UpdateConfig) { c.FailureAction = api.FailureContinue })),
			tasks: func(s *api.Service) []*api.Task {
				return append(oldTasks(s, 3)[1:], mkTask("u1", s, 1, "2", api.TaskFailed, ranFor(time.Second, 2*time.Second)))
			},
			// Slot 1 is restarted at once (a first crash) and holds the update while
			// its new task starts.
			now: at(2 * time.Second), want: []string{"desired u1 shutdown", "create n1 slot=1 attempt=1"}},
		{name: "below the max failure ratio the update goes on",
			svc: updating(4, cfgWith(func(c *api.UpdateConfig) { c.MaxFailureRatio = 0.3; c.Parallelism = 2 })),
			tasks: func(s *api.Service) []*api.Task {
				return append(oldTasks(s, 4)[1:], mkTask("u1", s, 1, "2", api.TaskFailed, ranFor(time.Second, 2*time.Second), crashLoopOf(1)))
			},
			// 1 of 4 slots failed: under 0.3. The restart waits out a backoff (a second
			// crash in a row), so slot 1 holds no place and two slots go.
			now: at(2 * time.Second), want: []string{"desired u1 shutdown", "create n1 slot=1 attempt=1 held", "desired o2 shutdown", "create n2 slot=2 held",
				"desired o3 shutdown", "create n3 slot=3 held"},
			next: at(3 * time.Second)},
		{name: "a failing rollback pauses",
			svc: updating(2, cfgWith(func(c *api.UpdateConfig) { c.FailureAction = api.FailureRollback }), func(s *api.Service) {
				s.UpdateStatus.State = api.UpdateRollbackStarted
			}),
			tasks: func(s *api.Service) []*api.Task {
				return append(oldTasks(s, 2)[1:], mkTask("u1", s, 1, "2", api.TaskFailed, ranFor(time.Second, 2*time.Second)))
			},
			now: at(2 * time.Second), want: []string{"desired u1 shutdown", "create n1 slot=1 attempt=1"},
			update: "status rollback_paused: rollback paused: task u1"},
		{name: "completion waits for the monitor window of the last task",
			svc: updating(1, api.DefaultUpdateConfig()),
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("u1", s, 1, "2", api.TaskRunning, ranFor(time.Second, 2*time.Second))}
			},
			now: at(3 * time.Second), next: at(7 * time.Second)},
		{name: "then the update is completed",
			svc: updating(1, api.DefaultUpdateConfig()),
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("u1", s, 1, "2", api.TaskRunning, ranFor(time.Second, 2*time.Second))}
			},
			now: at(7 * time.Second), update: "status completed: update completed"},
		{name: "a paused update leaves outdated slots alone",
			svc:   updating(2, api.DefaultUpdateConfig(), func(s *api.Service) { s.UpdateStatus.State = api.UpdatePaused }),
			tasks: func(s *api.Service) []*api.Task { return oldTasks(s, 2) }},
		{name: "after a rollback the tasks never updated stay; the updated one is replaced",
			svc: updating(2, api.DefaultUpdateConfig(), func(s *api.Service) {
				// The spec went back to img:v1 at version 3.
				s.Spec.Image, s.SpecVersion = "img:v1", 3
				s.UpdateStatus = &api.UpdateStatus{State: api.UpdateRollbackStarted, StartedAt: t0}
			}),
			tasks: func(s *api.Service) []*api.Task {
				ts := oldTasks(s, 2)[1:]
				return append(ts, mkTask("u1", s, 1, "2", api.TaskRunning, version(2), createdAt(-time.Minute)))
			},
			want: []string{"desired u1 shutdown", "create n1 slot=1 held"}},
		{name: "a change of replicas only moves no task",
			svc: mkService("web", 2, func(s *api.Service) { s.SpecVersion = 5 }),
			tasks: func(s *api.Service) []*api.Task {
				return []*api.Task{mkTask("t1", s, 1, "1", api.TaskRunning, func(t *api.Task) { t.SpecVersion = 4; t.Spec.Replicas = 1 }),
					mkTask("t2", s, 2, "1", api.TaskRunning)}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			tasks := tc.tasks(tc.svc)
			p := Reconcile(tc.svc, ready, tasks, now, ids("n"))
			checkOps(t, p.Ops, tc.want...)
			got := ""
			if p.Update != nil {
				got = string(p.Update.Kind) + " " + string(p.Update.Status.State) + ": " + p.Update.Status.Message
			}
			if !strings.HasPrefix(got, tc.update) || (tc.update == "") != (got == "") {
				t.Errorf("update = %q, want %q...", got, tc.update)
			}
			if p.Update != nil && p.Update.SpecVersion != tc.svc.SpecVersion {
				t.Errorf("update decided on version %d, service at %d", p.Update.SpecVersion, tc.svc.SpecVersion)
			}
			if !p.Next.Equal(tc.next) {
				t.Errorf("next = %v, want %v", p.Next, tc.next)
			}
			if p.Update != nil && p.Update.Kind == api.UpdateOpRollback {
				return // a spec change: the next pass plans anew
			}
			// Idempotent: on the result of its own ops, Reconcile has nothing to add.
			svc := tc.svc
			if p.Update != nil {
				next, err := api.ApplyUpdateOp(svc, *p.Update)
				if err != nil {
					t.Fatal(err)
				}
				svc = next
			}
			again := Reconcile(svc, ready, applyToList(tasks, p.Ops), now, ids("m"))
			if len(again.Ops) != 0 || again.Update != nil {
				t.Errorf("second pass wrote %v %+v", opStrings(again.Ops), again.Update)
			}
		})
	}
}

func TestRestartBackoff(t *testing.T) {
	want := []time.Duration{0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for loop, w := range want {
		if got := RestartBackoff(uint64(loop)); got != w {
			t.Errorf("RestartBackoff(%d) = %s, want %s", loop, got, w)
		}
	}
	if got := RestartBackoff(40); got != BackoffMax {
		t.Errorf("RestartBackoff(40) = %s, want the cap %s", got, BackoffMax)
	}
	svc := mkService("web", 1)
	nodes := []*api.Node{mkNode("1")}
	cases := []struct {
		name     string
		task     *api.Task
		want     string
		loop     uint64
		restarts time.Time
	}{
		{"a first crash is replaced at once", mkTask("t1", svc, 1, "1", api.TaskFailed, ranFor(0, time.Second)),
			"create n1 slot=1 attempt=1", 1, time.Time{}},
		{"the third quick crash in a row waits 2 s", mkTask("t1", svc, 1, "1", api.TaskFailed, ranFor(0, time.Second), crashLoopOf(2)),
			"create n1 slot=1 attempt=1 held", 3, at(3 * time.Second)},
		{"a task that ran 10 minutes starts the count afresh", mkTask("t1", svc, 1, "1", api.TaskFailed, ranFor(0, 11*time.Minute), crashLoopOf(7)),
			"create n1 slot=1 attempt=1", 1, time.Time{}},
	}
	for _, tc := range cases {
		p := Reconcile(svc, nodes, []*api.Task{tc.task}, tc.task.Status.Timestamp, ids("n"))
		checkOps(t, p.Ops, "desired t1 shutdown", tc.want)
		nt := p.Ops[1].Task
		if nt.CrashLoop != tc.loop || !nt.RestartAt.Equal(tc.restarts) {
			t.Errorf("%s: crash loop %d restart at %v, want %d %v", tc.name, nt.CrashLoop, nt.RestartAt, tc.loop, tc.restarts)
		}
		if !tc.restarts.IsZero() && (!strings.Contains(nt.Status.Message, "3 quick exits in a row") || !strings.Contains(nt.Status.Message, "next try in 2s")) {
			t.Errorf("%s: the held task says %q", tc.name, nt.Status.Message)
		}
	}
}
