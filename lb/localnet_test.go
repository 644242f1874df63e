package lb

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestLocalnetSetterOnlyWhereNeeded: route_localnet goes on the interface towards a
// remote backend and nowhere else ("all" stays off), and that is enough for a
// 127/8 VIP to reach the backend through the nftables balancer.
func TestLocalnetSetterOnlyWhereNeeded(t *testing.T) {
	client, server := newTestNS(t), newTestNS(t)
	// 10.231.1.0/24 exists only inside these two test namespaces.
	vethPair(t, client, "swl-c", []string{"10.231.1.1/24"}, server, "swl-s", []string{"10.231.1.11/24"})
	startIDServer(t, "r1", "10.231.1.11:8080", listenIn(server))
	var s LocalnetSetter
	backends := []netip.Addr{netip.MustParseAddr("10.231.1.11"), netip.MustParseAddr("127.0.0.5")}
	var changed, again []string
	read := func(dev string) string {
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + dev + "/route_localnet")
		if err != nil {
			return err.Error()
		}
		return strings.TrimSpace(string(b))
	}
	var all, veth, lo string
	if err := client.Do(func() (err error) {
		if changed, err = s.For(backends); err != nil {
			return err
		}
		again, err = s.For(backends)
		all, veth, lo = read("all"), read("swl-c"), read("lo")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(changed, []string{"swl-c"}) || len(again) != 0 {
		t.Fatalf("changed %v then %v; want [swl-c] then nothing", changed, again)
	}
	if all != "0" || veth != "1" || lo != "0" {
		t.Fatalf("route_localnet: all=%s swl-c=%s lo=%s; want 0, 1, 0", all, veth, lo)
	}
	b, err := New(KindNftables, Config{Logger: testLogger(t), NetNSFd: client.Fd()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Sync(context.Background(), vipTable("127.128.0.9", 80, "10.231.1.11:8080")); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got, err := spreadIn(client, 20, "127.128.0.9:80"); err != nil || got["r1"] != 20 {
		t.Fatalf("VIP to the remote backend with route_localnet on its interface only: %v %v", got, err)
	}
}
