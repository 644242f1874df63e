package docker

import (
	"context"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// Docker runs the spec's health command (the test image has no shell, so CMD),
// the engine reports what Docker says, and a change of health is a change.
func TestHealthFromDocker(t *testing.T) {
	e := newEngine(t, "h")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := e.Changes(ctx)
	check := &api.HealthCheck{Test: []string{"CMD", "/whoami", "healthcheck"}, Interval: 300 * time.Millisecond, Timeout: 2 * time.Second, Retries: 2}
	good, bad := whoamiTask("t-good", 1), whoamiTask("t-bad", 2)
	grace := 3 * time.Second
	for _, tk := range []*api.Task{good, bad} {
		tk.Spec.Health, tk.Spec.StopGracePeriod = check, &grace
	}
	bad.Spec.Env = []string{"WHOAMI_HEALTH=fail"}
	for _, tk := range []*api.Task{good, bad} {
		inst, err := e.Start(context.Background(), tk)
		if err != nil {
			t.Fatal(err)
		}
		if inst.Health != api.HealthStarting {
			t.Errorf("%s starts with health %q, want starting", tk.ID, inst.Health)
		}
		info, err := testCLI.ContainerInspect(context.Background(), inst.ID)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.StopTimeout == nil || *info.Config.StopTimeout != 3 || info.Config.Labels[engine.LabelStopGrace] != "3s" {
			t.Errorf("stop grace not given to Docker: %v %v", info.Config.StopTimeout, info.Config.Labels)
		}
	}
	seen := map[string]bool{}
	var g, b engine.Instance
	deadline := time.After(30 * time.Second)
	for g.Health != api.HealthHealthy || b.Health != api.HealthUnhealthy || !seen[good.ID] || !seen[bad.ID] {
		select {
		case id := <-changes:
			seen[id] = true
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("health: good %q bad %q, changes seen %v", g.Health, b.Health, seen)
		}
		g, _ = find(t, e, good.ID)
		b, _ = find(t, e, bad.ID)
	}
}

func TestHealthConfig(t *testing.T) {
	cases := []struct {
		name string
		in   *api.HealthCheck
		want []string // Test of the config; nil: no config (the image's own)
	}{
		{"none given", nil, nil},
		{"disabled", &api.HealthCheck{Disable: true}, []string{"NONE"}},
		{"command", &api.HealthCheck{Test: []string{"CMD-SHELL", "true"}}, []string{"CMD-SHELL", "true"}},
		{"intervals only override the image's", &api.HealthCheck{Interval: time.Second}, []string{}},
		{"an HTTP check is the worker's", &api.HealthCheck{HTTPPath: "/health", Interval: time.Second}, nil},
	}
	for _, tc := range cases {
		got := healthConfig(tc.in)
		switch {
		case tc.want == nil && got != nil:
			t.Errorf("%s: config %+v, want none", tc.name, got)
		case tc.want != nil && (got == nil || len(got.Test) != len(tc.want)):
			t.Errorf("%s: config %+v, want test %q", tc.name, got, tc.want)
		}
	}
	for status, want := range map[string]api.Health{"Up 3 seconds (healthy)": api.HealthHealthy, "Up 1 second (health: starting)": api.HealthStarting,
		"Up 2 minutes (unhealthy)": api.HealthUnhealthy, "Up 2 minutes": ""} {
		if got := healthOf(status); got != want {
			t.Errorf("healthOf(%q) = %q, want %q", status, got, want)
		}
	}
}
