package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// fakeEngine is an engine with fault knobs: a start error per image, exits
// triggered by the test, and a health check of its own (as Docker's) that passes
// or fails after a number of looks.
type fakeEngine struct {
	mu       sync.Mutex
	running  map[string]engine.Instance
	starts   map[string]int
	stops    map[string]int
	startErr map[string]error // by image
	// healthyAfter / unhealthyAfter: by image, the engine's own check of a task
	// reports starting, then healthy (or unhealthy) from the Nth List on.
	healthyAfter, unhealthyAfter map[string]int
	looks                        map[string]int // List calls since each task started
	images                       map[string]string
	addr                         string // Instance.Addr and HostAddr ("127.0.0.1")
	ports                        []api.PortBinding
	changes                      chan string
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{running: map[string]engine.Instance{}, starts: map[string]int{}, stops: map[string]int{}, startErr: map[string]error{},
		healthyAfter: map[string]int{}, unhealthyAfter: map[string]int{}, looks: map[string]int{}, images: map[string]string{},
		addr: "127.0.0.1", changes: make(chan string, 100)}
}

func (f *fakeEngine) RunsHealthCommands() bool { return false }

func (f *fakeEngine) Name() string { return "fake" }

func (f *fakeEngine) Start(_ context.Context, t *api.Task) (engine.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts[t.ID]++
	if err := f.startErr[t.Spec.Image]; err != nil {
		return engine.Instance{}, err
	}
	in := engine.Instance{TaskID: t.ID, ID: "c-" + t.ID, State: api.TaskRunning, Addr: f.addr, HostAddr: f.addr, Ports: f.ports}
	f.images[t.ID], f.looks[t.ID] = t.Spec.Image, 0
	in.Health = f.healthLocked(t.ID)
	f.running[t.ID] = in
	return in, nil
}

func (f *fakeEngine) Stop(_ context.Context, taskID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.running, taskID)
	f.stops[taskID]++
	return nil
}

// healthLocked is the engine's own check of a task as its knobs say.
func (f *fakeEngine) healthLocked(taskID string) api.Health {
	img, n := f.images[taskID], f.looks[taskID]
	switch {
	case f.unhealthyAfter[img] > 0 && n >= f.unhealthyAfter[img]:
		return api.HealthUnhealthy
	case f.healthyAfter[img] > 0 && n >= f.healthyAfter[img]:
		return api.HealthHealthy
	case f.unhealthyAfter[img] > 0 || f.healthyAfter[img] > 0:
		return api.HealthStarting
	}
	return ""
}

func (f *fakeEngine) List(context.Context) ([]engine.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.Instance
	for id, in := range f.running {
		if in.State == api.TaskRunning {
			f.looks[id]++
			in.Health = f.healthLocked(id)
			f.running[id] = in
		}
		out = append(out, in)
	}
	return out, nil
}

func (f *fakeEngine) Changes(context.Context) <-chan string { return f.changes }

func (f *fakeEngine) Logs(context.Context, string, engine.LogOptions, io.Writer) error {
	return nil
}

func (f *fakeEngine) Close() error { return nil }

// exit makes a running workload exit with a code, as a crash would.
func (f *fakeEngine) exit(taskID string, code int) {
	f.mu.Lock()
	in := f.running[taskID]
	in.State, in.ExitCode = api.TaskFailed, code
	f.running[taskID] = in
	f.mu.Unlock()
	f.changes <- taskID
}

func (f *fakeEngine) has(taskID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.running[taskID]
	return ok
}

// fakeManager hands out assignment sets and records status reports.
type fakeManager struct {
	mu      sync.Mutex
	index   uint64
	tasks   []*api.Task
	removed bool
	wake    chan struct{}
	status  map[string]api.TaskStatus
	history map[string][]api.TaskStatus // every report, in order
}

func newFakeManager() *fakeManager {
	return &fakeManager{wake: make(chan struct{}), status: map[string]api.TaskStatus{}}
}

func (m *fakeManager) set(tasks ...*api.Task) {
	m.mu.Lock()
	m.tasks = tasks
	m.index++
	close(m.wake)
	m.wake = make(chan struct{})
	m.mu.Unlock()
}

func (m *fakeManager) remove() {
	m.mu.Lock()
	m.removed = true
	m.index++
	close(m.wake)
	m.wake = make(chan struct{})
	m.mu.Unlock()
}

func (m *fakeManager) Assignments(ctx context.Context, nodeID string, index uint64, wait time.Duration) (api.Assignments, error) {
	m.mu.Lock()
	for m.index <= index && !m.removed {
		ch := m.wake
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return api.Assignments{}, ctx.Err()
		case <-time.After(wait):
		}
		m.mu.Lock()
	}
	defer m.mu.Unlock()
	if m.removed {
		return api.Assignments{}, ErrNodeRemoved
	}
	return api.Assignments{Index: m.index, Node: &api.Node{ID: nodeID}, Tasks: m.tasks}, nil
}

func (m *fakeManager) ReportStatus(_ context.Context, rep api.StatusReport) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, op := range rep.Ops {
		if op.Status.State >= m.status[op.TaskID].State {
			m.status[op.TaskID] = op.Status
		}
		if m.history != nil {
			m.history[op.TaskID] = append(m.history[op.TaskID], op.Status)
		}
	}
	return nil
}

