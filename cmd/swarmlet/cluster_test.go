package main

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func leaderOf(ns []nodeJSON) string {
	for _, n := range ns {
		if n.Leader {
			return n.Addr
		}
	}
	return ""
}

func nodeIndex(addr string) int { return int(addr[len(addr)-1] - '0') }

// TestClusterCore: 3 managers + 1 worker; SIGKILL the leader; restart it; promote
// and demote; wrong tokens; node rm of a down node.
func TestClusterCore(t *testing.T) {
	c := newCluster(t, 41)
	c.start(1, "")
	mtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "manager"))
	wtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	if !strings.HasPrefix(mtok, "SWLT-1-") || mtok == wtok {
		t.Fatalf("tokens %q %q", mtok, wtok)
	}
	c.start(2, mtok)
	c.start(3, mtok)
	c.start(4, wtok)

	waitFor(t, 10*time.Second, "3 voters and 4 ready nodes", func() bool {
		inf, err := c.info(2)
		ns, err2 := c.nodes(3)
		if err != nil || err2 != nil || inf.Managers != 3 || len(ns) != 4 {
			return false
		}
		for _, n := range ns {
			if n.Status != "ready" {
				return false
			}
		}
		return true
	})
	ns, _ := c.nodes(3)
	roles := map[string]string{}
	for _, n := range ns {
		roles[n.Addr] = n.Role
	}
	if roles[c.ip(1)] != "manager" || roles[c.ip(2)] != "manager" || roles[c.ip(3)] != "manager" || roles[c.ip(4)] != "worker" {
		t.Fatalf("roles %v", roles)
	}
	oldLeader := leaderOf(ns)
	if oldLeader == "" {
		t.Fatalf("no leader in %+v", ns)
	}
	li := nodeIndex(oldLeader)
	var idBefore string
	for _, n := range ns {
		if n.Addr == oldLeader {
			idBefore = n.ID
		}
	}

	t.Run("leader killed", func(t *testing.T) {
		c.kill(li)
		other := li%3 + 1
		waitFor(t, 10*time.Second, "a new leader and the old one down", func() bool {
			ns, err := c.nodes(other)
			if err != nil {
				return false
			}
			l := leaderOf(ns)
			down := false
			for _, n := range ns {
				if n.Addr == oldLeader && n.Status == "down" {
					down = true
				}
			}
			return l != "" && l != oldLeader && down
		})
		// Writes work through the new leader. A worker's socket serves its own node
		// only: cluster commands are for managers (node/httpapi/caller.go).
		c.mustCLI(other, "node", "update", "--label-add", "zone=a", c.ip(4))
		c.expectError(t, 4, "this node is a worker", "node", "update", "--label-add", "zone=b", c.ip(4))
	})

	t.Run("restart keeps identity", func(t *testing.T) {
		c.start(li, "") // init on an initialised data dir resumes the node
		other := li%3 + 1
		waitFor(t, 10*time.Second, "restarted node ready with the same ID", func() bool {
			ns, err := c.nodes(other)
			if err != nil || len(ns) != 4 {
				return false
			}
			for _, n := range ns {
				if n.Addr == oldLeader {
					return n.ID == idBefore && n.Status == "ready"
				}
			}
			return false
		})
	})

	t.Run("demote and promote change voters", func(t *testing.T) {
		c.mustCLI(1, "node", "demote", c.ip(3))
		waitFor(t, 15*time.Second, "2 voters", func() bool {
			inf, err := c.info(1)
			return err == nil && inf.Managers == 2
		})
		c.mustCLI(1, "node", "promote", c.ip(4))
		waitFor(t, 15*time.Second, "3 voters with node 4", func() bool {
			inf, err := c.info(4)
			return err == nil && inf.Managers == 3
		})
		ns, _ := c.nodes(1)
		for _, n := range ns {
			want := "manager"
			if n.Addr == c.ip(3) {
				want = "worker"
			}
			if n.Role != want {
				t.Fatalf("%s is %s, want %s", n.Addr, n.Role, want)
			}
		}
	})

	t.Run("wrong tokens refused", func(t *testing.T) {
		cases := map[string]string{
			"garbage":       "nonsense",
			"wrong secret":  mtok[:strings.LastIndex(mtok, "-")+1] + "aaaaaaaaaaaaaaaaaaaaaaaaa",
			"other cluster": "SWLT-1-" + strings.Repeat("0", 50) + "-" + mtok[strings.LastIndex(mtok, "-")+1:],
		}
		for name, tok := range cases {
			dir := t.TempDir()
			cmd := osexec.Command(swarmletBin, "join", "--token", tok, "--advertise-addr", c.ip(9), "--data-dir", dir, "--engine", "process", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", c.ip(1)+":24240")
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("%s: join succeeded", name)
			}
			if !strings.Contains(string(out), "Error: ") || strings.Count(strings.TrimSpace(string(out)), "\n") > 0 && !strings.Contains(lastLine(string(out)), "Error: ") {
				t.Fatalf("%s: not one clear error line: %q", name, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "node.json")); err == nil {
				t.Fatalf("%s: a refused join left an identity behind", name)
			}
		}
		// A rotated token stops working.
		c.mustCLI(1, "join-token", "--rotate", "worker")
		dir := t.TempDir()
		out, err := osexec.Command(swarmletBin, "join", "--token", wtok, "--advertise-addr", c.ip(9), "--data-dir", dir, "--engine", "process", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", c.ip(1)+":24240").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "rotated") {
			t.Fatalf("rotated token: %v %s", err, out)
		}
		ns, _ := c.nodes(1)
		if len(ns) != 4 {
			t.Fatalf("refused joins changed the node list: %d nodes", len(ns))
		}
	})

	t.Run("node rm of a down node", func(t *testing.T) {
		c.kill(3) // a worker now
		waitFor(t, 10*time.Second, "node 3 down", func() bool {
			ns, _ := c.nodes(1)
			for _, n := range ns {
				if n.Addr == c.ip(3) {
					return n.Status == "down"
				}
			}
			return false
		})
		c.mustCLI(1, "node", "rm", c.ip(3))
		ns, _ := c.nodes(1)
		if len(ns) != 3 {
			t.Fatalf("node not removed: %+v", ns)
		}
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestBadInput: each mistake gives one clear error line and changes nothing.
func TestBadInput(t *testing.T) {
	c := newCluster(t, 42)
	c.start(1, "")
	before, _ := c.info(1)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown node", []string{"node", "inspect", "nosuchnode"}, "not found"},
		{"unknown node update", []string{"node", "update", "--availability", "drain", "nosuchnode"}, "not found"},
		{"bad availability", []string{"node", "update", "--availability", "sleepy", "node1"}, "invalid --availability"},
		{"bad flag", []string{"node", "ls", "--bogus"}, "unknown flag"},
		{"bad format", []string{"node", "ls", "--format", "xml"}, "invalid --format"},
		{"unknown role", []string{"join-token", "boss"}, "unknown role"},
		{"demote last manager", []string{"node", "demote", "node1"}, "last manager"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { c.expectError(t, 1, tc.want, tc.args...) })
	}
	t.Run("second init on a running data dir", func(t *testing.T) {
		out, err := osexec.Command(swarmletBin, "init", "--advertise-addr", c.ip(1), "--data-dir", c.dataDir(1), "--engine", "process", "--dns-port", "0").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "already running") {
			t.Fatalf("got %v %q", err, out)
		}
	})
	t.Run("join to an unreachable address", func(t *testing.T) {
		dir := t.TempDir()
		out, err := osexec.Command(swarmletBin, "join", "--token", "SWLT-1-"+strings.Repeat("0", 50)+"-"+strings.Repeat("a", 25), "--advertise-addr", c.ip(7), "--data-dir", dir, "--engine", "process", "--dns-port", "0", "--port-base", "24240", "127.42.0.99:24240").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "no swarmlet manager answers") {
			t.Fatalf("got %v %q", err, out)
		}
		if _, err := os.Stat(filepath.Join(dir, "node.json")); err == nil {
			t.Fatal("a failed join left an identity behind")
		}
	})
	t.Run("bad daemon flags", func(t *testing.T) {
		out, err := osexec.Command(swarmletBin, "init", "--advertise-addr", "not-an-ip", "--data-dir", t.TempDir()).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "invalid --advertise-addr") {
			t.Fatalf("got %v %q", err, out)
		}
	})
	after, _ := c.info(1)
	if after.RaftIndex != before.RaftIndex {
		t.Fatalf("bad input changed the state: index %d -> %d", before.RaftIndex, after.RaftIndex)
	}
}

