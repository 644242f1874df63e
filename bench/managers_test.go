package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// The managers of a scale run: three real daemons of the built binary on
// 127.80.<sub>.1-3, drained (every task goes to the hollow nodes), each with its
// own data dir and log file.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/swarmlet once per test process (only the benchmark needs it,
// so `go test ./...` pays nothing).
func binary(tb testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "swarmlet-scale-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "swarmlet")
		cmd := exec.Command("go", "build", "-o", binPath, "../cmd/swarmlet")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build swarmlet: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

const managerPortBase = 25000

type managers struct {
	tb    testing.TB
	bin   string
	dir   string
	sub   int
	env   []string
	mu    sync.Mutex
	procs [4]*exec.Cmd // 1-based
	ids   [4]string
}

func newManagers(tb testing.TB, sub int, env []string) *managers {
	m := &managers{tb: tb, bin: binary(tb), dir: tb.TempDir(), sub: sub, env: env}
	tb.Cleanup(m.stopAll)
	return m
}

func (m *managers) ip(i int) string      { return fmt.Sprintf("127.80.%d.%d", m.sub, i) }
func (m *managers) dataDir(i int) string { return filepath.Join(m.dir, fmt.Sprintf("m%d", i)) }
func (m *managers) logPath(i int) string { return filepath.Join(m.dir, fmt.Sprintf("m%d.log", i)) }
func (m *managers) apiAddr(i int) string { return fmt.Sprintf("%s:%d", m.ip(i), managerPortBase) }

func (m *managers) client(i int) *client.Client {
	c, err := client.New("unix://"+filepath.Join(m.dataDir(i), "swarmlet.sock"), client.Options{Timeout: 60 * time.Second})
	if err != nil {
		m.tb.Fatal(err)
	}
	return c
}

// start runs manager i: init for 1, join with token for the others; a data dir
// that holds state resumes whichever.
func (m *managers) start(i int, token string) {
	m.tb.Helper()
	args := []string{"init"}
	if i != 1 {
		args = []string{"join", "--token", token}
	}
	args = append(args, "--advertise-addr", m.ip(i), "--data-dir", m.dataDir(i), "--hostname", fmt.Sprintf("m%d", i),
		"--engine", "process", "--lb", "none", "--dns-port", "0", "--port-base", strconv.Itoa(managerPortBase),
		"--availability", "drain", "--pool", "172.24.0.0/13", "--subnet-bits", "24")
	if i != 1 {
		args = append(args, m.apiAddr(1))
	}
	logf, err := os.OpenFile(m.logPath(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		m.tb.Fatal(err)
	}
	cmd := exec.Command(m.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), m.env...)
	if err := cmd.Start(); err != nil {
		m.tb.Fatal(err)
	}
	logf.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.mu.Lock()
	m.procs[i] = cmd
	m.mu.Unlock()
	c := m.client(i)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		inf, err := c.Info(ctx)
		cancel()
		if err == nil && inf.NodeID != "" && (i == 1 || inf.LeaderID != "") {
			m.ids[i] = inf.NodeID
			return
		}
		select {
		case <-exited:
			m.tb.Fatalf("manager %d exited:\n%s", i, m.logTail(i, 40))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.tb.Fatalf("manager %d did not come up:\n%s", i, m.logTail(i, 40))
		}
	}
}

func (m *managers) pid(i int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.procs[i] == nil {
		return 0
	}
	return m.procs[i].Process.Pid
}

// kill SIGKILLs manager i and waits until it is gone.
func (m *managers) kill(i int) {
	m.mu.Lock()
	p := m.procs[i]
	m.procs[i] = nil
	m.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.Process.Kill()
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(p.Process.Pid, 0) == nil && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

func (m *managers) stopAll() {
	for i := 1; i <= 3; i++ {
		m.kill(i)
	}
	if m.tb.Failed() {
		for i := 1; i <= 3; i++ {
			m.tb.Logf("--- manager %d log (tail)\n%s", i, m.logTail(i, 30))
		}
	}
}

func (m *managers) logTail(i, n int) string {
	b, _ := os.ReadFile(m.logPath(i))
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// alive lists the managers running now.
func (m *managers) alive() []int {
	var out []int
	for i := 1; i <= 3; i++ {
		if m.pid(i) != 0 {
			out = append(out, i)
		}
	}
	return out
}

// leader is the manager that leads now (0 if none answers).
func (m *managers) leader() int {
	for _, i := range m.alive() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		inf, err := m.client(i).Info(ctx)
		cancel()
		if err != nil || inf.LeaderID == "" {
			continue
		}
		for j := 1; j <= 3; j++ {
			if m.ids[j] == inf.LeaderID && m.pid(j) != 0 {
				return j
			}
		}
	}
	return 0
}

// procStat is a process's CPU time and resident memory now.
type procStat struct {
	cpu time.Duration
	rss int64 // bytes
}

// stat reads /proc for manager i (zero if it is not running).
func (m *managers) stat(i int) procStat {
	pid := m.pid(i)
	if pid == 0 {
		return procStat{}
	}
	return readProc(pid)
}

func readProc(pid int) procStat {
	var ps procStat
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command (which may hold spaces) start after ')'.
		s := string(b)
		if k := strings.LastIndexByte(s, ')'); k > 0 {
			f := strings.Fields(s[k+1:])
			if len(f) > 13 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				ps.cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
			}
		}
	}
	if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				ps.rss = kb << 10
			}
		}
		f.Close()
	}
	return ps
}

// metrics scrapes manager i's /metrics into name{labels} -> value.
func (m *managers) metrics(i int) map[string]float64 {
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.client(i).Do(ctx, "GET", "/metrics", nil, io.Writer(&buf)); err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, line := range strings.Split(buf.String(), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		k := strings.LastIndexByte(line, ' ')
		if k < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[k+1:], 64)
		if err == nil {
			out[line[:k]] = v
		}
	}
	return out
}

// sumPrefix adds every series whose name starts with prefix.
func sumPrefix(mt map[string]float64, prefix string) float64 {
	var s float64
	for k, v := range mt {
		if strings.HasPrefix(k, prefix) {
			s += v
		}
	}
	return s
}

// services reads the services and their running counts through manager i.
func services(ctx context.Context, c *client.Client) (map[string]api.ServiceInfo, error) {
	l, _, err := c.Services(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]api.ServiceInfo{}
	for _, s := range l {
		out[s.Spec.Name] = s
	}
	return out, nil
}
