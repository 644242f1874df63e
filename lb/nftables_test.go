package lb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func listenIn(ns *testNS) func(string) (net.Listener, error) {
	return func(addr string) (ln net.Listener, err error) {
		err = ns.Do(func() error {
			ln, err = net.Listen("tcp", addr)
			return err
		})
		return ln, err
	}
}

func spreadIn(ns *testNS, n int, addr string) (map[string]int, error) {
	var got map[string]int
	err := ns.Do(func() error {
		var err error
		got, err = spread(n, func() (string, error) { return askID(addr) })
		return err
	})
	return got, err
}

func vipTable(vip string, port int, backends ...string) Table {
	f := Frontend{Service: "web", IP: net.ParseIP(vip), Port: port, Proto: "tcp"}
	for _, b := range backends {
		h, p, _ := net.SplitHostPort(b)
		var pn int
		fmt.Sscan(p, &pn)
		f.Backends = append(f.Backends, Backend{IP: net.ParseIP(h), Port: pn})
	}
	return Table{Frontends: []Frontend{f}}
}

func assertEven(t *testing.T, got map[string]int, n int, names ...string) {
	t.Helper()
	for _, name := range names {
		if got[name] < n/len(names)*6/10 { // each > 60% of a fair share
			t.Errorf("backend %s got %d of %d connections, want a roughly even share: %v", name, got[name], n, got)
		}
	}
}

