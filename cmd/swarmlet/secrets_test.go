package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// The secrets tests drive secrets and configs through the binary: a value
// reaches a task as a file with its mode, owner and content, and nowhere else
// (inspect, events, logs, the API, the data dirs on disk, a node with no task
// using it); rm is refused while a service uses it; secret update rolls the
// users and the new task sees the new value; bad input changes nothing. They
// use 127.82.x.x (process engine) and 127.83.x.x (docker engine).

// unmountUnder detaches every mount below dir (a tmpfs of task files a killed
// daemon left), deepest first, so the test's temporary directory can go.
func unmountUnder(dir string) {
	for _, m := range slices.Backward(mountsUnder(dir)) {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
}

// mountsUnder lists the mount points below dir, in /proc/self/mountinfo order.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	return out
}

// isTmpfs reports whether path lies on an in-memory filesystem.
func isTmpfs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

// grepDisk lists the files under root, on root's own filesystem (not a tmpfs
// mounted below it), holding any of needles.
func grepDisk(t *testing.T, root string, needles ...[]byte) []string {
	t.Helper()
	var rootSt unix.Stat_t
	if err := unix.Stat(root, &rootSt); err != nil {
		t.Fatal(err)
	}
	var hits []string
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(path, &st) != nil || st.Dev != rootSt.Dev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		for _, n := range needles {
			if err == nil && bytes.Contains(b, n) {
				hits = append(hits, path)
				break
			}
		}
		return nil
	})
	return hits
}

// killTasksWith ends the process-engine tasks (they outlive their daemon) whose
// environment holds marker.
func killTasksWith(marker string) {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil || !slices.Contains(strings.Split(string(env), "\x00"), marker) {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "%d", &pid); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func randomValue(t *testing.T, prefix string) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// leaks says where a value shows up that it must not: the needles are the value
// and its base64 (the shape a []byte takes in JSON).
func needles(v string) [][]byte {
	return [][]byte{[]byte(v), []byte(base64.StdEncoding.EncodeToString([]byte(v)))}
}

func containsAny(s string, ns [][]byte) bool {
	return slices.ContainsFunc(ns, func(n []byte) bool { return strings.Contains(s, string(n)) })
}

// sessionOf is node i's own session answer, fetched from node j's API with node
// i's certificate, as its worker fetches it.
func (c *cluster) sessionOf(t *testing.T, i, j int) api.Assignments {
	t.Helper()
	cert := c.nodeCert(i)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: showing(&cert)}}
	resp, err := hc.Get("https://" + net.JoinHostPort(c.ip(j), "24240") + "/v1/dispatcher/assignments")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var as api.Assignments
	if err := json.NewDecoder(resp.Body).Decode(&as); err != nil || resp.StatusCode != 200 {
		t.Fatalf("session of node %d: %d %v", i, resp.StatusCode, err)
	}
	return as
}

type refTaskJSON struct {
	taskJSON
	Secrets []string `json:"secrets"`
	Configs []string `json:"configs"`
}

func (c *cluster) refTasks(t *testing.T, i int, svc string) []refTaskJSON {
	t.Helper()
	var ts []refTaskJSON
	if err := json.Unmarshal([]byte(c.mustCLI(i, "service", "ps", "--all", "--format", "json", svc)), &ts); err != nil {
		t.Fatal(err)
	}
	return ts
}

func runningRef(ts []refTaskJSON) []refTaskJSON {
	var out []refTaskJSON
	for _, x := range ts {
		if x.Current == "running" && x.Desired == "running" {
			out = append(out, x)
		}
	}
	return out
}

// unchanged runs a command that must fail with one clear line naming want, and
// checks the stored secrets, configs and services did not change.
func (c *cluster) refusedUnchanged(t *testing.T, want string, args ...string) {
	t.Helper()
	before := c.mustCLI(1, "secret", "ls", "-q") + c.mustCLI(1, "config", "ls", "-q") + c.mustCLI(1, "service", "ls", "--format", "{{.Name}} {{.Image}}")
	c.expectError(t, 1, want, args...)
	after := c.mustCLI(1, "secret", "ls", "-q") + c.mustCLI(1, "config", "ls", "-q") + c.mustCLI(1, "service", "ls", "--format", "{{.Name}} {{.Image}}")
	if before != after {
		t.Fatalf("swarmlet %s was refused but changed the cluster:\n%s\n->\n%s", strings.Join(args, " "), before, after)
	}
}

