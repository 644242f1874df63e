// Package worker is the agent on every node that runs its assigned tasks through an
// engine and reports what it observes.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/engine"
)

// Manager is the agent's view of the cluster: a session that hands out assignments
// and takes status reports.
type Manager interface {
	Assignments(ctx context.Context, nodeID string, index uint64, wait time.Duration) (api.Assignments, error)
	ReportStatus(ctx context.Context, rep api.StatusReport) error
}

// ErrNodeRemoved is returned by a Manager when this node is no longer part of the
// cluster (node rm): the agent then stops everything it runs.
var ErrNodeRemoved = errors.New("node removed from the cluster")

// Config wires an agent.
type Config struct {
	NodeID string
	// NodeHostname is this node's name as the cluster knows it, for templates
	// ({{.Node.Hostname}}).
	NodeHostname string
	Engine       engine.Engine
	Manager      Manager
	Logger       *slog.Logger
	// OnAssignments sees every new assignment set (DNS and LB tables follow it).
	OnAssignments func(api.Assignments)
	// Clock is time.Now unless a test sets it.
	Clock func() time.Time
	// Images prepares a task before the engine starts it (prepare.go); nil for
	// an engine that needs nothing fetched.
	Images Preparer
	// Files writes tasks' secrets and configs before they start (files.go).
	Files Files
	// ReportQueue is how many status changes may wait for the reporter (0:
	// 4096); a process running many agents (hollow nodes) makes it small.
	ReportQueue int
}

// Agent runs one node's tasks.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	assigned map[string]*api.Task // by task ID, from the last session answer
	synced   bool                 // got at least one answer: safe to remove strays
	starting map[string]bool
	reported map[string]reported
	checks   map[string]*healthCheck // worker-run health checks, by task ID
	// ended holds the status to report for a workload the worker itself ended
	// (a failed health check), rather than the exit code the kill caused.
	ended map[string]api.TaskStatus

	// outage is set while the engine does not answer (outage.go); lastListed
	// and lastRunning are its last answer.
	outage      *outage
	lastListed  time.Time
	lastRunning map[string]bool

	wake    chan struct{}
	reports chan api.TaskOp
	sem     chan struct{} // bounds concurrent starts
	prep    prepState

	// haltCtx ends with StopAll (leave, under mu): no task starts after it, and
	// starts under way are cancelled and waited for, so nothing outlives the stop.
	starts       sync.WaitGroup
	haltCtx      context.Context
	cancelStarts context.CancelFunc
}

// New returns an agent; Run starts it.
func New(cfg Config) *Agent {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.ReportQueue <= 0 {
		cfg.ReportQueue = 4096
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, // the caller owns the component key
		assigned: map[string]*api.Task{}, starting: map[string]bool{}, reported: map[string]reported{},
		checks: map[string]*healthCheck{}, ended: map[string]api.TaskStatus{},
		wake: make(chan struct{}, 1), reports: make(chan api.TaskOp, cfg.ReportQueue), sem: make(chan struct{}, 8)}
	a.haltCtx, a.cancelStarts = context.WithCancel(context.Background())
	return a
}

