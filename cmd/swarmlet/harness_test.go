package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests drive the built binary as real processes on loopback addresses, as a
// user would: one daemon per node, the CLI for everything else.

var (
	binDir      string
	swarmletBin string
	whoamiBin   string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "swarmlet-bin")
	if err != nil {
		panic(err)
	}
	binDir = dir
	swarmletBin = filepath.Join(dir, "swarmlet")
	whoamiBin = filepath.Join(dir, "whoami")
	for out, pkg := range map[string]string{swarmletBin: ".", whoamiBin: "../whoami"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, b)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is a set of daemons on 127.<net>.<sub>.<i>, each with its own data dir.
type cluster struct {
	t     testing.TB
	net   int
	sub   int
	dir   string
	mu    sync.Mutex
	procs map[int]*exec.Cmd
	logs  map[int]*lockedWriter
	extra []string // flags for every daemon
}

func newCluster(t *testing.T, net int) *cluster { return newClusterTB(t, net) }

func newBenchCluster(b *testing.B, net int) *cluster { return newClusterTB(b, net) }

// newClusterSub is a cluster on 127.<net>.<sub>.x: tests of one range that run one
// after the other never rebind the addresses of a cluster that is still stopping.
func newClusterSub(t *testing.T, net, sub int) *cluster {
	c := newClusterTB(t, net)
	c.sub = sub
	return c
}

func newClusterTB(t testing.TB, net int) *cluster {
	c := &cluster{t: t, net: net, dir: t.TempDir(), procs: map[int]*exec.Cmd{}, logs: map[int]*lockedWriter{},
		extra: []string{"--engine", "process", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", "--pool", poolFor(net)}}
	t.Cleanup(c.stopAll)
	return c
}

func (c *cluster) ip(i int) string { return fmt.Sprintf("127.%d.%d.%d", c.net, c.sub, i) }

// poolFor is the container pool of the cluster on 127.<net>.0.x: clusters of
// different tests sharing one Docker engine must not ask it for one subnet
// (and none may overlap the default service range, 10.43.0.0/16).
func poolFor(net int) string { return fmt.Sprintf("10.%d.0.0/16", 100+net) }

func (c *cluster) dataDir(i int) string { return filepath.Join(c.dir, fmt.Sprintf("n%d", i)) }
func (c *cluster) sock(i int) string    { return "unix://" + filepath.Join(c.dataDir(i), "swarmlet.sock") }

// start launches node i with init (token "") or join, and waits for its socket.
func (c *cluster) start(i int, token string, more ...string) {
	c.t.Helper()
	args := []string{"init"}
	if token != "" {
		args = []string{"join", "--token", token}
	}
	args = append(args, "--advertise-addr", c.ip(i), "--data-dir", c.dataDir(i), "--hostname", fmt.Sprintf("node%d", i))
	args = append(args, c.extra...)
	args = append(args, more...)
	if token != "" {
		args = append(args, c.ip(1)+":24240")
	}
	cmd := exec.Command(swarmletBin, args...)
	buf := &lockedWriter{w: &bytes.Buffer{}}
	if old, ok := c.logs[i]; ok {
		buf = old // a restart appends to the same log
	}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.procs[i], c.logs[i] = cmd, buf
	c.mu.Unlock()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(c.dataDir(i), "swarmlet.sock")); err == nil {
			if _, _, err := c.cli(i, "info"); err == nil {
				go func() { <-exited }()
				return
			}
		}
		select {
		case err := <-exited:
			c.t.Fatalf("node %d exited: %v\n%s", i, err, c.log(i))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d did not come up\n%s", i, c.log(i))
		}
	}
}

func (c *cluster) log(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.logs[i]; ok {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.w.String()
	}
	return ""
}

func (c *cluster) signal(i int, sig syscall.Signal) {
	c.mu.Lock()
	p := c.procs[i]
	c.mu.Unlock()
	if p != nil && p.Process != nil {
		_ = p.Process.Signal(sig)
	}
}

// kill SIGKILLs node i's daemon and waits for it to be gone.
func (c *cluster) kill(i int) { c.stop(i, syscall.SIGKILL) }

// stop signals node i's daemon and waits for the process to be gone.
func (c *cluster) stop(i int, sig syscall.Signal) {
	c.signal(i, sig)
	c.mu.Lock()
	p := c.procs[i]
	delete(c.procs, i)
	c.mu.Unlock()
	if p != nil {
		waitFor(c.t, 15*time.Second, "daemon gone", func() bool {
			// Reaped by the goroutine in start, so the PID no longer exists.
			return syscall.Kill(p.Process.Pid, 0) != nil
		})
	}
}

