package node

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/gossip"
	"github.com/swarmlet/swarmlet/raftstore"
)

// gossipSettle is how long after its start this node's gossip view is too young
// to call an absent member down (members it has seen die are marked at once).
const gossipSettle = 10 * time.Second

// reconcileMembers makes Raft agree with gossip: node status from liveness, voters
// from the node table (as Consul's leader reconciles serf members into Raft).
func (d *Daemon) reconcileMembers(ctx context.Context, st *raftstore.Store) {
	snap := st.Snapshot()
	members := map[string]gossip.Member{}
	for _, m := range d.gossip.AllMembers() {
		members[m.Name] = m
	}
	now := time.Now().UTC()
	for _, n := range snap.Nodes() {
		m, ok := members[n.ID]
		want := api.NodeDown
		if ok && (m.State == gossip.Alive || m.State == gossip.Suspect) {
			want = api.NodeReady
		}
		if !ok && time.Since(d.gossipStarted) < gossipSettle {
			// A freshly started node does not know its peers yet: absent is not
			// dead. Marking them down would churn every task in the cluster.
			continue
		}
		if n.Status == want {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := st.Apply(actx, &raftstore.NodeStatus{NodeID: n.ID, Status: want, At: now})
		cancel()
		if err != nil {
			d.log.Warn("record node status", "target", n.ID, "status", want, "err", err)
			return
		}
		d.log.Info("node status", "target", n.ID, "status", want)
	}
	voters, err := st.Voters()
	if err != nil {
		return
	}
	nodes := map[string]*api.Node{}
	for _, n := range snap.Nodes() {
		nodes[n.ID] = n
	}
	for _, n := range snap.Nodes() {
		if n.Role != api.RoleManager {
			continue
		}
		if _, ok := voters[n.ID]; ok {
			continue
		}
		// Only a manager whose Raft is running can be a voter; adding one that is
		// not listening would cost the cluster quorum for nothing.
		if m, ok := members[n.ID]; !ok || m.State != gossip.Alive || m.Meta["raft"] != "1" {
			continue
		}
		addr := net.JoinHostPort(n.Addr, strconv.Itoa(n.RaftPort))
		if err := st.AddVoter(n.ID, addr); err != nil {
			d.log.Warn("add voter", "target", n.ID, "err", err)
			continue
		}
		d.log.Info("voter added", "target", n.ID, "addr", addr)
	}
	self := d.id.NodeID
	for id := range voters {
		n, ok := nodes[id]
		if ok && n.Role == api.RoleManager {
			continue
		}
		if id == self {
			continue // the leader removes itself last, via demotion by a successor
		}
		if err := st.RemoveServer(id); err != nil {
			d.log.Warn("remove voter", "target", id, "err", err)
			continue
		}
		d.log.Info("voter removed", "target", id)
	}
	if n, ok := nodes[self]; ok && n.Role == api.RoleWorker && len(voters) > 1 {
		// Demoted while leading: step aside so another manager removes us.
		_ = st.Raft().LeadershipTransfer().Error()
	}
}
