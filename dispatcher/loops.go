package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// Retry bounds for a failed ApplyTaskOps (lost quorum, leadership changing hands):
// the loop tries again rather than exit, since the node stops it when leadership goes.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 5 * time.Second
)

// maxPassOps bounds what one pass of a loop commits in one entry: twenty
// services of a thousand tasks created at once made a 20 MB entry, which the
// followers took seconds to decode and apply while the leader waited on them
// (and lost its lease). The orchestrator stops adding services past it; the
// scheduler splits its placements into entries of this size.
const maxPassOps = 1024

// Orchestrator is the leader's loop that turns services into tasks. Each pass
// reconciles every service on one snapshot and commits all resulting ops as one batch.
type Orchestrator struct {
	store Store
	log   *slog.Logger
	clock func() time.Time
	// NewID names new tasks; it defaults to 128 random bits in lower-case base32.
	NewID func() string
	// OnPass, if set, observes each pass.
	OnPass PassFunc
}

// NewOrchestrator returns an orchestrator over store. clock is read once per pass.
// logger should carry the component key (node adds component=orchestrator).
func NewOrchestrator(store Store, logger *slog.Logger, clock func() time.Time) *Orchestrator {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = time.Now
	}
	return &Orchestrator{store: store, log: logger, clock: clock, NewID: NewTaskID}
}

// Run reconciles on every store change and whenever a restart delay runs out, until
// ctx ends; it then returns nil.
func (o *Orchestrator) Run(ctx context.Context) error {
	o.log.Info("orchestrator started")
	defer o.log.Info("orchestrator stopped")
	return runLoop(ctx, o.store, o.log, func(ctx context.Context) (time.Time, error) {
		start := time.Now()
		ops, updates, next := o.plan(o.store.Snapshot(), o.clock())
		if len(ops) > 0 {
			o.log.Debug("applying task ops", "ops", len(ops))
			err := o.store.ApplyTaskOps(ctx, ops)
			o.observe(start, ops)
			if err != nil {
				return next, err
			}
		} else {
			o.observe(start, nil)
		}
		for _, u := range updates {
			// One entry per decision: each names the spec version it was made on, so
			// one refused as stale (an operator changed the service meanwhile) leaves
			// the others standing. The change that made it stale wakes the loop.
			if err := o.store.ApplyUpdateOp(ctx, u); err != nil {
				if errors.Is(err, api.ErrConflict) || errors.Is(err, api.ErrNotFound) {
					o.log.Info("update decision overtaken", "service", u.ServiceID, "decision", u.Kind, "state", u.Status.State, "err", err)
					continue
				}
				return next, err
			}
			o.log.Info("rolling update", "service", u.ServiceID, "decision", u.Kind, "state", u.Status.State, "message", u.Status.Message)
		}
		return next, nil
	}, o.clock)
}

func (o *Orchestrator) observe(start time.Time, ops []api.TaskOp) {
	if o.OnPass != nil {
		o.OnPass(time.Since(start), ops)
	}
}

// plan is one pass of the orchestrator over a snapshot.
func (o *Orchestrator) plan(snap Snapshot, now time.Time) (ops []api.TaskOp, updates []api.UpdateOp, next time.Time) {
	nodes := snap.Nodes()
	known := map[string]bool{}
	for _, svc := range snap.Services() {
		known[svc.ID] = true
		if len(ops) >= maxPassOps {
			// Enough for one entry: the rest is planned by the next pass, which this
			// one's write wakes. Services are whole units, so no replacement is
			// split from the stop of what it replaces.
			continue
		}
		p := Reconcile(svc, nodes, snap.TasksByService(svc.ID), now, o.NewID)
		ops = append(ops, p.Ops...)
		if p.Update != nil {
			updates = append(updates, *p.Update)
		}
		if !p.Next.IsZero() && (next.IsZero() || p.Next.Before(next)) {
			next = p.Next
		}
	}
	var orphans []*api.Task
	for _, t := range snap.Tasks() {
		if !known[t.ServiceID] {
			orphans = append(orphans, t)
		}
	}
	if len(orphans) > 0 {
		rops, rnext := removePlan(nodes, orphans, now)
		ops = append(ops, rops...)
		if !rnext.IsZero() && (next.IsZero() || rnext.Before(next)) {
			next = rnext
		}
	}
	return ops, updates, next
}

// Scheduler is the leader's loop that places new and pending tasks on nodes.
type Scheduler struct {
	store Store
	log   *slog.Logger
	clock func() time.Time
	// OnPass, if set, observes each pass.
	OnPass PassFunc
}

// NewScheduler returns a scheduler over store. clock stamps the ops it writes.
// logger should carry the component key (node adds component=scheduler).
func NewScheduler(store Store, logger *slog.Logger, clock func() time.Time) *Scheduler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = time.Now
	}
	return &Scheduler{store: store, log: logger, clock: clock}
}

