package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// jobCompletions is how many completions a job's current run wants: its
// replicas (replicated-job), or one per node that has or had a task of it
// (global-job: those still to complete and those completed, as Docker counts).
func jobCompletions(s api.ServiceInfo) uint64 {
	if s.Spec.Mode == api.ModeGlobalJob {
		return s.Desired + uint64(s.Completed)
	}
	return s.Spec.Replicas
}

// replicasColumn is service ls's REPLICAS in docker's shapes: "2/3", "2/3 (max
// 1 per node)", and for jobs "1/2 (3/5 completed)": running over desired, then
// the current run's completions over those it wants.
func replicasColumn(s api.ServiceInfo) string {
	switch {
	case s.Spec.Mode.IsJob():
		return fmt.Sprintf("%d/%d (%d/%d completed)", s.Running, s.Desired, s.Completed, jobCompletions(s))
	case s.Spec.Mode == api.ModeReplicated && s.Spec.MaxReplicasPerNode > 0:
		return fmt.Sprintf("%d/%d (max %d per node)", s.Running, s.Desired, s.Spec.MaxReplicasPerNode)
	}
	return fmt.Sprintf("%d/%d", s.Running, s.Desired)
}

// waitJob follows a job's current run with blocking reads until every
// completion it wants is made, showing progress; it fails with the reason when
// a task is rejected, a slot failed and its restart policy gives up, or tasks
// stay pending. A job may run long: only the caller's context bounds the wait.
func waitJob(ctx context.Context, cl *client.Client, name string, out io.Writer) error {
	last := ""
	pendingSince := time.Time{}
	return followService(ctx, cl, name, "stopped waiting for the job", func(tasks []api.Task, svc api.ServiceInfo) (bool, error) {
		want := jobCompletions(svc)
		if line := fmt.Sprintf("%s: %d/%d completed, %d running", name, svc.Completed, want, svc.Running); line != last {
			fmt.Fprintln(out, line)
			last = line
		}
		// A global job is done once no node's task is left to complete; until
		// the orchestrator made its tasks, none is left either, so one at least
		// must have completed.
		if svc.Spec.Mode == api.ModeReplicatedJob && uint64(svc.Completed) >= want ||
			svc.Spec.Mode == api.ModeGlobalJob && svc.Desired == 0 && svc.Completed > 0 {
			fmt.Fprintf(out, "%s: job complete\n", name)
			return true, nil
		}
		var pending []*api.Task
		ofRun := 0
		for _, t := range currentTasks(tasks) {
			if !svc.InJobRun(t) {
				continue // an earlier run's
			}
			ofRun++
			switch st := t.Status.State; {
			case st == api.TaskRejected:
				return false, fmt.Errorf("%s: task %s rejected: %s", name, taskName(t), firstNonEmpty(t.Status.Err, t.Status.Message))
			case st.Terminal() && st != api.TaskComplete && st != api.TaskOrphaned && givesUp(svc.Spec.RestartPolicy, t):
				return false, fmt.Errorf("%s: task %s %s: %s; its restart policy gives up, so the job cannot complete", name, taskName(t), st, firstNonEmpty(t.Status.Err, t.Status.Message))
			case st == api.TaskPending:
				pending = append(pending, t)
			}
		}
		stuck := len(pending) > 0 || svc.Spec.Mode == api.ModeGlobalJob && ofRun == 0
		switch {
		case !stuck:
			pendingSince = time.Time{}
		case pendingSince.IsZero():
			pendingSince = time.Now()
		case time.Since(pendingSince) < 15*time.Second:
		case len(pending) > 0:
			return false, fmt.Errorf("%s: %d task(s) cannot be placed: %s", name, len(pending), pending[0].PendingReason)
		default:
			return false, fmt.Errorf("%s: no node runs the job: none is ready, active and matching its constraints", name)
		}
		return false, nil
	})
}

// givesUp reports whether the restart policy leaves a failed task's slot as it
// is: the orchestrator makes a retry at once otherwise (held, if it must wait),
// so a failed task that is still its slot's newest is final only then. A
// windowed policy may try again later: that is not giving up.
func givesUp(p api.RestartPolicy, t *api.Task) bool {
	return p.Condition == api.RestartNone || p.MaxAttempts > 0 && p.Window == 0 && t.Attempt >= p.MaxAttempts
}
