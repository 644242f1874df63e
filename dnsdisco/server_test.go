package dnsdisco

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The addresses below are only record data (documentation ranges); no test
// sends a packet to them.
func testTable() Table {
	return Table{
		Services: map[string]Service{
			"web": {
				VIP: net.ParseIP("192.0.2.10"),
				Tasks: []Task{
					{Addr: net.ParseIP("198.51.100.1"), Node: "n1", Ports: []Port{{Proto: "tcp", Target: 80, HostPort: 30080}}},
					{Addr: net.ParseIP("198.51.100.2"), Node: "N2", Ports: []Port{{Proto: "tcp", Target: 80, HostPort: 30081}, {Proto: "udp", Target: 53, HostPort: 30053}}},
				},
			},
			"rr": {
				Tasks: []Task{
					{Addr: net.ParseIP("198.51.100.11"), Node: "n1"},
					{Addr: net.ParseIP("198.51.100.12"), Node: "n1"},
					{Addr: net.ParseIP("2001:db8::12"), Node: "n2"},
					// Process-engine tasks share their node's address.
					{Addr: net.ParseIP("198.51.100.12"), Node: "n1", Ports: []Port{{Proto: "tcp", Target: 8080, HostPort: 31000}}},
				},
			},
			"empty": {},
			"six":   {VIP: net.ParseIP("2001:db8::6")},
			"lost": {Tasks: []Task{
				{Addr: net.ParseIP("198.51.100.30"), Node: "gone", Ports: []Port{{Proto: "tcp", Target: 80, HostPort: 30090}}},
			}},
		},
		Nodes: map[string]net.IP{
			"n1": net.ParseIP("192.0.2.101"),
			"n2": net.ParseIP("2001:db8::102"),
		},
	}
}

