package node

import (
	"context"
	"time"

	"github.com/swarmlet/swarmlet/node/client"
)

// announceRestart tells the leader, as the daemon stops gracefully (SIGTERM, not
// leave), that this node is restarting: its tasks keep running, so the leader
// keeps them, in DNS and the VIP too, for the cluster's restart grace instead
// of replacing them as soon as gossip sees the node go (api/restart.go). It runs
// before anything stops, the leader's own transfer of leadership included, so
// the mark is in Raft before gossip reports the node gone.
func (d *Daemon) announceRestart() {
	if d.router == nil || d.id == nil || d.parts == nil {
		return // stopped before it started
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var until time.Time
	err := d.toLeaderAPI(ctx, func(c *client.Client) error {
		var err error
		until, err = c.Restarting(ctx)
		return err
	})
	switch {
	case err != nil:
		d.log.Warn("could not tell the leader this node is restarting; its tasks may be replaced elsewhere while it is away", "err", err)
	case until.IsZero():
		d.log.Info("restarting; the cluster keeps no restarting node's tasks (--restart-grace 0)")
	default:
		d.log.Info("restarting; the cluster keeps this node's tasks", "until", until.Format(time.RFC3339))
	}
}
