package dnsdisco

import (
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Port is one port of a task. Target is the port inside the task; HostPort is
// the published port on the node, the one SRV records carry. A port with
// HostPort 0 is not published and gets no SRV record.
type Port struct {
	Proto    string // "tcp" or "udp"
	Target   int
	HostPort int
}

// Task is one running task of a service.
type Task struct {
	Addr  net.IP
	Node  string // node ID
	Ports []Port
}

// Service is what the DNS server knows of one service.
type Service struct {
	VIP   net.IP // nil for dnsrr mode
	Tasks []Task // running tasks only
}

// Table is the whole record table the node hands the server. The server
// never modifies it and keeps no reference to it after SetTable returns.
type Table struct {
	Services map[string]Service // key: service name (lower case)
	Nodes    map[string]net.IP  // node ID -> node address, for SRV targets
	// Scopes gives callers at these source addresses a name prefix their
	// service names are looked up with first (scope.go).
	Scopes map[netip.Addr]string
}

// srvRec is one SRV answer before it is given an owner name.
type srvRec struct {
	target string // fully qualified, lower case
	port   uint16
}

// entry holds the records of one name. Names are stored relative to the
// zone ("web", "tasks.web", "n1.nodes") so that the bare and the zoned
// spelling share one lookup.
type entry struct {
	v4  []net.IP
	v6  []net.IP
	srv []srvRec
	// extra is the glue for srv: the address records of the target nodes.
	extra []dns.RR
	// wireA and wireAAAA are v4 and v6 as packed answer records, owner a
	// pointer to the question: the UDP fast path's answers.
	wireA, wireAAAA []byte
}

// packAddrs fills wireA and wireAAAA. The owner name of every record is a
// compression pointer to the question (offset 12), which is what the packer
// writes for an owner spelled as the question is.
func (e *entry) packAddrs(ttl uint32) {
	pack := func(ips []net.IP, rrtype uint16) []byte {
		var b []byte
		for _, ip := range ips {
			b = append(b, 0xC0, 12)
			b = binary.BigEndian.AppendUint16(b, rrtype)
			b = binary.BigEndian.AppendUint16(b, dns.ClassINET)
			b = binary.BigEndian.AppendUint32(b, ttl)
			b = binary.BigEndian.AppendUint16(b, uint16(len(ip)))
			b = append(b, ip...)
		}
		return b
	}
	e.wireA = pack(e.v4, dns.TypeA)
	e.wireAAAA = pack(e.v6, dns.TypeAAAA)
}

// index is the immutable, query-ready form of a Table. SetTable builds a new
// one and swaps it in atomically, so queries never see a half-built table.
type index struct {
	names  map[string]*entry
	scopes map[netip.Addr]string
	serial uint32
}

// nsLabel is the relative name of the server itself (the SOA MNAME and NS
// target). It has three labels so it can never collide with a service
// ("S"), a task set ("tasks.S") or a node ("ID.nodes").
const nsLabel = "ns.dns"

// buildIndex compiles t into an index. Names that cannot be DNS labels are
// skipped with a warning rather than failing the whole table: one odd service
// name must not take name resolution away from all the others.
func buildIndex(t Table, zone string, serial uint32, ttl uint32, log *slog.Logger) *index {
	ix := &index{names: make(map[string]*entry), scopes: buildScopes(t), serial: serial}

	nodeAddr := make(map[string]net.IP, len(t.Nodes))
	for id, ip := range t.Nodes {
		lid := strings.ToLower(id)
		if !validLabel(lid) {
			log.Warn("skipping node with an ID that is not a DNS label", "node", id)
			continue
		}
		if ip == nil || (ip.To4() == nil && ip.To16() == nil) {
			log.Warn("skipping node without a valid address", "node", id)
			continue
		}
		nodeAddr[lid] = ip
		ix.names[lid+".nodes"] = addrEntry([]net.IP{ip})
	}

	for name, svc := range t.Services {
		lname := strings.ToLower(name)
		if !validLabel(lname) {
			log.Warn("skipping service with a name that is not a DNS label", "service", name)
			continue
		}
		var taskIPs []net.IP
		for _, task := range svc.Tasks {
			if task.Addr != nil {
				taskIPs = append(taskIPs, task.Addr)
			}
		}
		tasks := addrEntry(taskIPs)
		var bare *entry
		if svc.VIP != nil {
			bare = addrEntry([]net.IP{svc.VIP})
		} else {
			bare = addrEntry(taskIPs)
		}

		// SRV answers are the same for S and tasks.S: both name the tasks'
		// published ports, since a VIP has no per-task port to point at.
		srv, extra := srvRecords(lname, svc.Tasks, nodeAddr, zone, ttl, log)
		bare.srv, bare.extra = srv, extra
		tasks.srv, tasks.extra = srv, extra

		ix.names[lname] = bare
		ix.names["tasks."+lname] = tasks
	}

	for _, e := range ix.names {
		e.packAddrs(ttl)
	}
	return ix
}

// srvRecords returns one record per task per published port, and the node
// address records that go in the additional section. A task whose node has
// no known address is left out: an SRV target that does not resolve is worse
// than no record.
func srvRecords(svc string, tasks []Task, nodeAddr map[string]net.IP, zone string, ttl uint32, log *slog.Logger) ([]srvRec, []dns.RR) {
	var recs []srvRec
	var extra []dns.RR
	seen := make(map[srvRec]bool)
	glued := make(map[string]bool)
	for _, task := range tasks {
		node := strings.ToLower(task.Node)
		ip, ok := nodeAddr[node]
		if !ok {
			if len(task.Ports) > 0 {
				log.Warn("task on unknown node gets no SRV record", "service", svc, "node", task.Node)
			}
			continue
		}
		target := node + ".nodes." + zone
		for _, p := range task.Ports {
			if p.HostPort <= 0 || p.HostPort > 65535 {
				continue
			}
			r := srvRec{target: target, port: uint16(p.HostPort)}
			if seen[r] {
				continue
			}
			seen[r] = true
			recs = append(recs, r)
			if !glued[target] {
				glued[target] = true
				extra = append(extra, addrRR(target, ip, ttl))
			}
		}
	}
	return recs, extra
}

// addrEntry splits ips by family and drops duplicates: with the process
// engine several tasks share their node's address, and an RRset must not
// hold the same record twice (RFC 2181 5).
func addrEntry(ips []net.IP) *entry {
	e := &entry{}
	for _, ip := range ips {
		if v4 := ip.To4(); v4 != nil {
			if !containsIP(e.v4, v4) {
				e.v4 = append(e.v4, v4)
			}
		} else if v6 := ip.To16(); v6 != nil {
			if !containsIP(e.v6, v6) {
				e.v6 = append(e.v6, v6)
			}
		}
	}
	return e
}

func containsIP(ips []net.IP, ip net.IP) bool {
	return slices.ContainsFunc(ips, ip.Equal)
}

func addrRR(name string, ip net.IP, ttl uint32) dns.RR {
	if v4 := ip.To4(); v4 != nil {
		return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: v4}
	}
	return &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: ip.To16()}
}

// validLabel reports whether s can stand as one DNS label of a host name.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
