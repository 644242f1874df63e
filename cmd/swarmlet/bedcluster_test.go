package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/scenarios/bed"
)

// imgBed runs one swarmlet daemon on each host of a bed (scenarios/bed):
// every node has a dockerd of its own, as on real machines. The CLI talks to a
// node through its unix socket, which is a file and so reachable from here.
type imgBed struct {
	t     testing.TB
	b     *bed.Bed
	dir   string
	mu    sync.Mutex
	procs map[int]*exec.Cmd
	logs  map[int]*lockedWriter
}

// requireBedTB skips without what a bed needs (root, dockerd, containerd, nsenter).
func requireBedTB(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the bed's network namespaces and a dockerd per host")
	}
	for _, tool := range []string{"dockerd", "containerd", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs dockerd (with containerd) and nsenter: %s not in PATH", tool)
		}
	}
	if err := bed.Check(); err != nil {
		t.Fatal(err)
	}
}

func newImgBed(t testing.TB, hosts int) *imgBed {
	t.Helper()
	return newBedClusterWith(t, bed.Options{Hosts: hosts, Label: "swarmlet-images-test"})
}

func newBedClusterWith(t testing.TB, opts bed.Options) *imgBed {
	t.Helper()
	requireBedTB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts.Log = slog.New(slog.DiscardHandler)
	b, err := bed.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		if left := bed.Leftovers(b.ID); len(left) > 0 {
			t.Errorf("bed %s left behind:\n%s", b.ID, strings.Join(left, "\n"))
		}
	})
	bc := &imgBed{t: t, b: b, dir: t.TempDir(), procs: map[int]*exec.Cmd{}, logs: map[int]*lockedWriter{}}
	t.Cleanup(bc.stopAll) // before the bed goes (cleanups run last first)
	return bc
}

func (bc *imgBed) host(i int) *bed.Host { return bc.b.Host(i) }
func (bc *imgBed) dataDir(i int) string { return filepath.Join(bc.dir, fmt.Sprintf("n%d", i)) }
func (bc *imgBed) sock(i int) string {
	return "unix://" + filepath.Join(bc.dataDir(i), "swarmlet.sock")
}

// start runs node i's daemon inside host i (init when token is "", else join
// node 1), with extra environment, and waits until its API answers.
func (bc *imgBed) start(i int, token string, env ...string) {
	bc.t.Helper()
	h := bc.host(i)
	args := []string{"init"}
	if token != "" {
		args = []string{"join", "--token", token}
	}
	args = append(args, "--advertise-addr", h.Addr.String(), "--data-dir", bc.dataDir(i), "--hostname", h.Name,
		"--engine", "docker", "--lb", "userspace", "--dns-port", "0")
	if token != "" {
		args = append(args, bc.host(1).Addr.String())
	}
	cmd := h.Command(context.Background(), swarmletBin, args...)
	cmd.Env = append(cmd.Env, env...)
	buf := &lockedWriter{w: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		bc.t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	bc.mu.Lock()
	bc.procs[i], bc.logs[i] = cmd, buf
	bc.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, err := bc.cli(i, "info"); err == nil {
			return
		}
		select {
		case err := <-exited:
			bc.t.Fatalf("node %d exited: %v\n%s", i, err, bc.log(i))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			bc.t.Fatalf("node %d did not come up\n%s", i, bc.log(i))
		}
	}
}

// up starts a cluster of all the bed's hosts: node 1 a manager, the rest workers.
func (bc *imgBed) up(env1 ...string) {
	bc.t.Helper()
	bc.start(1, "", env1...)
	tok := strings.TrimSpace(bc.mustCLI(1, "join-token", "-q", "worker"))
	for i := 2; i <= len(bc.b.Hosts); i++ {
		bc.start(i, tok)
	}
	waitFor(bc.t, 30*time.Second, "every node ready", func() bool {
		out, _, err := bc.cli(1, "node", "ls", "-q")
		return err == nil && len(strings.Fields(out)) == len(bc.b.Hosts)
	})
}

func (bc *imgBed) log(i int) string {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if l := bc.logs[i]; l != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.w.String()
	}
	return ""
}

func (bc *imgBed) cli(i int, args ...string) (string, string, error) {
	cmd := exec.Command(swarmletBin, append([]string{"--host", bc.sock(i)}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (bc *imgBed) mustCLI(i int, args ...string) string {
	bc.t.Helper()
	out, errOut, err := bc.cli(i, args...)
	if err != nil {
		bc.t.Fatalf("swarmlet %s on node %d: %v: %s", strings.Join(args, " "), i, err, errOut)
	}
	return out
}

// stopAll stops the daemons (their containers go with the bed).
func (bc *imgBed) stopAll() {
	bc.mu.Lock()
	procs := bc.procs
	bc.procs = map[int]*exec.Cmd{}
	bc.mu.Unlock()
	for _, p := range procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		for i := 0; i < 100 && syscall.Kill(p.Process.Pid, 0) == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		_ = p.Process.Kill()
	}
	if bc.t.Failed() {
		for i := range bc.logs {
			bc.t.Logf("--- node %d log (tail)\n%s", i, tail(bc.log(i), 60))
		}
	}
}
