package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/internal/testlog"
	"github.com/swarmlet/swarmlet/node/engine"
)

const (
	// testImage is this package's own tag: rebuilding the shared
	// swarmlet/whoami:test while another package's tests run on it (go test
	// runs packages side by side) would move the tag under them.
	testImage = "swarmlet/whoami:engine-test"
	// testLabel marks every container these tests create, for the sweep.
	testLabel = "swarmlet.test"
)

var (
	dockerErr string // why Docker tests cannot run; "" when they can
	testCLI   *client.Client
	runID     = fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
)

func TestMain(m *testing.M) {
	code := func() int {
		if os.Getenv("DOCKER_HOST") == "" {
			if _, err := os.Stat("/var/run/docker.sock"); err != nil {
				dockerErr = "no Docker engine: /var/run/docker.sock is absent and DOCKER_HOST unset"
				return m.Run()
			}
		}
		// The socket is there (CI has it): from here on a failure is a failure.
		var err error
		if testCLI, err = newClient(); err != nil {
			fmt.Fprintln(os.Stderr, "docker client:", err)
			return 1
		}
		defer testCLI.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := buildWhoami(ctx, testCLI); err != nil {
			fmt.Fprintln(os.Stderr, "build test image:", err)
			return 1
		}
		code := m.Run()
		sweep(testCLI, "")
		return code
	}()
	os.Exit(code)
}

// buildWhoami does what cmd/whoami/build.sh does, through the API: a static
// cmd/whoami in the FROM scratch image of cmd/whoami/Dockerfile. No pull.
func buildWhoami(ctx context.Context, cli *client.Client) error {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	dockerfile, err := os.ReadFile(filepath.Join(root, "cmd", "whoami", "Dockerfile"))
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "swarmlet-whoami")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "whoami")
	gobuild := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/whoami") // as build.sh
	gobuild.Dir = root
	gobuild.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := gobuild.CombinedOutput(); err != nil {
		return fmt.Errorf("go build whoami: %v\n%s", err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	return buildImage(ctx, cli, testImage, map[string][]byte{"Dockerfile": dockerfile, "whoami": binary})
}

// buildImage builds tag from a context of the given files (all made executable,
// which the Dockerfile does not mind).
func buildImage(ctx context.Context, cli *client.Client, tag string, files map[string][]byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data))}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, PullParent: false,
	})
	if err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	defer resp.Body.Close()
	// The build's outcome is in the stream: an "error" message means it failed.
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("build %s: read output: %w", tag, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("build %s: %s", tag, msg.Error)
		}
	}
}

