package worker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// fakeFiles records what the agent writes and removes.
type fakeFiles struct {
	mu      sync.Mutex
	have    map[string]string // task -> the value written
	removed map[string]int
	fail    map[string]error // by task
}

func (f *fakeFiles) Write(t *api.Task, as *api.Assignments) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[t.ID]; err != nil {
		return err
	}
	for _, v := range as.Secrets {
		if v.ID == t.Spec.Secrets[0].ID && v.Version == t.Spec.Secrets[0].Version {
			f.have[t.ID] = string(v.Data)
			return nil
		}
	}
	return fmt.Errorf("secret %s not handed out", t.Spec.Secrets[0].Source)
}

func (f *fakeFiles) Remove(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.have, id)
	f.removed[id]++
	return nil
}

func (f *fakeFiles) Tasks() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.have {
		out = append(out, id)
	}
	return out, nil
}

func (f *fakeFiles) value(id string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.have[id]
	return v, ok
}

// valueManager hands out the values with every answer, as the dispatcher does.
type valueManager struct {
	*fakeManager
	values []api.SecretValue
}

func (m valueManager) Assignments(ctx context.Context, nodeID string, index uint64, wait time.Duration) (api.Assignments, error) {
	as, err := m.fakeManager.Assignments(ctx, nodeID, index, wait)
	as.Secrets = m.values
	return as, err
}

func secretTask(id, secretID string) *api.Task {
	t := task(id, "img", api.TaskRunning, api.TaskAssigned)
	t.Spec.Secrets = []api.SecretRef{{Source: "db", ID: secretID, Version: 1, Target: "db"}}
	return t
}

// TestAgentTaskFiles: a task's files are written from its session answer before
// it starts, and dropped once it is no longer assigned and its workload is
// gone; a task whose files cannot be written never starts (failed, or rejected
// when the node cannot keep files at all); a task without secrets writes none.
func TestAgentTaskFiles(t *testing.T) {
	eng, mgr := newFakeEngine(), newFakeManager()
	files := &fakeFiles{have: map[string]string{}, removed: map[string]int{},
		fail: map[string]error{"rej": fmt.Errorf("no tmpfs: %w", engine.ErrRejected)}}
	vm := valueManager{mgr, []api.SecretValue{{ID: "sec1", Version: 1, Data: []byte("pw")}}}
	a := New(Config{NodeID: "n1", Engine: eng, Manager: vm, Files: files})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	mgr.set(secretTask("a", "sec1"), secretTask("missing", "sec9"), secretTask("rej", "sec1"), task("plain", "img", api.TaskRunning, api.TaskAssigned))
	waitUntil(t, "a running", func() bool { return mgr.state("a") == api.TaskRunning })
	if v, ok := files.value("a"); !ok || v != "pw" {
		t.Fatalf("a's files: %q %v", v, ok)
	}
	waitUntil(t, "missing failed", func() bool { return mgr.state("missing") == api.TaskFailed })
	waitUntil(t, "rej rejected", func() bool { return mgr.state("rej") == api.TaskRejected })
	waitUntil(t, "plain running", func() bool { return mgr.state("plain") == api.TaskRunning })
	eng.mu.Lock()
	starts := eng.starts["missing"] + eng.starts["rej"]
	eng.mu.Unlock()
	if starts != 0 {
		t.Fatalf("a task without its files was started %d times", starts)
	}
	if _, ok := files.value("plain"); ok {
		t.Fatal("files written for a task without secrets")
	}

	// a leaves the node: its workload is removed, then its files.
	mgr.set(task("plain", "img", api.TaskRunning, api.TaskRunning))
	waitUntil(t, "a's workload gone", func() bool { return !eng.has("a") })
	waitUntil(t, "a's files gone", func() bool { _, ok := files.value("a"); return !ok })
}
