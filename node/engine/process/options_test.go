package process

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// logOf waits until the task's output contains want and returns it.
func logOf(t *testing.T, e *Engine, taskID, want string) string {
	t.Helper()
	var out string
	waitFor(t, 10*time.Second, "output "+want, func() bool {
		var b bytes.Buffer
		if err := e.Logs(context.Background(), taskID, engine.LogOptions{}, &b); err != nil {
			return false
		}
		out = b.String()
		return strings.Contains(out, want)
	})
	return out
}

// TestStartRefusesWhatItCannotHonour: every option a plain process cannot have
// is a rejection that names it, and nothing runs.
func TestStartRefusesWhatItCannotHonour(t *testing.T) {
	e := newEngine(t, engine.Config{})
	for _, tc := range []struct {
		name   string
		mutate func(*api.ServiceSpec)
		errHas string
	}{
		{"mount", func(s *api.ServiceSpec) { s.Mounts = []api.Mount{{Type: api.MountTmpfs, Target: "/t"}} }, "engine process cannot honour --mount"},
		{"capabilities and hostname", func(s *api.ServiceSpec) {
			s.Container = &api.ContainerOptions{Hostname: "h", CapAdd: []string{"CAP_KILL"}}
		}, "engine process cannot honour --hostname, --cap-add (run the service on a node with the docker engine)"},
		{"missing workdir", func(s *api.ServiceSpec) { s.Container = &api.ContainerOptions{Workdir: "/nonexistent/dir"} }, "workdir /nonexistent/dir is not a directory on node node-1"},
		{"unknown user", func(s *api.ServiceSpec) { s.Container = &api.ContainerOptions{User: "no-such-user-here"} }, `user "no-such-user-here": no such user`},
		{"unknown group", func(s *api.ServiceSpec) { s.Container = &api.ContainerOptions{User: "0:no-such-group-here"} }, `no such group "no-such-group-here"`},
		{"invalid option", func(s *api.ServiceSpec) { s.Container = &api.ContainerOptions{Workdir: "rel"} }, "invalid workdir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := shTask("t-"+strings.ReplaceAll(tc.name, " ", "-"), "sleep 100")
			tc.mutate(&task.Spec)
			_, err := e.Start(context.Background(), task)
			if !errors.Is(err, engine.ErrRejected) || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("error %v, want a rejection containing %q", err, tc.errHas)
			}
			if _, ok := findInstance(t, e, task.ID); ok {
				t.Fatal("a process was started")
			}
		})
	}
}