func TestNftablesNetns(t *testing.T) {
	ns := newTestNS(t)
	ctx := context.Background()
	const table = "swl-test"
	backends := []string{"127.0.0.11:8080", "127.0.0.12:8080", "127.0.0.13:8080"}
	for i, b := range backends {
		startIDServer(t, fmt.Sprintf("b%d", i+1), b, listenIn(ns))
	}
	newLB := func() Balancer {
		b, err := New(KindNftables, Config{Logger: testLogger(t), TableName: table, NetNSFd: ns.Fd()})
		if err != nil {
			t.Fatalf("New(nftables): %v", err)
		}
		return b
	}
	b := newLB()
	t.Cleanup(func() { b.Close() })
	listTable := func() string { return ns.MustRun(t, "nft", "-a", "list", "table", "ip", table) }

	full := vipTable("127.128.0.1", 80, backends...)
	full.Frontends = append(full.Frontends, Frontend{Service: "empty", IP: net.ParseIP("127.128.0.2"), Port: 80, Proto: "tcp"})
	if err := b.Sync(ctx, full); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	t.Logf("nft list table after first Sync:\n%s", listTable())

	const n = 300
	got, err := spreadIn(ns, n, "127.128.0.1:80")
	if err != nil {
		t.Fatalf("connections through the VIP: %v (so far %v)", err, got)
	}
	assertEven(t, got, n, "b1", "b2", "b3")

	// A frontend without backends refuses at once.
	_, err = spreadIn(ns, 1, "127.128.0.2:80")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("empty frontend: err = %v, want connection refused", err)
	}

	// Idempotent: a second Sync of the same table changes nothing (handles included).
	before := listTable()
	if err := b.Sync(ctx, full); err != nil {
		t.Fatalf("second Sync: %v", err)
	}
	if after := listTable(); after != before {
		t.Errorf("second Sync changed the ruleset:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Restart: a fresh balancer adopts the table without touching it...
	b2 := newLB()
	if err := b2.Sync(ctx, full); err != nil {
		t.Fatalf("Sync after restart: %v", err)
	}
	if after := listTable(); after != before {
		t.Errorf("restarted balancer changed an up-to-date ruleset:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// ...and changes it in place: remove b3, only that frontend's chain changes.
	less := vipTable("127.128.0.1", 80, backends[:2]...)
	if err := b2.Sync(ctx, less); err != nil {
		t.Fatalf("Sync without b3: %v", err)
	}
	rs := listTable()
	t.Logf("nft list table after removing b3 and the empty frontend:\n%s", rs)
	if c := strings.Count(rs, "chain fe-"); c != 1 {
		t.Errorf("want exactly 1 frontend chain, got %d:\n%s", c, rs)
	}
	if strings.Contains(rs, "127.0.0.13") {
		t.Errorf("b3 still in the ruleset:\n%s", rs)
	}
	got, err = spreadIn(ns, 100, "127.128.0.1:80")
	if err != nil {
		t.Fatalf("connections after removal: %v", err)
	}
	if got["b3"] != 0 {
		t.Errorf("removed backend b3 got %d new connections: %v", got["b3"], got)
	}
	assertEven(t, got, 100, "b1", "b2")

	// Close deletes our table and nothing else.
	ns.MustRun(t, "nft", "add", "table", "ip", "someone-else")
	if err := b2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	all := ns.MustRun(t, "nft", "list", "ruleset")
	if strings.Contains(all, "table ip "+table) {
		t.Errorf("table %s survived Close:\n%s", table, all)
	}
	if !strings.Contains(all, "table ip someone-else") {
		t.Errorf("Close removed a table it does not own:\n%s", all)
	}
}

// TestNftablesRemoteBackends checks the path that needs masquerade and
// route_localnet: a 127/8 VIP in one namespace, backends on the far side of a
// veth pair in another.
func TestNftablesRemoteBackends(t *testing.T) {
	client, server := newTestNS(t), newTestNS(t)
	// 10.231.0.0/24 exists only inside these two test namespaces.
	vethPair(t, client, "swl-c", []string{"10.231.0.1/24"}, server, "swl-s", []string{"10.231.0.11/24", "10.231.0.12/24", "10.231.0.13/24"})
	backends := []string{"10.231.0.11:8080", "10.231.0.12:8080", "10.231.0.13:8080"}
	var srv []*idServer
	for i, be := range backends {
		srv = append(srv, startIDServer(t, fmt.Sprintf("r%d", i+1), be, listenIn(server)))
	}
	if err := client.Do(EnableRouteLocalnet); err != nil {
		t.Fatalf("route_localnet in client netns: %v", err)
	}
	b, err := New(KindNftables, Config{Logger: testLogger(t), NetNSFd: client.Fd()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Sync(context.Background(), vipTable("127.128.0.9", 80, backends...)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	got, err := spreadIn(client, 300, "127.128.0.9:80")
	if err != nil {
		t.Fatalf("connections through the VIP to remote backends: %v (so far %v)", err, got)
	}
	assertEven(t, got, 300, "r1", "r2", "r3")
	for _, s := range srv {
		// Masqueraded: the backend sees the client namespace's veth address,
		// not 127.0.0.1 (which it could not answer).
		if _, peer := s.stats(); !strings.HasPrefix(peer, "10.231.0.1:") {
			t.Errorf("backend %s saw peer %s, want 10.231.0.1 (masqueraded)", s.name, peer)
		}
	}
}

// TestNftablesUDPRemoval checks that a UDP flow pinned (by conntrack) to a
// backend moves when that backend is removed, and that the same table synced
// again is a no-op for UDP too.
func TestNftablesUDPRemoval(t *testing.T) {
	ns := newTestNS(t)
	var backends []string
	for i := range 2 {
		var pc net.PacketConn
		if err := ns.Do(func() (err error) {
			pc, err = net.ListenPacket("udp", fmt.Sprintf("127.0.0.%d:5353", 21+i))
			return err
		}); err != nil {
			t.Fatalf("udp backend: %v", err)
		}
		backends = append(backends, serveUDPID(t, fmt.Sprintf("u%d", i+1), pc))
	}
	b, err := New(KindNftables, Config{Logger: testLogger(t), NetNSFd: ns.Fd()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	udpTable := func(bs ...string) Table {
		tb := vipTable("127.128.0.53", 53, bs...)
		tb.Frontends[0].Proto, tb.Frontends[0].Service = "udp", "dns"
		return tb
	}
	ctx := context.Background()
	if err := b.Sync(ctx, udpTable(backends...)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// One client socket = one 5-tuple = one conntrack entry = one backend.
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.Dial("udp", "127.128.0.53:53")
		return err
	}); err != nil {
		t.Fatalf("dial udp vip: %v", err)
	}
	defer c.Close()
	ask := func() string {
		t.Helper()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("who")); err != nil {
			t.Fatalf("udp write: %v", err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("udp read: %v", err)
		}
		return string(buf[:n])
	}
	first := ask()
	for range 5 {
		if got := ask(); got != first {
			t.Fatalf("flow moved from %s to %s without a change", first, got)
		}
	}
	keep := map[string]string{"u1": backends[1], "u2": backends[0]}[first]
	if err := b.Sync(ctx, udpTable(keep)); err != nil {
		t.Fatalf("Sync without %s: %v", first, err)
	}
	if got := ask(); got == first {
		t.Errorf("udp flow still reaches removed backend %s", first)
	}
}

// TestNftablesRepairs damages the table the way an operator or another tool
// might and checks that the next Sync restores exactly the intended ruleset.
func TestNftablesRepairs(t *testing.T) {
	ns := newTestNS(t)
	for i := range 2 {
		startIDServer(t, fmt.Sprintf("b%d", i+1), fmt.Sprintf("127.0.0.%d:8080", 11+i), listenIn(ns))
	}
	const table = "swl-repair"
	b, err := New(KindNftables, Config{Logger: testLogger(t), TableName: table, NetNSFd: ns.Fd()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	tbl := vipTable("127.128.0.1", 80, "127.0.0.11:8080", "127.0.0.12:8080")
	if err := b.Sync(ctx, tbl); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// Without handles, so that rebuilt objects compare equal.
	want := ns.MustRun(t, "nft", "list", "table", "ip", table)
	tests := []struct {
		name   string
		damage []string
	}{
		{"map element deleted", []string{"delete", "element", "ip", table, "frontends", "{ 127.128.0.1 . tcp . 80 }"}},
		{"frontend chain flushed", []string{"flush", "chain", "ip", table, "fe-tcp-127.128.0.1-80"}},
		{"extra rule in a base chain", []string{"add", "rule", "ip", table, "output", "counter"}},
		{"base chain deleted", []string{"delete", "chain", "ip", table, "postrouting"}},
		{"stray frontend chain", []string{"add", "chain", "ip", table, "fe-udp-127.128.0.9-53"}},
		{"table deleted", []string{"delete", "table", "ip", table}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns.MustRun(t, "nft", tt.damage...)
			if err := b.Sync(ctx, tbl); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			if got := ns.MustRun(t, "nft", "list", "table", "ip", table); got != want {
				t.Errorf("after repair:\n%s\nwant:\n%s", got, want)
			}
			got, err := spreadIn(ns, 20, "127.128.0.1:80")
			if err != nil || got["b1"]+got["b2"] != 20 {
				t.Errorf("VIP after repair: %v, %v", got, err)
			}
		})
	}
}

// vethPair links namespaces a and b with a veth pair and addresses both ends.
func vethPair(t *testing.T, a *testNS, aName string, aAddrs []string, b *testNS, bName string, bAddrs []string) {
	t.Helper()
	anl, bnl := a.Netlink(t), b.Netlink(t)
	if err := anl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName}); err != nil {
		t.Fatalf("veth %s-%s: %v", aName, bName, err)
	}
	peer, err := anl.LinkByName(bName)
	if err != nil {
		t.Fatalf("veth peer: %v", err)
	}
	if err := anl.LinkSetNsFd(peer, b.Fd()); err != nil {
		t.Fatalf("veth peer to its netns: %v", err)
	}
	setup := func(h *netlink.Handle, name string, addrs []string) {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, s := range addrs {
			ad, err := netlink.ParseAddr(s)
			if err != nil {
				t.Fatalf("parse %s: %v", s, err)
			}
			if err := h.AddrAdd(l, ad); err != nil {
				t.Fatalf("addr %s on %s: %v", s, name, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("%s up: %v", name, err)
		}
	}
	setup(anl, aName, aAddrs)
	setup(bnl, bName, bAddrs)
}

// TestNftablesIngress is the published-port path: a client in one namespace
// connects to the node address of the balancer's namespace (prerouting hook),
// which forwards to backends in a third namespace. The backends have no route
// back to the client, so only the masquerade makes this work, and the
// backends must see the node's address.
func TestNftablesIngress(t *testing.T) {
	client, node, server := newTestNS(t), newTestNS(t), newTestNS(t)
	// Private ranges exist only inside these three test namespaces.
	vethPair(t, client, "swl-cl", []string{"10.231.1.2/24"}, node, "swl-n1", []string{"10.231.1.1/24"})
	vethPair(t, node, "swl-n2", []string{"10.231.2.1/24"}, server, "swl-sv", []string{"10.231.2.11/24", "10.231.2.12/24"})
	if err := node.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	}); err != nil {
		t.Fatalf("ip_forward in node netns: %v", err)
	}
	var srv []*idServer
	for i, be := range []string{"10.231.2.11:8080", "10.231.2.12:8080"} {
		srv = append(srv, startIDServer(t, fmt.Sprintf("s%d", i+1), be, listenIn(server)))
	}
	b, err := New(KindNftables, Config{Logger: testLogger(t), NetNSFd: node.Fd()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	tbl := vipTable("10.231.1.1", 30080, "10.231.2.11:8080", "10.231.2.12:8080")
	tbl.Frontends[0].Service = "web-ingress"
	if err := b.Sync(context.Background(), tbl); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	got, err := spreadIn(client, 100, "10.231.1.1:30080")
	if err != nil {
		t.Fatalf("client to published port: %v (so far %v)", err, got)
	}
	assertEven(t, got, 100, "s1", "s2")
	for _, s := range srv {
		if _, peer := s.stats(); !strings.HasPrefix(peer, "10.231.2.1:") {
			t.Errorf("backend %s saw peer %s, want the node address 10.231.2.1", s.name, peer)
		}
	}
}
