package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

type taskJSON struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Node    string `json:"node"`
	Desired string `json:"desired"`
	Current string `json:"current"`
	Error   string `json:"error"`
	Slot    uint64 `json:"slot"`
	Ports   string `json:"ports"`
	Addr    string `json:"addr"`
}

func (c *cluster) tasks(i int, svc string) ([]taskJSON, error) {
	out, errOut, err := c.cli(i, "service", "ps", "--format", "json", svc)
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, errOut)
	}
	var ts []taskJSON
	return ts, json.Unmarshal([]byte(out), &ts)
}

// running returns the running tasks meant to run, by slot, failing on a slot
// with two of them.
func running(t *testing.T, ts []taskJSON) map[uint64]taskJSON {
	out := map[uint64]taskJSON{}
	for _, x := range ts {
		if x.Current == "running" && x.Desired == "running" {
			if prev, dup := out[x.Slot]; dup {
				t.Fatalf("slot %d has two running tasks: %s and %s", x.Slot, prev.ID, x.ID)
			}
			out[x.Slot] = x
		}
	}
	return out
}

// taskProcesses counts live processes started by the process engine for a service,
// found by the SWARMLET_SERVICE variable in their environment.
func taskProcesses(service string) int {
	n := 0
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil {
			continue
		}
		exe, _ := os.Readlink(filepath.Join(d, "exe"))
		if exe != whoamiBin {
			continue
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			if kv == "SWARMLET_SERVICE="+service {
				n++
			}
		}
	}
	return n
}

// TestServicesProcessEngine: create 5 -> scale 7 -> SIGKILL a node's daemon -> 7
// running on the survivors -> drain a node -> rm leaves no process behind.
func TestServicesProcessEngine(t *testing.T) {
	c := newCluster(t, 44)
	c.start(1, "")
	mtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "manager"))
	wtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	c.start(2, mtok)
	c.start(3, mtok)
	c.start(4, wtok)
	waitFor(t, 10*time.Second, "4 ready nodes", func() bool {
		ns, err := c.nodes(1)
		return err == nil && len(ns) == 4
	})

	start := time.Now()
	out := c.mustCLI(2, "service", "create", "--name", "web", "--replicas", "5", "-p", "80", "--restart-delay", "0s", whoamiBin)
	t.Logf("create 5 converged in %s", time.Since(start))
	if strings.TrimSpace(out) == "" {
		t.Fatal("create printed no ID")
	}
	ts, err := c.tasks(2, "web")
	if err != nil {
		t.Fatal(err)
	}
	if r := running(t, ts); len(r) != 5 {
		t.Fatalf("after create (which waits): %d running", len(r))
	}
	perNode := map[string]int{}
	for _, x := range running(t, ts) {
		perNode[x.Node]++
	}
	if len(perNode) != 4 {
		t.Fatalf("5 tasks not spread over 4 nodes: %v", perNode)
	}

	// Each task answers on its host port with its own identity.
	for _, x := range running(t, ts) {
		hostPort := strings.Split(x.Ports, "->")[0]
		addr := ""
		ns, _ := c.nodes(1)
		for _, n := range ns {
			if n.ID == x.Node {
				addr = n.Addr
			}
		}
		body := httpGet(t, "http://"+addr+":"+hostPort+"/")
		if !strings.Contains(body, "task="+x.ID) || !strings.Contains(body, "slot="+strconv.FormatUint(x.Slot, 10)) {
			t.Fatalf("task %s answered %q", x.ID, body)
		}
	}

	c.mustCLI(1, "service", "scale", "web=7")
	ts, _ = c.tasks(1, "web")
	if r := running(t, ts); len(r) != 7 {
		t.Fatalf("after scale (which waits): %d running", len(r))
	}

	// SIGKILL the worker's daemon: its tasks are replaced on the survivors.
	var workerID string
	ns, _ := c.nodes(1)
	for _, n := range ns {
		if n.Addr == c.ip(4) {
			workerID = n.ID
		}
	}
	c.kill(4)
	waitFor(t, 20*time.Second, "7 running on the 3 survivors", func() bool {
		ts, err := c.tasks(1, "web")
		if err != nil {
			return false
		}
		r := running(t, ts)
		for _, x := range r {
			if x.Node == workerID {
				return false
			}
		}
		return len(r) == 7
	})
	// Remove the dead worker; when its daemon comes back it is not part of the
	// cluster any more and stops the processes it left running.
	c.mustCLI(1, "node", "rm", c.ip(4))
	c.start(4, wtok)
	waitFor(t, 20*time.Second, "exactly 7 processes", func() bool { return taskProcesses("web") == 7 })
	if ns, _ := c.nodes(1); len(ns) != 3 {
		t.Fatalf("a removed node came back by itself: %d nodes", len(ns))
	}

	// Drain node 3: its tasks move elsewhere.
	var drained string
	for _, n := range ns {
		if n.Addr == c.ip(3) {
			drained = n.ID
		}
	}
	c.mustCLI(1, "node", "update", "--availability", "drain", c.ip(3))
	waitFor(t, 20*time.Second, "no task on the drained node", func() bool {
		ts, err := c.tasks(1, "web")
		if err != nil {
			return false
		}
		r := running(t, ts)
		for _, x := range r {
			if x.Node == drained {
				return false
			}
		}
		return len(r) == 7
	})

	// A task killed behind the worker's back is replaced in the same slot.
	ts, _ = c.tasks(1, "web")
	victim := running(t, ts)[1]
	killTaskProcess(t, victim.ID)
	waitFor(t, 20*time.Second, "slot 1 replaced", func() bool {
		ts, err := c.tasks(1, "web")
		if err != nil {
			return false
		}
		r := running(t, ts)
		return len(r) == 7 && r[1].ID != victim.ID
	})

	c.mustCLI(2, "service", "rm", "web")
	waitFor(t, 20*time.Second, "no process left after rm", func() bool { return taskProcesses("web") == 0 })
	if _, errOut, err := c.cli(1, "service", "ps", "web"); err == nil || !strings.Contains(errOut, "not found") {
		t.Fatalf("ps after rm: %v %s", err, errOut)
	}
}

