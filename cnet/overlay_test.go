package cnet

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/cnet/ipam"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const testDev = "swlcn-vx0"

// kstate is what the kernel holds on an overlay device, as sorted strings.
type kstate struct {
	FDB    []string // "MAC dst UNDERLAY"
	Neigh  []string // "VTEP lladdr MAC"
	Routes []string // "SUBNET via VTEP onlink"
}

func (k kstate) String() string {
	return fmt.Sprintf("fdb %q\nneigh %q\nroutes %q", k.FDB, k.Neigh, k.Routes)
}

func (k kstate) equal(o kstate) bool {
	return slices.Equal(k.FDB, o.FDB) && slices.Equal(k.Neigh, o.Neigh) && slices.Equal(k.Routes, o.Routes)
}

// expect is the state an overlay should hold for these peers.
func expect(peers ...Peer) kstate {
	var k kstate
	for _, p := range peers {
		mac := MACFor(p.Subnet)
		k.FDB = append(k.FDB, fmt.Sprintf("%s dst %s", mac, p.UnderlayIP))
		k.Neigh = append(k.Neigh, fmt.Sprintf("%s lladdr %s", VTEPAddr(p.Subnet), mac))
		k.Routes = append(k.Routes, fmt.Sprintf("%s via %s onlink", p.Subnet, VTEPAddr(p.Subnet)))
	}
	slices.Sort(k.FDB)
	slices.Sort(k.Neigh)
	slices.Sort(k.Routes)
	return k
}

// dump reads the device's index and entries; index 0 means no device.
func dump(t testing.TB, nl *netlink.Handle, dev string) (int, kstate) {
	t.Helper()
	l, err := nl.LinkByName(dev)
	if _, ok := err.(netlink.LinkNotFoundError); ok {
		return 0, kstate{}
	}
	must(t, "look up "+dev, err)
	idx := l.Attrs().Index
	var k kstate
	fdb, err := nl.NeighList(idx, unix.AF_BRIDGE)
	must(t, "fdb", err)
	for _, n := range fdb {
		if n.LinkIndex == idx {
			k.FDB = append(k.FDB, fmt.Sprintf("%s dst %s", n.HardwareAddr, n.IP))
		}
	}
	neigh, err := nl.NeighList(idx, unix.AF_INET)
	must(t, "neigh", err)
	for _, n := range neigh {
		if n.LinkIndex == idx && n.State == netlink.NUD_PERMANENT {
			k.Neigh = append(k.Neigh, fmt.Sprintf("%s lladdr %s", n.IP, n.HardwareAddr))
		}
	}
	routes, err := nl.RouteList(l, netlink.FAMILY_V4)
	must(t, "routes", err)
	for _, r := range routes {
		if r.Dst == nil || r.Table != unix.RT_TABLE_MAIN {
			continue
		}
		s := fmt.Sprintf("%s via %s", r.Dst, r.Gw)
		if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			s += " onlink"
		}
		if r.Protocol != RouteProtocol {
			s += fmt.Sprintf(" proto %d", r.Protocol)
		}
		k.Routes = append(k.Routes, s)
	}
	slices.Sort(k.FDB)
	slices.Sort(k.Neigh)
	slices.Sort(k.Routes)
	return idx, k
}

func checkState(t testing.TB, h *host, want kstate) {
	t.Helper()
	idx, got := dump(t, h.ns.Netlink(t), testDev)
	if idx == 0 {
		t.Fatalf("%s: no device %s", h.name, testDev)
	}
	if !got.equal(want) {
		t.Fatalf("%s: kernel holds\n%v\nwant\n%v", h.name, got, want)
	}
}