// TestStartWorkdirAndUser: --workdir is the process's directory; --user runs it
// as that user when the daemon is root (and is refused otherwise).
func TestStartWorkdirAndUser(t *testing.T) {
	e := newEngine(t, engine.Config{})
	// Not t.TempDir(): its parent is private to root, and the user must reach it.
	dir, err := os.MkdirTemp("", "opt-workdir")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	task := shTask("t-user", `echo "ids=$(id -u):$(id -g) groups=$(id -G) dir=$(pwd) home=$HOME"; sleep 100`)
	task.Spec.Container = &api.ContainerOptions{Workdir: dir, User: "65534:65533"}
	_, err = e.Start(context.Background(), task)
	if os.Geteuid() != 0 {
		if !errors.Is(err, engine.ErrRejected) || !strings.Contains(err.Error(), "not root") {
			t.Fatalf("another user without root: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	out := logOf(t, e, task.ID, "ids=")
	if !strings.Contains(out, "ids=65534:65533 groups=65533 dir="+dir+" home=/") {
		t.Fatalf("output %q", out)
	}
}

// TestStartCgroupLimits: limits put the task in a cgroup of its own with those
// values, removed with the task; where the node's cgroups cannot be written, the
// task is rejected with the reason.
func TestStartCgroupLimits(t *testing.T) {
	e := newEngine(t, engine.Config{NodeID: "opt-limits"})
	removeNodeCgroups(t, e)
	task := shTask("t-limits", "cat /proc/self/cgroup; echo done; sleep 100")
	task.Spec.Limits = api.Resources{NanoCPUs: 500_000_000, MemoryBytes: 64 << 20}
	task.Spec.Container = &api.ContainerOptions{PidsLimit: 20}
	_, err := e.Start(context.Background(), task)
	if err != nil {
		if !errors.Is(err, engine.ErrRejected) || !strings.Contains(err.Error(), "cannot apply --limit-cpu, --limit-memory, --limit-pids on node") {
			t.Fatalf("a failure to apply limits must be a rejection naming them: %v", err)
		}
		if os.Geteuid() == 0 && canWriteCgroups() {
			t.Fatalf("cgroups are writable here, yet: %v", err)
		}
		return
	}
	out := logOf(t, e, task.ID, "done")
	rel := filepath.Join(cgroupParent, e.cfg.NodeID, task.ID)
	if !strings.Contains(out, "/"+rel) {
		t.Fatalf("the process is not in its cgroup %s:\n%s", rel, out)
	}
	e.mu.Lock()
	paths := e.tasks[task.ID].rec.Cgroups
	e.mu.Unlock()
	want := map[string]string{
		"pids.max": "20", "memory.max": "67108864", "memory.limit_in_bytes": "67108864",
		"cpu.max": "50000 100000", "cpu.cfs_quota_us": "50000",
	}
	found := 0
	for _, dir := range paths {
		for file, v := range want {
			if b, err := os.ReadFile(filepath.Join(dir, file)); err == nil {
				found++
				if got := strings.TrimSpace(string(b)); got != v {
					t.Errorf("%s/%s = %q, want %q", dir, file, got, v)
				}
			}
		}
	}
	if found != 3 {
		t.Errorf("found %d of the 3 limit files in %v", found, paths)
	}
	if err := e.Stop(context.Background(), task.ID); err != nil {
		t.Fatal(err)
	}
	for _, dir := range paths {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left after the task: %v", dir, err)
		}
	}
}

// removeNodeCgroups removes what a test's tasks left in the cgroup trees: the
// node's directory (which stays for its next tasks) and swarmlet's, if empty.
func removeNodeCgroups(t *testing.T, e *Engine) {
	t.Cleanup(func() {
		if list, err := e.List(context.Background()); err == nil {
			for _, inst := range list {
				_ = e.Stop(context.Background(), inst.TaskID)
			}
		}
		for _, c := range []string{"cpu", "memory", "pids", ""} {
			dir := filepath.Join(DefaultCgroupRoot, c, cgroupParent)
			_ = os.Remove(filepath.Join(dir, e.cfg.NodeID))
			_ = os.Remove(dir)
		}
	})
}

// TestPidsLimitHolds: a task cannot fork past --limit-pids.
func TestPidsLimitHolds(t *testing.T) {
	e := newEngine(t, engine.Config{NodeID: "opt-pids"})
	removeNodeCgroups(t, e)
	task := shTask("t-pids", `for i in 1 2 3 4 5 6 7 8; do sleep 100 & done; wait; echo end`)
	task.Spec.Container = &api.ContainerOptions{PidsLimit: 4}
	if _, err := e.Start(context.Background(), task); err != nil {
		if errors.Is(err, engine.ErrRejected) && !canWriteCgroups() {
			return // checked by TestStartCgroupLimits
		}
		t.Fatal(err)
	}
	// The shell says it cannot fork ("Cannot fork", "fork: retry: ...").
	logOf(t, e, task.ID, "fork")
}

// TestMemoryLimitOOM: a task past --limit-memory is killed by the kernel, and
// says so as Docker does.
func TestMemoryLimitOOM(t *testing.T) {
	e := newEngine(t, engine.Config{NodeID: "opt-oom"})
	removeNodeCgroups(t, e)
	// tail holds a line until its end: 200 MB of zeros without a newline.
	task := shTask("t-oom", `head -c 200000000 /dev/zero | tail`)
	task.Spec.Limits.MemoryBytes = 32 << 20
	if _, err := e.Start(context.Background(), task); err != nil {
		if errors.Is(err, engine.ErrRejected) && !canWriteCgroups() {
			return // checked by TestStartCgroupLimits
		}
		t.Fatal(err)
	}
	var inst engine.Instance
	waitFor(t, 20*time.Second, "the task to end", func() bool {
		var ok bool
		inst, ok = findInstance(t, e, task.ID)
		return ok && inst.State != api.TaskRunning
	})
	if inst.State != api.TaskFailed || inst.ExitCode != 137 || inst.Err != "out of memory (OOM killed)" {
		t.Fatalf("ended as %+v", inst)
	}
}

// canWriteCgroups says whether this machine lets a task cgroup be made.
func canWriteCgroups() bool {
	cg, err := newTaskCgroup(DefaultCgroupRoot, "opt-probe", "probe", cgroupLimits{pids: 10})
	if err != nil {
		return false
	}
	cg.remove()
	for _, c := range []string{"pids", ""} {
		dir := filepath.Join(DefaultCgroupRoot, c, cgroupParent)
		_ = os.Remove(filepath.Join(dir, "opt-probe"))
		_ = os.Remove(dir)
	}
	return true
}

func TestCredential(t *testing.T) {
	for _, tc := range []struct {
		spec     string
		uid, gid uint32
		errHas   string
	}{
		{"0", 0, 0, ""},
		{"root", 0, 0, ""},
		{"12345", 12345, 0, ""}, // a number need not exist: group 0, as Docker
		{"12345:777", 12345, 777, ""},
		{"root:0", 0, 0, ""},
		{"no-such-user-here", 0, 0, "no such user"},
		{"0:no-such-group-here", 0, 0, "no such group"},
	} {
		cred, _, _, err := credential(tc.spec)
		switch {
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("credential(%q) error %v, want %q", tc.spec, err, tc.errHas)
		case tc.errHas == "" && (err != nil || cred.Uid != tc.uid || cred.Gid != tc.gid):
			t.Errorf("credential(%q) = %+v, %v; want %d:%d", tc.spec, cred, err, tc.uid, tc.gid)
		}
	}
}
