package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/scenarios/bed"
)

// Images between hosts with an engine each (scenarios/bed): an image built on
// one host runs on all of them with no registry, fetched node to node and
// verified; and the numbers comparing that with a registry.

const bedFillerMB = 40 // "some tens of MB": the whoami binary plus this much

// ensureWhoami makes sure the machine's engine has the project's test image.
func ensureWhoami(t testing.TB) {
	t.Helper()
	if exec.Command("docker", "image", "inspect", "swarmlet/whoami:test").Run() == nil {
		return
	}
	if out, err := exec.Command("bash", filepath.Join("..", "whoami", "build.sh")).CombinedOutput(); err != nil {
		t.Fatalf("build the whoami image: %v\n%s", err, out)
	}
}

// buildOn runs `docker build -t tag` on host h: the whoami image plus a file of
// random bytes (so each build is an image no other host has), as an operator
// builds on a real machine. It returns the image ID.
func buildOn(t testing.TB, h *bed.Host, tag string, filler int64) string {
	t.Helper()
	ctx := context.Background()
	if _, err := h.Docker(ctx, "image", "inspect", "swarmlet/whoami:test"); err != nil {
		if err := h.LoadImage(ctx, "swarmlet/whoami:test"); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, filler); err != nil {
		t.Fatal(err)
	}
	f.Close()
	df := "FROM swarmlet/whoami:test\nCOPY filler /filler\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Docker(ctx, "build", "-q", "-t", tag, dir); err != nil {
		t.Fatal(err)
	}
	id, err := h.Docker(ctx, "image", "inspect", "-f", "{{.Id}}", tag)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// copyImage loads ref from one host's engine into another's (docker save | load).
func copyImage(t testing.TB, from, to *bed.Host, ref string) {
	t.Helper()
	save := exec.Command("docker", "-H", from.DockerHost, "save", ref)
	load := exec.Command("docker", "-H", to.DockerHost, "load", "-q")
	pipe, err := save.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	load.Stdin = pipe
	if err := save.Start(); err != nil {
		t.Fatal(err)
	}
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("load %s into %s: %v: %s", ref, to.Name, err, out)
	}
	if err := save.Wait(); err != nil {
		t.Fatalf("save %s on %s: %v", ref, from.Name, err)
	}
}

type imgBedTask struct {
	ID      string `json:"id"`
	Node    string `json:"node"`
	Current string `json:"current"`
	Desired string `json:"desired"`
}

func (bc *imgBed) tasks(svc string) []imgBedTask {
	bc.t.Helper()
	var ts []imgBedTask
	if err := json.Unmarshal([]byte(bc.mustCLI(1, "service", "ps", "--format", "json", svc)), &ts); err != nil {
		bc.t.Fatal(err)
	}
	return ts
}

// createTimed creates a service and waits for it to converge (the CLI's own
// wait), returning how long that took and what the CLI said.
func (bc *imgBed) createTimed(name string, replicas int, image string, more ...string) (time.Duration, string) {
	bc.t.Helper()
	args := append([]string{"service", "create", "--name", name, "--replicas", fmt.Sprint(replicas)}, more...)
	start := time.Now()
	out, errOut, err := bc.cli(1, append(args, image)...)
	took := time.Since(start)
	if err != nil {
		bc.t.Fatalf("create %s: %v\n%s%s", name, err, out, errOut)
	}
	return took, errOut
}

// remove removes a service and waits until no host runs a container of it.
func (bc *imgBed) remove(name string) {
	bc.t.Helper()
	bc.mustCLI(1, "service", "rm", name)
	waitFor(bc.t, 60*time.Second, name+"'s containers gone", func() bool {
		for _, h := range bc.b.Hosts {
			out, err := h.Docker(context.Background(), "ps", "-aq", "--filter", "label=swarmlet.service="+name)
			if err != nil || out != "" {
				return false
			}
		}
		return true
	})
}