func (c *cluster) stopAll() {
	c.mu.Lock()
	procs := c.procs
	c.procs = map[int]*exec.Cmd{}
	c.mu.Unlock()
	for _, p := range procs {
		_ = p.Process.Signal(syscall.SIGKILL)
	}
	// Wait until they are gone: the next test on the same addresses must find
	// its ports free (tests of one net run one after the other).
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs {
		for syscall.Kill(p.Process.Pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Tasks outlive their daemon by design; the test owns them, so it ends them.
	_ = exec.Command("pkill", "-f", whoamiBin).Run()
	unmountUnder(c.dir) // task files a killed daemon left mounted
	if c.t.Failed() || os.Getenv("SWARMLET_TEST_LOGS") != "" {
		for i := range c.logs {
			c.t.Logf("--- node %d log (tail)\n%s", i, tail(c.log(i), 60))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cli runs the CLI against node i.
func (c *cluster) cli(i int, args ...string) (string, string, error) {
	cmd := exec.Command(swarmletBin, append([]string{"--host", c.sock(i)}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// expectError runs a CLI command that must fail with one clear line naming want.
func (c *cluster) expectError(t *testing.T, i int, want string, args ...string) {
	t.Helper()
	_, errOut, err := c.cli(i, args...)
	if err == nil {
		t.Fatal("succeeded")
	}
	if !strings.HasPrefix(errOut, "Error: ") || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("want one line 'Error: ...%s...', got %q", want, errOut)
	}
}

func (c *cluster) mustCLI(i int, args ...string) string {
	c.t.Helper()
	out, errOut, err := c.cli(i, args...)
	if err != nil {
		c.t.Fatalf("swarmlet %s on node %d: %v: %s", strings.Join(args, " "), i, err, errOut)
	}
	return out
}

type nodeJSON struct {
	ID           string `json:"id"`
	Hostname     string `json:"hostname"`
	Addr         string `json:"addr"`
	Role         string `json:"role"`
	Status       string `json:"status"`
	Availability string `json:"availability"`
	Leader       bool   `json:"leader"`
}

func (c *cluster) nodes(i int) ([]nodeJSON, error) {
	out, errOut, err := c.cli(i, "node", "ls", "--format", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, errOut)
	}
	var ns []nodeJSON
	return ns, json.Unmarshal([]byte(out), &ns)
}

type infoJSON struct {
	NodeID     string `json:"node_id"`
	LeaderID   string `json:"leader_id"`
	IsLeader   bool   `json:"is_leader"`
	Managers   int    `json:"managers"`
	ManagersUp int    `json:"managers_reachable"`
	RaftIndex  uint64 `json:"raft_index"`
}

func (c *cluster) info(i int) (infoJSON, error) {
	out, errOut, err := c.cli(i, "info", "--format", "json")
	if err != nil {
		return infoJSON{}, fmt.Errorf("%v: %s", err, errOut)
	}
	var inf infoJSON
	return inf, json.Unmarshal([]byte(out), &inf)
}

func waitForB(b *testing.B, d time.Duration, cond func() bool) { waitFor(b, d, "condition", cond) }

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// cleanupDocker removes, when the test ends, the container networks the cluster's
// nodes made on the machine's shared Docker engine, with the containers on them:
// a stopped or killed daemon leaves them (as it leaves its tasks), and a later
// cluster with the same pool would find its subnets taken. Call it once node 1
// has started: the cluster's ID is read from its identity file.
func (c *cluster) cleanupDocker(t *testing.T) {
	t.Helper()
	var id struct {
		ClusterID string `json:"cluster_id"`
	}
	b, err := os.ReadFile(filepath.Join(c.dataDir(1), "node.json"))
	if err != nil || json.Unmarshal(b, &id) != nil || id.ClusterID == "" {
		t.Fatalf("cluster ID of node 1: %v", err)
	}
	t.Cleanup(func() {
		c.stopAll() // no daemon may start a container meanwhile
		// Every container of this cluster's nodes, also one a daemon stopped
		// but had no time to remove (not on a network any more).
		for i := range c.logs {
			var n struct {
				NodeID string `json:"node_id"`
			}
			if b, err := os.ReadFile(filepath.Join(c.dataDir(i), "node.json")); err != nil || json.Unmarshal(b, &n) != nil || n.NodeID == "" {
				continue
			}
			ids, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=swarmlet.node="+n.NodeID).Output()
			if f := strings.Fields(string(ids)); len(f) > 0 {
				_ = exec.Command("docker", append([]string{"rm", "-f", "-v"}, f...)...).Run()
			}
		}
		out, _ := exec.Command("docker", "network", "ls", "-q", "--filter", "label=swarmlet.cluster="+id.ClusterID).Output()
		for _, nw := range strings.Fields(string(out)) {
			cs, _ := exec.Command("docker", "network", "inspect", "-f", "{{range $k, $v := .Containers}}{{$k}} {{end}}", nw).Output()
			if f := strings.Fields(string(cs)); len(f) > 0 {
				_ = exec.Command("docker", append([]string{"rm", "-f"}, f...)...).Run()
			}
			if out, err := exec.Command("docker", "network", "rm", nw).CombinedOutput(); err != nil {
				t.Errorf("docker network rm %s: %v: %s", nw, err, out)
			}
		}
	})
}
