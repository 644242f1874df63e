package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	binDir    string
	buildErr  error
)

// Binary builds cmd/swarmlet once per test process (or takes SWARMLET_BIN) and
// returns its path. A build failure is returned, so cluster tests can skip with it.
func Binary() (string, error) {
	buildOnce.Do(func() {
		if p := os.Getenv("SWARMLET_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "swl-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		out := filepath.Join(dir, "swarmlet")
		args := []string{"build", "-o", out}
		if os.Getenv("SWL_RACE") != "" {
			// Data races in the daemon show up in node logs; the no-panics checker reports them.
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/swarmlet")...)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/swarmlet: %v\n%s", err, b)
			return
		}
		binPath = out
	})
	return binPath, buildErr
}

func cleanupBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// ClusterConfig shapes a cluster: managers first (n1 initialises it), then workers.
type ClusterConfig struct {
	Managers, Workers int
	PortBase          int // default 4240: API, Raft +1, gossip +2
	DNSPort           int // default 1053
	ResultsDir        string
	Env               []string // extra environment of the daemons (tuning knobs)
	Logf              func(format string, args ...any)
}

// Cluster is a running swarmlet cluster of real processes in one namespace.
type Cluster struct {
	cfg     ClusterConfig
	bin     string
	ns      *Netns
	workDir string
	Nodes   []*Node
	clock   time.Time

	workerToken, managerToken string

	mu      sync.Mutex
	aliases map[string]string // node ID, address, ... -> node name
	samples []StateSample
	noDebug bool     // the daemon has no /v1/debug/state
	crashes []string // daemons that exited without the harness asking
}

// Crashes lists daemon exits the harness did not cause.
func (c *Cluster) Crashes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.crashes...)
}

var panicLine = regexp.MustCompile(`(?m)^(panic: .*|fatal error: .*|WARNING: DATA RACE)$`)

// LogPanics finds panics, fatal errors and data races in the node logs.
func (c *Cluster) LogPanics() []string {
	var found []string
	for _, n := range c.Nodes {
		b, err := os.ReadFile(filepath.Join(c.cfg.ResultsDir, "logs", n.Name+".log"))
		if err != nil {
			continue
		}
		for _, m := range panicLine.FindAll(b, -1) {
			found = append(found, fmt.Sprintf("logs/%s.log: %s", n, m))
		}
	}
	return found
}

// Node is one daemon of the cluster.
type Node struct {
	Name    string
	Addr    string
	Dir     string
	Manager bool
	c       *Cluster
	http    *http.Client

	mu     sync.Mutex
	ID     string
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
	starts int
	// stopping is set when the harness kills or stops the daemon; an exit without
	// it is a crash.
	stopping bool
}

// Sock is the node's API socket; clients use it so that partitions between node
// addresses never cut a client from its own node.
func (n *Node) Sock() string { return filepath.Join(n.Dir, "swarmlet.sock") }

func (n *Node) String() string { return n.Name }

// NewCluster prepares the namespace and the nodes and starts them, returning once
// every node is listed ready. Teardown is registered with tb.Cleanup, so it runs
// even when the test fails. It skips the test if the binary does not build or
// namespaces are unavailable.
func NewCluster(tb testing_TB, cfg ClusterConfig, clock time.Time) *Cluster {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		tb.Skipf("swarmlet binary does not build, cluster scenarios skipped: %v", err)
	}
	ns, err := NewNetns()
	if err != nil {
		tb.Skipf("network namespaces unavailable (scenarios need root, ip and nft): %v", err)
	}
	if cfg.PortBase == 0 {
		cfg.PortBase = 4240
	}
	if cfg.DNSPort == 0 {
		cfg.DNSPort = 1053
	}
	if cfg.Logf == nil {
		cfg.Logf = tb.Logf
	}
	// Short: unix socket paths are limited to 108 bytes.
	work, err := os.MkdirTemp("", "swl-")
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{cfg: cfg, bin: bin, ns: ns, workDir: work, clock: clock, aliases: map[string]string{}}
	tb.Cleanup(c.Close)
	if err := os.MkdirAll(filepath.Join(cfg.ResultsDir, "logs"), 0o755); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < cfg.Managers+cfg.Workers; i++ {
		n := &Node{
			Name:    fmt.Sprintf("n%d", i+1),
			Addr:    fmt.Sprintf("127.0.0.%d", 11+i), // 127.0.0.1 stays free: it is no node's
			Manager: i < cfg.Managers,
			c:       c,
		}
		n.Dir = filepath.Join(work, n.Name)
		n.http = &http.Client{Timeout: time.Second, Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", n.Sock())
			},
		}}
		c.Nodes = append(c.Nodes, n)
		c.aliases[n.Name] = n.Name
		c.aliases[n.Addr] = n.Name
	}
	if err := c.bootstrap(); err != nil {
		tb.Fatalf("cluster bring-up: %v (node logs in %s)", err, filepath.Join(cfg.ResultsDir, "logs"))
	}
	return c
}

