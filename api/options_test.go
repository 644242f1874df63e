package api

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// size stands in for the CLI's parseBytes: numbers and an m suffix.
func size(s string) (int64, error) {
	if n, ok := strings.CutSuffix(s, "m"); ok {
		v, err := size(n)
		return v << 20, err
	}
	var v int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("not a size")
		}
		v = v*10 + int64(c-'0')
	}
	return v, nil
}

func TestParseMount(t *testing.T) {
	for _, tc := range []struct {
		in     string
		want   Mount
		errHas string
	}{
		{"type=bind,source=/srv,target=/data,readonly", Mount{Type: MountBind, Source: "/srv", Target: "/data", ReadOnly: true}, ""},
		{"type=bind,src=/srv,dst=/data,ro=false", Mount{Type: MountBind, Source: "/srv", Target: "/data"}, ""},
		{"source=cache,target=/cache", Mount{Type: MountVolume, Source: "cache", Target: "/cache"}, ""},
		{"type=volume,destination=/anon", Mount{Type: MountVolume, Target: "/anon"}, ""},
		{"type=tmpfs,target=/tmp,tmpfs-size=64m", Mount{Type: MountTmpfs, Target: "/tmp", TmpfsSize: 64 << 20}, ""},
		{"type=volume,source=v-{{.Task.Slot}},target=/d", Mount{Type: MountVolume, Source: "v-{{.Task.Slot}}", Target: "/d"}, ""},
		{"TYPE=Bind,Source=/a,Target=/b", Mount{Type: MountBind, Source: "/a", Target: "/b"}, ""},
		{"", Mount{}, "expected type="},
		{"type=nfs,target=/x", Mount{}, "unknown mount type \"nfs\""},
		{"type=bind,source=rel,target=/x", Mount{}, "not an absolute path"},
		{"type=bind,target=/x", Mount{}, "needs a source"},
		{"type=bind,source=/a,target=x", Mount{}, "target \"x\" is not an absolute path"},
		{"type=bind,source=/a", Mount{}, "a target is required"},
		{"type=volume,source=/a,target=/x", Mount{}, "volume name"},
		{"type=tmpfs,source=a,target=/x", Mount{}, "takes no source"},
		{"type=volume,target=/x,tmpfs-size=1m", Mount{}, "tmpfs-size is for type=tmpfs"},
		{"type=tmpfs,target=/x,tmpfs-size=lots", Mount{}, "tmpfs-size"},
		{"type=tmpfs,target=/", Mount{}, "hide the whole"},
		{"type=bind,source=/a,target=/b,readonly=maybe", Mount{}, "not true or false"},
		{"type=bind,source=/a,target=/b,propagation=shared", Mount{}, "unknown key \"propagation\""},
		{"type,target=/b", Mount{}, "needs a value"},
	} {
		got, err := ParseMount(tc.in, size)
		switch {
		case tc.errHas == "" && err != nil:
			t.Errorf("ParseMount(%q): %v", tc.in, err)
		case tc.errHas == "" && got != tc.want:
			t.Errorf("ParseMount(%q) = %+v, want %+v", tc.in, got, tc.want)
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("ParseMount(%q) error %v, want one containing %q", tc.in, err, tc.errHas)
		}
	}
}

