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

// A leave stops every workload: a start still under way when it begins must not
// leave one running afterwards (it would hold the node's container network), and
// nothing starts later.
func TestAgentStopAllWaitsForStarts(t *testing.T) {
	eng, mgr := &slowStartEngine{fakeEngine: newFakeEngine(), release: make(chan struct{})}, newFakeManager()
	a := New(Config{NodeID: "n1", Engine: eng, Manager: mgr})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	mgr.set(task("a", "img", api.TaskRunning, api.TaskAssigned))
	waitUntil(t, "a being started", func() bool { eng.mu.Lock(); defer eng.mu.Unlock(); return eng.running["a"].TaskID == "a" })
	stopped := make(chan error, 1)
	go func() { stopped <- a.StopAll(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("StopAll returned while a start was under way: %v", err)
	case <-time.After(50 * time.Millisecond): // a negative check: it must wait
	}
	close(eng.release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if eng.has("a") {
		t.Fatal("a workload started during the leave is still running")
	}
	mgr.set(task("b", "img", api.TaskRunning, api.TaskAssigned))
	mgr.bump()
	time.Sleep(50 * time.Millisecond) // a negative check: give the loops a chance to act
	if eng.has("b") {
		t.Fatal("a task started after StopAll")
	}
}
