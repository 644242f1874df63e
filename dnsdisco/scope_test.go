package dnsdisco

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func scopeTable() Table {
	return Table{
		Services: map[string]Service{
			"shop_db":  {VIP: net.ParseIP("10.43.0.5"), Tasks: []Task{{Addr: net.ParseIP("10.188.1.5"), Node: "n1", Ports: []Port{{Proto: "tcp", Target: 5432, HostPort: 30001}}}}},
			"blog_db":  {VIP: net.ParseIP("10.43.0.6")},
			"shop_web": {Tasks: []Task{{Addr: net.ParseIP("10.188.1.9")}}},
			"db":       {VIP: net.ParseIP("10.43.0.7")}, // a service of no stack, named like a stack's short name
		},
		Nodes:  map[string]net.IP{"n1": net.ParseIP("127.88.0.1")},
		Scopes: map[netip.Addr]string{netip.MustParseAddr("10.188.1.9"): "shop_", netip.MustParseAddr("10.188.1.20"): "blog_"},
	}
}

// TestScopedNames: a caller in a scope gets its scope's service for a short
// name, bare or zoned, A or SRV, plain or tasks.; others get the table as it is.
func TestScopedNames(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0", Logger: testLogger(t)})
	s.SetTable(scopeTable())
	shop, blog, other := netip.MustParseAddr("10.188.1.9"), netip.MustParseAddr("10.188.1.20"), netip.MustParseAddr("10.188.1.99")
	for _, tc := range []struct {
		name  string
		src   netip.Addr
		q     string
		qtype uint16
		want  []string
		rcode int
	}{
		{"short name in the caller's stack", shop, "db.", dns.TypeA, []string{"A 10.43.0.5"}, dns.RcodeSuccess},
		{"zoned short name", shop, "db.swarmlet.", dns.TypeA, []string{"A 10.43.0.5"}, dns.RcodeSuccess},
		{"tasks of a short name", shop, "tasks.db.", dns.TypeA, []string{"A 10.188.1.5"}, dns.RcodeSuccess},
		{"zoned tasks", shop, "tasks.db.swarmlet.", dns.TypeA, []string{"A 10.188.1.5"}, dns.RcodeSuccess},
		{"SRV of a short name", shop, "db.", dns.TypeSRV, []string{"SRV 0 10 30001 n1.nodes.swarmlet."}, dns.RcodeSuccess},
		{"another stack's caller gets its own db", blog, "db.", dns.TypeA, []string{"A 10.43.0.6"}, dns.RcodeSuccess},
		{"full names still resolve in a scope", shop, "blog_db.", dns.TypeA, []string{"A 10.43.0.6"}, dns.RcodeSuccess},
		{"a name the scope lacks falls back to the table", blog, "shop_web.", dns.TypeA, []string{"A 10.188.1.9"}, dns.RcodeSuccess},
		{"a short name the scope lacks", blog, "tasks.web.swarmlet.", dns.TypeA, nil, dns.RcodeNameError},
		{"no scope: the plain service", other, "db.", dns.TypeA, []string{"A 10.43.0.7"}, dns.RcodeSuccess},
		{"no source: the plain service", netip.Addr{}, "db.", dns.TypeA, []string{"A 10.43.0.7"}, dns.RcodeSuccess},
		{"no scope: short names are unknown in the zone", other, "web.swarmlet.", dns.TypeA, nil, dns.RcodeNameError},
		{"node names are not scoped", shop, "n1.nodes.swarmlet.", dns.TypeA, []string{"A 127.88.0.1"}, dns.RcodeSuccess},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion(tc.q, tc.qtype)
			r := s.handleFor(m, true, false, tc.src)
			if r.Rcode != tc.rcode || !slices.Equal(rdata(r.Answer), tc.want) {
				t.Fatalf("rcode %s answer %q, want %s %q", dns.RcodeToString[r.Rcode], rdata(r.Answer), dns.RcodeToString[tc.rcode], tc.want)
			}
		})
	}
	// A bare short name with no scope is not ours: it goes upstream (or is
	// refused to a client that may not recurse), as any search-domain lookup.
	m := new(dns.Msg)
	m.SetQuestion("web.", dns.TypeA)
	if r := s.handleFor(m, true, false, other); r.Rcode != dns.RcodeRefused {
		t.Fatalf("bare unknown name from no scope: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestScopedHelpers(t *testing.T) {
	for _, tc := range []struct{ rel, prefix, want string }{
		{"db", "p_", "p_db"}, {"tasks.db", "p_", "tasks.p_db"}, {"db", "", ""},
		{"n1.nodes", "p_", ""}, {"tasks.", "p_", ""}, {"tasks.a.b", "p_", ""},
	} {
		if got := scoped(tc.rel, tc.prefix); got != tc.want {
			t.Errorf("scoped(%q, %q) = %q, want %q", tc.rel, tc.prefix, got, tc.want)
		}
	}
	got := buildScopes(Table{Scopes: map[netip.Addr]string{
		netip.MustParseAddr("::ffff:10.0.0.1"): "Shop_", netip.MustParseAddr("10.0.0.2"): "bad.prefix", {}: "x_",
	}})
	if len(got) != 1 || got[netip.MustParseAddr("10.0.0.1")] != "shop_" {
		t.Fatalf("%v", got)
	}
}

// TestScopedOverTheWire: the scope is the packet's source address, over UDP
// and TCP.
func TestScopedOverTheWire(t *testing.T) {
	shop, other := "127.88.250.9", "127.88.250.10"
	table := scopeTable()
	table.Scopes = map[netip.Addr]string{netip.MustParseAddr(shop): "shop_"}
	s := startServer(t, Config{}, table)
	for _, network := range []string{"udp", "tcp"} {
		for src, want := range map[string]string{shop: "A 10.43.0.5", other: "A 10.43.0.7"} {
			m := new(dns.Msg)
			m.SetQuestion("db.swarmlet.", dns.TypeA)
			var local net.Addr = &net.UDPAddr{IP: net.ParseIP(src)}
			if network == "tcp" {
				local = &net.TCPAddr{IP: net.ParseIP(src)}
			}
			c := &dns.Client{Net: network, Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: local}}
			r, _, err := c.Exchange(m, s.Addr())
			if err != nil {
				t.Fatalf("%s from %s: %v", network, src, err)
			}
			if got := rdata(r.Answer); !slices.Equal(got, []string{want}) {
				t.Fatalf("%s from %s: %q, want %s", network, src, got, want)
			}
		}
	}
}
