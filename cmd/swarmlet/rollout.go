package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
)

// waitRollout follows an update (or a rollback) that made the service's spec
// version `version`, with blocking reads of its tasks, until the update status
// says it is done; it shows progress as waitConverged does. An update the cluster
// rolled back by itself (its failure action) is followed to the end of the
// rollback and reported as an error; so is a pause. A later change of the service
// by someone else ends the wait.
func waitRollout(ctx context.Context, cl *client.Client, name string, version uint64, isRollback bool, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	tty := isTerminal(out)
	last, drawn := "", 0
	reason := "" // why the cluster rolled the update back, once it did
	return followService(ctx, cl, name, "the rollout did not finish in time", func(tasks []api.Task, svc api.ServiceInfo) (bool, error) {
		st := svc.UpdateStatus
		autoRollback := svc.SpecVersion == version+1 && !isRollback && st != nil && st.State.Rollback() && strings.Contains(st.Message, "update rolled back")
		if st == nil || (svc.SpecVersion != version && !autoRollback) {
			return false, fmt.Errorf("%s: the service was changed again meanwhile (now at spec version %d); follow it with 'swarmlet service inspect %s'", name, svc.SpecVersion, name)
		}
		if autoRollback && st.State == api.UpdateRollbackStarted {
			reason = st.Message
		}
		p := rolloutProgress(svc, tasks)
		line := fmt.Sprintf("%s: %s: %d/%d updated, %d updating, %d serving", name, st.State, p.updated, p.slots, p.updating, p.serving)
		if tty {
			if drawn > 0 {
				fmt.Fprintf(out, "\033[%dA", drawn)
			}
			drawn = 0
			fmt.Fprintf(out, "\033[2K%s\n", line)
			drawn++
			for _, t := range p.cur {
				health := ""
				if t.Status.Health != "" && t.Status.Health != api.HealthNone {
					health = " (" + string(t.Status.Health) + ")"
				}
				fmt.Fprintf(out, "\033[2K  %s\t%-9s%s %s\n", taskName(t), t.Status.State, health, firstNonEmpty(t.Status.Err, t.PendingReason))
				drawn++
			}
		} else if line != last {
			fmt.Fprintln(out, line)
			last = line
		}
		switch st.State {
		case api.UpdateCompleted:
			fmt.Fprintf(out, "%s: update completed\n", name)
			return true, nil
		case api.UpdateRollbackCompleted:
			if autoRollback {
				return false, fmt.Errorf("%s: %s", name, firstNonEmpty(reason, st.Message))
			}
			fmt.Fprintf(out, "%s: rollback completed\n", name)
			return true, nil
		case api.UpdatePaused, api.UpdateRollbackPaused:
			return false, fmt.Errorf("%s: %s; fix it and run 'swarmlet service update %s' again, or 'swarmlet service rollback %s'", name, st.Message, name, name)
		}
		return false, nil
	})
}

type progress struct {
	slots, updated, updating, serving int
	cur                               []*api.Task
}

// rolloutProgress counts the slots whose task runs the spec and serves (updated),
// those on their way (updating), and the slots serving at all.
func rolloutProgress(svc api.ServiceInfo, tasks []api.Task) progress {
	p := progress{slots: int(svc.Desired), cur: currentTasks(tasks)}
	type slotView struct{ updated, updating, serving bool }
	slots := map[string]*slotView{}
	for i := range tasks {
		t := &tasks[i]
		if t.DesiredState > api.TaskRunning || t.Status.State.Terminal() {
			continue
		}
		k := taskName(t)
		s := slots[k]
		if s == nil {
			s = &slotView{}
			slots[k] = s
		}
		atSpec := api.SameTaskSpec(withoutPin(t.Spec), svc.Spec)
		serves := t.DesiredState == api.TaskRunning && t.Status.State == api.TaskRunning &&
			(t.Status.Health == "" || t.Status.Health == api.HealthNone || t.Status.Health == api.HealthHealthy)
		s.serving = s.serving || serves
		switch {
		case atSpec && serves:
			s.updated = true
		case atSpec:
			s.updating = true
		}
	}
	for _, s := range slots {
		if s.updated {
			p.updated++
		} else if s.updating {
			p.updating++
		}
		if s.serving {
			p.serving++
		}
	}
	return p
}

// withoutPin is a global task's spec without the node.id constraint it is pinned by.
func withoutPin(spec api.ServiceSpec) api.ServiceSpec {
	if n := len(spec.Constraints); n > 0 && strings.HasPrefix(spec.Constraints[n-1], "node.id==") {
		spec.Constraints = spec.Constraints[:n-1]
	}
	return spec
}
