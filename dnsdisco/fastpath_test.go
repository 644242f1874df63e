package dnsdisco

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// fastTable is testTable with a service too big for one UDP answer.
func fastTable() Table {
	tbl := testTable()
	for name, svc := range bigTable(60).Services {
		tbl.Services[name] = svc
	}
	for id, ip := range bigTable(60).Nodes {
		tbl.Nodes[id] = ip
	}
	return tbl
}

type fastCase struct {
	name  string
	qname string
	qtype uint16
	edit  func(m *dns.Msg) // changes to the query, after SetQuestion
	raw   func(b []byte) []byte
	fast  bool // the fast path answers it (else it must leave it)
}

func withOpt(size uint16, do bool) func(m *dns.Msg) {
	return func(m *dns.Msg) { m.SetEdns0(size, do) }
}

func fastCases() []fastCase {
	deep := strings.Repeat("a.", 16) + "web.swarmlet."
	deeper := strings.Repeat("a.", 30) + "web.swarmlet."
	return []fastCase{
		{name: "vip", qname: "web.swarmlet.", qtype: dns.TypeA, fast: true},
		{name: "vip bare", qname: "web.", qtype: dns.TypeA, fast: true},
		{name: "vip mixed case", qname: "WeB.SwArMlEt.", qtype: dns.TypeA, fast: true},
		{name: "tasks", qname: "tasks.web.swarmlet.", qtype: dns.TypeA, fast: true},
		{name: "tasks bare upper", qname: "TASKS.WEB.", qtype: dns.TypeA, fast: true},
		{name: "dnsrr a", qname: "rr.swarmlet.", qtype: dns.TypeA, fast: true},
		{name: "dnsrr aaaa", qname: "rr.", qtype: dns.TypeAAAA, fast: true},
		{name: "v6 vip", qname: "six.swarmlet.", qtype: dns.TypeAAAA, fast: true},
		{name: "node", qname: "n1.nodes.swarmlet.", qtype: dns.TypeA, fast: true},
		{name: "node v6 upper", qname: "N2.NODES.swarmlet.", qtype: dns.TypeAAAA, fast: true},
		{name: "nodata aaaa", qname: "web.swarmlet.", qtype: dns.TypeAAAA, fast: true},
		{name: "nodata aaaa case", qname: "Web.SWARMLET.", qtype: dns.TypeAAAA, fast: true},
		{name: "nodata mx", qname: "web.", qtype: dns.TypeMX, fast: true},
		{name: "nodata unknown type", qname: "tasks.web.swarmlet.", qtype: 65280, fast: true},
		{name: "nodata empty service", qname: "empty.swarmlet.", qtype: dns.TypeA, fast: true},
		{name: "nodata node", qname: "n2.nodes.swarmlet.", qtype: dns.TypeA, fast: true},
		{name: "nxdomain", qname: "nope.swarmlet.", qtype: dns.TypeA, fast: true},
		{name: "nxdomain upper zone", qname: "nope.SWARMLET.", qtype: dns.TypeA, fast: true},
		{name: "nxdomain mixed", qname: "NoPe.SwarmLet.", qtype: dns.TypeTXT, fast: true},
		{name: "nxdomain tasks bare", qname: "tasks.nope.", qtype: dns.TypeA, fast: true},
		{name: "nxdomain under dns label", qname: "x.dns.swarmlet.", qtype: dns.TypeA, fast: true},
		{name: "nxdomain srv", qname: "nope.swarmlet.", qtype: dns.TypeSRV, fast: true},
		{name: "nxdomain deep", qname: deep, qtype: dns.TypeA, fast: true},
		{name: "nxdomain hyphen underscore", qname: "a-b_c.swarmlet.", qtype: dns.TypeA, fast: true},

		{name: "edns 4096", qname: "tasks.web.swarmlet.", qtype: dns.TypeA, edit: withOpt(4096, false), fast: true},
		{name: "edns do bit", qname: "web.swarmlet.", qtype: dns.TypeA, edit: withOpt(1232, true), fast: true},
		{name: "edns below minimum", qname: "big.", qtype: dns.TypeA, edit: withOpt(100, false), fast: true},
		{name: "edns nxdomain", qname: "nope.swarmlet.", qtype: dns.TypeA, edit: withOpt(1232, false), fast: true},
		{name: "edns big fits", qname: "tasks.big.swarmlet.", qtype: dns.TypeA, edit: withOpt(4096, false), fast: true},
		{name: "truncated", qname: "big.", qtype: dns.TypeA, fast: true},
		{name: "truncated edns", qname: "tasks.BIG.swarmlet.", qtype: dns.TypeA, edit: withOpt(700, false), fast: true},
		{name: "no rd", qname: "web.", qtype: dns.TypeA, edit: func(m *dns.Msg) { m.RecursionDesired = false }, fast: true},
		{name: "cd and ad", qname: "web.", qtype: dns.TypeA, edit: func(m *dns.Msg) { m.CheckingDisabled, m.AuthenticatedData = true, true }, fast: true},
		{name: "z bit", qname: "web.", qtype: dns.TypeA, edit: func(m *dns.Msg) { m.Zero = true }, fast: true},

		// Left to the generic path.
		{name: "srv", qname: "web.swarmlet.", qtype: dns.TypeSRV},
		{name: "any", qname: "rr.swarmlet.", qtype: dns.TypeANY},
		{name: "apex", qname: "swarmlet.", qtype: dns.TypeSOA},
		{name: "apex a", qname: "SWARMLET.", qtype: dns.TypeA},
		{name: "own name", qname: "ns.dns.swarmlet.", qtype: dns.TypeA},
		{name: "outside", qname: "example.org.", qtype: dns.TypeA},
		{name: "bare unknown", qname: "printer.", qtype: dns.TypeA},
		{name: "service under other zone", qname: "web.example.org.", qtype: dns.TypeA},
		{name: "root", qname: ".", qtype: dns.TypeNS},
		{name: "chaos", qname: "web.swarmlet.", qtype: dns.TypeTXT, edit: func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }},
		{name: "class any", qname: "web.swarmlet.", qtype: dns.TypeA, edit: func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassANY }},
		{name: "escaped dot", qname: `web\.swarmlet.`, qtype: dns.TypeA},
		{name: "odd byte", qname: `w\001b.swarmlet.`, qtype: dns.TypeA},
		{name: "edns version 1", qname: "web.", qtype: dns.TypeA, edit: func(m *dns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) }},
		{name: "edns option", qname: "web.", qtype: dns.TypeA, edit: func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}},
		{name: "notify", qname: "web.", qtype: dns.TypeSOA, edit: func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }},
		{name: "response", qname: "web.", qtype: dns.TypeA, edit: func(m *dns.Msg) { m.Response = true }},
		{name: "two questions", qname: "web.", qtype: dns.TypeA, edit: func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }},
		{name: "answer in query", qname: "web.", qtype: dns.TypeA, edit: func(m *dns.Msg) {
			rr, _ := dns.NewRR("web. 5 IN A 192.0.2.1")
			m.Answer = []dns.RR{rr}
		}},
		{name: "too many labels", qname: deeper, qtype: dns.TypeA},
		{name: "trailing bytes", qname: "web.", qtype: dns.TypeA, raw: func(b []byte) []byte { return append(b, 0) }},
		{name: "cut short", qname: "web.", qtype: dns.TypeA, raw: func(b []byte) []byte { return b[:len(b)-2] }},
		{name: "pointer name", qname: "web.", qtype: dns.TypeA, raw: func(b []byte) []byte {
			return append(append(b[:12:12], 0xC0, 12), b[len(b)-4:]...)
		}},
	}
}

