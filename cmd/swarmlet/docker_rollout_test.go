package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// requireDocker skips without the machine's Docker engine.
func requireDocker(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/var/run/docker.sock"); err != nil {
		t.Skip("needs a Docker engine at /var/run/docker.sock")
	}
}

// buildWhoamiTag builds the project's whoami image FROM scratch as tag, answering
// with version; the test removes it when done.
func buildWhoamiTag(t *testing.T, tag, version string) {
	t.Helper()
	if out, err := osexec.Command("bash", filepath.Join("..", "whoami", "build.sh"), tag, version).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", tag, err, out)
	}
	t.Cleanup(func() { _ = osexec.Command("docker", "rmi", "-f", tag).Run() })
}

// removeContainersOf removes, when the test ends, any container of the service
// its nodes left behind (the daemons are killed, so nothing else would).
func removeContainersOf(t *testing.T, svc string) {
	t.Cleanup(func() {
		ids, _ := osexec.Command("docker", "ps", "-aq", "--filter", "label=swarmlet.service="+svc).Output()
		if f := strings.Fields(string(ids)); len(f) > 0 {
			_ = osexec.Command("docker", append([]string{"rm", "-f"}, f...)...).Run()
		}
	})
}

// rolloutWatch polls a service's tasks while an update runs: the most slots
// updating at once (towards spec version v) and the fewest tasks serving.
type rolloutWatch struct {
	most, fewest atomic.Int64
	done         chan struct{}
}

func (c *cluster) watchRollout(ctx context.Context, svc string, v uint64) *rolloutWatch {
	w := &rolloutWatch{done: make(chan struct{})}
	w.fewest.Store(1 << 30)
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			out, _, err := c.cli(1, "service", "ps", "--all", "--format", "json", svc)
			var ts []rolloutTask
			if err == nil && json.Unmarshal([]byte(out), &ts) == nil {
				if n := int64(updating(ts, v)); n > w.most.Load() {
					w.most.Store(n)
				}
				serving := int64(0)
				for _, x := range ts {
					if x.Desired == "running" && x.Current == "running" && (x.Health == "" || x.Health == "healthy") {
						serving++
					}
				}
				if serving < w.fewest.Load() {
					w.fewest.Store(serving)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return w
}

func (w *rolloutWatch) result() (most, fewest int) {
	<-w.done
	return int(w.most.Load()), int(w.fewest.Load())
}

// TestDockerRollingUpdate: 6 replicas of the project's whoami image (two tags
// built FROM scratch, each answering with its version) on two nodes sharing the
// machine's Docker engine, a client sending through the published port without
// pause. Stop-first with parallelism 2 and then start-first back: no request
// fails, never more than 2 slots update at once, and start-first never has
// fewer than 6 tasks serving.
func TestDockerRollingUpdate(t *testing.T) {
	requireDocker(t)
	const svc = "swldep-web"
	v1, v2 := "swarmlet/whoami:swldep-1", "swarmlet/whoami:swldep-2"
	buildWhoamiTag(t, v1, "1")
	buildWhoamiTag(t, v2, "2")
	removeContainersOf(t, svc) // after the daemons are gone (cleanups run last first)
	c := newCluster(t, 70)
	c.extra = []string{"--engine", "docker", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", "--pool", poolFor(70)}
	c.start(1, "", "--service-range", "10.250.70.0/24")
	c.cleanupDocker(t)
	c.start(2, strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker")))
	waitFor(t, 15*time.Second, "2 nodes", func() bool { ns, err := c.nodes(1); return err == nil && len(ns) == 2 })

	c.mustCLI(1, "service", "create", "--name", svc, "--replicas", "6", "-p", "80",
		// A container may take a few hundred ms to answer on a busy machine: its
		// first failures do not count (Docker's start period).
		"--health-http", "/health", "--health-interval", "200ms", "--health-retries", "2", "--health-start-period", "5s",
		"--update-parallelism", "2", "--update-monitor", "1s", "--stop-grace-period", "5s", v1)
	url := fmt.Sprintf("http://%s:%d/", c.ip(1), c.service(1, svc).Ports[0].PublishedPort)
	waitFor(t, 30*time.Second, "the service answering through the published port", func() bool {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	load := startLoad(url)
	defer load.close()
	c.onlyVersion(t, load, "1")
	load.take()

	for _, step := range []struct {
		image, version, order string
	}{
		{v2, "2", "stop-first"},
		{v1, "1", "start-first"},
	} {
		ver := c.service(1, svc).SpecVersion + 1
		ctx, cancel := context.WithCancel(context.Background())
		w := c.watchRollout(ctx, svc, ver)
		start := time.Now()
		out, errOut, err := c.cli(1, "service", "update", "--image", step.image, "--update-order", step.order, svc)
		took := time.Since(start)
		cancel()
		if err != nil {
			t.Fatalf("update to %s: %v\n%s%s", step.image, err, out, errOut)
		}
		ok, fail, versions, errs := load.take()
		most, fewest := w.result()
		t.Logf("docker rolling update of 6 replicas to version %s (%s, parallelism 2) took %v: %d requests ok, %d failed %v, versions %v; at most %d slots updating, at least %d tasks serving",
			step.version, step.order, took.Round(time.Millisecond), ok, fail, errs, versions, most, fewest)
		if fail != 0 || ok == 0 {
			t.Fatalf("%d of %d requests failed during the %s update: %v", fail, ok+fail, step.order, errs)
		}
		if most > 2 {
			t.Fatalf("%d slots updating at once, --update-parallelism 2", most)
		}
		if step.order == "start-first" && fewest < 6 {
			t.Fatalf("start-first: only %d tasks serving at one point, want never fewer than 6", fewest)
		}
		if st := c.service(1, svc).UpdateStatus; st == nil || st.State != "completed" {
			t.Fatalf("update status %+v", st)
		}
		c.onlyVersion(t, load, step.version)
	}
	c.mustCLI(1, "service", "rm", svc)
	waitFor(t, 30*time.Second, "no container left", func() bool { return len(dockerContainers(t, "swarmlet.service="+svc)) == 0 })
}
