package cnet

import (
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/cnet/ipam"
)

func requireIPTables(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs the iptables command (Docker's firewall is programmed with it)")
	}
}

// reach dials addr from inside ns.
func reach(ns *testNS, addr string, timeout time.Duration) error {
	return ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// dockerLike gives ns the filter table Docker makes: FORWARD policy DROP,
// DOCKER-USER jumped to first and ending in RETURN, then an isolation-style
// rule dropping whatever enters the container bridge from elsewhere.
func dockerLike(t testing.TB, ns *testNS) {
	t.Helper()
	for _, args := range [][]string{
		{"-N", "DOCKER-USER"},
		{"-A", "DOCKER-USER", "-j", "RETURN"},
		{"-A", "FORWARD", "-j", "DOCKER-USER"},
		{"-A", "FORWARD", "-i", "swlcn-br", "!", "-o", "swlcn-br", "-j", "ACCEPT"},
		{"-A", "FORWARD", "-o", "swlcn-br", "-j", "DROP"},
		{"-P", "FORWARD", "DROP"},
	} {
		if _, err := ns.Run("iptables", append([]string{"-w", "5", "-t", "filter"}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
}

// ourRules lists DOCKER-USER's rules in ns that carry our comment.
func ourRules(t testing.TB, ns *testNS) []string {
	t.Helper()
	out, err := ns.Run("iptables", "-w", "5", "-t", "filter", "-S", "DOCKER-USER")
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(l, fwComment) {
			rules = append(rules, l)
		}
	}
	return rules
}

// Docker's firewall on the receiving host drops cross-host container traffic
// until AllowForward opens DOCKER-USER for the pool; the opening is
// idempotent, per node, and RemoveForward closes it again.
func TestFirewall(t *testing.T) {
	requireIPTables(t)
	h1, h2 := newBed(t)
	tab := Table{Peers: []Peer{h1.peer(), h2.peer()}}
	syncOK(t, h1.overlay(t, testDev), tab)
	syncOK(t, h2.overlay(t, testDev), tab)
	echoServer(t, h2.ctr, "10.42.2.2:7000")
	const addr = "10.42.2.2:7000"
	pool := ipam.DefaultPool
	allow := func(owner string) error { return h2.ns.Do(func() error { return AllowForward(pool, owner) }) }
	remove := func(owner string) error { return h2.ns.Do(func() error { return RemoveForward(pool, owner) }) }

	// No Docker (no DOCKER-USER): the error says what is missing.
	err := allow("n2")
	if !errors.Is(err, ErrNoDockerUser) || !strings.Contains(err.Error(), "DOCKER-USER") || !strings.Contains(err.Error(), "dockerd") {
		t.Fatalf("AllowForward without DOCKER-USER = %v", err)
	}
	must(t, "RemoveForward without DOCKER-USER", remove("n2"))

	dockerLike(t, h2.ns)
	if err := reach(h1.ctr, addr, 300*time.Millisecond); err == nil {
		t.Fatal("Docker-like firewall let cross-host container traffic through: the test proves nothing")
	}

	must(t, "AllowForward", allow("n2"))
	must(t, "AllowForward again", allow("n2"))
	if r := ourRules(t, h2.ns); len(r) != 2 {
		t.Fatalf("after AllowForward twice, DOCKER-USER holds %d of our rules, want 2:\n%s", len(r), strings.Join(r, "\n"))
	}
	if seen, err := echo(h1.ctr, addr, 1<<16); err != nil || seen != "10.42.1.2" {
		t.Fatalf("through the opened firewall: seen %q, %v", seen, err)
	}

	// A second node on the same kernel holds its own copy; its leaving
	// leaves the first one's opening in place.
	must(t, "AllowForward n3", allow("n3"))
	if r := ourRules(t, h2.ns); len(r) != 4 {
		t.Fatalf("two owners: %d rules, want 4", len(r))
	}
	must(t, "RemoveForward n3", remove("n3"))
	if r := ourRules(t, h2.ns); len(r) != 2 {
		t.Fatalf("after n3 removed its rules: %d rules, want 2", len(r))
	}
	if _, err := echo(h1.ctr, addr, 1); err != nil {
		t.Fatalf("n3 leaving closed n2's opening: %v", err)
	}

	must(t, "RemoveForward", remove("n2"))
	must(t, "RemoveForward again", remove("n2"))
	if r := ourRules(t, h2.ns); len(r) != 0 {
		t.Fatalf("after RemoveForward: %q", r)
	}
	out, err := h2.ns.Run("iptables", "-w", "5", "-t", "filter", "-S", "DOCKER-USER")
	must(t, "list DOCKER-USER", err)
	if !strings.Contains(out, "-A DOCKER-USER -j RETURN") {
		t.Fatalf("Docker's own rule is gone:\n%s", out)
	}
	if err := reach(h1.ctr, addr, 300*time.Millisecond); err == nil {
		t.Fatal("cross-host traffic still passes after RemoveForward")
	}

	if err := allow(""); err == nil {
		t.Fatal("AllowForward accepted an empty owner")
	}
}
