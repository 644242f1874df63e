package worker

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// Health checks the worker runs itself, for any engine: an HTTP GET or a TCP
// connect to the task's port, and the health command for engines that do not run
// it (the process engine; Docker runs HEALTHCHECK and reports it). They follow
// Docker's rules: failures within the start period do not count until a check has
// passed, and Retries failures in a row make the task unhealthy. An unhealthy task
// leaves DNS and the VIP at once (its report says so) and is then stopped and
// reported failed, so the orchestrator replaces it.

// firstProbe is how soon after a task starts its first check runs: Docker waits a
// whole interval, which with its 30 s default keeps a new task out of service for
// that long.
const firstProbe = 100 * time.Millisecond

type healthCheck struct {
	cancel context.CancelFunc
	health api.Health // guarded by Agent.mu
	output string     // the last failure, for the report
}

type probe func(ctx context.Context) error

// probeFor is the check the worker runs for t, or nil if it runs none.
func (a *Agent) probeFor(t *api.Task, in engine.Instance) probe {
	h := t.Spec.Health
	if h == nil || h.Disable {
		return nil
	}
	switch {
	case h.HTTPPath != "":
		url := "http://" + in.CheckAddr(t.Spec.CheckPort()) + h.HTTPPath
		return func(ctx context.Context) error { return probeHTTP(ctx, url) }
	case h.TCP:
		addr := in.CheckAddr(t.Spec.CheckPort())
		return func(ctx context.Context) error {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			return c.Close()
		}
	case len(h.Test) > 1 && (h.Test[0] == "CMD" || h.Test[0] == "CMD-SHELL"):
		if ce, ok := a.cfg.Engine.(engine.CommandHealth); ok && ce.RunsHealthCommands() {
			return nil // the engine runs it
		}
		args := h.Test[1:]
		if h.Test[0] == "CMD-SHELL" {
			args = []string{"/bin/sh", "-c", strings.Join(h.Test[1:], " ")}
		}
		env := append([]string{"SWARMLET_TASK_ID=" + t.ID, "SWARMLET_ADDR=" + in.HostAddr}, portEnv(in)...)
		return func(ctx context.Context) error {
			cmd := exec.CommandContext(ctx, args[0], args[1:]...)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
	return nil
}

// portEnv gives a health command the task's own PORT variables.
func portEnv(in engine.Instance) []string {
	var env []string
	for i, p := range in.Ports {
		if i == 0 {
			env = append(env, fmt.Sprintf("PORT=%d", p.HostPort))
		}
		env = append(env, fmt.Sprintf("PORT_%d=%d", p.TargetPort, p.HostPort))
	}
	return env
}

func healthOK(h api.Health) bool { return h == "" || h == api.HealthNone || h == api.HealthHealthy }

func probeHTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	// A fresh connection each time: a kept-alive one could outlive the server's
	// listener and pass a check the next client would fail.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// ensureCheck starts the worker's check of a running task, once.
func (a *Agent) ensureCheck(ctx context.Context, t *api.Task, in engine.Instance) {
	a.mu.Lock()
	_, running := a.checks[t.ID]
	a.mu.Unlock()
	if running {
		return
	}
	p := a.probeFor(t, in)
	if p == nil {
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	hc := &healthCheck{cancel: cancel, health: api.HealthStarting}
	if t.Status.State == api.TaskRunning && t.Status.Health == api.HealthHealthy && t.Status.ContainerID == in.ID {
		// Adopted after a daemon restart: the same workload passed its check
		// before; it keeps serving until a check says otherwise.
		hc.health = api.HealthHealthy
	}
	a.mu.Lock()
	a.checks[t.ID] = hc
	a.mu.Unlock()
	go a.runCheck(cctx, t.ID, *t.Spec.Health, p, hc)
}

// dropChecks ends the checks of tasks no longer running.
func (a *Agent) dropChecks(live map[string]bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, hc := range a.checks {
		if !live[id] {
			hc.cancel()
			delete(a.checks, id)
		}
	}
}

func (a *Agent) runCheck(ctx context.Context, taskID string, h api.HealthCheck, p probe, hc *healthCheck) {
	interval, timeout, retries := h.Effective()
	start := a.cfg.Clock()
	a.mu.Lock()
	state := hc.health
	a.mu.Unlock()
	fails, passed := 0, state == api.HealthHealthy
	timer := time.NewTimer(min(firstProbe, interval))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := p(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		next := state
		switch {
		case err != nil && a.engineAway():
			// Its engine is gone (outage.go): a failure says nothing of the task.
		case err == nil:
			fails, passed, next = 0, true, api.HealthHealthy
		case !passed && a.cfg.Clock().Sub(start) < h.StartPeriod:
			// Still starting up: a failure does not count yet.
		default:
			if fails++; fails >= retries {
				next = api.HealthUnhealthy
			}
		}
		if next != state {
			state = next
			a.mu.Lock()
			hc.health = state
			if err != nil {
				hc.output = err.Error()
			}
			a.mu.Unlock()
			a.log.Info("task health", "task", taskID, "health", state, "err", err)
			a.poke()
		}
		timer.Reset(interval)
	}
}

// runningStatus is a running task's status, with its health: the engine's own
// check (Docker) and the worker's, the worse of the two.
func (a *Agent) runningStatus(t *api.Task, in engine.Instance) api.TaskStatus {
	st := runningStatus(in)
	healths := []api.Health{in.Health}
	a.mu.Lock()
	if hc := a.checks[t.ID]; hc != nil {
		healths = append(healths, hc.health)
	} else if a.probeFor(t, in) != nil {
		healths = append(healths, api.HealthStarting) // its check has not run yet
	}
	a.mu.Unlock()
	for _, h := range healths {
		switch {
		case h == api.HealthUnhealthy:
			st.Health = h
		case h == api.HealthStarting && st.Health != api.HealthUnhealthy:
			st.Health = h
		case h == api.HealthHealthy && st.Health == "":
			st.Health = h
		}
	}
	return st
}

// endUnhealthy stops a task whose health check failed; it is reported failed,
// with what the check said, once its workload is gone.
func (a *Agent) endUnhealthy(ctx context.Context, t *api.Task) {
	a.mu.Lock()
	why := "health check failed"
	if hc := a.checks[t.ID]; hc != nil && hc.output != "" {
		why += ": " + hc.output
	}
	final := api.TaskStatus{State: api.TaskFailed, Message: "unhealthy", Err: why, Health: api.HealthUnhealthy}
	_, already := a.ended[t.ID]
	a.ended[t.ID] = final
	a.mu.Unlock()
	if !already {
		a.log.Warn("stopping unhealthy task", "task", t.ID, "service", t.ServiceName, "slot", t.Slot, "err", why)
	}
	// It left DNS and the VIP with the report of its health just sent; it may
	// still answer, so the balancers get a moment to hear before it stops, as
	// for any task that served. (If it died, its exit is reported at once.)
	a.stopThen(ctx, t.ID, final, min(DrainDelay, t.Spec.StopGrace()))
}
