package discovery

import (
	"net/netip"

	"github.com/swarmlet/swarmlet/api"
)

// stackScopes gives the DNS server a scope per caller: each of this node's
// stack tasks that has an address of its own (a container on the node's
// container network, which queries the DNS on its gateway from that address)
// gets its stack's prefix, so it reaches its stack's services by their short
// compose names. The caller's own task says its stack; that is what a Swarm
// stack's network does, without a network per stack.
//
// Addresses of nodes are left out: the host itself and every process-engine
// task speak from them, so such a caller cannot be told apart (those tasks use
// the full names, STACK_SERVICE). Tasks that have finished are left out: their
// address may already be another container's. An address claimed by tasks of
// two stacks (a stale report) gets no scope rather than a wrong one.
func stackScopes(as api.Assignments) map[netip.Addr]string {
	shared := map[netip.Addr]bool{}
	for _, n := range as.Nodes {
		if a, err := netip.ParseAddr(n.Addr); err == nil {
			shared[a.Unmap()] = true
		}
	}
	if as.Node != nil {
		if a, err := netip.ParseAddr(as.Node.Addr); err == nil {
			shared[a.Unmap()] = true
		}
	}
	out := map[netip.Addr]string{}
	ambiguous := map[netip.Addr]bool{}
	for _, t := range as.Tasks {
		ns := t.Spec.Labels[api.LabelStackNamespace]
		if ns == "" || t.Status.State.Terminal() {
			continue
		}
		a, err := netip.ParseAddr(t.Status.Addr)
		if err != nil {
			continue
		}
		a = a.Unmap()
		if shared[a] || a.IsLoopback() || a.IsUnspecified() {
			continue
		}
		p := ns + api.StackSeparator
		if q, ok := out[a]; ok && q != p {
			ambiguous[a] = true
		}
		out[a] = p
	}
	for a := range ambiguous {
		delete(out, a)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
