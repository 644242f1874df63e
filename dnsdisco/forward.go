package dnsdisco

import (
	"time"

	"github.com/miekg/dns"
)

// failWarnInterval spaces out the warnings that no upstream answered.
const failWarnInterval = 10 * time.Second

// forward sends req to each upstream in turn, over the client's transport,
// and returns the first usable answer; SERVFAIL when there is none.
func (s *Server) forward(req *dns.Msg, udp bool) *dns.Msg {
	if len(s.upstreams) == 0 {
		m := errorReply(req, dns.RcodeServerFailure)
		m.RecursionAvailable = false
		return m
	}
	c := &dns.Client{Net: "tcp", Timeout: s.cfg.ForwardTimeout}
	if udp {
		c.Net = "udp"
	}
	// A fresh ID per upstream query: the client's ID is guessable by
	// whoever sees the client's query, and off-path spoofing of our
	// upstream traffic should need more than that.
	out := req.Copy()
	for _, up := range s.upstreams {
		out.Id = dns.Id()
		r, _, err := c.Exchange(out, up)
		if err != nil {
			s.log.Debug("upstream failed", "upstream", up, "name", req.Question[0].Name, "err", err)
			continue
		}
		if r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
			// Another upstream may do better: a resolver that refuses us or
			// cannot reach the name is not the last word on it.
			s.log.Debug("upstream answered with error", "upstream", up, "name", req.Question[0].Name,
				"rcode", dns.RcodeToString[r.Rcode])
			continue
		}
		r.Id = req.Id
		return r
	}
	// Warn at most once per interval: with upstreams down every query
	// would log, and a busy node would drown its log.
	if now := time.Now().UnixNano(); now-s.lastFailWarn.Load() > int64(failWarnInterval) {
		s.lastFailWarn.Store(now)
		s.log.Warn("all upstreams failed", "name", req.Question[0].Name, "upstreams", s.upstreams)
	} else {
		s.log.Debug("all upstreams failed", "name", req.Question[0].Name)
	}
	m := errorReply(req, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	return m
}