func (tc fastCase) query(t *testing.T) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(tc.qname, tc.qtype)
	m.Id = 0xBEEF
	if tc.edit != nil {
		tc.edit(m)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("pack query: %v", err)
	}
	if tc.raw != nil {
		b = tc.raw(b)
	}
	return b
}

// slowReply is what the generic path sends for raw: the miekg server's
// unpack, then handleFor, then the writer's pack. nil when it sends nothing
// or the request does not unpack (the fast path must leave those alone).
func slowReply(t *testing.T, s *Server, raw []byte, recurse bool) ([]byte, *dns.Msg) {
	req := new(dns.Msg)
	if err := req.Unpack(raw); err != nil {
		return nil, nil
	}
	resp := s.handleFor(req, true, recurse, netip.Addr{})
	if resp == nil {
		return nil, nil
	}
	b, err := resp.Pack()
	if err != nil {
		t.Fatalf("pack reply: %v", err)
	}
	return b, req
}

// answerSection returns the answer records of a reply whose records all have
// an owner pointer and a fixed length, as the fast path writes them.
func answerSection(t *testing.T, b []byte) (start, rrLen, n int) {
	t.Helper()
	n = int(binary.BigEndian.Uint16(b[6:]))
	start = 12
	for b[start] != 0 {
		start += 1 + int(b[start])
	}
	start += 5
	if n == 0 {
		return start, 0, 0
	}
	rrLen = 12 + int(binary.BigEndian.Uint16(b[start+10:]))
	return start, rrLen, n
}