func syncOK(t testing.TB, o *Overlay, tab Table) {
	t.Helper()
	if err := o.Sync(context.Background(), tab); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// Two hosts, one table: containers reach each other across hosts through the
// vxlan with their own addresses; a peer taken out of the table loses its
// entries; Close(true) removes the device.
func TestOverlayCrossHost(t *testing.T) {
	h1, h2 := newBed(t)
	o1, o2 := h1.overlay(t, testDev), h2.overlay(t, testDev)
	tab := Table{Peers: []Peer{h1.peer(), h2.peer()}}
	syncOK(t, o1, tab)
	syncOK(t, o2, tab)

	// The device is what flannel's vxlan backend makes.
	l, err := h1.ns.Netlink(t).LinkByName(testDev)
	must(t, "device", err)
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s is a %s", testDev, l.Type())
	}
	if vx.VxlanId != DefaultVNI || vx.Port != DefaultPort || vx.Learning || !vx.SrcAddr.Equal(h1.underlay.AsSlice()) ||
		vx.MTU != 1500-EncapOverhead || vx.HardwareAddr.String() != MACFor(h1.subnet).String() || vx.Flags&net.FlagUp == 0 {
		t.Fatalf("device: vni %d port %d learning %v local %v mtu %d mac %v flags %v", vx.VxlanId, vx.Port, vx.Learning, vx.SrcAddr, vx.MTU, vx.HardwareAddr, vx.Flags)
	}
	if o1.MTU() != 1450 {
		t.Errorf("MTU() = %d, want 1450", o1.MTU())
	}
	addrs, err := h1.ns.Netlink(t).AddrList(l, netlink.FAMILY_V4)
	must(t, "addresses", err)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.42.1.0/32" {
		t.Fatalf("device addresses %v, want 10.42.1.0/32", addrs)
	}
	checkState(t, h1, expect(h2.peer()))
	checkState(t, h2, expect(h1.peer()))

	// Container to container, both ways, 1 MiB each (full-size segments at
	// the overlay's MTU), with no NAT: the server sees the caller's address.
	echoServer(t, h2.ctr, "10.42.2.2:7000")
	echoServer(t, h1.ctr, "10.42.1.2:7000")
	if seen, err := echo(h1.ctr, "10.42.2.2:7000", 1<<20); err != nil || seen != "10.42.1.2" {
		t.Fatalf("container on n1 to container on n2: seen %q, %v", seen, err)
	}
	if seen, err := echo(h2.ctr, "10.42.1.2:7000", 1<<20); err != nil || seen != "10.42.2.2" {
		t.Fatalf("container on n2 to container on n1: seen %q, %v", seen, err)
	}
	// The host itself reaches remote containers from its VTEP address.
	if seen, err := echo(h1.ns, "10.42.2.2:7000", 1<<16); err != nil || seen != "10.42.1.0" {
		t.Fatalf("host n1 to container on n2: seen %q, %v", seen, err)
	}

	// n2 leaves the table: n1 keeps nothing of it.
	syncOK(t, o1, Table{Peers: []Peer{h1.peer()}})
	checkState(t, h1, kstate{})
	if _, err := echo(h1.ctr, "10.42.2.2:7000", 1); err == nil {
		t.Fatal("container on n1 still reaches n2 after n2 left n1's table")
	}
	// And comes back.
	syncOK(t, o1, tab)
	checkState(t, h1, expect(h2.peer()))
	if _, err := echo(h1.ctr, "10.42.2.2:7000", 1<<16); err != nil {
		t.Fatalf("after n2 came back: %v", err)
	}

	// leave: the device and everything on it go.
	must(t, "Close(true)", o1.Close(true))
	if idx, _ := dump(t, h1.ns.Netlink(t), testDev); idx != 0 {
		t.Fatal("device still there after Close(true)")
	}
	routes, err := h1.ns.Netlink(t).RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: RouteProtocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	must(t, "routes", err)
	if len(routes) != 0 {
		t.Fatalf("routes left after Close(true): %v", routes)
	}
	if err := o1.Sync(context.Background(), tab); err != ErrClosed {
		t.Fatalf("Sync after Close = %v, want ErrClosed", err)
	}
}

