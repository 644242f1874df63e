package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/swarmlet/swarmlet/scenarios/bed"
)

// A cluster on the multi-host bed (scenarios/bed): one swarmlet daemon inside
// each host's network namespace, against that host's own dockerd. The CLI
// reaches each daemon through its unix socket (a file), so it runs here; every
// packet the tests send goes from inside a host or a container of the bed.

const bedImage = "swarmlet/whoami:test"

type bedCluster struct {
	t     testing.TB
	b     *bed.Bed
	dir   string
	nodes map[int]*bedNode
	extra []string
}

type bedNode struct {
	h       *bed.Host
	dataDir string
	id      string
	cmd     *exec.Cmd
	exited  chan struct{}
	log     *lockedWriter
}

func requireBed(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, veths and a dockerd per host")
	}
	for _, tool := range []string{"dockerd", "containerd", "nsenter", "docker"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs dockerd (with containerd), nsenter and docker: %s not in PATH", tool)
		}
	}
	if err := bed.Check(); err != nil {
		t.Fatal(err)
	}
}

// newBedCluster brings up a bed of n hosts with the test image loaded in
// each; no daemon runs yet.
func newBedCluster(t testing.TB, n int) *bedCluster {
	t.Helper()
	requireBed(t)
	// Built under a tag of this run's own, then named bedImage inside each
	// host: other runs on this machine's engine may rebuild bedImage from
	// other code at any moment.
	private := fmt.Sprintf("swarmlet/whoami:bed-%d", os.Getpid())
	if out, err := exec.Command("bash", filepath.Join("..", "whoami", "build.sh"), private).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", private, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", private).Run() })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b, err := bed.New(ctx, bed.Options{Hosts: n, Label: "swarmlet-cmd-test", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := &bedCluster{t: t, b: b, dir: t.TempDir(), nodes: map[int]*bedNode{},
		extra: []string{"--engine", "docker", "--lb", "nftables", "--dns-port", "53", "--dns-upstream", "127.0.0.1:1"}}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		if left := bed.Leftovers(b.ID); len(left) > 0 {
			t.Errorf("bed %s left behind:\n%s", b.ID, strings.Join(left, "\n"))
		}
	})
	t.Cleanup(c.stopAll) // before the bed goes
	for i, h := range b.Hosts {
		if err := h.LoadImage(ctx, private); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Docker(ctx, "tag", private, bedImage); err != nil {
			t.Fatal(err)
		}
		c.nodes[i+1] = &bedNode{h: h, dataDir: filepath.Join(c.dir, h.Name), log: &lockedWriter{w: &bytes.Buffer{}}}
	}
	return c
}

func (n *bedNode) sock() string { return "unix://" + filepath.Join(n.dataDir, "swarmlet.sock") }

func (n *bedNode) logString() string {
	n.log.mu.Lock()
	defer n.log.mu.Unlock()
	return n.log.w.String()
}

// start runs node i's daemon in host i: init when token is "", else join host 1.
func (c *bedCluster) start(i int, token string) {
	c.t.Helper()
	n := c.nodes[i]
	args := []string{"init"}
	if token != "" {
		args = []string{"join", "--token", token}
	}
	args = append(args, "--advertise-addr", n.h.Addr.String(), "--data-dir", n.dataDir, "--hostname", n.h.Name)
	args = append(args, c.extra...)
	if token != "" {
		args = append(args, c.nodes[1].h.Addr.String())
	}
	cmd := n.h.Command(context.Background(), swarmletBin, args...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(n.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, _, err := c.cli(i, "info"); err == nil {
			return
		}
		select {
		case <-n.exited:
			c.t.Fatalf("node %d exited\n%s", i, n.logString())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d did not come up\n%s", i, n.logString())
		}
	}
}

// stop signals node i's daemon and waits for it to exit.
func (c *bedCluster) stop(i int, sig syscall.Signal) {
	c.t.Helper()
	n := c.nodes[i]
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
	case <-time.After(20 * time.Second):
		c.t.Fatalf("node %d did not stop on %v", i, sig)
	}
	n.cmd = nil
}

func (c *bedCluster) stopAll() {
	for i, n := range c.nodes {
		if n.cmd != nil {
			_ = n.cmd.Process.Kill()
			<-n.exited
			n.cmd = nil
		}
		if c.t.Failed() {
			c.t.Logf("--- node %d log (tail)\n%s", i, tail(n.logString(), 80))
		}
	}
}

