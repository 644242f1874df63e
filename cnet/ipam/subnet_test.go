package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func pfxs(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, pfx(s))
	}
	return out
}

func TestAllocateSubnet(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pool     string
		bits     int
		taken    []netip.Prefix
		want     string
		wantFull bool
	}{
		{name: "empty pool gives the first", pool: "10.42.0.0/16", bits: 24, want: "10.42.0.0/24"},
		{name: "next after the first", pool: "10.42.0.0/16", bits: 24, taken: pfxs("10.42.0.0/24"), want: "10.42.1.0/24"},
		{name: "lowest hole is reused", pool: "10.42.0.0/16", bits: 24, taken: pfxs("10.42.0.0/24", "10.42.2.0/24", "10.42.1.0/24", "10.42.4.0/24"), want: "10.42.3.0/24"},
		{name: "order and duplicates do not matter", pool: "10.42.0.0/16", bits: 24, taken: pfxs("10.42.1.0/24", "10.42.0.0/24", "10.42.1.0/24"), want: "10.42.2.0/24"},
		{name: "foreign prefixes ignored", pool: "10.42.0.0/16", bits: 24, taken: pfxs("10.43.0.0/24", "192.168.0.0/24", "fd00::/64"), want: "10.42.0.0/24"},
		{name: "larger taken prefix skips all it covers", pool: "10.42.0.0/16", bits: 24, taken: pfxs("10.42.0.0/22"), want: "10.42.4.0/24"},
		{name: "smaller taken prefix blocks its /24", pool: "10.42.0.0/16", bits: 24, taken: pfxs("10.42.0.128/25"), want: "10.42.1.0/24"},
		{name: "unmasked taken prefix is masked", pool: "10.42.0.0/16", bits: 24, taken: pfxs("10.42.0.7/24"), want: "10.42.1.0/24"},
		{name: "taken prefix covering the pool", pool: "10.42.0.0/16", bits: 24, taken: pfxs("10.0.0.0/8"), wantFull: true},
		{name: "pool of one subnet", pool: "10.42.7.0/24", bits: 24, want: "10.42.7.0/24"},
		{name: "pool of one subnet, taken", pool: "10.42.7.0/24", bits: 24, taken: pfxs("10.42.7.0/24"), wantFull: true},
		{name: "last subnet", pool: "10.42.0.0/23", bits: 24, taken: pfxs("10.42.0.0/24"), want: "10.42.1.0/24"},
		{name: "full", pool: "10.42.0.0/23", bits: 24, taken: pfxs("10.42.1.0/24", "10.42.0.0/24"), wantFull: true},
		{name: "/26 per node", pool: "172.20.0.0/24", bits: 26, taken: pfxs("172.20.0.0/26", "172.20.0.128/26"), want: "172.20.0.64/26"},
		{name: "pool at the top of the space", pool: "223.255.255.0/24", bits: 28, taken: pfxs("223.255.255.0/25", "223.255.255.128/26", "223.255.255.192/27", "223.255.255.224/28"), want: "223.255.255.240/28"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AllocateSubnet(pfx(tc.pool), tc.bits, tc.taken)
			if tc.wantFull {
				if !errors.Is(err, ErrPoolFull) {
					t.Fatalf("AllocateSubnet = %v, %v; want ErrPoolFull", got, err)
				}
				if !strings.Contains(err.Error(), tc.pool) {
					t.Errorf("error %q does not name the pool", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("AllocateSubnet: %v", err)
			}
			if got != pfx(tc.want) {
				t.Errorf("AllocateSubnet = %v, want %v", got, tc.want)
			}
		})
	}
}

// Filling a pool one node at a time hands out every subnet exactly once, in
// order, and then says full.
func TestAllocateSubnetFillsPool(t *testing.T) {
	pool := pfx("10.42.0.0/20")
	var taken []netip.Prefix
	for i := range Capacity(pool, 24) {
		got, err := AllocateSubnet(pool, 24, taken)
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if want := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 42, byte(i), 0}), 24); got != want {
			t.Fatalf("allocation %d = %v, want %v", i, got, want)
		}
		taken = append([]netip.Prefix{got}, taken...) // newest first: order must not matter
	}
	if _, err := AllocateSubnet(pool, 24, taken); !errors.Is(err, ErrPoolFull) {
		t.Fatalf("allocation after %d: err = %v, want ErrPoolFull", len(taken), err)
	}
}

