package main

import (
	"encoding/json"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// dockerContainers lists the IDs of running containers carrying a label.
func dockerContainers(t *testing.T, label string) []string {
	t.Helper()
	out, err := osexec.Command("docker", "ps", "-q", "--no-trunc", "--filter", "label="+label).Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	return strings.Fields(string(out))
}

// TestServicesDockerEngine: the project's whoami image, 3 replicas over 2 nodes
// sharing one Docker engine; docker kill -> replaced in the same slot; a worker
// restart adopts containers instead of recreating them; a missing image is REJECTED.
func TestServicesDockerEngine(t *testing.T) {
	if _, err := os.Stat("/var/run/docker.sock"); err != nil {
		t.Skip("no Docker engine socket at /var/run/docker.sock")
	}
	build := osexec.Command("bash", filepath.Join("..", "whoami", "build.sh"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the whoami image: %v\n%s", err, out)
	}
	c := newCluster(t, 46)
	c.extra = []string{"--engine", "docker", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", "--pool", poolFor(46)}
	c.start(1, "")
	c.start(2, strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker")))
	t.Cleanup(func() {
		c.stopAll() // no daemon may start a container meanwhile
		ids, _ := osexec.Command("docker", "ps", "-aq", "--filter", "label=swarmlet.service=dweb").Output()
		if f := strings.Fields(string(ids)); len(f) > 0 {
			_ = osexec.Command("docker", append([]string{"rm", "-f"}, f...)...).Run()
		}
	})
	c.cleanupDocker(t)
	waitFor(t, 10*time.Second, "2 nodes", func() bool { ns, err := c.nodes(1); return err == nil && len(ns) == 2 })

	start := time.Now()
	c.mustCLI(1, "service", "create", "--name", "dweb", "--replicas", "3", "-p", "80", "--restart-delay", "0s", "swarmlet/whoami:test")
	t.Logf("3 containers running %s after create", time.Since(start))
	ts, _ := c.tasks(1, "dweb")
	r := running(t, ts)
	if len(r) != 3 {
		t.Fatalf("%d running", len(r))
	}
	nodesUsed := map[string]bool{}
	for _, x := range r {
		nodesUsed[x.Node] = true
	}
	if len(nodesUsed) != 2 {
		t.Fatalf("3 replicas not spread over 2 nodes: %v", nodesUsed)
	}
	// Nodes sharing one engine each have a network of their own subnet.
	subnetOf := map[string]string{}
	for _, x := range r {
		a, err := netip.ParseAddr(x.Addr)
		if err != nil || !netip.MustParsePrefix(poolFor(46)).Contains(a) {
			t.Fatalf("task %s has address %q, not of the pool %s", x.ID, x.Addr, poolFor(46))
		}
		sub := netip.PrefixFrom(a, 24).Masked().String()
		for node, s := range subnetOf {
			if (node == x.Node) != (s == sub) {
				t.Fatalf("tasks on nodes %s and %s: subnets %s and %s", node, x.Node, s, sub)
			}
		}
		subnetOf[x.Node] = sub
	}
	ids := dockerContainers(t, "swarmlet.service=dweb")
	if len(ids) != 3 {
		t.Fatalf("%d containers, want 3", len(ids))
	}
	// The container answers on its published host port with its own task ID.
	for _, x := range r {
		hostPort := strings.Split(x.Ports, "->")[0]
		ns, _ := c.nodes(1)
		for _, n := range ns {
			if n.ID == x.Node {
				if body := httpGet(t, "http://"+n.Addr+":"+hostPort+"/"); !strings.Contains(body, "task="+x.ID) {
					t.Fatalf("task %s answered %q", x.ID, body)
				}
			}
		}
	}

	// docker kill one container: a replacement appears in the same slot.
	victim := r[2]
	out, err := osexec.Command("docker", "ps", "-q", "--filter", "label=swarmlet.task="+victim.ID).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("container of task %s: %v %q", victim.ID, err, out)
	}
	if err := osexec.Command("docker", "kill", strings.TrimSpace(string(out))).Run(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "slot 2 replaced", func() bool {
		ts, err := c.tasks(1, "dweb")
		if err != nil {
			return false
		}
		r := running(t, ts)
		return len(r) == 3 && r[2].ID != victim.ID
	})

	// Restart the worker daemon: its containers are adopted, not recreated.
	before := map[string]bool{}
	for _, id := range dockerContainers(t, "swarmlet.service=dweb") {
		before[id] = true
	}
	c.kill(2)
	c.start(2, "x") // a data dir with state resumes; the token is not used again
	waitFor(t, 20*time.Second, "node 2 ready and 3 running", func() bool {
		ns, err := c.nodes(1)
		if err != nil {
			return false
		}
		for _, n := range ns {
			if n.Status != "ready" {
				return false
			}
		}
		ts, err := c.tasks(1, "dweb")
		return err == nil && len(running(t, ts)) == 3
	})
	after := dockerContainers(t, "swarmlet.service=dweb")
	if len(after) != 3 {
		t.Fatalf("%d containers after restart", len(after))
	}
	for _, id := range after {
		if !before[id] {
			t.Fatalf("container %s was recreated after the worker restarted", id[:12])
		}
	}

	// A missing image is rejected with the reason, and create says so. (It names a
	// registry on loopback where none listens: a Docker Hub name would send the
	// engine's pull, and the manager's digest lookup, off the machine.)
	_, errOut, err := c.cli(1, "service", "create", "--name", "ghost", "127.46.0.250:5999/swarmlet/does-not-exist:1")
	if err == nil || !strings.Contains(errOut, "rejected") || !strings.Contains(strings.ToLower(errOut), "no such image") {
		t.Fatalf("missing image: %v %q", err, errOut)
	}
	// The slot is retried (restart backoff); its history keeps the rejection.
	ghostOut, _, _ := c.cli(1, "service", "ps", "--all", "--format", "json", "ghost")
	var ghost []taskJSON
	if err := json.Unmarshal([]byte(ghostOut), &ghost); err != nil || !slices.ContainsFunc(ghost, func(x taskJSON) bool { return x.Current == "rejected" }) {
		t.Fatalf("ghost tasks: %v %+v", err, ghost)
	}
	c.mustCLI(1, "service", "rm", "ghost", "dweb")
	waitFor(t, 30*time.Second, "no container left", func() bool {
		out, _ := osexec.Command("docker", "ps", "-aq", "--filter", "label=swarmlet.service=dweb").Output()
		return strings.TrimSpace(string(out)) == ""
	})
}