func TestParseUlimit(t *testing.T) {
	for _, tc := range []struct {
		in     string
		want   Ulimit
		errHas string
	}{
		{"nofile=1024:2048", Ulimit{"nofile", 1024, 2048}, ""},
		{"nproc=64", Ulimit{"nproc", 64, 64}, ""},
		{"core=-1", Ulimit{"core", -1, -1}, ""},
		{"memlock=0:-1", Ulimit{"memlock", 0, -1}, ""},
		{"NOFILE=1", Ulimit{"nofile", 1, 1}, ""},
		{"nofile", Ulimit{}, "expected NAME=SOFT"},
		{"files=1", Ulimit{}, "unknown ulimit \"files\""},
		{"nofile=x", Ulimit{}, "soft limit \"x\""},
		{"nofile=1:y", Ulimit{}, "hard limit \"y\""},
		{"nofile=2048:1024", Ulimit{}, "above the hard limit"},
		{"nofile=-1:10", Ulimit{}, "above the hard limit"},
		{"nofile=-2", Ulimit{}, "-1 for unlimited"},
	} {
		got, err := ParseUlimit(tc.in)
		switch {
		case tc.errHas == "" && (err != nil || got != tc.want):
			t.Errorf("ParseUlimit(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("ParseUlimit(%q) error %v, want one containing %q", tc.in, err, tc.errHas)
		}
	}
}

func TestParseSysctl(t *testing.T) {
	for _, tc := range []struct {
		in     string
		errHas string
	}{
		{"net.core.somaxconn=1024", ""},
		{"net.ipv4.conf.eth0.rp_filter=1", ""},
		{"net.ipv4.ip_local_port_range=1024 65000", ""},
		{"fs.mqueue.msg_max=20", ""},
		{"kernel.shmmax=68719476736", ""},
		{"kernel.pid_max=1000", "not namespaced"},
		{"vm.swappiness=10", "not namespaced"},
		{"net.core.somaxconn", "expected KEY=VALUE"},
		{"=1", "expected KEY=VALUE"},
		{"net.core.somaxconn=", "empty"},
		{"net/core/somaxconn=1", "not a sysctl name"},
	} {
		_, _, err := ParseSysctl(tc.in)
		if tc.errHas == "" && err != nil || tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
			t.Errorf("ParseSysctl(%q) = %v, want error containing %q", tc.in, err, tc.errHas)
		}
	}
}

