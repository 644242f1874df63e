package process

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// Limits through cgroups: a task with --limit-cpu, --limit-memory or
// --limit-pids runs in a cgroup of its own, swarmlet/<node>/<task> under each
// controller it needs (cgroup v1, a tree per controller, as this project's CI
// has; or the one tree of cgroup v2). A process can only be moved into a cgroup
// once it exists, and a program may fork at once: so the child starts as a
// gate (a /bin/sh that waits on a pipe), is moved, and only then is let through
// to exec the task's program, under the same PID. Nothing of the program runs
// outside its limits. A node whose cgroups cannot be written rejects the task
// with the reason.

// DefaultCgroupRoot is where the cgroup file systems are mounted.
const DefaultCgroupRoot = "/sys/fs/cgroup"

// cgroupParent is the directory, under each controller, that holds the tasks'
// cgroups; one per node below it, since nodes may share a machine.
const cgroupParent = "swarmlet"

// cpuPeriod is the CFS period a CPU quota is expressed in, Docker's 100 ms.
const cpuPeriod = 100_000

type cgroupLimits struct {
	nanoCPUs, memory, pids int64
}

func limitsOf(spec *api.ServiceSpec) cgroupLimits {
	l := cgroupLimits{nanoCPUs: spec.Limits.NanoCPUs, memory: spec.Limits.MemoryBytes}
	if spec.Container != nil {
		l.pids = spec.Container.PidsLimit
	}
	return l
}

func (l cgroupLimits) none() bool { return l.nanoCPUs <= 0 && l.memory <= 0 && l.pids <= 0 }

// flags names the limits set, for an error.
func (l cgroupLimits) flags() string {
	var fs []string
	if l.nanoCPUs > 0 {
		fs = append(fs, "--limit-cpu")
	}
	if l.memory > 0 {
		fs = append(fs, "--limit-memory")
	}
	if l.pids > 0 {
		fs = append(fs, "--limit-pids")
	}
	return strings.Join(fs, ", ")
}

// taskCgroup is the cgroup (v2) or cgroups (v1, one per controller) of one task.
type taskCgroup struct {
	paths        []string
	gate, gateIn *os.File // the go-ahead pipe's write end, and the child's read end
}

// newTaskCgroup makes the task's cgroups under root and writes its limits.
func newTaskCgroup(root, nodeID, taskID string, l cgroupLimits) (*taskCgroup, error) {
	rel := filepath.Join(cgroupParent, nodeID, taskID)
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return newCgroupV2(root, rel, l)
	}
	return newCgroupV1(root, rel, l)
}

func newCgroupV2(root, rel string, l cgroupLimits) (cg *taskCgroup, err error) {
	type limit struct{ controller, file, value string }
	var limits []limit
	if l.nanoCPUs > 0 {
		limits = append(limits, limit{"cpu", "cpu.max", fmt.Sprintf("%d %d", cpuQuota(l.nanoCPUs), cpuPeriod)})
	}
	if l.memory > 0 {
		limits = append(limits, limit{"memory", "memory.max", strconv.FormatInt(l.memory, 10)})
	}
	if l.pids > 0 {
		limits = append(limits, limit{"pids", "pids.max", strconv.FormatInt(l.pids, 10)})
	}
	// Each controller must be enabled in every ancestor's subtree_control; those
	// ancestors hold no processes of their own (cgroup v2's rule).
	dir := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		for _, lim := range limits {
			if err := enableController(dir, lim.controller); err != nil {
				return nil, err
			}
		}
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("cgroup: %w", err)
		}
	}
	cg = &taskCgroup{paths: []string{dir}}
	defer func() {
		if err != nil {
			cg.remove()
		}
	}()
	for _, lim := range limits {
		if err := writeCgroupFile(dir, lim.file, lim.value); err != nil {
			return nil, err
		}
	}
	return cg, nil
}

func enableController(dir, controller string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	if strings.Contains(" "+strings.TrimSpace(string(b))+" ", " "+controller+" ") {
		return nil
	}
	return writeCgroupFile(dir, "cgroup.subtree_control", "+"+controller)
}

