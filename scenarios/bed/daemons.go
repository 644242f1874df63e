package bed

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// daemon is a long-running child in a host's namespace.
type daemon struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

// startEngine starts the host's containerd, then its dockerd on it, and waits
// until the engine answers.
//
// The host runs a containerd of its own instead of letting dockerd start one:
// dockerd uses the system containerd whenever /run/containerd/containerd.sock
// exists (Debian's docker.io runs one), and two engines in one containerd
// namespace would see each other's containers.
func (h *Host) startEngine(ctx context.Context) error {
	for _, d := range []string{"data", "exec"} {
		if err := os.MkdirAll(filepath.Join(h.Dir, d), 0o700); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	ctrSock := filepath.Join(h.Dir, "containerd.sock")
	ctrConf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(h.Dir, "data", "containerd"), filepath.Join(h.Dir, "exec", "containerd"),
		ctrSock, ctrSock+".ttrpc", filepath.Join(h.Dir, "data", "opt"))
	// The machine's /etc/docker/daemon.json would clash with our flags
	// (data-root, storage-driver), so each engine reads a file of its own.
	//
	// The engine ID must differ per host. Up to Docker 22 it is derived from a
	// key file, by default the machine's /etc/docker/key.json;
	// deprecated-key-path gives each engine its own. From 23 on the key is
	// gone and the ID is a UUID in DATA_ROOT/engine-id, which may be migrated
	// from that same key file when missing: so we write one (20.10 ignores it).
	// Only 20.10 is tried here (Debian 12's).
	conf := map[string]any{}
	if dockerdMajor() < 23 {
		conf["deprecated-key-path"] = filepath.Join(h.Dir, "key.json")
	}
	if h.bed.liveRestore {
		// Containers keep running while dockerd is down (RestartEngine).
		conf["live-restore"] = true
	}
	dockerConf, err := json.Marshal(conf)
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	files := map[string]string{
		"containerd.toml": ctrConf,
		"daemon.json":     string(dockerConf) + "\n",
		"data/engine-id":  newUUID(),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(h.Dir, name), []byte(body), 0o600); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}

	h.containerd, err = h.startDaemon("containerd", "--config", filepath.Join(h.Dir, "containerd.toml"))
	if err != nil {
		return err
	}
	if err := waitFor(ctx, h.containerd, func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", ctrSock)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		return fmt.Errorf("%s: containerd: %w", h.Name, err)
	}

	return h.startDockerd(ctx)
}

// startDockerd starts the host's dockerd on its containerd and waits until it
// answers.
func (h *Host) startDockerd(ctx context.Context) error {
	ctrSock := filepath.Join(h.Dir, "containerd.sock")
	bip := h.DockerPool.Addr().As4()
	bip[3] = 1
	var err error
	h.dockerd, err = h.startDaemon("dockerd",
		"--data-root", filepath.Join(h.Dir, "data"),
		"--exec-root", filepath.Join(h.Dir, "exec"),
		"-H", h.DockerHost,
		"--pidfile", filepath.Join(h.Dir, "dockerd.pid"),
		"--config-file", filepath.Join(h.Dir, "daemon.json"),
		"--containerd", ctrSock,
		"--storage-driver", "vfs",
		"--bip", fmt.Sprintf("%d.%d.%d.%d/24", bip[0], bip[1], bip[2], bip[3]),
		"--default-address-pool", fmt.Sprintf("base=%s,size=24", h.DockerPool),
		// Containers' cgroups under a parent of ours: teardown finds and
		// removes them by name, even when the engine is already gone.
		"--exec-opt", "native.cgroupdriver=cgroupfs",
		"--cgroup-parent", "/"+h.cgroup(),
		// iptables stays on (the default): Docker's firewall is part of what
		// a real host is.
	)
	if err != nil {
		return err
	}
	api := newEngineClient(h.sock())
	if err := waitFor(ctx, h.dockerd, func(ctx context.Context) error { return api.get(ctx, "/_ping", nil) }); err != nil {
		return fmt.Errorf("%s: dockerd: %w", h.Name, err)
	}
	return nil
}

func (h *Host) cgroup() string { return h.NS }

// dockerdMajor is the installed dockerd's major version (0 if unknown, which
// is treated as old: 20.10 is what Debian 12 ships).
var dockerdMajor = sync.OnceValue(func() int {
	out, err := exec.Command("dockerd", "--version").Output()
	if err != nil {
		return 0
	}
	// "Docker version 20.10.24+dfsg1, build 5d6db84"
	m := regexp.MustCompile(`version (\d+)\.`).FindSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
})

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (h *Host) startDaemon(name string, args ...string) (*daemon, error) {
	logPath := filepath.Join(h.Dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.Name, err)
	}
	defer logf.Close()
	// nsenter execs the daemon, so the child's pid is the daemon's.
	cmd := exec.Command("nsenter", append([]string{"--net=" + h.NSPath(), "--", name}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A process group of its own: Ctrl-C at `swlbed up` reaches swlbed only,
	// which then stops the daemons in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", h.Name, name, err)
	}
	d := &daemon{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.exited) }()
	return d, nil
}

// waitFor polls ready until it succeeds, the daemon exits or ctx ends.
func waitFor(ctx context.Context, d *daemon, ready func(context.Context) error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(rctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("exited (%v); last lines of %s:\n%s", d.cmd.ProcessState, d.log, tail(d.log, 10))
		case <-ctx.Done():
			return fmt.Errorf("not ready: %v (%v); last lines of %s:\n%s", ctx.Err(), last, d.log, tail(d.log, 10))
		case <-tick.C:
		}
	}
}

// RestartEngine restarts the host's dockerd, as an engine upgrade does: SIGTERM,
// wait for it to exit (SIGKILL after 30 s), start it again with the same
// configuration and wait until it answers. Its containerd keeps running. Without
// Options.LiveRestore dockerd stops the containers as it goes; with it they keep
// running. It returns how long the engine did not answer.
func (h *Host) RestartEngine(ctx context.Context) (time.Duration, error) {
	d := h.dockerd
	if d == nil {
		return 0, fmt.Errorf("%s: no dockerd running", h.Name)
	}
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, fmt.Errorf("%s: stop dockerd: %w", h.Name, err)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	h.log().Info("dockerd stopped", "host", h.Name, "took", time.Since(start).Round(time.Millisecond))
	if err := h.startDockerd(ctx); err != nil {
		return time.Since(start), err
	}
	away := time.Since(start)
	h.log().Info("dockerd restarted", "host", h.Name, "away", away.Round(time.Millisecond))
	return away, nil
}

func (h *Host) log() *slog.Logger { return h.bed.log }

// reap waits for our daemons' exit status (teardown has already stopped them).
func (h *Host) reap(max time.Duration) {
	deadline := time.After(max)
	for _, d := range []*daemon{h.dockerd, h.containerd} {
		if d == nil {
			continue
		}
		select {
		case <-d.exited:
		case <-deadline:
			return
		}
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// engineClient speaks the few calls of the Engine API the bed needs, on the
// engine's unix socket.
type engineClient struct{ c *http.Client }

func newEngineClient(sock string) *engineClient {
	return &engineClient{c: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}}
}

func (e *engineClient) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://engine"+path, nil)
	if err != nil {
		return err
	}
	resp, err := e.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (e *engineClient) get(ctx context.Context, path string, out any) error {
	return e.do(ctx, http.MethodGet, path, out)
}
