package worker

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// specRecorder remembers the spec each task reached the engine with.
type specRecorder struct {
	*fakeEngine
	mu    sync.Mutex
	specs map[string]api.ServiceSpec
}

func (r *specRecorder) Start(ctx context.Context, t *api.Task) (engine.Instance, error) {
	r.mu.Lock()
	r.specs[t.ID] = t.Spec
	r.mu.Unlock()
	return r.fakeEngine.Start(ctx, t)
}

// The engine gets the spec with its templates expanded for this node; a
// template the node's own name makes invalid rejects the task with the reason.
func TestAgentExpandsTemplates(t *testing.T) {
	for _, tc := range []struct {
		name, hostname string
		want           api.TaskState
		env            []string
		errHas         string
	}{
		{"expanded", "host-a", api.TaskRunning, []string{"WHERE=host-a/n1", "SLOT=2"}, ""},
		{"invalid once expanded", "host_a", api.TaskRejected, nil, `invalid hostname "web-host_a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := &specRecorder{fakeEngine: newFakeEngine(), specs: map[string]api.ServiceSpec{}}
			mgr := &reportLog{fakeManager: newFakeManager()}
			a := New(Config{NodeID: "n1", NodeHostname: tc.hostname, Engine: eng, Manager: mgr})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = a.Run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })

			tk := task("a", "app", api.TaskRunning, api.TaskAssigned)
			tk.Slot = 2
			tk.Spec.Env = []string{"WHERE={{.Node.Hostname}}/{{.Node.ID}}", "SLOT={{.Task.Slot}}"}
			tk.Spec.Container = &api.ContainerOptions{Hostname: "{{.Service.Name}}-{{.Node.Hostname}}"}
			mgr.set(tk)
			waitUntil(t, "a "+tc.want.String(), func() bool { return mgr.state("a") == tc.want })
			eng.mu.Lock()
			got, started := eng.specs["a"]
			eng.mu.Unlock()
			if tc.errHas != "" {
				if st := mgr.of("a"); started || !strings.Contains(st[len(st)-1].Err, tc.errHas) {
					t.Fatalf("started %v, reports %+v", started, st)
				}
				return
			}
			if !slices.Equal(got.Env, tc.env) || got.Container.Hostname != "web-"+tc.hostname {
				t.Fatalf("engine got env %q hostname %q", got.Env, got.Container.Hostname)
			}
			if tk.Spec.Env[0] != "WHERE={{.Node.Hostname}}/{{.Node.ID}}" {
				t.Fatal("the assigned task's spec was changed")
			}
		})
	}
}
