package worker

import (
	"context"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// slowStartEngine shows a task's workload as created (not started) while its
// Start waits for release, as Docker does between create and start.
type slowStartEngine struct {
	*fakeEngine
	release chan struct{}
}

func (e *slowStartEngine) Start(ctx context.Context, t *api.Task) (engine.Instance, error) {
	e.mu.Lock()
	e.running[t.ID] = engine.Instance{TaskID: t.ID, ID: "c-" + t.ID, State: api.TaskStarting}
	e.mu.Unlock()
	<-e.release
	return e.fakeEngine.Start(ctx, t)
}

// A reconcile while a start is under way must not take the created workload
// for one that exited: it was reported complete, and a rolling update paused on
// it.
func TestAgentIgnoresWorkloadBeingStarted(t *testing.T) {
	eng, mgr := &slowStartEngine{fakeEngine: newFakeEngine(), release: make(chan struct{})}, newFakeManager()
	mgr.history = map[string][]api.TaskStatus{}
	a := New(Config{NodeID: "n1", Engine: eng, Manager: mgr})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	mgr.set(task("a", "img", api.TaskRunning, api.TaskAssigned))
	waitUntil(t, "a being started", func() bool { eng.mu.Lock(); defer eng.mu.Unlock(); return eng.running["a"].TaskID == "a" })
	for range 3 { // reconciles while the start waits
		mgr.bump()
		time.Sleep(20 * time.Millisecond)
	}
	close(eng.release)
	waitUntil(t, "a running", func() bool { return mgr.state("a") == api.TaskRunning })
	for _, st := range mgr.reports("a") {
		if st.State.Terminal() {
			t.Fatalf("a task being started was reported %s: %+v", st.State, mgr.reports("a"))
		}
	}
}
