package worker

import (
	"errors"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// Files puts a task's secrets and configs where its engine shows them
// (node/taskfiles), from the values of the session answer, before the task
// starts; and drops them once the task's workload is gone.
type Files interface {
	// Write places t's files; an error wrapping engine.ErrRejected means this
	// node cannot keep them at all.
	Write(t *api.Task, as *api.Assignments) error
	Remove(taskID string) error
	// Tasks lists the tasks that have files.
	Tasks() ([]string, error)
}

func hasFiles(t *api.Task) bool { return len(t.Spec.Secrets)+len(t.Spec.Configs) > 0 }

// writeFiles places t's files, or reports why it cannot start.
func (a *Agent) writeFiles(t *api.Task) bool {
	if !hasFiles(t) {
		return true
	}
	err := errors.New("this node keeps no secret or config files")
	if a.cfg.Files != nil {
		err = a.cfg.Files.Write(t, a.Latest())
	}
	switch {
	case err == nil:
		return true
	case errors.Is(err, engine.ErrRejected) || a.cfg.Files == nil:
		a.log.Warn("task rejected", "task", t.ID, "err", err)
		a.report(t.ID, api.TaskStatus{State: api.TaskRejected, Message: "rejected", Err: err.Error()})
	default:
		a.log.Warn("task files", "task", t.ID, "err", err)
		a.report(t.ID, api.TaskStatus{State: api.TaskFailed, Message: "secrets and configs", Err: err.Error()})
	}
	return false
}

// dropFiles removes the files of tasks that no longer need them: no workload
// of theirs is left, and they are not (or no longer) meant to run here.
func (a *Agent) dropFiles(assigned map[string]*api.Task, byTask map[string]engine.Instance) {
	if a.cfg.Files == nil {
		return
	}
	ids, err := a.cfg.Files.Tasks()
	if err != nil {
		a.log.Warn("list task files", "err", err)
		return
	}
	for _, id := range ids {
		if _, running := byTask[id]; running {
			continue
		}
		if t, ok := assigned[id]; ok && !t.Status.State.Terminal() && t.DesiredState <= api.TaskRunning {
			continue
		}
		a.mu.Lock()
		busy := a.starting[id] || a.starting["stop:"+id]
		a.mu.Unlock()
		if busy {
			continue
		}
		if err := a.cfg.Files.Remove(id); err != nil {
			a.log.Warn("remove task files", "task", id, "err", err)
		}
	}
}