// TestImagesBed: `docker build -t myapp:dev` on host 1 only, then a service of 3
// replicas runs on all three hosts: hosts 2 and 3 fetch the image from the
// nodes that hold it, verify it by digest and load it. Host 1 corrupts the first
// archive it serves (the test hook): that transfer is refused and retried.
func TestImagesBed(t *testing.T) {
	ensureWhoami(t)
	bc := newImgBed(t, 3)
	bc.up("SWARMLET_TEST_CORRUPT_IMAGE_UPLOADS=1")
	const tag = "swl-img-test/myapp:dev"
	id := buildOn(t, bc.host(1), tag, bedFillerMB<<20)
	for i := 2; i <= 3; i++ {
		if _, err := bc.host(i).Docker(context.Background(), "image", "inspect", id); err == nil {
			t.Fatalf("host %d has the image before the test", i)
		}
	}

	took, out := bc.createTimed("myapp", 3, tag)
	t.Logf("3 replicas running on 3 hosts %s after create; the image only on host 1; create said:\n%s", took.Round(time.Millisecond), out)
	if !strings.Contains(out, "Warning: "+tag+" is a local image, in no registry: pinned to image "+id[:19]) {
		t.Errorf("create did not say it pinned the local image")
	}
	nodes := map[string]bool{}
	for _, tk := range bc.tasks("myapp") {
		if tk.Current == "running" && tk.Desired == "running" {
			nodes[tk.Node] = true
		}
	}
	if len(nodes) != 3 {
		t.Fatalf("running on %d nodes, want 3", len(nodes))
	}
	for i := 1; i <= 3; i++ {
		h := bc.host(i)
		got, err := h.Docker(context.Background(), "image", "inspect", "-f", "{{.Id}} {{range .RepoTags}}{{.}}{{end}}", tag)
		if err != nil || got != id+" "+tag {
			t.Fatalf("host %d: image %q (%v), want %s tagged %s", i, got, err, id, tag)
		}
		ctr, err := h.Docker(context.Background(), "ps", "-q", "--filter", "label=swarmlet.service=myapp")
		if err != nil || ctr == "" {
			t.Fatalf("host %d runs no container of myapp: %v", i, err)
		}
	}
	logs := bc.log(2) + bc.log(3)
	if !strings.Contains(logs, "refused") || !strings.Contains(logs, "does not match its digests") {
		t.Errorf("no node refused the corrupted transfer")
	}
	if n := strings.Count(logs, "image fetched from another node"); n != 2 {
		t.Errorf("%d fetches logged, want 2 (one per host)", n)
	}
	if !strings.Contains(bc.log(1), "corrupting this image transfer") {
		t.Errorf("host 1 never corrupted an upload: the test proved nothing about refusal")
	}

	// Prune on host 2 keeps the image its task uses, then removes it once the
	// service is gone; host 1's build is never touched, it did not fetch it.
	bc.mustCLI(2, "image", "prune")
	if _, err := bc.host(2).Docker(context.Background(), "image", "inspect", id); err != nil {
		t.Fatal("prune removed an image in use")
	}
	bc.remove("myapp")
	for i := 1; i <= 3; i++ {
		bc.mustCLI(i, "image", "prune")
	}
	if _, err := bc.host(2).Docker(context.Background(), "image", "inspect", id); err == nil {
		t.Error("host 2 kept the fetched image after its service was removed")
	}
	if _, err := bc.host(1).Docker(context.Background(), "image", "inspect", id); err != nil {
		t.Error("prune removed host 1's own build")
	}
}

// BenchmarkImagesBed measures, on 3 hosts with an engine each, the time from
// `service create` to converged: 3 replicas whose image (the whoami binary plus
// 40 MB) no host has, pulled from a registry (on every host's loopback) or
// fetched node to node from the one host that built it; and 20 replicas when
// one host has the image and when all three have it. Each iteration uses a new
// image, so the hosts are fresh for it.
//
//	go test -run '^$' -bench ImagesBed -benchtime 3x ./cmd/swarmlet/
func BenchmarkImagesBed(b *testing.B) {
	ensureWhoami(b)
	bc := newImgBed(b, 3)
	bc.up()
	reg := startRegistry(b, regAddr, "", "")
	for _, h := range bc.b.Hosts {
		reg.listenIn(b, h)
	}
	n := 0
	next := func() string { n++; return fmt.Sprintf("swl-img-bench/app:v%d", n) }
	run := func(name string, replicas int, prepare func(tag string) string) {
		b.Run(name, func(b *testing.B) {
			bc.t = b
			for b.Loop() {
				b.StopTimer()
				svc := fmt.Sprintf("bench%d", n+1)
				ref := prepare(next())
				b.StartTimer()
				bc.createTimed(svc, replicas, ref)
				b.StopTimer()
				bc.remove(svc)
				b.StartTimer()
			}
		})
	}
	run("registry/3-fresh-hosts", 3, func(tag string) string {
		reg.push(b, tag, bedFillerMB<<20)
		return regAddr + "/" + tag
	})
	run("nodes/3-fresh-hosts", 3, func(tag string) string {
		buildOn(b, bc.host(1), tag, bedFillerMB<<20)
		return tag
	})
	run("nodes/20-replicas-one-host-has-it", 20, func(tag string) string {
		buildOn(b, bc.host(1), tag, bedFillerMB<<20)
		return tag
	})
	run("nodes/20-replicas-all-hosts-have-it", 20, func(tag string) string {
		buildOn(b, bc.host(1), tag, bedFillerMB<<20)
		copyImage(b, bc.host(1), bc.host(2), tag)
		copyImage(b, bc.host(1), bc.host(3), tag)
		return tag
	})
}
