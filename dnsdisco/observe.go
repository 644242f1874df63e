package dnsdisco

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// observe tells Config.Observe of one query: its type, and what kind of answer
// it got: answer, nodata, nxdomain, forwarded (a name outside the zone), or the
// error code. Both are from small fixed sets, fit for metric labels.
func (s *Server) observe(req, resp *dns.Msg, src netip.Addr) {
	if s.cfg.Observe == nil || resp == nil {
		return
	}
	qtype := "none"
	kind := strings.ToLower(dns.RcodeToString[resp.Rcode])
	if len(req.Question) == 1 {
		q := req.Question[0]
		qtype = qtypeLabel(q.Qtype)
		ix := s.table.Load()
		if _, ours, _ := s.classify(strings.ToLower(q.Name), ix, ix.prefixOf(src)); !ours && dns.IsFqdn(q.Name) {
			kind = "forwarded"
		}
	}
	switch {
	case kind == "forwarded":
	case resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0:
		kind = "answer"
	case resp.Rcode == dns.RcodeSuccess:
		kind = "nodata"
	case kind == "":
		kind = "other"
	}
	s.cfg.Observe(qtype, kind)
}

// qtypeLabel names the query types worth a metric label of their own.
func qtypeLabel(t uint16) string {
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeANY, dns.TypePTR, dns.TypeTXT, dns.TypeCNAME, dns.TypeMX, dns.TypeNS, dns.TypeSOA:
		return dns.TypeToString[t]
	}
	return "other"
}
