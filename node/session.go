package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dispatcher"
	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/node/worker"
)

// This node's side of its worker session: the worker agent asks for its
// assignments and reports status through here, and the daemon registers and
// departs through here. All of it goes to the leader: in process when this node
// leads, otherwise over the API (a worker through any manager, which forwards).

// Assignments implements worker.Manager. The session takes deltas: the leader
// sends what changed since the index this node has, and the view (one per
// daemon: there is one session) makes whole assignments of them again. The
// agent's index is the view's; an index the view does not hold (the agent
// starting over) asks for everything.
func (d *Daemon) Assignments(ctx context.Context, nodeID string, index uint64, wait time.Duration) (api.Assignments, error) {
	d.sessionMu.Lock()
	defer d.sessionMu.Unlock()
	if index != d.session.Index() {
		d.session.Reset()
		index = 0
	}
	var as api.Assignments
	err := d.toLeader(ctx, func(disp leaderSide) error {
		ans, err := disp.Session(ctx, nodeID, index, wait)
		if err == nil {
			as = ans.Whole()
		}
		return err
	}, func(c *client.Client) error {
		var err error
		as, err = c.Session(ctx, index, wait)
		return err
	})
	if errors.Is(err, api.ErrNotFound) {
		return as, worker.ErrNodeRemoved
	}
	if err != nil {
		return as, err
	}
	return d.session.Apply(as)
}

// ReportStatus implements worker.Manager.
func (d *Daemon) ReportStatus(ctx context.Context, rep api.StatusReport) error {
	return d.toLeader(ctx, func(disp leaderSide) error {
		return disp.ReportStatus(ctx, d.id.NodeID, rep.Ops)
	}, func(c *client.Client) error {
		return c.ReportStatus(ctx, rep.Ops)
	})
}

// leaderSide is what this node asks of its own dispatcher when it leads.
type leaderSide interface {
	Session(ctx context.Context, nodeID string, since uint64, wait time.Duration) (dispatcher.SessionAnswer, error)
	ReportStatus(ctx context.Context, nodeID string, ops []api.TaskOp) error
}

// toLeader runs local (if given) against this node's own dispatcher when it is the
// ready leader, else remote against the leader this manager knows and then the other
// managers (which forward), stopping at the first that is reached.
func (d *Daemon) toLeader(ctx context.Context, local func(leaderSide) error, remote func(*client.Client) error) error {
	st := d.currentStore()
	if local != nil && st != nil && st.IsLeader() && d.leadership.WaitReady(ctx, st) {
		if disp := d.dispatcher.Load(); disp != nil {
			return local(disp)
		}
	}
	targets := d.router.LeaderClients(st)
	if st != nil && len(targets) == 0 {
		return d.router.NoQuorumError(st)
	}
	var last error = errors.New("no manager known")
	for _, c := range targets {
		err := remote(c)
		if err == nil || !errors.Is(err, client.ErrUnreachable) {
			return err
		}
		last = err
	}
	return fmt.Errorf("no manager reachable: %w", last)
}

// registerLoop refreshes this node's record after a restart (address, ports,
// engine), retrying until a leader accepts it.
func (d *Daemon) registerLoop(ctx context.Context) {
	for attempt := 0; ; attempt++ {
		err := d.registerSelf(ctx)
		if err == nil {
			return
		}
		if errors.Is(err, api.ErrNotFound) {
			d.log.Warn("this node was removed from the cluster; to bring it back, stop it, empty its data dir and join again with a token")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(min(attempt+1, 10)) * 300 * time.Millisecond):
		}
	}
}

func (d *Daemon) registerSelf(ctx context.Context) error {
	self := d.selfNode(d.id)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return d.toLeaderAPI(cctx, func(c *client.Client) error { return c.Register(cctx, self) })
}

// toLeaderAPI sends a request through the API of the leader, including this node's
// own when it leads (registration and departure are rare and go through the same
// checks as anyone's).
func (d *Daemon) toLeaderAPI(ctx context.Context, call func(*client.Client) error) error {
	if st := d.currentStore(); st != nil && st.IsLeader() {
		return call(d.peers.Get(d.cfg.apiAddr()))
	}
	return d.toLeader(ctx, nil, call)
}

// leave stops this node's tasks and removes it from the cluster; the daemon then
// stops and forgets the cluster so the data dir can init or join afresh.
func (d *Daemon) leave(ctx context.Context) error {
	if p := d.parts; p != nil {
		if err := p.agent.StopAll(ctx); err != nil {
			return fmt.Errorf("stop tasks: %w", err)
		}
	}
	if err := d.toLeaderAPI(ctx, func(c *client.Client) error { return c.Depart(ctx) }); err != nil {
		d.log.Warn("remove self from cluster", "err", err)
	}
	d.left = true
	return nil
}

// forgetCluster runs after a leave, once everything is stopped.
func (d *Daemon) forgetCluster() {
	d.forgetFiles()
	_ = os.Remove(identityPath(d.cfg.DataDir))
}