func (m *fakeManager) state(taskID string) api.TaskState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status[taskID].State
}

func task(id, image string, desired api.TaskState, state api.TaskState) *api.Task {
	return &api.Task{ID: id, ServiceName: "web", Slot: 1, NodeID: "n1", Spec: api.ServiceSpec{Image: image},
		DesiredState: desired, Status: api.TaskStatus{State: state}}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startAgent(t *testing.T, eng *fakeEngine, mgr *fakeManager) *Agent {
	t.Helper()
	a := New(Config{NodeID: "n1", Engine: eng, Manager: mgr})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

func TestAgentRunsStopsAndReports(t *testing.T) {
	eng, mgr := newFakeEngine(), newFakeManager()
	eng.startErr["missing"] = fmt.Errorf("no such image: %w", engine.ErrRejected)
	eng.startErr["flaky"] = errors.New("engine busy")
	startAgent(t, eng, mgr)

	mgr.set(task("a", "img", api.TaskRunning, api.TaskAssigned),
		task("b", "missing", api.TaskRunning, api.TaskAssigned),
		task("c", "flaky", api.TaskRunning, api.TaskAssigned))
	waitUntil(t, "a running", func() bool { return mgr.state("a") == api.TaskRunning && eng.has("a") })
	waitUntil(t, "b rejected", func() bool { return mgr.state("b") == api.TaskRejected })
	waitUntil(t, "c failed", func() bool { return mgr.state("c") == api.TaskFailed })

	// The workload crashes: reported failed with its code, not restarted by the
	// worker (replacement is the orchestrator's call).
	eng.exit("a", 3)
	waitUntil(t, "a failed", func() bool { return mgr.state("a") == api.TaskFailed })
	if n := eng.starts["a"]; n != 1 {
		t.Fatalf("a started %d times", n)
	}

	// Desired shutdown stops the workload and reports it.
	mgr.set(task("d", "img", api.TaskRunning, api.TaskAssigned))
	waitUntil(t, "d running", func() bool { return eng.has("d") })
	mgr.set(task("d", "img", api.TaskShutdown, api.TaskRunning))
	waitUntil(t, "d stopped", func() bool { return !eng.has("d") && mgr.state("d") == api.TaskShutdown })
}

func TestAgentAdoptsAndRemovesStrays(t *testing.T) {
	eng, mgr := newFakeEngine(), newFakeManager()
	// Left running by a previous daemon: one still assigned, one not.
	eng.running["kept"] = engine.Instance{TaskID: "kept", ID: "c-kept", State: api.TaskRunning}
	eng.running["stray"] = engine.Instance{TaskID: "stray", ID: "c-stray", State: api.TaskRunning}
	startAgent(t, eng, mgr)
	// Nothing is touched before the first assignment set arrives. (A negative
	// check: give the agent's loops a moment in which they could act, wrongly.)
	time.Sleep(50 * time.Millisecond)
	if !eng.has("stray") {
		t.Fatal("a workload was removed before the agent knew what it owns")
	}
	mgr.set(task("kept", "img", api.TaskRunning, api.TaskStarting))
	waitUntil(t, "stray removed", func() bool { return !eng.has("stray") })
	waitUntil(t, "kept reported running", func() bool { return mgr.state("kept") == api.TaskRunning })
	if eng.starts["kept"] != 0 {
		t.Fatal("an adopted workload was started again")
	}
}

func TestAgentStopsAllWhenNodeRemoved(t *testing.T) {
	eng, mgr := newFakeEngine(), newFakeManager()
	now := time.Now()
	var clockMu sync.Mutex
	a := New(Config{NodeID: "n1", Engine: eng, Manager: mgr, Clock: func() time.Time {
		clockMu.Lock()
		defer clockMu.Unlock()
		now = now.Add(time.Second) // each look at the clock moves it on
		return now
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = a.Run(ctx) }()
	mgr.set(task("a", "img", api.TaskRunning, api.TaskAssigned))
	waitUntil(t, "a running", func() bool { return eng.has("a") })
	mgr.remove()
	waitUntil(t, "a stopped after removal", func() bool { return !eng.has("a") })
}

// A container created but not started (a start in progress, or one a dead worker
// left) is not an exit: the task is started, never reported complete.
func TestAgentCreatedIsNotFinished(t *testing.T) {
	eng, mgr := newFakeEngine(), newFakeManager()
	mgr.history = map[string][]api.TaskStatus{}
	eng.running["half"] = engine.Instance{TaskID: "half", ID: "c-half", State: api.TaskStarting}
	startAgent(t, eng, mgr)
	mgr.set(task("half", "img", api.TaskRunning, api.TaskAssigned))
	waitUntil(t, "half running", func() bool { return mgr.state("half") == api.TaskRunning })
	mgr.mu.Lock()
	defer mgr.mu.Unlock()
	for _, st := range mgr.history["half"] {
		if st.State.Terminal() {
			t.Fatalf("a created container was reported %s: %+v", st.State, mgr.history["half"])
		}
	}
}
