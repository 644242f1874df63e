package process

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A start writes an intent file before the process exists and removes it once
// the process's record is written. A daemon killed in between leaves a process no
// record names: on the next start the engine finds it by its environment and kills
// it, so the worker's fresh start of the task is the only one (found by the Kill
// scenario: a -9 in that window left a task running for a removed service).

func (e *Engine) intentPath(taskID string) string { return filepath.Join(e.dir, taskID+".starting") }

func (e *Engine) writeIntent(taskID string) error {
	return os.WriteFile(e.intentPath(taskID), nil, 0o600)
}

func (e *Engine) clearIntent(taskID string) { _ = os.Remove(e.intentPath(taskID)) }

// reapUnrecorded kills the processes of starts that never got a record.
func (e *Engine) reapUnrecorded() {
	paths, _ := filepath.Glob(filepath.Join(e.dir, "*.starting"))
	for _, path := range paths {
		taskID := strings.TrimSuffix(filepath.Base(path), ".starting")
		if _, ok := e.tasks[taskID]; !ok {
			for _, pid := range pidsOfTask(e.cfg.NodeID, taskID) {
				_ = killGroup(pid, syscall.SIGKILL)
				e.log.Warn("killed a task process started without a record", "task", taskID, "pid", pid)
			}
		}
		_ = os.Remove(path)
	}
}

// pidsOfTask finds processes whose environment names this node and task (the
// engine's values come last, so they win over any the task's spec set).
func pidsOfTask(nodeID, taskID string) []int {
	dirs, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil {
			continue
		}
		env := map[string]string{}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if k, v, ok := strings.Cut(string(kv), "="); ok {
				env[k] = v
			}
		}
		if env["SWARMLET_TASK_ID"] == taskID && env["SWARMLET_NODE_ID"] == nodeID {
			out = append(out, pid)
		}
	}
	return out
}
