package dnsdisco

import (
	"bytes"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// fuzzQueries are seeds built in code, beside the committed corpus in
// testdata/fuzz/FuzzServeDNS: one per kind of name the server treats apart.
func fuzzQueries() [][]byte {
	var seeds [][]byte
	add := func(name string, qtype uint16, edns uint16) {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		if edns > 0 {
			m.SetEdns0(edns, true)
		}
		b, err := m.Pack()
		if err != nil {
			panic(err)
		}
		seeds = append(seeds, b)
	}
	add("web.", dns.TypeA, 0)
	add("tasks.web.swarmlet.", dns.TypeSRV, 1232)
	add("big.", dns.TypeA, 0)
	add("n1.nodes.swarmlet.", dns.TypeAAAA, 0)
	add("swarmlet.", dns.TypeNS, 4096)
	add("nope.swarmlet.", dns.TypeMX, 0)
	add("example.org.", dns.TypeA, 0)
	return seeds
}

// FuzzServeDNS feeds raw bytes through unpack and the whole query path, on
// both transports. The server has no upstreams, so nothing leaves the
// process. Whatever comes in, the reply must pack and fit the transport.
func FuzzServeDNS(f *testing.F) {
	for _, b := range fuzzQueries() {
		f.Add(b)
	}
	tbl := testTable()
	for name, svc := range bigTable(100).Services {
		tbl.Services[name] = svc
	}
	s := New(Config{Addr: "127.0.0.1:53"})
	s.SetTable(tbl)

	f.Fuzz(func(t *testing.T, raw []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(raw); err != nil {
			return
		}
		for _, udp := range []bool{true, false} {
			resp := s.handle(req, udp)
			if resp == nil {
				continue
			}
			b, err := resp.Pack()
			if err != nil {
				t.Fatalf("udp=%v: reply does not pack: %v\nrequest:\n%v\nreply:\n%v", udp, err, req, resp)
			}
			limit := dns.MaxMsgSize
			if udp {
				limit = dns.MinMsgSize
				if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > limit {
					limit = int(opt.UDPSize())
				}
			}
			if len(b) > limit {
				t.Fatalf("udp=%v: reply is %d bytes, limit %d", udp, len(b), limit)
			}
			if resp.Id != req.Id {
				t.Fatalf("reply id %d, request id %d", resp.Id, req.Id)
			}
		}
	})
}

// FuzzFastPath: whatever the fast path answers, the generic path answers
// with the same bytes (shuffled records sorted; of a truncated answer, the
// same number). The fast path may leave anything to the generic path.
func FuzzFastPath(f *testing.F) {
	for _, b := range fuzzQueries() {
		f.Add(b, false)
	}
	s := New(Config{Addr: "127.0.0.1:53", Upstreams: []string{"192.0.2.53:53"}})
	s.SetTable(fastTable())

	f.Fuzz(func(t *testing.T, raw []byte, recurse bool) {
		fast, _, ok := s.answerFast(s.table.Load(), raw, nil, func() bool { return recurse })
		if !ok {
			return
		}
		slow, _ := slowReply(t, s, raw, recurse)
		if slow == nil {
			t.Fatalf("fast path answered what the generic path drops: % x", raw)
		}
		fast = slices.Clone(fast)
		fr, sr := sortAnswers(t, fast), sortAnswers(t, slow)
		if fast[2]&0x02 != 0 && len(fr) == len(sr) {
			start, rrLen, n := answerSection(t, fast)
			copy(fast[start:], slow[start:start+n*rrLen])
		}
		if !bytes.Equal(fast, slow) {
			t.Fatalf("query % x\nfast    % x\ngeneric % x", raw, fast, slow)
		}
	})
}