func TestNormalizeCapability(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"NET_ADMIN", "CAP_NET_ADMIN", true}, {"cap_sys_time", "CAP_SYS_TIME", true}, {"all", "ALL", true},
		{"CAP_CHOWN", "CAP_CHOWN", true}, {"NET_ADMINS", "CAP_NET_ADMINS", false}, {"", "CAP_", false},
	} {
		got, ok := NormalizeCapability(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NormalizeCapability(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestValidateOptions(t *testing.T) {
	opts := func(f func(*ContainerOptions)) func(*ServiceSpec) {
		return func(s *ServiceSpec) {
			s.Container = &ContainerOptions{}
			f(s.Container)
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*ServiceSpec)
		errHas string
	}{
		{"every option", func(s *ServiceSpec) {
			s.Mounts = []Mount{{Type: MountBind, Source: "/srv/{{.Service.Name}}", Target: "/data"}, {Type: MountVolume, Source: "v-{{.Task.Slot}}", Target: "/v"},
				{Type: MountTmpfs, Target: "/tmp", TmpfsSize: 1 << 20}}
			s.Env = []string{"HOST={{.Node.Hostname}}"}
			s.Container = &ContainerOptions{Hostname: "{{.Service.Name}}-{{.Task.Slot}}", User: "1000:1000", Workdir: "/data",
				Entrypoint: []string{"/bin/sh", "-c"}, ContainerLabels: map[string]string{"team": "a"}, Init: true, ReadOnly: true,
				CapAdd: []string{"net_admin"}, CapDrop: []string{"ALL"}, Sysctls: map[string]string{"net.core.somaxconn": "1024"},
				Ulimits: []Ulimit{{"nofile", 10, 20}}, PidsLimit: 100, DNSOptions: []string{"ndots:2"}}
		}, ""},
		{"bad mount type", func(s *ServiceSpec) { s.Mounts = []Mount{{Type: "nfs", Target: "/x"}} }, "unknown mount type"},
		{"relative target", func(s *ServiceSpec) { s.Mounts = []Mount{{Type: MountTmpfs, Target: "data"}} }, "not an absolute path"},
		{"two mounts at one target", func(s *ServiceSpec) {
			s.Mounts = []Mount{{Type: MountTmpfs, Target: "/x"}, {Type: MountVolume, Target: "/x/"}}
		}, "two mounts at /x"},
		{"templated relative bind", func(s *ServiceSpec) { s.Mounts = []Mount{{Type: MountBind, Source: "{{.Service.Name}}", Target: "/x"}} }, "not an absolute path"},
		{"template does not parse", func(s *ServiceSpec) { s.Mounts = []Mount{{Type: MountVolume, Source: "v-{{.Task.Slot", Target: "/x"}} }, "invalid template in mount source"},
		{"template names no field", opts(func(o *ContainerOptions) { o.Hostname = "{{.Task.Slott}}" }), "can't evaluate field Slott"},
		{"template with a function", func(s *ServiceSpec) { s.Env = []string{`A={{env "HOME"}}`} }, `function "env" not defined`},
		{"missing label", func(s *ServiceSpec) { s.Env = []string{"A={{.Service.Labels.nope}}"} }, "invalid template in env A"},
		{"hostname too long", opts(func(o *ContainerOptions) { o.Hostname = "{{.Task.Name}}-{{.Task.Name}}" }), "invalid hostname"},
		{"hostname with a space", opts(func(o *ContainerOptions) { o.Hostname = "a b" }), "invalid hostname"},
		{"bad user", opts(func(o *ContainerOptions) { o.User = "a:b:c" }), "invalid user"},
		{"relative workdir", opts(func(o *ContainerOptions) { o.Workdir = "data" }), "invalid workdir"},
		{"reserved label", opts(func(o *ContainerOptions) { o.ContainerLabels = map[string]string{"swarmlet.task": "x"} }), "swarmlet's own"},
		{"unknown capability", opts(func(o *ContainerOptions) { o.CapAdd = []string{"NET_ADMINS"} }), `unknown capability "NET_ADMINS"`},
		{"added and dropped", opts(func(o *ContainerOptions) { o.CapAdd, o.CapDrop = []string{"CAP_KILL"}, []string{"CAP_KILL"} }), "both added and dropped"},
		{"sysctl not namespaced", opts(func(o *ContainerOptions) { o.Sysctls = map[string]string{"kernel.pid_max": "9"} }), "not namespaced"},
		{"bad ulimit", opts(func(o *ContainerOptions) { o.Ulimits = []Ulimit{{"nofile", 9, 1}} }), "above the hard limit"},
		{"ulimit twice", opts(func(o *ContainerOptions) { o.Ulimits = []Ulimit{{"nofile", 1, 1}, {"nofile", 2, 2}} }), "given twice"},
		{"negative pids", opts(func(o *ContainerOptions) { o.PidsLimit = -1 }), "--limit-pids"},
		{"bad dns option", opts(func(o *ContainerOptions) { o.DNSOptions = []string{"ndots 2"} }), "invalid DNS option"},
		{"too many mounts", func(s *ServiceSpec) { s.Mounts = make([]Mount, maxListItems+1) }, "too many mounts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec(tc.mutate)
			err := s.Validate()
			switch {
			case tc.errHas == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
				t.Fatalf("error %v, want one containing %q", err, tc.errHas)
			}
		})
	}
}

func TestNormalizeOptions(t *testing.T) {
	s := validSpec(func(s *ServiceSpec) {
		s.Mounts = []Mount{}
		s.Container = &ContainerOptions{CapAdd: []string{"net_admin", "ALL"}, CapDrop: []string{}}
	})
	if s.Mounts != nil || !slices.Equal(s.Container.CapAdd, []string{"CAP_NET_ADMIN", "ALL"}) || s.Container.CapDrop != nil {
		t.Fatalf("normalized: mounts %#v options %+v", s.Mounts, *s.Container)
	}
	empty := validSpec(func(s *ServiceSpec) { s.Container = &ContainerOptions{Ulimits: []Ulimit{}} })
	if empty.Container != nil {
		t.Fatalf("empty options kept: %+v", *empty.Container)
	}
	// Options count in SameTaskSpec; spellings of one capability do not.
	a := validSpec(func(s *ServiceSpec) { s.Container = &ContainerOptions{CapAdd: []string{"CAP_KILL"}} })
	b := a.Clone()
	b.Container.CapAdd[0] = "kill"
	if !SameTaskSpec(a, b) || a.Container.CapAdd[0] != "CAP_KILL" {
		t.Fatalf("same capability spelt twice: SameTaskSpec false, or a changed: %v", a.Container.CapAdd)
	}
	b.Container.Init = true
	if SameTaskSpec(a, b) {
		t.Fatal("--init change: SameTaskSpec true")
	}
	c := a.Clone()
	c.Mounts = []Mount{{Type: MountTmpfs, Target: "/t"}}
	if SameTaskSpec(a, c) {
		t.Fatal("mount change: SameTaskSpec true")
	}
}

func TestCloneOptions(t *testing.T) {
	a := validSpec(func(s *ServiceSpec) {
		s.Mounts = []Mount{{Type: MountTmpfs, Target: "/t"}}
		s.Container = &ContainerOptions{Entrypoint: []string{"/e"}, ContainerLabels: map[string]string{"k": "v"}, CapAdd: []string{"CAP_KILL"},
			Sysctls: map[string]string{"net.a.b": "1"}, Ulimits: []Ulimit{{"nofile", 1, 1}}, DNSOptions: []string{"ndots:1"}}
	})
	before := a.Clone()
	b := a.Clone()
	b.Mounts[0].Target = "/u"
	o := b.Container
	o.Entrypoint[0], o.ContainerLabels["k"], o.CapAdd[0], o.Sysctls["net.a.b"], o.Ulimits[0].Soft, o.DNSOptions[0] = "x", "x", "x", "x", 9, "x"
	o.Hostname = "h"
	if !reflect.DeepEqual(a, before) {
		t.Fatalf("changing a clone changed the original: %+v", *a.Container)
	}
}

func TestEngineGaps(t *testing.T) {
	all := validSpec(func(s *ServiceSpec) {
		s.Mounts = []Mount{{Type: MountTmpfs, Target: "/t"}}
		s.Container = &ContainerOptions{Hostname: "h", Entrypoint: []string{"/e"}, ContainerLabels: map[string]string{"k": "v"}, Init: true,
			ReadOnly: true, CapAdd: []string{"CAP_KILL"}, CapDrop: []string{"CAP_CHOWN"}, Sysctls: map[string]string{"net.a.b": "1"},
			Ulimits: []Ulimit{{"nofile", 1, 1}}, DNSOptions: []string{"ndots:1"},
			User: "1000", Workdir: "/w", PidsLimit: 5}
	})
	want := []string{"--mount", "--hostname", "--entrypoint", "--container-label", "--init", "--read-only", "--cap-add", "--cap-drop", "--sysctl", "--ulimit", "--dns-option"}
	if got := all.EngineGaps(EngineProcess); !slices.Equal(got, want) {
		t.Errorf("process gaps %v, want %v", got, want)
	}
	if got := all.EngineGaps(EngineDocker); got != nil {
		t.Errorf("docker gaps %v", got)
	}
	honoured := validSpec(func(s *ServiceSpec) {
		s.Container = &ContainerOptions{User: "1000", Workdir: "/w", PidsLimit: 5}
		s.Limits = Resources{NanoCPUs: 1e9, MemoryBytes: 1 << 20}
	})
	if got := honoured.EngineGaps(EngineProcess); got != nil {
		t.Errorf("user, workdir and limits: gaps %v", got)
	}
	if got := EngineGapError(EngineProcess, []string{"--mount", "--init"}); got != "engine process cannot honour --mount, --init" {
		t.Errorf("EngineGapError = %q", got)
	}
}
