package dnsdisco

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// ednsSize is the UDP payload size we advertise in our own OPT record: the
// DNS flag day 2020 value, which avoids IP fragmentation on common paths.
const ednsSize = 1232

// ServeDNS answers one request. It implements dns.Handler, so the server can
// also be mounted in another miekg mux.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	src := sourceAddr(w.RemoteAddr())
	resp := s.handleFor(req, udp, s.mayRecurse(w.RemoteAddr()), src)
	if resp == nil {
		return
	}
	s.observe(req, resp, src)
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("write dns response", "remote", w.RemoteAddr().String(), "err", err)
	}
}

// handle computes the response to req, fitted to the transport (udp or tcp).
// It returns nil when nothing should be sent. It is the whole query path
// short of the socket, which is what the fuzz target exercises.
func (s *Server) handle(req *dns.Msg, udp bool) *dns.Msg {
	return s.handleFor(req, udp, true, netip.Addr{})
}

// handleFor is handle for a client at src that may (recurse) or may not have
// names outside the zone forwarded upstream.
func (s *Server) handleFor(req *dns.Msg, udp, recurse bool, src netip.Addr) *dns.Msg {
	if req.Response {
		// Answering a response could start a loop between two servers.
		return nil
	}
	resp := s.answer(req, udp, recurse, src)
	fit(resp, req, udp)
	return resp
}

// answer builds the untruncated response.
func (s *Server) answer(req *dns.Msg, udp, recurse bool, src netip.Addr) *dns.Msg {
	if req.Opcode != dns.OpcodeQuery {
		return errorReply(req, dns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return errorReply(req, dns.RcodeFormatError)
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		// RFC 6891 6.1.3: we speak EDNS version 0 only.
		m := errorReply(req, dns.RcodeBadVers)
		m.SetEdns0(ednsSize, false)
		return m
	}

	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if !dns.IsFqdn(name) {
		return errorReply(req, dns.RcodeFormatError)
	}
	ix := s.table.Load()
	prefix := ix.prefixOf(src)
	rel, ours, apex := s.classify(name, ix, prefix)
	if !ours {
		if !recurse {
			// Not an open resolver: only this node's host and containers
			// may have us resolve the rest of the world for them.
			m := errorReply(req, dns.RcodeRefused)
			m.RecursionAvailable = false
			return m
		}
		return s.forward(req, udp)
	}
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		// Our names exist in class IN only; other classes are not ours to
		// speak for, and forwarding them would leak cluster names.
		return errorReply(req, dns.RcodeRefused)
	}

	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = len(s.upstreams) > 0 && recurse
	if apex {
		s.answerApex(m, q, ix)
		return m
	}
	var e *entry
	if rel == nsLabel {
		e = s.nsGlue.Load()
	} else {
		e = ix.lookup(rel, prefix)
	}
	if e == nil {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soa(ix)}
		return m
	}
	s.answerEntry(m, q, e)
	if len(m.Answer) == 0 {
		// NODATA: the name exists but has no records of this type. The SOA
		// lets resolvers cache the negative answer (RFC 2308).
		m.Ns = []dns.RR{s.soa(ix)}
	}
	return m
}

// classify decides whether name (lower case, fully qualified) is ours and,
// if so, returns its zone-relative form. Bare names are ours only when they
// name a known service (one label) or a task set (tasks.X): other bare
// single labels are hosts' search-domain lookups and go upstream. prefix is
// the caller's scope (scope.go).
func (s *Server) classify(name string, ix *index, prefix string) (rel string, ours, apex bool) {
	if strings.ContainsRune(name, '\\') {
		// Escaped bytes (a literal dot inside a label, say) never occur in
		// our names; such a name is someone else's.
		return "", false, false
	}
	if name == s.zone {
		return "", true, true
	}
	if strings.HasSuffix(name, "."+s.zone) {
		return name[:len(name)-len(s.zone)-1], true, false
	}
	bare := name[:len(name)-1]
	if bare == "" {
		return "", false, false
	}
	if first, rest, found := strings.Cut(bare, "."); found {
		if first == "tasks" && !strings.Contains(rest, ".") {
			return bare, true, false
		}
		return "", false, false
	}
	if ix.lookup(bare, prefix) != nil {
		return bare, true, false
	}
	return "", false, false
}