// sortAnswers sorts the answer records of b in place, so replies whose only
// difference is the shuffle compare equal.
func sortAnswers(t *testing.T, b []byte) [][]byte {
	start, rrLen, n := answerSection(t, b)
	var rrs [][]byte
	for i := range n {
		rrs = append(rrs, slices.Clone(b[start+i*rrLen:start+(i+1)*rrLen]))
	}
	slices.SortFunc(rrs, bytes.Compare)
	for i, rr := range rrs {
		copy(b[start+i*rrLen:], rr)
	}
	return rrs
}

// TestFastPathSameAsGeneric: for every query the fast path answers, its
// reply is the generic path's byte for byte, but for the order of the
// shuffled records (and, when truncated, which of them made it); every
// query it does not take, the generic path gets.
func TestFastPathSameAsGeneric(t *testing.T) {
	for _, cfg := range []struct {
		name      string
		upstreams []string
		recurse   bool
	}{
		{name: "no upstreams"},
		{name: "upstreams, client may recurse", upstreams: []string{"192.0.2.53:53"}, recurse: true},
		{name: "upstreams, client may not recurse", upstreams: []string{"192.0.2.53:53"}},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			// Never started: nothing is sent, the upstream is never asked.
			s := New(Config{Addr: "127.0.0.1:53", Upstreams: cfg.upstreams, TTL: 7, Logger: testLogger(t)})
			s.SetTable(fastTable())
			for _, tc := range fastCases() {
				t.Run(tc.name, func(t *testing.T) {
					raw := tc.query(t)
					asked := false
					fast, rep, ok := s.answerFast(s.table.Load(), raw, nil, func() bool { asked = true; return cfg.recurse })
					if ok != tc.fast {
						t.Fatalf("fast path took it: %v, want %v", ok, tc.fast)
					}
					if !ok {
						return
					}
					if asked != (len(cfg.upstreams) > 0) {
						t.Errorf("recursion asked: %v with upstreams %v", asked, cfg.upstreams)
					}
					slow, req := slowReply(t, s, raw, cfg.recurse)
					if slow == nil {
						t.Fatal("the generic path sends nothing")
					}
					fast = slices.Clone(fast)
					fastRRs, slowRRs := sortAnswers(t, fast), sortAnswers(t, slow)
					if fast[2]&0x02 != 0 {
						// Truncated: both keep as many records, from the
						// same set, but maybe not the same ones.
						if len(fastRRs) != len(slowRRs) {
							t.Fatalf("truncated to %d records, generic path %d", len(fastRRs), len(slowRRs))
						}
						checkSubset(t, s, req, fastRRs)
						start, rrLen, n := answerSection(t, fast)
						copy(fast[start:], slow[start:start+n*rrLen])
					}
					if !bytes.Equal(fast, slow) {
						fm, sm := new(dns.Msg), new(dns.Msg)
						_ = fm.Unpack(fast)
						_ = sm.Unpack(slow)
						t.Fatalf("fast path reply differs\nfast % x\n%v\ngeneric % x\n%v", fast, fm, slow, sm)
					}
					var kinds []string
					s.cfg.Observe = func(qtype, kind string) { kinds = append(kinds, qtype+" "+kind) }
					sm := new(dns.Msg)
					_ = sm.Unpack(slow)
					s.observe(req, sm, netip.Addr{})
					s.cfg.Observe = nil
					if got := qtypeLabel(rep.qtype) + " " + rep.kind; !slices.Equal(kinds, []string{got}) {
						t.Errorf("observed %q, generic path %q", got, kinds)
					}
				})
			}
		})
	}
}

