package cnet

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Overlay defaults.
const (
	DefaultDevice = "swl-vx0"
	DefaultVNI    = 4242
	DefaultPort   = 4789 // IANA's VXLAN port; the kernel's own default is 8472

	// EncapOverhead is what VXLAN adds to each packet on an IPv4 underlay:
	// outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
	EncapOverhead = 50

	// maxMTU is the largest MTU the kernel accepts on a vxlan device.
	maxMTU = 65535 - EncapOverhead

	// RouteProtocol marks the routes Sync installs (`ip route show proto 83`),
	// so that it removes only its own routes from its device and an operator
	// can tell them apart from routes added by hand.
	RouteProtocol = 83
)

// ErrClosed is returned by Sync after Close.
var ErrClosed = errors.New("cluster network overlay is closed")

// Config describes this node's end of the overlay.
type Config struct {
	// Device is the vxlan device's name (default DefaultDevice). Nodes that
	// share one network namespace need different names.
	Device string
	// VNI is the VXLAN network identifier, the same on every node (default DefaultVNI).
	VNI int
	// Port is the UDP port VXLAN is sent to and received on, the same on
	// every node (default DefaultPort).
	Port int
	// UnderlayIP is this node's advertise address: the source of every
	// encapsulated packet and the address peers send to. It must be an
	// address of this namespace.
	UnderlayIP netip.Addr
	// UnderlayDev, if set, binds the overlay to that device (flannel's --iface).
	UnderlayDev string
	// LocalSubnet is this node's subnet of the container pool.
	LocalSubnet netip.Prefix
	// MTU of the vxlan device; 0 means the MTU of the device holding
	// UnderlayIP (or UnderlayDev) less EncapOverhead. Containers must get
	// this MTU too (Docker: com.docker.network.driver.mtu), or full-size
	// packets hit the device and depend on path MTU discovery.
	MTU int
	// NetNSFd, when > 0, is a network namespace fd to program instead of the
	// caller's (tests).
	NetNSFd int
	Logger  *slog.Logger
	// Alias, if set, is kept as the device's alias (`ip link` shows it), so
	// that Devices can tell whose a device is: the daemon writes its cluster
	// and node, and removes devices of its cluster's nodes that are gone.
	Alias string
}

// Peer is another node's end of the overlay, as every node can compute it
// from the node table.
type Peer struct {
	ID         string
	UnderlayIP netip.Addr   // the peer's advertise address
	Subnet     netip.Prefix // the peer's subnet of the container pool
	VTEPMAC    net.HardwareAddr
	// VTEPMAC is the MAC of the peer's vxlan device; nil means MACFor(Subnet),
	// which is what every Overlay gives its own device.
}

// Table is the whole overlay as this node should see it. It may include the
// local node itself (matched by subnet), so every node can be handed the same
// table built from the node table.
type Table struct {
	Peers []Peer
}

// MACFor is the MAC address of the vxlan device of the node owning subnet.
//
// flannel picks a random MAC and publishes it in the node's lease; swarmlet
// has no lease, so the MAC is derived from what every node already knows
// about every other: its subnet. Subnets of the pool are disjoint, so their
// network addresses and hence these MACs are unique in the cluster; the
// underlay address would not do, since it can change on a re-advertise and
// several nodes may share one. Locally administered, unicast (02 in the first
// octet), with 0x73 as the second octet so it meets neither Docker's container
// MACs (02:42:<ip>) nor Kubernetes' (0a:58:<ip>).
func MACFor(subnet netip.Prefix) net.HardwareAddr {
	a := subnet.Masked().Addr().As4()
	return net.HardwareAddr{0x02, 0x73, a[0], a[1], a[2], a[3]}
}

// VTEPAddr is the address of the vxlan device of the node owning subnet: the
// subnet's network address (.0), as flannel does. Nobody else uses it: Docker
// gives the bridge .1 and containers .2 and up, so it takes nothing from the
// node's containers and never clashes with an address Docker assigns. It sits
// on the device as a /32, so the device claims no route to the subnet (that
// route belongs to the local bridge); and it is what the host's own packets
// into the overlay leave from, an address every peer routes back to us
// because it lies in our subnet.
func VTEPAddr(subnet netip.Prefix) netip.Addr {
	return subnet.Masked().Addr()
}

