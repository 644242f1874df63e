package main

import (
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// inspected is the part of `docker inspect` the options show in.
type inspected struct {
	Config struct {
		Hostname   string
		User       string
		WorkingDir string
		Entrypoint []string
		Env        []string
		Labels     map[string]string
	}
	HostConfig struct {
		Init           *bool
		ReadonlyRootfs bool
		CapAdd         []string
		CapDrop        []string
		Sysctls        map[string]string
		Ulimits        []struct {
			Name       string
			Soft, Hard int64
		}
		PidsLimit  *int64
		DNS        []string `json:"Dns"`
		DNSOptions []string `json:"DnsOptions"`
		Mounts     []struct {
			Type, Source, Target string
			ReadOnly             bool
			TmpfsOptions         *struct{ SizeBytes int64 }
		}
	}
	Mounts []struct {
		Type, Name, Source, Destination string
	}
}

func dockerInspect(t *testing.T, taskID string) inspected {
	t.Helper()
	out, err := osexec.Command("docker", "ps", "-q", "--filter", "label=swarmlet.task="+taskID).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("container of task %s: %v %q", taskID, err, out)
	}
	b, err := osexec.Command("docker", "inspect", strings.TrimSpace(string(out))).Output()
	if err != nil {
		t.Fatalf("docker inspect: %v", err)
	}
	var is []inspected
	if err := json.Unmarshal(b, &is); err != nil || len(is) != 1 {
		t.Fatalf("docker inspect: %v %s", err, b)
	}
	return is[0]
}

