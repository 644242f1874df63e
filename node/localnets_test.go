package node

import (
	"net"
	"net/netip"
	"testing"
)

// TestLocalNets: the DNS server's recursion allow list is this host (loopback, its
// interfaces' addresses) and its bridges' subnets, nothing else.
func TestLocalNets(t *testing.T) {
	var l localNets
	for _, a := range []string{"127.0.0.1", "127.66.0.9", "::1"} {
		if !l.allow(netip.MustParseAddr(a)) {
			t.Errorf("%s refused", a)
		}
	}
	// TEST-NET-3 is on no interface of any host.
	if l.allow(netip.MustParseAddr("203.0.113.7")) {
		t.Error("a foreign address allowed")
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, _ := netip.AddrFromSlice(n.IP)
		if !l.allow(ip.Unmap()) {
			t.Errorf("this host's own address %s refused", ip)
		}
	}
}