func killTaskProcess(t *testing.T, taskID string) {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil || !strings.Contains(string(b), "SWARMLET_TASK_ID="+taskID+"\x00") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return
	}
	t.Fatalf("no process for task %s", taskID)
}

// httpGet fetches url, waiting (10 s at most) for the task behind it to listen:
// RUNNING says its process started, not that it accepts connections yet.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	hc := http.Client{Timeout: 3 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	resp, err := hc.Get(url)
	for err != nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		resp, err = hc.Get(url)
	}
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestServiceBadInput: clear errors, nothing changed.
func TestServiceBadInput(t *testing.T) {
	c := newCluster(t, 45)
	c.start(1, "")
	c.mustCLI(1, "service", "create", "--name", "web", "--replicas", "1", "-p", "80", "--detach", whoamiBin)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown service", []string{"service", "scale", "nope=3"}, "not found"},
		{"unknown service ps", []string{"service", "ps", "nope"}, "not found"},
		{"negative replicas", []string{"service", "create", "--name", "x", "--replicas", "-1", whoamiBin}, "--replicas"},
		{"duplicate name", []string{"service", "create", "--name", "web", "--detach", whoamiBin}, "already in use"},
		{"bad constraint", []string{"service", "create", "--name", "y", "--constraint", "node.colour=red", whoamiBin}, "invalid constraint"},
		{"bad port", []string{"service", "create", "--name", "z", "-p", "80:99999", whoamiBin}, "invalid port"},
		{"bad name", []string{"service", "create", "--name", "Bad_Name", whoamiBin}, "invalid service name"},
		{"bad scale", []string{"service", "scale", "web=-2"}, "invalid scale"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { c.expectError(t, 1, tc.want, tc.args...) })
	}
	ls := c.mustCLI(1, "service", "ls", "-q")
	if strings.Count(ls, "\n") != 1 {
		t.Fatalf("services after bad input: %q", ls)
	}
	c.mustCLI(1, "service", "rm", "web")
	waitFor(t, 10*time.Second, "no process left", func() bool { return taskProcesses("web") == 0 })
}