// Overlay programs one node's vxlan device and its forwarding entries.
type Overlay struct {
	cfg Config
	mtu int
	log *slog.Logger

	mu     sync.Mutex
	h      *netlink.Handle
	closed bool
	// deferTo is the device of another node sharing this kernel that owns
	// our VNI and port ("" when we own the overlay here), kept to log a
	// change once.
	deferTo string
}

// New checks cfg and opens a netlink handle; it changes nothing in the kernel.
func New(cfg Config) (*Overlay, error) {
	if cfg.Device == "" {
		cfg.Device = DefaultDevice
	}
	if cfg.VNI == 0 {
		cfg.VNI = DefaultVNI
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case len(cfg.Device) >= unix.IFNAMSIZ:
		return nil, fmt.Errorf("overlay device name %q is longer than %d bytes", cfg.Device, unix.IFNAMSIZ-1)
	case cfg.VNI < 1 || cfg.VNI > 1<<24-1:
		return nil, fmt.Errorf("overlay VNI %d is out of range 1-%d", cfg.VNI, 1<<24-1)
	case cfg.Port < 1 || cfg.Port > 65535:
		return nil, fmt.Errorf("overlay port %d is out of range 1-65535", cfg.Port)
	case !cfg.UnderlayIP.Is4():
		return nil, fmt.Errorf("overlay underlay address %v is not IPv4: the cluster network needs an IPv4 advertise address", cfg.UnderlayIP)
	case !cfg.LocalSubnet.Addr().Is4() || cfg.LocalSubnet != cfg.LocalSubnet.Masked():
		return nil, fmt.Errorf("overlay local subnet %v is not an IPv4 network address", cfg.LocalSubnet)
	case cfg.MTU != 0 && (cfg.MTU < 68 || cfg.MTU > maxMTU):
		return nil, fmt.Errorf("overlay MTU %d is out of range 68-%d", cfg.MTU, maxMTU)
	}
	var h *netlink.Handle
	var err error
	if cfg.NetNSFd > 0 {
		h, err = netlink.NewHandleAt(netns.NsHandle(cfg.NetNSFd))
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("overlay: open netlink: %w", err)
	}
	// A kernel that never answers must not hang the caller's loop forever.
	if err := h.SetSocketTimeout(10 * time.Second); err != nil {
		h.Close()
		return nil, fmt.Errorf("overlay: netlink socket timeout: %w", err)
	}
	o := &Overlay{cfg: cfg, h: h, log: cfg.Logger.With("component", "cnet", "device", cfg.Device)}
	o.mtu = cfg.MTU
	if o.mtu == 0 {
		if o.mtu, err = o.underlayMTU(); err != nil {
			h.Close()
			return nil, err
		}
	}
	return o, nil
}

// MTU is the vxlan device's MTU: what this node's container network must use.
func (o *Overlay) MTU() int { return o.mtu }

// Device is the vxlan device's name.
func (o *Overlay) Device() string { return o.cfg.Device }

