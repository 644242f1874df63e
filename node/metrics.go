package node

import (
	"time"

	"github.com/hashicorp/raft"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dispatcher"
	"github.com/swarmlet/swarmlet/lb"
	"github.com/swarmlet/swarmlet/node/metrics"
	"github.com/swarmlet/swarmlet/raftstore"
)

// The daemon's metrics: which state each collector reads at scrape time, and the
// hooks that feed the instruments. The parts measured know only funcs.

func (d *Daemon) newMetrics() *metrics.Metrics {
	return metrics.New(metrics.Sources{
		Raft: func() map[string]string {
			if st := d.currentStore(); st != nil {
				return st.Raft().Stats()
			}
			return nil
		},
		Tasks: func() []*api.Task {
			if st := d.currentStore(); st != nil {
				return st.Snapshot().Tasks()
			}
			return nil
		},
		Sessions: func() int {
			if disp := d.dispatcher.Load(); disp != nil {
				return disp.Sessions()
			}
			return 0
		},
		Members: func() map[string]int {
			out := map[string]int{}
			if d.gossip != nil {
				for _, m := range d.gossip.Members() {
					out[m.State.String()]++
				}
			}
			return out
		},
	})
}

func (d *Daemon) raftHooks() raftstore.Hooks {
	m := d.metrics
	return raftstore.Hooks{
		Commit:   func(t raftstore.MsgType, dur time.Duration) { m.Committed(t.String(), dur) },
		Apply:    func(t raftstore.MsgType, dur time.Duration) { m.Applied(t.String(), dur) },
		Entry:    func(t raftstore.MsgType, n int) { m.Entry(t.String(), n) },
		Snapshot: m.Snapshotted,
	}
}

// observeLeaders counts the leader changes st's Raft reports, until the daemon
// stops or st is closed.
func (d *Daemon) observeLeaders(st *raftstore.Store) {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		lo, ok := o.Data.(raft.LeaderObservation)
		return ok && lo.LeaderID != ""
	})
	st.Raft().RegisterObserver(obs)
	d.goBG(func() {
		defer st.Raft().DeregisterObserver(obs)
		for {
			select {
			case <-d.stopped:
				return
			case <-st.Closed():
				return
			case <-ch:
				d.metrics.LeaderChanged()
			}
		}
	})
}

func passHook(m *metrics.Metrics, loop string) dispatcher.PassFunc {
	return func(dur time.Duration, ops []api.TaskOp) { m.Pass(loop, dur, ops) }
}

// lbObserved turns a programmed table into backends per service.
func lbObserved(m *metrics.Metrics) func(lb.Table, time.Duration, error) {
	return func(t lb.Table, dur time.Duration, err error) {
		backends := map[string]int{}
		for _, f := range t.Frontends {
			backends[f.Service] = max(backends[f.Service], len(f.Backends))
		}
		m.LBSynced(dur, err, backends, len(t.Frontends))
	}
}
