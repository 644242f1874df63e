package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Jobs and placement through the binary, on the process engine: loopback nets
// 127.86.x.x (jobs) and 127.87.x.x (placement).

type serviceRowJSON struct {
	Name        string `json:"name"`
	Mode        string `json:"mode"`
	Replicas    string `json:"replicas"`
	Running     int    `json:"running"`
	Desired     uint64 `json:"desired"`
	Completed   int    `json:"completed"`
	Completions uint64 `json:"completions"`
}

func (c *cluster) serviceRows(i int) []serviceRowJSON {
	c.t.Helper()
	var out []serviceRowJSON
	if err := json.Unmarshal([]byte(c.mustCLI(i, "service", "ls", "--format", "json")), &out); err != nil {
		c.t.Fatal(err)
	}
	return out
}

// serviceRow is service NAME as `service ls --format json` lists it.
func (c *cluster) serviceRow(i int, name string) serviceRowJSON {
	c.t.Helper()
	for _, s := range c.serviceRows(i) {
		if s.Name == name {
			return s
		}
	}
	c.t.Fatalf("no service %s", name)
	return serviceRowJSON{}
}

// jobScript writes a program that records its start and end (with the task's
// ID, in nanoseconds) in log, runs for a while and exits with code.
func jobScript(t *testing.T, log string, code int) string {
	p := filepath.Join(t.TempDir(), "job.sh")
	script := fmt.Sprintf("#!/bin/sh\necho \"start $SWARMLET_TASK_ID $(date +%%s%%N)\" >> %s\nsleep 0.4\necho \"end $SWARMLET_TASK_ID $(date +%%s%%N)\" >> %s\nexit %d\n", log, log, code)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// runs reads a job log: the tasks that ran to their end, and the most that
// were between their start and end at one time.
func runs(t *testing.T, log string) (done []string, most int) {
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	type ev struct {
		at    int64
		start bool
		task  string
	}
	var evs []ev
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("bad log line %q", l)
		}
		at, _ := strconv.ParseInt(f[2], 10, 64)
		evs = append(evs, ev{at, f[0] == "start", f[1]})
		if f[0] == "end" {
			done = append(done, f[1])
		}
	}
	slices.SortFunc(evs, func(a, b ev) int { return int(a.at - b.at) })
	cur := 0
	for _, e := range evs {
		if e.start {
			cur++
		} else {
			cur--
		}
		most = max(most, cur)
	}
	return done, most
}

