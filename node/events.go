package node

import (
	"context"
	"time"

	"github.com/swarmlet/swarmlet/raftstore"
)

// announceLeader writes this leadership into the log (and so the event log), once
// its barrier has applied. Leadership itself is Raft's; the entry only tells.
// It retries briefly while the leadership lasts: a leader that cannot commit
// one entry has nothing to announce.
func (d *Daemon) announceLeader(ctx context.Context, st *raftstore.Store) {
	c := &raftstore.LeaderElected{NodeID: d.id.NodeID, Hostname: d.cfg.Hostname, Term: st.Term(), At: time.Now().UTC()}
	for attempt := range 10 {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := st.Apply(actx, c)
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		d.log.Warn("announce leadership", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
