package main

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/swarmlet/swarmlet/api"
)

func parseOptionFlags(t *testing.T, update bool, args ...string) (*pflag.FlagSet, *optionFlags) {
	t.Helper()
	var o optionFlags
	f := pflag.NewFlagSet("x", pflag.ContinueOnError)
	o.register(f, update)
	if err := f.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f, &o
}

func TestOptionFlagsCreate(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("\xef\xbb\xbf# comment\n\nA=from-file\n  B=two words \nC=file\nOPT_FROM_SHELL\nOPT_UNSET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OPT_FROM_SHELL", "shell")
	f, o := parseOptionFlags(t, false,
		"--mount", "type=bind,source=/srv,target=/data,readonly", "--mount", "type=tmpfs,target=/tmp,tmpfs-size=64m",
		"--mount", "source=cache-{{.Task.Slot}},target=/cache",
		"--hostname", "{{.Service.Name}}-{{.Task.Slot}}", "-u", "1000:1000", "-w", "/data", "--entrypoint", `/bin/sh -c 'echo "hi there"'`,
		"--env-file", envFile, "--container-label", "team=a", "--init", "--read-only", "--cap-add", "net_admin", "--cap-drop", "ALL",
		"--sysctl", "net.core.somaxconn=1024", "--ulimit", "nofile=1024:2048", "--limit-pids", "100", "--dns-option", "ndots:2")
	spec := api.ServiceSpec{Name: "web", Image: "img", Env: []string{"C=flag"}}
	if err := o.apply(f, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	wantMounts := []api.Mount{{Type: api.MountBind, Source: "/srv", Target: "/data", ReadOnly: true}, {Type: api.MountTmpfs, Target: "/tmp", TmpfsSize: 64 << 20},
		{Type: api.MountVolume, Source: "cache-{{.Task.Slot}}", Target: "/cache"}}
	if !reflect.DeepEqual(spec.Mounts, wantMounts) {
		t.Errorf("mounts %+v", spec.Mounts)
	}
	want := api.ContainerOptions{Hostname: "{{.Service.Name}}-{{.Task.Slot}}", User: "1000:1000", Workdir: "/data",
		Entrypoint: []string{"/bin/sh", "-c", `echo "hi there"`}, ContainerLabels: map[string]string{"team": "a"}, Init: true, ReadOnly: true,
		CapAdd: []string{"CAP_NET_ADMIN"}, CapDrop: []string{"ALL"}, Sysctls: map[string]string{"net.core.somaxconn": "1024"},
		Ulimits: []api.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}}, PidsLimit: 100, DNSOptions: []string{"ndots:2"}}
	if !reflect.DeepEqual(*spec.Container, want) {
		t.Errorf("options\n %+v, want\n %+v", *spec.Container, want)
	}
	// The file first, --env winning over it; a bare name comes from this shell.
	if wantEnv := []string{"A=from-file", "B=two words ", "OPT_FROM_SHELL=shell", "C=flag"}; !slices.Equal(spec.Env, wantEnv) {
		t.Errorf("env %q, want %q", spec.Env, wantEnv)
	}

	// No option flags: no options in the spec.
	f, o = parseOptionFlags(t, false)
	empty := api.ServiceSpec{Name: "web", Image: "img"}
	if err := o.apply(f, &empty); err != nil {
		t.Fatal(err)
	}
	empty.Normalize()
	if empty.Container != nil || empty.Mounts != nil {
		t.Errorf("no flags, yet options %+v mounts %+v", empty.Container, empty.Mounts)
	}
}