func (o *Overlay) underlayMTU() (int, error) {
	var mtu int
	if o.cfg.UnderlayDev != "" {
		l, err := o.h.LinkByName(o.cfg.UnderlayDev)
		if err != nil {
			return 0, fmt.Errorf("overlay underlay device %s: %w", o.cfg.UnderlayDev, err)
		}
		mtu = l.Attrs().MTU
	} else {
		addrs, err := o.h.AddrList(nil, netlink.FAMILY_V4)
		if err != nil {
			return 0, fmt.Errorf("overlay: list addresses: %w", err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == o.cfg.UnderlayIP {
				l, err := o.h.LinkByIndex(a.LinkIndex)
				if err != nil {
					return 0, fmt.Errorf("overlay: device of %v: %w", o.cfg.UnderlayIP, err)
				}
				mtu = l.Attrs().MTU
				break
			}
		}
		if mtu == 0 {
			return 0, fmt.Errorf("overlay: advertise address %v is on no device of this host: advertise one of its own addresses, or set the overlay MTU", o.cfg.UnderlayIP)
		}
	}
	return min(mtu-EncapOverhead, maxMTU), nil
}

// peerEntry is one peer as the kernel should hold it.
type peerEntry struct {
	id       string
	underlay netip.Addr
	subnet   netip.Prefix
	vtep     netip.Addr
	mac      net.HardwareAddr
}

// plan turns the table into the peers to program, sorted by subnet, and an
// error naming every peer it had to leave out. A bad row must not keep the
// good ones from being programmed.
func (o *Overlay) plan(t Table) ([]peerEntry, error) {
	var errs []error
	var out []peerEntry
	for _, p := range t.Peers {
		switch {
		case !p.Subnet.Addr().Is4() || p.Subnet != p.Subnet.Masked():
			errs = append(errs, fmt.Errorf("peer %s: subnet %v is not an IPv4 network address", p.ID, p.Subnet))
			continue
		case !p.UnderlayIP.Is4():
			errs = append(errs, fmt.Errorf("peer %s: underlay address %v is not IPv4", p.ID, p.UnderlayIP))
			continue
		case p.Subnet == o.cfg.LocalSubnet:
			continue // ourselves
		case p.Subnet.Overlaps(o.cfg.LocalSubnet):
			errs = append(errs, fmt.Errorf("peer %s: subnet %v overlaps this node's subnet %v", p.ID, p.Subnet, o.cfg.LocalSubnet))
			continue
		}
		mac := p.VTEPMAC
		if mac == nil {
			mac = MACFor(p.Subnet)
		}
		out = append(out, peerEntry{id: p.ID, underlay: p.UnderlayIP, subnet: p.Subnet, vtep: VTEPAddr(p.Subnet), mac: mac})
	}
	slices.SortFunc(out, func(a, b peerEntry) int {
		return cmp.Or(a.subnet.Addr().Compare(b.subnet.Addr()), cmp.Compare(a.subnet.Bits(), b.subnet.Bits()))
	})
	// Sorted by start address, a subnet overlaps an earlier one exactly when
	// it starts before the furthest end seen so far; the later one is dropped.
	kept := out[:0]
	var end uint64
	macs := map[string]string{}
	for _, p := range out {
		a4 := p.subnet.Addr().As4()
		lo := uint64(binary.BigEndian.Uint32(a4[:]))
		if lo < end {
			errs = append(errs, fmt.Errorf("peer %s: subnet %v overlaps another peer's", p.id, p.subnet))
			continue
		}
		if other, dup := macs[p.mac.String()]; dup {
			errs = append(errs, fmt.Errorf("peer %s: VTEP MAC %v is also peer %s's", p.id, p.mac, other))
			continue
		}
		end = lo + 1<<(32-p.subnet.Bits())
		macs[p.mac.String()] = p.id
		kept = append(kept, p)
	}
	return kept, errors.Join(errs...)
}

// Sync makes the kernel match cfg and t: the vxlan device exists, is up,
// carries our VTEP address and MAC, and for each peer holds an FDB entry
// (peer MAC -> peer underlay address), a permanent neighbour (peer VTEP
// address -> peer MAC) and a route (peer subnet via peer VTEP address,
// onlink); entries on our device that no peer wants are removed.
//
// It reads before it writes and writes only what differs, so a Sync on a
// device that is already right (a daemon restarting, the same table again)
// issues no change at all: traffic never notices. Peers whose underlay
// address is an address of this very namespace share our kernel (nodes on
// one machine) and get no entries: their subnets are reached directly
// through their own bridges. If another device in this namespace already
// carries our VNI and port, that is another node on this kernel owning the
// overlay here; the kernel allows only one, so Sync leaves the overlay to it
// and returns nil (see DESIGN.md).
func (o *Overlay) Sync(ctx context.Context, t Table) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrClosed
	}
	peers, planErr := o.plan(t)
	link, err := o.ensureLink()
	if err != nil {
		return errors.Join(err, planErr)
	}
	if link == nil {
		return planErr // deferred to another node's device
	}
	local, err := o.localAddrs()
	if err != nil {
		return errors.Join(err, planErr)
	}
	st, err := o.readState(link)
	if err != nil {
		return errors.Join(err, planErr)
	}
	errs := []error{planErr}
	wantFDB := map[string]netip.Addr{}   // MAC -> underlay
	wantNeigh := map[netip.Addr]string{} // VTEP address -> MAC
	wantRoute := map[netip.Prefix]bool{}
	for _, p := range peers {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if local[p.underlay] {
			o.log.Debug("peer shares this kernel; reached through its own bridge", "peer", p.id, "underlay", p.underlay, "subnet", p.subnet)
			continue
		}
		if i, taken := st.foreignRoutes[p.subnet]; taken {
			owner := strconv.Itoa(i)
			if l, err := o.h.LinkByIndex(i); err == nil {
				owner = l.Attrs().Name
			}
			errs = append(errs, fmt.Errorf("peer %s: a route to %v on device %s already exists; not replacing it (is another network using the container pool?)", p.id, p.subnet, owner))
			continue
		}
		wantFDB[p.mac.String()] = p.underlay
		wantNeigh[p.vtep] = p.mac.String()
		wantRoute[p.subnet] = true
		// Neighbour and FDB first: a route whose gateway has no neighbour
		// yet would make the kernel ARP for it into the overlay.
		if err := o.ensurePeer(link, st, p); err != nil {
			errs = append(errs, fmt.Errorf("peer %s (%v via %v): %w", p.id, p.subnet, p.underlay, err))
		}
	}
	errs = append(errs, o.removeStale(link, st, wantFDB, wantNeigh, wantRoute)...)
	return errors.Join(errs...)
}