// testing_TB is the part of testing.TB the harness uses (kept small so that
// non-test code can drive a cluster too).
type testing_TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
	Fatal(args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

func (c *Cluster) now() float64 { return time.Since(c.clock).Seconds() }

func (c *Cluster) bootstrap() error {
	first := c.Nodes[0]
	if err := first.Start(); err != nil {
		return err
	}
	if err := first.WaitAnswering(30 * time.Second); err != nil {
		return err
	}
	ctx := context.Background()
	for _, role := range []string{"worker", "manager"} {
		// A fresh leader refuses until its barrier is through; wait for it.
		var r CLIResult
		err := WaitFor(30*time.Second, "join-token "+role, func() (bool, string) {
			r = c.CLI(ctx, first, 10*time.Second, "join-token", "-q", role)
			return r.Err == nil, r.String()
		})
		if err != nil {
			return err
		}
		tok := strings.TrimSpace(r.Stdout)
		if role == "worker" {
			c.workerToken = tok
		} else {
			c.managerToken = tok
		}
	}
	// One at a time: each manager join is a Raft configuration change, and the
	// scenarios are about faults, not about racing joins.
	for _, n := range c.Nodes[1:] {
		if err := n.Start(); err != nil {
			return err
		}
		if err := n.WaitAnswering(30 * time.Second); err != nil {
			return err
		}
	}
	return c.WaitAllReady(60 * time.Second)
}

// NodeRow is one row of `node ls --format json`.
type NodeRow struct {
	ID           string `json:"id"`
	Hostname     string `json:"hostname"`
	Addr         string `json:"addr"`
	Role         string `json:"role"`
	Status       string `json:"status"`
	Availability string `json:"availability"`
	Leader       bool   `json:"leader"`
	Engine       string `json:"engine"`
}

// NodeList runs `node ls` through n.
func (c *Cluster) NodeList(ctx context.Context, n *Node) ([]NodeRow, error) {
	r := c.CLI(ctx, n, 5*time.Second, "node", "ls", "--format", "json")
	if r.Err != nil {
		return nil, fmt.Errorf("node ls via %s: %v", n, r)
	}
	var rows []NodeRow
	if err := json.Unmarshal([]byte(r.Stdout), &rows); err != nil {
		return nil, fmt.Errorf("node ls via %s: %v in %q", n, err, r.Stdout)
	}
	return rows, nil
}

func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// WaitAllReady waits until some manager lists every node, ready, with its role,
// and learns the node IDs.
func (c *Cluster) WaitAllReady(timeout time.Duration) error {
	return WaitFor(timeout, "every node listed ready with its role", func() (bool, string) {
		var last string
		for _, m := range c.Managers() {
			rows, err := c.NodeList(context.Background(), m)
			if err != nil {
				last = err.Error()
				continue
			}
			byAddr := map[string]NodeRow{}
			for _, r := range rows {
				byAddr[hostOnly(r.Addr)] = r
			}
			var missing []string
			for _, n := range c.Nodes {
				r, ok := byAddr[n.Addr]
				role := "worker"
				if n.Manager {
					role = "manager"
				}
				if !ok || r.Status != "ready" || r.Role != role {
					missing = append(missing, fmt.Sprintf("%s(%s %s)", n, r.Role, r.Status))
				}
			}
			if len(missing) > 0 {
				last = fmt.Sprintf("via %s: not ready: %v", m, missing)
				continue
			}
			c.mu.Lock()
			for _, n := range c.Nodes {
				r := byAddr[n.Addr]
				n.mu.Lock()
				n.ID = r.ID
				n.mu.Unlock()
				c.aliases[r.ID] = n.Name
			}
			c.mu.Unlock()
			return true, ""
		}
		return false, last
	})
}

// Resolve maps a node ID, address or host:port to the node's name (n1...), or
// returns s unchanged.
func (c *Cluster) Resolve(s string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.aliases[s]; ok {
		return n
	}
	if n, ok := c.aliases[hostOnly(s)]; ok {
		return n
	}
	return s
}

// Managers returns the manager nodes.
func (c *Cluster) Managers() []*Node {
	var ms []*Node
	for _, n := range c.Nodes {
		if n.Manager {
			ms = append(ms, n)
		}
	}
	return ms
}

// Workers returns the nodes that are not managers.
func (c *Cluster) Workers() []*Node {
	var ws []*Node
	for _, n := range c.Nodes {
		if !n.Manager {
			ws = append(ws, n)
		}
	}
	return ws
}

// Node returns the node named name.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func (n *Node) args() []string {
	c := n.c
	common := []string{"--advertise-addr", n.Addr, "--data-dir", n.Dir, "--engine", "process",
		"--dns-port", strconv.Itoa(c.cfg.DNSPort), "--port-base", strconv.Itoa(c.cfg.PortBase)}
	if n == c.Nodes[0] {
		return append([]string{"init"}, common...)
	}
	tok := c.workerToken
	if n.Manager {
		tok = c.managerToken
	}
	return append(append([]string{"join", "--token", tok}, common...), c.Nodes[0].Addr)
}

