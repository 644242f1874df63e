package clusternet

import (
	"context"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/cnet"
	"github.com/swarmlet/swarmlet/internal/testlog"
	"github.com/swarmlet/swarmlet/node/engine"
)

type fakeNetworker struct {
	set    []engine.Network
	pruned []string // nodes asked about and not kept
}

func (f *fakeNetworker) SetNetwork(_ context.Context, n engine.Network) error {
	f.set = append(f.set, n)
	return nil
}
func (f *fakeNetworker) RemoveNetwork(context.Context, string) error { return nil }
func (f *fakeNetworker) PruneNetworks(_ context.Context, label, owner string, keep func(string) bool) ([]string, error) {
	for _, id := range []string{"n1", "n2", "gone"} {
		if !keep(id) {
			f.pruned = append(f.pruned, label+"="+owner+":"+id)
		}
	}
	return nil, nil
}

type fakeDNS struct {
	listen    []string
	recursion []netip.Prefix
}

func (f *fakeDNS) Listen(addr string) (string, error) {
	f.listen = append(f.listen, addr)
	return addr, nil
}
func (f *fakeDNS) SetRecursionFrom(p []netip.Prefix) { f.recursion = p }

func TestPeerTable(t *testing.T) {
	got := peerTable([]api.Node{
		{ID: "b", Addr: "10.0.0.2", Subnet: "10.42.1.0/24"},
		{ID: "a", Addr: "10.0.0.1", Subnet: "10.42.0.0/24"},
		{ID: "c", Addr: "10.0.0.3"},                          // no subnet yet
		{ID: "d", Addr: "not-an-ip", Subnet: "10.42.3.0/24"}, // unusable
	})
	want := cnet.Table{Peers: []cnet.Peer{
		{ID: "a", UnderlayIP: netip.MustParseAddr("10.0.0.1"), Subnet: netip.MustParsePrefix("10.42.0.0/24")},
		{ID: "b", UnderlayIP: netip.MustParseAddr("10.0.0.2"), Subnet: netip.MustParsePrefix("10.42.1.0/24")},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("peerTable = %+v", got)
	}
}

func TestNames(t *testing.T) {
	if got := DeviceName("abcdefghijkl"); got != "swl-abcdefghij" || len(got) > 15 {
		t.Fatalf("DeviceName = %q", got)
	}
	if got := ownerOf("n1", "c1"); got != "n1 cluster=c1" {
		t.Fatalf("ownerOf = %q", got)
	}
	if TableName("n1") != "swarmlet_n1" || NetworkName("n1") != "swarmlet-n1" {
		t.Fatal("table or network name")
	}
}

// Without programming the host, a session answer gives the node its
// container network (Docker's masquerade on), the DNS on its gateway and the
// recursion limit with its subnet; the janitor asks about nodes not in the
// table only.
func TestApplyWithoutProgramming(t *testing.T) {
	nw, dns := &fakeNetworker{}, &fakeDNS{}
	n, err := New(Config{NodeID: "n1", ClusterID: "c1", Addr: netip.MustParseAddr("127.65.0.1"), Networker: nw, DNS: dns, Janitor: true, Logger: testlog.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	self := api.Node{ID: "n1", Addr: "127.65.0.1", Subnet: "10.42.3.0/24"}
	as := api.Assignments{Node: &self, Nodes: []api.Node{self, {ID: "n2", Addr: "127.65.0.2", Subnet: "10.42.4.0/24"}}}
	n.Apply(context.Background(), as)
	n.Apply(context.Background(), as) // the same answer again changes nothing
	want := engine.Network{Name: "swarmlet-n1", Subnet: netip.MustParsePrefix("10.42.3.0/24"), Gateway: netip.MustParseAddr("10.42.3.1"),
		Masquerade: true, DNS: []string{"10.42.3.1"}, Search: []string{"swarmlet"}}
	if len(nw.set) != 1 {
		t.Fatalf("SetNetwork called %d times, want once", len(nw.set))
	}
	got := nw.set[0]
	if got.Name != want.Name || got.Subnet != want.Subnet || got.Gateway != want.Gateway || got.Masquerade != want.Masquerade ||
		!slices.Equal(got.DNS, want.DNS) || !slices.Equal(got.Search, want.Search) || got.Labels[LabelCluster] != "c1" || got.Labels[engine.LabelNode] != "n1" {
		t.Fatalf("SetNetwork(%+v), want %+v", got, want)
	}
	if !slices.Equal(dns.listen, []string{"10.42.3.1:53"}) {
		t.Fatalf("DNS listens on %v", dns.listen)
	}
	if !slices.Contains(dns.recursion, netip.MustParsePrefix("10.42.3.0/24")) || !slices.Contains(dns.recursion, netip.MustParsePrefix("127.65.0.1/32")) {
		t.Fatalf("recursion from %v", dns.recursion)
	}
	if !slices.Equal(nw.pruned, []string{"swarmlet.cluster=c1:gone"}) {
		t.Fatalf("janitor asked about %v", nw.pruned)
	}
	if n.Subnet() != want.Subnet {
		t.Fatalf("Subnet() = %v", n.Subnet())
	}
}
