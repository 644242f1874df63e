package cnet

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/cnet/ipam"
)

// Containers reaching outside the pool (another host's own address) leave
// masqueraded as their host; traffic to the pool keeps the container's
// address; RemoveMasquerade takes the rule away again.
func TestMasquerade(t *testing.T) {
	requireIPTables(t)
	h1, h2 := newBed(t)
	tab := Table{Peers: []Peer{h1.peer(), h2.peer()}}
	syncOK(t, h1.overlay(t, testDev), tab)
	syncOK(t, h2.overlay(t, testDev), tab)
	echoServer(t, h2.ctr, "10.42.2.2:7000")
	hostAddr := netip.AddrPortFrom(h2.underlay, 7001).String()
	echoServer(t, h2.ns, hostAddr)
	allow := func() error {
		return h1.ns.Do(func() error { return AllowMasquerade(h1.subnet, ipam.DefaultPool, "n1") })
	}
	remove := func() error {
		return h1.ns.Do(func() error { return RemoveMasquerade(h1.subnet, ipam.DefaultPool, "n1") })
	}

	// Without the masquerade h2 answers the container through the overlay,
	// so the container's own address arrives: that is what must change.
	if seen, err := echo(h1.ctr, hostAddr, 1); err != nil || seen != "10.42.1.2" {
		t.Fatalf("before the masquerade: seen %q, %v", seen, err)
	}
	must(t, "AllowMasquerade", allow())
	must(t, "AllowMasquerade again", allow())
	out, err := h1.ns.Run("iptables", "-w", "5", "-t", "nat", "-S", "POSTROUTING")
	must(t, "list POSTROUTING", err)
	if n := strings.Count(out, fwComment); n != 1 {
		t.Fatalf("after AllowMasquerade twice, %d rules of ours:\n%s", n, out)
	}
	if seen, err := echo(h1.ctr, hostAddr, 1<<16); err != nil || seen != h1.underlay.String() {
		t.Fatalf("to another host's address: seen %q, %v; want the host's %s", seen, err, h1.underlay)
	}
	if seen, err := echo(h1.ctr, "10.42.2.2:7000", 1<<16); err != nil || seen != "10.42.1.2" {
		t.Fatalf("to a container on another host: seen %q, %v; want the container's own address", seen, err)
	}
	must(t, "RemoveMasquerade", remove())
	must(t, "RemoveMasquerade again", remove())
	out, _ = h1.ns.Run("iptables", "-w", "5", "-t", "nat", "-S", "POSTROUTING")
	if strings.Contains(out, fwComment) {
		t.Fatalf("after RemoveMasquerade:\n%s", out)
	}
}

// The service range routes to the host: a VIP-range address binds and is
// reached locally, and nothing is routed anywhere else.
func TestServiceRoute(t *testing.T) {
	ns := newTestNS(t)
	services := netip.MustParsePrefix("10.43.0.0/16")
	dial := func(addr string) error { return reach(ns, addr, 300*time.Millisecond) }
	if err := dial("10.43.0.5:7000"); err == nil {
		t.Fatal("10.43.0.5 is reachable before the route exists")
	}
	must(t, "EnsureServiceRoute", EnsureServiceRoute(services, ns.Fd()))
	must(t, "EnsureServiceRoute again", EnsureServiceRoute(services, ns.Fd()))
	out, err := ns.Run("ip", "route", "show", "table", "local", "proto", "83")
	must(t, "list routes", err)
	if strings.Count(out, "local 10.43.0.0/16 dev lo") != 1 {
		t.Fatalf("local table:\n%s", out)
	}
	var ln net.Listener
	must(t, "listen on a VIP", ns.Do(func() (err error) { ln, err = net.Listen("tcp", "10.43.0.5:7000"); return err }))
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	must(t, "dial the VIP", dial("10.43.0.5:7000"))
	if err := dial("10.43.0.6:7000"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("an unmatched VIP: %v, want connection refused by this host", err)
	}
	must(t, "RemoveServiceRoute", RemoveServiceRoute(services, ns.Fd()))
	must(t, "RemoveServiceRoute again", RemoveServiceRoute(services, ns.Fd()))
	if out, _ := ns.Run("ip", "route", "show", "table", "local", "proto", "83"); strings.TrimSpace(out) != "" {
		t.Fatalf("after RemoveServiceRoute:\n%s", out)
	}
}

