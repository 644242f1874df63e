package scenarios

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain doubles as a helper process: with SWL_PROBE set, the test binary runs
// inside a namespace and reports whether TCP from one address reaches another.
func probeMain() bool {
	spec := os.Getenv("SWL_PROBE") // from,to,port
	if spec == "" {
		return false
	}
	p := strings.Split(spec, ",")
	ln, err := net.Listen("tcp", net.JoinHostPort(p[1], p[2]))
	if err != nil {
		fmt.Println("listen:", err)
		return true
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	d := net.Dialer{Timeout: 300 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.ParseIP(p[0])}}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Println("blocked")
		return true
	}
	c.Close()
	fmt.Println("ok")
	return true
}

func newTestNetns(t *testing.T) *Netns {
	t.Helper()
	ns, err := NewNetns()
	if err != nil {
		t.Skipf("network namespaces unavailable (need root, ip, nft): %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

func probe(t *testing.T, ns *Netns, from, to string, port int) string {
	t.Helper()
	cmd := ns.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("SWL_PROBE=%s,%s,%d", from, to, port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestNetnsRules(t *testing.T) {
	ns := newTestNetns(t)
	a, b, c := "127.0.0.11", "127.0.0.12", "127.0.0.13"
	if got := probe(t, ns, a, b, 4241); got != "ok" {
		t.Fatalf("no rules: %s", got)
	}
	if err := ns.SetRules(Components([]string{a}, []string{b, c}).Rules(nil, 0)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ from, to, want string }{{a, b, "blocked"}, {b, a, "blocked"}, {b, c, "ok"}, {a, a, "ok"}} {
		if got := probe(t, ns, tc.from, tc.to, 4241); got != tc.want {
			t.Errorf("%s -> %s: %s, want %s", tc.from, tc.to, got, tc.want)
		}
	}
	// One subsystem cut: Raft's port dropped, gossip's passes.
	if err := ns.SetRules(Components([]string{a}, []string{b}).Rules([]int{4241}, 0)); err != nil {
		t.Fatal(err)
	}
	if got := probe(t, ns, a, b, 4241); got != "blocked" {
		t.Errorf("raft port: %s", got)
	}
	if got := probe(t, ns, a, b, 4242); got != "ok" {
		t.Errorf("gossip port: %s", got)
	}
	// Loss rules compile (their effect is probabilistic, so not probed).
	if err := ns.SetRules(Components([]string{a}, []string{b}).Rules([]int{4241, 4242}, 30)); err != nil {
		t.Fatal(err)
	}
	if rs := ns.Ruleset(); !strings.Contains(rs, "numgen random mod 100 < 30") {
		t.Errorf("ruleset lacks loss rule:\n%s", rs)
	}
	if err := ns.SetRules(nil); err != nil {
		t.Fatal(err)
	}
	if got := probe(t, ns, a, b, 4241); got != "ok" {
		t.Errorf("after heal: %s", got)
	}
}

func TestGrudgeBridge(t *testing.T) {
	// n3 bridges: it keeps both sides; the sides lose each other.
	g := Components([]string{"n1", "n2"}, []string{"n4", "n5"})
	if len(g["n3"]) != 0 || len(g["n1"]) != 2 || len(g["n4"]) != 2 {
		t.Fatalf("grudge %v", g)
	}
	if rules := g.Rules(nil, 0); len(rules) != 8 {
		t.Fatalf("%d rules, want 8", len(rules))
	}
}
