package dnsdisco

import (
	"fmt"
	"net"

	"github.com/miekg/dns"
)

// UpstreamsFromResolvConf reads the nameservers of a resolv.conf file and
// returns them as "ip:53". Nameservers that are this server itself are
// skipped, as forwarding to ourselves would loop: pass the server's listen
// address(es) as self ("ip:port"; a wildcard ip stands for every local
// address). A file without nameservers yields an empty list and no error.
//
// Start also drops upstreams equal to the address it bound, so a caller that
// cannot know its address yet is still protected from the simple loop.
func UpstreamsFromResolvConf(path string, self ...string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("dnsdisco: read upstreams from %s: %w", path, err)
	}
	port := cc.Port
	if port == "" {
		port = "53"
	}
	var ups []string
	for _, ns := range cc.Servers {
		if net.ParseIP(stripZone(ns)) == nil {
			// resolv.conf allows only addresses here; anything else is a
			// typo we must not try to resolve (we are the resolver).
			continue
		}
		u := net.JoinHostPort(ns, port)
		skip := false
		for _, me := range self {
			if isSelf(u, me) {
				skip = true
				break
			}
		}
		if !skip {
			ups = append(ups, u)
		}
	}
	return ups, nil
}

// stripZone drops an IPv6 zone ("fe80::1%eth0") for parsing.
func stripZone(h string) string {
	for i := 0; i < len(h); i++ {
		if h[i] == '%' {
			return h[:i]
		}
	}
	return h
}
