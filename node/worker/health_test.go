package worker

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// bump hands out the same tasks again, so the agent reconciles (and lists) again.
func (m *fakeManager) bump() {
	m.mu.Lock()
	tasks := m.tasks
	m.mu.Unlock()
	m.set(tasks...)
}

func (m *fakeManager) reports(taskID string) []api.TaskStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]api.TaskStatus(nil), m.history[taskID]...)
}

func (m *fakeManager) last(taskID string) api.TaskStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status[taskID]
}

func checkedTask(id, image string, h *api.HealthCheck) *api.Task {
	t := task(id, image, api.TaskRunning, api.TaskAssigned)
	t.Spec.Ports = []api.PortConfig{{TargetPort: 80, Protocol: "tcp"}}
	t.Spec.Health = h
	return t
}

// The engine's own check (Docker's HEALTHCHECK): its verdict is the task's health;
// an unhealthy task is reported so (it leaves DNS and the VIP), then stopped and
// reported failed, for the orchestrator to replace.
func TestAgentReportsEngineHealth(t *testing.T) {
	eng, mgr := newFakeEngine(), newFakeManager()
	mgr.history = map[string][]api.TaskStatus{}
	eng.healthyAfter["good"] = 2
	eng.healthyAfter["flaky"], eng.unhealthyAfter["flaky"] = 1, 4
	startAgent(t, eng, mgr)
	mgr.set(task("a", "good", api.TaskRunning, api.TaskAssigned), task("b", "flaky", api.TaskRunning, api.TaskAssigned))
	// The fake's health changes only when listed: the agent lists on its tick, so
	// poke it through assignments until the verdicts arrive.
	waitUntil(t, "a healthy", func() bool { mgr.bump(); return mgr.last("a").Health == api.HealthHealthy })
	if first := mgr.reports("a"); len(first) < 2 || first[1].State != api.TaskRunning || first[1].Health != api.HealthStarting {
		t.Fatalf("a's reports %+v: want starting, then running while its check starts", first)
	}
	waitUntil(t, "b failed as unhealthy", func() bool {
		mgr.bump()
		st := mgr.last("b")
		return st.State == api.TaskFailed && st.Health == api.HealthUnhealthy && strings.Contains(st.Err, "health check failed")
	})
	if eng.has("b") {
		t.Fatal("an unhealthy task was left running")
	}
	if !eng.has("a") || eng.starts["a"] != 1 {
		t.Fatal("the healthy task was disturbed")
	}
}

// The worker's own HTTP check, for any engine: starting until the first pass,
// healthy, then unhealthy after Retries failures in a row, stopped and failed.
func TestAgentHTTPHealthCheck(t *testing.T) {
	var failing atomic.Bool
	var probes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		if r.URL.Path != "/health" || failing.Load() {
			http.Error(w, "nope", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	hp, _ := strconv.Atoi(port)

	eng, mgr := newFakeEngine(), newFakeManager()
	eng.ports = []api.PortBinding{{Protocol: "tcp", TargetPort: 80, HostPort: hp}}
	startAgent(t, eng, mgr)
	mgr.set(checkedTask("a", "img", &api.HealthCheck{HTTPPath: "/health", Interval: 50 * time.Millisecond, Retries: 3}))
	waitUntil(t, "a healthy", func() bool {
		st := mgr.last("a")
		return st.State == api.TaskRunning && st.Health == api.HealthHealthy
	})
	failing.Store(true)
	before := probes.Load()
	waitUntil(t, "a failed as unhealthy", func() bool {
		st := mgr.last("a")
		return st.State == api.TaskFailed && strings.Contains(st.Err, "503")
	})
	if n := probes.Load() - before; n < 3 {
		t.Fatalf("unhealthy after %d failed probes, want retries (3)", n)
	}
	if eng.has("a") {
		t.Fatal("the unhealthy task still runs")
	}
}

// A TCP check of a port nobody listens on never passes; with a start period the
// first failures do not count.
func TestAgentTCPHealthCheckAndStartPeriod(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close() // a port that refuses
	hp, _ := strconv.Atoi(port)
	eng, mgr := newFakeEngine(), newFakeManager()
	eng.ports = []api.PortBinding{{Protocol: "tcp", TargetPort: 80, HostPort: hp}}
	startAgent(t, eng, mgr)
	start := time.Now()
	mgr.set(checkedTask("a", "img", &api.HealthCheck{TCP: true, Interval: 30 * time.Millisecond, Retries: 2, StartPeriod: 400 * time.Millisecond}))
	waitUntil(t, "a failed as unhealthy", func() bool { return mgr.last("a").State == api.TaskFailed })
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("unhealthy after %v, inside the start period", d)
	}
	if st := mgr.last("a"); !strings.Contains(st.Err, "refused") {
		t.Fatalf("failure says %q", st.Err)
	}
}

// The health command, for an engine that does not run it (the process engine).
func TestAgentRunsHealthCommand(t *testing.T) {
	eng, mgr := newFakeEngine(), newFakeManager()
	startAgent(t, eng, mgr)
	interval := 30 * time.Millisecond
	mgr.set(checkedTask("ok", "img", &api.HealthCheck{Test: []string{"CMD", "/bin/true"}, Interval: interval}),
		checkedTask("bad", "img", &api.HealthCheck{Test: []string{"CMD-SHELL", "echo broken; exit 1"}, Interval: interval, Retries: 1}))
	waitUntil(t, "ok healthy", func() bool { return mgr.last("ok").Health == api.HealthHealthy })
	waitUntil(t, "bad failed", func() bool {
		st := mgr.last("bad")
		return st.State == api.TaskFailed && strings.Contains(st.Err, "broken")
	})
}

// A task held by the orchestrator (desired ready) is never started.
func TestAgentLeavesHeldTasks(t *testing.T) {
	eng, mgr := newFakeEngine(), newFakeManager()
	startAgent(t, eng, mgr)
	held := task("h", "img", api.TaskReady, api.TaskAssigned)
	mgr.set(held, task("a", "img", api.TaskRunning, api.TaskAssigned))
	waitUntil(t, "a running", func() bool { return mgr.state("a") == api.TaskRunning })
	if eng.has("h") || eng.starts["h"] != 0 || mgr.state("h") != 0 {
		t.Fatal("a held task was started or reported")
	}
}