// state is what the kernel holds on and around our device.
type state struct {
	fdb           map[string]netip.Addr          // MAC -> destination
	neigh         map[netip.Addr]netlink.Neigh   // permanent neighbours
	routes        map[netip.Prefix]netlink.Route // our routes on our device
	foreignRoutes map[netip.Prefix]int           // main-table routes on other devices -> device index
}

func (o *Overlay) readState(link netlink.Link) (*state, error) {
	idx := link.Attrs().Index
	st := &state{fdb: map[string]netip.Addr{}, neigh: map[netip.Addr]netlink.Neigh{}, routes: map[netip.Prefix]netlink.Route{}, foreignRoutes: map[netip.Prefix]int{}}
	fdb, err := o.h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("overlay: list FDB of %s: %w", o.cfg.Device, err)
	}
	for _, n := range fdb {
		if n.LinkIndex != idx {
			continue
		}
		ip, _ := netip.AddrFromSlice(n.IP.To4())
		st.fdb[n.HardwareAddr.String()] = ip
	}
	neigh, err := o.h.NeighList(idx, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("overlay: list neighbours of %s: %w", o.cfg.Device, err)
	}
	for _, n := range neigh {
		ip, ok := netip.AddrFromSlice(n.IP.To4())
		if n.LinkIndex != idx || !ok {
			continue
		}
		st.neigh[ip] = n
	}
	routes, err := o.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("overlay: list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		dst, ok := prefixOf(r.Dst)
		if !ok {
			continue
		}
		switch {
		case r.LinkIndex == idx && r.Protocol == RouteProtocol:
			st.routes[dst] = r
		case r.LinkIndex != idx:
			st.foreignRoutes[dst] = r.LinkIndex
		}
	}
	return st, nil
}

