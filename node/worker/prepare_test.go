package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// fakePreparer is a Preparer whose outcome a test sets per image.
type fakePreparer struct {
	prepare func(t *api.Task, progress func(string)) (string, error)
}

func (f fakePreparer) Prepare(_ context.Context, t *api.Task, progress func(string)) (string, error) {
	return f.prepare(t, progress)
}

// startRecorder remembers the image each task was started from.
type startRecorder struct {
	*fakeEngine
	mu     sync.Mutex
	images map[string]string
}

func (r *startRecorder) Start(ctx context.Context, t *api.Task) (engine.Instance, error) {
	r.mu.Lock()
	r.images[t.ID] = engine.RunImage(t.Spec)
	r.mu.Unlock()
	in, err := r.fakeEngine.Start(ctx, t)
	in.ImageID = t.Spec.ImageID
	return in, err
}

// reportLog keeps every status a worker reports, in order.
type reportLog struct {
	*fakeManager
	mu  sync.Mutex
	ops []api.TaskOp
}

func (r *reportLog) ReportStatus(ctx context.Context, rep api.StatusReport) error {
	r.mu.Lock()
	r.ops = append(r.ops, rep.Ops...)
	r.mu.Unlock()
	return r.fakeManager.ReportStatus(ctx, rep)
}

func (r *reportLog) of(taskID string) []api.TaskStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []api.TaskStatus
	for _, op := range r.ops {
		if op.TaskID == taskID {
			out = append(out, op.Status)
		}
	}
	return out
}

const prepared = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

// A task is prepared before it starts: PREPARING with progress, then STARTING with
// the image it will run, then RUNNING from that very image; a preparer's refusal
// rejects the task, any other failure fails it, and neither reaches the engine.
func TestAgentPreparesBeforeStart(t *testing.T) {
	eng := &startRecorder{fakeEngine: newFakeEngine(), images: map[string]string{}}
	mgr := &reportLog{fakeManager: newFakeManager()}
	release := make(chan struct{})
	prep := fakePreparer{prepare: func(t *api.Task, progress func(string)) (string, error) {
		switch t.Spec.Image {
		case "gone":
			return "", fmt.Errorf("registry r has no gone: %w", engine.ErrRejected)
		case "flaky":
			return "", errors.New("registry r: 503")
		}
		progress("pulling " + t.Spec.Image + ": 1MB/2MB")
		<-release
		return prepared, nil
	}}
	a := New(Config{NodeID: "n1", Engine: eng, Manager: mgr, Images: prep})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	mgr.set(task("a", "app:v1", api.TaskRunning, api.TaskAssigned),
		task("b", "gone", api.TaskRunning, api.TaskAssigned),
		task("c", "flaky", api.TaskRunning, api.TaskAssigned))
	waitUntil(t, "a's progress reported", func() bool {
		for _, st := range mgr.of("a") {
			if st.State == api.TaskPreparing && strings.Contains(st.Message, "1MB/2MB") {
				return true
			}
		}
		return false
	})
	if eng.has("a") {
		t.Fatal("started before its image was prepared")
	}
	close(release)
	waitUntil(t, "a running", func() bool { return mgr.state("a") == api.TaskRunning })
	waitUntil(t, "b rejected", func() bool { return mgr.state("b") == api.TaskRejected })
	waitUntil(t, "c failed", func() bool { return mgr.state("c") == api.TaskFailed })

	var states []string
	for _, st := range mgr.of("a") {
		states = append(states, st.State.String())
		if st.State >= api.TaskStarting && st.ImageID != prepared {
			t.Errorf("%s reported without the prepared image: %+v", st.State, st)
		}
	}
	if got := strings.Join(states, ","); got != "preparing,preparing,starting,running" {
		t.Errorf("a reported %s", got)
	}
	if got := eng.images["a"]; got != prepared {
		t.Errorf("a started from %q, want the prepared image", got)
	}
	if n := eng.starts["b"] + eng.starts["c"]; n != 0 {
		t.Errorf("tasks whose preparing failed were started %d times", n)
	}
	if b := mgr.fakeManager.status["b"]; !strings.Contains(b.Err, "registry r has no gone") {
		t.Errorf("b's reason: %+v", b)
	}
}