// checkSubset: the records of a truncated answer are distinct records of the
// full answer.
func checkSubset(t *testing.T, s *Server, req *dns.Msg, rrs [][]byte) {
	t.Helper()
	full := s.handleFor(req, false, true, netip.Addr{}) // TCP: nothing cut
	b, err := full.Pack()
	if err != nil {
		t.Fatal(err)
	}
	all := sortAnswers(t, b)
	for i, rr := range rrs {
		if i > 0 && bytes.Equal(rr, rrs[i-1]) {
			t.Errorf("record % x twice", rr)
		}
		if _, found := slices.BinarySearchFunc(all, rr, bytes.Compare); !found {
			t.Errorf("record % x not in the full answer", rr)
		}
	}
}

// TestFastPathShuffles: truncated answers are drawn from all the records,
// not always the same first ones, and full answers come in varying order.
func TestFastPathShuffles(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:53"})
	s.SetTable(fastTable())
	for _, tc := range []struct {
		qname string
		seen  int // distinct first records wanted in 50 draws
	}{{"tasks.big.", 3}, {"tasks.web.", 2}} {
		m := new(dns.Msg)
		m.SetQuestion(tc.qname, dns.TypeA)
		raw, _ := m.Pack()
		first := map[string]bool{}
		for range 50 {
			b, _, ok := s.answerFast(s.table.Load(), raw, nil, func() bool { return true })
			if !ok {
				t.Fatalf("%s: not on the fast path", tc.qname)
			}
			start, rrLen, _ := answerSection(t, b)
			first[string(b[start:start+rrLen])] = true
		}
		if len(first) < tc.seen {
			t.Errorf("%s: %d distinct first records in 50 answers, want at least %d", tc.qname, len(first), tc.seen)
		}
	}
}

// TestFastPathTableSwap: the fast path answers from the table of the
// moment, serial included.
func TestFastPathTableSwap(t *testing.T) {
	s := New(Config{Addr: "127.0.0.1:53"})
	s.SetTable(fastTable())
	m := new(dns.Msg)
	m.SetQuestion("gone.swarmlet.", dns.TypeA)
	raw, _ := m.Pack()
	before, _, _ := s.answerFast(s.table.Load(), raw, nil, func() bool { return true })
	before = slices.Clone(before)
	s.SetTable(Table{Services: map[string]Service{"gone": {VIP: netip.MustParseAddr("192.0.2.99").AsSlice()}}})
	after, rep, ok := s.answerFast(s.table.Load(), raw, nil, func() bool { return true })
	if !ok || rep.kind != "answer" || binary.BigEndian.Uint16(after[6:]) != 1 {
		t.Fatalf("after the swap: %v %v % x", ok, rep, after)
	}
	if before[3]&0xF != dns.RcodeNameError {
		t.Fatalf("before the swap: rcode %d", before[3]&0xF)
	}
}

// BenchmarkFastPath is answerFast alone, beside BenchmarkServeDNS: the
// query path without sockets.
func BenchmarkFastPath(b *testing.B) {
	s := New(Config{Addr: "127.0.0.1:53", Observe: func(string, string) {}})
	s.SetTable(benchTable())
	var queries [][]byte
	for _, q := range benchMix {
		if q.qtype == dns.TypeSRV {
			continue // generic path
		}
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		raw, _ := m.Pack()
		queries = append(queries, raw)
	}
	out := make([]byte, 0, 1024)
	recurse := func() bool { return true }
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		resp, _, ok := s.answerFast(s.table.Load(), queries[i%len(queries)], out, recurse)
		if !ok {
			b.Fatalf("query %d not on the fast path", i%len(queries))
		}
		out = resp[:0]
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}