func (o *Overlay) ensurePeer(link netlink.Link, st *state, p peerEntry) error {
	idx := link.Attrs().Index
	if n, ok := st.neigh[p.vtep]; !ok || n.State != netlink.NUD_PERMANENT || !bytes.Equal(n.HardwareAddr, p.mac) {
		err := o.h.NeighSet(&netlink.Neigh{
			LinkIndex:    idx,
			State:        netlink.NUD_PERMANENT,
			Type:         unix.RTN_UNICAST,
			IP:           p.vtep.AsSlice(),
			HardwareAddr: p.mac,
		})
		if err != nil {
			return fmt.Errorf("set neighbour %v -> %v: %w", p.vtep, p.mac, err)
		}
		o.log.Info("overlay neighbour set", "peer", p.id, "vtep", p.vtep, "mac", p.mac.String())
	}
	// A unicast MAC has exactly one destination in a vxlan FDB (the kernel
	// ignores appends to it), so replacing the entry moves the peer in place.
	if dst, ok := st.fdb[p.mac.String()]; !ok || dst != p.underlay {
		err := o.h.NeighSet(&netlink.Neigh{
			LinkIndex:    idx,
			Family:       unix.AF_BRIDGE,
			State:        netlink.NUD_PERMANENT,
			Flags:        netlink.NTF_SELF,
			IP:           p.underlay.AsSlice(),
			HardwareAddr: p.mac,
		})
		if err != nil {
			return fmt.Errorf("set FDB %v -> %v: %w", p.mac, p.underlay, err)
		}
		o.log.Info("overlay FDB set", "peer", p.id, "mac", p.mac.String(), "underlay", p.underlay)
	}
	want := o.route(idx, p)
	if r, ok := st.routes[p.subnet]; !ok || !sameRoute(r, want) {
		if err := o.h.RouteReplace(&want); err != nil {
			return fmt.Errorf("set route %v via %v: %w", p.subnet, p.vtep, err)
		}
		o.log.Info("overlay route set", "peer", p.id, "subnet", p.subnet, "via", p.vtep)
	}
	return nil
}

func (o *Overlay) route(idx int, p peerEntry) netlink.Route {
	return netlink.Route{
		LinkIndex: idx,
		Dst:       &net.IPNet{IP: p.subnet.Addr().AsSlice(), Mask: net.CIDRMask(p.subnet.Bits(), 32)},
		Gw:        p.vtep.AsSlice(),
		Flags:     int(netlink.FLAG_ONLINK),
		Scope:     netlink.SCOPE_UNIVERSE,
		Table:     unix.RT_TABLE_MAIN,
		Protocol:  RouteProtocol,
		Family:    netlink.FAMILY_V4,
	}
}

func sameRoute(have, want netlink.Route) bool {
	return have.Gw.Equal(want.Gw) && have.Flags&int(netlink.FLAG_ONLINK) != 0 &&
		have.Priority == want.Priority && have.Src == nil && have.Scope == want.Scope &&
		have.Type == unix.RTN_UNICAST && len(have.MultiPath) == 0
}

// removeStale deletes what no peer wants from our device, route first so
// that no packet is routed to a neighbour that is already gone.
func (o *Overlay) removeStale(link netlink.Link, st *state, wantFDB map[string]netip.Addr, wantNeigh map[netip.Addr]string, wantRoute map[netip.Prefix]bool) []error {
	var errs []error
	for dst, r := range st.routes {
		if wantRoute[dst] {
			continue
		}
		if err := o.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("overlay: delete route %v: %w", dst, err))
			continue
		}
		o.log.Info("overlay route removed", "subnet", dst)
	}
	for ip, n := range st.neigh {
		if _, ok := wantNeigh[ip]; ok || n.State != netlink.NUD_PERMANENT {
			continue // the kernel's own entries age out by themselves
		}
		if err := o.h.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("overlay: delete neighbour %v: %w", ip, err))
			continue
		}
		o.log.Info("overlay neighbour removed", "vtep", ip)
	}
	for mac, dst := range st.fdb {
		if _, ok := wantFDB[mac]; ok {
			continue
		}
		hw, err := net.ParseMAC(mac)
		if err != nil {
			continue
		}
		n := netlink.Neigh{LinkIndex: link.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, HardwareAddr: hw}
		if dst.IsValid() {
			n.IP = dst.AsSlice()
		}
		if err := o.h.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("overlay: delete FDB %v -> %v: %w", mac, dst, err))
			continue
		}
		o.log.Info("overlay FDB removed", "mac", mac, "underlay", dst)
	}
	return errs
}

