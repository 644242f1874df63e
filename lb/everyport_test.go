package lb

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

// A frontend of every port (a VIP of containers) keeps each connection's
// port; a frontend of one port of the same address takes precedence; the
// table is adopted unchanged; only nftables does it.
func TestEveryPortFrontend(t *testing.T) {
	ns := newTestNS(t)
	for _, b := range []struct{ name, addr string }{
		{"a7001", "127.0.0.11:7001"}, {"b7001", "127.0.0.12:7001"},
		{"a7002", "127.0.0.11:7002"}, {"b7002", "127.0.0.12:7002"},
		{"c9000", "127.0.0.13:9000"},
	} {
		startIDServer(t, b.name, b.addr, listenIn(ns))
	}
	tbl := Table{Frontends: []Frontend{
		{Service: "db", IP: net.ParseIP("127.128.0.5"), Proto: "tcp", Backends: []Backend{{IP: net.ParseIP("127.0.0.11")}, {IP: net.ParseIP("127.0.0.12")}}},
		{Service: "db", IP: net.ParseIP("127.128.0.5"), Port: 7003, Proto: "tcp", Backends: []Backend{{IP: net.ParseIP("127.0.0.13"), Port: 9000}}},
	}}
	cfg := Config{Logger: testLogger(t), TableName: "swl-every", NetNSFd: ns.Fd()}
	b, err := New(KindNftables, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Sync(context.Background(), tbl); err != nil {
		t.Fatal(err)
	}
	for port, want := range map[string][]string{"7001": {"a7001", "b7001"}, "7002": {"a7002", "b7002"}, "7003": {"c9000"}} {
		got, err := spreadIn(ns, 60, "127.128.0.5:"+port)
		if err != nil {
			t.Fatalf("port %s: %v", port, err)
		}
		if len(got) != len(want) {
			t.Fatalf("port %s: answers %v, want from %v", port, got, want)
		}
		assertEven(t, got, 60, want...)
	}
	before := ns.MustRun(t, "nft", "list", "table", "ip", "swl-every")
	again, _ := New(KindNftables, cfg)
	if err := again.Sync(context.Background(), tbl); err != nil {
		t.Fatal(err)
	}
	if after := ns.MustRun(t, "nft", "list", "table", "ip", "swl-every"); after != before {
		t.Fatalf("adoption changed the table:\n%s\nnow:\n%s", before, after)
	}
	if !strings.Contains(before, "ip daddr . meta l4proto vmap @addresses") {
		t.Fatalf("no dispatch by address:\n%s", before)
	}

	// Backends of a frontend of every port must keep the port.
	bad := Table{Frontends: []Frontend{{Service: "x", IP: net.ParseIP("127.128.0.6"), Proto: "tcp", Backends: []Backend{{IP: net.ParseIP("127.0.0.11"), Port: 80}}}}}
	if err := b.Sync(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "keeps the port") {
		t.Fatalf("a frontend of every port with a backend port: %v", err)
	}
	// The userspace proxy cannot, and says so.
	us := newUserspace(Config{Logger: testLogger(t)})
	t.Cleanup(func() { us.Close() })
	if err := us.Sync(context.Background(), Table{Frontends: tbl.Frontends[:1]}); !errors.Is(err, ErrEveryPort) {
		t.Fatalf("userspace with a frontend of every port: %v", err)
	}
}
