package main

import (
	"fmt"
	"os"
	osexec "os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

// These benchmarks measure the cluster as a user meets it, through the built binary.
// Run them with -benchtime=1x: each does its own fixed number of rounds and reports
// the median and the worst.
//
//	go test ./cmd/swarmlet -run '^$' -bench Failover -benchtime 1x -v
//	go test ./cmd/swarmlet -run '^$' -bench Create20 -benchtime 1x -v

func report(b *testing.B, name string, ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	med, worst := ds[len(ds)/2], ds[len(ds)-1]
	b.Logf("%s over %d runs: median %s, worst %s, all %v", name, len(ds), med.Round(time.Millisecond), worst.Round(time.Millisecond), ds)
	b.ReportMetric(med.Seconds(), name+"-median-s")
	b.ReportMetric(worst.Seconds(), name+"-worst-s")
}

// BenchmarkFailover: 3 managers; kill -9 the leader; time until a write succeeds
// through a survivor, and until the dead node is shown down.
func BenchmarkFailover(b *testing.B) {
	const rounds = 10
	var failover, detect []time.Duration
	for r := range rounds {
		c := newBenchCluster(b, 60+r)
		c.start(1, "")
		mtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "manager"))
		c.start(2, mtok)
		c.start(3, mtok)
		waitForB(b, 15*time.Second, func() bool { inf, err := c.info(1); return err == nil && inf.ManagersUp == 3 })
		ns, _ := c.nodes(1)
		li := nodeIndex(leaderOf(ns))
		other := li%3 + 1
		t0 := time.Now()
		c.kill(li)
		for {
			if _, _, err := c.cli(other, "node", "update", "--label-add", fmt.Sprintf("round=%d", r), c.ip(other)); err == nil {
				break
			}
		}
		failover = append(failover, time.Since(t0))
		waitForB(b, 20*time.Second, func() bool {
			ns, err := c.nodes(other)
			if err != nil {
				return false
			}
			for _, n := range ns {
				if n.Addr == c.ip(li) {
					return n.Status == "down"
				}
			}
			return false
		})
		detect = append(detect, time.Since(t0))
		c.stopAll()
	}
	report(b, "failover", failover)
	report(b, "down-detect", detect)
}

// BenchmarkCreate20: time from `service create --replicas 20` to 20 running (the
// command waits for convergence), process engine and Docker, 5 rounds each.
func BenchmarkCreate20(b *testing.B) {
	engines := []string{"process"}
	if _, err := os.Stat("/var/run/docker.sock"); err == nil {
		engines = append(engines, "docker")
	}
	for _, eng := range engines {
		c := newBenchCluster(b, 70)
		c.extra = []string{"--engine", eng, "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", "--pool", poolFor(c.net)}
		c.start(1, "")
		wtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
		c.start(2, wtok)
		c.start(3, wtok)
		waitForB(b, 15*time.Second, func() bool { ns, err := c.nodes(1); return err == nil && len(ns) == 3 })
		image := whoamiBin
		if eng == "docker" {
			image = "swarmlet/whoami:test"
		}
		var ds []time.Duration
		for r := range 5 {
			name := fmt.Sprintf("c%d", r)
			t0 := time.Now()
			c.mustCLI(1, "service", "create", "--name", name, "--replicas", "20", "-p", "80", image)
			ds = append(ds, time.Since(t0))
			c.mustCLI(1, "service", "rm", name)
			waitForB(b, 60*time.Second, func() bool {
				if eng == "docker" {
					out, _ := osexec.Command("docker", "ps", "-aq", "--filter", "label=swarmlet.service="+name).Output()
					return strings.TrimSpace(string(out)) == ""
				}
				return taskProcesses(name) == 0
			})
		}
		report(b, "create20-"+eng, ds)
		ns, _ := c.nodes(1)
		c.stopAll()
		if eng == "docker" {
			// Each node made its container network on the shared engine.
			for _, n := range ns {
				_ = osexec.Command("docker", "network", "rm", "swarmlet-"+n.ID).Run()
			}
		}
	}
}