// localAddrs is the set of IPv4 addresses of this namespace.
func (o *Overlay) localAddrs() (map[netip.Addr]bool, error) {
	addrs, err := o.h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("overlay: list addresses: %w", err)
	}
	out := map[netip.Addr]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			out[ip] = true
		}
	}
	return out, nil
}

// ensureLink returns our vxlan device, configured and up, creating it when
// missing; nil (and no error) when another device in this namespace owns our
// VNI and port.
func (o *Overlay) ensureLink() (netlink.Link, error) {
	want := o.wantLink()
	l, err := o.h.LinkByName(o.cfg.Device)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		l = nil
	case err != nil:
		return nil, fmt.Errorf("overlay: look up device %s: %w", o.cfg.Device, err)
	}
	if l != nil {
		vx, ok := l.(*netlink.Vxlan)
		if !ok {
			return nil, fmt.Errorf("overlay: device %s exists and is a %s, not vxlan: remove it or choose another overlay device name", o.cfg.Device, l.Type())
		}
		if why := incompatible(vx, want); why != "" {
			// Only our own configuration changed (VNI, port, address):
			// the old device cannot carry the new one.
			o.log.Warn("overlay device has another configuration; recreating it", "reason", why)
			if err := o.h.LinkDel(vx); err != nil {
				return nil, fmt.Errorf("overlay: delete outdated device %s: %w", o.cfg.Device, err)
			}
			l = nil
		}
	}
	if l == nil {
		if owner, err := o.vniOwner(); err != nil {
			return nil, err
		} else if owner != "" {
			if o.deferTo != owner {
				o.log.Warn("another node on this kernel owns the overlay; leaving it to that device",
					"owner", owner, "vni", o.cfg.VNI, "port", o.cfg.Port)
				o.deferTo = owner
			}
			return nil, nil
		}
		if err := o.h.LinkAdd(want); err != nil {
			return nil, fmt.Errorf("overlay: create vxlan device %s (VNI %d, port %d): %w", o.cfg.Device, o.cfg.VNI, o.cfg.Port, err)
		}
		o.log.Info("overlay device created", "vni", o.cfg.VNI, "port", o.cfg.Port, "underlay", o.cfg.UnderlayIP, "mtu", o.mtu)
		if l, err = o.h.LinkByName(o.cfg.Device); err != nil {
			return nil, fmt.Errorf("overlay: look up created device %s: %w", o.cfg.Device, err)
		}
		// No IPv6 link-local address (set while still down): nothing of
		// ours speaks IPv6 over the overlay, and it would only send router
		// solicitations into it.
		if err := o.h.LinkSetIP6AddrGenMode(l, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
			o.log.Debug("overlay: ipv6 addrgenmode none", "err", err)
		}
	}
	o.deferTo = ""
	attrs := l.Attrs()
	if attrs.MTU != o.mtu {
		if err := o.h.LinkSetMTU(l, o.mtu); err != nil {
			return nil, fmt.Errorf("overlay: set MTU %d on %s: %w", o.mtu, o.cfg.Device, err)
		}
	}
	if o.cfg.Alias != "" && attrs.Alias != o.cfg.Alias {
		if err := o.h.LinkSetAlias(l, o.cfg.Alias); err != nil {
			return nil, fmt.Errorf("overlay: set alias of %s: %w", o.cfg.Device, err)
		}
	}
	if mac := MACFor(o.cfg.LocalSubnet); !bytes.Equal(attrs.HardwareAddr, mac) {
		if err := o.h.LinkSetHardwareAddr(l, mac); err != nil {
			return nil, fmt.Errorf("overlay: set MAC %v on %s: %w", mac, o.cfg.Device, err)
		}
	}
	if err := o.ensureAddr(l); err != nil {
		return nil, err
	}
	if attrs.Flags&net.FlagUp == 0 {
		if err := o.h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("overlay: set %s up: %w", o.cfg.Device, err)
		}
	}
	return l, nil
}

