package dnsdisco

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// A node's DNS answers on more than one address (its advertise address and its
// container network's gateway), the same table on each.
func TestListenMore(t *testing.T) {
	s := startServer(t, Config{}, testTable())
	second, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.Listen("127.0.0.1:0"); err != nil || again != second {
		t.Fatalf("Listen again = %q, %v; want %q", again, err, second)
	}
	for _, addr := range []string{s.Addr(), second} {
		for _, network := range []string{"udp", "tcp"} {
			if r := query(t, network, addr, "web.", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				t.Fatalf("%s %s: %v", network, addr, r)
			}
		}
	}
	if err := s.Unlisten("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("web.", dns.TypeA)
	if _, _, err := c.Exchange(m, second); err == nil {
		t.Fatalf("%s still answers after Unlisten", second)
	}
	if r := query(t, "udp", s.Addr(), "web.", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("the first address stopped answering: %v", r)
	}
}

// queryFrom asks addr from the local address src.
func queryFrom(t *testing.T, network, src, addr, name string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	d := &net.Dialer{Timeout: 5 * time.Second}
	if network == "udp" {
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(src)}
	} else {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c := &dns.Client{Net: network, Dialer: d}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", network, name, src, err)
	}
	return r
}

// Not an open resolver: names outside the zone are forwarded only for the
// clients RecursionFrom names; everyone gets the zone.
func TestRecursionFrom(t *testing.T) {
	up := startUpstream(t, 0)
	s := startServer(t, Config{Upstreams: []string{up.addr}, RecursionFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}, testTable())
	for _, network := range []string{"udp", "tcp"} {
		if r := queryFrom(t, network, "127.0.0.3", s.Addr(), "example.org."); r.Rcode != dns.RcodeRefused || r.RecursionAvailable {
			t.Fatalf("%s from an outsider: %s ra=%v, want REFUSED without recursion", network, dns.RcodeToString[r.Rcode], r.RecursionAvailable)
		}
		if r := queryFrom(t, network, "127.0.0.3", s.Addr(), "web."); r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			t.Fatalf("%s from an outsider, a cluster name: %v", network, r)
		}
		if r := queryFrom(t, network, "127.0.0.2", s.Addr(), "example.org."); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s from an allowed client: %v", network, r)
		}
	}
	if _, names := up.seen(); len(names) != 2 {
		t.Fatalf("upstream saw %v, want only the allowed client's two queries", names)
	}
	s.SetRecursionFrom(nil)
	if r := queryFrom(t, "udp", "127.0.0.3", s.Addr(), "example.org."); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("with no limit: %v", r)
	}
}
