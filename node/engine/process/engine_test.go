package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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
	"github.com/swarmlet/swarmlet/internal/testlog"
	"github.com/swarmlet/swarmlet/node/engine"
)

// whoamiBin is the project's test server, built once for all tests.
var whoamiBin string

func TestMain(m *testing.M) {
	// The test binary doubles as a worker daemon that a test can kill -9.
	if dir := os.Getenv("SWARMLET_TEST_DAEMON_DIR"); dir != "" {
		runTestDaemon(dir)
		return
	}
	tmp, err := os.MkdirTemp("", "swarmlet-process-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	whoamiBin = filepath.Join(tmp, "whoami")
	build := exec.Command("go", "build", "-o", whoamiBin, "github.com/swarmlet/swarmlet/cmd/whoami")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build whoami: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// runTestDaemon starts two long-running tasks, prints their PIDs and waits to be killed.
func runTestDaemon(dir string) {
	e, err := New(engine.Config{NodeID: "n1", NodeAddr: "127.0.0.1", DataDir: dir}, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for _, id := range []string{"keep", "dies"} {
		inst, err := e.Start(context.Background(), &api.Task{ID: id, ServiceName: "svc", Slot: 1,
			Spec: api.ServiceSpec{Image: "sleep", Command: []string{"1000"}}})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(id, inst.ID)
	}
	fmt.Println("ready")
	select {}
}

// testLogger sends engine logs to t.Log, and drops those that come after the test
// ended (process waiters may log late).
func testLogger(t *testing.T) *slog.Logger { return testlog.New(t) }

func newEngine(t *testing.T, cfg engine.Config) *Engine {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "node-1"
	}
	if cfg.NodeAddr == "" {
		cfg.NodeAddr = "127.0.0.1"
	}
	e, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	e.StopTimeout = 2 * time.Second
	t.Cleanup(func() {
		// Tests leave no process behind, whatever happened.
		if list, err := e.List(context.Background()); err == nil {
			for _, inst := range list {
				_ = e.Stop(context.Background(), inst.TaskID)
			}
		}
		e.Close()
	})
	return e
}

func shTask(id, script string) *api.Task {
	return &api.Task{ID: id, ServiceName: "svc", Slot: 1,
		Spec: api.ServiceSpec{Image: "/bin/sh", Command: []string{"-c", script}}}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func findInstance(t *testing.T, e *Engine, taskID string) (engine.Instance, bool) {
	t.Helper()
	list, err := e.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range list {
		if inst.TaskID == taskID {
			return inst, true
		}
	}
	return engine.Instance{}, false
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, 5*time.Second, "pid file "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// freeTCPPort picks a port the way the engine does, outside the ephemeral range.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	lo, hi := portRange()
	for port := hi - 1; port >= lo; port-- {
		if portFree("tcp", port) {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func httpGet(url string) (string, error) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), err
}

func TestStartEnvAndPorts(t *testing.T) {
	e := newEngine(t, engine.Config{DNS: "127.0.0.1:5353"})
	hostPort := freeTCPPort(t)
	task := &api.Task{ID: "t-env", ServiceName: "web", Slot: 3,
		Spec: api.ServiceSpec{
			Image: whoamiBin,
			Env:   []string{"GREETING=hi", "SWARMLET_TASK_ID=spoofed"},
			Ports: []api.PortConfig{
				{Protocol: "tcp", TargetPort: 80, PublishMode: api.PublishIngress, PublishedPort: 8080},
				{Protocol: "tcp", TargetPort: 9000, PublishMode: api.PublishHost, PublishedPort: hostPort},
			},
		}}
	inst, err := e.Start(context.Background(), task)
	if err != nil {
		t.Fatal(err)
	}
	if inst.State != api.TaskRunning || inst.Addr != "127.0.0.1" || inst.TaskID != "t-env" || inst.NodeID != "node-1" {
		t.Fatalf("instance = %+v", inst)
	}
	if len(inst.Ports) != 2 || inst.Ports[0].TargetPort != 80 || inst.Ports[0].HostPort == 0 ||
		inst.Ports[0].HostPort == 8080 || inst.Ports[1] != (api.PortBinding{Protocol: "tcp", TargetPort: 9000, HostPort: hostPort}) {
		t.Fatalf("ports = %+v", inst.Ports)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", inst.Ports[0].HostPort) // PORT is the first port
	var body string
	waitFor(t, 10*time.Second, "whoami to answer", func() bool {
		body, err = httpGet(url)
		return err == nil
	})
	want := "task=t-env slot=3 node=node-1 service=web host="
	if !strings.HasPrefix(body, want) {
		t.Fatalf("GET / = %q, want prefix %q", body, want)
	}

	// The environment in full, from a shell.
	out := filepath.Join(t.TempDir(), "env")
	task2 := shTask("t-env2", "env > "+out+".tmp && mv "+out+".tmp "+out+" && exec sleep 1000")
	task2.Spec.Env = []string{"GREETING=hi"}
	task2.Spec.Ports = task.Spec.Ports[:1]
	inst2, err := e.Start(context.Background(), task2)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "env dump", func() bool { _, err := os.Stat(out); return err == nil })
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	p := strconv.Itoa(inst2.Ports[0].HostPort)
	for k, v := range map[string]string{
		"GREETING": "hi", "SWARMLET_TASK_ID": "t-env2", "SWARMLET_SERVICE": "svc", "SWARMLET_SLOT": "1",
		"SWARMLET_NODE_ID": "node-1", "SWARMLET_ADDR": "127.0.0.1", "SWARMLET_DNS": "127.0.0.1:5353",
		"PORT": p, "PORT_80": p, "PATH": os.Getenv("PATH"),
	} {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
}

func TestStopKillsWholeGroup(t *testing.T) {
	for _, tc := range []struct {
		name, trap string
	}{
		{"sigterm", ""},
		// Ignoring SIGTERM (inherited by the child) forces the SIGKILL after the grace.
		{"sigkill", "trap '' TERM; "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, engine.Config{})
			e.StopTimeout = 300 * time.Millisecond
			pidFile := filepath.Join(t.TempDir(), "child.pid")
			inst, err := e.Start(context.Background(), shTask("t-group", tc.trap+"sleep 1000 & echo $! > "+pidFile+"; wait"))
			if err != nil {
				t.Fatal(err)
			}
			child := readPID(t, pidFile)
			leader, _ := strconv.Atoi(inst.ID)
			if !alive(child, 0) || !alive(leader, 0) {
				t.Fatal("processes not running")
			}
			start := time.Now()
			if err := e.Stop(context.Background(), "t-group"); err != nil {
				t.Fatal(err)
			}
			t.Logf("stop took %v", time.Since(start))
			waitFor(t, 5*time.Second, "grandchild to die", func() bool { return !alive(child, 0) })
			if alive(leader, 0) {
				t.Fatal("leader still alive after Stop")
			}
			if _, ok := findInstance(t, e, "t-group"); ok {
				t.Fatal("stopped task still listed")
			}
			for _, ext := range []string{".json", ".log"} {
				if _, err := os.Stat(filepath.Join(e.dir, "t-group"+ext)); !isNotExist(err) {
					t.Errorf("%s left behind: %v", ext, err)
				}
			}
			if err := e.Stop(context.Background(), "t-group"); err != nil {
				t.Fatalf("second stop: %v", err)
			}
		})
	}
}

func TestMissingProgramRejected(t *testing.T) {
	e := newEngine(t, engine.Config{})
	for _, img := range []string{"no-such-program-swarmlet", "/no/such/program"} {
		_, err := e.Start(context.Background(), &api.Task{ID: "t-missing", Spec: api.ServiceSpec{Image: img}})
		if !errors.Is(err, engine.ErrRejected) || !strings.Contains(err.Error(), img) {
			t.Fatalf("Start(%s) error = %v, want ErrRejected naming the program", img, err)
		}
	}
	if list, _ := e.List(context.Background()); len(list) != 0 {
		t.Fatalf("list = %+v", list)
	}
}

func TestExitReported(t *testing.T) {
	e := newEngine(t, engine.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := e.Changes(ctx)
	cases := map[string]struct {
		script string
		state  api.TaskState
		code   int
	}{
		"t-fail":   {"exit 3", api.TaskFailed, 3},
		"t-ok":     {"exit 0", api.TaskComplete, 0},
		"t-signal": {"kill -9 $$", api.TaskFailed, 137},
	}
	for id, c := range cases {
		if _, err := e.Start(context.Background(), shTask(id, c.script)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	timeout := time.After(10 * time.Second)
	for len(seen) < len(cases) {
		select {
		case id := <-changes:
			seen[id] = true
		case <-timeout:
			t.Fatalf("changes delivered only %v", seen)
		}
	}
	for id, c := range cases {
		inst, ok := findInstance(t, e, id)
		if !ok || inst.State != c.state || inst.ExitCode != c.code {
			t.Errorf("%s: instance = %+v, want state %v code %d", id, inst, c.state, c.code)
		}
	}
	// A restarted engine still knows the exit codes.
	e2 := newEngine(t, engine.Config{DataDir: e.cfg.DataDir})
	for id, c := range cases {
		if inst, ok := findInstance(t, e2, id); !ok || inst.State != c.state || inst.ExitCode != c.code {
			t.Errorf("after restart %s: instance = %+v", id, inst)
		}
	}
	if _, err := e.Start(context.Background(), shTask("t-ok", "exit 0")); err == nil {
		t.Error("starting an exited task again succeeded")
	}
	cancel()
	waitFor(t, 5*time.Second, "changes to close", func() bool {
		_, open := <-changes
		return !open
	})
}

func TestAdoptionInProcess(t *testing.T) {
	e1 := newEngine(t, engine.Config{})
	inst, err := e1.Start(context.Background(), shTask("t-adopt", "exec sleep 1000"))
	if err != nil {
		t.Fatal(err)
	}
	e1.Close() // a daemon shutting down leaves its tasks running

	e2 := newEngine(t, engine.Config{DataDir: e1.cfg.DataDir})
	got, ok := findInstance(t, e2, "t-adopt")
	if !ok || got.State != api.TaskRunning || got.ID != inst.ID {
		t.Fatalf("adopted = %+v (ok %v), want running pid %s", got, ok, inst.ID)
	}
	// Another node sharing the data dir sees nothing of ours.
	e3 := newEngine(t, engine.Config{DataDir: e1.cfg.DataDir, NodeID: "node-2"})
	if list, _ := e3.List(context.Background()); len(list) != 0 {
		t.Fatalf("node-2 lists %+v", list)
	}
	pid, _ := strconv.Atoi(inst.ID)
	if err := e2.Stop(context.Background(), "t-adopt"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "adopted process to die", func() bool { return !alive(pid, 0) })
	if _, ok := findInstance(t, e2, "t-adopt"); ok {
		t.Fatal("stopped task still listed")
	}
}

// TestAdoptionAfterKill9 is the real thing: a daemon process starts tasks and is
// killed -9; the tasks keep running and a new engine adopts them.
func TestAdoptionAfterKill9(t *testing.T) {
	dir := t.TempDir()
	daemon := exec.Command(os.Args[0], "-test.run=^$")
	daemon.Env = append(os.Environ(), "SWARMLET_TEST_DAEMON_DIR="+dir)
	stdout, err := daemon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	pids := map[string]int{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || f[0] == "error" {
			daemon.Process.Kill()
			daemon.Wait()
			t.Fatalf("daemon: %s", sc.Text())
		}
		pids[f[0]], _ = strconv.Atoi(f[1])
	}
	if err := daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	daemon.Wait()
	for id, pid := range pids {
		if !alive(pid, 0) {
			t.Fatalf("task %s (pid %d) died with the daemon", id, pid)
		}
	}

	e := newEngine(t, engine.Config{DataDir: dir, NodeID: "n1"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := e.Changes(ctx)
	for id, pid := range pids {
		got, ok := findInstance(t, e, id)
		if !ok || got.State != api.TaskRunning || got.ID != strconv.Itoa(pid) {
			t.Fatalf("adopted %s = %+v", id, got)
		}
	}
	// A process that ends while nobody is its parent: the poller notices.
	if err := syscall.Kill(pids["dies"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-changes:
		if id != "dies" {
			t.Fatalf("change for %s, want dies", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change for an adopted process that died")
	}
	got, _ := findInstance(t, e, "dies")
	if got.State != api.TaskFailed || !strings.Contains(got.Err, "exit code unknown") {
		t.Fatalf("dead adopted task = %+v", got)
	}
	if err := e.Stop(context.Background(), "keep"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "adopted process to die", func() bool { return !alive(pids["keep"], 0) })

	// A record whose process is gone by the time the engine starts.
	e.Close()
	rec := record{TaskID: "gone", NodeID: "n1", PID: pids["dies"], PGID: pids["dies"], StartTicks: 1}
	if err := e.writeRecord(rec); err != nil {
		t.Fatal(err)
	}
	e2 := newEngine(t, engine.Config{DataDir: dir, NodeID: "n1"})
	if got, ok := findInstance(t, e2, "gone"); !ok || got.State != api.TaskFailed || got.Err != errUnknownExit {
		t.Fatalf("gone = %+v", got)
	}
}

func TestLogs(t *testing.T) {
	e := newEngine(t, engine.Config{})
	if _, err := e.Start(context.Background(), shTask("t-logs", "for i in 1 2 3 4 5; do echo line$i; done; echo err >&2")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "exit", func() bool {
		inst, _ := findInstance(t, e, "t-logs")
		return inst.State.Terminal()
	})
	for _, tc := range []struct {
		tail int
		want string
	}{
		{0, "line1\nline2\nline3\nline4\nline5\nerr\n"},
		{2, "line5\nerr\n"},
		{1, "err\n"},
		{100, "line1\nline2\nline3\nline4\nline5\nerr\n"},
	} {
		var sb strings.Builder
		if err := e.Logs(context.Background(), "t-logs", engine.LogOptions{Tail: tc.tail}, &sb); err != nil {
			t.Fatal(err)
		}
		if sb.String() != tc.want {
			t.Errorf("tail %d = %q, want %q", tc.tail, sb.String(), tc.want)
		}
	}

	// Follow copies output as it comes and returns when the process is done.
	gate := filepath.Join(t.TempDir(), "gate")
	if _, err := e.Start(context.Background(), shTask("t-follow",
		"echo first; while [ ! -e "+gate+" ]; do sleep 0.05; done; echo second")); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- e.Logs(context.Background(), "t-follow", engine.LogOptions{Follow: true}, pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	if !sc.Scan() || sc.Text() != "first" {
		t.Fatalf("first line = %q", sc.Text())
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !sc.Scan() || sc.Text() != "second" {
		t.Fatalf("second line = %q", sc.Text())
	}
	for sc.Scan() {
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := e.Logs(context.Background(), "nope", engine.LogOptions{}, io.Discard); err == nil {
		t.Fatal("logs of an unknown task succeeded")
	}
}

func TestTailOffset(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat(strings.Repeat("x", 999)+"\n", 200) // spans several blocks
	for _, tc := range []struct {
		content string
		n       int
		want    string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\nc\n", 5, "a\nb\nc\n"},
		{"\n\n", 1, "\n"},
		{big + "last\n", 2, strings.Repeat("x", 999) + "\nlast\n"},
	} {
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		off, err := tailOffset(f, tc.n)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := tc.content[off:]; got != tc.want {
			t.Errorf("tail %d of %.20q = %.40q, want %.40q", tc.n, tc.content, got, tc.want)
		}
	}
}

// TestStartMany starts 20 whoami tasks at once and logs how long until all answer.
func TestStartMany(t *testing.T) {
	e := newEngine(t, engine.Config{})
	const n = 20
	start := time.Now()
	insts := make([]engine.Instance, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			var err error
			insts[i], err = e.Start(context.Background(), &api.Task{ID: fmt.Sprintf("t-many-%d", i), ServiceName: "many", Slot: uint64(i + 1),
				Spec: api.ServiceSpec{Image: whoamiBin, Ports: []api.PortConfig{{Protocol: "tcp", TargetPort: 80}}}})
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	started := time.Since(start)
	seen := map[int]bool{}
	for i, inst := range insts {
		if seen[inst.Ports[0].HostPort] {
			t.Fatalf("host port %d handed out twice", inst.Ports[0].HostPort)
		}
		seen[inst.Ports[0].HostPort] = true
		url := fmt.Sprintf("http://127.0.0.1:%d/", inst.Ports[0].HostPort)
		var body string
		var err error
		waitFor(t, 20*time.Second, "task answers", func() bool {
			body, err = httpGet(url)
			if err == nil && strings.HasPrefix(body, fmt.Sprintf("task=t-many-%d ", i)) {
				return true
			}
			// Say why rather than time out: a port taken by another process between
			// the engine's choice and the task's bind makes the task exit.
			if got, _ := findInstance(t, e, inst.TaskID); got.State.Terminal() {
				var logs strings.Builder
				_ = e.Logs(context.Background(), inst.TaskID, engine.LogOptions{}, &logs)
				t.Fatalf("task %s exited: %+v\n%s", inst.TaskID, got, logs.String())
			}
			return false
		})
		if t.Failed() {
			t.Fatalf("last answer from %s: %q, %v", url, body, err)
		}
	}
	t.Logf("%d process tasks: Start returned after %v, all answering HTTP after %v", n, started, time.Since(start))
}