// TestServiceOptionsDocker: through the binary with the host's Docker, every
// mount type and container option of `service create` is in `docker inspect`
// of each task's container, templates expanded per task; the containers still
// serve; an update changes them; a missing bind source is a REJECTED reason in
// `service ps`; bad input is refused and changes nothing.
func TestServiceOptionsDocker(t *testing.T) {
	if _, err := os.Stat("/var/run/docker.sock"); err != nil {
		t.Skip("no Docker engine socket at /var/run/docker.sock")
	}
	build := osexec.Command("bash", filepath.Join("..", "whoami", "build.sh"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the whoami image: %v\n%s", err, out)
	}
	c := newCluster(t, 84)
	c.extra = []string{"--engine", "docker", "--lb", "userspace", "--dns-port", "0", "--port-base", "24240", "--pool", poolFor(84)}
	c.start(1, "")
	c.cleanupDocker(t)
	// After cleanupDocker, so it runs first: its docker rm leaves anonymous volumes.
	t.Cleanup(func() {
		c.stopAll() // no daemon may start a container meanwhile
		for _, svc := range []string{"optweb", "optbad"} {
			ids, _ := osexec.Command("docker", "ps", "-aq", "--filter", "label=swarmlet.service="+svc).Output()
			if f := strings.Fields(string(ids)); len(f) > 0 {
				_ = osexec.Command("docker", append([]string{"rm", "-f", "-v"}, f...)...).Run()
			}
			vols, _ := osexec.Command("docker", "volume", "ls", "-q", "--filter", "label=swarmlet.service="+svc).Output()
			if f := strings.Fields(string(vols)); len(f) > 0 {
				_ = osexec.Command("docker", append([]string{"volume", "rm", "-f"}, f...)...).Run()
			}
		}
	})

	bindDir := t.TempDir()
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("# settings\nFROM_FILE=yes\nWHERE=overridden-by-env\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Volumes are per slot: each task gets its own, made when missing.
	for _, slot := range []string{"1", "2"} {
		if out, _ := osexec.Command("docker", "volume", "ls", "-q", "--filter", "name=^optvol-"+slot+"$").Output(); strings.TrimSpace(string(out)) != "" {
			t.Fatalf("volume optvol-%s exists before the test", slot)
		}
	}
	c.mustCLI(1, "service", "create", "--name", "optweb", "--replicas", "2", "-p", "80",
		"--mount", "type=bind,source="+bindDir+",target=/bind,readonly",
		"--mount", "type=volume,source=optvol-{{.Task.Slot}},target=/vol",
		"--mount", "type=volume,target=/anon",
		"--mount", "type=tmpfs,target=/tmp,tmpfs-size=16m",
		"--hostname", "{{.Service.Name}}-{{.Task.Slot}}", "--user", "65534:65534", "--workdir", "/tmp", "--entrypoint", "/whoami",
		"--env-file", envFile, "--env", "WHERE={{.Node.Hostname}}/{{.Task.Name}}", "--container-label", "team=a",
		"--init", "--read-only", "--cap-add", "NET_ADMIN", "--cap-drop", "mknod", "--sysctl", "net.core.somaxconn=512",
		"--ulimit", "nofile=1024:2048", "--limit-pids", "50", "--dns-option", "ndots:2",
		"swarmlet/whoami:test")
	ts, err := c.tasks(1, "optweb")
	if err != nil {
		t.Fatal(err)
	}
	r := running(t, ts)
	if len(r) != 2 {
		t.Fatalf("%d running: %+v", len(r), ts)
	}
	var dnsBefore, anonymous []string
	for slot, x := range r {
		in := dockerInspect(t, x.ID)
		cfg, hc := in.Config, in.HostConfig
		s := fmt.Sprint(slot)
		checks := []struct {
			what string
			ok   bool
		}{
			{"hostname {{.Service.Name}}-{{.Task.Slot}}", cfg.Hostname == "optweb-"+s},
			{"user", cfg.User == "65534:65534"},
			{"workdir", cfg.WorkingDir == "/tmp"},
			{"entrypoint", slices.Equal(cfg.Entrypoint, []string{"/whoami"})},
			{"env-file", slices.Contains(cfg.Env, "FROM_FILE=yes")},
			{"env template, --env over --env-file", slices.Contains(cfg.Env, "WHERE=node1/optweb."+s+"."+x.ID) && !slices.Contains(cfg.Env, "WHERE=overridden-by-env")},
			{"container label", cfg.Labels["team"] == "a" && cfg.Labels["swarmlet.task"] == x.ID},
			{"init", hc.Init != nil && *hc.Init},
			{"read-only", hc.ReadonlyRootfs},
			{"cap-add", slices.Equal(hc.CapAdd, []string{"CAP_NET_ADMIN"})},
			{"cap-drop", slices.Equal(hc.CapDrop, []string{"CAP_MKNOD"})},
			{"sysctl", hc.Sysctls["net.core.somaxconn"] == "512"},
			{"ulimit", len(hc.Ulimits) == 1 && hc.Ulimits[0].Name == "nofile" && hc.Ulimits[0].Soft == 1024 && hc.Ulimits[0].Hard == 2048},
			{"limit-pids", hc.PidsLimit != nil && *hc.PidsLimit == 50},
			{"dns-option", slices.Equal(hc.DNSOptions, []string{"ndots:2"})},
		}
		for _, ch := range checks {
			if !ch.ok {
				t.Errorf("slot %d: %s not in docker inspect: %+v", slot, ch.what, in)
			}
		}
		mounts := map[string]string{}
		for _, m := range hc.Mounts {
			mounts[m.Target] = fmt.Sprintf("%s %s ro=%v", m.Type, m.Source, m.ReadOnly)
			if m.Type == "tmpfs" && (m.TmpfsOptions == nil || m.TmpfsOptions.SizeBytes != 16<<20) {
				t.Errorf("slot %d: tmpfs without its size: %+v", slot, m)
			}
		}
		want := map[string]string{"/bind": "bind " + bindDir + " ro=true", "/vol": "volume optvol-" + s + " ro=false",
			"/anon": "volume  ro=false", "/tmp": "tmpfs  ro=false"}
		if fmt.Sprint(mounts) != fmt.Sprint(want) {
			t.Errorf("slot %d: mounts %v, want %v", slot, mounts, want)
		}
		label, err := osexec.Command("docker", "volume", "inspect", "-f", `{{index .Labels "swarmlet.volume-created-by"}}`, "optvol-"+s).Output()
		if err != nil || strings.TrimSpace(string(label)) == "" {
			t.Errorf("volume optvol-%s not created, or not labelled as swarmlet's: %v %q", s, err, label)
		}
		if dnsBefore == nil {
			dnsBefore = hc.DNS
		}
		for _, m := range in.Mounts {
			if m.Destination == "/anon" {
				anonymous = append(anonymous, m.Name)
			}
		}
		// The container serves, as nobody, on a read-only root, through its init.
		hostPort := strings.Split(x.Ports, "->")[0]
		if body := httpGet(t, "http://"+c.ip(1)+":"+hostPort+"/"); !strings.Contains(body, "task="+x.ID) || !strings.Contains(body, "host=optweb-"+s) {
			t.Errorf("slot %d answered %q", slot, body)
		}
	}

	// An update changes the options of the new containers; what it leaves alone stays.
	c.mustCLI(1, "service", "update", "--mount-rm", "/bind", "--container-label-add", "team=b", "--cap-drop", "NET_RAW",
		"--dns-option-add", "attempts:2", "--hostname", "web-{{.Task.Slot}}", "optweb")
	ts, _ = c.tasks(1, "optweb")
	r = running(t, ts)
	for slot, x := range r {
		in := dockerInspect(t, x.ID)
		for _, m := range in.HostConfig.Mounts {
			if m.Target == "/bind" {
				t.Errorf("slot %d: /bind still mounted after --mount-rm", slot)
			}
		}
		if in.Config.Hostname != fmt.Sprintf("web-%d", slot) || in.Config.Labels["team"] != "b" || !slices.Contains(in.HostConfig.CapDrop, "CAP_NET_RAW") ||
			!slices.Equal(in.HostConfig.DNSOptions, []string{"ndots:2", "attempts:2"}) || !in.HostConfig.ReadonlyRootfs {
			t.Errorf("slot %d after the update: %+v", slot, in)
		}
		// The options add to the cluster's resolver settings; they replace none.
		if !slices.Equal(in.HostConfig.DNS, dnsBefore) {
			t.Errorf("slot %d: DNS servers %v, before the options %v", slot, in.HostConfig.DNS, dnsBefore)
		}
	}

	// The replaced containers' anonymous volumes went with them; named ones stay.
	for _, v := range anonymous {
		if err := osexec.Command("docker", "volume", "inspect", v).Run(); err == nil {
			t.Errorf("anonymous volume %s outlived its task", v)
		}
	}
	if len(anonymous) != 2 {
		t.Errorf("anonymous volumes %v, want one per task", anonymous)
	}
	for _, v := range []string{"optvol-1", "optvol-2"} {
		if err := osexec.Command("docker", "volume", "inspect", v).Run(); err != nil {
			t.Errorf("named volume %s removed with its task", v)
		}
	}

	// A bind source the node lacks: REJECTED, with the reason in service ps.
	missing := filepath.Join(t.TempDir(), "not-here")
	c.mustCLI(1, "service", "create", "--name", "optbad", "--detach", "--mount", "type=bind,source="+missing+",target=/data", "swarmlet/whoami:test")
	var reason string
	waitFor(t, 30*time.Second, "optbad rejected", func() bool {
		out, _, err := c.cli(1, "service", "ps", "--all", "--format", "json", "optbad")
		var ts []taskJSON
		if err != nil || json.Unmarshal([]byte(out), &ts) != nil {
			return false
		}
		for _, x := range ts {
			if x.Current == "rejected" {
				reason = x.Error
				return true
			}
		}
		return false
	})
	if want := "bind mount source " + missing + " does not exist on node"; !strings.Contains(reason, want) {
		t.Errorf("rejected with %q, want it to say %q", reason, want)
	}
	psOut := c.mustCLI(1, "service", "ps", "--all", "optbad")
	if !strings.Contains(psOut, "Rejected") || !strings.Contains(psOut, "bind mount source") {
		t.Errorf("service ps does not show the reason:\n%s", psOut)
	}

	// Bad input: one clear line, nothing created.
	for _, tc := range []struct {
		want string
		args []string
	}{
		{`unknown mount type "nfs"`, []string{"--mount", "type=nfs,target=/x"}},
		{`bind source "rel" is not an absolute path`, []string{"--mount", "type=bind,source=rel,target=/x"}},
		{`invalid template in hostname "{{.Task.Slot": unclosed action`, []string{"--hostname", "{{.Task.Slot"}},
		{`unknown capability "NET_ADMINS"`, []string{"--cap-add", "NET_ADMINS"}},
		{`sysctl "kernel.pid_max" is not namespaced`, []string{"--sysctl", "kernel.pid_max=5"}},
		{`invalid --ulimit "nofile=9:1"`, []string{"--ulimit", "nofile=9:1"}},
	} {
		c.expectError(t, 1, tc.want, append(append([]string{"service", "create", "--name", "optinvalid"}, tc.args...), "swarmlet/whoami:test")...)
	}
	if out := c.mustCLI(1, "service", "ls", "-q"); strings.Contains(out, "optinvalid") {
		t.Errorf("a refused service exists:\n%s", out)
	}
}

// TestServiceOptionsProcess: with only process-engine nodes, a spec the engine
// cannot honour is refused at create and at update with a clear error and
// nothing changed; what it can honour (workdir, env-file, templates in env,
// limits through cgroups) it does.
func TestServiceOptionsProcess(t *testing.T) {
	c := newCluster(t, 85)
	c.start(1, "")
	t.Cleanup(func() {
		c.stopAll()
		for _, pid := range serviceProcesses("optproc", c.ip(1)) {
			_ = syscall.Kill(pid, syscall.SIGKILL) // tasks outlive their daemon, by design
		}
		waitFor(t, 10*time.Second, "optproc's processes gone", func() bool { return len(serviceProcesses("optproc", c.ip(1))) == 0 })
		// The node's directory in each cgroup tree stays for its next tasks.
		for _, ctl := range []string{"cpu", "memory", "pids", ""} {
			nodes, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", ctl, "swarmlet", "*", "cgroup.procs"))
			for _, p := range nodes {
				_ = os.Remove(filepath.Dir(p)) // fails, harmlessly, if still in use
			}
			_ = os.Remove(filepath.Join("/sys/fs/cgroup", ctl, "swarmlet"))
		}
	})
	c.expectError(t, 1, "engine process cannot honour --mount, --cap-add, and every node this service may run on runs it (node1)",
		"service", "create", "--name", "optproc", "--mount", "type=tmpfs,target=/t", "--cap-add", "NET_ADMIN", "sleep", "100")
	c.expectError(t, 1, "engine process cannot honour --hostname",
		"service", "create", "--name", "optproc", "--hostname", "{{.Service.Name}}", "sleep", "100")
	c.expectError(t, 1, `invalid template in env A "A={{.Task.Slot": unclosed action`,
		"service", "create", "--name", "optproc", "--env", "A={{.Task.Slot", "sleep", "100")
	if out := c.mustCLI(1, "service", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("refused creates left services:\n%s", out)
	}

	// What the process engine honours. The directory must be reachable by the task.
	dir, err := os.MkdirTemp("", "opt-proc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	envFile := filepath.Join(dir, "env")
	if err := os.WriteFile(envFile, []byte("FROM_FILE=yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := `pwd > pwd.$SWARMLET_SLOT; echo "$FROM_FILE $WHO" > env.$SWARMLET_SLOT; cat /proc/self/cgroup > cg.$SWARMLET_SLOT; exec sleep 1000`
	c.mustCLI(1, "service", "create", "--name", "optproc", "--replicas", "2", "--workdir", dir, "--env-file", envFile,
		"--env", "WHO={{.Service.Name}}.{{.Task.Slot}}@{{.Node.Hostname}}", "--limit-pids", "50", "--limit-memory", "64m",
		"/bin/sh", "-c", script)
	for _, slot := range []string{"1", "2"} {
		var env []byte
		waitFor(t, 10*time.Second, "slot "+slot+" wrote its files", func() bool {
			// cg is the script's last file: once it has content, all are written.
			cg, err := os.ReadFile(filepath.Join(dir, "cg."+slot))
			if err != nil || len(cg) == 0 {
				return false
			}
			env, err = os.ReadFile(filepath.Join(dir, "env."+slot))
			return err == nil && len(env) > 0
		})
		if got := strings.TrimSpace(string(env)); got != "yes optproc."+slot+"@node1" {
			t.Errorf("slot %s env %q", slot, got)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "pwd."+slot)); strings.TrimSpace(string(b)) != dir {
			t.Errorf("slot %s ran in %q, want %s", slot, b, dir)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "cg."+slot)); !strings.Contains(string(b), "/swarmlet/") {
			t.Errorf("slot %s is not in a cgroup of its own:\n%s", slot, b)
		}
	}

	// An update the process engine cannot honour: refused, the spec unchanged.
	before := c.mustCLI(1, "service", "inspect", "optproc")
	c.expectError(t, 1, "engine process cannot honour --mount", "service", "update", "--mount-add", "type=volume,source=vol,target=/v", "optproc")
	if after := c.mustCLI(1, "service", "inspect", "optproc"); after != before {
		t.Errorf("a refused update changed the service:\n%s\n%s", before, after)
	}
	c.mustCLI(1, "service", "rm", "optproc")
	waitFor(t, 10*time.Second, "optproc's tasks gone", func() bool { return len(serviceProcesses("optproc", c.ip(1))) == 0 })
	// Their cgroups go with them.
	waitFor(t, 10*time.Second, "optproc's cgroups removed", func() bool {
		for _, ctl := range []string{"pids", "memory", ""} {
			if left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", ctl, "swarmlet", "*", "*", "cgroup.procs")); len(left) > 0 {
				return false
			}
		}
		return true
	})
}

// serviceProcesses lists the live processes of a service's tasks on the node at
// addr, whatever program they run (taskProcesses counts whoami only).
func serviceProcesses(service, addr string) []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil {
			continue
		}
		env := strings.Split(string(b), "\x00")
		if slices.Contains(env, "SWARMLET_SERVICE="+service) && slices.Contains(env, "SWARMLET_ADDR="+addr) {
			if pid, err := strconv.Atoi(filepath.Base(d)); err == nil {
				if st, err := os.ReadFile(filepath.Join(d, "stat")); err == nil && !strings.Contains(string(st), ") Z ") {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}
