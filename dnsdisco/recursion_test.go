package dnsdisco

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestRecursionAllowList: names outside the zone are resolved upstream only for
// allowed clients (the node's host and containers); anyone else gets REFUSED for
// them and never reaches the upstream, while cluster names are answered to all.
func TestRecursionAllowList(t *testing.T) {
	good := startUpstream(t, 0)
	allowed := netip.MustParseAddr("127.66.0.51")
	s := startServer(t, Config{Addr: "127.66.0.50:0", Upstreams: []string{good.addr},
		RecursionFrom: []netip.Prefix{netip.PrefixFrom(allowed, 32)}}, testTable())
	from := func(src string) *dns.Client {
		ip := net.ParseIP(src)
		return &dns.Client{Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: ip}}}
	}
	fromTCP := func(src string) *dns.Client {
		ip := net.ParseIP(src)
		return &dns.Client{Net: "tcp", Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}}
	}
	ask := func(c *dns.Client, name string) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		r, _, err := c.Exchange(m, s.Addr())
		if err != nil {
			t.Fatalf("%s %s: %v", c.Net, name, err)
		}
		return r
	}
	for _, tc := range []struct {
		name      string
		client    *dns.Client
		qname     string
		rcode     int
		ra        bool
		forwarded bool
	}{
		{"allowed, outside the zone", from("127.66.0.51"), "example.org.", dns.RcodeSuccess, true, true},
		{"allowed over TCP", fromTCP("127.66.0.51"), "example.org.", dns.RcodeSuccess, true, true},
		{"stranger, outside the zone", from("127.66.0.52"), "example.net.", dns.RcodeRefused, false, false},
		{"stranger over TCP", fromTCP("127.66.0.52"), "example.com.", dns.RcodeRefused, false, false},
		{"stranger, a cluster name", from("127.66.0.52"), "web.", dns.RcodeSuccess, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ask(tc.client, tc.qname)
			if r.Rcode != tc.rcode || r.RecursionAvailable != tc.ra {
				t.Fatalf("rcode %s RA %v, want %s RA %v", dns.RcodeToString[r.Rcode], r.RecursionAvailable, dns.RcodeToString[tc.rcode], tc.ra)
			}
			_, names := good.seen()
			if got := slices.Contains(names, tc.qname); got != tc.forwarded {
				t.Fatalf("upstream saw %s: %v, want %v", tc.qname, got, tc.forwarded)
			}
		})
	}
}