// TestJobsProcessEngine: a replicated job of 6 completions, 2 at a time, runs 6
// and no more, service ls and ps show it done as docker does, update --force
// runs it again with the first run kept as history, a scale runs only the
// completions added; a global job runs once per node; a failing job's create fails with the reason; bad input changes nothing.
func TestJobsProcessEngine(t *testing.T) {
	c := newCluster(t, 86)
	c.start(1, "")
	wtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	c.start(2, wtok)
	c.start(3, wtok)
	waitFor(t, 10*time.Second, "3 nodes", func() bool {
		ns, err := c.nodes(1)
		return err == nil && len(ns) == 3
	})
	log := filepath.Join(t.TempDir(), "runs.log")
	prog := jobScript(t, log, 0)

	start := time.Now()
	out, errOut, err := c.cli(1, "service", "create", "--name", "batch", "--mode", "replicated-job", "--replicas", "6", "--max-concurrent", "2", prog)
	if err != nil {
		t.Fatalf("create: %v: %s", err, errOut)
	}
	t.Logf("6 completions, 2 at a time, of 0.4 s each: create returned after %s", time.Since(start))
	if !strings.Contains(errOut, "batch: 6/6 completed") || !strings.Contains(errOut, "batch: job complete") || strings.TrimSpace(out) == "" {
		t.Fatalf("create's progress: %q, out %q", errOut, out)
	}
	done, most := runs(t, log)
	if len(done) != 6 || most > 2 {
		t.Fatalf("%d runs ended (want 6), %d at once (want at most 2)", len(done), most)
	}
	if s := c.serviceRow(1, "batch"); s.Replicas != "0/2 (6/6 completed)" || s.Completed != 6 || s.Completions != 6 || s.Mode != "replicated-job" {
		t.Fatalf("service ls: %+v", s)
	}
	ts, err := c.tasks(1, "batch")
	if err != nil {
		t.Fatal(err)
	}
	slots := map[uint64]bool{}
	for _, x := range ts {
		if x.Current != "complete" || x.Desired != "running" {
			t.Fatalf("task %s %s: desired %s, current %s", x.ID, x.Name, x.Desired, x.Current)
		}
		slots[x.Slot] = true
	}
	if len(ts) != 6 || len(slots) != 6 {
		t.Fatalf("service ps: %d tasks in %d slots, want 6 in 6", len(ts), len(slots))
	}
	if text := c.mustCLI(1, "service", "ps", "batch"); strings.Count(text, "Complete ") != 6 {
		t.Fatalf("service ps does not show 6 Complete:\n%s", text)
	}

	// update --force is a new run; the first run's tasks are history.
	if _, errOut, err := c.cli(1, "service", "update", "--force", "batch"); err != nil || !strings.Contains(errOut, "batch: job complete") {
		t.Fatalf("update --force: %v: %s", err, errOut)
	}
	if done, most := runs(t, log); len(done) != 12 || most > 2 {
		t.Fatalf("after update --force: %d runs (want 12), %d at once", len(done), most)
	}
	var all []taskJSON
	if err := json.Unmarshal([]byte(c.mustCLI(1, "service", "ps", "--all", "--format", "json", "batch")), &all); err != nil {
		t.Fatal(err)
	}
	history := 0
	for _, x := range all {
		if x.Desired == "shutdown" && x.Current == "complete" {
			history++
		}
	}
	if ts, _ := c.tasks(1, "batch"); len(all) != 12 || history != 6 || len(ts) != 6 {
		t.Fatalf("ps --all: %d tasks, %d of the first run as history; ps: %d (want 12, 6, 6)", len(all), history, len(ts))
	}

	// Scaling goes on with the run: only the completions added run.
	if _, errOut, err := c.cli(1, "service", "scale", "batch=8"); err != nil || !strings.Contains(errOut, "batch: job complete") {
		t.Fatalf("scale: %v: %s", err, errOut)
	}
	if done, _ := runs(t, log); len(done) != 14 {
		t.Fatalf("after scale 6 -> 8: %d runs, want 14", len(done))
	}
	if s := c.serviceRow(1, "batch"); s.Replicas != "0/2 (8/8 completed)" {
		t.Fatalf("service ls after scale: %q", s.Replicas)
	}

	// A global job: one completion on each node.
	glog := filepath.Join(t.TempDir(), "global.log")
	if _, errOut, err := c.cli(1, "service", "create", "--name", "each", "--mode", "global-job", jobScript(t, glog, 0)); err != nil {
		t.Fatalf("global job: %v: %s", err, errOut)
	}
	if done, _ := runs(t, glog); len(done) != 3 {
		t.Fatalf("global job: %d runs, want 3", len(done))
	}
	if s := c.serviceRow(1, "each"); s.Replicas != "0/0 (3/3 completed)" {
		t.Fatalf("global job in service ls: %q", s.Replicas)
	}

	// A job whose task fails: retried once (on-failure, max 1 attempt), then the
	// create fails naming the task and the reason.
	flog := filepath.Join(t.TempDir(), "fail.log")
	_, errOut, err = c.cli(1, "service", "create", "--name", "fails", "--mode", "replicated-job", "--restart-max-attempts", "1", jobScript(t, flog, 3))
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if last := lines[len(lines)-1]; err == nil || !strings.HasPrefix(last, "Error: fails: task fails.1 failed: exit status 3; its restart policy gives up") {
		t.Fatalf("a failing job's create: %v, last line %q", err, last)
	}
	if done, _ := runs(t, flog); len(done) != 2 {
		t.Fatalf("failing job: %d runs, want 2 (the first and one retry)", len(done))
	}

	// Bad input: a clear error, nothing created or changed.
	before := len(c.serviceRows(1))
	c.expectError(t, 1, "--max-concurrent can only be used with --mode replicated-job", "service", "create", "--name", "x", "--max-concurrent", "2", prog)
	c.expectError(t, 1, "--replicas cannot be used with --mode global-job", "service", "create", "--name", "x", "--mode", "global-job", "--replicas", "2", prog)
	c.expectError(t, 1, "update and rollback settings do not apply to jobs", "service", "create", "--name", "x", "--mode", "replicated-job", "--update-parallelism", "2", prog)
	c.expectError(t, 1, "invalid mode", "service", "create", "--name", "x", "--mode", "cron", prog)
	c.expectError(t, 1, "is a job: it has no rollback", "service", "rollback", "batch")
	c.expectError(t, 1, "cannot be scaled", "service", "scale", "each=2")
	if n := len(c.serviceRows(1)); n != before {
		t.Fatalf("bad input changed the services: %d, was %d", n, before)
	}
	if done, _ := runs(t, log); len(done) != 14 {
		t.Fatalf("bad input ran the job: %d runs", len(done))
	}
}

