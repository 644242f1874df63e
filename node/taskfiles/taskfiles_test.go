package taskfiles

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/internal/testlog"
	"github.com/swarmlet/swarmlet/node/engine"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
}

func task(id string) *api.Task {
	spec := api.ServiceSpec{Name: "web", Image: "x",
		Secrets: []api.SecretRef{{Source: "db", ID: "sec1", Version: 2, UID: "1000", GID: "1001", Mode: 0o400},
			{Source: "tls", ID: "sec2", Version: 1, Target: "certs/key.pem"}},
		Configs: []api.SecretRef{{Source: "app.conf", ID: "cfg1", Version: 1, Target: "/etc/app/app.conf", Mode: 0o640}}}
	spec.Normalize()
	return &api.Task{ID: id, ServiceName: "web", Spec: spec}
}

func values() *api.Assignments {
	return &api.Assignments{
		Secrets: []api.SecretValue{{ID: "sec1", Version: 1, Data: []byte("old")}, {ID: "sec1", Version: 2, Data: []byte("pw")}, {ID: "sec2", Version: 1, Data: []byte("key")}},
		Configs: []api.SecretValue{{ID: "cfg1", Version: 1, Data: []byte("listen 80")}},
	}
}

func mounted(t *testing.T, root string) bool {
	t.Helper()
	var fs unix.Statfs_t
	return isMount(root) && unix.Statfs(root, &fs) == nil && fs.Type == unix.TMPFS_MAGIC
}

// TestWriteRemove: the first task with files mounts a tmpfs; each file has the
// version the task names, its owner and mode, at the place engine.TaskFiles
// says; removing the last task's files unmounts it, leaving nothing.
func TestWriteRemove(t *testing.T) {
	needRoot(t)
	root := filepath.Join(t.TempDir(), "taskfiles")
	d := New(root, testlog.New(t))
	t.Cleanup(func() { _ = d.Close() })
	plain := &api.Task{ID: "plain", Spec: api.ServiceSpec{Name: "p", Image: "x"}}
	if err := d.Write(plain, values()); err != nil || mounted(t, root) {
		t.Fatalf("a task without files: %v, mounted %v", err, mounted(t, root))
	}
	a, b := task("taska"), task("taskb")
	for _, tk := range []*api.Task{a, b} {
		if err := d.Write(tk, values()); err != nil {
			t.Fatal(err)
		}
	}
	if !mounted(t, root) {
		t.Fatal("no tmpfs on the root")
	}
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil || st.Mode&0o777 != 0o700 {
		t.Fatalf("root mode %o: %v", st.Mode&0o777, err)
	}
	want := map[string]struct {
		data     string
		mode     os.FileMode
		uid, gid uint32
	}{
		"/run/secrets/db":            {"pw", 0o400, 1000, 1001},
		"/run/secrets/certs/key.pem": {"key", 0o444, 0, 0},
		"/etc/app/app.conf":          {"listen 80", 0o640, 0, 0},
	}
	files := engine.TaskFiles(root, a)
	if len(files) != len(want) {
		t.Fatalf("%d files", len(files))
	}
	for _, f := range files {
		w, ok := want[f.Path]
		if !ok {
			t.Fatalf("unexpected file at %s", f.Path)
		}
		b, err := os.ReadFile(f.Host)
		fi, serr := os.Stat(f.Host)
		if err != nil || serr != nil || string(b) != w.data || fi.Mode().Perm() != w.mode {
			t.Fatalf("%s (%s): %q mode %v, err %v %v; want %q %v", f.Path, f.Host, b, fi.Mode(), err, serr, w.data, w.mode)
		}
		sys := fi.Sys().(*syscall.Stat_t)
		if sys.Uid != w.uid || sys.Gid != w.gid {
			t.Fatalf("%s owned by %d:%d, want %d:%d", f.Path, sys.Uid, sys.Gid, w.uid, w.gid)
		}
	}
	env := strings.Join(engine.FilesEnv(root, a), " ")
	if !strings.Contains(env, engine.EnvSecretsDir+"="+filepath.Join(root, "taska", "secrets")) || !strings.Contains(env, engine.EnvConfigsDir+"=") {
		t.Fatalf("env %s", env)
	}
	if got, _ := d.Tasks(); strings.Join(got, ",") != "taska,taskb" {
		t.Fatalf("tasks %v", got)
	}
	if err := d.Remove("taska"); err != nil || !mounted(t, root) {
		t.Fatalf("remove one: %v, mounted %v", err, mounted(t, root))
	}
	if err := d.Remove("taskb"); err != nil {
		t.Fatal(err)
	}
	if mounted(t, root) {
		t.Fatal("still mounted with no task files")
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("root left behind: %v", err)
	}
}

// TestWriteMissingValue: a value the answer does not carry fails the write with
// nothing left: no half-written task, no mount.
func TestWriteMissingValue(t *testing.T) {
	needRoot(t)
	root := filepath.Join(t.TempDir(), "taskfiles")
	d := New(root, testlog.New(t))
	t.Cleanup(func() { _ = d.Close() })
	as := values()
	as.Configs = nil
	err := d.Write(task("taska"), as)
	if err == nil || !strings.Contains(err.Error(), "config app.conf (version 1) was not handed to this node") {
		t.Fatalf("got %v", err)
	}
	if mounted(t, root) {
		t.Fatal("left mounted")
	}
	if err := d.Write(&api.Task{ID: "../x", Spec: task("x").Spec}, values()); !errors.Is(err, engine.ErrRejected) {
		t.Fatalf("bad ID: %v", err)
	}
}

// TestCloseUnmounts: leaving removes every file and the mount.
func TestCloseUnmounts(t *testing.T) {
	needRoot(t)
	root := filepath.Join(t.TempDir(), "taskfiles")
	d := New(root, testlog.New(t))
	if err := d.Write(task("taska"), values()); err != nil {
		t.Fatal(err)
	}
	// A daemon restart finds it mounted and carries on.
	d2 := New(root, testlog.New(t))
	if err := d2.Write(task("taskb"), values()); err != nil {
		t.Fatal(err)
	}
	if got, _ := d2.Tasks(); len(got) != 2 {
		t.Fatalf("tasks %v", got)
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	if mounted(t, root) {
		t.Fatal("still mounted")
	}
}
