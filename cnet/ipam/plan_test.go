package ipam

import (
	"net/netip"
	"strings"
	"testing"
)

func TestValidatePlan(t *testing.T) {
	node := AddrRange("node n1's address", netip.MustParseAddr("192.168.1.10"))
	for _, tc := range []struct {
		name     string
		pool     string
		bits     int
		services string
		others   []Range
		want     string // "" means valid; else a part of the error
	}{
		{name: "defaults", pool: "10.42.0.0/16", bits: 24, services: "10.43.0.0/16", others: []Range{node}},
		{name: "small but valid", pool: "172.20.0.0/24", bits: 26, services: "172.21.0.0/30"},
		{name: "service range is loopback", pool: "10.42.0.0/16", bits: 24, services: "127.128.0.0/16", want: "loopback"},
		{name: "service range unset", pool: "10.42.0.0/16", bits: 24, want: "service range is not set"},
		{name: "service range has host bits", pool: "10.42.0.0/16", bits: 24, services: "10.43.0.1/16", want: "did you mean 10.43.0.0/16"},
		{name: "service range IPv6", pool: "10.42.0.0/16", bits: 24, services: "fd00::/64", want: "not IPv4"},
		{name: "service range too small", pool: "10.42.0.0/16", bits: 24, services: "10.43.0.0/31", want: "too small"},
		{name: "pool and service range overlap", pool: "10.42.0.0/16", bits: 24, services: "10.42.128.0/17", want: "overlaps the service range"},
		{name: "pool holds a node's address", pool: "192.168.0.0/16", bits: 24, services: "10.43.0.0/16", others: []Range{node}, want: "contains node n1's address 192.168.1.10"},
		{name: "service range holds a node's address", pool: "10.42.0.0/16", bits: 24, services: "192.168.0.0/16", others: []Range{node}, want: "service range 192.168.0.0/16 overlaps node n1's address"},
		{name: "pool too small for its subnets", pool: "10.42.0.0/25", bits: 24, services: "10.43.0.0/16", want: "larger than the container pool"},
		{name: "pool is loopback", pool: "127.0.0.0/16", bits: 24, services: "10.43.0.0/16", want: "loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pool, services netip.Prefix
			if tc.pool != "" {
				pool = netip.MustParsePrefix(tc.pool)
			}
			if tc.services != "" {
				services = netip.MustParsePrefix(tc.services)
			}
			err := ValidatePlan(pool, tc.bits, services, tc.others...)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("ValidatePlan: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("ValidatePlan = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