// A daemon restart must not interrupt traffic: Sync again, or Close(false)
// and a new Overlay adopting the device, sends the kernel no change at all
// (no netlink event on the device, its addresses, routes, neighbours or FDB),
// and a connection open across the restart keeps working. (The kernel itself
// sends no event for a write identical to what it holds, so what this catches
// is what would hurt traffic: an entry deleted and re-added, a device
// recreated.)
func TestOverlayRestartIsQuiet(t *testing.T) {
	h1, h2 := newBed(t)
	o1, o2 := h1.overlay(t, testDev), h2.overlay(t, testDev)
	tab := Table{Peers: []Peer{h1.peer(), h2.peer()}}
	syncOK(t, o1, tab)
	syncOK(t, o2, tab)
	nl := h1.ns.Netlink(t)
	idx0, st0 := dump(t, nl, testDev)

	echoServer(t, h2.ctr, "10.42.2.2:7000")
	var conn net.Conn
	must(t, "dial before restart", h1.ctr.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", "10.42.2.2:7000", 2*time.Second)
		return err
	}))
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	greeting := make([]byte, len("10.42.1.2\n"))
	_, err := io.ReadFull(conn, greeting)
	must(t, "greeting", err)

	w := watch(t, h1.ns)
	syncOK(t, o1, tab) // the same table again
	must(t, "Close(false)", o1.Close(false))
	if idx, _ := dump(t, nl, testDev); idx != idx0 {
		t.Fatalf("Close(false) changed the device: index %d -> %d", idx0, idx)
	}
	o1 = h1.overlay(t, testDev) // the restarted daemon
	syncOK(t, o1, tab)
	syncOK(t, o1, Table{Peers: []Peer{h2.peer(), h1.peer()}}) // order does not matter
	if ev := w.until(t, h1.ns, idx0); len(ev) > 0 {
		t.Fatalf("Sync on a correct device changed the kernel:\n%s", strings.Join(ev, "\n"))
	}
	idx1, st1 := dump(t, nl, testDev)
	if idx1 != idx0 || !st1.equal(st0) {
		t.Fatalf("after restart: index %d (was %d)\n%v\nwas\n%v", idx1, idx0, st1, st0)
	}
	// The connection opened before the restart still carries data.
	if _, err := conn.Write([]byte("after")); err != nil {
		t.Fatalf("write after restart: %v", err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "after" {
		t.Fatalf("echo after restart: %q, %v", got, err)
	}

	// Control: the watcher does see a Sync that changes something.
	w = watch(t, h1.ns)
	syncOK(t, o1, Table{Peers: []Peer{h1.peer()}})
	if ev := w.until(t, h1.ns, idx0); len(ev) < 3 {
		t.Fatalf("removing a peer showed %d events, want its route, neighbour and FDB entry: %q", len(ev), ev)
	}
}

// Sync repairs whatever differs from the table and removes strays from its
// own device only.
func TestOverlayReconcile(t *testing.T) {
	h1, h2 := newBed(t)
	nl := h1.ns.Netlink(t)
	o := h1.overlay(t, testDev)
	p2 := h2.peer()
	p3 := Peer{ID: "n3", UnderlayIP: netip.MustParseAddr("198.18.61.3"), Subnet: netip.MustParsePrefix("10.42.3.0/24")}
	p4 := Peer{ID: "n4", UnderlayIP: netip.MustParseAddr("198.18.61.4"), Subnet: netip.MustParsePrefix("10.42.4.0/24")}
	syncOK(t, o, Table{Peers: []Peer{h1.peer(), p2, p3, p4}})
	checkState(t, h1, expect(p2, p3, p4))
	idx, _ := dump(t, nl, testDev)

	// n3 moves to another underlay address: its FDB entry follows in place.
	p3moved := p3
	p3moved.UnderlayIP = netip.MustParseAddr("198.18.61.33")
	syncOK(t, o, Table{Peers: []Peer{p2, p3moved, p4}})
	checkState(t, h1, expect(p2, p3moved, p4))

	// Strays on our device: n2's MAC pointing at the wrong host, a route,
	// neighbour and FDB entry of a node long gone, n4's neighbour pointing at
	// the wrong MAC, n4's route deleted by hand. A route added by hand with
	// another protocol is the operator's and stays; so does the kernel's
	// route on another device.
	gone := Peer{ID: "gone", UnderlayIP: netip.MustParseAddr("198.18.61.9"), Subnet: netip.MustParsePrefix("10.42.9.0/24")}
	fdb := func(p Peer, mac net.HardwareAddr) *netlink.Neigh {
		return &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF, IP: p.UnderlayIP.AsSlice(), HardwareAddr: mac}
	}
	must(t, "wrong fdb", nl.NeighSet(fdb(Peer{UnderlayIP: netip.MustParseAddr("198.18.61.99")}, MACFor(p2.Subnet))))
	must(t, "stray fdb", nl.NeighSet(fdb(gone, MACFor(gone.Subnet))))
	must(t, "stray neigh", nl.NeighSet(&netlink.Neigh{LinkIndex: idx, State: netlink.NUD_PERMANENT, IP: VTEPAddr(gone.Subnet).AsSlice(), HardwareAddr: MACFor(gone.Subnet)}))
	must(t, "wrong neigh", nl.NeighSet(&netlink.Neigh{LinkIndex: idx, State: netlink.NUD_PERMANENT, IP: VTEPAddr(p4.Subnet).AsSlice(), HardwareAddr: MACFor(gone.Subnet)}))
	stray := o.route(idx, peerEntry{subnet: gone.Subnet, vtep: VTEPAddr(gone.Subnet)})
	must(t, "stray route", nl.RouteAdd(&stray))
	r4 := o.route(idx, peerEntry{subnet: p4.Subnet, vtep: VTEPAddr(p4.Subnet)})
	must(t, "delete n4 route", nl.RouteDel(&r4))
	manual := netlink.Route{LinkIndex: idx, Dst: ipnet(netip.MustParsePrefix("192.0.2.0/24"), netip.MustParseAddr("192.0.2.0")), Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_STATIC}
	must(t, "manual route", nl.RouteAdd(&manual))

	if _, st := dump(t, nl, testDev); !slices.Contains(st.FDB, "02:73:0a:2a:02:00 dst 198.18.61.99") {
		t.Fatalf("stray FDB entry did not take:\n%v", st)
	}
	syncOK(t, o, Table{Peers: []Peer{p2, p3moved, p4}})
	want := expect(p2, p3moved, p4)
	want.Routes = append(want.Routes, "192.0.2.0/24 via <nil> proto 4")
	slices.Sort(want.Routes)
	checkState(t, h1, want)
	if i, _ := dump(t, nl, testDev); i != idx {
		t.Fatalf("device recreated: index %d -> %d", idx, i)
	}
	// The host's own bridge route is untouched.
	br, err := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: ipnet(h1.subnet, VTEPAddr(h1.subnet))}, netlink.RT_FILTER_DST)
	must(t, "bridge route", err)
	if len(br) != 1 || br[0].LinkIndex == idx {
		t.Fatalf("route to the local subnet: %v", br)
	}
}