func TestOptionFlagsUpdate(t *testing.T) {
	cur := api.ServiceSpec{Name: "web", Image: "img",
		Mounts: []api.Mount{{Type: api.MountTmpfs, Target: "/tmp"}, {Type: api.MountVolume, Source: "v", Target: "/v"}},
		Container: &api.ContainerOptions{Hostname: "h", Entrypoint: []string{"/e"}, ContainerLabels: map[string]string{"a": "1", "b": "2"},
			CapAdd: []string{"CAP_KILL"}, CapDrop: []string{"CAP_CHOWN"}, Sysctls: map[string]string{"net.a.b": "1"},
			Ulimits: []api.Ulimit{{Name: "nofile", Soft: 1, Hard: 1}, {Name: "nproc", Soft: 5, Hard: 5}}, DNSOptions: []string{"ndots:1", "rotate"}, Init: true}}
	f, o := parseOptionFlags(t, true,
		"--mount-rm", "/tmp/", "--mount-add", "type=tmpfs,target=/v", "--hostname", "", "--entrypoint", "",
		"--container-label-rm", "a", "--container-label-add", "b=3", "--cap-add", "chown", "--cap-drop", "KILL",
		"--sysctl-rm", "net.a.b", "--sysctl-add", "net.c.d=2", "--ulimit-rm", "nproc", "--ulimit-add", "nofile=2:4",
		"--dns-option-rm", "rotate", "--dns-option-add", "ndots:3", "--init=false", "--limit-pids", "7")
	spec := cur.Clone()
	if err := o.apply(f, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Normalize()
	if !reflect.DeepEqual(spec.Mounts, []api.Mount{{Type: api.MountTmpfs, Target: "/v"}}) {
		t.Errorf("mounts %+v", spec.Mounts)
	}
	want := api.ContainerOptions{ContainerLabels: map[string]string{"b": "3"}, CapAdd: []string{"CAP_CHOWN"}, CapDrop: []string{"CAP_KILL"},
		Sysctls: map[string]string{"net.c.d": "2"}, Ulimits: []api.Ulimit{{Name: "nofile", Soft: 2, Hard: 4}}, DNSOptions: []string{"ndots:1", "ndots:3"}, PidsLimit: 7}
	if !reflect.DeepEqual(*spec.Container, want) {
		t.Errorf("options\n %+v, want\n %+v", *spec.Container, want)
	}
	if cur.Container.Hostname != "h" || len(cur.Mounts) != 2 {
		t.Error("the update changed the spec it started from")
	}
	// Flags not given leave the options alone.
	f, o = parseOptionFlags(t, true)
	same := cur.Clone()
	if err := o.apply(f, &same); err != nil || !reflect.DeepEqual(same, cur) {
		t.Errorf("no flags: %v\n %+v\n %+v", err, same.Container, cur.Container)
	}
}

func TestOptionFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		update bool
		args   []string
		errHas string
	}{
		{false, []string{"--mount", "type=nfs,target=/x"}, `invalid --mount "type=nfs,target=/x": unknown mount type "nfs"`},
		{true, []string{"--mount-add", "type=bind,target=/x"}, `invalid --mount-add "type=bind,target=/x": type=bind needs a source`},
		{true, []string{"--mount-rm", "/nope"}, `invalid --mount-rm "/nope": the service has no mount`},
		{false, []string{"--ulimit", "nofile=9:1"}, `invalid --ulimit "nofile=9:1"`},
		{true, []string{"--ulimit-add", "files=1"}, `invalid --ulimit-add "files=1": unknown ulimit`},
		{false, []string{"--sysctl", "kernel.pid_max=9"}, "not namespaced"},
		{false, []string{"--container-label", "novalue"}, `invalid --container-label "novalue": expected KEY=VALUE`},
		{true, []string{"--container-label-add", "=v"}, `invalid --container-label-add "=v"`},
		{false, []string{"--entrypoint", `sh -c "x`}, "unclosed \" quote"},
		{false, []string{"--limit-pids", "-1"}, "invalid --limit-pids -1"},
		{false, []string{"--env-file", "/nonexistent/env"}, "--env-file: open /nonexistent/env"},
	} {
		f, o := parseOptionFlags(t, tc.update, tc.args...)
		spec := api.ServiceSpec{Name: "web", Image: "img", Mounts: []api.Mount{{Type: api.MountTmpfs, Target: "/t"}}}
		if err := o.apply(f, &spec); err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.errHas)
		}
	}
}

func TestReadEnvFileRefusesBadNames(t *testing.T) {
	name := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(name, []byte("OK=1\nBAD KEY=2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readEnvFile(name); err == nil || !strings.Contains(err.Error(), ":2: invalid variable name \"BAD KEY\"") {
		t.Fatalf("error %v", err)
	}
}

func TestShellWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil}, {"  ", nil}, {"/bin/app", []string{"/bin/app"}}, {"a  b\tc", []string{"a", "b", "c"}},
		{`sh -c 'echo $HOME "x"'`, []string{"sh", "-c", `echo $HOME "x"`}}, {`a\ b "c d" ''`, []string{"a b", "c d", ""}},
		{`"a\"b"`, []string{`a"b`}},
	} {
		got, err := shellWords(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=1", "A=2", "C"}, []string{"B=9"})
	if want := []string{"A=2", "C", "B=9"}; !slices.Equal(got, want) {
		t.Fatalf("mergeEnv = %q, want %q", got, want)
	}
}