// TestSecretsProcessEngine: 3 nodes, the process engine. A task on node 2 finds
// its secret and config under the directories its environment names, with the
// asked-for owner and mode, on a tmpfs; node 3, with no task using them, is never
// handed them; the value is in no answer, event, log or file on disk; rm is
// refused while in use; secret update rolls the service and the new task reads
// the new value; the files go with the task and the tmpfs on leave.
func TestSecretsProcessEngine(t *testing.T) {
	marker := "SECRETS_TEST=" + t.Name() + "-" + randomValue(t, "")
	t.Cleanup(func() { killTasksWith(marker) }) // after the daemons are gone
	c := newCluster(t, 82)
	c.start(1, "")
	tok := strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker"))
	c.start(2, tok)
	c.start(3, tok)
	waitFor(t, 10*time.Second, "3 nodes", func() bool { ns, err := c.nodes(1); return err == nil && len(ns) == 3 })
	ids := c.nodeIDs(t, 1)

	v1, v2 := randomValue(t, "s3cret-v1-"), randomValue(t, "s3cret-v2-")
	f1, f2 := writeTemp(t, "v1", []byte(v1)), writeTemp(t, "v2", []byte(v2))

	t.Run("bad input changes nothing", func(t *testing.T) {
		big := writeTemp(t, "big", make([]byte, api.MaxSecretSize+1))
		c.refusedUnchanged(t, "larger than 512000 bytes", "secret", "create", "big", big)
		c.refusedUnchanged(t, "invalid secret name", "secret", "create", "db@1", f1)
		c.refusedUnchanged(t, "secret data is empty", "secret", "create", "empty", writeTemp(t, "empty", nil))
		c.refusedUnchanged(t, "no such file", "secret", "create", "db", filepath.Join(t.TempDir(), "nope"))
		c.refusedUnchanged(t, `secret "nope" not found: create it first`, "service", "create", "--name", "secweb", "--detach", "--secret", "nope", "/bin/true")
		c.refusedUnchanged(t, `config "nope" not found`, "service", "create", "--name", "secweb", "--detach", "--config", "nope", "/bin/true")
		c.refusedUnchanged(t, "invalid mode 01777", "service", "create", "--name", "secweb", "--detach", "--secret", "source=nope,mode=1777", "/bin/true")
		c.refusedUnchanged(t, `mode "rw" is not an octal number`, "service", "create", "--name", "secweb", "--detach", "--secret", "source=nope,mode=rw", "/bin/true")
		c.refusedUnchanged(t, "invalid uid", "service", "create", "--name", "secweb", "--detach", "--secret", "source=nope,uid=root", "/bin/true")
		c.refusedUnchanged(t, `secret "nope": not found`, "secret", "rm", "nope")
		c.refusedUnchanged(t, `secret "nope": not found`, "secret", "update", "nope", f1)
		// The API checks what the CLI checks, for any other client.
		cl, err := client.New(c.sock(1), client.Options{Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		for _, req := range []api.SecretCreateRequest{{Name: "big", Data: make([]byte, api.MaxSecretSize+1)}, {Name: "a/b", Data: []byte("x")}, {Name: "e"}} {
			if _, err := cl.CreateSecret(context.Background(), api.KindSecret, req); !errors.Is(err, api.ErrInvalid) {
				t.Fatalf("API took secret %q of %d bytes: %v", req.Name, len(req.Data), err)
			}
		}
		if out := c.mustCLI(1, "secret", "ls", "-q"); out != "" {
			t.Fatalf("secrets after refusals: %q", out)
		}
	})

	c.mustCLI(1, "secret", "create", "--label", "team=a", "db", f1)
	cmd := osexec.Command(swarmletBin, "--host", c.sock(1), "config", "create", "app.conf", "-")
	cmd.Stdin = strings.NewReader("listen 80\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("config create from stdin: %v: %s", err, out)
	}
	var cfgs []api.Secret
	if err := json.Unmarshal([]byte(c.mustCLI(1, "config", "inspect", "app.conf")), &cfgs); err != nil || len(cfgs) != 1 || string(cfgs[0].Data) != "listen 80\n" {
		t.Fatalf("config inspect: %+v %v", cfgs, err)
	}

	// The task prints what it sees (mode, owner, a digest of the secret, the
	// config), then sleeps.
	script := `s="$SWARMLET_SECRETS_DIR/db"; stat -c 'mode=%a owner=%u:%g' "$s"; echo "sha=$(sha256sum < "$s" | cut -d' ' -f1)"; ` +
		`echo "config=$(cat "$SWARMLET_CONFIGS_DIR/etc/app.conf")"; echo "dirs=$SWARMLET_SECRETS_DIR $SWARMLET_CONFIGS_DIR"; exec sleep 100000`
	c.mustCLI(1, "service", "create", "--name", "secweb", "--env", marker, "--constraint", "node.hostname==node2", "--update-monitor", "1s",
		"--secret", "source=db,uid=1000,gid=1001,mode=0400", "--config", "source=app.conf,target=/etc/app.conf", "/bin/sh", "-c", script)
	sha := func(v string) string { s := sha256.Sum256([]byte(v)); return hex.EncodeToString(s[:]) }
	taskSays := func(what string) func() bool {
		return func() bool {
			out, _, err := c.cli(1, "service", "logs", "secweb")
			return err == nil && strings.Contains(out, what)
		}
	}
	waitFor(t, 20*time.Second, "the task's report", taskSays("sha="+sha(v1)))
	logs := c.mustCLI(1, "service", "logs", "secweb")
	if !strings.Contains(logs, "mode=400 owner=1000:1001") || !strings.Contains(logs, "config=listen 80") {
		t.Fatalf("the task saw:\n%s", logs)
	}
	run := runningRef(c.refTasks(t, 1, "secweb"))
	if len(run) != 1 || run[0].Node != ids[2] || !slices.Equal(run[0].Secrets, []string{"db@1"}) || !slices.Equal(run[0].Configs, []string{"app.conf@1"}) {
		t.Fatalf("running: %+v", run)
	}
	first := run[0].ID
	filesRoot := filepath.Join(c.dataDir(2), "taskfiles")
	secretFile := filepath.Join(filesRoot, first, "secrets", "db")
	if b, err := os.ReadFile(secretFile); err != nil || string(b) != v1 || !isTmpfs(secretFile) {
		t.Fatalf("node 2's file %s: %q %v, on tmpfs %v", secretFile, b, err, isTmpfs(secretFile))
	}
	if !strings.Contains(logs, "dirs="+filepath.Join(filesRoot, first, "secrets")+" "+filepath.Join(filesRoot, first, "configs")) {
		t.Fatalf("the task's directories:\n%s", logs)
	}

	t.Run("only the node that runs it is handed it", func(t *testing.T) {
		if as := c.sessionOf(t, 2, 1); len(as.Secrets) != 1 || string(as.Secrets[0].Data) != v1 || len(as.Configs) != 1 {
			t.Fatalf("node 2's session: secrets %d, configs %d", len(as.Secrets), len(as.Configs))
		}
		if as := c.sessionOf(t, 3, 1); len(as.Secrets)+len(as.Configs) != 0 {
			t.Fatalf("node 3 runs no task using them but was handed %d secrets, %d configs", len(as.Secrets), len(as.Configs))
		}
		for _, i := range []int{1, 3} {
			if _, err := os.Stat(filepath.Join(c.dataDir(i), "taskfiles")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("node %d has task files: %v", i, err)
			}
		}
	})

	t.Run("rm refused while in use", func(t *testing.T) {
		c.refusedUnchanged(t, `secret "db" is in use by service secweb`, "secret", "rm", "db")
		c.refusedUnchanged(t, `config "app.conf" is in use by service secweb`, "config", "rm", "app.conf")
		c.refusedUnchanged(t, `secret "nope" not found`, "service", "update", "--detach", "--secret-add", "nope", "secweb")
		c.refusedUnchanged(t, "the service has no secret of that name", "service", "update", "--detach", "--secret-rm", "nope", "secweb")
	})

	t.Run("secret update rolls the service", func(t *testing.T) {
		out := c.mustCLI(1, "secret", "update", "db", f2)
		if !strings.Contains(out, "version 2") || !strings.Contains(out, "rolling out to secweb") {
			t.Fatalf("update said %q", out)
		}
		waitFor(t, 20*time.Second, "the new task's report", taskSays("sha="+sha(v2)))
		ts := c.refTasks(t, 1, "secweb")
		run := runningRef(ts)
		if len(run) != 1 || run[0].ID == first || !slices.Equal(run[0].Secrets, []string{"db@2"}) {
			t.Fatalf("after the update: %+v", ts)
		}
		i := slices.IndexFunc(ts, func(x refTaskJSON) bool { return x.ID == first })
		if i < 0 || ts[i].Desired != "shutdown" || !slices.Equal(ts[i].Secrets, []string{"db@1"}) {
			t.Fatalf("the old task: %+v", ts)
		}
		var sec []api.Secret
		if err := json.Unmarshal([]byte(c.mustCLI(1, "secret", "inspect", "db")), &sec); err != nil || sec[0].Version != 2 || !slices.Equal(sec[0].UsedBy, []string{"secweb"}) {
			t.Fatalf("secret inspect: %+v %v", sec, err)
		}
		waitFor(t, 10*time.Second, "the old task's files removed", func() bool {
			_, err := os.Stat(filepath.Join(filesRoot, first))
			return errors.Is(err, os.ErrNotExist)
		})
		if b, err := os.ReadFile(filepath.Join(filesRoot, run[0].ID, "secrets", "db")); err != nil || string(b) != v2 {
			t.Fatalf("new task's file: %q %v", b, err)
		}
	})

	t.Run("rollback returns to the old value", func(t *testing.T) {
		c.mustCLI(1, "service", "rollback", "secweb")
		run := runningRef(c.refTasks(t, 1, "secweb"))
		if len(run) != 1 || !slices.Equal(run[0].Secrets, []string{"db@1"}) {
			t.Fatalf("after the rollback: %+v", run)
		}
		if b, err := os.ReadFile(filepath.Join(filesRoot, run[0].ID, "secrets", "db")); err != nil || string(b) != v1 {
			t.Fatalf("rolled-back task's file: %q %v", b, err)
		}
	})

	t.Run("the value is nowhere else", func(t *testing.T) {
		ns := append(needles(v1), needles(v2)...)
		for _, args := range [][]string{
			{"secret", "inspect", "db"}, {"secret", "ls", "--format", "json"}, {"service", "inspect", "secweb"},
			{"service", "ps", "--all", "--format", "json", "secweb"}, {"events", "--since", "0", "--no-follow", "--format", "json"},
			{"service", "logs", "secweb"}, {"node", "ps", "--format", "json", "node2"},
		} {
			if out := c.mustCLI(1, args...); containsAny(out, ns) {
				t.Fatalf("swarmlet %s shows the secret's value:\n%s", strings.Join(args, " "), out)
			}
		}
		for i := 1; i <= 3; i++ {
			if containsAny(c.log(i), ns) {
				t.Fatalf("node %d's log holds the secret's value", i)
			}
			if hits := grepDisk(t, c.dataDir(i), ns...); len(hits) > 0 {
				t.Fatalf("node %d's data dir holds the secret's value on disk in %v", i, hits)
			}
		}
	})

	t.Run("files go with the task, the tmpfs with the leave", func(t *testing.T) {
		c.mustCLI(1, "service", "rm", "secweb")
		waitFor(t, 15*time.Second, "node 2's tmpfs unmounted", func() bool { return len(mountsUnder(c.dataDir(2))) == 0 })
		c.mustCLI(1, "secret", "rm", "db")
		c.mustCLI(1, "config", "rm", "app.conf")
		if out := c.mustCLI(1, "secret", "ls", "-q") + c.mustCLI(1, "config", "ls", "-q"); out != "" {
			t.Fatalf("left: %q", out)
		}
		// A node leaving with a task that has files takes them and the tmpfs away.
		c.mustCLI(1, "secret", "create", "db", f1)
		c.mustCLI(1, "service", "create", "--name", "secweb2", "--env", marker, "--constraint", "node.hostname==node3", "--secret", "db", "/bin/sh", "-c", script)
		if mountsUnder(c.dataDir(3)) == nil {
			t.Fatal("node 3 runs a task with a secret and has no tmpfs")
		}
		c.mustCLI(3, "leave")
		c.stop(3, syscall.Signal(0)) // it stops by itself: wait for its process to be gone
		if m := mountsUnder(c.dataDir(3)); len(m) > 0 {
			t.Fatalf("left mounted after leave: %v", m)
		}
	})
}

// TestSecretsDockerEngine: 2 nodes on the host's Docker. The container sees the
// secret at /run/secrets/TARGET and the config at its target with the asked-for
// owner and mode, bind-mounted read-only from the node's tmpfs; node 2 gets
// nothing; secret update replaces the container and the new one sees the new
// value; nothing stays mounted after the service is removed.
func TestSecretsDockerEngine(t *testing.T) {
	if _, err := os.Stat("/var/run/docker.sock"); err != nil {
		t.Skip("no Docker engine socket at /var/run/docker.sock")
	}
	build := osexec.Command("bash", filepath.Join("..", "whoami", "build.sh"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the whoami image: %v\n%s", err, out)
	}
	c := newCluster(t, 83)
	c.extra = []string{"--engine", "docker", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", "--pool", poolFor(83)}
	c.start(1, "")
	c.start(2, strings.TrimSpace(c.mustCLI(1, "join-token", "-q", "worker")))
	t.Cleanup(func() {
		c.stopAll()
		ids, _ := osexec.Command("docker", "ps", "-aq", "--filter", "label=swarmlet.service=dsec").Output()
		if f := strings.Fields(string(ids)); len(f) > 0 {
			_ = osexec.Command("docker", append([]string{"rm", "-f"}, f...)...).Run()
		}
	})
	c.cleanupDocker(t)
	waitFor(t, 10*time.Second, "2 nodes", func() bool { ns, err := c.nodes(1); return err == nil && len(ns) == 2 })

	v1, v2 := randomValue(t, "d0cker-v1-"), randomValue(t, "d0cker-v2-")
	c.mustCLI(1, "secret", "create", "db", writeTemp(t, "v1", []byte(v1)))
	c.mustCLI(1, "config", "create", "app.conf", writeTemp(t, "cfg", []byte("listen 80\n")))
	c.mustCLI(1, "service", "create", "--name", "dsec", "--constraint", "node.hostname==node1", "--update-monitor", "1s",
		"--secret", "source=db,uid=1000,gid=1001,mode=0400", "--config", "source=app.conf,target=/etc/app.conf,mode=0440", "swarmlet/whoami:test")

	// What the container sees, read through the engine (docker cp follows its mounts).
	type file struct {
		data     string
		mode     int64
		uid, gid int
	}
	inContainer := func(id, path string) file {
		t.Helper()
		out, err := osexec.Command("docker", "cp", id+":"+path, "-").Output()
		if err != nil {
			t.Fatalf("docker cp %s: %v", path, err)
		}
		tr := tar.NewReader(bytes.NewReader(out))
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		return file{string(b), h.Mode & 0o7777, h.Uid, h.Gid}
	}
	container := func() string {
		t.Helper()
		ids := dockerContainers(t, "swarmlet.service=dsec")
		if len(ids) != 1 {
			t.Fatalf("%d containers of dsec running", len(ids))
		}
		return ids[0]
	}
	id := container()
	if f := inContainer(id, "/run/secrets/db"); f != (file{v1, 0o400, 1000, 1001}) {
		t.Fatalf("/run/secrets/db in the container: %+v", f)
	}
	if f := inContainer(id, "/etc/app.conf"); f != (file{"listen 80\n", 0o440, 0, 0}) {
		t.Fatalf("/etc/app.conf in the container: %+v", f)
	}
	var mounts []struct {
		Source, Destination string
		RW                  bool
	}
	out, err := osexec.Command("docker", "inspect", "-f", "{{json .Mounts}}", id).Output()
	if err != nil || json.Unmarshal(out, &mounts) != nil || len(mounts) != 2 {
		t.Fatalf("mounts %s: %v", out, err)
	}
	for _, m := range mounts {
		if m.RW || !strings.HasPrefix(m.Source, filepath.Join(c.dataDir(1), "taskfiles")+"/") || !isTmpfs(m.Source) {
			t.Fatalf("mount %+v: want read-only, from node 1's tmpfs", m)
		}
	}
	if as := c.sessionOf(t, 2, 1); len(as.Secrets)+len(as.Configs) != 0 {
		t.Fatal("node 2 runs no task using them but was handed them")
	}
	if _, err := os.Stat(filepath.Join(c.dataDir(2), "taskfiles")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("node 2 has task files: %v", err)
	}

	start := time.Now()
	c.mustCLI(1, "secret", "update", "db", writeTemp(t, "v2", []byte(v2)))
	t.Logf("secret update returned after the rollout (monitor 1s): %s", time.Since(start).Round(time.Millisecond))
	var next string
	waitFor(t, 30*time.Second, "a new container", func() bool {
		ids := dockerContainers(t, "swarmlet.service=dsec")
		if len(ids) == 1 && ids[0] != id {
			next = ids[0]
		}
		return next != ""
	})
	if f := inContainer(next, "/run/secrets/db"); f != (file{v2, 0o400, 1000, 1001}) {
		t.Fatalf("after the update the container sees %+v", f)
	}
	ns := append(needles(v1), needles(v2)...)
	for i := 1; i <= 2; i++ {
		if containsAny(c.log(i), ns) {
			t.Fatalf("node %d's log holds the secret's value", i)
		}
		if hits := grepDisk(t, c.dataDir(i), ns...); len(hits) > 0 {
			t.Fatalf("node %d's data dir holds the secret's value on disk in %v", i, hits)
		}
	}
	if out := c.mustCLI(1, "service", "inspect", "dsec"); containsAny(out, ns) || !strings.Contains(out, `"version": 2`) {
		t.Fatalf("service inspect:\n%s", out)
	}

	c.mustCLI(1, "service", "rm", "dsec")
	waitFor(t, 20*time.Second, "containers gone and nothing mounted", func() bool {
		return len(dockerContainers(t, "swarmlet.service=dsec")) == 0 && len(mountsUnder(c.dataDir(1))) == 0
	})
}