// Start runs the node's daemon (init for n1, join for the others: CLI.md says the
// same command resumes a node on its existing data dir) inside the namespace,
// appending its output to logs/<name>.log.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("%s already running", n)
	}
	logPath := filepath.Join(n.c.cfg.ResultsDir, "logs", n.Name+".log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	n.starts++
	args := n.args()
	fmt.Fprintf(log, "=== harness %.3fs: start #%d: swarmlet %s\n", n.c.now(), n.starts, strings.Join(args, " "))
	cmd := n.c.ns.Command(append([]string{n.c.bin}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), n.c.cfg.Env...)
	// Its own process group, so a terminal's ^C reaches the test and not the
	// daemons; teardown kills them explicitly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", n, err)
	}
	exited := make(chan struct{})
	n.cmd, n.exited, n.paused, n.stopping = cmd, exited, false, false
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(log, "=== harness %.3fs: exited: %v\n", n.c.now(), err)
		log.Close()
		n.mu.Lock()
		if n.cmd == cmd {
			n.cmd = nil
		}
		crashed := !n.stopping
		n.mu.Unlock()
		if crashed {
			n.c.mu.Lock()
			n.c.crashes = append(n.c.crashes, fmt.Sprintf("%s exited on its own at %.3fs: %v (start #%d, see logs/%s.log)", n, n.c.now(), err, n.starts, n))
			n.c.mu.Unlock()
		}
		close(exited)
	}()
	return nil
}

// Running reports whether the daemon process is alive (possibly paused).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Paused reports whether the daemon is stopped by SIGSTOP.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// Signal sends sig to the daemon only (its tasks live in their own sessions).
func (n *Node) Signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("%s is not running", n)
	}
	switch sig {
	case syscall.SIGSTOP:
		n.paused = true
	case syscall.SIGCONT:
		n.paused = false
	}
	return syscall.Kill(n.cmd.Process.Pid, sig)
}

// Kill SIGKILLs the daemon and waits for it to be gone.
func (n *Node) Kill() error { return n.stop(syscall.SIGKILL, 10*time.Second) }

// Stop asks the daemon to stop gracefully (SIGTERM), killing it after timeout.
func (n *Node) Stop(timeout time.Duration) error { return n.stop(syscall.SIGTERM, timeout) }

func (n *Node) stop(sig syscall.Signal, timeout time.Duration) error {
	n.mu.Lock()
	cmd, exited, paused := n.cmd, n.exited, n.paused
	n.stopping = true
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = syscall.Kill(cmd.Process.Pid, sig)
	if paused && sig != syscall.SIGKILL {
		// A stopped process cannot act on SIGTERM until continued.
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-exited:
		return fmt.Errorf("%s did not stop within %v of %v; killed", n, timeout, sig)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s survives SIGKILL", n)
	}
}

// WaitAnswering waits until the node's API answers `info`.
func (n *Node) WaitAnswering(timeout time.Duration) error {
	return waitOrAbort(timeout, n.Name+" answers info", func() (bool, string, bool) {
		if !n.Running() {
			return false, fmt.Sprintf("daemon exited (see logs/%s.log)", n), true
		}
		r := n.c.CLI(context.Background(), n, 3*time.Second, "info")
		return r.Err == nil, r.String(), false
	})
}

