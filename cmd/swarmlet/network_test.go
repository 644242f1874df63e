package main

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNetworkBadInput: a bad address plan is refused at init with one clear
// line and nothing created; a join the pool has no room for is refused and
// leaves the cluster as it was.
func TestNetworkBadInput(t *testing.T) {
	c := newCluster(t, 65)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"pool overlaps the service range", []string{"--pool", "10.42.0.0/16", "--service-range", "10.42.128.0/17"}, "overlaps the service range 10.42.128.0/17"},
		{"pool holds the node's address", []string{"--advertise-addr", "10.42.3.4", "--pool", "10.42.0.0/16"}, "contains this node's --advertise-addr 10.42.3.4"},
		{"pool too small for a node", []string{"--pool", "10.42.0.0/25"}, "per-node subnet /24 is larger than the container pool 10.42.0.0/25"},
		{"loopback service range", []string{"--service-range", "127.128.0.0/16"}, "loopback"},
		{"loopback service range by its old name", []string{"--vip-pool", "127.128.0.0/16"}, "loopback"},
		{"pool not a CIDR", []string{"--pool", "10.42.0.0"}, "invalid --pool"},
		{"bad cluster network mode", []string{"--cluster-network", "maybe"}, "invalid --cluster-network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"init", "--advertise-addr", c.ip(9), "--data-dir", dir, "--engine", "process", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240"}, tc.args...)
			out, err := osexec.Command(swarmletBin, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("init succeeded: %s", out)
			}
			if last := lastLine(string(out)); !strings.HasPrefix(last, "Error: ") || !strings.Contains(last, tc.want) {
				t.Fatalf("want a last line 'Error: ...%s...', got %q", tc.want, out)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("a refused init left %d entries in its data dir", len(entries))
			}
		})
	}

	// A pool of one subnet: the first node takes it, the next join is refused.
	c.extra = append(c.extra[:len(c.extra)-2:len(c.extra)-2], "--pool", "10.65.7.0/24")
	c.start(1, "")
	before, _ := c.info(1)
	dir := t.TempDir()
	wtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	out, err := osexec.Command(swarmletBin, "join", "--token", wtok, "--advertise-addr", c.ip(2), "--data-dir", dir, "--engine", "process", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", c.ip(1)+":24240").CombinedOutput()
	if err == nil {
		t.Fatalf("join into a full pool succeeded: %s", out)
	}
	if last := lastLine(string(out)); !strings.Contains(last, "container pool is full: all 1 /24 subnets of 10.65.7.0/24 are taken") {
		t.Fatalf("join into a full pool: %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "node.json")); err == nil {
		t.Fatal("a refused join left an identity behind")
	}
	after, _ := c.info(1)
	if ns, _ := c.nodes(1); len(ns) != 1 || after.RaftIndex != before.RaftIndex {
		t.Fatalf("the refused join changed the cluster: %d nodes, index %d -> %d", len(ns), before.RaftIndex, after.RaftIndex)
	}
	if out := c.mustCLI(1, "node", "inspect", "node1"); !strings.Contains(out, `"subnet": "10.65.7.0/24"`) {
		t.Fatalf("node1 has not the pool's one subnet:\n%s", out)
	}
}
