package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/gossip"
	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/raftstore"
)

func numCPU() int { return runtime.NumCPU() }

// gossipSettle is how long after its start this node's gossip view is too young
// to call an absent member down (members it has seen die are marked at once).
const gossipSettle = 10 * time.Second

// leaderLoop runs the leader-only work while this manager leads, and stops it the
// moment leadership is lost.
func (d *Daemon) leaderLoop(ctx context.Context) {
	d.mu.Lock()
	st := d.store
	d.mu.Unlock()
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
				run = d.startLeaderRun(ctx)
			}
		}
	}
}

// leaderRun is one term of leadership's worth of leader-only work.
type leaderRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *Daemon) startLeaderRun(ctx context.Context) *leaderRun {
	lctx, cancel := context.WithCancel(ctx)
	r := &leaderRun{cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); d.runLeader(lctx) }()
	return r
}

func (r *leaderRun) stop() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
}

// LeaderTask is a control loop that runs only on the leader (orchestrator,
// scheduler); node wires the dispatcher's loops in through this.
type LeaderTask func(ctx context.Context, store *raftstore.Store)

func (d *Daemon) runLeader(ctx context.Context) {
	log := d.log.With("component", "leader")
	// A new leader may not have applied everything committed by the old one; the
	// barrier makes the control loops start from the latest state.
	for {
		if err := d.store.Barrier(5 * time.Second); err == nil {
			break
		} else if ctx.Err() != nil {
			return
		} else {
			log.Warn("barrier", "err", err)
		}
	}
	d.readyTerm.Store(d.store.Term())
	d.leaderCtx.Store(&ctx)
	defer d.leaderCtx.Store(nil)
	log.Info("leadership acquired", "index", d.store.State().Index(), "term", d.store.Term())
	var tasks sync.WaitGroup
	defer tasks.Wait()
	for _, t := range d.leaderTasks {
		tasks.Add(1)
		go func() { defer tasks.Done(); t(ctx, d.store) }()
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		d.reconcileMembers(ctx)
		select {
		case <-ctx.Done():
			log.Info("leadership lost")
			return
		case <-tick.C:
		case <-d.memberChanged:
		}
	}
}

// reconcileMembers makes Raft agree with gossip: node status from liveness, voters
// from the node table (as Consul's leader reconciles serf members into Raft).
func (d *Daemon) reconcileMembers(ctx context.Context) {
	snap := d.store.Snapshot()
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
		_, err := d.store.Apply(actx, &raftstore.NodeStatus{NodeID: n.ID, Status: want, At: now})
		cancel()
		if err != nil {
			d.log.Warn("record node status", "target", n.ID, "status", want, "err", err)
			return
		}
		d.log.Info("node status", "target", n.ID, "status", want)
	}
	voters, err := d.store.Voters()
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
		if err := d.store.AddVoter(n.ID, addr); err != nil {
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
		if err := d.store.RemoveServer(id); err != nil {
			d.log.Warn("remove voter", "target", id, "err", err)
			continue
		}
		d.log.Info("voter removed", "target", id)
	}
	if n, ok := nodes[self]; ok && n.Role == api.RoleWorker && len(voters) > 1 {
		// Demoted while leading: step aside so another manager removes us.
		_ = d.store.Raft().LeadershipTransfer().Error()
	}
}

// leaderAPIAddr finds where the current leader's API listens; "" if no leader.
func (d *Daemon) leaderAPIAddr() (string, string) {
	id, raftAddr := d.store.Leader()
	if id == "" {
		return "", ""
	}
	if n := d.store.Snapshot().Node(id); n != nil {
		return id, APIAddr(n)
	}
	host, port, err := net.SplitHostPort(raftAddr)
	if err != nil {
		return "", ""
	}
	p, _ := strconv.Atoi(port)
	return id, net.JoinHostPort(host, strconv.Itoa(p-offsetRaft+offsetAPI))
}

// waitLeader waits a bounded time for a leader to be known, so a write during an
// election succeeds instead of failing; it returns "" when there is no quorum.
func (d *Daemon) waitLeader(ctx context.Context, within time.Duration) (id, apiAddr string) {
	deadline := time.Now().Add(within)
	for {
		if id, addr := d.leaderAPIAddr(); id != "" {
			return id, addr
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", ""
		}
		select {
		case <-ctx.Done():
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// noQuorumError says how many managers this node can reach and what to do.
func (d *Daemon) noQuorumError() error {
	voters, _ := d.store.Voters()
	alive := 0
	for _, m := range d.gossip.Members() { // gossip starts before any caller runs
		if _, ok := voters[m.Name]; ok && m.State == gossip.Alive {
			alive++
		}
	}
	need := len(voters)/2 + 1
	return fmt.Errorf("%w: %d of %d managers reachable, %d needed; bring managers back, or run 'swarmlet init --force-new-cluster' on a surviving manager", raftstore.ErrNoQuorum, alive, len(voters), need)
}

// managerClients lists API clients for managers this node can try, the leader
// first when known.
func (d *Daemon) managerClients() []*client.Client {
	var addrs []string
	seen := map[string]bool{}
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	if d.gossip != nil {
		for _, m := range d.gossip.Members() {
			if m.Meta["role"] == string(api.RoleManager) && m.State == gossip.Alive && m.Name != d.id.NodeID {
				add(net.JoinHostPort(m.Addr, m.Meta["api"]))
			}
		}
	}
	d.mu.Lock()
	for _, m := range d.id.Managers {
		if m.ID != d.id.NodeID {
			add(APIAddr(&m))
		}
	}
	d.mu.Unlock()
	var out []*client.Client
	for _, a := range addrs {
		out = append(out, d.peer(a))
	}
	return out
}

// peer returns a cached API client for another node, dialling from our address.
func (d *Daemon) peer(addr string) *client.Client {
	d.peerMu.Lock()
	defer d.peerMu.Unlock()
	if c, ok := d.peers[addr]; ok {
		return c
	}
	c, _ := client.New("tcp://"+addr, client.Options{LocalAddr: d.cfg.AdvertiseAddr, Timeout: 40 * time.Second})
	d.peers[addr] = c
	return c
}

// leaderClients lists whom to ask for what only the leader can do: the leader this
// manager knows (if not itself), then the other managers, which forward to theirs.
// A manager cut off from the leader (or removed) may not hear of a new one for
// seconds, or may remember a dead one, while the others know it now.
func (d *Daemon) leaderClients(st *raftstore.Store) []*client.Client {
	targets := d.managerClients()
	if st != nil {
		if id, addr := d.leaderAPIAddr(); id != "" && id != d.id.NodeID {
			targets = append([]*client.Client{d.peer(addr)}, targets...)
		}
	}
	return targets
}

// writeToLeader applies a command on the leader, wherever it is. Used by the daemon
// itself (registration, task status); user requests are proxied whole instead.
func (d *Daemon) writeToLeader(ctx context.Context, c raftstore.Command) error {
	d.mu.Lock()
	st := d.store
	d.mu.Unlock()
	if st != nil && st.IsLeader() {
		_, err := st.Apply(ctx, c)
		return err
	}
	b, err := raftstore.Encode(c)
	if err != nil {
		return err
	}
	targets := d.leaderClients(st)
	if st != nil && len(targets) == 0 {
		return d.noQuorumError()
	}
	var last error = errors.New("no manager known")
	for _, c := range targets {
		_, err := c.Do(ctx, "POST", "/v1/internal/apply", b, nil)
		if err == nil {
			return nil
		}
		last = err
		if !errors.Is(err, client.ErrUnreachable) {
			return err
		}
	}
	return fmt.Errorf("no manager reachable: %w", last)
}
