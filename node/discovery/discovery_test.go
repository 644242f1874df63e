package discovery

import (
	"net"
	"reflect"
	"testing"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dnsdisco"
	"github.com/swarmlet/swarmlet/lb"
)

func sampleAssignments() api.Assignments {
	web := api.ServiceEndpoints{Service: "Web", VIP: "10.43.0.2", EndpointMode: api.EndpointVIP,
		Ports: []api.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: api.PublishIngress}},
		Tasks: []api.Endpoint{
			{TaskID: "a", NodeID: "n1", NodeIP: "192.0.2.1", Addr: "10.42.1.2", Ports: []api.PortBinding{{Protocol: "tcp", TargetPort: 80, HostPort: 30001}}},
			{TaskID: "b", NodeID: "n2", NodeIP: "192.0.2.2", Ports: []api.PortBinding{{Protocol: "tcp", TargetPort: 80, HostPort: 30002}}},
			// A container on Docker's default bridge (not n1's subnet) is reached by its host port.
			{TaskID: "d", NodeID: "n1", NodeIP: "192.0.2.1", Addr: "172.17.0.5", Ports: []api.PortBinding{{Protocol: "tcp", TargetPort: 80, HostPort: 30003}}},
		}}
	db := api.ServiceEndpoints{Service: "db", VIP: "10.43.0.3", EndpointMode: api.EndpointDNSRR,
		Ports: []api.PortConfig{{Protocol: "tcp", TargetPort: 5432, PublishedPort: 5432, PublishMode: api.PublishHost}},
		Tasks: []api.Endpoint{{TaskID: "c", NodeID: "n2", NodeIP: "192.0.2.2", Addr: "10.42.2.2", Ports: []api.PortBinding{{Protocol: "tcp", TargetPort: 5432, HostPort: 5432}}}}}
	idle := api.ServiceEndpoints{Service: "idle", VIP: "10.43.0.4", EndpointMode: api.EndpointVIP,
		Ports: []api.PortConfig{{Protocol: "udp", TargetPort: 53, PublishMode: api.PublishIngress}}, Tasks: []api.Endpoint{}}
	return api.Assignments{
		Nodes:     []api.Node{{ID: "n1", Addr: "192.0.2.1", Subnet: "10.42.1.0/24"}, {ID: "n2", Addr: "192.0.2.2"}},
		Endpoints: []api.ServiceEndpoints{web, db, idle},
	}
}

func TestDNSTable(t *testing.T) {
	got := DNSTable(sampleAssignments())
	want := dnsdisco.Table{
		Nodes: map[string]net.IP{"n1": net.ParseIP("192.0.2.1"), "n2": net.ParseIP("192.0.2.2")},
		Services: map[string]dnsdisco.Service{
			// Names are case-insensitive; a task without an address of its own is
			// found at its node's.
			"web": {VIP: net.ParseIP("10.43.0.2"), Tasks: []dnsdisco.Task{
				{Addr: net.ParseIP("10.42.1.2"), Node: "n1", Ports: []dnsdisco.Port{{Proto: "tcp", Target: 80, HostPort: 30001}}},
				{Addr: net.ParseIP("192.0.2.2"), Node: "n2", Ports: []dnsdisco.Port{{Proto: "tcp", Target: 80, HostPort: 30002}}},
				{Addr: net.ParseIP("172.17.0.5"), Node: "n1", Ports: []dnsdisco.Port{{Proto: "tcp", Target: 80, HostPort: 30003}}},
			}},
			// dnsrr: no VIP in DNS.
			"db":   {Tasks: []dnsdisco.Task{{Addr: net.ParseIP("10.42.2.2"), Node: "n2", Ports: []dnsdisco.Port{{Proto: "tcp", Target: 5432, HostPort: 5432}}}}},
			"idle": {VIP: net.ParseIP("10.43.0.4")},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DNS table\n got %+v\nwant %+v", got, want)
	}
}

func TestLBTable(t *testing.T) {
	got := LBTable(sampleAssignments(), "192.0.2.1", false)
	// A container on its node's subnet is reached directly on the target port;
	// the rest through their host ports.
	backends := []lb.Backend{{IP: net.ParseIP("10.42.1.2"), Port: 80}, {IP: net.ParseIP("192.0.2.2"), Port: 30002}, {IP: net.ParseIP("192.0.2.1"), Port: 30003}}
	want := lb.Table{Frontends: []lb.Frontend{
		{Service: "Web", IP: net.ParseIP("10.43.0.2"), Port: 80, Proto: "tcp", Backends: backends},
		{Service: "Web", IP: net.ParseIP("192.0.2.1"), Port: 8080, Proto: "tcp", Backends: backends},
		// db is dnsrr and host-published: nothing to balance. idle has a VIP and no
		// task: a frontend with no backend, so its traffic is refused, not leaked.
		{Service: "idle", IP: net.ParseIP("10.43.0.4"), Port: 53, Proto: "udp"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("LB table\n got %+v\nwant %+v", got, want)
	}
}

// With a balancer that can, a VIP balances every port over its containers on
// the cluster network (a service needs no published port to be called).
func TestLBTableEveryPort(t *testing.T) {
	got := LBTable(sampleAssignments(), "192.0.2.1", true)
	ctrs := []lb.Backend{{IP: net.ParseIP("10.42.1.2")}}
	want := []lb.Frontend{
		{Service: "Web", IP: net.ParseIP("10.43.0.2"), Proto: "tcp", Backends: ctrs},
		{Service: "Web", IP: net.ParseIP("10.43.0.2"), Proto: "udp", Backends: ctrs},
	}
	if !reflect.DeepEqual(got.Frontends[:2], want) {
		t.Fatalf("every-port frontends\n got %+v\nwant %+v", got.Frontends[:2], want)
	}
	if rest := LBTable(sampleAssignments(), "192.0.2.1", false); !reflect.DeepEqual(got.Frontends[2:], rest.Frontends) {
		t.Fatalf("the one-port frontends differ: %+v", got.Frontends[2:])
	}
}
