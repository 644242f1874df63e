package process

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// record is what survives the daemon on disk, one JSON file per task, so that a
// restarted worker can find, check and adopt the processes it started.
type record struct {
	TaskID      string `json:"task_id"`
	ServiceName string `json:"service"`
	NodeID      string `json:"node_id"`
	Slot        uint64 `json:"slot"`
	Program     string `json:"program"`
	PID         int    `json:"pid"`
	PGID        int    `json:"pgid"`
	// StartTicks is field 22 of /proc/<pid>/stat at start: a PID reused by another
	// process after a reboot or wrap-around has a different value.
	StartTicks uint64            `json:"start_ticks"`
	StartedAt  time.Time         `json:"started_at"`
	Addr       string            `json:"addr"`
	Ports      []api.PortBinding `json:"ports,omitempty"`
	// StopSignal and StopGrace are the spec's: Stop sends the signal, waits the
	// grace, then kills (unset: SIGTERM and the engine's StopTimeout).
	StopSignal int            `json:"stop_signal,omitempty"`
	StopGrace  *time.Duration `json:"stop_grace,omitempty"`
	// Cgroups are the task's own cgroup directories (limits), removed with it.
	Cgroups []string `json:"cgroups,omitempty"`

	// Set once the process is known to have exited.
	Exited     bool      `json:"exited,omitempty"`
	ExitCode   int       `json:"exit_code,omitempty"`
	Err        string    `json:"err,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

func (e *Engine) recordPath(taskID string) string {
	return filepath.Join(e.dir, taskID+".json")
}

func (e *Engine) logPath(taskID string) string {
	return filepath.Join(e.dir, taskID+".log")
}

// writeRecord replaces the task's record atomically (write, fsync, rename), so a
// daemon killed mid-write leaves the old record or the new one, never half of one.
func (e *Engine) writeRecord(r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record of task %s: %w", r.TaskID, err)
	}
	path := e.recordPath(r.TaskID)
	tmp, err := os.CreateTemp(e.dir, r.TaskID+".json.tmp*")
	if err != nil {
		return fmt.Errorf("write record of task %s: %w", r.TaskID, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write record of task %s: %w", r.TaskID, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync record of task %s: %w", r.TaskID, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write record of task %s: %w", r.TaskID, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write record of task %s: %w", r.TaskID, err)
	}
	return nil
}

func readRecord(path string) (record, error) {
	var r record
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode %s: %w", path, err)
	}
	return r, nil
}