// TestPlacementProcessEngine: three nodes labelled zone=a, a, b (the third
// with an engine label): spread puts half the tasks in each zone, engine-label
// and platform constraints hold, max replicas per node caps, and every task
// that cannot be placed says why, naming the nodes; bad input changes nothing.
func TestPlacementProcessEngine(t *testing.T) {
	c := newCluster(t, 87)
	c.start(1, "")
	wtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	c.start(2, wtok)
	c.start(3, wtok, "--engine-label", "disk=ssd")
	waitFor(t, 10*time.Second, "3 nodes", func() bool {
		ns, err := c.nodes(1)
		return err == nil && len(ns) == 3
	})
	for node, zone := range map[string]string{"node1": "a", "node2": "a", "node3": "b"} {
		c.mustCLI(1, "node", "update", "--label-add", "zone="+zone, node)
	}
	hostOf := map[string]string{}
	ns, _ := c.nodes(1)
	for _, n := range ns {
		hostOf[n.ID] = n.Hostname
	}

	// node inspect shows what the node's engine reported.
	var inspected []struct {
		Platform     struct{ OS, Arch string } `json:"platform"`
		EngineLabels map[string]string         `json:"engine_labels"`
	}
	if err := json.Unmarshal([]byte(c.mustCLI(1, "node", "inspect", "node3")), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("node inspect: %v", err)
	}
	if p := inspected[0].Platform; p.OS != runtime.GOOS || p.Arch != runtime.GOARCH || inspected[0].EngineLabels["disk"] != "ssd" {
		t.Fatalf("node3 registered platform %+v, engine labels %v", p, inspected[0].EngineLabels)
	}

	perHost := func(svc string) map[string]int {
		t.Helper()
		ts, err := c.tasks(1, svc)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, x := range running(t, ts) {
			out[hostOf[x.Node]]++
		}
		return out
	}
	// Spread is per zone, not per node: zone b's one node takes half.
	c.mustCLI(1, "service", "create", "--name", "web", "--replicas", "4", "--placement-pref", "spread=node.labels.zone", "-p", "80", whoamiBin)
	if got := perHost("web"); got["node1"] != 1 || got["node2"] != 1 || got["node3"] != 2 {
		t.Fatalf("spread over zones: %v, want node1 1, node2 1, node3 2", got)
	}
	c.mustCLI(1, "service", "create", "--name", "ssd", "--replicas", "2", "--constraint", "engine.labels.disk==ssd", "-p", "80", whoamiBin)
	if got := perHost("ssd"); got["node3"] != 2 {
		t.Fatalf("engine label constraint: %v, want both on node3", got)
	}
	// Swarm's spelling of the architecture matches Go's (x86_64 is amd64).
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	c.mustCLI(1, "service", "create", "--name", "plat", "--constraint", "node.platform.os==linux", "--constraint", "node.platform.arch=="+arch, "-p", "80", whoamiBin)

	// What cannot be placed says why, per node.
	pendingReason := func(svc string, want string) {
		t.Helper()
		var got string
		waitFor(t, 10*time.Second, svc+" pending with its reason", func() bool {
			ts, err := c.tasks(1, svc)
			if err != nil {
				return false
			}
			for _, x := range ts {
				if x.Current == "pending" {
					got = x.Error
					return got == want
				}
			}
			return false
		})
		if text := c.mustCLI(1, "service", "ps", svc); !strings.Contains(text, want) {
			t.Fatalf("service ps does not show %q:\n%s", want, text)
		}
	}
	c.mustCLI(1, "service", "create", "--detach", "--name", "capped", "--replicas", "4", "--replicas-max-per-node", "1", "-p", "80", whoamiBin)
	pendingReason("capped", "no suitable node (3 nodes: 3 max replicas per node 1 reached on node1, node2, node3)")
	waitFor(t, 10*time.Second, "capped 3/4", func() bool { return c.serviceRow(1, "capped").Replicas == "3/4 (max 1 per node)" })
	c.mustCLI(1, "service", "create", "--detach", "--name", "mixed", "--replicas", "2", "--replicas-max-per-node", "1", "--constraint", "node.labels.zone==b", "-p", "80", whoamiBin)
	pendingReason("mixed", "no suitable node (3 nodes: 2 unmet constraint node.labels.zone==b on node1, node2; 1 max replicas per node 1 reached on node3)")
	c.mustCLI(1, "service", "create", "--detach", "--name", "win", "--constraint", "node.platform.os==windows", "-p", "80", whoamiBin)
	pendingReason("win", "no suitable node (3 nodes: 3 unmet constraint node.platform.os==windows on node1, node2, node3)")

	// Bad input: a clear error, nothing created or changed.
	before := len(c.serviceRows(1))
	version := c.service(1, "web").SpecVersion
	c.expectError(t, 1, "unknown spread key", "service", "create", "--name", "x", "--placement-pref", "spread=zone", whoamiBin)
	c.expectError(t, 1, "only spread is supported", "service", "create", "--name", "x", "--placement-pref", "pack=node.labels.zone", whoamiBin)
	c.expectError(t, 1, "--replicas-max-per-node can only be used with replicated or replicated-job mode", "service", "create", "--name", "x", "--mode", "global", "--replicas-max-per-node", "1", whoamiBin)
	c.expectError(t, 1, "invalid constraint", "service", "create", "--name", "x", "--constraint", "node.platform.kernel==6", whoamiBin)
	c.expectError(t, 1, "no such preference (it has spread=node.labels.zone)", "service", "update", "--placement-pref-rm", "spread=node.labels.rack", "web")
	c.expectError(t, 1, "unknown spread key", "service", "update", "--placement-pref-add", "spread=rack", "web")
	if n := len(c.serviceRows(1)); n != before {
		t.Fatalf("bad input changed the services: %d, was %d", n, before)
	}
	if v := c.service(1, "web").SpecVersion; v != version {
		t.Fatalf("a refused update moved web from version %d to %d", version, v)
	}
	for _, svc := range []string{"web", "ssd", "plat", "capped", "mixed", "win"} {
		c.mustCLI(1, "service", "rm", svc)
	}
}
