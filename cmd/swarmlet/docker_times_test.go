package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	dockerclient "github.com/docker/docker/client"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// liveTasks are a service's tasks running and meant to, by slot.
func liveTasks(t *testing.T, cl *client.Client, svc string) map[uint64]api.Task {
	t.Helper()
	out := map[uint64]api.Task{}
	for _, tk := range apiTasks(t, cl, svc) {
		if tk.Status.State == api.TaskRunning && tk.DesiredState == api.TaskRunning {
			out[tk.Slot] = tk
		}
	}
	return out
}

// TestDockerHealthAndCrashTimes measures, with the docker engine, what the
// numbers in the deployments note are made of: how soon a task whose HTTP
// check turns unhealthy stops getting requests through the published port, and
// how soon a container killed with docker kill has its replacement running
// (Docker Swarm: 5.6 s on this machine; the goal is under 1 s).
func TestDockerHealthAndCrashTimes(t *testing.T) {
	requireDocker(t)
	const svc, image = "swldep-times", "swarmlet/whoami:swldep-times"
	buildWhoamiTag(t, image, "1") // this tree's whoami: it has POST /health/fail
	removeContainersOf(t, svc)
	c := newCluster(t, 70)
	c.extra = []string{"--engine", "docker", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", "--pool", poolFor(71)}
	c.start(1, "", "--service-range", "10.250.70.0/24")
	c.cleanupDocker(t)
	c.start(2, strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker")))
	waitFor(t, 15*time.Second, "2 nodes", func() bool { ns, err := c.nodes(1); return err == nil && len(ns) == 2 })
	cl, err := client.New(c.sock(1), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const interval, retries = 200 * time.Millisecond, 2
	c.mustCLI(1, "service", "create", "--name", svc, "--replicas", "4", "-p", "80",
		"--health-http", "/health", "--health-interval", interval.String(), "--health-retries", fmt.Sprint(retries),
		"--health-start-period", "5s", image)
	url := fmt.Sprintf("http://%s:%d/", c.ip(1), c.service(1, svc).Ports[0].PublishedPort)
	load := startNodeLoad(&http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}, url, "task")
	live := liveTasks(t, cl, svc)
	if len(live) != 4 {
		t.Fatalf("%d running", len(live))
	}
	waitFor(t, 20*time.Second, "every task answering through the published port", func() bool {
		for _, tk := range live {
			if load.lastAnswer(tk.ID).IsZero() {
				return false
			}
		}
		return true
	})

	// Unhealthy -> out of the balancer: slot 1's check starts failing.
	sick := live[1]
	nodes := map[string]string{}
	ns, _ := c.nodes(1)
	for _, n := range ns {
		nodes[n.ID] = n.Addr
	}
	direct := fmt.Sprintf("http://%s:%d/health/fail", nodes[sick.NodeID], sick.Status.Ports[0].HostPort)
	resp, err := http.Post(direct, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", direct, resp.Status)
	}
	failedAt := time.Now()
	waitFor(t, 20*time.Second, "slot 1 replaced and serving", func() bool {
		cur, ok := liveTasks(t, cl, svc)[1]
		return ok && cur.ID != sick.ID && cur.Status.Health == api.HealthHealthy
	})
	out := load.lastAnswer(sick.ID).Sub(failedAt)
	fails, errs := load.failed(failedAt)
	t.Logf("HTTP check failing (interval %v, retries %d) -> last request the balancer sent it: %v after; %d requests failed %v",
		interval, retries, max(out, 0).Round(time.Millisecond), fails, errs)
	if out > interval*time.Duration(retries)+2*time.Second {
		t.Fatalf("an unhealthy task still got requests %v after its check began failing", out)
	}
	if fails != 0 {
		t.Fatalf("%d requests failed as the unhealthy task left: %v", fails, errs)
	}

	// docker kill -> replacement running, in three slots that never failed. The
	// client stops first: sending without pause, it takes a good part of this
	// machine's two cores from the engine.
	load.close()
	dc, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	var took []time.Duration
	for _, slot := range []uint64{2, 3, 4} {
		victim := liveTasks(t, cl, svc)[slot]
		killedAt := time.Now()
		if err := dc.ContainerKill(context.Background(), victim.Status.ContainerID, "KILL"); err != nil {
			t.Fatalf("docker kill: %v", err)
		}
		var repl api.Task
		waitFor(t, 20*time.Second, fmt.Sprintf("slot %d replaced", slot), func() bool {
			cur, ok := liveTasks(t, cl, svc)[slot]
			repl = cur
			return ok && cur.ID != victim.ID
		})
		var ended time.Time
		for _, tk := range apiTasks(t, cl, svc) {
			if tk.ID == victim.ID {
				ended = tk.Status.Timestamp
			}
		}
		took = append(took, repl.StartedAt.Sub(killedAt))
		t.Logf("slot %d: killed -> reported %s %v, -> replacement created %v, -> its container running %v",
			slot, "failed", ended.Sub(killedAt).Round(time.Millisecond), repl.CreatedAt.Sub(ended).Round(time.Millisecond),
			repl.StartedAt.Sub(repl.CreatedAt).Round(time.Millisecond))
		waitFor(t, 20*time.Second, "the replacement healthy", func() bool {
			cur := liveTasks(t, cl, svc)[slot]
			return cur.ID == repl.ID && cur.Status.Health == api.HealthHealthy
		})
	}
	slices.Sort(took)
	// What the engine alone takes to create and start a container of the image
	// on this machine, now: the floor under the number above.
	var floor []time.Duration
	for range 3 {
		start := time.Now()
		cr, err := dc.ContainerCreate(context.Background(), &container.Config{Image: image, Labels: map[string]string{"swarmlet.service": svc}}, nil, nil, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := dc.ContainerStart(context.Background(), cr.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		floor = append(floor, time.Since(start))
		_ = dc.ContainerRemove(context.Background(), cr.ID, container.RemoveOptions{Force: true})
	}
	slices.Sort(floor)
	t.Logf("docker kill -> replacement running: %v (median %v); the engine alone creates and starts a container in %v (median %v)",
		took, took[1], floor, floor[1])
	if took[1] > floor[1]+3*time.Second {
		t.Fatalf("crash to replacement running: median %v, %v more than the engine's own start", took[1], took[1]-floor[1])
	}
	c.mustCLI(1, "service", "rm", svc)
	waitFor(t, 30*time.Second, "no container left", func() bool { return len(dockerContainers(t, "swarmlet.service="+svc)) == 0 })
}