func newCgroupV1(root, rel string, l cgroupLimits) (cg *taskCgroup, err error) {
	type limit struct{ file, value string }
	byController := map[string][]limit{}
	if l.nanoCPUs > 0 {
		byController["cpu"] = []limit{{"cpu.cfs_period_us", strconv.Itoa(cpuPeriod)}, {"cpu.cfs_quota_us", strconv.FormatInt(cpuQuota(l.nanoCPUs), 10)}}
	}
	if l.memory > 0 {
		byController["memory"] = []limit{{"memory.limit_in_bytes", strconv.FormatInt(l.memory, 10)}}
	}
	if l.pids > 0 {
		byController["pids"] = []limit{{"pids.max", strconv.FormatInt(l.pids, 10)}}
	}
	cg = &taskCgroup{}
	defer func() {
		if err != nil {
			cg.remove()
		}
	}()
	for _, controller := range []string{"cpu", "memory", "pids"} {
		limits, ok := byController[controller]
		if !ok {
			continue
		}
		base := filepath.Join(root, controller)
		if _, err := os.Stat(filepath.Join(base, "cgroup.procs")); err != nil {
			return nil, fmt.Errorf("no %s cgroup controller at %s", controller, base)
		}
		dir := filepath.Join(base, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		cg.paths = append(cg.paths, dir)
		for _, lim := range limits {
			if err := writeCgroupFile(dir, lim.file, lim.value); err != nil {
				return nil, err
			}
		}
	}
	return cg, nil
}

func cpuQuota(nanoCPUs int64) int64 {
	return max(nanoCPUs*cpuPeriod/1e9, 1000) // the kernel's least quota is 1 ms
}

func writeCgroupFile(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0o644); err != nil {
		return fmt.Errorf("cgroup: write %s to %s: %w", value, filepath.Join(dir, file), err)
	}
	return nil
}

// gateShell runs the gate; a POSIX shell is on every machine the process
// engine runs on.
const gateShell = "/bin/sh"

// gateScript waits for the go-ahead on descriptor 3, closes it, and becomes
// the task's program ($1, with its arguments) by exec, keeping its PID. No
// go-ahead (the daemon failed to attach it) ends it with 125, as Docker's own
// failure to run a container.
const gateScript = `read x <&3 || exit 125; exec 3<&-; exec "$@"`

// gateCmd makes cmd start as the gate in front of its program.
func (cg *taskCgroup) gateCmd(cmd *exec.Cmd) error {
	if _, err := os.Stat(gateShell); err != nil {
		return fmt.Errorf("limits need %s on the node: %w", gateShell, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Args = append([]string{"sh", "-c", gateScript, "swarmlet-gate", cmd.Path}, cmd.Args[1:]...)
	cmd.Path = gateShell
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	cg.gate, cg.gateIn = w, r
	return nil
}

// attach moves the started gate into the cgroups and lets it through.
func (cg *taskCgroup) attach(cmd *exec.Cmd) error {
	defer cg.closeGate() // the child holds its own read end
	for _, dir := range cg.paths {
		if err := writeCgroupFile(dir, "cgroup.procs", strconv.Itoa(cmd.Process.Pid)); err != nil {
			return err
		}
	}
	if _, err := cg.gate.Write([]byte("go\n")); err != nil {
		return fmt.Errorf("let the task through its gate: %w", err)
	}
	return nil
}

// closeGate closes the go-ahead pipe: an un-released gate then exits.
func (cg *taskCgroup) closeGate() {
	for _, f := range []**os.File{&cg.gate, &cg.gateIn} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

func (cg *taskCgroup) remove() {
	cg.closeGate()
	_ = removeCgroups(cg.paths)
}

// removeCgroups removes a task's cgroups once its processes are gone. The
// kernel refuses (EBUSY) while an exited process is still being torn down, so
// it tries for a second.
func removeCgroups(paths []string) error {
	var last error
	for _, dir := range paths {
		deadline := time.Now().Add(time.Second)
		for {
			err := syscall.Rmdir(dir)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				last = fmt.Errorf("remove cgroup %s: %w", dir, err)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return last
}

// oomKilled says whether the kernel killed a process of these cgroups for
// want of memory: v2's memory.events, or v1's memory.oom_control, count it.
func oomKilled(paths []string) bool {
	for _, dir := range paths {
		for _, file := range []string{"memory.events", "memory.oom_control"} {
			f, err := os.Open(filepath.Join(dir, file))
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == "oom_kill" && v != "0" {
					f.Close()
					return true
				}
			}
			f.Close()
		}
	}
	return false
}