func (c *bedCluster) cli(i int, args ...string) (string, string, error) {
	cmd := exec.Command(swarmletBin, append([]string{"--host", c.nodes[i].sock()}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (c *bedCluster) mustCLI(i int, args ...string) string {
	c.t.Helper()
	out, errOut, err := c.cli(i, args...)
	if err != nil {
		c.t.Fatalf("swarmlet %s on node %d: %v: %s", strings.Join(args, " "), i, err, errOut)
	}
	return out
}

// up starts every node (1 inits, the rest join as workers) and waits until
// all are ready; it records their IDs.
func (c *bedCluster) up() {
	c.t.Helper()
	c.start(1, "")
	wtok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	for i := 2; i <= len(c.nodes); i++ {
		c.start(i, wtok)
	}
	waitFor(c.t, 20*time.Second, "every node ready", func() bool {
		out, _, err := c.cli(1, "node", "ls", "--format", "json")
		var ns []nodeJSON
		if err != nil || json.Unmarshal([]byte(out), &ns) != nil || len(ns) != len(c.nodes) {
			return false
		}
		for _, x := range ns {
			if x.Status != "ready" {
				return false
			}
			for _, n := range c.nodes {
				if n.h.Addr.String() == x.Addr {
					n.id = x.ID
				}
			}
		}
		return true
	})
}

// hostOf is the index of the host whose node has ID id.
func (c *bedCluster) hostOf(id string) int {
	for i, n := range c.nodes {
		if n.id == id {
			return i
		}
	}
	return 0
}

type bedTask struct {
	ID      string `json:"id"`
	Node    string `json:"node"`
	Desired string `json:"desired"`
	Current string `json:"current"`
	Since   string `json:"since"`
	Addr    string `json:"addr"`
}

// serving lists a service's running tasks as swarmlet ps shows them.
func (c *bedCluster) serving(svc string) []bedTask {
	c.t.Helper()
	var ts []bedTask
	if err := json.Unmarshal([]byte(c.mustCLI(1, "service", "ps", "--format", "json", svc)), &ts); err != nil {
		c.t.Fatal(err)
	}
	var out []bedTask
	for _, x := range ts {
		if x.Current == "running" && x.Desired == "running" {
			out = append(out, x)
		}
	}
	return out
}

func addrsOf(ts []bedTask) []string {
	var out []string
	for _, x := range ts {
		out = append(out, x.Addr)
	}
	sort.Strings(out)
	return out
}

func idsOf(ts []bedTask) map[string]bool {
	out := map[string]bool{}
	for _, x := range ts {
		out[x.ID] = true
	}
	return out
}

func (c *bedCluster) vip(svc string) string {
	c.t.Helper()
	var svcs []struct {
		Name string `json:"name"`
		VIP  string `json:"vip"`
	}
	if err := json.Unmarshal([]byte(c.mustCLI(1, "service", "ls", "--format", "json")), &svcs); err != nil {
		c.t.Fatal(err)
	}
	for _, s := range svcs {
		if s.Name == svc {
			return s.VIP
		}
	}
	c.t.Fatalf("service %s has no VIP", svc)
	return ""
}

// container is the ID of the one container of svc on host i's engine.
func (c *bedCluster) container(i int, svc string) string {
	c.t.Helper()
	out, err := c.nodes[i].h.Docker(context.Background(), "ps", "-q", "--filter", "label=swarmlet.service="+svc)
	if err != nil || len(strings.Fields(out)) != 1 {
		c.t.Fatalf("container of %s on host %d: %v %q", svc, i, err, out)
	}
	return out
}

// inContainer runs the whoami client inside container ctr of host i.
func (c *bedCluster) inContainer(i int, ctr string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.nodes[i].h.Docker(ctx, append([]string{"exec", ctr, "/whoami"}, args...)...)
}

// answers counts the task IDs in whoami answers.
func answers(out string) map[string]int {
	got := map[string]int{}
	for _, m := range taskLine.FindAllStringSubmatch(out, -1) {
		got[m[1]]++
	}
	return got
}

// hostDNS asks node i's DNS server on its advertise address, from inside its host.
func (c *bedCluster) hostDNS(i int, name string) (*dns.Msg, error) { return c.dnsFrom(i, i, name) }

// dnsFrom asks node to's DNS server on its advertise address, from inside host from.
func (c *bedCluster) dnsFrom(from, to int, name string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	cl := &dns.Client{Timeout: 3 * time.Second}
	var resp *dns.Msg
	err := c.nodes[from].h.Do(func() error {
		var err error
		resp, _, err = cl.Exchange(m, net.JoinHostPort(c.nodes[to].h.Addr.String(), "53"))
		return err
	})
	return resp, err
}

// hostGet makes n requests to url from inside host i and counts answers by task.
func (c *bedCluster) hostGet(i int, url string, n int) (map[string]int, error) {
	cl := c.nodes[i].h.HTTPClient(2 * time.Second)
	got := map[string]int{}
	for range n {
		resp, err := cl.Get(url)
		if err != nil {
			return got, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return got, err
		}
		for id, k := range answers(string(b)) {
			got[id] += k
		}
	}
	return got, nil
}

// sameTasks says whether the answers came from exactly the tasks in want.
func sameTasks(got map[string]int, want map[string]bool) error {
	for id := range got {
		if !want[id] {
			return fmt.Errorf("answer from %s, not one of %v", id, slices.Sorted(maps.Keys(want)))
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("answers from %v, want all of %v", got, slices.Sorted(maps.Keys(want)))
	}
	return nil
}

// hostRun runs a command inside host i's namespace.
func (c *bedCluster) hostRun(i int, name string, args ...string) string {
	c.t.Helper()
	out, err := c.nodes[i].h.Command(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("host %d: %s %s: %v: %s", i, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
