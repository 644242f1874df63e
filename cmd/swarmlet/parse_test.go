package main

import (
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 0, true},
		{"100", 100, true},
		{"100b", 100, true},
		{"1k", 1 << 10, true},
		{"512m", 512 << 20, true},
		{"512M", 512 << 20, true},
		{"512mb", 512 << 20, true},
		{"512MiB", 512 << 20, true},
		{"1.5g", 3 << 29, true},
		{"2GB", 2 << 30, true},
		{"1t", 1 << 40, true},
		{"-1m", 0, false},
		{"m", 0, false},
		{"12x", 0, false},
		{"1e400", 0, false},
		{"9999999999p", 0, false},
	} {
		got, err := parseBytes(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseCPU(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{{"", 0, true}, {"0.5", 5e8, true}, {"2", 2e9, true}, {"-1", 0, false}, {"x", 0, false}} {
		got, err := parseCPU(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseCPU(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParsePublish(t *testing.T) {
	ing, host := api.PublishIngress, api.PublishHost
	for _, tc := range []struct {
		in   string
		want api.PortConfig
		ok   bool
	}{
		{"80", api.PortConfig{Protocol: "tcp", TargetPort: 80, PublishMode: ing}, true},
		{"8080:80", api.PortConfig{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: ing}, true},
		{"53:53/udp", api.PortConfig{Protocol: "udp", TargetPort: 53, PublishedPort: 53, PublishMode: ing}, true},
		{"8080:80/TCP", api.PortConfig{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: ing}, true},
		{"published=8080,target=80,mode=host", api.PortConfig{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: host}, true},
		{"target=53,protocol=udp", api.PortConfig{Protocol: "udp", TargetPort: 53, PublishMode: ing}, true},
		{"8080:80/sctp", api.PortConfig{}, false},
		{"0", api.PortConfig{}, false},
		{"70000", api.PortConfig{}, false},
		{"x:80", api.PortConfig{}, false},
		{"published=8080", api.PortConfig{}, false},
		{"target=80,bogus=1", api.PortConfig{}, false},
		{"target=eighty", api.PortConfig{}, false},
	} {
		got, err := parsePublish(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("parsePublish(%q): err %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && got != tc.want {
			t.Errorf("parsePublish(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}