// A bad row of the table is reported and skipped; the good rows are still
// programmed.
func TestOverlayBadPeers(t *testing.T) {
	h1, h2 := newBed(t)
	o := h1.overlay(t, testDev)
	p2 := h2.peer()
	bad := []Peer{
		{ID: "v6", UnderlayIP: netip.MustParseAddr("fd00::1"), Subnet: netip.MustParsePrefix("10.42.5.0/24")},
		{ID: "host-bits", UnderlayIP: netip.MustParseAddr("198.18.61.5"), Subnet: netip.MustParsePrefix("10.42.5.1/24")},
		{ID: "overlaps-local", UnderlayIP: netip.MustParseAddr("198.18.61.6"), Subnet: netip.MustParsePrefix("10.42.0.0/16")},
		{ID: "overlaps-n2", UnderlayIP: netip.MustParseAddr("198.18.61.7"), Subnet: netip.MustParsePrefix("10.42.2.128/25")},
		{ID: "same-mac", UnderlayIP: netip.MustParseAddr("198.18.61.8"), Subnet: netip.MustParsePrefix("10.42.8.0/24"), VTEPMAC: MACFor(p2.Subnet)},
	}
	// A subnet something else already routes here is not taken from it.
	nl := h1.ns.Netlink(t)
	u, err := nl.LinkByName("swlcn-u0")
	must(t, "underlay", err)
	other := netlink.Route{LinkIndex: u.Attrs().Index, Dst: ipnet(netip.MustParsePrefix("10.42.7.0/24"), netip.MustParseAddr("10.42.7.0")), Scope: netlink.SCOPE_LINK}
	must(t, "other route", nl.RouteAdd(&other))
	bad = append(bad, Peer{ID: "routed-elsewhere", UnderlayIP: netip.MustParseAddr("198.18.61.7"), Subnet: netip.MustParsePrefix("10.42.7.0/24")})

	err = o.Sync(context.Background(), Table{Peers: append([]Peer{p2}, bad...)})
	if err == nil {
		t.Fatal("Sync accepted bad peers")
	}
	for _, p := range bad {
		if !strings.Contains(err.Error(), "peer "+p.ID+":") {
			t.Errorf("error does not name peer %s: %v", p.ID, err)
		}
	}
	if !strings.Contains(err.Error(), "on device swlcn-u0") {
		t.Errorf("error does not name the device holding 10.42.7.0/24: %v", err)
	}
	checkState(t, h1, expect(p2))
	rs, err := nl.RouteListFiltered(netlink.FAMILY_V4, &other, netlink.RT_FILTER_DST)
	must(t, "routes", err)
	if len(rs) != 1 || rs[0].LinkIndex != u.Attrs().Index {
		t.Fatalf("the other route to 10.42.7.0/24 was touched: %v", rs)
	}
}

