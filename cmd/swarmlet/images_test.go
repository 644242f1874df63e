package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// cliEnv runs the CLI against node i with extra environment.
func (c *cluster) cliEnv(i int, env []string, args ...string) (string, string, error) {
	cmd := osexec.Command(swarmletBin, append([]string{"--host", c.sock(i)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (c *cluster) serviceInfo(t *testing.T, i int, name string) api.ServiceInfo {
	t.Helper()
	var svcs []api.ServiceInfo
	if err := json.Unmarshal([]byte(c.mustCLI(i, "service", "inspect", name)), &svcs); err != nil || len(svcs) != 1 {
		t.Fatalf("service inspect %s: %v", name, err)
	}
	return svcs[0]
}

// apiTasks is a service's tasks as the API has them (with their status).
func apiTasks(t *testing.T, cl *client.Client, svc string) []api.Task {
	t.Helper()
	ts, _, err := cl.Tasks(context.Background(), svc, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// runningImages maps each running task of svc to the image its container runs.
func runningImages(t *testing.T, cl *client.Client, svc string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tk := range apiTasks(t, cl, svc) {
		if tk.Status.State == api.TaskRunning && tk.DesiredState == api.TaskRunning {
			b, err := osexec.Command("docker", "inspect", "-f", "{{.Image}}", tk.Status.ContainerID).Output()
			if err != nil {
				t.Fatalf("inspect container of %s: %v", tk.ID, err)
			}
			out[tk.ID] = strings.TrimSpace(string(b))
		}
	}
	return out
}

func allAre(m map[string]string, n int, v string) bool {
	if len(m) != n {
		return false
	}
	for _, x := range m {
		if x != v {
			return false
		}
	}
	return true
}

const (
	regAddr  = "127.67.0.100:5000" // open registry
	privAddr = "127.67.0.100:5001" // password-protected
	regUser  = "swl-img-user"
	regPass  = "swl-img-s3cret-Pa55"
	fillerMB = 30
)

// TestImagesRegistry: two docker nodes (sharing the machine's engine) and a
// registry in the test. A service pulls its image, with progress, pinned to the
// digest; a missing tag is rejected in the registry's words; a registry that wants
// a password refuses without --with-registry-auth and serves with it, and the
// password appears in no log, inspect output or data dir file; a tag moved after
// create changes nothing until the service is re-pinned (the API side of
// update --force: `service update` is not on this branch's main); a registry
// hiccup is retried; prune removes only what swarmlet pulled and nothing in use.
func TestImagesRegistry(t *testing.T) {
	if _, err := os.Stat("/var/run/docker.sock"); err != nil {
		t.Skip("no Docker engine socket at /var/run/docker.sock")
	}
	if err := osexec.Command("docker", "image", "inspect", "swarmlet/whoami:test").Run(); err != nil {
		if out, err := osexec.Command("bash", filepath.Join("..", "whoami", "build.sh")).CombinedOutput(); err != nil {
			t.Fatalf("build the whoami image: %v\n%s", err, out)
		}
	}
	open := startRegistry(t, regAddr, "", "")
	priv := startRegistry(t, privAddr, regUser, regPass)
	t.Cleanup(func() {
		ids, _ := osexec.Command("docker", "ps", "-aq", "--filter", "label=swarmlet.service").Output()
		for _, id := range strings.Fields(string(ids)) {
			lbl, _ := osexec.Command("docker", "inspect", "-f", `{{index .Config.Labels "swarmlet.service"}}`, id).Output()
			if strings.HasPrefix(strings.TrimSpace(string(lbl)), "reg") {
				_ = osexec.Command("docker", "rm", "-f", id).Run()
			}
		}
		removeImagesOf(t, "127.67.0.100:")
	})
	removeImagesOf(t, "127.67.0.100:")
	const repo = regAddr + "/swl-img-test/whoami"
	d1, id1 := open.push(t, "swl-img-test/whoami:v1", fillerMB<<20)
	privRef := privAddr + "/swl-img-test/private:v1"
	priv.push(t, "swl-img-test/private:v1", 1<<20)

	c := newCluster(t, 67)
	c.extra = []string{"--engine", "docker", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", "--pool", poolFor(67)}
	c.start(1, "")
	c.cleanupDocker(t)
	c.start(2, strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker")))
	waitFor(t, 10*time.Second, "2 nodes", func() bool { ns, err := c.nodes(1); return err == nil && len(ns) == 2 })
	cl, err := client.New(c.sock(1), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var outputs []string // everything the CLI printed, checked for the password at the end

	t.Run("pull with progress, pinned", func(t *testing.T) {
		open.rate.Store(10 << 20) // 3 s for the filler layer: long enough to watch
		defer open.rate.Store(0)
		// service ps shows the progress too: watch it while create waits.
		psSaw := make(chan bool, 1)
		stop := make(chan struct{})
		go func() {
			saw := false
			for !saw {
				select {
				case <-stop:
					psSaw <- false
					return
				case <-time.After(100 * time.Millisecond):
				}
				ps, _, _ := c.cli(1, "service", "ps", "regweb")
				saw = strings.Contains(strings.ToLower(ps), "preparing") && strings.Contains(ps, "(pulling "+repo+":v1")
			}
			psSaw <- true
		}()
		start := time.Now()
		out, errOut, err := c.cli(1, "service", "create", "--name", "regweb", "--replicas", "2", "--restart-delay", "0s", repo+":v1")
		close(stop)
		if !<-psSaw {
			t.Errorf("service ps never showed the pull's progress")
		}
		outputs = append(outputs, out, errOut)
		if err != nil {
			t.Fatalf("create: %v\n%s", err, errOut)
		}
		t.Logf("2 tasks running from a %d MB image pulled from the registry in %s; progress:\n%s", fillerMB, time.Since(start).Round(time.Millisecond), errOut)
		if !strings.Contains(errOut, ": preparing: pulling "+repo+":v1 ("+d1[:19]+"): ") || !strings.Contains(errOut, "MB, 1/") {
			t.Errorf("no pull progress (bytes, layers) in the create output")
		}
		svc := c.serviceInfo(t, 1, "regweb")
		if svc.Spec.Image != repo+":v1" || svc.Spec.ImageDigest != d1 || svc.Spec.ImageID != id1 {
			t.Fatalf("inspect shows image %q digest %q id %q; want %s:v1, %s, %s", svc.Spec.Image, svc.Spec.ImageDigest, svc.Spec.ImageID, repo, d1, id1)
		}
		if imgs := runningImages(t, cl, "regweb"); !allAre(imgs, 2, id1) {
			t.Fatalf("containers run %v, want %s", imgs, id1)
		}
	})

	t.Run("missing tag rejected in the registry's words", func(t *testing.T) {
		out, errOut, err := c.cli(1, "service", "create", "--name", "regmiss", repo+":nope")
		outputs = append(outputs, out, errOut)
		if err == nil || !strings.Contains(errOut, "rejected") || !strings.Contains(errOut, "registry "+regAddr+" has no "+repo+":nope") ||
			!strings.Contains(errOut, "manifest unknown") {
			t.Fatalf("missing tag: %v\n%s", err, errOut)
		}
		if !strings.Contains(errOut, "Warning: registry "+regAddr+" has no such image") {
			t.Errorf("create did not warn that the image could not be pinned:\n%s", errOut)
		}
		t.Logf("create of a missing tag says:\n%s", errOut)
		c.mustCLI(1, "service", "rm", "regmiss")
	})

	t.Run("registry credentials", func(t *testing.T) {
		out, errOut, err := c.cli(1, "service", "create", "--name", "regpriv", privRef)
		outputs = append(outputs, out, errOut)
		if err == nil || !strings.Contains(errOut, "rejected") || !strings.Contains(errOut, "registry "+privAddr+" refused access") ||
			!strings.Contains(errOut, "--with-registry-auth") {
			t.Fatalf("without credentials: %v\n%s", err, errOut)
		}
		t.Logf("create without credentials says:\n%s", errOut)
		c.mustCLI(1, "service", "rm", "regpriv")
		waitFor(t, 20*time.Second, "regpriv gone", func() bool { _, _, err := c.cli(1, "service", "inspect", "regpriv"); return err != nil })
		env := []string{"DOCKER_CONFIG=" + dockerConfig(t, privAddr, regUser, regPass)}
		out, errOut, err = c.cliEnv(1, env, "service", "create", "--name", "regpriv", "--with-registry-auth", privRef)
		outputs = append(outputs, out, errOut)
		if err != nil {
			t.Fatalf("with credentials: %v\n%s", err, errOut)
		}
		if svc := c.serviceInfo(t, 1, "regpriv"); svc.Spec.ImageDigest == "" {
			t.Errorf("the manager did not pin with the credentials: %+v", svc.Spec)
		}
		for _, args := range [][]string{{"service", "inspect", "regpriv"}, {"service", "ps", "--format", "json", "regpriv"}, {"service", "ls", "--format", "json"}} {
			outputs = append(outputs, c.mustCLI(1, args...)) // a worker's socket serves its own node only
		}
		b, _ := json.Marshal(apiTasks(t, cl, "regpriv"))
		outputs = append(outputs, string(b))
	})

	t.Run("a moved tag changes nothing until re-pinned", func(t *testing.T) {
		d2, id2 := open.push(t, "swl-img-test/whoami:v1", 2<<20)
		if d2 == d1 {
			t.Fatal("the second push did not move the tag")
		}
		c.mustCLI(1, "service", "scale", "regweb=3")
		if imgs := runningImages(t, cl, "regweb"); !allAre(imgs, 3, id1) {
			t.Fatalf("after the tag moved, containers run %v, want all %s", imgs, id1)
		}
		svc, err := cl.Service(context.Background(), "regweb")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.UpdateServiceWith(context.Background(), "regweb", api.ServiceUpdateRequest{Version: svc.SpecVersion, Spec: svc.Spec},
			client.ImageOptions{Resolve: api.ResolveAlways}); err != nil {
			t.Fatal(err)
		}
		if svc := c.serviceInfo(t, 1, "regweb"); svc.Spec.ImageDigest != d2 || svc.Spec.ImageID != id2 {
			t.Fatalf("re-pinned to %s %s, want %s %s", svc.Spec.ImageDigest, svc.Spec.ImageID, d2, id2)
		}
		waitFor(t, 90*time.Second, "3 tasks on the new digest", func() bool { return allAre(runningImages(t, cl, "regweb"), 3, id2) })

		// Another change of the spec, not of the image, with the tag moved again:
		// update's default re-pins only a changed image, so the tasks roll on id2.
		open.push(t, "swl-img-test/whoami:v1", 1<<20)
		svc, err = cl.Service(context.Background(), "regweb")
		if err != nil {
			t.Fatal(err)
		}
		spec := svc.Spec
		spec.Env = append(spec.Env, "ROLL=1")
		if _, err := cl.UpdateServiceWith(context.Background(), "regweb", api.ServiceUpdateRequest{Version: svc.SpecVersion, Spec: spec}, client.ImageOptions{}); err != nil {
			t.Fatal(err)
		}
		if svc := c.serviceInfo(t, 1, "regweb"); svc.Spec.ImageDigest != d2 || svc.Spec.ImageID != id2 {
			t.Fatalf("an update that kept the image re-pinned it: %s %s", svc.Spec.ImageDigest, svc.Spec.ImageID)
		}
		waitFor(t, 90*time.Second, "3 tasks of the new spec on id2", func() bool {
			n := 0
			for _, tk := range apiTasks(t, cl, "regweb") {
				if tk.Status.State == api.TaskRunning && tk.DesiredState == api.TaskRunning && slices.Contains(tk.Spec.Env, "ROLL=1") && tk.Status.ImageID == id2 {
					n++
				}
			}
			return n == 3
		})
	})

	t.Run("a registry hiccup is retried", func(t *testing.T) {
		_, id3 := open.push(t, "swl-img-test/whoami:hiccup", 1<<20)
		open.faults.Store(2)
		out, errOut, err := c.cli(1, "service", "create", "--name", "reghiccup", repo+":hiccup")
		outputs = append(outputs, out, errOut)
		if err != nil {
			t.Fatalf("create: %v\n%s", err, errOut)
		}
		if imgs := runningImages(t, cl, "reghiccup"); !allAre(imgs, 1, id3) {
			t.Fatalf("containers run %v", imgs)
		}
		if !strings.Contains(c.log(1)+c.log(2), "pull failed, retrying") {
			t.Fatal("no retry in the daemons' logs")
		}
	})

	t.Run("prune", func(t *testing.T) {
		for i := 1; i <= 2; i++ {
			c.mustCLI(i, "image", "prune")
		}
		if err := osexec.Command("docker", "image", "inspect", id1).Run(); err == nil {
			t.Errorf("the image of the old digest, used by no task, was kept")
		}
		for _, id := range runningImages(t, cl, "regweb") {
			if err := osexec.Command("docker", "image", "inspect", id).Run(); err != nil {
				t.Fatalf("pruned %s, which a running task uses", id)
			}
		}
		c.mustCLI(1, "service", "rm", "regweb", "regpriv", "reghiccup")
		waitFor(t, 30*time.Second, "containers gone", func() bool {
			out, _ := osexec.Command("docker", "ps", "-aq", "--filter", "label=swarmlet.service=regweb").Output()
			return strings.TrimSpace(string(out)) == ""
		})
		var removed int
		for i := 1; i <= 2; i++ {
			var rep api.ImagePruneReport
			pc, _ := client.New(c.sock(i), client.Options{})
			rep, err := pc.PruneImages(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			removed += len(rep.Removed)
		}
		if removed == 0 {
			t.Error("nothing pruned after the services were removed")
		}
		if err := osexec.Command("docker", "image", "inspect", "swarmlet/whoami:test").Run(); err != nil {
			t.Fatal("prune removed an image swarmlet did not bring in")
		}
	})

	// The password, and the docker config's form of it, in no output, log or file.
	secrets := []string{regPass, b64(regUser + ":" + regPass)}
	for _, s := range secrets {
		for _, o := range outputs {
			if strings.Contains(o, s) {
				t.Fatalf("credentials in CLI output: %q", o)
			}
		}
		for i := 1; i <= 2; i++ {
			if strings.Contains(c.log(i), s) {
				t.Fatalf("credentials in node %d's log", i)
			}
		}
	}
	err = filepath.WalkDir(c.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&fs.ModeSocket != 0 {
			return nil
		}
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			return nil
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("credentials in plaintext in %s", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
