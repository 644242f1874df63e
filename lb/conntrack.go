package lb

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// UDP has no end of connection: a conntrack entry that DNATs a client's flow to
// a backend lives as long as the client keeps sending, so rewriting the rules
// alone would leave that client talking to a removed backend (or, for a removed
// frontend, to the old backends) forever. After each successful batch the
// nftables balancer deletes exactly those UDP entries, as kube-proxy does; the
// client's next datagram is a new flow and takes the new rules. TCP entries are
// left alone so that established connections finish.

// udpStaleFilter matches UDP flows addressed to a frontend and translated to a
// backend no longer in its allowed set.
type udpStaleFilter struct {
	allowed map[key]map[netip.AddrPort]bool // frontend -> current backends (empty when removed)
}

func (f udpStaleFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	dst, ok := netip.AddrFromSlice(flow.Forward.DstIP)
	if !ok {
		return false
	}
	allowed, ours := f.allowed[key{Addr: dst.Unmap(), Port: flow.Forward.DstPort, Proto: "udp"}]
	if !ours {
		return false
	}
	// The reply tuple's source is where the flow really goes: the backend.
	be, ok := netip.AddrFromSlice(flow.Reverse.SrcIP)
	if !ok {
		return false
	}
	return !allowed[netip.AddrPortFrom(be.Unmap(), flow.Reverse.SrcPort)]
}

// flushStaleUDP deletes UDP conntrack entries that plan made stale.
func flushStaleUDP(netnsFd int, plan frontendPlan) (uint, error) {
	f := udpStaleFilter{allowed: map[key]map[netip.AddrPort]bool{}}
	for _, d := range plan.Update {
		if d.Key.Proto == "udp" {
			set := map[netip.AddrPort]bool{}
			for _, be := range d.Backends {
				set[be] = true
			}
			f.allowed[d.Key] = set
		}
	}
	for _, k := range plan.Remove {
		if k.Proto == "udp" {
			f.allowed[k] = nil
		}
	}
	if len(f.allowed) == 0 {
		return 0, nil
	}
	var h *netlink.Handle
	var err error
	if netnsFd > 0 {
		h, err = netlink.NewHandleAt(netns.NsHandle(netnsFd), unix.NETLINK_NETFILTER)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_NETFILTER)
	}
	if err != nil {
		return 0, fmt.Errorf("conntrack netlink: %w", err)
	}
	defer h.Close()
	n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, f)
	if err != nil {
		return n, fmt.Errorf("delete stale udp conntrack entries: %w", err)
	}
	return n, nil
}