// TestQuorumLoss: with 2 managers and one killed, a write fails within a bounded
// time saying quorum is lost and how many managers are reachable.
func TestQuorumLoss(t *testing.T) {
	c := newCluster(t, 43)
	c.start(1, "")
	c.start(2, strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "manager")))
	waitFor(t, 10*time.Second, "2 voters", func() bool { inf, err := c.info(1); return err == nil && inf.Managers == 2 })
	ns, _ := c.nodes(1)
	li := nodeIndex(leaderOf(ns))
	c.kill(li)
	other := 3 - li
	start := time.Now()
	_, errOut, err := c.cli(other, "node", "update", "--availability", "drain", c.ip(other))
	took := time.Since(start)
	if err == nil {
		t.Fatal("write succeeded without quorum")
	}
	if !strings.Contains(errOut, "quorum lost: 1 of 2 managers reachable") {
		t.Fatalf("unclear error: %q", errOut)
	}
	if took > 8*time.Second {
		t.Fatalf("write took %s to fail", took)
	}

	t.Run("force-new-cluster recovers", func(t *testing.T) {
		c.stop(other, syscall.SIGTERM)
		c.start(other, "", "--force-new-cluster")
		waitFor(t, 10*time.Second, "a write succeeds", func() bool {
			_, _, err := c.cli(other, "node", "update", "--label-add", "recovered=yes", c.ip(other))
			return err == nil
		})
		inf, _ := c.info(other)
		if inf.Managers != 1 || !inf.IsLeader {
			t.Fatalf("after recovery: %+v", inf)
		}
	})
}
