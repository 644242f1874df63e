package node

import (
	"context"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/gossip"
	"github.com/swarmlet/swarmlet/raftstore"
)

// gossipSettle is how long after its start this node's gossip view is too young
// to call an absent member down (members it has seen die are marked at once).
const gossipSettle = 10 * time.Second

// Under the session liveness stand-in (livenessBySession): a node counts as up
// while its session is open on this leader and until sessionGrace after it was
// last heard from (a session call or a status report); one never heard from by
// this leader is given sessionSettle from the leadership's start to find it (a
// thousand sessions move to a new leader in seconds, not at once). The grace
// stands for the host being alive, which gossip would judge from elsewhere: a
// worker slow to poll again because the machine of a benchmark is busy is not a
// dead one.
const (
	sessionGrace  = 10 * time.Second
	sessionSettle = 30 * time.Second
)

// livenessBySession is the liveness stand-in for benchmarks of many simulated
// nodes (bench/hollow), whose memberlists one small machine cannot run: with
// SWARMLET_LIVENESS=session the leader also takes a node with a session open
// (or closed less than sessionGrace ago) for up, as SwarmKit's dispatcher
// heartbeats do. Gossip still decides for the nodes it knows; managers gossip.
func livenessBySession() bool { return os.Getenv("SWARMLET_LIVENESS") == "session" }

// reconcileMembers makes Raft agree with gossip: node status from liveness, voters
// from the node table (as Consul's leader reconciles serf members into Raft).
// The statuses of one pass go in one entry.
func (d *Daemon) reconcileMembers(ctx context.Context, st *raftstore.Store) {
	snap := st.Snapshot()
	members := map[string]gossip.Member{}
	for _, m := range d.gossip.AllMembers() {
		members[m.Name] = m
	}
	disp := d.dispatcher.Load()
	bySession := disp != nil && livenessBySession()
	now := time.Now().UTC()
	var changes []raftstore.NodeStatus
	for _, n := range snap.Nodes() {
		m, ok := members[n.ID]
		want := api.NodeDown
		if ok && (m.State == gossip.Alive || m.State == gossip.Suspect) {
			want = api.NodeReady
		}
		if want == api.NodeDown && bySession {
			recent, ever := disp.SessionSeen(n.ID, sessionGrace)
			switch {
			case recent:
				want, ok = api.NodeReady, true
			case !ever && time.Since(disp.Started()) < sessionSettle:
				continue // its session may not have found this new leader yet
			}
		}
		if !ok && time.Since(d.gossipStarted) < gossipSettle {
			// A freshly started node does not know its peers yet: absent is not
			// dead. Marking them down would churn every task in the cluster.
			continue
		}
		if n.Status == want {
			continue
		}
		changes = append(changes, raftstore.NodeStatus{NodeID: n.ID, Status: want, At: now})
	}
	if len(changes) > 0 {
		var c raftstore.Command = &raftstore.NodeStatuses{Statuses: changes}
		if len(changes) == 1 {
			c = &changes[0]
		}
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := st.Apply(actx, c)
		cancel()
		if err != nil {
			d.log.Warn("record node status", "nodes", len(changes), "err", err)
			return
		}
		for _, ch := range changes {
			if bySession && ch.Status == api.NodeDown {
				d.log.Info("node status", "target", ch.NodeID, "status", ch.Status, "session_seen", time.Since(disp.LastHeard(ch.NodeID)).Round(time.Millisecond))
				continue
			}
			d.log.Info("node status", "target", ch.NodeID, "status", ch.Status)
		}
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
