package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

type restartNodeJSON struct {
	nodeJSON
	RestartingUntil time.Time `json:"restarting_until"`
}

func (c *cluster) node(i int, hostname string) restartNodeJSON {
	c.t.Helper()
	var ns []restartNodeJSON
	if err := json.Unmarshal([]byte(c.mustCLI(i, "node", "ls", "--format", "json")), &ns); err != nil {
		c.t.Fatal(err)
	}
	for _, n := range ns {
		if n.Hostname == hostname {
			return n
		}
	}
	c.t.Fatalf("no node %s", hostname)
	return restartNodeJSON{}
}

// byNode groups the running tasks by node ID.
func byNode(t *testing.T, ts []taskJSON) map[string][]string {
	out := map[string][]string{}
	for _, x := range running(t, ts) {
		out[x.Node] = append(out[x.Node], x.ID)
	}
	return out
}

// TestDaemonRestartMovesNothing: a worker's daemon with 3 of the 6 tasks is
// stopped with SIGTERM and started again: the leader keeps its tasks (and their
// endpoints) meanwhile, so the same processes run afterwards, nothing started
// elsewhere and no request through the published port failed. Then the same
// node is killed with -9, which says nothing: its tasks are replaced as before.
func TestDaemonRestartMovesNothing(t *testing.T) {
	c := newCluster(t, 70)
	c.start(1, "", "--availability", "drain", "--service-range", "10.250.70.0/24")
	wtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	c.start(2, wtok)
	c.start(3, wtok)
	waitFor(t, 15*time.Second, "3 nodes", func() bool { ns, err := c.nodes(1); return err == nil && len(ns) == 3 })
	c.mustCLI(1, "service", "create", "--name", "web", "--replicas", "6", "-p", "80",
		"--health-http", "/health", "--health-interval", "200ms", "--stop-grace-period", "2s", whoamiBin)
	n2 := c.node(1, "node2").ID
	var before []taskJSON
	waitFor(t, 20*time.Second, "3 tasks on each worker", func() bool {
		ts, err := c.tasks(1, "web")
		before = ts
		return err == nil && len(byNode(t, ts)[n2]) == 3 && len(running(t, ts)) == 6
	})
	pids := taskPIDs("web")
	mine := byNode(t, before)[n2]
	url := fmt.Sprintf("http://%s:%d/", c.ip(1), c.service(1, "web").Ports[0].PublishedPort)
	waitFor(t, 20*time.Second, "web answering through the published port", func() bool {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	load := startLoad(url)
	defer load.close()
	time.Sleep(300 * time.Millisecond)
	load.take()

	// SIGTERM: a restart, not a leave.
	c.stop(2, syscall.SIGTERM)
	waitFor(t, 15*time.Second, "node2 down and restarting", func() bool {
		n := c.node(1, "node2")
		return n.Status == "down" && !n.RestartingUntil.IsZero()
	})
	if until := c.node(1, "node2").RestartingUntil; time.Until(until) < 50*time.Second {
		t.Fatalf("restarting until %v: not the default grace of 60 s", until)
	}
	if !strings.Contains(c.mustCLI(1, "node", "ls"), "down (restarting)") {
		t.Fatal("node ls does not say the node is restarting")
	}
	time.Sleep(time.Second) // the node is away a while; the leader keeps its tasks
	if ts, _ := c.tasks(1, "web"); len(ts) != 6 || len(running(t, ts)) != 6 {
		t.Fatalf("while node2 restarts: %+v", ts)
	}
	c.start(2, "x")
	waitFor(t, 15*time.Second, "node2 ready, mark cleared", func() bool {
		n := c.node(1, "node2")
		return n.Status == "ready" && n.RestartingUntil.IsZero()
	})
	// Give the restarted worker time to adopt and report: nothing may change.
	time.Sleep(time.Second)
	ok, fail, _, errs := load.take()
	after, _ := c.tasks(1, "web")
	t.Logf("SIGTERM restart of a worker with 3 tasks: %d requests ok, %d failed %v", ok, fail, errs)
	if fail != 0 || ok == 0 {
		t.Fatalf("%d of %d requests failed across the daemon restart: %v", fail, ok+fail, errs)
	}
	if all, _, _ := c.cli(1, "service", "ps", "--all", "-q", "web"); len(strings.Fields(all)) != 6 {
		t.Fatalf("tasks were replaced or added across the restart:\n%s", c.mustCLI(1, "service", "ps", "--all", "web"))
	}
	for _, id := range mine {
		if got := byNode(t, after)[n2]; !strings.Contains(strings.Join(got, " "), id) {
			t.Fatalf("task %s no longer runs on node2: %v", id, got)
		}
	}
	now := taskPIDs("web")
	for _, id := range mine {
		if now[id] == 0 || now[id] != pids[id] {
			t.Fatalf("task %s: pid %d before the restart, %d after", id, pids[id], now[id])
		}
	}
	if len(now) != 6 {
		t.Fatalf("%d task processes, want 6: %v", len(now), now)
	}
	t.Logf("moved: none (the 3 tasks of node2 kept their PIDs %v)", pids)

	// kill -9 says nothing: the tasks go elsewhere as soon as the node is seen down.
	c.kill(2)
	killed := time.Now()
	waitFor(t, 30*time.Second, "node2's slots running on node3", func() bool {
		ts, err := c.tasks(1, "web")
		return err == nil && len(running(t, ts)) == 6 && len(byNode(t, ts)[n2]) == 0
	})
	t.Logf("kill -9 of node2: its 3 tasks running elsewhere after %v", time.Since(killed).Round(time.Millisecond))
	if n := c.node(1, "node2"); !n.RestartingUntil.IsZero() {
		t.Fatalf("a killed node got a restart grace: %+v", n)
	}
	// Back, the node stops what it no longer owns.
	c.start(2, "x")
	waitFor(t, 20*time.Second, "6 task processes", func() bool { return len(taskPIDs("web")) == 6 })
	c.mustCLI(1, "service", "rm", "web")
	waitFor(t, 20*time.Second, "no process left", func() bool { return taskProcesses("web") == 0 })
}

// TestLeaderRestartMovesNothing: the leader's own daemon restarted with SIGTERM
// (an upgrade of the managers one by one): it records its restart before it
// hands leadership over, so the new leader keeps its tasks; back, it runs the
// same processes.
func TestLeaderRestartMovesNothing(t *testing.T) {
	c := newCluster(t, 70)
	c.start(1, "", "--service-range", "10.250.70.0/24")
	mtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "manager"))
	c.start(2, mtok, "--availability", "drain")
	c.start(3, mtok, "--availability", "drain")
	waitFor(t, 20*time.Second, "3 managers reachable", func() bool {
		inf, err := c.info(1)
		return err == nil && inf.Managers == 3 && inf.ManagersUp == 3 && inf.IsLeader
	})
	c.mustCLI(1, "service", "create", "--name", "web", "--replicas", "3", "-p", "80", whoamiBin)
	pids := taskPIDs("web")
	if len(pids) != 3 {
		t.Fatalf("%d task processes", len(pids))
	}
	c.stop(1, syscall.SIGTERM)
	waitFor(t, 15*time.Second, "node1 down and restarting, seen by the new leader", func() bool {
		out, _, err := c.cli(2, "node", "ls", "--format", "json")
		var ns []restartNodeJSON
		if err != nil || json.Unmarshal([]byte(out), &ns) != nil {
			return false
		}
		for _, n := range ns {
			if n.Hostname == "node1" {
				return n.Status == "down" && !n.RestartingUntil.IsZero()
			}
		}
		return false
	})
	c.start(1, "x")
	waitFor(t, 15*time.Second, "node1 ready again", func() bool {
		n := c.node(2, "node1")
		return n.Status == "ready" && n.RestartingUntil.IsZero()
	})
	time.Sleep(time.Second)
	if all := strings.Fields(c.mustCLI(2, "service", "ps", "--all", "-q", "web")); len(all) != 3 {
		t.Fatalf("tasks replaced across the leader's restart:\n%s", c.mustCLI(2, "service", "ps", "--all", "web"))
	}
	for id, pid := range taskPIDs("web") {
		if pids[id] != pid {
			t.Fatalf("task %s: pid %d before, %d after", id, pids[id], pid)
		}
	}
	c.mustCLI(2, "service", "rm", "web")
	waitFor(t, 20*time.Second, "no process left", func() bool { return taskProcesses("web") == 0 })
}
