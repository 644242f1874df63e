package worker

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// awayEngine is the fake engine that can go away (dockerd restarted): while
// down, every call fails.
type awayEngine struct {
	*fakeEngine
	down atomic.Bool
}

var errEngineDown = errors.New("Cannot connect to the Docker daemon")

func (e *awayEngine) List(ctx context.Context) ([]engine.Instance, error) {
	if e.down.Load() {
		return nil, errEngineDown
	}
	return e.fakeEngine.List(ctx)
}

func (e *awayEngine) Start(ctx context.Context, t *api.Task) (engine.Instance, error) {
	if e.down.Load() {
		return engine.Instance{}, errEngineDown
	}
	return e.fakeEngine.Start(ctx, t)
}

func (e *awayEngine) Stop(ctx context.Context, id string) error {
	if e.down.Load() {
		return errEngineDown
	}
	return e.fakeEngine.Stop(ctx, id)
}

// goAway takes the engine down; the tasks named exit meanwhile (as dockerd
// stops containers without live-restore), the others keep running.
func (e *awayEngine) goAway(exit ...string) {
	e.down.Store(true)
	e.changes <- "" // the event stream broke
	e.mu.Lock()
	for _, id := range exit {
		in := e.running[id]
		in.State, in.ExitCode = api.TaskFailed, 143
		e.running[id] = in
	}
	e.mu.Unlock()
}

func (e *awayEngine) starts(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fakeEngine.starts[id]
}

func runningTask(id, image string) *api.Task {
	t := task(id, image, api.TaskRunning, api.TaskRunning)
	t.Status.ContainerID = "c-" + id
	return t
}

// TestAgentSurvivesEngineRestart: while the engine is away nothing is reported;
// when it is back, what still runs is adopted and what it took down is started
// again as the same task, never reported failed. A task that cannot start again
// is reported failed then, and only then.
func TestAgentSurvivesEngineRestart(t *testing.T) {
	eng, mgr := &awayEngine{fakeEngine: newFakeEngine()}, newFakeManager()
	mgr.history = map[string][]api.TaskStatus{}
	a := New(Config{NodeID: "n1", Engine: eng, Manager: mgr})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	mgr.set(task("kept", "img", api.TaskRunning, api.TaskAssigned), task("downed", "img", api.TaskRunning, api.TaskAssigned),
		task("broken", "bad-after-restart", api.TaskRunning, api.TaskAssigned))
	for _, id := range []string{"kept", "downed", "broken"} {
		waitUntil(t, id+" running", func() bool { return mgr.state(id) == api.TaskRunning })
	}
	mgr.set(runningTask("kept", "img"), runningTask("downed", "img"), runningTask("broken", "bad-after-restart"))
	waitUntil(t, "a reconcile of the running set", func() bool { return a.cfg.Clock().Sub(lastListed(a)) < 100*time.Millisecond })
	before := len(mgr.reports("downed"))

	eng.goAway("downed", "broken")
	waitUntil(t, "the outage noticed", a.engineAway)
	eng.mu.Lock()
	eng.startErr["bad-after-restart"] = errors.New("no such image")
	eng.mu.Unlock()
	time.Sleep(3 * outagePoll) // the engine is away a while: the agent must say nothing
	for _, id := range []string{"kept", "downed", "broken"} {
		if st := mgr.last(id); st.State != api.TaskRunning {
			t.Fatalf("%s reported %s while its engine was away", id, st.State)
		}
	}

	eng.down.Store(false)
	waitUntil(t, "downed started again", func() bool { return eng.starts("downed") == 2 && eng.has("downed") })
	waitUntil(t, "downed reported running again", func() bool { return len(mgr.reports("downed")) > before })
	for _, st := range mgr.reports("downed")[before:] {
		if st.State != api.TaskRunning {
			t.Fatalf("downed reported %s after the outage: %+v", st.State, mgr.reports("downed"))
		}
	}
	waitUntil(t, "broken failed once the engine is back", func() bool { return mgr.state("broken") == api.TaskFailed })
	if eng.starts("kept") != 1 || !eng.has("kept") {
		t.Fatalf("kept, still running across the outage, was started %d times", eng.starts("kept"))
	}
	if a.engineAway() {
		t.Fatal("the outage did not end")
	}
}

func lastListed(a *Agent) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastListed
}