func TestAnswers(t *testing.T) {
	s := startServer(t, Config{}, testTable())
	soa := func(m *dns.Msg) bool { return len(m.Ns) == 1 && m.Ns[0].Header().Rrtype == dns.TypeSOA }

	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer []string
		extra  []string
		soa    bool // SOA expected in the authority section
	}{
		{name: "vip bare", qname: "web.", qtype: dns.TypeA, answer: []string{"A 192.0.2.10"}},
		{name: "vip zone", qname: "web.swarmlet.", qtype: dns.TypeA, answer: []string{"A 192.0.2.10"}},
		{name: "vip mixed case", qname: "WeB.SwarmLET.", qtype: dns.TypeA, answer: []string{"A 192.0.2.10"}},
		{name: "vip nodata aaaa", qname: "web.", qtype: dns.TypeAAAA, soa: true},
		{name: "vip nodata mx", qname: "web.swarmlet.", qtype: dns.TypeMX, soa: true},
		{name: "v6 vip", qname: "six.swarmlet.", qtype: dns.TypeAAAA, answer: []string{"AAAA 2001:db8::6"}},
		{name: "tasks bare", qname: "tasks.web.", qtype: dns.TypeA, answer: []string{"A 198.51.100.1", "A 198.51.100.2"}},
		{name: "tasks zone upper", qname: "TASKS.WEB.SWARMLET.", qtype: dns.TypeA, answer: []string{"A 198.51.100.1", "A 198.51.100.2"}},
		{name: "dnsrr a dedup", qname: "rr.", qtype: dns.TypeA, answer: []string{"A 198.51.100.11", "A 198.51.100.12"}},
		{name: "dnsrr aaaa", qname: "rr.swarmlet.", qtype: dns.TypeAAAA, answer: []string{"AAAA 2001:db8::12"}},
		{name: "dnsrr any", qname: "rr.swarmlet.", qtype: dns.TypeANY, answer: []string{"A 198.51.100.11", "A 198.51.100.12", "AAAA 2001:db8::12"}},
		{name: "tasks dnsrr", qname: "tasks.rr.swarmlet.", qtype: dns.TypeA, answer: []string{"A 198.51.100.11", "A 198.51.100.12"}},
		{
			name: "srv bare", qname: "web.", qtype: dns.TypeSRV,
			answer: []string{"SRV 0 10 30053 n2.nodes.swarmlet.", "SRV 0 10 30080 n1.nodes.swarmlet.", "SRV 0 10 30081 n2.nodes.swarmlet."},
			extra:  []string{"A 192.0.2.101", "AAAA 2001:db8::102"},
		},
		{
			name: "srv tasks zone", qname: "tasks.web.swarmlet.", qtype: dns.TypeSRV,
			answer: []string{"SRV 0 10 30053 n2.nodes.swarmlet.", "SRV 0 10 30080 n1.nodes.swarmlet.", "SRV 0 10 30081 n2.nodes.swarmlet."},
			extra:  []string{"A 192.0.2.101", "AAAA 2001:db8::102"},
		},
		{
			name: "srv dnsrr only published", qname: "rr.swarmlet.", qtype: dns.TypeSRV,
			answer: []string{"SRV 0 10 31000 n1.nodes.swarmlet."}, extra: []string{"A 192.0.2.101"},
		},
		{name: "srv unknown node skipped", qname: "lost.swarmlet.", qtype: dns.TypeSRV, soa: true},
		{name: "srv no ports", qname: "six.", qtype: dns.TypeSRV, soa: true},
		{name: "node a", qname: "n1.nodes.swarmlet.", qtype: dns.TypeA, answer: []string{"A 192.0.2.101"}},
		{name: "node upper case id", qname: "N2.Nodes.Swarmlet.", qtype: dns.TypeAAAA, answer: []string{"AAAA 2001:db8::102"}},
		{name: "node nodata", qname: "n2.nodes.swarmlet.", qtype: dns.TypeA, soa: true},
		{name: "empty service nodata", qname: "empty.", qtype: dns.TypeA, soa: true},
		{name: "empty tasks nodata", qname: "tasks.empty.swarmlet.", qtype: dns.TypeA, soa: true},
		{name: "apex soa", qname: "swarmlet.", qtype: dns.TypeSOA, answer: []string{"SOA ns.dns.swarmlet. hostmaster.swarmlet. 2 3600 600 86400 5"}},
		{name: "apex ns", qname: "SWARMLET.", qtype: dns.TypeNS, answer: []string{"NS ns.dns.swarmlet."}, extra: []string{"A 127.0.0.1"}},
		{name: "apex nodata", qname: "swarmlet.", qtype: dns.TypeA, soa: true},
		{name: "ns glue", qname: "ns.dns.swarmlet.", qtype: dns.TypeA, answer: []string{"A 127.0.0.1"}},
		{name: "unknown in zone", qname: "nope.swarmlet.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "unknown tasks bare", qname: "tasks.nope.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "unknown tasks zone", qname: "tasks.nope.swarmlet.", qtype: dns.TypeSRV, rcode: dns.RcodeNameError, soa: true},
		{name: "unknown node", qname: "n9.nodes.swarmlet.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "deep unknown in zone", qname: "a.b.web.swarmlet.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		// With no upstream configured, names that are not ours fail.
		{name: "bare unknown forwarded", qname: "printer.", qtype: dns.TypeA, rcode: dns.RcodeServerFailure},
		{name: "outside forwarded", qname: "example.org.", qtype: dns.TypeA, rcode: dns.RcodeServerFailure},
		{name: "service name under other zone", qname: "web.example.org.", qtype: dns.TypeA, rcode: dns.RcodeServerFailure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, network := range []string{"udp", "tcp"} {
				r := query(t, network, s.Addr(), tc.qname, tc.qtype)
				if r.Rcode != tc.rcode {
					t.Fatalf("%s: rcode %s, want %s", network, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if got := rdata(r.Answer); !slices.Equal(got, tc.answer) {
					t.Errorf("%s: answer %q, want %q", network, got, tc.answer)
				}
				if got := rdata(r.Extra); !slices.Equal(got, tc.extra) {
					t.Errorf("%s: extra %q, want %q", network, got, tc.extra)
				}
				if soa(r) != tc.soa {
					t.Errorf("%s: authority %v, want SOA: %v", network, r.Ns, tc.soa)
				}
				for _, rr := range r.Answer {
					// Owner names echo the question, case included (0x20).
					if rr.Header().Name != tc.qname {
						t.Errorf("%s: owner %q, want %q", network, rr.Header().Name, tc.qname)
					}
				}
				ours := tc.rcode != dns.RcodeServerFailure
				if r.Authoritative != ours {
					t.Errorf("%s: AA %v, want %v", network, r.Authoritative, ours)
				}
				if r.RecursionAvailable {
					t.Errorf("%s: RA set without upstreams", network)
				}
				if r.Truncated {
					t.Errorf("%s: truncated", network)
				}
			}
		})
	}
}

func TestZoneAndTTL(t *testing.T) {
	s := startServer(t, Config{Zone: "Cluster.Internal", TTL: 30}, testTable())
	r := query(t, "udp", s.Addr(), "web.cluster.internal.", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 30 {
		t.Fatalf("answer %v, want one record with TTL 30", r.Answer)
	}
	r = query(t, "udp", s.Addr(), "tasks.web.cluster.internal.", dns.TypeSRV)
	for _, rr := range r.Answer {
		if srv := rr.(*dns.SRV); !strings.HasSuffix(srv.Target, ".nodes.cluster.internal.") {
			t.Errorf("SRV target %q not under the zone", srv.Target)
		}
	}
	// The default zone is not ours when another is configured.
	if r := query(t, "udp", s.Addr(), "web.swarmlet.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("web.swarmlet. rcode %s, want SERVFAIL (forwarded, no upstream)", dns.RcodeToString[r.Rcode])
	}
}

func TestBadZone(t *testing.T) {
	for _, z := range []string{".", "a..b"} {
		s := New(Config{Addr: "127.0.0.1:0", Zone: z})
		if err := s.Start(); err == nil {
			_ = s.Close()
			t.Errorf("zone %q: Start succeeded, want error", z)
		}
	}
}

func bigTable(n int) Table {
	tasks := make([]Task, n)
	for i := range tasks {
		tasks[i] = Task{
			Addr:  net.IPv4(198, 18, byte(i/250), byte(i%250+1)),
			Node:  fmt.Sprintf("node%d", i%7),
			Ports: []Port{{Proto: "tcp", Target: 80, HostPort: 20000 + i}},
		}
	}
	nodes := make(map[string]net.IP)
	for i := range 7 {
		nodes[fmt.Sprintf("node%d", i)] = net.IPv4(192, 0, 2, byte(i+1))
	}
	return Table{Services: map[string]Service{"big": {Tasks: tasks}}, Nodes: nodes}
}

func TestTruncation(t *testing.T) {
	const n = 300
	s := startServer(t, Config{}, bigTable(n))

	tests := []struct {
		name    string
		network string
		qname   string
		qtype   uint16
		opts    []queryOpt
		limit   int  // the response must pack into this many bytes
		trunc   bool // TC expected
		all     int  // records expected when not truncated
	}{
		{name: "udp plain a", network: "udp", qname: "big.", qtype: dns.TypeA, limit: 512, trunc: true},
		{name: "udp edns small a", network: "udp", qname: "big.", qtype: dns.TypeA, opts: []queryOpt{withEDNS(1232)}, limit: 1232, trunc: true},
		{name: "udp edns below minimum", network: "udp", qname: "big.", qtype: dns.TypeA, opts: []queryOpt{withEDNS(100)}, limit: 512, trunc: true},
		{name: "udp edns large a", network: "udp", qname: "big.", qtype: dns.TypeA, opts: []queryOpt{withEDNS(8192)}, limit: 8192, all: n},
		{name: "udp srv", network: "udp", qname: "tasks.big.swarmlet.", qtype: dns.TypeSRV, limit: 512, trunc: true},
		{name: "tcp a", network: "tcp", qname: "big.", qtype: dns.TypeA, limit: dns.MaxMsgSize, all: n},
		{name: "tcp srv", network: "tcp", qname: "tasks.big.swarmlet.", qtype: dns.TypeSRV, limit: dns.MaxMsgSize, all: n},
		{name: "tcp edns small", network: "tcp", qname: "big.", qtype: dns.TypeA, opts: []queryOpt{withEDNS(512)}, limit: dns.MaxMsgSize, all: n},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := query(t, tc.network, s.Addr(), tc.qname, tc.qtype, tc.opts...)
			if r.Rcode != dns.RcodeSuccess {
				t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
			}
			if r.Truncated != tc.trunc {
				t.Fatalf("TC %v, want %v (%d answers)", r.Truncated, tc.trunc, len(r.Answer))
			}
			r.Compress = true
			if l := r.Len(); l > tc.limit {
				t.Errorf("response is %d bytes, limit %d", l, tc.limit)
			}
			if len(tc.opts) > 0 && r.IsEdns0() == nil {
				t.Errorf("no OPT in the reply to an EDNS query")
			}
			if tc.trunc {
				if len(r.Answer) == 0 || len(r.Answer) >= n {
					t.Errorf("truncated answer has %d records", len(r.Answer))
				}
				return
			}
			if len(r.Answer) != tc.all {
				t.Errorf("%d answers, want %d", len(r.Answer), tc.all)
			}
			if tc.qtype == dns.TypeSRV && len(rdata(r.Extra)) != 7 {
				t.Errorf("%d additional records, want the 7 nodes", len(r.Extra))
			}
		})
	}
}

