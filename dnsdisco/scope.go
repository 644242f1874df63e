package dnsdisco

import (
	"net"
	"net/netip"
	"strings"
)

// Callers with a scope of their own: Table.Scopes maps a source address (a
// task's, on the node's container network) to a prefix, and a query from that
// address for a service name S or tasks.S is answered first as if it named
// PREFIX+S. A stack's task asks for "db" and gets its own stack's STACK_db,
// as a Swarm stack's network gives its services their short names; everyone
// else, and names no scoped service has, resolve as before. The server knows
// nothing of stacks: the node hands it addresses and prefixes.

// scoped is rel with prefix put before its service label: "db" -> "p_db",
// "tasks.db" -> "tasks.p_db"; "" for names that name no service.
func scoped(rel, prefix string) string {
	if prefix == "" {
		return ""
	}
	if rest, ok := strings.CutPrefix(rel, "tasks."); ok {
		if rest == "" || strings.Contains(rest, ".") {
			return ""
		}
		return "tasks." + prefix + rest
	}
	if strings.Contains(rel, ".") {
		return ""
	}
	return prefix + rel
}

// lookup is rel's entry for a caller with prefix: its scoped name first.
func (ix *index) lookup(rel, prefix string) *entry {
	if s := scoped(rel, prefix); s != "" {
		if e := ix.names[s]; e != nil {
			return e
		}
	}
	return ix.names[rel]
}

// prefixOf is the scope of the caller at src ("" for none).
func (ix *index) prefixOf(src netip.Addr) string {
	if !src.IsValid() || len(ix.scopes) == 0 {
		return ""
	}
	return ix.scopes[src]
}

// sourceAddr is the address a query came from (invalid if unknown).
func sourceAddr(remote net.Addr) netip.Addr {
	var ip net.IP
	switch a := remote.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

// buildScopes copies the table's scopes, keeping those whose prefix can stand
// before a DNS label.
func buildScopes(t Table) map[netip.Addr]string {
	if len(t.Scopes) == 0 {
		return nil
	}
	out := make(map[netip.Addr]string, len(t.Scopes))
	for a, p := range t.Scopes {
		if p = strings.ToLower(p); a.IsValid() && validLabel(p) {
			out[a.Unmap()] = p
		}
	}
	return out
}
