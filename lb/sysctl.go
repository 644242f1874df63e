package lb

import (
	"fmt"
	"os"
)

// EnableRouteLocalnet sets net.ipv4.conf.all.route_localnet=1 in the caller's
// network namespace.
//
// Why: service VIPs come from a pool inside 127.0.0.0/8, so a VIP packet that no
// rule matches can never leave the host. But when the nftables balancer DNATs a
// local connection from such a VIP to a backend that is not on loopback (a
// container bridge, another host), the packet still carries the loopback source
// 127.0.0.1 it got when it was routed to the VIP. The kernel refuses to route a
// packet with a 127/8 source out of a non-loopback device ("martian") unless
// route_localnet is set; with it set, the packet is routed and the balancer's
// postrouting masquerade then rewrites the source to the outgoing interface's
// address so that the backend's reply finds its way back. The setting also lets
// the host accept 127/8 addresses arriving on other interfaces, which is why it
// is off by default; the masquerade rule ensures only our DNATed traffic relies
// on it. Not needed when every backend is itself on loopback (process engine).
func EnableRouteLocalnet() error {
	const path = "/proc/sys/net/ipv4/conf/all/route_localnet"
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enable route_localnet: %w", err)
	}
	return nil
}

// EnableIPForward sets net.ipv4.ip_forward=1 in the caller's network namespace,
// as Docker's daemon does, and reports whether it had to change it.
//
// Why: the routing mesh makes every node's published (ingress) ports answer,
// even on a node with no task. A connection from another host to such a port is
// DNATed by the kernel balancer to a task on a third host, so the packet is
// forwarded, not delivered locally: with forwarding off (the kernel's default,
// and what a namespace inherits from a host that never enabled it) the kernel
// drops it and the published port only works from the node itself.
func EnableIPForward() (changed bool, err error) {
	const path = "/proc/sys/net/ipv4/ip_forward"
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 && b[0] == '1' {
		return false, nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return false, fmt.Errorf("enable ip_forward: %w", err)
	}
	return true, nil
}
