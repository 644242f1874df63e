package bed

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const testImage = "swarmlet/whoami:test"

// requireBed skips without root or an engine to run, and fails when the
// network tools are missing (CI installs them).
func requireBed(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, veths and a dockerd per host")
	}
	for _, tool := range []string{"dockerd", "containerd", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs dockerd (with containerd) and nsenter: %s not in PATH", tool)
		}
	}
	if err := Check(); err != nil {
		t.Fatal(err)
	}
}

// ensureImage builds the project's test image if the machine's engine lacks it.
func ensureImage(t *testing.T) {
	t.Helper()
	if exec.Command("docker", "image", "inspect", testImage).Run() == nil {
		return
	}
	if out, err := exec.Command("bash", filepath.Join("..", "..", "cmd", "whoami", "build.sh")).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", testImage, err, out)
	}
}

func testLog(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

func newTestBed(t *testing.T, hosts int) *Bed {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	b, err := New(ctx, Options{Hosts: hosts, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		if left := Leftovers(b.ID); len(left) > 0 {
			t.Errorf("bed %s left behind:\n%s", b.ID, strings.Join(left, "\n"))
		}
	})
	return b
}

// fetch GETs url from inside host h.
func fetch(h *Host, url string, timeout time.Duration) (string, error) {
	resp, err := h.HTTPClient(timeout).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(body), nil
}

// waitFetch retries fetch until it answers or max passes; it returns how long that took.
func waitFetch(t *testing.T, h *Host, url string, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		body, err := fetch(h, url, time.Second)
		if err == nil && strings.Contains(body, "host=") {
			return time.Since(start)
		}
		if time.Since(start) > max {
			t.Fatalf("%s from %s: no answer within %s: %v %q", url, h.Name, max, err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBed: two hosts with an engine each; an image loaded into one; its
// container's published port reached from the other host across the bridge,
// through Docker's firewall; cut and healed; and nothing left after teardown.
func TestBed(t *testing.T) {
	requireBed(t)
	ensureImage(t)
	ctx := t.Context()

	start := time.Now()
	b := newTestBed(t, 2)
	t.Logf("2 hosts up in %s", time.Since(start).Round(time.Millisecond))
	h1, h2 := b.Host(1), b.Host(2)

	machineID, err := exec.Command("docker", "info", "--format", "{{.ID}}").Output()
	if err != nil {
		t.Fatalf("docker info on the machine's engine: %v", err)
	}
	ids := map[string]string{strings.TrimSpace(string(machineID)): "the machine"}
	for _, h := range b.Hosts {
		id, err := h.EngineID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := ids[id]; dup {
			t.Fatalf("%s's engine has the ID of %s's: %s", h.Name, other, id)
		}
		ids[id] = h.Name
	}

	start = time.Now()
	if err := h1.LoadImage(ctx, testImage); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s loaded into %s in %s", testImage, h1.Name, time.Since(start).Round(time.Millisecond))
	if _, err := h2.Docker(ctx, "image", "inspect", testImage); err == nil {
		t.Fatalf("%s has the image loaded into %s only: the engines share a store", h2.Name, h1.Name)
	}
	if _, err := h1.Docker(ctx, "run", "-d", "--name", "web", "-p", "8080:80", testImage); err != nil {
		t.Fatal(err)
	}
	// Docker's firewall is on, as on a fresh machine: forwarding was off
	// when dockerd started, so it set the FORWARD policy to DROP.
	out, err := h1.Command(ctx, "iptables", "-S", "FORWARD").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-P FORWARD DROP") {
		t.Fatalf("%s: Docker's FORWARD policy is not DROP: %v\n%s", h1.Name, err, out)
	}

	url := fmt.Sprintf("http://%s:8080/", h1.Addr)
	t.Logf("%s answers %s after %s", url, h2.Name, waitFetch(t, h2, url, 15*time.Second).Round(time.Millisecond))

	cuts := []struct {
		name      string
		cut, heal func() error
	}{
		{"host 1 off the bridge", h1.Cut, h1.Heal},
		{"link 1-2", func() error { return b.CutBetween(h1, h2) }, b.HealAll},
	}
	for _, c := range cuts {
		if err := c.cut(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if body, err := fetch(h2, url, time.Second); err == nil {
			t.Fatalf("cut %s: %s still answers: %q", c.name, url, body)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("cut %s: the failed request took %s (bound 3 s)", c.name, took)
		}
		if err := c.heal(); err != nil {
			t.Fatal(err)
		}
		t.Logf("healed %s: answers again after %s", c.name, waitFetch(t, h2, url, 5*time.Second).Round(time.Millisecond))
	}

	socks := shimSockets(filepath.Join(h1.Dir, "exec", "containerd"))
	if len(socks) == 0 {
		t.Fatal("no shim socket recorded for the running container")
	}
	start = time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("torn down in %s", time.Since(start).Round(time.Millisecond))
	if left := Leftovers(b.ID); len(left) > 0 {
		t.Fatalf("left behind:\n%s", strings.Join(left, "\n"))
	}
	for _, s := range socks {
		if _, err := os.Lstat(s); err == nil {
			t.Errorf("shim socket %s left behind", s)
		}
	}
	for _, h := range b.Hosts {
		for _, d := range []*daemon{h.dockerd, h.containerd} {
			select {
			case <-d.exited:
			default:
				t.Errorf("%s: %s (pid %d) still running", h.Name, d.name, d.cmd.Process.Pid)
			}
		}
	}
}

// TestBedStartFails: a bring-up that fails (here: engines not ready before
// the deadline) removes what it made.
func TestBedStartFails(t *testing.T) {
	requireBed(t)
	_, err := New(t.Context(), Options{Hosts: 2, StartTimeout: time.Millisecond, Log: testLog(t)})
	if err == nil {
		t.Fatal("a bed came up within 1 ms: the deadline was not applied")
	}
	t.Log(err)
	m := regexp.MustCompile(`^bed ([0-9a-f]{6}): `).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("the error does not name the bed: %v", err)
	}
	if !strings.Contains(err.Error(), "not ready") {
		t.Fatalf("the error does not say the engine was not ready: %v", err)
	}
	if left := Leftovers(m[1]); len(left) > 0 {
		t.Fatalf("a failed bring-up left behind:\n%s", strings.Join(left, "\n"))
	}
}

// TestSweepAfterKill: a bed whose owner was killed with -9 is removed by Sweep,
// with its engine still running (it removes its containers), or with the
// engine killed too (the shim and the container are still running; they go by
// the container's cgroup, the mounts by mountinfo).
func TestSweepAfterKill(t *testing.T) {
	requireBed(t)
	ensureImage(t)
	for _, tc := range []struct {
		name string
		kill []string // killed with the owner
	}{
		{"owner", nil},
		{"owner and engine", []string{"dockerd", "containerd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := killedBed(t)
			ns := Prefix + id + "-h1"
			var pids []int
			for _, pid := range pidsInNetns(nsInode(ns)) {
				if slices.Contains(tc.kill, comm(pid)) {
					pids = append(pids, pid)
				}
			}
			if len(pids) != len(tc.kill) {
				t.Fatalf("found %v running of %v", pids, tc.kill)
			}
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if left := waitGone(pids, 5*time.Second); len(left) > 0 {
				t.Fatalf("%v survive SIGKILL", left)
			}
			left := Leftovers(id)
			t.Logf("left by the dead:\n%s", strings.Join(left, "\n"))
			if len(left) == 0 {
				t.Fatal("nothing of the killed owner's bed is left: the test proves nothing")
			}
			socks := shimSockets(filepath.Join(Root, id, "h1", "exec", "containerd"))
			if len(socks) == 0 {
				t.Fatal("no shim socket recorded for the running container")
			}

			start := time.Now()
			swept, err := Sweep(testLog(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("swept %v in %s", swept, time.Since(start).Round(time.Millisecond))
			if left := Leftovers(id); len(left) > 0 {
				t.Fatalf("left behind after Sweep:\n%s", strings.Join(left, "\n"))
			}
			for _, s := range socks {
				if _, err := os.Lstat(s); err == nil {
					t.Errorf("shim socket %s left behind", s)
				}
			}
		})
	}
}

// killedBed starts TestBedHelperProcess, waits for its bed and kills it with -9.
func killedBed(t *testing.T) string {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^TestBedHelperProcess$", "-test.count=1")
	child.Env = append(os.Environ(), "SWLBED_HELPER=1")
	child.Stderr = t.Output()
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = child.Process.Kill()
		_ = child.Wait()
		if _, err := Sweep(testLog(t)); err != nil {
			t.Error(err)
		}
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- id
			}
		}
		close(ready)
	}()
	var id string
	select {
	case id = <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("the helper's bed is not up after 60 s")
	}
	if id == "" {
		t.Fatal("the helper exited before its bed was up")
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	return id
}

// TestBedHelperProcess is the owner TestSweepAfterKill kills: it brings up one
// host running a container, says READY and waits to be killed.
func TestBedHelperProcess(t *testing.T) {
	if os.Getenv("SWLBED_HELPER") != "1" {
		t.Skip("runs only as TestSweepAfterKill's child")
	}
	ctx := context.Background()
	b, err := New(ctx, Options{Hosts: 1, Label: "TestSweepAfterKill"})
	if err != nil {
		t.Fatal(err)
	}
	h := b.Host(1)
	if err := h.LoadImage(ctx, testImage); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Docker(ctx, "run", "-d", "-p", "8080:80", testImage); err != nil {
		t.Fatal(err)
	}
	fmt.Println("READY " + b.ID)
	time.Sleep(10 * time.Minute) // until killed
}