// answerApex answers for the zone itself: SOA and NS, nothing else.
func (s *Server) answerApex(m *dns.Msg, q dns.Question, ix *index) {
	soa := s.soa(ix)
	soa.Hdr.Name = q.Name
	ns := s.ns()
	ns.Hdr.Name = q.Name
	switch q.Qtype {
	case dns.TypeSOA:
		m.Answer = []dns.RR{soa}
	case dns.TypeNS:
		m.Answer = []dns.RR{ns}
		m.Extra = s.nsGlueRRs()
	case dns.TypeANY:
		m.Answer = []dns.RR{soa, ns}
	default:
		m.Ns = []dns.RR{s.soa(ix)}
	}
}

// answerEntry adds e's records of the asked type to m. The owner name is
// the question's own spelling, so clients that randomise case (0x20) match.
func (s *Server) answerEntry(m *dns.Msg, q dns.Question, e *entry) {
	ttl := s.cfg.TTL
	switch q.Qtype {
	case dns.TypeA:
		m.Answer = shuffledAddrs(q.Name, e.v4, ttl)
	case dns.TypeAAAA:
		m.Answer = shuffledAddrs(q.Name, e.v6, ttl)
	case dns.TypeANY:
		m.Answer = append(shuffledAddrs(q.Name, e.v4, ttl), shuffledAddrs(q.Name, e.v6, ttl)...)
	case dns.TypeSRV:
		if len(e.srv) == 0 {
			return
		}
		ans := make([]dns.RR, len(e.srv))
		for i, r := range e.srv {
			ans[i] = &dns.SRV{
				Hdr:      dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
				Priority: 0, Weight: 10, Port: r.port, Target: r.target,
			}
		}
		rand.Shuffle(len(ans), func(i, j int) { ans[i], ans[j] = ans[j], ans[i] })
		m.Answer = ans
		// The glue RRs are shared by all queries; the packer only reads them.
		m.Extra = append([]dns.RR(nil), e.extra...)
	}
}

// shuffledAddrs returns address records in random order: most clients take
// the first address, so a fixed order would send them all to one task.
func shuffledAddrs(name string, ips []net.IP, ttl uint32) []dns.RR {
	if len(ips) == 0 {
		return nil
	}
	rrs := make([]dns.RR, len(ips))
	for i, ip := range ips {
		rrs[i] = addrRR(name, ip, ttl)
	}
	rand.Shuffle(len(rrs), func(i, j int) { rrs[i], rrs[j] = rrs[j], rrs[i] })
	return rrs
}

func (s *Server) soa(ix *index) *dns.SOA {
	ttl := s.cfg.TTL
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: s.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      nsLabel + "." + s.zone,
		Mbox:    "hostmaster." + s.zone,
		Serial:  ix.serial,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		// Negative answers may be cached as long as positive ones: the
		// table changes at the same pace for both.
		Minttl: ttl,
	}
}

func (s *Server) ns() *dns.NS {
	return &dns.NS{
		Hdr: dns.RR_Header{Name: s.zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: s.cfg.TTL},
		Ns:  nsLabel + "." + s.zone,
	}
}

func (s *Server) nsGlueRRs() []dns.RR {
	e := s.nsGlue.Load()
	var rrs []dns.RR
	for _, ip := range e.v4 {
		rrs = append(rrs, addrRR(nsLabel+"."+s.zone, ip, s.cfg.TTL))
	}
	for _, ip := range e.v6 {
		rrs = append(rrs, addrRR(nsLabel+"."+s.zone, ip, s.cfg.TTL))
	}
	return rrs
}

// errorReply is a reply with rcode and nothing else. It echoes the question
// only when there is exactly one, as a client expects.
func errorReply(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	if len(req.Question) == 1 {
		m.Question = []dns.Question{req.Question[0]}
	}
	m.Rcode = rcode
	return m
}

// fit makes resp fit the transport: an OPT record when the client sent one,
// and no more bytes than the client can take over UDP (TC set if records had
// to go, so it retries over TCP). TCP is bounded by the 64 KiB message limit.
func fit(resp, req *dns.Msg, udp bool) {
	size := dns.MaxMsgSize
	opt := req.IsEdns0()
	if udp {
		size = dns.MinMsgSize
		if opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
	}
	if opt != nil && resp.IsEdns0() == nil {
		resp.SetEdns0(ednsSize, false)
	}
	if opt == nil && resp.Rcode > 0xF {
		// An extended rcode cannot be sent without an OPT record.
		resp.Rcode = dns.RcodeServerFailure
	}
	resp.Truncate(size)
	// Truncate turns compression off when the message fits without it;
	// compressed answers are smaller and cheaper for everyone to carry.
	resp.Compress = true
}
