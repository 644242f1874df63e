package bed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// Host is one machine of the bed: a network namespace with one interface on
// the bridge, and its own dockerd.
type Host struct {
	Index      int
	Name       string     // h1, h2, ...
	NS         string     // network namespace, swlbed-ID-hN
	Port       string     // its veth on the switch side (hN)
	Addr       netip.Addr // on Subnet: 10.199.0.(10+i)
	Dir        string     // Root/ID/hN: the engine's data, exec root, sockets and logs
	DockerHost string     // unix://Dir/docker.sock
	// DockerPool is the engine's own range (docker0 and its networks), distinct
	// per host so that routes between hosts' containers can be told apart.
	DockerPool netip.Prefix

	bed        *Bed
	containerd *daemon
	dockerd    *daemon
}

func newHost(b *Bed, i int) *Host {
	dir := filepath.Join(b.Dir, fmt.Sprintf("h%d", i))
	return &Host{
		Index:      i,
		Name:       fmt.Sprintf("h%d", i),
		NS:         fmt.Sprintf("%s%s-h%d", Prefix, b.ID, i),
		Port:       fmt.Sprintf("h%d", i),
		Addr:       hostAddr(i),
		Dir:        dir,
		DockerHost: "unix://" + filepath.Join(dir, "docker.sock"),
		DockerPool: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(200 + i), 0, 0}), 16),
		bed:        b,
	}
}

// NSPath is the namespace's file, for nsenter --net= or setns.
func (h *Host) NSPath() string { return nsPath(h.NS) }

// Env is os.Environ with DOCKER_HOST pointing at this host's engine.
func (h *Host) Env() []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_HOST=") {
			env = append(env, kv)
		}
	}
	return append(env, "DOCKER_HOST="+h.DockerHost)
}

// Command runs name inside the host's network namespace with DOCKER_HOST set
// to its engine: a daemon started this way sees the host's network and engine
// only. It uses nsenter --net rather than `ip netns exec`, which remounts /sys
// and so hides the cgroup mounts dockerd and runc need.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + h.NSPath(), "--", name}, args...)...)
	cmd.Env = h.Env()
	return cmd
}

// Do runs fn on an OS thread inside the host's network namespace: sockets fn
// opens belong to the host. The thread goes back to the root namespace
// afterwards; if it cannot, it stays locked and the runtime ends it with the
// goroutine. (Leaving it in the host is no option: were it the main thread,
// which the runtime keeps, the whole process would count as in the host.)
func (h *Host) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("%s: own namespace: %w", h.Name, err)
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(h.NSPath())
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("%s: open namespace: %w", h.Name, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("%s: enter namespace: %w", h.Name, err)
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// DialContext opens a connection from inside the host. addr must be an IP
// address and port: name resolution would run on other threads, outside.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := h.Do(func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		conn = c
		return err
	})
	return conn, err
}

// HTTPClient makes requests from inside the host, one connection each (no
// pooling, so a cut is seen by the next request, not hidden by a kept-alive
// connection).
func (h *Host) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: h.DialContext, DisableKeepAlives: true},
	}
}

// Docker runs the docker CLI against this host's engine and returns its
// trimmed standard output.
func (h *Host) Docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"-H", h.DockerHost}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: docker %s: %v: %s", h.Name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(string(out)), nil
}

// LoadImage copies image from the machine's engine (the docker CLI's default,
// or the caller's DOCKER_HOST) into this host's: docker save | docker load.
// No registry is involved, so it also works where none is reachable.
func (h *Host) LoadImage(ctx context.Context, image string) error {
	save := exec.CommandContext(ctx, "docker", "save", image)
	load := exec.CommandContext(ctx, "docker", "-H", h.DockerHost, "load", "-q")
	var saveErr, loadErr bytes.Buffer
	save.Stderr, load.Stderr = &saveErr, &loadErr
	pipe, err := save.StdoutPipe()
	if err != nil {
		return err
	}
	load.Stdin = pipe
	if err := save.Start(); err != nil {
		return fmt.Errorf("docker save %s: %w", image, err)
	}
	lerr := load.Run()
	if lerr != nil {
		// Unblock save if load quit early.
		_, _ = io.Copy(io.Discard, pipe)
	}
	serr := save.Wait()
	if serr != nil {
		msg := strings.TrimSpace(saveErr.String())
		if strings.Contains(msg, "No such image") || strings.Contains(msg, "reference does not exist") {
			return fmt.Errorf("load %s into %s: the machine's engine has no such image (for swarmlet/whoami:test run `make image`)", image, h.Name)
		}
		return fmt.Errorf("load %s into %s: docker save: %v: %s", image, h.Name, serr, msg)
	}
	if lerr != nil {
		return fmt.Errorf("load %s into %s: docker load: %v: %s", image, h.Name, lerr, strings.TrimSpace(loadErr.String()))
	}
	return nil
}

// EngineID is the engine's own ID (docker info ID): distinct per host, since
// each engine has its own key file.
func (h *Host) EngineID(ctx context.Context) (string, error) {
	var info struct{ ID string }
	if err := newEngineClient(h.sock()).get(ctx, "/info", &info); err != nil {
		return "", fmt.Errorf("%s: %w", h.Name, err)
	}
	if info.ID == "" {
		return "", errors.New(h.Name + ": engine reports no ID")
	}
	return info.ID, nil
}

// Cut drops every frame to and from this host at the switch, silently, as a
// pulled cable far from the host would: its links stay up, peers time out.
func (h *Host) Cut() error { return h.bed.faults.set(func(f *faultSet) { f.hosts[h.Index] = true }) }

// Heal undoes Cut (a CutBetween involving this host stays).
func (h *Host) Heal() error { return h.bed.faults.set(func(f *faultSet) { delete(f.hosts, h.Index) }) }

func (h *Host) sock() string { return filepath.Join(h.Dir, "docker.sock") }
