package main

import (
	"context"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

const stackDockerFile = `services:
  web:
    image: swarmlet/whoami:test
    ports: ["29180:80"]
    healthcheck:
      test: ["CMD", "/whoami", "healthcheck"]
      interval: 1s
      timeout: 2s
      retries: 2
    deploy:
      update_config: {order: start-first, monitor: 1s}
  api:
    image: swarmlet/whoami:test
    deploy:
      endpoint_mode: dnsrr
`

// TestStackDockerEngine: a stack's containers answer on its published port,
// and reach each other by their short compose names through the node's DNS
// (scoped by the caller's address): a container outside the stack does not
// get the stack's short names, only the full ones.
func TestStackDockerEngine(t *testing.T) {
	if _, err := os.Stat("/var/run/docker.sock"); err != nil {
		t.Skip("no Docker engine socket at /var/run/docker.sock")
	}
	build := osexec.Command("bash", filepath.Join("..", "whoami", "build.sh"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the whoami image: %v\n%s", err, out)
	}
	c := newCluster(t, 89)
	// DNS on port 53: containers are pointed at the DNS on their gateway, which
	// only port 53 can be; nothing is forwarded off the machine.
	c.extra = []string{"--engine", "docker", "--lb", "userspace", "--dns-port", "53", "--dns-upstream", "127.0.0.1:1",
		"--port-base", "29100", "--pool", poolFor(89)}
	c.start(1, "", "--service-range", "10.250.89.0/24")
	c.cleanupDocker(t)
	cl, err := client.New(c.sock(1), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := writeStack(t, t.TempDir(), "stack.yml", stackDockerFile)
	start := time.Now()
	c.mustCLI(1, "stack", "deploy", "-c", f, "--detach=false", "shop")
	t.Logf("2 containers running %s after deploy", time.Since(start))

	if b := httpGet(t, "http://"+c.ip(1)+":29180/"); !strings.Contains(b, "service=shop_web") {
		t.Fatalf("the published port answered %q", b)
	}
	webCtr, apiAddr := containerOf(t, cl, "shop_web"), ""
	for _, tk := range apiTasks(t, cl, "shop_api") {
		if tk.DesiredState == api.TaskRunning && tk.Status.State == api.TaskRunning {
			apiAddr = tk.Status.Addr
		}
	}
	web, err := cl.Service(context.Background(), "shop_web")
	if err != nil || web.VIP == "" || apiAddr == "" {
		t.Fatalf("web's VIP %q, api's address %q: %v", web.VIP, apiAddr, err)
	}
	// Inside the stack, short names: api (dnsrr: its container), tasks.api,
	// and web (its VIP); and a request to api by its short name answers.
	in := func(ctr string, args ...string) (string, error) {
		out, err := osexec.Command("docker", append([]string{"exec", ctr, "/whoami"}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	waitFor(t, 10*time.Second, "api resolved by its short name in web's container", func() bool {
		out, err := in(webCtr, "resolve", "api")
		return err == nil && out == apiAddr
	})
	for name, want := range map[string]string{"tasks.api": apiAddr, "api.swarmlet": apiAddr, "shop_api": apiAddr} {
		if out, err := in(webCtr, "resolve", name); err != nil || out != want {
			t.Fatalf("in web, resolve %s: %q %v, want %s", name, out, err, want)
		}
	}
	if out, err := in(webCtr, "get", "http://api/"); err != nil || !strings.Contains(out, "service=shop_api") {
		t.Fatalf("in web, GET http://api/: %q %v", out, err)
	}
	apiCtr := containerOf(t, cl, "shop_api")
	if out, err := in(apiCtr, "resolve", "web"); err != nil || out != web.VIP {
		t.Fatalf("in api, resolve web: %q %v, want the VIP %s", out, err, web.VIP)
	}

	// Outside the stack, the short names are not known; the full ones are.
	c.mustCLI(1, "service", "create", "--name", "loner", "swarmlet/whoami:test")
	loner := containerOf(t, cl, "loner")
	if out, err := in(loner, "resolve", "api"); err == nil {
		t.Fatalf("a container outside the stack resolved its short name api: %q", out)
	}
	if out, err := in(loner, "resolve", "shop_api"); err != nil || out != apiAddr {
		t.Fatalf("outside the stack, resolve shop_api: %q %v", out, err)
	}
	c.mustCLI(1, "service", "rm", "loner")

	// stack rm: every container of the stack goes.
	c.mustCLI(1, "stack", "rm", "shop")
	waitFor(t, 30*time.Second, "the stack's containers gone", func() bool {
		return len(dockerContainers(t, "swarmlet.service=shop_web"))+len(dockerContainers(t, "swarmlet.service=shop_api")) == 0
	})
}

// containerOf is the container of svc's running task (its first).
func containerOf(t *testing.T, cl *client.Client, svc string) string {
	t.Helper()
	id := ""
	waitFor(t, 30*time.Second, svc+" running", func() bool {
		for _, tk := range apiTasks(t, cl, svc) {
			if tk.DesiredState == api.TaskRunning && tk.Status.State == api.TaskRunning && tk.Status.ContainerID != "" {
				id = tk.Status.ContainerID
				return true
			}
		}
		return false
	})
	return id
}
