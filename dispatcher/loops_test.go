package dispatcher

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/internal/testlog"
)

func testLogger(t *testing.T) *slog.Logger { return testlog.New(t) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startLoops runs the orchestrator, the scheduler and a fake worker for every node
// until the test ends.
func startLoops(t *testing.T, store *memStore) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	logger := testLogger(t)
	for _, run := range []func(context.Context) error{
		NewOrchestrator(store, logger, time.Now).Run,
		NewScheduler(store, logger, time.Now).Run,
		func(ctx context.Context) error {
			for {
				w := store.Watch()
				store.workerStep(time.Now())
				select {
				case <-ctx.Done():
					return nil
				case <-w:
				}
			}
		},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// live returns the service's tasks meant to run, by state.
func live(store *memStore, serviceID string) (running map[uint64]*api.Task, other int) {
	running = map[uint64]*api.Task{}
	for _, tk := range store.Snapshot().TasksByService(serviceID) {
		switch {
		case tk.DesiredState > api.TaskRunning || tk.Status.State.Terminal():
		case tk.Status.State == api.TaskRunning && running[tk.Slot] == nil:
			running[tk.Slot] = tk
		default:
			other++
		}
	}
	return running, other
}

func TestRunLoopsConverge(t *testing.T) {
	store := newMemStore()
	for _, id := range []string{"1", "2", "3"} {
		store.putNode(mkNode(id))
	}
	startLoops(t, store)

	svc := mkService("web", 5, restartPolicy(api.RestartPolicy{Condition: api.RestartAny, Delay: dur(150 * time.Millisecond)}))
	store.putService(svc)
	converged := func(avoid ...string) func() bool {
		return func() bool {
			running, other := live(store, svc.ID)
			if len(running) != 5 || other != 0 {
				return false
			}
			for slot, tk := range running {
				if slot < 1 || slot > 5 {
					return false
				}
				for _, n := range avoid {
					if tk.NodeID == n {
						return false
					}
				}
			}
			return true
		}
	}
	waitFor(t, "5 running tasks", converged())

	// Converged loops write nothing more: no write storm.
	idx := store.Snapshot().Index()
	time.Sleep(100 * time.Millisecond)
	if got := store.Snapshot().Index(); got != idx {
		t.Fatalf("store index moved from %d to %d after convergence", idx, got)
	}

	store.updateNode("1", drained)
	waitFor(t, "tasks off the drained node", converged("1"))

	store.updateNode("2", down)
	waitFor(t, "tasks off the down node", converged("1", "2"))

	// A failure's replacement is made at once but held, and started only once the
	// restart delay has passed, by the timer: nothing else changes in the store
	// meanwhile.
	running, _ := live(store, svc.ID)
	victim := running[3]
	failed := time.Now()
	store.reportStatus(victim.ID, api.TaskFailed, failed)
	waitFor(t, "the failed slot restarted", converged("1", "2"))
	if running, _ := live(store, svc.ID); running[3].ID == victim.ID || running[3].Attempt != victim.Attempt+1 {
		t.Fatalf("slot 3 not replaced: %+v", running[3])
	} else if d := running[3].Status.Timestamp.Sub(failed); d < 150*time.Millisecond || !running[3].RestartAt.Equal(failed.Add(150*time.Millisecond)) {
		t.Fatalf("replacement running %v after the failure, before the restart delay (held until %v)", d, running[3].RestartAt)
	}

	store.removeService(svc.ID)
	waitFor(t, "every task gone", func() bool { return len(store.Snapshot().Tasks()) == 0 })
}

func TestRunRetriesFailedCommits(t *testing.T) {
	store := newMemStore()
	store.putNode(mkNode("1"))
	store.mu.Lock()
	store.applyErr = errors.New("no leader")
	store.mu.Unlock()
	startLoops(t, store)
	store.putService(mkService("web", 2))
	time.Sleep(150 * time.Millisecond)
	store.mu.Lock()
	store.applyErr = nil
	store.mu.Unlock()
	waitFor(t, "2 running tasks", func() bool { running, _ := live(store, "web"); return len(running) == 2 })
}

func TestRunLoopsGlobal(t *testing.T) {
	store := newMemStore()
	for _, id := range []string{"1", "2", "3"} {
		store.putNode(mkNode(id))
	}
	startLoops(t, store)
	store.putService(mkService("agent", 0, global))
	onNodes := func(want ...string) func() bool {
		return func() bool {
			got := map[string]bool{}
			for _, tk := range store.Snapshot().TasksByService("agent") {
				switch {
				case tk.DesiredState > api.TaskRunning || tk.Status.State.Terminal():
				case tk.Status.State != api.TaskRunning || got[tk.NodeID]:
					return false
				default:
					got[tk.NodeID] = true
				}
			}
			if len(got) != len(want) {
				return false
			}
			for _, n := range want {
				if !got[n] {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "a task on every node", onNodes("1", "2", "3"))
	store.updateNode("2", drained)
	waitFor(t, "no task on the drained node", onNodes("1", "3"))
	store.putNode(mkNode("4"))
	waitFor(t, "a task on the new node", onNodes("1", "3", "4"))

	idx := store.Snapshot().Index()
	time.Sleep(100 * time.Millisecond)
	if got := store.Snapshot().Index(); got != idx {
		t.Fatalf("store index moved from %d to %d after convergence", idx, got)
	}
}
