package docker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// removeVolumeAfter removes a volume when the test ends (named volumes outlive
// their tasks, by design).
func removeVolumeAfter(t *testing.T, name string) {
	t.Cleanup(func() { _ = testCLI.VolumeRemove(context.Background(), name, true) })
}

// TestStartWithOptions: every mount type and container option reaches the
// container as Docker's own setting; the named volume is created, labelled as
// swarmlet's; the anonymous one goes with the container; swarmlet's labels stay.
func TestStartWithOptions(t *testing.T) {
	e := newEngine(t, "opt")
	ctx := context.Background()
	bindDir := t.TempDir()
	vol := "swarmlet-test-vol-" + runID
	removeVolumeAfter(t, vol)
	task := whoamiTask("t-opt", 1)
	task.Spec.Mounts = []api.Mount{
		{Type: api.MountBind, Source: bindDir, Target: "/bind", ReadOnly: true},
		{Type: api.MountVolume, Source: vol, Target: "/vol"},
		{Type: api.MountVolume, Target: "/anon"},
		{Type: api.MountTmpfs, Target: "/tmp", TmpfsSize: 8 << 20},
	}
	task.Spec.Container = &api.ContainerOptions{Hostname: "web-1", User: "65534:65534", Workdir: "/tmp", Entrypoint: []string{"/whoami"},
		ContainerLabels: map[string]string{"team": "a"}, Init: true, ReadOnly: true,
		CapAdd: []string{"CAP_NET_ADMIN"}, CapDrop: []string{"CAP_MKNOD"}, Sysctls: map[string]string{"net.core.somaxconn": "512"},
		Ulimits: []api.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}}, PidsLimit: 50, DNSOptions: []string{"ndots:2"}}
	inst, err := e.Start(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	info, err := testCLI.ContainerInspect(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	cfg, hc := info.Config, info.HostConfig
	checks := []struct {
		what string
		ok   bool
	}{
		{"hostname", cfg.Hostname == "web-1"},
		{"user", cfg.User == "65534:65534"},
		{"workdir", cfg.WorkingDir == "/tmp"},
		{"entrypoint", slices.Equal(cfg.Entrypoint, []string{"/whoami"})},
		{"container label", cfg.Labels["team"] == "a"},
		{"swarmlet's node label kept", cfg.Labels[engine.LabelNode] == e.cfg.NodeID},
		{"init", hc.Init != nil && *hc.Init},
		{"read-only", hc.ReadonlyRootfs},
		{"cap-add", slices.Equal(hc.CapAdd, []string{"CAP_NET_ADMIN"})},
		{"cap-drop", slices.Equal(hc.CapDrop, []string{"CAP_MKNOD"})},
		{"sysctl", hc.Sysctls["net.core.somaxconn"] == "512"},
		{"ulimit", len(hc.Ulimits) == 1 && *hc.Ulimits[0] == container.Ulimit{Name: "nofile", Soft: 1024, Hard: 2048}},
		{"pids", hc.PidsLimit != nil && *hc.PidsLimit == 50},
		{"dns option", slices.Equal(hc.DNSOptions, []string{"ndots:2"})},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s not applied: config %+v host config %+v", c.what, cfg, hc)
		}
	}
	byTarget := map[string]mount.Mount{}
	for _, m := range hc.Mounts {
		byTarget[m.Target] = m
	}
	if m := byTarget["/bind"]; m.Type != mount.TypeBind || m.Source != bindDir || !m.ReadOnly {
		t.Errorf("bind mount %+v", m)
	}
	if m := byTarget["/tmp"]; m.Type != mount.TypeTmpfs || m.TmpfsOptions == nil || m.TmpfsOptions.SizeBytes != 8<<20 {
		t.Errorf("tmpfs mount %+v", m)
	}
	var anon string
	for _, m := range info.Mounts {
		if m.Destination == "/anon" {
			anon = m.Name
		}
	}
	v, err := testCLI.VolumeInspect(ctx, vol)
	if err != nil || v.Labels[LabelVolume] != e.cfg.NodeID || v.Labels[engine.LabelService] != "web" {
		t.Errorf("named volume: %+v %v", v, err)
	}
	if anon == "" {
		t.Fatalf("no anonymous volume at /anon: %+v", info.Mounts)
	}
	if err := e.Stop(ctx, task.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := testCLI.VolumeInspect(ctx, anon); !cerrdefs.IsNotFound(err) {
		t.Errorf("anonymous volume %s left after its task: %v", anon, err)
		_ = testCLI.VolumeRemove(ctx, anon, true)
	}
	if _, err := testCLI.VolumeInspect(ctx, vol); err != nil {
		t.Errorf("named volume removed with its task: %v", err)
	}
}

// TestStartRefusesBadOptions: what cannot start here is rejected with the reason
// and leaves no container.
func TestStartRefusesBadOptions(t *testing.T) {
	e := newEngine(t, "optbad")
	missing := filepath.Join(t.TempDir(), "nope")
	for _, tc := range []struct {
		name   string
		mutate func(*api.ServiceSpec)
		errHas string
	}{
		{"missing bind source", func(s *api.ServiceSpec) {
			s.Mounts = []api.Mount{{Type: api.MountBind, Source: missing, Target: "/data"}}
		}, "bind mount source " + missing + " does not exist on node " + e.cfg.NodeID},
		{"invalid option", func(s *api.ServiceSpec) {
			s.Container = &api.ContainerOptions{Sysctls: map[string]string{"kernel.pid_max": "9"}}
		}, "not namespaced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := whoamiTask("t-"+strings.ReplaceAll(tc.name, " ", "-"), 1)
			tc.mutate(&task.Spec)
			_, err := e.Start(context.Background(), task)
			if !errors.Is(err, engine.ErrRejected) || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("error %v, want a rejection containing %q", err, tc.errHas)
			}
			if _, ok := find(t, e, task.ID); ok {
				t.Fatal("a container was left")
			}
		})
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the missing source was created: %v", err)
	}
}
