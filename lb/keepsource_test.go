package lb

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// A connection from the container pool that the balancer sends out through
// the overlay device keeps its source address; anything else DNATed out of
// the host is masqueraded as before.
func TestKeepSource(t *testing.T) {
	a, b := newTestNS(t), newTestNS(t)
	nla := a.Netlink(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ovl0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(b.Fd())}
	if err := nla.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{
		{"addr", "add", "192.0.2.1/24", "dev", "ovl0"}, {"link", "set", "ovl0", "up"},
		{"addr", "add", "10.42.0.3/32", "dev", "lo"}, // the "container"
		{"route", "add", "local", "10.43.0.0/16", "dev", "lo"},
	} {
		a.MustRun(t, "ip", cmd...)
	}
	for _, cmd := range [][]string{
		{"addr", "add", "192.0.2.2/24", "dev", "eth0"}, {"link", "set", "eth0", "up"},
		{"route", "add", "10.42.0.0/16", "via", "192.0.2.1"},
	} {
		b.MustRun(t, "ip", cmd...)
	}
	backend := startIDServer(t, "b1", "192.0.2.2:8080", listenIn(b))
	ask := func(src string) string {
		t.Helper()
		err := a.Do(func() error {
			d := net.Dialer{Timeout: 2 * time.Second}
			if src != "" {
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
			}
			c, err := d.Dial("tcp", "10.43.0.1:80")
			if err != nil {
				return err
			}
			buf := make([]byte, 16)
			_, err = c.Read(buf)
			c.Close()
			return err
		})
		if err != nil {
			t.Fatalf("from %q: %v", src, err)
		}
		_, peer := backend.stats()
		host, _, _ := net.SplitHostPort(peer)
		return host
	}
	tbl := vipTable("10.43.0.1", 80, "192.0.2.2:8080")
	for _, tc := range []struct {
		keep               bool
		fromPool, fromHost string
	}{{false, "192.0.2.1", "192.0.2.1"}, {true, "10.42.0.3", "192.0.2.1"}} {
		cfg := Config{Logger: testLogger(t), TableName: "swl-keep", NetNSFd: a.Fd()}
		if tc.keep {
			cfg.KeepSourceFrom, cfg.KeepSourceVia = netip.MustParsePrefix("10.42.0.0/16"), "ovl0"
		}
		bal, err := New(KindNftables, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := bal.Sync(context.Background(), tbl); err != nil {
			t.Fatal(err)
		}
		if got := ask("10.42.0.3"); got != tc.fromPool {
			t.Errorf("keep=%v: the backend saw a pool caller as %s, want %s", tc.keep, got, tc.fromPool)
		}
		if got := ask(""); got != tc.fromHost {
			t.Errorf("keep=%v: the backend saw the host as %s, want %s", tc.keep, got, tc.fromHost)
		}
		// Adopted as it is: a second balancer of the same config changes nothing.
		before := a.MustRun(t, "nft", "list", "table", "ip", "swl-keep")
		again, _ := New(KindNftables, cfg)
		if err := again.Sync(context.Background(), tbl); err != nil {
			t.Fatal(err)
		}
		if after := a.MustRun(t, "nft", "list", "table", "ip", "swl-keep"); after != before {
			t.Fatalf("keep=%v: the table changed on adoption:\n%s\nnow:\n%s", tc.keep, before, after)
		}
		if tc.keep && !strings.Contains(before, `oifname "ovl0" accept`) {
			t.Fatalf("no keep rule:\n%s", before)
		}
		if err := bal.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