func TestValidatePool(t *testing.T) {
	for _, tc := range []struct {
		pool    netip.Prefix
		bits    int
		wantErr string // "" means valid
	}{
		{pool: DefaultPool, bits: DefaultNodeBits},
		{pool: pfx("172.16.0.0/12"), bits: 24},
		{pool: pfx("10.42.0.0/24"), bits: 24},
		{pool: pfx("10.42.0.0/24"), bits: 28},
		{pool: netip.Prefix{}, bits: 24, wantErr: "not set"},
		{pool: pfx("fd00:42::/48"), bits: 64, wantErr: "not IPv4"},
		{pool: pfx("::ffff:10.42.0.0/112"), bits: 120, wantErr: "not IPv4"},
		{pool: pfx("10.42.1.0/16"), bits: 24, wantErr: "did you mean 10.42.0.0/16"},
		{pool: pfx("127.42.0.0/16"), bits: 24, wantErr: "loopback"},
		{pool: pfx("64.0.0.0/2"), bits: 24, wantErr: "loopback"},
		{pool: pfx("169.254.0.0/16"), bits: 24, wantErr: "link-local"},
		{pool: pfx("0.0.0.0/0"), bits: 24, wantErr: "this network"},
		{pool: pfx("224.1.0.0/16"), bits: 24, wantErr: "multicast"},
		{pool: pfx("255.255.255.0/24"), bits: 28, wantErr: "reserved"},
		{pool: pfx("10.42.0.0/24"), bits: 16, wantErr: "larger than the container pool"},
		{pool: pfx("10.42.0.0/16"), bits: 29, wantErr: "too small"},
		{pool: pfx("10.42.0.0/16"), bits: 32, wantErr: "too small"},
	} {
		t.Run(fmt.Sprintf("%v_per_node_%d", tc.pool, tc.bits), func(t *testing.T) {
			err := ValidatePool(tc.pool, tc.bits)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidatePool(%v, %d) = %v, want nil", tc.pool, tc.bits, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ValidatePool(%v, %d) = %v, want an error containing %q", tc.pool, tc.bits, err, tc.wantErr)
			}
			if _, aerr := AllocateSubnet(tc.pool, tc.bits, nil); aerr == nil {
				t.Errorf("AllocateSubnet accepted the invalid pool %v /%d", tc.pool, tc.bits)
			}
		})
	}
}

func TestCheckDisjoint(t *testing.T) {
	svc := Range{Name: "the service range", Prefix: DefaultServiceRange}
	for _, tc := range []struct {
		name    string
		pool    string
		others  []Range
		wantErr string
	}{
		{name: "defaults are disjoint", pool: "10.42.0.0/16", others: []Range{svc, AddrRange("node n1's address", netip.MustParseAddr("192.168.1.10"))}},
		{name: "adjacent ranges are disjoint", pool: "10.42.0.0/16", others: []Range{{"the service range", pfx("10.41.0.0/16")}}},
		{name: "unset range is ignored", pool: "10.42.0.0/16", others: []Range{{"the service range", netip.Prefix{}}}},
		{name: "pool covering the service range", pool: "10.0.0.0/8", others: []Range{svc}, wantErr: "container pool 10.0.0.0/8 overlaps the service range 10.43.0.0/16"},
		{name: "service range covering the pool", pool: "10.43.4.0/24", others: []Range{svc}, wantErr: "overlaps the service range"},
		{name: "pool holding a node address", pool: "10.42.0.0/16", others: []Range{svc, AddrRange("node n2's address", netip.MustParseAddr("10.42.7.9"))}, wantErr: "contains node n2's address 10.42.7.9"},
		{name: "first clash is named", pool: "10.0.0.0/8", others: []Range{AddrRange("node n3's address", netip.MustParseAddr("10.1.1.1")), svc}, wantErr: "node n3's address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckDisjoint(pfx(tc.pool), tc.others...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckDisjoint = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckDisjoint = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestGateway(t *testing.T) {
	if got := Gateway(pfx("10.42.3.0/24")); got != netip.MustParseAddr("10.42.3.1") {
		t.Errorf("Gateway = %v", got)
	}
}