// CLIResult is one CLI run.
type CLIResult struct {
	Args     []string
	Stdout   string
	Stderr   string
	Err      error
	TimedOut bool
}

func (r CLIResult) String() string {
	s := strings.Join(r.Args, " ")
	if r.TimedOut {
		return s + ": client timeout"
	}
	if r.Err != nil {
		return fmt.Sprintf("%s: %v: %s", s, r.Err, strings.TrimSpace(r.Stderr))
	}
	return s + ": ok"
}

// ErrorLine is the CLI's one-line error, without the "Error: " prefix.
func (r CLIResult) ErrorLine() string {
	s := strings.TrimSpace(r.Stderr)
	if i := strings.LastIndex(s, "Error: "); i >= 0 {
		s = s[i+len("Error: "):]
	}
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" && r.Err != nil {
		s = r.Err.Error()
	}
	return s
}

// CLI runs the swarmlet CLI against n's socket, killed after timeout. Clients run
// in the root namespace: the unix socket reaches the node whatever the rules say.
func (c *Cluster) CLI(ctx context.Context, n *Node, timeout time.Duration, args ...string) CLIResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	full := append([]string{"--host", "unix://" + n.Sock()}, args...)
	cmd := exec.CommandContext(ctx, c.bin, full...)
	cmd.WaitDelay = time.Second
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := CLIResult{Args: args, Stdout: so.String(), Stderr: se.String(), Err: err}
	if err != nil && ctx.Err() != nil {
		r.TimedOut = true
	}
	return r
}

// errNoDebug says the daemon lacks /v1/debug/state.
var errNoDebug = errors.New("no /v1/debug/state endpoint")