// A device carries its owner in its alias; Devices finds it and RemoveDevice
// deletes it, refusing anything that is not vxlan.
func TestDevices(t *testing.T) {
	h1, h2 := newBed(t)
	o, err := New(Config{Device: "swl-tst1", UnderlayIP: h1.underlay, LocalSubnet: h1.subnet, NetNSFd: h1.ns.Fd(),
		Logger: testLogger(t), Alias: "swarmlet cluster=c1 node=n1"})
	must(t, "New", err)
	t.Cleanup(func() { o.Close(false) })
	syncOK(t, o, Table{Peers: []Peer{h1.peer(), h2.peer()}})
	devs, err := Devices("swl-", h1.ns.Fd())
	must(t, "Devices", err)
	if len(devs) != 1 || devs[0] != (Device{Name: "swl-tst1", Alias: "swarmlet cluster=c1 node=n1", VNI: DefaultVNI}) {
		t.Fatalf("Devices = %+v", devs)
	}
	if err := RemoveDevice("swlcn-br", h1.ns.Fd()); err == nil {
		t.Fatal("RemoveDevice deleted a bridge")
	}
	must(t, "RemoveDevice", RemoveDevice("swl-tst1", h1.ns.Fd()))
	must(t, "RemoveDevice again", RemoveDevice("swl-tst1", h1.ns.Fd()))
	if devs, _ := Devices("swl-", h1.ns.Fd()); len(devs) != 0 {
		t.Fatalf("after RemoveDevice: %+v", devs)
	}
	if out, _ := h1.ns.Run("ip", "route", "show", "proto", "83"); strings.TrimSpace(out) != "" {
		t.Fatalf("routes of the removed device remain:\n%s", out)
	}
}

// The rules of an owner that is gone are found and removed, whatever they
// name; other owners' stay.
func TestRemoveRulesOf(t *testing.T) {
	requireIPTables(t)
	ns := newTestNS(t)
	dockerLike(t, ns)
	sub1, sub2 := netip.MustParsePrefix("10.42.1.0/24"), netip.MustParsePrefix("10.42.2.0/24")
	must(t, "rules of n1 and n2", ns.Do(func() error {
		return errors.Join(AllowForward(ipam.DefaultPool, "n1 cluster=c"), AllowMasquerade(sub1, ipam.DefaultPool, "n1 cluster=c"),
			AllowForward(ipam.DefaultPool, "n2 cluster=c"), AllowMasquerade(sub2, ipam.DefaultPool, "n2 cluster=c"))
	}))
	var owners []string
	must(t, "RuleOwners", ns.Do(func() (err error) { owners, err = RuleOwners(); return err }))
	slices.Sort(owners)
	if !slices.Equal(owners, []string{"n1 cluster=c", "n2 cluster=c"}) {
		t.Fatalf("RuleOwners = %q", owners)
	}
	must(t, "RemoveRulesOf", ns.Do(func() error { return RemoveRulesOf("n1 cluster=c") }))
	must(t, "RuleOwners", ns.Do(func() (err error) { owners, err = RuleOwners(); return err }))
	if !slices.Equal(owners, []string{"n2 cluster=c"}) {
		t.Fatalf("after removing n1's: %q", owners)
	}
	if r := ourRules(t, ns); len(r) != 2 {
		t.Fatalf("n2's forward rules: %q", r)
	}
}

func TestSplitRule(t *testing.T) {
	got := splitRule(`-A DOCKER-USER -s 10.42.0.0/16 -m comment --comment "swarmlet cluster network node=n1" -j ACCEPT`)
	want := []string{"-A", "DOCKER-USER", "-s", "10.42.0.0/16", "-m", "comment", "--comment", "swarmlet cluster network node=n1", "-j", "ACCEPT"}
	if !slices.Equal(got, want) {
		t.Fatalf("splitRule = %q", got)
	}
}

// Every port of the container bridge gets hairpin mode, once.
func TestHairpin(t *testing.T) {
	h := newHost(t, "n1", netip.MustParsePrefix("10.42.1.0/24"), 1450)
	must(t, "Hairpin", Hairpin(ipam.Gateway(h.subnet), h.ns.Fd()))
	must(t, "Hairpin again", Hairpin(ipam.Gateway(h.subnet), h.ns.Fd()))
	nl := h.ns.Netlink(t)
	port, err := nl.LinkByName("swlcn-c0")
	must(t, "port", err)
	pi, err := nl.LinkGetProtinfo(port)
	must(t, "protinfo", err)
	if !pi.Hairpin {
		t.Fatal("the container's port is not in hairpin mode")
	}
	if err := Hairpin(netip.MustParseAddr("10.42.9.1"), h.ns.Fd()); err == nil || !strings.Contains(err.Error(), "no device holds") {
		t.Fatalf("Hairpin of a gateway that is not there: %v", err)
	}
}
