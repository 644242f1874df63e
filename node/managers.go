package node

import (
	"slices"
	"strings"

	"github.com/swarmlet/swarmlet/api"
)

// rememberManagers keeps the identity's list of managers as the session last
// said, so a restarted node finds the cluster's gossip again: the first manager
// knew only itself (init), and without peers a restarted node's gossip stays
// alone, so the leader keeps seeing it down (and replaces its tasks once its
// restart grace is over).
func (d *Daemon) rememberManagers(as api.Assignments) {
	var ms []api.Node
	for _, n := range as.Nodes {
		if n.Role == api.RoleManager {
			ms = append(ms, api.Node{ID: n.ID, Hostname: n.Hostname, Addr: n.Addr, APIPort: n.APIPort,
				RaftPort: n.RaftPort, GossipPort: n.GossipPort, Role: n.Role})
		}
	}
	if len(ms) == 0 {
		return
	}
	slices.SortFunc(ms, func(a, b api.Node) int { return strings.Compare(a.ID, b.ID) })
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.id == nil || sameManagers(d.id.Managers, ms) {
		return
	}
	d.id.Managers = ms
	if err := d.id.save(d.cfg.DataDir); err != nil {
		d.log.Warn("remember the cluster's managers", "err", err)
	}
}

func sameManagers(a, b []api.Node) bool {
	return slices.EqualFunc(a, b, func(x, y api.Node) bool {
		return x.ID == y.ID && x.Addr == y.Addr && x.APIPort == y.APIPort && x.GossipPort == y.GossipPort && x.RaftPort == y.RaftPort
	})
}
