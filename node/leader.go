package node

import (
	"context"
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dispatcher"
	"github.com/swarmlet/swarmlet/raftstore"
)

// leaderLoop runs the leader-only work while this manager leads, and stops it the
// moment leadership is lost.
func (d *Daemon) leaderLoop(ctx context.Context, st *raftstore.Store) {
	var run *leaderRun
	defer func() { run.stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case lead := <-st.LeaderCh():
			run.stop()
			run = nil
			if lead {
				run = d.startLeaderRun(ctx, st)
			}
		}
	}
}

// leaderRun is one term of leadership's worth of leader-only work.
type leaderRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *Daemon) startLeaderRun(ctx context.Context, st *raftstore.Store) *leaderRun {
	lctx, cancel := context.WithCancel(ctx)
	r := &leaderRun{cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); d.runLeader(lctx, st) }()
	return r
}

func (r *leaderRun) stop() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
}

// runLeader is one term of leadership: after a barrier, the dispatcher's three
// loops (orchestrator, scheduler, sessions) run, and the member reconciler keeps
// Raft's voters and node status in step with gossip.
func (d *Daemon) runLeader(ctx context.Context, st *raftstore.Store) {
	log := d.log.With("component", "leader")
	// A new leader may not have applied everything committed by the old one; the
	// barrier makes the control loops start from the latest state.
	for {
		if err := st.Barrier(5 * time.Second); err == nil {
			break
		} else if ctx.Err() != nil {
			return
		} else {
			log.Warn("barrier", "err", err)
		}
	}
	store := storeAdapter{st}
	disp := dispatcher.NewDispatcher(ctx, store, d.log.With("component", "dispatcher"))
	d.leadership.Acquired(st.Term(), ctx)
	d.dispatcher.Store(disp)
	defer func() {
		d.dispatcher.CompareAndSwap(disp, nil)
		d.leadership.Lost()
	}()
	log.Info("leadership acquired", "index", st.State().Index(), "term", st.Term())
	d.goBG(func() { d.announceLeader(ctx, st) })
	var loops sync.WaitGroup
	defer loops.Wait()
	run := func(name string, f func(context.Context) error) {
		loops.Add(1)
		go func() {
			defer loops.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				log.Error("leader loop stopped", "loop", name, "err", err)
			}
		}()
	}
	orch := dispatcher.NewOrchestrator(store, d.log.With("component", "orchestrator"), time.Now)
	orch.OnPass = passHook(d.metrics, "orchestrator")
	sched := dispatcher.NewScheduler(store, d.log.With("component", "scheduler"), time.Now)
	sched.OnPass = passHook(d.metrics, "scheduler")
	run("orchestrator", orch.Run)
	run("scheduler", sched.Run)
	run("dispatcher", disp.Run)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		d.reconcileMembers(ctx, st)
		d.finishRotation(ctx, st)
		d.stepGossipRotation(ctx, st)
		select {
		case <-ctx.Done():
			log.Info("leadership lost")
			return
		case <-tick.C:
		case <-d.memberChanged:
		}
	}
}

// storeAdapter lets the dispatcher's loops use the Raft store through the small
// interfaces they declare.
type storeAdapter struct{ s *raftstore.Store }

func (a storeAdapter) Snapshot() dispatcher.Snapshot { return a.s.Snapshot() }
func (a storeAdapter) Watch() <-chan struct{}        { return a.s.Watch() }
func (a storeAdapter) ApplyTaskOps(ctx context.Context, ops []api.TaskOp) error {
	return a.s.ApplyTaskOps(ctx, ops)
}
func (a storeAdapter) ApplyUpdateOp(ctx context.Context, op api.UpdateOp) error {
	return a.s.ApplyUpdateOp(ctx, op)
}
func (a storeAdapter) ChangedSince(index uint64) ([]dispatcher.Change, uint64, bool) {
	ch, upto, ok := a.s.State().ChangedSince(index)
	if !ok {
		return nil, upto, false
	}
	out := make([]dispatcher.Change, 0, len(ch))
	for _, c := range ch {
		switch c.Table {
		case raftstore.ChangedNodes:
			out = append(out, dispatcher.Change{Kind: dispatcher.ChangeNode, ID: c.ID})
		case raftstore.ChangedServices:
			out = append(out, dispatcher.Change{Kind: dispatcher.ChangeService, ID: c.ID})
		case raftstore.ChangedTasks:
			out = append(out, dispatcher.Change{Kind: dispatcher.ChangeTask, ID: c.ID})
		case raftstore.ChangedCluster:
			out = append(out, dispatcher.Change{Kind: dispatcher.ChangeCluster, ID: c.ID})
		}
	}
	return out, upto, true
}
func (a storeAdapter) WaitIndex(ctx context.Context, index uint64) { a.s.State().WaitIndex(ctx, index) }
func (a storeAdapter) Voters() ([]string, error) {
	v, err := a.s.Voters()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(v))
	for id := range v {
		out = append(out, id)
	}
	return out, nil
}
