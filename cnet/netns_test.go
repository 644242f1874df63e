package cnet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/cnet/ipam"
	"github.com/swarmlet/swarmlet/internal/netnstest"
	"github.com/vishvananda/netlink"
)

// The test bed.
//
// Every namespace is anonymous: made by unshare(CLONE_NEWNET) on a locked
// thread and held only by our fd, never bind-mounted. It vanishes when the fd
// is closed (t.Cleanup) or the test process dies, with every device, route
// and rule in it, so nothing can leak into the host. Packets sent from these
// namespaces can only reach the others we connect them to.
//
// A "host" is a namespace with a bridge holding the gateway of its node
// subnet (what Docker's bridge network is) and a "container" namespace
// attached to it by a veth pair. Two hosts are joined by a veth pair with
// underlay addresses from 198.18.0.0/15 (RFC 2544's benchmarking range).

type testNS = netnstest.NS

// newTestNS is a namespace without IPv6: its autoconfiguration (DAD, router
// solicitations) would put events on the netlink groups the no-flap test
// listens to.
func newTestNS(t testing.TB) *testNS {
	n := netnstest.New(t)
	n.Sysctl(t, "net/ipv6/conf/all/disable_ipv6", "1")
	n.Sysctl(t, "net/ipv6/conf/default/disable_ipv6", "1")
	return n
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func ipnet(p netip.Prefix, a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

type host struct {
	name     string
	ns       *testNS
	underlay netip.Addr
	subnet   netip.Prefix
	ctr      *testNS // the "container"
	ctrAddr  netip.Addr
}

func (h *host) peer() Peer {
	return Peer{ID: h.name, UnderlayIP: h.underlay, Subnet: h.subnet}
}

// newHost makes a host namespace with its container network: a bridge with
// the gateway address and one container attached with ctrMTU (the overlay's
// MTU, as the daemon gives Docker's network).
func newHost(t testing.TB, name string, subnet netip.Prefix, ctrMTU int) *host {
	t.Helper()
	h := &host{name: name, ns: newTestNS(t), subnet: subnet, ctr: newTestNS(t), ctrAddr: ipam.Gateway(subnet).Next()}
	nl := h.ns.Netlink(t)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "swlcn-br"}}
	must(t, "add bridge", nl.LinkAdd(br))
	brl, err := nl.LinkByName(br.Name)
	must(t, "look up bridge", err)
	br.Index = brl.Attrs().Index
	must(t, "bridge address", nl.AddrAdd(br, &netlink.Addr{IPNet: ipnet(subnet, ipam.Gateway(subnet))}))
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "swlcn-c0", MTU: ctrMTU, MasterIndex: br.Index},
		PeerName: "eth0", PeerNamespace: netlink.NsFd(h.ctr.Fd()), PeerMTU: uint32(ctrMTU)}
	must(t, "add container veth", nl.LinkAdd(veth))
	must(t, "container veth up", nl.LinkSetUp(veth))
	must(t, "bridge up", nl.LinkSetUp(br))
	h.ns.Sysctl(t, "net/ipv4/ip_forward", "1")

	cl := h.ctr.Netlink(t)
	eth, err := cl.LinkByName("eth0")
	must(t, "container eth0", err)
	must(t, "container address", cl.AddrAdd(eth, &netlink.Addr{IPNet: ipnet(subnet, h.ctrAddr)}))
	must(t, "container eth0 up", cl.LinkSetUp(eth))
	must(t, "container default route", cl.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: ipam.Gateway(subnet).AsSlice()}))
	return h
}

// connect joins two hosts with a veth pair carrying underlay addresses
// 198.18.61.<a>/24 and 198.18.61.<b>/24.
func connect(t testing.TB, h1, h2 *host, a, b byte) {
	t.Helper()
	nl1, nl2 := h1.ns.Netlink(t), h2.ns.Netlink(t)
	u := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "swlcn-u0"}, PeerName: "swlcn-u1", PeerNamespace: netlink.NsFd(h2.ns.Fd())}
	must(t, "add underlay veth", nl1.LinkAdd(u))
	h1.underlay = netip.AddrFrom4([4]byte{198, 18, 61, a})
	h2.underlay = netip.AddrFrom4([4]byte{198, 18, 61, b})
	lan := netip.MustParsePrefix("198.18.61.0/24")
	must(t, "underlay address 1", nl1.AddrAdd(u, &netlink.Addr{IPNet: ipnet(lan, h1.underlay)}))
	must(t, "underlay up 1", nl1.LinkSetUp(u))
	u2, err := nl2.LinkByName("swlcn-u1")
	must(t, "underlay peer", err)
	must(t, "underlay address 2", nl2.AddrAdd(u2, &netlink.Addr{IPNet: ipnet(lan, h2.underlay)}))
	must(t, "underlay up 2", nl2.LinkSetUp(u2))
}

// newBed is two hosts, 10.42.1.0/24 and 10.42.2.0/24, on one underlay link
// of MTU 1500, their containers at the overlay's MTU.
func newBed(t testing.TB) (*host, *host) {
	t.Helper()
	h1 := newHost(t, "n1", netip.MustParsePrefix("10.42.1.0/24"), 1500-EncapOverhead)
	h2 := newHost(t, "n2", netip.MustParsePrefix("10.42.2.0/24"), 1500-EncapOverhead)
	connect(t, h1, h2, 1, 2)
	return h1, h2
}

func (h *host) overlay(t testing.TB, device string) *Overlay {
	t.Helper()
	o, err := New(Config{
		Device: device, UnderlayIP: h.underlay, LocalSubnet: h.subnet,
		NetNSFd: h.ns.Fd(), Logger: testLogger(t).With("node", h.name),
	})
	if err != nil {
		t.Fatalf("%s: new overlay: %v", h.name, err)
	}
	t.Cleanup(func() { o.Close(false) })
	return o
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// echoServer listens on addr inside ns; each connection is answered with the
// caller's address on one line, then everything it sends is echoed back.
func echoServer(t testing.TB, ns *testNS, addr string) {
	t.Helper()
	var ln net.Listener
	must(t, "listen "+addr, ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).IP)
				io.Copy(c, c)
			}()
		}
	}()
}

// echo dials addr from inside ns, sends n bytes (more than fits in one
// packet, so the MTU matters) and checks they come back. It returns the
// caller's address as the server saw it.
func echo(ns *testNS, addr string, n int) (string, error) {
	var seen string
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line := make([]byte, 0, 32)
		for b := make([]byte, 1); ; {
			if _, err := c.Read(b); err != nil {
				return fmt.Errorf("read greeting: %w", err)
			}
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
		}
		seen = string(line)
		payload := bytes.Repeat([]byte("swarmlet-cnet!"), n/14+1)[:n]
		errc := make(chan error, 1)
		go func() { _, err := c.Write(payload); errc <- err }()
		got := make([]byte, n)
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("read echo: %w", err)
		}
		if err := <-errc; err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if !bytes.Equal(got, payload) {
			return errors.New("echo differs from what was sent")
		}
		return nil
	})
	return seen, err
}