// Nodes on one machine share one kernel (the one-machine demo). Their
// containers reach each other through their own bridges, so no node programs
// the others; the kernel allows one vxlan device per VNI and port, so the
// first node owns it and a second node's Sync leaves it alone without error,
// and takes over when the first one leaves.
func TestOverlaySharedKernel(t *testing.T) {
	a, c := newBed(t) // a: 10.42.1.0/24 at .1; c: 10.42.2.0/24 at .2, another host
	nl := a.ns.Netlink(t)
	// Node b runs in a's namespace: its own address and its own bridge.
	b := &host{name: "n3", ns: a.ns, underlay: netip.MustParseAddr("198.18.61.3"), subnet: netip.MustParsePrefix("10.42.3.0/24")}
	u, err := nl.LinkByName("swlcn-u0")
	must(t, "underlay", err)
	must(t, "b's address", nl.AddrAdd(u, &netlink.Addr{IPNet: ipnet(netip.MustParsePrefix("198.18.61.0/24"), b.underlay)}))
	brb := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "swlcn-br3"}}
	must(t, "b's bridge", nl.LinkAdd(brb))
	must(t, "b's gateway", nl.AddrAdd(brb, &netlink.Addr{IPNet: ipnet(b.subnet, ipam.Gateway(b.subnet))}))
	must(t, "b's bridge up", nl.LinkSetUp(brb))

	tab := Table{Peers: []Peer{a.peer(), b.peer(), c.peer()}}
	oa := a.overlay(t, testDev)
	ob := b.overlay(t, "swlcn-vx1")
	syncOK(t, oa, tab)
	syncOK(t, ob, tab)
	checkState(t, a, expect(c.peer())) // not b: b shares a's kernel
	if idx, _ := dump(t, nl, "swlcn-vx1"); idx != 0 {
		t.Fatal("b made a second vxlan device with the same VNI and port")
	}
	// a's containers still reach c's.
	oc := c.overlay(t, testDev)
	syncOK(t, oc, tab)
	echoServer(t, c.ctr, "10.42.2.2:7000")
	if _, err := echo(a.ctr, "10.42.2.2:7000", 1<<16); err != nil {
		t.Fatalf("a's container to c's: %v", err)
	}

	// a leaves; b's next Sync takes the overlay over.
	must(t, "a leaves", oa.Close(true))
	syncOK(t, ob, Table{Peers: []Peer{b.peer(), c.peer()}})
	if idx, st := dump(t, nl, "swlcn-vx1"); idx == 0 || !st.equal(expect(c.peer())) {
		t.Fatalf("b after a left: index %d\n%v", idx, st)
	}
}

func TestOverlayConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"long device name", Config{Device: "swlcn-much-too-long", UnderlayIP: netip.MustParseAddr("198.18.61.1"), LocalSubnet: netip.MustParsePrefix("10.42.1.0/24")}, "longer than 15"},
		{"vni", Config{VNI: 1 << 24, UnderlayIP: netip.MustParseAddr("198.18.61.1"), LocalSubnet: netip.MustParsePrefix("10.42.1.0/24")}, "VNI"},
		{"port", Config{Port: 70000, UnderlayIP: netip.MustParseAddr("198.18.61.1"), LocalSubnet: netip.MustParsePrefix("10.42.1.0/24")}, "port"},
		{"no underlay", Config{LocalSubnet: netip.MustParsePrefix("10.42.1.0/24")}, "not IPv4"},
		{"v6 underlay", Config{UnderlayIP: netip.MustParseAddr("fd00::1"), LocalSubnet: netip.MustParsePrefix("10.42.1.0/24")}, "not IPv4"},
		{"subnet host bits", Config{UnderlayIP: netip.MustParseAddr("198.18.61.1"), LocalSubnet: netip.MustParsePrefix("10.42.1.1/24")}, "network address"},
		{"mtu", Config{MTU: 40, UnderlayIP: netip.MustParseAddr("198.18.61.1"), LocalSubnet: netip.MustParsePrefix("10.42.1.0/24")}, "MTU"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// The underlay address must be this host's: it is the source of every
// encapsulated packet and what the MTU is derived from.
func TestOverlayForeignUnderlay(t *testing.T) {
	ns := newTestNS(t)
	_, err := New(Config{UnderlayIP: netip.MustParseAddr("198.18.61.1"), LocalSubnet: netip.MustParsePrefix("10.42.1.0/24"), NetNSFd: ns.Fd()})
	if err == nil || !strings.Contains(err.Error(), "on no device") {
		t.Fatalf("New with a foreign underlay address = %v", err)
	}
}

var sentinels atomic.Int32

// watcher records netlink events in a namespace.
type watcher struct {
	links  chan netlink.LinkUpdate
	addrs  chan netlink.AddrUpdate
	routes chan netlink.RouteUpdate
	neighs chan netlink.NeighUpdate
}

func watch(t testing.TB, ns *testNS) *watcher {
	t.Helper()
	w := &watcher{make(chan netlink.LinkUpdate, 256), make(chan netlink.AddrUpdate, 256), make(chan netlink.RouteUpdate, 256), make(chan netlink.NeighUpdate, 256)}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	h := ns.Handle()
	must(t, "subscribe links", netlink.LinkSubscribeWithOptions(w.links, done, netlink.LinkSubscribeOptions{Namespace: &h}))
	must(t, "subscribe addrs", netlink.AddrSubscribeWithOptions(w.addrs, done, netlink.AddrSubscribeOptions{Namespace: &h}))
	must(t, "subscribe routes", netlink.RouteSubscribeWithOptions(w.routes, done, netlink.RouteSubscribeOptions{Namespace: &h}))
	must(t, "subscribe neighs", netlink.NeighSubscribeWithOptions(w.neighs, done, netlink.NeighSubscribeOptions{Namespace: &h}))
	return w
}

// until makes a sentinel change in ns (a veth pair with an address and a
// neighbour: one event on each group) and returns every event about device
// idx, or about a route into the container pool, that arrived before the
// sentinel's. Netlink delivers each group's events in order, so whatever
// happened before the sentinel has been seen once the sentinel has.
func (w *watcher) until(t testing.TB, ns *testNS, idx int) []string {
	t.Helper()
	nl := ns.Netlink(t)
	n := sentinels.Add(1)
	mk := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("swlcn-mk%da", n)}, PeerName: fmt.Sprintf("swlcn-mk%db", n)}
	must(t, "sentinel link", nl.LinkAdd(mk))
	l, err := nl.LinkByName(mk.Name)
	must(t, "sentinel link", err)
	mark := l.Attrs().Index
	must(t, "sentinel up", nl.LinkSetUp(l))
	must(t, "sentinel addr", nl.AddrAdd(l, &netlink.Addr{IPNet: ipnet(netip.MustParsePrefix("198.19.0.0/24"), netip.MustParseAddr("198.19.0.1"))}))
	must(t, "sentinel neigh", nl.NeighSet(&netlink.Neigh{LinkIndex: mark, State: netlink.NUD_PERMANENT, IP: net.ParseIP("198.19.0.2"), HardwareAddr: MACFor(netip.MustParsePrefix("198.19.0.0/24"))}))

	var ev []string
	pool := ipam.DefaultPool
	deadline := time.After(5 * time.Second)
	for seen := 0; seen < 4; {
		select {
		case u := <-w.links:
			if u.Index == int32(mark) {
				seen++
				w.links = nil
			} else if int(u.Index) == idx {
				ev = append(ev, fmt.Sprintf("link %d %s flags %v", u.Header.Type, u.Attrs().Name, u.Attrs().Flags))
			}
		case u := <-w.addrs:
			if u.LinkIndex == mark {
				seen++
				w.addrs = nil
			} else if u.LinkIndex == idx {
				ev = append(ev, fmt.Sprintf("addr new=%v %v", u.NewAddr, u.LinkAddress))
			}
		case u := <-w.routes:
			if u.LinkIndex == mark {
				seen++
				w.routes = nil
			} else if u.LinkIndex == idx || (u.Dst != nil && inPool(pool, u.Dst)) {
				ev = append(ev, fmt.Sprintf("route %d %v", u.Type, u.Route))
			}
		case u := <-w.neighs:
			if u.LinkIndex == mark {
				seen++
				w.neighs = nil
			} else if u.LinkIndex == idx {
				ev = append(ev, fmt.Sprintf("neigh %d %v %v", u.Type, u.IP, u.HardwareAddr))
			}
		case <-deadline:
			t.Fatalf("sentinel events not seen within 5s (%d of 4)", seen)
		}
	}
	return ev
}

func inPool(pool netip.Prefix, n *net.IPNet) bool {
	p, ok := prefixOf(n)
	return ok && pool.Overlaps(p)
}
