package node

import (
	"context"
	"os"
	"slices"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// followRole starts or stops this node's manager parts when its role in the
// cluster record changes (node promote / demote). The leader then adds or removes
// the Raft voter; see reconcileMembers.
func (d *Daemon) followRole(ctx context.Context, as api.Assignments) {
	self := as.Node
	if self == nil {
		return
	}
	d.roleMu.Lock()
	defer d.roleMu.Unlock()
	d.mu.Lock()
	st, role := d.store, d.id.Role
	d.mu.Unlock()
	switch {
	case self.Role == api.RoleManager && st == nil:
		d.log.Info("promoted: starting raft")
		if err := d.startRaft(false); err != nil {
			d.log.Error("promotion", "err", err)
			return
		}
		d.setRole(api.RoleManager)
		st := d.currentStore()
		d.goBG(func() { d.leaderLoop(ctx, st) })
	case self.Role == api.RoleWorker && st != nil && role == api.RoleManager:
		if slices.Contains(as.Voters, d.id.NodeID) {
			return // the leader has not removed us yet; we will see the next update
		}
		d.log.Info("demoted: stopping raft")
		d.mu.Lock()
		d.store = nil
		d.keyFile, d.dek, d.wrappedWith = nil, nil, ""
		d.mu.Unlock()
		d.resealSecrets() // plain again: the data key goes with the Raft dir
		d.setRole(api.RoleWorker)
		go func() {
			// Let requests in flight on the old store finish before closing it.
			time.Sleep(2 * time.Second)
			_ = st.Close()
			_ = os.RemoveAll(d.raftDir())
		}()
	}
}

func (d *Daemon) setRole(role api.NodeRole) {
	d.mu.Lock()
	d.id.Role = role
	err := d.id.save(d.cfg.DataDir)
	d.mu.Unlock()
	if err != nil {
		d.log.Warn("save identity", "err", err)
	}
	if err := d.gossip.UpdateMeta(d.gossipMeta()); err != nil {
		d.log.Warn("gossip meta", "err", err)
	}
}