// sweep removes the containers of this test run (of one node if nodeID is set).
func sweep(cli *client.Client, nodeID string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := filters.NewArgs(filters.Arg("label", testLabel+"="+runID))
	if nodeID != "" {
		args.Add("label", engine.LabelNode+"="+nodeID)
	}
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
	if err != nil {
		return
	}
	for _, c := range cs {
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}

func requireDocker(t *testing.T) {
	t.Helper()
	if dockerErr != "" {
		t.Skip(dockerErr)
	}
}

// newEngine returns an engine for a node of its own, whose containers are removed
// when the test ends.
func newEngine(t *testing.T, node string) *Engine {
	t.Helper()
	requireDocker(t)
	nodeID := node + "-" + runID
	e, err := New(engine.Config{NodeID: nodeID, NodeAddr: "127.0.0.1", DataDir: t.TempDir()}, testlog.New(t, slog.LevelInfo))
	if err != nil {
		t.Fatal(err)
	}
	e.StopTimeout = 2 * time.Second
	t.Cleanup(func() {
		sweep(testCLI, nodeID)
		e.Close()
	})
	// Docker's default network unless a test gives the node its own.
	if err := e.SetNetwork(context.Background(), engine.Network{}); err != nil {
		t.Fatal(err)
	}
	return e
}

func whoamiTask(id string, slot uint64, ports ...api.PortConfig) *api.Task {
	return &api.Task{ID: id + "-" + runID, ServiceName: "web", Slot: slot,
		Spec: api.ServiceSpec{
			Image:  testImage,
			Labels: map[string]string{testLabel: runID},
			Ports:  ports,
		}}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
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

func find(t *testing.T, e *Engine, taskID string) (engine.Instance, bool) {
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

func waitHTTP(t *testing.T, port int, wantPrefix string) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var body string
	var err error
	waitFor(t, 15*time.Second, "whoami at "+url, func() bool {
		body, err = httpGet(url)
		return err == nil && strings.HasPrefix(body, wantPrefix)
	})
}

func TestStartPublishedPort(t *testing.T) {
	e := newEngine(t, "a")
	task := whoamiTask("t1", 2, api.PortConfig{Protocol: "tcp", TargetPort: 80, PublishMode: api.PublishIngress, PublishedPort: 8080})
	task.Spec.Limits = api.Resources{NanoCPUs: 500_000_000, MemoryBytes: 64 << 20}
	inst, err := e.Start(context.Background(), task)
	if err != nil {
		t.Fatal(err)
	}
	if inst.State != api.TaskRunning || inst.TaskID != task.ID || inst.NodeID != e.cfg.NodeID || inst.ServiceName != "web" {
		t.Fatalf("instance = %+v", inst)
	}
	if _, err := netip.ParseAddr(inst.Addr); err != nil {
		t.Fatalf("addr %q is not the container IP: %v", inst.Addr, err)
	}
	if len(inst.Ports) != 1 || inst.Ports[0].TargetPort != 80 || inst.Ports[0].Protocol != "tcp" || inst.Ports[0].HostPort == 0 {
		t.Fatalf("ports = %+v", inst.Ports)
	}
	waitHTTP(t, inst.Ports[0].HostPort, fmt.Sprintf("task=%s slot=2 node=%s service=web host=", task.ID, e.cfg.NodeID))

	info, err := testCLI.ContainerInspect(context.Background(), inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "/"+ContainerName(task) || info.Config.Labels[engine.LabelSlot] != "2" ||
		info.HostConfig.NanoCPUs != 500_000_000 || info.HostConfig.Memory != 64<<20 {
		t.Fatalf("container: name %s labels %v limits %d/%d", info.Name, info.Config.Labels, info.HostConfig.NanoCPUs, info.HostConfig.Memory)
	}
	listed, ok := find(t, e, task.ID)
	if !ok || listed.State != api.TaskRunning || listed.Addr != inst.Addr || len(listed.Ports) != 1 || listed.Ports[0] != inst.Ports[0] {
		t.Fatalf("listed = %+v, started = %+v", listed, inst)
	}
	// A repeated Start (worker restart) finds the running container.
	again, err := e.Start(context.Background(), task)
	if err != nil || again.ID != inst.ID {
		t.Fatalf("second start = %+v, %v", again, err)
	}
}

func TestKillReportsExit(t *testing.T) {
	e := newEngine(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := e.Changes(ctx)
	task := whoamiTask("t-kill", 1)
	inst, err := e.Start(context.Background(), task)
	if err != nil {
		t.Fatal(err)
	}
	if err := testCLI.ContainerKill(context.Background(), inst.ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(15 * time.Second)
	for got := false; !got; {
		select {
		case id := <-changes:
			got = id == task.ID
		case <-timeout:
			t.Fatal("no change for the killed container")
		}
	}
	listed, ok := find(t, e, task.ID)
	if !ok || listed.State != api.TaskFailed || listed.ExitCode != 137 || listed.Err == "" {
		t.Fatalf("killed container listed as %+v", listed)
	}
	cancel()
	waitFor(t, 5*time.Second, "changes to close", func() bool {
		_, open := <-changes
		return !open
	})
}

func TestNodesSharingEngine(t *testing.T) {
	a, b := newEngine(t, "a"), newEngine(t, "b")
	task := whoamiTask("t-shared", 1)
	if _, err := a.Start(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	list, err := b.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Fatalf("node b lists %+v", list)
	}
	// Stopping through b does not touch a's container.
	if err := b.Stop(context.Background(), task.ID); err != nil {
		t.Fatal(err)
	}
	if inst, ok := find(t, a, task.ID); !ok || inst.State != api.TaskRunning {
		t.Fatalf("a's task after b's stop: %+v", inst)
	}
}

func TestMissingImageRejected(t *testing.T) {
	e := newEngine(t, "a")
	task := whoamiTask("t-noimage", 1)
	task.Spec.Image = "swarmlet/no-such-image:nope"
	_, err := e.Start(context.Background(), task)
	if !errors.Is(err, engine.ErrRejected) || !strings.Contains(err.Error(), "No such image") {
		t.Fatalf("error = %v, want ErrRejected with No such image", err)
	}

	// A command that does not exist in the image (its CMD is replaced by Command)
	// is rejected too, and leaves no container behind.
	bad := whoamiTask("t-badcmd", 1)
	bad.Spec.Command = []string{"/no-such-program"}
	_, err = e.Start(context.Background(), bad)
	if !errors.Is(err, engine.ErrRejected) || !strings.Contains(err.Error(), "no-such-program") {
		t.Fatalf("bad command: error = %v, want ErrRejected naming the program", err)
	}
	good := whoamiTask("t-goodcmd", 1)
	good.Spec.Command = []string{"/whoami"}
	if _, err := e.Start(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	if list, _ := e.List(context.Background()); len(list) != 1 || list[0].TaskID != good.ID {
		t.Fatalf("list = %+v, want just the good task", list)
	}
}

func TestStopRemoves(t *testing.T) {
	e := newEngine(t, "a")
	task := whoamiTask("t-stop", 1, api.PortConfig{Protocol: "tcp", TargetPort: 80})
	inst, err := e.Start(context.Background(), task)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := e.Stop(context.Background(), task.ID); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop took %v", time.Since(start))
	if _, err := testCLI.ContainerInspect(context.Background(), inst.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("container still there after Stop: %v", err)
	}
	if _, ok := find(t, e, task.ID); ok {
		t.Fatal("stopped task still listed")
	}
	if err := e.Stop(context.Background(), task.ID); err != nil {
		t.Fatalf("stop of an unknown task: %v", err)
	}
}

func TestLogs(t *testing.T) {
	e := newEngine(t, "a")
	task := whoamiTask("t-logs", 1)
	if _, err := e.Start(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	var out string
	waitFor(t, 10*time.Second, "the listening line", func() bool {
		var sb strings.Builder
		if err := e.Logs(context.Background(), task.ID, engine.LogOptions{Tail: 1}, &sb); err != nil {
			t.Fatal(err)
		}
		out = sb.String()
		return strings.Contains(out, "listening")
	})
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("tail 1 = %q", out)
	}
	// Follow runs until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var sb strings.Builder
	if err := e.Logs(ctx, task.ID, engine.LogOptions{Follow: true}, &sb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "listening") {
		t.Fatalf("follow = %q", sb.String())
	}
	if err := e.Logs(context.Background(), "nope", engine.LogOptions{}, io.Discard); err == nil {
		t.Fatal("logs of an unknown task succeeded")
	}
	// Docker's own times, in the engine's format; --since a later time: nothing.
	sb.Reset()
	if err := e.Logs(context.Background(), task.ID, engine.LogOptions{Tail: 1, Timestamps: true}, &sb); err != nil {
		t.Fatal(err)
	}
	ts, msg, _ := strings.Cut(sb.String(), " ")
	if at, err := time.Parse(time.RFC3339Nano, ts); err != nil || time.Since(at) > time.Minute || !strings.Contains(msg, "listening") {
		t.Fatalf("timestamped line %q: %v", sb.String(), err)
	}
	sb.Reset()
	if err := e.Logs(context.Background(), task.ID, engine.LogOptions{Since: time.Now().Add(time.Minute)}, &sb); err != nil || sb.Len() != 0 {
		t.Fatalf("logs since a minute ahead: %q %v", sb.String(), err)
	}
}

func TestContainerDNS(t *testing.T) {
	for in, want := range map[string]string{
		"":              "",
		"10.0.0.5:53":   "10.0.0.5",
		"10.0.0.5":      "10.0.0.5",
		"10.0.0.5:5353": "",
		"127.0.0.1:53":  "",
		"[fd00::1]:53":  "fd00::1",
		"dns.local:53":  "",
	} {
		if got := containerDNS(in, slog.New(slog.DiscardHandler)); got != want {
			t.Errorf("containerDNS(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAvailable(t *testing.T) {
	requireDocker(t)
	if !Available(context.Background()) {
		t.Fatal("Available = false with a Docker engine present")
	}
}

// TestStartMany starts 20 containers at once and logs how long until all answer.
func TestStartMany(t *testing.T) {
	e := newEngine(t, "many")
	const n = 20
	start := time.Now()
	insts := make([]engine.Instance, n)
	tasks := make([]*api.Task, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		tasks[i] = whoamiTask(fmt.Sprintf("t-many-%d", i), uint64(i+1), api.PortConfig{Protocol: "tcp", TargetPort: 80})
		wg.Go(func() {
			var err error
			if insts[i], err = e.Start(context.Background(), tasks[i]); err != nil {
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
	for i, inst := range insts {
		waitHTTP(t, inst.Ports[0].HostPort, "task="+tasks[i].ID+" ")
	}
	answering := time.Since(start)
	stopStart := time.Now()
	for _, task := range tasks {
		wg.Go(func() {
			if err := e.Stop(context.Background(), task.ID); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d containers: Start returned after %v, all answering HTTP after %v; stopping all took %v",
		n, started, answering, time.Since(stopStart))
}

// TestForwardEvents checks the part of Changes that needs no engine: task IDs pass,
// the resume point advances, and a broken stream ends forward so Changes reconnects.
func TestForwardEvents(t *testing.T) {
	e := &Engine{log: slog.New(slog.DiscardHandler)}
	msgs, errs, out := make(chan events.Message), make(chan error, 1), make(chan string, 2)
	var since time.Time
	done := make(chan error, 1)
	go func() { done <- e.forward(context.Background(), msgs, errs, out, &since) }()
	at := time.Unix(1700000000, 123456789)
	msgs <- events.Message{TimeNano: at.UnixNano(), Actor: events.Actor{Attributes: map[string]string{engine.LabelTask: "t1"}}}
	msgs <- events.Message{Actor: events.Actor{Attributes: map[string]string{"other": "x"}}} // not a task: skipped
	if got := <-out; got != "t1" {
		t.Fatalf("forwarded %q", got)
	}
	errs <- io.ErrUnexpectedEOF
	if err := <-done; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("forward returned %v", err)
	}
	if !since.Equal(at) {
		t.Fatalf("since = %v, want %v", since, at)
	}
}