// Run keeps the session, reconciles the engine with the assignments and reports
// status until ctx ends. Tasks keep running after it returns.
func (a *Agent) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); a.session(ctx) }()
	go func() { defer wg.Done(); a.reporter(ctx) }()
	go func() { defer wg.Done(); a.reconcileLoop(ctx) }()
	wg.Wait()
	return nil
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// session long-polls the assignments; on errors it keeps the last set, so running
// tasks are untouched while managers are unreachable.
func (a *Agent) session(ctx context.Context) {
	var index uint64
	backoff := 200 * time.Millisecond
	var removedSince time.Time
	for ctx.Err() == nil {
		as, err := a.cfg.Manager.Assignments(ctx, a.cfg.NodeID, index, 20*time.Second)
		if errors.Is(err, ErrNodeRemoved) {
			// A manager just behind the leader may not know a freshly joined node
			// yet: act only when the answer persists.
			if removedSince.IsZero() {
				removedSince = a.cfg.Clock()
			} else if a.cfg.Clock().Sub(removedSince) > 3*time.Second {
				a.mu.Lock()
				if len(a.assigned) > 0 || !a.synced {
					a.log.Warn("this node was removed from the cluster; stopping its tasks")
				}
				a.assigned, a.synced = map[string]*api.Task{}, true
				a.mu.Unlock()
				a.poke()
			}
		} else {
			removedSince = time.Time{}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Debug("session", "err", err)
			wait := backoff
			if !removedSince.IsZero() {
				wait = 500 * time.Millisecond // confirm a removal promptly
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			backoff = min(backoff*2, time.Second)
			index = 0 // the manager we reach next may be at another index
			continue
		}
		backoff = 200 * time.Millisecond
		if as.Index == index {
			continue
		}
		index = as.Index
		a.prep.latest.Store(&as)
		m := make(map[string]*api.Task, len(as.Tasks))
		for _, t := range as.Tasks {
			m[t.ID] = t
		}
		a.mu.Lock()
		a.assigned, a.synced = m, true
		a.mu.Unlock()
		if a.cfg.OnAssignments != nil {
			a.cfg.OnAssignments(as)
		}
		a.poke()
	}
}

func (a *Agent) reconcileLoop(ctx context.Context) {
	changes := a.cfg.Engine.Changes(ctx)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-changes:
		case <-tick.C:
		}
		if err := a.reconcile(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("reconcile", "err", err)
		}
	}
}

// reconcile compares what the engine runs with what is assigned and acts on the
// difference; all decisions are made from one List call.
func (a *Agent) reconcile(ctx context.Context) error {
	insts, err := a.cfg.Engine.List(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.engineGone(err) // nothing is known, so nothing is done (outage.go)
		}
		return nil
	}
	byTask := make(map[string]engine.Instance, len(insts))
	for _, in := range insts {
		byTask[in.TaskID] = in
	}
	a.mu.Lock()
	assigned, synced := a.assigned, a.synced
	a.mu.Unlock()
	if !synced {
		return nil // never act before we know what we own: adoption depends on it
	}
	restore := a.listed(insts)
	live := map[string]bool{} // tasks running and meant to: their checks go on
	for _, t := range assigned {
		in, exists := byTask[t.ID]
		if t.DesiredState > api.TaskRunning {
			if exists && in.State == api.TaskRunning {
				drain := time.Duration(0)
				if t.Status.State == api.TaskRunning && healthOK(t.Status.Health) {
					// It served until this change took it out of DNS and the VIP:
					// give every node's balancer a moment to hear that before the
					// task stops accepting, or a connection made meanwhile fails.
					drain = min(DrainDelay, t.Spec.StopGrace())
				}
				a.stopThen(ctx, t.ID, api.TaskStatus{State: api.TaskShutdown, Message: "shut down"}, drain)
			} else if !t.Status.State.Terminal() {
				a.report(t.ID, api.TaskStatus{State: api.TaskShutdown, Message: "shut down"})
			}
			continue
		}
		if t.Status.State.Terminal() || t.DesiredState < api.TaskRunning {
			continue // a held task (desired ready) is not started yet
		}
		if restore[t.ID] || a.restoring(t.ID) {
			// Its engine went away and took it down: started again (outage.go).
			if restore[t.ID] && (!exists || in.State != api.TaskRunning) {
				a.restoreAsync(ctx, t)
			}
			continue
		}
		a.mu.Lock()
		ended, endedByUs := a.ended[t.ID]
		inFlight := a.starting[t.ID]
		a.mu.Unlock()
		switch {
		case inFlight:
			// Its start is under way: a container between create and start is
			// no exit. The start reports how it went.
		case endedByUs && (!exists || in.State != api.TaskRunning):
			a.report(t.ID, ended)
		case !exists || in.State < api.TaskRunning && t.Status.State < api.TaskRunning:
			// (A container created and never started, by a worker that died in
			// between, is started afresh: Start removes it first.)
			if t.Status.State >= api.TaskRunning {
				a.report(t.ID, api.TaskStatus{State: api.TaskFailed, Message: "workload disappeared", Err: "its " + a.cfg.Engine.Name() + " workload no longer exists"})
				continue
			}
			a.startAsync(ctx, t)
		case in.State == api.TaskRunning:
			a.ensureCheck(ctx, t, in)
			st := a.runningStatus(t, in)
			if t.Status.State < api.TaskRunning || t.Status.Health != st.Health {
				// Adopted after a restart, our RUNNING report was lost, or the
				// task's health changed.
				a.report(t.ID, st)
			}
			if st.Health == api.HealthUnhealthy {
				a.endUnhealthy(ctx, t)
			}
			live[t.ID] = true
		case in.State == api.TaskStarting:
			// Created, not yet started: our own start in progress (startAsync is
			// then a no-op), or one a worker that died left behind, which Start
			// recreates. Not an exit: reporting it "complete" failed rolling
			// updates whose new task was still being created.
			a.startAsync(ctx, t)
		default:
			a.report(t.ID, exitStatus(in))
		}
	}
	a.dropChecks(live)
	for id, in := range byTask {
		if _, ok := assigned[id]; !ok {
			a.log.Info("removing workload no longer assigned", "task", id, "id", in.ID)
			if err := a.cfg.Engine.Stop(ctx, id); err != nil {
				a.log.Warn("remove stray workload", "task", id, "err", err)
			} else {
				delete(byTask, id) // gone: its files may go too
			}
		}
	}
	a.dropFiles(assigned, byTask)
	a.mu.Lock()
	for id := range a.reported {
		if _, ok := assigned[id]; !ok {
			delete(a.reported, id)
			delete(a.ended, id)
		}
	}
	a.mu.Unlock()
	return nil
}

