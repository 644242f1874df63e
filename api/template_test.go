package api

import (
	"slices"
	"strings"
	"testing"
)

func TestExpandedSpec(t *testing.T) {
	node := TemplateNode{ID: "n1", Hostname: "host-a", OS: "linux", Architecture: "amd64"}
	spec := validSpec(func(s *ServiceSpec) {
		s.Labels = map[string]string{"tier": "front"}
		s.Env = []string{"PLAIN=x", "WHERE={{.Node.Hostname}}/{{.Node.ID}}", "{{.Task.ID}}={{.Task.ID}}", "NOVALUE"}
		s.Container = &ContainerOptions{Hostname: "{{.Service.Name}}-{{.Task.Slot}}"}
		s.Mounts = []Mount{
			{Type: MountBind, Source: "/srv/{{.Service.ID}}/{{.Task.Name}}", Target: "/data/{{.Task.Slot}}"},
			{Type: MountVolume, Source: "{{.Service.Labels.tier}}-{{.Node.Platform.OS}}-{{.Node.Platform.Architecture}}", Target: "/v"},
		}
	})
	for _, tc := range []struct {
		name             string
		slot             uint64
		hostname, source string
		env              []string
	}{
		{"replicated", 3, "web-3", "/srv/s1/web.3.t1", []string{"PLAIN=x", "WHERE=host-a/n1", "{{.Task.ID}}=t1", "NOVALUE"}},
		{"global: the slot is the node", 0, "web-n1", "/srv/s1/web.n1.t1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := &Task{ID: "t1", ServiceID: "s1", ServiceName: "web", Slot: tc.slot, Spec: spec.Clone()}
			got, err := task.ExpandedSpec(node)
			if err != nil {
				t.Fatal(err)
			}
			if got.Container.Hostname != tc.hostname || got.Mounts[0].Source != tc.source || got.Mounts[1].Source != "front-linux-amd64" {
				t.Errorf("hostname %q mounts %+v", got.Container.Hostname, got.Mounts)
			}
			if tc.env != nil && !slices.Equal(got.Env, tc.env) {
				t.Errorf("env %q, want %q", got.Env, tc.env)
			}
			if task.Spec.Container.Hostname != spec.Container.Hostname || task.Spec.Env[1] != spec.Env[1] {
				t.Error("expansion changed the task's own spec")
			}
		})
	}
}

// TestExpandedSpecChecksTheResult: a value that is only known on the node
// (its hostname) can still make an invalid option; the worker refuses it.
func TestExpandedSpecChecksTheResult(t *testing.T) {
	spec := validSpec(func(s *ServiceSpec) {
		s.Container = &ContainerOptions{Hostname: "{{.Node.Hostname}}"}
		s.Mounts = []Mount{{Type: MountVolume, Source: "v{{.Node.Hostname}}", Target: "/v"}}
	})
	if err := spec.Validate(); err != nil {
		t.Fatalf("valid for the sample node: %v", err)
	}
	task := &Task{ID: "t1", ServiceID: "s1", ServiceName: "web", Slot: 1, Spec: spec}
	_, err := task.ExpandedSpec(TemplateNode{ID: "n1", Hostname: "my_host"})
	if err == nil || !strings.Contains(err.Error(), `invalid hostname "my_host"`) {
		t.Fatalf("hostname with '_': %v", err)
	}
}

func TestTemplateErr(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"{{.Task.Slot", "unclosed action"},
		{"{{.Nope}}", "at <.Nope>: can't evaluate field Nope"},
		{"{{.Task.Slot}}{{end}}", "unexpected {{end}}"},
	} {
		var c TemplateContext
		_, err := expandTemplate(tc.text, &c)
		if err == nil || !strings.Contains(templateErr(err), tc.want) || strings.Contains(templateErr(err), "template: ") {
			t.Errorf("%q: %v -> %q, want it to contain %q without the preamble", tc.text, err, templateErr(err), tc.want)
		}
	}
}