// DebugState reads the node's Raft index, term, leader and state digest.
func (n *Node) DebugState(ctx context.Context) (StateSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://swarmlet/v1/debug/state", nil)
	if err != nil {
		return StateSample{}, err
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return StateSample{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusNotFound {
		return StateSample{}, errNoDebug
	}
	if resp.StatusCode != http.StatusOK {
		return StateSample{}, fmt.Errorf("debug state: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var s struct {
		Index  uint64 `json:"index"`
		Term   uint64 `json:"term"`
		Leader string `json:"leader"`
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return StateSample{}, fmt.Errorf("debug state: %v in %q", err, body)
	}
	return StateSample{T: int64(time.Since(n.c.clock)), Node: n.Name, Index: s.Index, Term: s.Term, Leader: s.Leader, Digest: s.Digest}, nil
}

// Sample polls every running, unpaused manager once and stores what answered.
func (c *Cluster) Sample(ctx context.Context) []StateSample {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got []StateSample
	for _, m := range c.Managers() {
		if !m.Running() || m.Paused() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := m.DebugState(ctx)
			if errors.Is(err, errNoDebug) {
				c.mu.Lock()
				c.noDebug = true
				c.mu.Unlock()
			}
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, s)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(got, func(i, j int) bool { return got[i].Node < got[j].Node })
	c.mu.Lock()
	c.samples = append(c.samples, got...)
	c.mu.Unlock()
	return got
}

// RunSampler samples every interval until ctx ends.
func (c *Cluster) RunSampler(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.Sample(ctx)
		if c.HasNoDebug() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// HasNoDebug reports that the daemon lacks the debug endpoint.
func (c *Cluster) HasNoDebug() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.noDebug
}

// Samples returns every state sample taken so far.
func (c *Cluster) Samples() []StateSample {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]StateSample(nil), c.samples...)
}

// Leader finds the current leader: the one named by the answering managers with
// the highest term (debug state), else the node marked leader in `node ls`.
func (c *Cluster) Leader(ctx context.Context) (*Node, error) {
	var best StateSample
	for _, s := range c.Sample(ctx) {
		if s.Leader != "" && s.Term >= best.Term {
			best = s
		}
	}
	if best.Leader != "" {
		if n := c.Node(c.Resolve(best.Leader)); n != nil {
			return n, nil
		}
	}
	var lastErr error
	for _, m := range c.Managers() {
		if !m.Running() || m.Paused() {
			continue
		}
		rows, err := c.NodeList(ctx, m)
		if err != nil {
			lastErr = err
			continue
		}
		for _, r := range rows {
			if r.Leader {
				if n := c.Node(c.Resolve(r.ID)); n != nil {
					return n, nil
				}
				if n := c.Node(c.Resolve(r.Addr)); n != nil {
					return n, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("no leader found (last error: %v)", lastErr)
}

// WaitLeader waits until a leader is known.
func (c *Cluster) WaitLeader(timeout time.Duration) (*Node, error) {
	var l *Node
	err := WaitFor(timeout, "a leader", func() (bool, string) {
		var err error
		l, err = c.Leader(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return l, err
}

// TaskProcs lists the task processes running in the cluster's namespace, from
// their environment: the ground truth of what runs, whatever the API says.
func (c *Cluster) TaskProcs() []TaskProc {
	var procs []TaskProc
	for _, pid := range c.ns.Pids() {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		p := TaskProc{PID: pid}
		for _, kv := range bytes.Split(env, []byte{0}) {
			k, v, _ := strings.Cut(string(kv), "=")
			switch k {
			case "SWARMLET_TASK_ID":
				p.TaskID = v
			case "SWARMLET_SERVICE":
				p.Service = v
			case "SWARMLET_SLOT":
				p.Slot = v
			case "SWARMLET_NODE_ID":
				p.NodeID = v
			}
		}
		if p.TaskID != "" {
			procs = append(procs, p)
		}
	}
	return procs
}

// LogCount counts the lines of n's log matching re.
func (c *Cluster) LogCount(n *Node, re *regexp.Regexp) int {
	b, err := os.ReadFile(filepath.Join(c.cfg.ResultsDir, "logs", n.Name+".log"))
	if err != nil {
		return 0
	}
	return len(re.FindAll(b, -1))
}

var electionWon = regexp.MustCompile(`election won: term=(\d+)`)

// LogClaims reads election wins from every node's log: raft logs "election won:
// term=N" when it becomes leader, an observation independent of the API.
func (c *Cluster) LogClaims() []LeaderClaim {
	var claims []LeaderClaim
	for _, n := range c.Nodes {
		b, err := os.ReadFile(filepath.Join(c.cfg.ResultsDir, "logs", n.Name+".log"))
		if err != nil {
			continue
		}
		for _, m := range electionWon.FindAllSubmatch(b, -1) {
			term, _ := strconv.ParseUint(string(m[1]), 10, 64)
			claims = append(claims, LeaderClaim{Node: n.Name, Term: term, Source: "log of " + n.Name})
		}
	}
	return claims
}

// Close stops everything: daemons, their tasks (every process in the namespace),
// the namespace, the data dirs (kept with SWL_KEEP=1).
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		if err := n.Kill(); err != nil {
			c.cfg.Logf("teardown: %v", err)
		}
	}
	if err := c.ns.Close(); err != nil {
		c.cfg.Logf("teardown: %v", err)
	}
	if os.Getenv("SWL_KEEP") == "" {
		os.RemoveAll(c.workDir)
	} else {
		c.cfg.Logf("data dirs kept in %s", c.workDir)
	}
}

// WaitFor polls cond until it holds or timeout passes; the error carries cond's
// last explanation of why not.
func WaitFor(timeout time.Duration, what string, cond func() (bool, string)) error {
	return waitOrAbort(timeout, what, func() (bool, string, bool) {
		ok, why := cond()
		return ok, why, false
	})
}

// waitOrAbort is WaitFor whose condition can also say that waiting is pointless.
func waitOrAbort(timeout time.Duration, what string, cond func() (ok bool, why string, abort bool)) error {
	deadline := time.Now().Add(timeout)
	backoff := 20 * time.Millisecond
	for {
		ok, why, abort := cond()
		if ok {
			return nil
		}
		if abort {
			return fmt.Errorf("gave up waiting for %s: %s", what, why)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, 250*time.Millisecond)
	}
}

// DNSAnswers asks n's DNS server for name's A records (with dig, inside the
// namespace) and returns the addresses sorted and deduplicated.
func (c *Cluster) DNSAnswers(n *Node, name string) ([]string, error) {
	cmd := c.ns.Command("dig", "+short", "+time=1", "+tries=2", "@"+n.Addr, "-p", strconv.Itoa(c.cfg.DNSPort), name, "A")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("dig %s @%s: %v: %s", name, n, err, bytes.TrimSpace(out))
	}
	seen := map[string]bool{}
	var addrs []string
	for _, l := range strings.Fields(string(out)) {
		if net.ParseIP(l) != nil && !seen[l] {
			seen[l] = true
			addrs = append(addrs, l)
		}
	}
	sort.Strings(addrs)
	return addrs, nil
}