// TestTCPMessageLimit: an answer larger than a DNS message can carry is cut
// to 64 KiB with TC set rather than failing to pack.
func TestTCPMessageLimit(t *testing.T) {
	s := startServer(t, Config{}, bigTable(4200))
	r := query(t, "tcp", s.Addr(), "big.", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || !r.Truncated || len(r.Answer) == 0 {
		t.Fatalf("rcode %s TC %v answers %d, want NOERROR, TC and some answers",
			dns.RcodeToString[r.Rcode], r.Truncated, len(r.Answer))
	}
}

// TestShuffle: the first A record varies, so clients that take the first one
// spread over the tasks.
func TestShuffle(t *testing.T) {
	s := startServer(t, Config{}, bigTable(20))
	first := make(map[string]bool)
	for range 50 {
		r := query(t, "udp", s.Addr(), "tasks.big.", dns.TypeA)
		if len(r.Answer) != 20 {
			t.Fatalf("%d answers, want 20", len(r.Answer))
		}
		first[r.Answer[0].(*dns.A).A.String()] = true
	}
	// 50 draws of 20: the chance of fewer than 3 distinct firsts is ~1e-50.
	if len(first) < 3 {
		t.Errorf("first answer took only %d distinct values in 50 queries", len(first))
	}
}

func TestForwarding(t *testing.T) {
	tests := []struct {
		name      string
		upstreams func(t *testing.T, good *upstream) []string
		qname     string
		rcode     int
		answer    []string
		ra        bool
	}{
		{
			name:      "single upstream",
			upstreams: func(t *testing.T, good *upstream) []string { return []string{good.addr} },
			qname:     "example.org.", answer: []string{"A 203.0.113.7"}, ra: true,
		},
		{
			name:      "bare unknown label goes upstream",
			upstreams: func(t *testing.T, good *upstream) []string { return []string{good.addr} },
			qname:     "printer.", answer: []string{"A 203.0.113.7"}, ra: true,
		},
		{
			name:      "nxdomain passes through",
			upstreams: func(t *testing.T, good *upstream) []string { return []string{good.addr} },
			qname:     "nx.example.org.", rcode: dns.RcodeNameError, ra: true,
		},
		{
			name:      "dead then good",
			upstreams: func(t *testing.T, good *upstream) []string { return []string{deadAddr(t), good.addr} },
			qname:     "example.org.", answer: []string{"A 203.0.113.7"}, ra: true,
		},
		{
			name:      "silent then good",
			upstreams: func(t *testing.T, good *upstream) []string { return []string{silentAddr(t), good.addr} },
			qname:     "example.org.", answer: []string{"A 203.0.113.7"}, ra: true,
		},
		{
			name: "servfail then good",
			upstreams: func(t *testing.T, good *upstream) []string {
				return []string{startUpstream(t, dns.RcodeServerFailure).addr, good.addr}
			},
			qname: "example.org.", answer: []string{"A 203.0.113.7"}, ra: true,
		},
		{
			name:      "all dead",
			upstreams: func(t *testing.T, good *upstream) []string { return []string{deadAddr(t), deadAddr(t)} },
			qname:     "example.org.", rcode: dns.RcodeServerFailure, ra: true,
		},
		{
			name: "all refuse",
			upstreams: func(t *testing.T, good *upstream) []string {
				return []string{startUpstream(t, dns.RcodeRefused).addr}
			},
			qname: "example.org.", rcode: dns.RcodeServerFailure, ra: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			good := startUpstream(t, 0)
			s := startServer(t, Config{Upstreams: tc.upstreams(t, good), ForwardTimeout: 200 * time.Millisecond}, testTable())
			for _, network := range []string{"udp", "tcp"} {
				r := query(t, network, s.Addr(), tc.qname, dns.TypeA)
				if r.Rcode != tc.rcode {
					t.Fatalf("%s: rcode %s, want %s", network, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if got := rdata(r.Answer); !slices.Equal(got, tc.answer) {
					t.Errorf("%s: answer %q, want %q", network, got, tc.answer)
				}
				if r.RecursionAvailable != tc.ra {
					t.Errorf("%s: RA %v, want %v", network, r.RecursionAvailable, tc.ra)
				}
			}
			// Our own names never reach an upstream, and RA says we recurse.
			r := query(t, "udp", s.Addr(), "web.", dns.TypeA)
			if !r.Authoritative || !r.RecursionAvailable {
				t.Errorf("own name: AA %v RA %v, want both", r.Authoritative, r.RecursionAvailable)
			}
			_, names := good.seen()
			if slices.Contains(names, "web.") {
				t.Errorf("own name was forwarded")
			}
		})
	}
}

// TestForwardSameTransport: a UDP query goes upstream over UDP, a TCP one
// over TCP, so a truncated upstream answer reaches the client as it is.
func TestForwardSameTransport(t *testing.T) {
	good := startUpstream(t, 0)
	s := startServer(t, Config{Upstreams: []string{good.addr}}, Table{})
	query(t, "udp", s.Addr(), "a.example.org.", dns.TypeA)
	query(t, "tcp", s.Addr(), "b.example.org.", dns.TypeA)
	nets, names := good.seen()
	if !slices.Equal(nets, []string{"udp", "tcp"}) || !slices.Equal(names, []string{"a.example.org.", "b.example.org."}) {
		t.Errorf("upstream saw %v %v, want udp then tcp", nets, names)
	}
}

func TestSetTableSwap(t *testing.T) {
	s := startServer(t, Config{}, testTable())
	if r := query(t, "udp", s.Addr(), "web.", dns.TypeA); !slices.Equal(rdata(r.Answer), []string{"A 192.0.2.10"}) {
		t.Fatalf("before swap: %v", r.Answer)
	}
	s.SetTable(Table{Services: map[string]Service{"api": {VIP: net.ParseIP("192.0.2.20")}}})
	if r := query(t, "udp", s.Addr(), "api.swarmlet.", dns.TypeA); !slices.Equal(rdata(r.Answer), []string{"A 192.0.2.20"}) {
		t.Errorf("new service after swap: %v", r.Answer)
	}
	if r := query(t, "udp", s.Addr(), "web.swarmlet.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("removed service after swap: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	r := query(t, "udp", s.Addr(), "swarmlet.", dns.TypeSOA)
	if soa, ok := r.Answer[0].(*dns.SOA); !ok || soa.Serial != 3 {
		t.Errorf("SOA %v, want serial 3 after two SetTable calls", r.Answer)
	}
}

// TestSetTableConcurrent swaps tables while queries run; with -race it checks
// that a query sees either table whole.
func TestSetTableConcurrent(t *testing.T) {
	s := startServer(t, Config{}, bigTable(10))
	tables := []Table{bigTable(10), bigTable(20)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				s.SetTable(tables[i%2])
			}
		}
	}()
	for range 200 {
		r := query(t, "udp", s.Addr(), "tasks.big.", dns.TypeA, withEDNS(4096))
		if n := len(r.Answer); n != 10 && n != 20 {
			t.Errorf("%d answers: a half-swapped table", n)
		}
	}
	close(stop)
	wg.Wait()
}

func TestEDNS(t *testing.T) {
	s := startServer(t, Config{}, testTable())
	r := query(t, "udp", s.Addr(), "web.", dns.TypeA, withEDNS(4096))
	if opt := r.IsEdns0(); opt == nil || opt.UDPSize() != ednsSize {
		t.Errorf("OPT %v, want one advertising %d", opt, ednsSize)
	}
	r = query(t, "udp", s.Addr(), "web.", dns.TypeA, func(m *dns.Msg) {
		m.SetEdns0(4096, false)
		m.IsEdns0().SetVersion(1)
	})
	if r.Rcode != dns.RcodeBadVers {
		t.Errorf("EDNS version 1: rcode %s, want BADVERS", dns.RcodeToString[r.Rcode])
	}
	r = query(t, "udp", s.Addr(), "web.", dns.TypeA)
	if r.IsEdns0() != nil {
		t.Errorf("OPT in reply to a query without one")
	}
}

func TestOddRequests(t *testing.T) {
	s := startServer(t, Config{}, testTable())
	tests := []struct {
		name  string
		build func(m *dns.Msg)
		rcode int
	}{
		{name: "notify", build: func(m *dns.Msg) { m.SetQuestion("web.", dns.TypeSOA); m.Opcode = dns.OpcodeNotify }, rcode: dns.RcodeNotImplemented},
		{name: "chaos class own name", build: func(m *dns.Msg) { m.SetQuestion("web.swarmlet.", dns.TypeTXT); m.Question[0].Qclass = dns.ClassCHAOS }, rcode: dns.RcodeRefused},
		{name: "escaped label", build: func(m *dns.Msg) { m.SetQuestion(`web\.swarmlet.`, dns.TypeA) }, rcode: dns.RcodeServerFailure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			tc.build(m)
			c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
			r, _, err := c.Exchange(m, s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
		})
	}
}

// TestGarbage: junk on both transports leaves the server answering.
func TestGarbage(t *testing.T) {
	s := startServer(t, Config{}, testTable())
	junk := [][]byte{
		{},
		{0x00},
		[]byte("hello, world, this is not DNS"),
		{0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x0c}, // compression loop
		{0xab, 0xcd, 0x01, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},             // 65535 questions, none sent
	}
	uc, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	for _, j := range junk {
		if _, err := uc.Write(j); err != nil {
			t.Fatal(err)
		}
		tc, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		framed := append([]byte{byte(len(j) >> 8), byte(len(j))}, j...)
		_, _ = tc.Write(framed)
		_ = tc.Close()
	}
	for _, network := range []string{"udp", "tcp"} {
		if r := query(t, network, s.Addr(), "web.", dns.TypeA); len(r.Answer) != 1 {
			t.Errorf("%s after junk: %v", network, r.Answer)
		}
	}
}

func TestStartClose(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:0"})
	if err := s.Close(); err != nil {
		t.Errorf("close before start: %v", err)
	}
	s = New(Config{Addr: "127.0.0.1:0", Logger: testLogger(t)})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	if strings.HasSuffix(s.Addr(), ":0") {
		t.Errorf("Addr %q still has port 0", s.Addr())
	}
	// The port is taken on both transports while the server runs.
	other := New(Config{Addr: s.Addr()})
	if err := other.Start(); err == nil {
		_ = other.Close()
		t.Error("second server on the same address started")
	}
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
}

// TestSelfUpstreamDropped: an upstream that is the server itself is ignored,
// so a query for an outside name fails at once instead of looping.
func TestSelfUpstreamDropped(t *testing.T) {
	pc, l, err := listenBoth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close()
	_ = l.Close()
	s := startServer(t, Config{Addr: addr, Upstreams: []string{addr}}, Table{})
	if r := query(t, "udp", s.Addr(), "example.org.", dns.TypeA); r.Rcode != dns.RcodeServerFailure || r.RecursionAvailable {
		t.Errorf("rcode %s RA %v, want SERVFAIL without RA", dns.RcodeToString[r.Rcode], r.RecursionAvailable)
	}
}

func TestIsSelf(t *testing.T) {
	tests := []struct {
		upstream, self string
		want           bool
	}{
		{"127.0.0.1:53", "127.0.0.1:53", true},
		{"127.0.0.1:53", "127.0.0.2:53", false},
		{"127.0.0.1:53", "127.0.0.1:5353", false},
		{"127.0.0.53:53", "0.0.0.0:53", true},
		{"[::1]:53", "[::]:53", true},
		{"192.0.2.1:53", "0.0.0.0:53", false}, // not a local address here
		{"bogus", "127.0.0.1:53", false},
		{"127.0.0.1:53", "bogus", false},
	}
	for _, tc := range tests {
		if got := isSelf(tc.upstream, tc.self); got != tc.want {
			t.Errorf("isSelf(%q, %q) = %v, want %v", tc.upstream, tc.self, got, tc.want)
		}
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	conf := `# generated
search example.org
nameserver 127.0.0.1
nameserver 127.0.0.53
nameserver 2001:db8::53
nameserver fe80::1%eth0
nameserver not-an-ip
options ndots:2
`
	path := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("search example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		self    []string
		want    []string
		wantErr bool
	}{
		{name: "all", path: path, want: []string{"127.0.0.1:53", "127.0.0.53:53", "[2001:db8::53]:53", "[fe80::1%eth0]:53"}},
		{name: "skip self", path: path, self: []string{"127.0.0.1:53"}, want: []string{"127.0.0.53:53", "[2001:db8::53]:53", "[fe80::1%eth0]:53"}},
		{name: "self on other port", path: path, self: []string{"127.0.0.1:5353"}, want: []string{"127.0.0.1:53", "127.0.0.53:53", "[2001:db8::53]:53", "[fe80::1%eth0]:53"}},
		{name: "wildcard self", path: path, self: []string{"0.0.0.0:53"}, want: []string{"[2001:db8::53]:53", "[fe80::1%eth0]:53"}},
		{name: "no nameservers", path: empty, want: nil},
		{name: "missing file", path: filepath.Join(dir, "nope"), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UpstreamsFromResolvConf(tc.path, tc.self...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBadNames: names that cannot be DNS labels are skipped, not fatal.
func TestBadNames(t *testing.T) {
	tbl := Table{
		Services: map[string]Service{
			"ok":                    {VIP: net.ParseIP("192.0.2.1")},
			"has.dot":               {VIP: net.ParseIP("192.0.2.2")},
			"has space":             {VIP: net.ParseIP("192.0.2.3")},
			strings.Repeat("x", 64): {VIP: net.ParseIP("192.0.2.4")},
		},
		Nodes: map[string]net.IP{"bad.node": net.ParseIP("192.0.2.9"), "nil": nil},
	}
	ix := buildIndex(tbl, "swarmlet.", 1, 5, testLogger(t))
	var names []string
	for k := range ix.names {
		names = append(names, k)
	}
	slices.Sort(names)
	if want := []string{"ok", "tasks.ok"}; !slices.Equal(names, want) {
		t.Errorf("indexed %q, want %q", names, want)
	}
}
