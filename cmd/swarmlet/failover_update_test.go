package main

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLeaderKilledMidUpdate: 3 managers, a rolling update of 6 replicas one at a
// time with a delay, so it takes a while; the leader is killed with -9 in the
// middle. The update's state is in Raft: the new leader carries it on to the end
// (completed, all 6 at the new version).
func TestLeaderKilledMidUpdate(t *testing.T) {
	c := newCluster(t, 70)
	c.start(1, "", "--service-range", "10.250.70.0/24")
	mtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "manager"))
	c.start(2, mtok)
	c.start(3, mtok)
	waitFor(t, 20*time.Second, "3 managers reachable", func() bool {
		inf, err := c.info(1)
		return err == nil && inf.Managers == 3 && inf.ManagersUp == 3
	})
	c.mustCLI(1, "service", "create", "--name", "web", "--replicas", "6", "-p", "80", "--env", "WHOAMI_VERSION=A",
		"--update-parallelism", "1", "--update-delay", "1s", "--update-monitor", "500ms", whoamiBin)
	v1 := c.service(1, "web").SpecVersion

	tasksAt := func(i int) []rolloutTask {
		out, _, err := c.cli(i, "service", "ps", "--format", "json", "web")
		var ts []rolloutTask
		if err != nil || json.Unmarshal([]byte(out), &ts) != nil {
			return nil
		}
		return ts
	}
	newRunning := func(ts []rolloutTask) int {
		n := 0
		for _, x := range ts {
			if x.SpecVersion > v1 && x.Current == "running" && x.Desired == "running" {
				n++
			}
		}
		return n
	}
	c.mustCLI(1, "service", "update", "--detach", "--env-add", "WHOAMI_VERSION=B", "web")
	waitFor(t, 30*time.Second, "2 slots updated", func() bool { return newRunning(tasksAt(1)) >= 2 })
	if st := c.service(1, "web").UpdateStatus; st == nil || st.State != "updating" {
		t.Fatalf("mid-update state %+v", st)
	}
	inf, err := c.info(1)
	if err != nil {
		t.Fatal(err)
	}
	leader := 0
	ns, _ := c.nodes(1)
	for _, n := range ns {
		if n.ID == inf.LeaderID {
			leader = nodeIndex(n.Addr)
		}
	}
	if leader == 0 {
		t.Fatalf("no leader in %+v", ns)
	}
	done := newRunning(tasksAt(leader))
	c.stop(leader, syscall.SIGKILL)
	killed := time.Now()
	other := 1 + leader%3
	t.Logf("killed leader node%d with %d of 6 slots updated; asking node%d", leader, done, other)
	if done >= 6 {
		t.Fatal("the update was over before the leader was killed")
	}

	waitFor(t, 45*time.Second, "the update completed by the new leader", func() bool {
		out, _, err := c.cli(other, "service", "inspect", "web")
		var svcs []serviceJSON
		if err != nil || json.Unmarshal([]byte(out), &svcs) != nil || len(svcs) != 1 {
			return false
		}
		st := svcs[0].UpdateStatus
		return st != nil && st.State == "completed"
	})
	ts := tasksAt(other)
	if n := newRunning(ts); n != 6 {
		t.Fatalf("%d of 6 running at the new version after the update completed: %+v", n, ts)
	}
	inf2, _ := c.info(other)
	if inf2.LeaderID == inf.LeaderID || inf2.LeaderID == "" {
		t.Fatalf("leader %q after killing %q", inf2.LeaderID, inf.LeaderID)
	}
	t.Logf("the new leader completed the update %v after the kill", time.Since(killed).Round(time.Millisecond))
}
