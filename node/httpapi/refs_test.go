package httpapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

func TestCheckRef(t *testing.T) {
	for _, tc := range []struct {
		ref string
		ok  bool
	}{
		{"web", true}, {"abc123def456", true}, {"127.66.0.1", true}, {"node-1.example", true}, {"fe80::1", true},
		{"", false}, {"../../etc/passwd", false}, {"a/b", false}, {"web\x00", false}, {"web name", false},
		{strings.Repeat("a", 254), false}, {"%2e%2e", false},
	} {
		err := checkRef("service", tc.ref)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, api.ErrInvalid) {
			t.Errorf("checkRef(%q) = %v, want ok=%v", tc.ref, err, tc.ok)
		}
	}
}

func TestCheckSelf(t *testing.T) {
	good := api.Node{Addr: "127.66.0.1", APIPort: 4240, RaftPort: 4241, GossipPort: 4242, DNSPort: 53, Hostname: "h", Engine: "process",
		Platform: api.Platform{OS: "linux", Arch: "x86_64"}, EngineLabels: map[string]string{"disk": "ssd"}}
	for name, mod := range map[string]func(*api.Node){
		"host name, not an IP": func(n *api.Node) { n.Addr = "evil.example" },
		"unspecified address":  func(n *api.Node) { n.Addr = "0.0.0.0" },
		"port 0":               func(n *api.Node) { n.APIPort = 0 },
		"port past 65535":      func(n *api.Node) { n.GossipPort = 70000 },
		"negative DNS port":    func(n *api.Node) { n.DNSPort = -1 },
		"control characters":   func(n *api.Node) { n.Hostname = "h\x1b[31m" },
		"long engine name":     func(n *api.Node) { n.Engine = strings.Repeat("e", 33) },
		"long platform":        func(n *api.Node) { n.Platform.Arch = strings.Repeat("x", 65) },
		"platform control":     func(n *api.Node) { n.Platform.OS = "linux\n" },
		"empty engine label":   func(n *api.Node) { n.EngineLabels = map[string]string{"": "x"} },
		"huge engine label":    func(n *api.Node) { n.EngineLabels = map[string]string{"k": strings.Repeat("v", 1024)} },
		"too many labels": func(n *api.Node) {
			n.EngineLabels = map[string]string{}
			for i := range 101 {
				n.EngineLabels[strings.Repeat("k", i+1)] = "v"
			}
		},
	} {
		n := good
		mod(&n)
		if err := checkSelf(n); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := checkSelf(good); err != nil {
		t.Fatal(err)
	}
}