// Run schedules on every store change until ctx ends; it then returns nil.
func (s *Scheduler) Run(ctx context.Context) error {
	s.log.Info("scheduler started")
	defer s.log.Info("scheduler stopped")
	return runLoop(ctx, s.store, s.log, func(ctx context.Context) (time.Time, error) {
		start := time.Now()
		snap := s.store.Snapshot()
		ops := s.plan(snap, s.clock())
		// The plan was made on one snapshot; drop what a change since has made wrong
		// (task removed or already placed, node gone down or drained). The store's
		// change also wakes the loop, so whatever was dropped is planned again.
		if len(ops) > 0 {
			if fresh := s.store.Snapshot(); fresh.Index() != snap.Index() {
				ops = recheck(fresh, ops)
			}
		}
		if len(ops) == 0 {
			s.observe(start, nil)
			return time.Time{}, nil
		}
		s.log.Debug("applying placements", "ops", len(ops))
		var err error
		for rest := ops; len(rest) > 0 && err == nil; {
			// Each op stands alone (a placement or a reason), so the plan may span
			// entries; what a failure leaves out is planned again.
			n := min(len(rest), maxPassOps)
			err = s.store.ApplyTaskOps(ctx, rest[:n])
			rest = rest[n:]
		}
		s.observe(start, ops)
		return time.Time{}, err
	}, s.clock)
}

func (s *Scheduler) observe(start time.Time, ops []api.TaskOp) {
	if s.OnPass != nil {
		s.OnPass(time.Since(start), ops)
	}
}

// plan is one pass of the scheduler over a snapshot: assign ops for what fits, and
// pending ops for what does not — only when the reason changed, since rewriting the
// same reason would wake every loop for nothing, forever.
func (s *Scheduler) plan(snap Snapshot, now time.Time) []api.TaskOp {
	tasks := snap.Tasks()
	var pending []*api.Task
	byID := map[string]*api.Task{}
	for _, t := range tasks {
		if needsPlacement(t) {
			pending = append(pending, t)
			byID[t.ID] = t
		}
	}
	if len(pending) == 0 {
		return nil
	}
	placements, unplaced := Schedule(snap.Nodes(), tasks, pending)
	ops := make([]api.TaskOp, 0, len(placements))
	for _, p := range placements {
		ops = append(ops, api.TaskOp{Kind: api.TaskOpAssign, TaskID: p.TaskID, NodeID: p.NodeID, At: now})
	}
	for _, u := range unplaced {
		if t := byID[u.TaskID]; t.Status.State != api.TaskPending || t.PendingReason != u.Reason {
			ops = append(ops, api.TaskOp{Kind: api.TaskOpPending, TaskID: u.TaskID, Reason: u.Reason, At: now})
		}
	}
	if len(placements) > 0 || len(unplaced) > 0 {
		s.log.Debug("scheduled", "placed", len(placements), "unplaced", len(unplaced), "index", snap.Index())
	}
	return ops
}

// needsPlacement: new or pending, meant to run (a held task, desired ready, waits
// unplaced), and not yet on a node. The FSM refuses to assign a task that has a
// node, and a refused op would still wake every loop: never propose one.
func needsPlacement(t *api.Task) bool {
	return t.Status.State <= api.TaskPending && t.DesiredState == api.TaskRunning && t.NodeID == ""
}

func recheck(fresh Snapshot, ops []api.TaskOp) []api.TaskOp {
	tasks := map[string]*api.Task{}
	for _, t := range fresh.Tasks() {
		tasks[t.ID] = t
	}
	nodes := map[string]*api.Node{}
	for _, n := range fresh.Nodes() {
		nodes[n.ID] = n
	}
	kept := ops[:0]
	for _, op := range ops {
		t := tasks[op.TaskID]
		if t == nil || !needsPlacement(t) {
			continue
		}
		if op.Kind == api.TaskOpAssign {
			n := nodes[op.NodeID]
			if n == nil || n.Status != api.NodeReady || !isActive(n) {
				continue
			}
		}
		kept = append(kept, op)
	}
	return kept
}

// passGap is the least time between two passes of a loop. While a thousand
// workers report their tasks started, entries commit every few milliseconds and a
// pass reads every task: one pass per entry kept a core busy finding nothing to
// do. Changes that come within the gap are seen by one pass.
var passGap = 25 * time.Millisecond

// runLoop is the shape both loops share: a pass per store change or timer (at
// most one per passGap), and a growing pause after a failed commit.
func runLoop(ctx context.Context, store Store, log *slog.Logger, pass func(context.Context) (time.Time, error), clock func() time.Time) error {
	retry := minRetry
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var last time.Time
	for {
		if wait := passGap - time.Since(last); wait > 0 && !last.IsZero() {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		last = time.Now()
		// Watch before the snapshot: a change between them then still wakes us.
		watch := store.Watch()
		next, err := pass(ctx)
		timer.Stop()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Warn("committing task ops failed; retrying", "err", err, "retry_in", retry)
			timer.Reset(retry)
			retry = min(2*retry, maxRetry)
		default:
			retry = minRetry
			if !next.IsZero() {
				timer.Reset(max(next.Sub(clock()), 0))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-watch:
		case <-timer.C:
		}
	}
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTaskID returns 128 random bits as 26 lower-case base32 characters.
func NewTaskID() string {
	var b [16]byte
	rand.Read(b[:])
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}