func runningStatus(in engine.Instance) api.TaskStatus {
	return api.TaskStatus{State: api.TaskRunning, Message: "running", ContainerID: in.ID, Addr: in.Addr, Ports: in.Ports, ImageID: in.ImageID}
}

func exitStatus(in engine.Instance) api.TaskStatus {
	st := api.TaskStatus{State: api.TaskComplete, Message: "finished", ExitCode: in.ExitCode, ContainerID: in.ID, Err: in.Err}
	if in.State == api.TaskFailed || in.ExitCode != 0 {
		st.State, st.Message = api.TaskFailed, fmt.Sprintf("exited with code %d", in.ExitCode)
		if st.Err == "" {
			st.Err = st.Message
		}
	}
	return st
}

func (a *Agent) startAsync(ctx context.Context, t *api.Task) {
	a.mu.Lock()
	if a.starting[t.ID] || a.haltCtx.Err() != nil {
		a.mu.Unlock()
		return
	}
	a.starting[t.ID] = true
	a.starts.Add(1)
	a.mu.Unlock()
	if a.cfg.Images != nil {
		a.report(t.ID, api.TaskStatus{State: api.TaskPreparing, Message: "preparing"})
	} else {
		a.report(t.ID, api.TaskStatus{State: api.TaskStarting, Message: "starting"})
	}
	go func() {
		defer a.starts.Done()
		defer func() {
			a.mu.Lock()
			delete(a.starting, t.ID)
			a.mu.Unlock()
		}()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(a.haltCtx, cancel)()
		t, ok := a.prepare(ctx, t)
		if !ok || !a.writeFiles(t) {
			return
		}
		select {
		case a.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-a.sem }()
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		in, err := a.startExpanded(sctx, t)
		cancel()
		switch {
		case errors.Is(err, engine.ErrRejected):
			a.log.Warn("task rejected", "task", t.ID, "err", err)
			a.report(t.ID, api.TaskStatus{State: api.TaskRejected, Message: "rejected", Err: err.Error()})
		case err != nil && a.startFailedByOutage(ctx):
			// The engine went away: started once it is back (outage.go).
			a.log.Info("task start interrupted: its engine went away", "task", t.ID, "err", err)
		case err != nil:
			a.log.Warn("task start failed", "task", t.ID, "err", err)
			a.report(t.ID, api.TaskStatus{State: api.TaskFailed, Message: "start failed", Err: err.Error()})
		default:
			a.log.Info("task started", "task", t.ID, "service", t.ServiceName, "slot", t.Slot, "id", in.ID)
			a.report(t.ID, a.runningStatus(t, in))
			a.poke() // start its health check
		}
	}()
}