func (o *Overlay) wantLink() *netlink.Vxlan {
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{
			Name:         o.cfg.Device,
			MTU:          o.mtu,
			HardwareAddr: MACFor(o.cfg.LocalSubnet),
		},
		VxlanId: o.cfg.VNI,
		SrcAddr: o.cfg.UnderlayIP.AsSlice(),
		Port:    o.cfg.Port,
		// No learning: every peer's MAC and underlay address are known from
		// the node table and installed as static entries, so the kernel has
		// nothing to learn; learning would let any packet that reaches our
		// port rewrite where a MAC lives.
		Learning: false,
	}
	if o.cfg.UnderlayDev != "" {
		if l, err := o.h.LinkByName(o.cfg.UnderlayDev); err == nil {
			vx.VtepDevIndex = l.Attrs().Index
		}
	}
	return vx
}

// incompatible says why an existing vxlan device cannot serve as want, or "".
func incompatible(have, want *netlink.Vxlan) string {
	switch {
	case have.VxlanId != want.VxlanId:
		return fmt.Sprintf("VNI %d, want %d", have.VxlanId, want.VxlanId)
	case have.Port != want.Port:
		return fmt.Sprintf("port %d, want %d", have.Port, want.Port)
	case !have.SrcAddr.Equal(want.SrcAddr):
		return fmt.Sprintf("local address %v, want %v", have.SrcAddr, want.SrcAddr)
	case have.VtepDevIndex != want.VtepDevIndex:
		return fmt.Sprintf("underlay device index %d, want %d", have.VtepDevIndex, want.VtepDevIndex)
	case have.Learning:
		return "learning on"
	case have.Group != nil && !have.Group.IsUnspecified():
		return fmt.Sprintf("multicast group %v", have.Group)
	case have.FlowBased:
		return "external (flow-based)"
	case have.L2miss || have.L3miss:
		return "l2miss/l3miss on"
	}
	return ""
}

// vniOwner names another vxlan device of this namespace that already carries
// our VNI on our port, or "". The kernel refuses a second one.
func (o *Overlay) vniOwner() (string, error) {
	links, err := o.h.LinkList()
	if err != nil {
		return "", fmt.Errorf("overlay: list devices: %w", err)
	}
	for _, l := range links {
		if vx, ok := l.(*netlink.Vxlan); ok && vx.Name != o.cfg.Device && vx.VxlanId == o.cfg.VNI && vx.Port == o.cfg.Port {
			return vx.Name, nil
		}
	}
	return "", nil
}

// ensureAddr leaves exactly our VTEP address (/32) on the device.
func (o *Overlay) ensureAddr(l netlink.Link) error {
	want := VTEPAddr(o.cfg.LocalSubnet)
	addrs, err := o.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("overlay: list addresses of %s: %w", o.cfg.Device, err)
	}
	have := false
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		if ones, _ := a.Mask.Size(); ip == want && ones == 32 {
			have = true
			continue
		}
		if err := o.h.AddrDel(l, &a); err != nil {
			return fmt.Errorf("overlay: remove old address %v from %s: %w", a.IPNet, o.cfg.Device, err)
		}
	}
	if have {
		return nil
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: want.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := o.h.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("overlay: add VTEP address %v to %s: %w", want, o.cfg.Device, err)
	}
	return nil
}

// Close releases the netlink handle. With remove false (a daemon stopping or
// restarting) the device and every entry stay, so container traffic keeps
// flowing and the next Sync adopts them. With remove true (leave) the device
// is deleted, and the kernel deletes its FDB, neighbours and routes with it.
// A node that deferred to another node's device removes nothing.
func (o *Overlay) Close(remove bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	defer o.h.Close()
	if !remove {
		return nil
	}
	l, err := o.h.LinkByName(o.cfg.Device)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("overlay: look up device %s: %w", o.cfg.Device, err)
	}
	if _, ok := l.(*netlink.Vxlan); !ok {
		return fmt.Errorf("overlay: device %s is a %s, not ours; leaving it", o.cfg.Device, l.Type())
	}
	if err := o.h.LinkDel(l); err != nil {
		return fmt.Errorf("overlay: delete device %s: %w", o.cfg.Device, err)
	}
	o.log.Info("overlay device removed")
	return nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits != 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip, ones), true
}
