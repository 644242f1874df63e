package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/swarmlet/swarmlet/api"
)

func parsePlacement(t *testing.T, update bool, args ...string) (*pflag.FlagSet, *placementFlags) {
	t.Helper()
	var p placementFlags
	f := pflag.NewFlagSet("x", pflag.ContinueOnError)
	f.Int64("replicas", 1, "")
	f.String("restart-condition", "any", "")
	p.register(f, update)
	if err := f.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f, &p
}

func TestPlacementFlagsCreate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode api.ServiceMode
		args []string
		want func(api.ServiceSpec) bool
		err  string
	}{
		{name: "nested spread in order", mode: api.ModeReplicated,
			args: []string{"--placement-pref", "spread=node.labels.dc", "--placement-pref", "spread=node.labels.rack"},
			want: func(s api.ServiceSpec) bool {
				return slices.Equal(s.PlacementPrefs, []api.PlacementPref{{Spread: "node.labels.dc"}, {Spread: "node.labels.rack"}})
			}},
		{name: "unknown spread key", mode: api.ModeReplicated, args: []string{"--placement-pref", "spread=zone"}, err: "unknown spread key"},
		{name: "not a spread", mode: api.ModeReplicated, args: []string{"--placement-pref", "binpack=node.labels.zone"}, err: "only spread is supported"},
		{name: "max concurrent", mode: api.ModeReplicatedJob, args: []string{"--max-concurrent", "2"},
			want: func(s api.ServiceSpec) bool { return s.MaxConcurrent == 2 && s.RestartPolicy.Condition == "" }},
		{name: "a job keeps a restart condition given", mode: api.ModeReplicatedJob, args: []string{"--restart-condition", "none"},
			want: func(s api.ServiceSpec) bool { return s.RestartPolicy.Condition == api.RestartAny }}, // as create's own flag code set it
		{name: "max concurrent on a service", mode: api.ModeReplicated, args: []string{"--max-concurrent", "2"}, err: "--max-concurrent can only be used with --mode replicated-job"},
		{name: "max concurrent on a global job", mode: api.ModeGlobalJob, args: []string{"--max-concurrent", "2"}, err: "--max-concurrent can only be used"},
		{name: "replicas on a global job", mode: api.ModeGlobalJob, args: []string{"--replicas", "3"}, err: "--replicas cannot be used with --mode global-job"},
		{name: "a global job has no replicas", mode: api.ModeGlobalJob,
			want: func(s api.ServiceSpec) bool { return s.Replicas == 0 }},
		{name: "max per node", mode: api.ModeReplicated, args: []string{"--replicas-max-per-node", "2"},
			want: func(s api.ServiceSpec) bool { return s.MaxReplicasPerNode == 2 }},
		{name: "max per node on global", mode: api.ModeGlobal, args: []string{"--replicas-max-per-node", "2"}, err: "--replicas-max-per-node can only be used"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, p := parsePlacement(t, false, tc.args...)
			spec := api.ServiceSpec{Mode: tc.mode, Replicas: 1, RestartPolicy: api.RestartPolicy{Condition: api.RestartAny}}
			err := p.applyCreate(f, &spec)
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case !tc.want(spec):
				t.Fatalf("spec %+v", spec)
			}
		})
	}
}

func TestPlacementFlagsUpdate(t *testing.T) {
	have := api.ServiceSpec{Mode: api.ModeReplicated, PlacementPrefs: []api.PlacementPref{{Spread: "node.labels.dc"}, {Spread: "node.labels.rack"}}}
	f, p := parsePlacement(t, true, "--placement-pref-rm", "spread=node.labels.dc", "--placement-pref-add", "spread=node.labels.rack",
		"--placement-pref-add", "spread=engine.labels.disk", "--replicas-max-per-node", "3")
	spec := have.Clone()
	if err := p.applyUpdate(f, &spec); err != nil {
		t.Fatal(err)
	}
	if want := []api.PlacementPref{{Spread: "node.labels.rack"}, {Spread: "engine.labels.disk"}}; !slices.Equal(spec.PlacementPrefs, want) || spec.MaxReplicasPerNode != 3 {
		t.Fatalf("prefs %v, max per node %d", spec.PlacementPrefs, spec.MaxReplicasPerNode)
	}
	f, p = parsePlacement(t, true, "--placement-pref-rm", "spread=node.labels.zone")
	spec = have.Clone()
	if err := p.applyUpdate(f, &spec); err == nil || !strings.Contains(err.Error(), "no such preference (it has spread=node.labels.dc, spread=node.labels.rack)") {
		t.Fatalf("removing a preference the service lacks: %v", err)
	}
	f, p = parsePlacement(t, true, "--placement-pref-add", "spread=nodes.labels.zone")
	if err := p.applyUpdate(f, &spec); err == nil || !strings.Contains(err.Error(), "invalid --placement-pref-add") {
		t.Fatalf("a bad key: %v", err)
	}
}

func TestReplicasColumn(t *testing.T) {
	info := func(mode api.ServiceMode, replicas uint64, f func(*api.ServiceInfo)) api.ServiceInfo {
		s := api.ServiceInfo{Service: api.Service{Spec: api.ServiceSpec{Mode: mode, Replicas: replicas}}}
		f(&s)
		return s
	}
	for _, tc := range []struct {
		s    api.ServiceInfo
		want string
	}{
		{info(api.ModeReplicated, 3, func(s *api.ServiceInfo) { s.Running, s.Desired = 2, 3 }), "2/3"},
		{info(api.ModeReplicated, 3, func(s *api.ServiceInfo) { s.Running, s.Desired, s.Spec.MaxReplicasPerNode = 3, 3, 1 }), "3/3 (max 1 per node)"},
		{info(api.ModeReplicatedJob, 5, func(s *api.ServiceInfo) { s.Running, s.Desired, s.Completed = 2, 2, 3 }), "2/2 (3/5 completed)"},
		{info(api.ModeReplicatedJob, 3, func(s *api.ServiceInfo) { s.Desired, s.Completed = 3, 3 }), "0/3 (3/3 completed)"},
		{info(api.ModeGlobalJob, 0, func(s *api.ServiceInfo) { s.Running, s.Desired, s.Completed = 1, 1, 2 }), "1/1 (2/3 completed)"},
	} {
		if got := replicasColumn(tc.s); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.s.Spec.Mode, got, tc.want)
		}
	}
}
