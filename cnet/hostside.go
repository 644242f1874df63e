package cnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The rest of a host's side of the cluster network, besides the overlay and
// Docker's forward chain: the masquerade for containers going outside the
// pool, the service range's route, and finding devices of nodes that are gone.

// Masquerade.
//
// The node's container network is created with Docker's own masquerade off
// (com.docker.network.bridge.enable_ip_masquerade=false): Docker's rule
// (`-s SUBNET ! -o BRIDGE -j MASQUERADE`) would also rewrite traffic leaving
// into the vxlan device, and a container on another host would see this
// node's VTEP address instead of its caller. AllowMasquerade puts back the
// part that is needed, as flannel does: traffic from this node's subnet to
// anything outside the pool (another host's address, the world) leaves with
// the host's address; traffic to the pool keeps the container's.

const masqChain = "POSTROUTING"

func masqRule(subnet, pool netip.Prefix, owner string) []string {
	return []string{"-s", subnet.String(), "!", "-d", pool.String(), "-m", "comment", "--comment", fwComment + " node=" + owner, "-j", "MASQUERADE"}
}

// AllowMasquerade makes sure the nat table masquerades traffic from subnet to
// outside pool, in the caller's network namespace; owner (the node ID) goes
// into the rule's comment. It is idempotent.
func AllowMasquerade(subnet, pool netip.Prefix, owner string) error {
	ipt, err := iptables()
	if err != nil {
		return err
	}
	if err := checkOwner(owner); err != nil {
		return err
	}
	r := masqRule(subnet, pool, owner)
	if ok, err := ipt.hasIn("nat", masqChain, r); err != nil {
		return err
	} else if ok {
		return nil
	}
	if _, err := ipt.runIn("nat", append([]string{"-A", masqChain}, r...)...); err != nil {
		return fmt.Errorf("masquerade containers of %v leaving the pool: %w", subnet, err)
	}
	return nil
}

// RemoveMasquerade deletes what AllowMasquerade(subnet, pool, owner) added;
// it is idempotent.
func RemoveMasquerade(subnet, pool netip.Prefix, owner string) error {
	ipt, err := iptables()
	if err != nil {
		return err
	}
	if err := checkOwner(owner); err != nil {
		return err
	}
	r := masqRule(subnet, pool, owner)
	for range 16 {
		ok, err := ipt.hasIn("nat", masqChain, r)
		if err != nil || !ok {
			return err
		}
		if _, err := ipt.runIn("nat", append([]string{"-D", masqChain}, r...)...); err != nil {
			return fmt.Errorf("remove the masquerade of %v: %w", subnet, err)
		}
	}
	return nil
}

func (c iptablesCmd) runIn(table string, args ...string) (string, error) {
	return c.runTable(table, args...)
}

func (c iptablesCmd) hasIn(table, chain string, rule []string) (bool, error) {
	_, err := c.runTable(table, append([]string{"-C", chain}, rule...)...)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		return false, nil
	}
	return err == nil, err
}

// The service range's route.
//
// VIPs are not addresses of any device: the balancer DNATs them on the way
// in (prerouting, for containers) and on the way out (output, for the host).
// A packet the host sends must still find a route before the output hook
// sees it, and one to a VIP that no rule matches must not leave the host by
// the default route. `local SERVICE_RANGE dev lo` in the local table does
// both, as kube-proxy's IPVS mode does by putting every ClusterIP on a dummy
// device: the range is this host's, so connect() works and the balancer
// rewrites it; an unmatched VIP is answered by the host itself (refused); and
// a userspace balancer can bind VIPs. It is marked proto RouteProtocol.

// EnsureServiceRoute makes sure the local table routes services to this host
// (in the namespace of netnsFd when > 0, else the caller's).
func EnsureServiceRoute(services netip.Prefix, netnsFd int) error {
	h, err := handleAt(netnsFd)
	if err != nil {
		return err
	}
	defer h.Close()
	r, err := serviceRoute(h, services)
	if err != nil {
		return err
	}
	have, err := h.RouteListFiltered(netlink.FAMILY_V4, r, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST|netlink.RT_FILTER_TYPE)
	if err != nil {
		return fmt.Errorf("service range route: list: %w", err)
	}
	for _, x := range have {
		if x.LinkIndex == r.LinkIndex && x.Type == unix.RTN_LOCAL {
			return nil
		}
	}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("route the service range %v to this host: %w", services, err)
	}
	return nil
}

// RemoveServiceRoute deletes the route EnsureServiceRoute adds; a missing
// route is no error.
func RemoveServiceRoute(services netip.Prefix, netnsFd int) error {
	h, err := handleAt(netnsFd)
	if err != nil {
		return err
	}
	defer h.Close()
	r, err := serviceRoute(h, services)
	if err != nil {
		return err
	}
	if err := h.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("remove the service range's route %v: %w", services, err)
	}
	return nil
}

func serviceRoute(h *netlink.Handle, services netip.Prefix) (*netlink.Route, error) {
	if !services.Addr().Is4() || services != services.Masked() {
		return nil, fmt.Errorf("service range %v is not an IPv4 network", services)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("service range route: loopback device: %w", err)
	}
	return &netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       &net.IPNet{IP: services.Addr().AsSlice(), Mask: net.CIDRMask(services.Bits(), 32)},
		Type:      unix.RTN_LOCAL,
		Table:     unix.RT_TABLE_LOCAL,
		Scope:     netlink.SCOPE_HOST,
		Protocol:  RouteProtocol,
	}, nil
}

