package raftstore

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/cnet/ipam"
)

func planInit(pool string, bits int, services string) *ClusterInit {
	return &ClusterInit{ClusterID: "c1", PortRange: [2]int{30000, 30999}, At: t0,
		ClusterNetwork: api.ClusterNetwork{Pool: pool, SubnetBits: bits, ServiceRange: services}}
}

func join(id, addr string) *NodeUpsert {
	return &NodeUpsert{Node: api.Node{ID: id, Hostname: id, Addr: addr, Role: api.RoleWorker}}
}

func subnets(s *State) map[string]string {
	out := map[string]string{}
	for _, n := range s.Snapshot().Nodes() {
		out[n.ID] = n.Subnet
	}
	return out
}

// Subnets are the FSM's: allocated in join order, kept across a restart's
// refresh (whatever the node sends), freed by removal and reused first.
func TestSubnetAllocation(t *testing.T) {
	s := NewState()
	applyAll(t, s, []Command{
		planInit("10.42.0.0/16", 24, "10.43.0.0/16"),
		join("n1", "192.168.1.1"), join("n2", "192.168.1.2"), join("n3", "192.168.1.3"),
	})
	want := map[string]string{"n1": "10.42.0.0/24", "n2": "10.42.1.0/24", "n3": "10.42.2.0/24"}
	if got := subnets(s); !sameMap(got, want) {
		t.Fatalf("subnets %v, want %v", got, want)
	}
	// A refresh that claims another subnet (or none) keeps the one it has.
	refresh := join("n2", "192.168.1.22")
	refresh.Node.Subnet, refresh.Refresh = "10.42.9.0/24", true
	if _, err := s.Apply(10, refresh); err != nil {
		t.Fatal(err)
	}
	if got := s.Snapshot().Node("n2"); got.Subnet != "10.42.1.0/24" || got.Addr != "192.168.1.22" {
		t.Fatalf("after refresh: %+v", got)
	}
	if _, err := s.Apply(11, &NodeRemove{NodeID: "n2", Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(12, join("n4", "192.168.1.4")); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"n1": "10.42.0.0/24", "n3": "10.42.2.0/24", "n4": "10.42.1.0/24"}
	if got := subnets(s); !sameMap(got, want) {
		t.Fatalf("after removing n2 and joining n4: %v, want %v", got, want)
	}

	// The subnets survive a snapshot round trip, and allocation goes on from them.
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := NewState()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got := subnets(r); !sameMap(got, want) {
		t.Fatalf("restored %v, want %v", got, want)
	}
	if c := r.Snapshot().Cluster(); c.Network() != (api.ClusterNetwork{Pool: "10.42.0.0/16", SubnetBits: 24, ServiceRange: "10.43.0.0/16"}) {
		t.Fatalf("restored plan %+v", c.Network())
	}
	if _, err := r.Apply(13, join("n5", "192.168.1.5")); err != nil {
		t.Fatal(err)
	}
	if got := r.Snapshot().Node("n5").Subnet; got != "10.42.3.0/24" {
		t.Fatalf("n5 after restore: %s", got)
	}
}

// VIPs come from the service range.
func TestVIPFromServiceRange(t *testing.T) {
	s := NewState()
	applyAll(t, s, []Command{planInit("10.42.0.0/16", 24, "10.43.0.0/16"), &ServiceCreate{ID: "s1", Spec: spec("web", 1), At: t0}})
	if got := s.Snapshot().Service("web").VIP; got != "10.43.0.1" {
		t.Fatalf("VIP %s", got)
	}
}

func TestNetworkRefusalsChangeNothing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history []Command
		cmd     Command
		want    string
		is      error
	}{
		{name: "pool full", history: []Command{planInit("10.42.0.0/23", 24, "10.43.0.0/16"), join("n1", "192.168.1.1"), join("n2", "192.168.1.2")},
			cmd: join("n3", "192.168.1.3"), want: "node n3 cannot join: container pool is full: all 2 /24 subnets of 10.42.0.0/23 are taken", is: ipam.ErrPoolFull},
		{name: "address in the pool", history: []Command{planInit("10.42.0.0/16", 24, "10.43.0.0/16")},
			cmd: join("n1", "10.42.7.7"), want: "container pool 10.42.0.0/16 contains node n1's address 10.42.7.7"},
		{name: "address in the service range", history: []Command{planInit("10.42.0.0/16", 24, "10.43.0.0/16")},
			cmd: join("n1", "10.43.0.9"), want: "inside the service range"},
		{name: "pool overlaps the service range", cmd: planInit("10.42.0.0/16", 24, "10.42.0.0/24"), want: "overlaps the service range"},
		{name: "pool too small for a subnet", cmd: planInit("10.42.0.0/25", 24, "10.43.0.0/16"), want: "larger than the container pool"},
		{name: "loopback service range", cmd: planInit("10.42.0.0/16", 24, "127.128.0.0/16"), want: "loopback"},
		{name: "pool not a CIDR", cmd: planInit("10.42.0.0", 24, "10.43.0.0/16"), want: "not a CIDR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewState()
			applyAll(t, s, tc.history)
			before := s.Snapshot().Digest()
			_, err := s.Apply(100, tc.cmd)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalid saying %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want it to wrap %v", err, tc.is)
			}
			if s.Snapshot().Digest() != before {
				t.Fatal("a refused command changed the state")
			}
		})
	}
}

// A cluster initialised before the cluster network (no pool in its init)
// replays as before: the default pool gives subnets where it can, and a node
// it cannot serve is admitted without one rather than refused.
func TestOldInitGetsDefaultPool(t *testing.T) {
	s := NewState()
	applyAll(t, s, []Command{
		&ClusterInit{ClusterID: "c1", ClusterNetwork: api.ClusterNetwork{ServiceRange: "127.128.0.0/16"}, PortRange: [2]int{30000, 30999}},
		join("n1", "127.0.0.1"), join("n2", "10.42.1.1"),
	})
	if got := subnets(s); !sameMap(got, map[string]string{"n1": "10.42.0.0/24", "n2": "10.42.1.0/24"}) {
		t.Fatalf("subnets %v", got)
	}
	if got := s.Snapshot().Cluster().Network(); got.Pool != "10.42.0.0/16" || got.ServiceRange != "127.128.0.0/16" {
		t.Fatalf("plan %+v", got)
	}
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
