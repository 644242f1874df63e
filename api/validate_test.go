package api

import (
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web", true}, {"a", true}, {"web-1", true}, {"1web", true}, {strings.Repeat("a", 63), true}, {"web_1", true}, {"shop_db", true},
		{"", false}, {"Web", false}, {"-web", false}, {"web-", false}, {"_web", false}, {"web_", false}, {"web.x", false},
		{strings.Repeat("a", 64), false}, {"../x", false},
	} {
		if err := ValidateName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"abc123", true}, {strings.Repeat("a", 64), true},
		{"", false}, {"ABC", false}, {"..%2F..", false}, {"../etc", false}, {"a/b", false}, {strings.Repeat("a", 65), false},
	} {
		if err := ValidateID(tc.id); (err == nil) != tc.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
}

func TestParseConstraint(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want Constraint
		ok   bool
	}{
		{"node.role==manager", Constraint{"node.role", true, "manager"}, true},
		{"node.labels.zone != a", Constraint{"node.labels.zone", false, "a"}, true},
		{"node.hostname==n1", Constraint{"node.hostname", true, "n1"}, true},
		{"node.labels.==a", Constraint{}, false},
		{"node.role=manager", Constraint{}, false},
		{"node.role==", Constraint{}, false},
		{"engine.labels.x==y", Constraint{"engine.labels.x", true, "y"}, true},
		{"node.platform.os==linux", Constraint{"node.platform.os", true, "linux"}, true},
		{"node.platform.arch!=x86_64", Constraint{"node.platform.arch", false, "x86_64"}, true},
		{"engine.labels.==y", Constraint{}, false},
		{"node.platform.kernel==6", Constraint{}, false},
	} {
		got, err := ParseConstraint(tc.expr)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseConstraint(%q) = %+v, %v; want %+v ok=%v", tc.expr, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() == "" {
			t.Errorf("%q: empty String()", tc.expr)
		}
	}
}

func TestParsePort(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want PortConfig
		ok   bool
	}{
		{"80", PortConfig{Protocol: "tcp", TargetPort: 80, PublishMode: PublishIngress}, true},
		{"8080:80", PortConfig{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: PublishIngress}, true},
		{"53/udp", PortConfig{Protocol: "udp", TargetPort: 53, PublishMode: PublishIngress}, true},
		{"8080:80/icmp", PortConfig{}, false},
		{":80", PortConfig{Protocol: "tcp", TargetPort: 80, PublishMode: PublishIngress}, true}, // docker run: any host port
		{"80:", PortConfig{}, false},
		{"65536", PortConfig{}, false},
		{"a", PortConfig{}, false},
	} {
		got, err := ParsePort(tc.spec)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParsePort(%q) = %+v, %v; want %+v ok=%v", tc.spec, got, err, tc.want, tc.ok)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	base := func() ServiceSpec {
		s := ServiceSpec{Name: "web", Image: "img", Replicas: 3, Ports: []PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
		s.Normalize()
		return s
	}
	long := strings.Repeat("x", maxFieldBytes+1)
	for _, tc := range []struct {
		name   string
		mutate func(*ServiceSpec)
		errHas string
	}{
		{"valid", func(*ServiceSpec) {}, ""},
		{"bad name", func(s *ServiceSpec) { s.Name = "Bad" }, "invalid service name"},
		{"no image", func(s *ServiceSpec) { s.Image = "" }, "image is required"},
		{"global with replicas", func(s *ServiceSpec) { s.Mode = ModeGlobal }, "--mode global"},
		{"bad mode", func(s *ServiceSpec) { s.Mode = "x" }, "invalid mode"},
		{"bad endpoint mode", func(s *ServiceSpec) { s.EndpointMode = "x" }, "invalid endpoint mode"},
		{"bad port", func(s *ServiceSpec) { s.Ports[0].TargetPort = 0 }, "invalid port"},
		{"bad protocol", func(s *ServiceSpec) { s.Ports[0].Protocol = "sctp" }, "invalid protocol"},
		{"bad publish mode", func(s *ServiceSpec) { s.Ports[0].PublishMode = "x" }, "invalid publish mode"},
		{"port twice", func(s *ServiceSpec) { s.Ports = append(s.Ports, s.Ports[0]) }, "published twice"},
		{"bad constraint", func(s *ServiceSpec) { s.Constraints = []string{"x"} }, "invalid constraint"},
		{"bad env", func(s *ServiceSpec) { s.Env = []string{"=v"} }, "invalid env"},
		{"negative limit", func(s *ServiceSpec) { s.Limits.MemoryBytes = -1 }, "negative"},
		{"bad restart", func(s *ServiceSpec) { s.RestartPolicy.Condition = "x" }, "restart condition"},
		{"huge replicas", func(s *ServiceSpec) { s.Replicas = 1 << 60 }, "at most"},
		{"too many env", func(s *ServiceSpec) { s.Env = make([]string, maxListItems+1) }, "too many env"},
		{"long arg", func(s *ServiceSpec) { s.Command = []string{long} }, "command arguments"},
		{"long label", func(s *ServiceSpec) { s.Labels = map[string]string{"k": long} }, "too long"},
		{"long image", func(s *ServiceSpec) { s.Image = long }, "image name"},
		{"huge total", func(s *ServiceSpec) {
			for range 20 {
				s.Env = append(s.Env, "K="+strings.Repeat("v", maxFieldBytes-3))
			}
		}, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.mutate(&s)
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