func handleAt(netnsFd int) (*netlink.Handle, error) {
	var h *netlink.Handle
	var err error
	if netnsFd > 0 {
		h, err = netlink.NewHandleAt(netns.NsHandle(netnsFd))
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	if err := h.SetSocketTimeout(10 * time.Second); err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink socket timeout: %w", err)
	}
	return h, nil
}

// Devices left behind.

// Device is a vxlan device found by Devices.
type Device struct {
	Name  string
	Alias string // Config.Alias of the Overlay that made it
	VNI   int
}

// Devices lists the vxlan devices whose names start with prefix (in the
// namespace of netnsFd when > 0, else the caller's).
func Devices(prefix string, netnsFd int) ([]Device, error) {
	h, err := handleAt(netnsFd)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	var out []Device
	for _, l := range links {
		if vx, ok := l.(*netlink.Vxlan); ok && strings.HasPrefix(vx.Name, prefix) {
			out = append(out, Device{Name: vx.Name, Alias: vx.Alias, VNI: vx.VxlanId})
		}
	}
	return out, nil
}

// RemoveDevice deletes the vxlan device name, and with it its entries and
// routes; a missing device is no error, and a device that is not vxlan is
// refused.
func RemoveDevice(name string, netnsFd int) error {
	h, err := handleAt(netnsFd)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up device %s: %w", name, err)
	}
	if _, ok := l.(*netlink.Vxlan); !ok {
		return fmt.Errorf("device %s is a %s, not an overlay device; leaving it", name, l.Type())
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("delete device %s: %w", name, err)
	}
	return nil
}

// Rules left behind.

// RuleOwners lists the owners named by this package's rules in DOCKER-USER
// and the nat table's POSTROUTING (AllowForward, AllowMasquerade) in the
// caller's network namespace. A missing chain lists nothing.
func RuleOwners() ([]string, error) {
	ipt, err := iptables()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range listOurRules(ipt) {
		if !seen[r.owner] {
			seen[r.owner] = true
			out = append(out, r.owner)
		}
	}
	return out, nil
}

// RemoveRulesOf deletes every rule of this package's whose owner is owner,
// whatever pool or subnet it names: what a node that is gone left behind.
func RemoveRulesOf(owner string) error {
	ipt, err := iptables()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range listOurRules(ipt) {
		if r.owner != owner {
			continue
		}
		if _, err := ipt.runTable(r.table, append([]string{"-D"}, r.args...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type listedRule struct {
	table, owner string
	args         []string // as listed, without the leading -A
}

func listOurRules(ipt iptablesCmd) []listedRule {
	var out []listedRule
	for _, tc := range [][2]string{{"filter", DockerUserChain}, {"nat", masqChain}} {
		list, err := ipt.runTable(tc[0], "-S", tc[1])
		if err != nil {
			continue
		}
		for _, line := range strings.Split(list, "\n") {
			args := splitRule(line)
			if len(args) < 2 || args[0] != "-A" {
				continue
			}
			for i, a := range args {
				if owner, ok := strings.CutPrefix(a, fwComment+" node="); ok && i > 0 && args[i-1] == "--comment" {
					out = append(out, listedRule{table: tc[0], owner: owner, args: args[1:]})
				}
			}
		}
	}
	return out
}

// splitRule splits a line of `iptables -S` into its arguments; iptables
// quotes an argument with spaces (a comment) in double quotes.
func splitRule(line string) []string {
	var out []string
	var cur strings.Builder
	quoted, have := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, have = !quoted, true
		case r == ' ' && !quoted:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// Hairpin.
//
// Docker turns br_netfilter on (bridge-nf-call-iptables=1), so a container's
// packet to a VIP is DNATed while still in the bridge; when the backend is
// the caller itself (a service calling its own name), the bridge would have
// to send the frame back out of the port it came in by, which it does only
// in hairpin mode, and the connection hangs. kubenet turns hairpin mode on
// for every pod's port for the same reason.

// Hairpin turns hairpin mode on for every port of the bridge that holds
// gateway (the node's container network), in the namespace of netnsFd when
// > 0, else the caller's. Ports already in hairpin mode are left as they are.
func Hairpin(gateway netip.Addr, netnsFd int) error {
	h, err := handleAt(netnsFd)
	if err != nil {
		return err
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("hairpin: list addresses: %w", err)
	}
	bridge := 0
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == gateway {
			bridge = a.LinkIndex
		}
	}
	if bridge == 0 {
		return fmt.Errorf("hairpin: no device holds the container gateway %v (is the container network there?)", gateway)
	}
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("hairpin: list devices: %w", err)
	}
	var errs []error
	for _, l := range links {
		if l.Attrs().MasterIndex != bridge {
			continue
		}
		if pi, err := h.LinkGetProtinfo(l); err == nil && pi.Hairpin {
			continue
		}
		if err := h.LinkSetHairpin(l, true); err != nil {
			errs = append(errs, fmt.Errorf("hairpin on %s: %w", l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}