// DrainDelay is how long a task that was serving keeps running after it left the
// endpoint table, before its stop signal: the table reaches every node's balancer
// within milliseconds, and a connection made to a task that stops accepting fails.
// (Kubernetes users add a preStop sleep for the same reason.)
var DrainDelay = 500 * time.Millisecond

// stopThen stops a task's workload after drain (the engine then waits out its
// stop grace period) and reports final.
func (a *Agent) stopThen(ctx context.Context, taskID string, final api.TaskStatus, drain time.Duration) {
	a.mu.Lock()
	if a.starting["stop:"+taskID] {
		a.mu.Unlock()
		return
	}
	a.starting["stop:"+taskID] = true
	a.mu.Unlock()
	go func() {
		defer func() {
			a.mu.Lock()
			delete(a.starting, "stop:"+taskID)
			a.mu.Unlock()
		}()
		if drain > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(drain):
			}
		}
		if err := a.cfg.Engine.Stop(ctx, taskID); err != nil {
			a.log.Warn("stop task", "task", taskID, "err", err)
			return
		}
		a.log.Info("task stopped", "task", taskID)
		a.report(taskID, final)
	}()
}

// reported is what the agent last said of a task.
type reported struct {
	state  api.TaskState
	health api.Health
}

// report queues a status change unless it says nothing new: an earlier state, or
// the same state and health again.
func (a *Agent) report(taskID string, st api.TaskStatus) {
	a.mu.Lock()
	if prev, ok := a.reported[taskID]; ok && (prev.state > st.State || prev.state == st.State && prev.health == st.Health) {
		a.mu.Unlock()
		return
	}
	a.reported[taskID] = reported{st.State, st.Health}
	a.mu.Unlock()
	st.Timestamp = a.cfg.Clock().UTC()
	a.reports <- api.TaskOp{Kind: api.TaskOpStatus, TaskID: taskID, NodeID: a.cfg.NodeID, Status: st}
}

// reporter batches status changes: whatever queued within a short gap goes to the
// leader as one Raft entry. Failed sends are retried; status only moves forward, so
// a retry can never undo a newer report.
func (a *Agent) reporter(ctx context.Context) {
	var pending []api.TaskOp
	for {
		if len(pending) == 0 {
			select {
			case <-ctx.Done():
				return
			case op := <-a.reports:
				pending = append(pending, op)
			}
		}
		gap := time.NewTimer(20 * time.Millisecond)
	collect:
		for len(pending) < 512 {
			select {
			case op := <-a.reports:
				pending = append(pending, op)
			case <-gap.C:
				break collect
			}
		}
		gap.Stop()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.cfg.Manager.ReportStatus(rctx, api.StatusReport{Ops: pending})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Debug("report status", "ops", len(pending), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		pending = pending[:0]
	}
}

// StopAll stops every workload of this node (swarmlet leave); the agent starts
// nothing after it.
func (a *Agent) StopAll(ctx context.Context) error {
	a.mu.Lock()
	a.cancelStarts() // under mu: a start either counted itself in starts or sees the halt
	a.mu.Unlock()
	done := make(chan struct{})
	go func() { a.starts.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("wait for task starts under way: %w", ctx.Err())
	}
	insts, err := a.cfg.Engine.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, in := range insts {
		if err := a.cfg.Engine.Stop(ctx, in.TaskID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Logs copies one local task's output.
func (a *Agent) Logs(ctx context.Context, taskID string, opt engine.LogOptions, w io.Writer) error {
	return a.cfg.Engine.Logs(ctx, taskID, opt, w)
}
