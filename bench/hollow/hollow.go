// Package hollow runs many simulated nodes in one process against real managers:
// each joins with a token through the real join exchange, gossips (or not, see
// GossipMode), keeps a worker session with the leader through the real worker
// agent, and runs its tasks on the fake engine, which starts them at once. The
// managers see what a thousand nodes would make them do; the host pays for the
// protocol, not for workloads (Kubernetes' kubemark hollow nodes, in spirit).
package hollow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/gossip"
	"github.com/swarmlet/swarmlet/node"
	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/node/engine"
	"github.com/swarmlet/swarmlet/node/engine/fake"
	"github.com/swarmlet/swarmlet/node/worker"
)

// GossipMode says how hollow nodes take part in gossip, which is how the leader
// decides that a node is up (node/members.go).
type GossipMode string

const (
	// GossipReal: every hollow node is a memberlist member with the daemon's
	// settings, on its own address.
	GossipReal GossipMode = "real"
	// GossipOff: no memberlist at all; only for managers started with the
	// liveness stand-in (SWARMLET_LIVENESS=session, node/members.go), which
	// takes a node with a session open for a live member.
	GossipOff GossipMode = "off"
)

// Config describes a fleet.
type Config struct {
	// Join is a manager's API address (ip:port); Token a worker join token.
	Join  string
	Token string
	Nodes int
	// Addr is node i's advertise address (0-based); default AddrIn("127.81").
	Addr func(i int) string
	// PortBase is what the node records name: API, Raft and gossip at +0, +1, +2
	// (only gossip listens). Default 25100.
	PortBase int
	Gossip   GossipMode
	// Parallel joins in flight (default 32).
	Parallel int
	Engine   fake.Options
	// Resources each node offers (default 8 CPUs, 32 GiB).
	Resources api.Resources
	Logger    *slog.Logger
}

// AddrIn numbers addresses in a /16 of loopback: prefix "127.81" gives node 0
// 127.81.0.1, node 249 127.81.0.250, node 250 127.81.1.1.
func AddrIn(prefix string) func(int) string {
	return func(i int) string { return fmt.Sprintf("%s.%d.%d", prefix, i/250, i%250+1) }
}

// Stats are the fleet's counters since it started.
type Stats struct {
	Joined  int
	Alive   int
	Running int // workloads the fake engines run now
	// BytesIn is every byte the managers sent the fleet's connections (TLS
	// records, HTTP and all), BytesOut what the fleet sent them.
	BytesIn, BytesOut int64
	Answers           int64 // session answers received
	Reports           int64 // status reports sent
	JoinTook          []time.Duration
}

// Fleet is a set of hollow nodes.
type Fleet struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	nodes []*Node
	in    atomic.Int64
	out   atomic.Int64
	ans   atomic.Int64
	rep   atomic.Int64
	took  []time.Duration
}

// Node is one hollow node.
type Node struct {
	Index int
	ID    string
	Addr  string

	fleet    *Fleet
	managers []*client.Client
	pref     atomic.Int32 // the manager tried first
	// The session's view (only the agent's one session loop touches it).
	index  uint64
	tasks  map[string]*api.Task
	engine *fake.Engine
	gossip *gossip.Gossip
	cancel context.CancelFunc
	done   chan struct{}
	dead   atomic.Bool
}

// New prepares a fleet; Start joins its nodes.
func New(cfg Config) *Fleet {
	if cfg.Addr == nil {
		cfg.Addr = AddrIn("127.81")
	}
	if cfg.PortBase == 0 {
		cfg.PortBase = 25100
	}
	if cfg.Gossip == "" {
		cfg.Gossip = GossipReal
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 32
	}
	if cfg.Resources == (api.Resources{}) {
		cfg.Resources = api.Resources{NanoCPUs: 8e9, MemoryBytes: 32 << 30}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Fleet{cfg: cfg, log: cfg.Logger}
}

// Start joins nodes [from, to) (Config.Nodes if to is 0) with Parallel joins in
// flight, and starts each node's session as soon as it has joined. It returns
// once every join has been answered; the first error ends it.
func (f *Fleet) Start(ctx context.Context, from, to int) error {
	if to == 0 {
		to = f.cfg.Nodes
	}
	sem := make(chan struct{}, f.cfg.Parallel)
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	for i := from; i < to && first.Load() == nil; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			if err := f.startNode(ctx, i); err != nil {
				first.CompareAndSwap(nil, &err)
			}
		}(i)
	}
	wg.Wait()
	if err := first.Load(); err != nil {
		return *err
	}
	return nil
}

func (f *Fleet) startNode(ctx context.Context, i int) error {
	addr := f.cfg.Addr(i)
	self := api.Node{Hostname: fmt.Sprintf("hollow-%04d", i), Addr: addr,
		APIPort: f.cfg.PortBase, RaftPort: f.cfg.PortBase + 1, GossipPort: f.cfg.PortBase + 2,
		Role: api.RoleWorker, Engine: "fake", Resources: f.cfg.Resources}
	t0 := time.Now()
	var j *node.Joined
	var err error
	for attempt := 0; ; attempt++ {
		j, err = node.JoinExchange(ctx, f.cfg.Join, f.cfg.Token, self, addr)
		// A leader busy with a thousand joins may answer busy or time out; a real
		// node would be restarted by its supervisor and try again.
		if err == nil || attempt == 9 || ctx.Err() != nil || errors.Is(err, client.ErrTLS) {
			break
		}
		time.Sleep(time.Duration(min(attempt+1, 5)) * 300 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("hollow node %d (%s): %w", i, addr, err)
	}
	took := time.Since(t0)
	resp := j.Response
	n := &Node{Index: i, ID: resp.NodeID, Addr: addr, fleet: f, done: make(chan struct{})}
	n.pref.Store(int32(i % max(1, len(resp.Managers))))
	if os.Getenv("HOLLOW_PREFER_FIRST") != "" {
		n.pref.Store(0)
	}
	tlsCfg := j.ClientTLS()
	wrap := func(c net.Conn) net.Conn { return &countingConn{Conn: c, in: &f.in, out: &f.out} }
	for _, m := range resp.Managers {
		c, err := client.New("tcp://"+net.JoinHostPort(m.Addr, strconv.Itoa(m.APIPort)),
			client.Options{LocalAddr: addr, TLS: tlsCfg, WrapConn: wrap, Timeout: 40 * time.Second})
		if err != nil {
			return err
		}
		n.managers = append(n.managers, c)
	}
	n.engine = fake.New(engine.Config{NodeID: n.ID, NodeAddr: addr}, f.cfg.Engine)
	if f.cfg.Gossip == GossipReal {
		g, err := gossip.Start(gossip.Config{Name: n.ID, BindAddr: addr, BindPort: f.cfg.PortBase + 2,
			Meta: map[string]string{"role": string(api.RoleWorker), "api": strconv.Itoa(f.cfg.PortBase), "raft": "0"},
			Keys: resp.GossipKeys})
		if err != nil {
			return fmt.Errorf("hollow node %d: %w", i, err)
		}
		n.gossip = g
		go func() {
			for range g.Events() { // nobody here acts on membership
			}
		}()
		var peers []string
		for _, m := range resp.Managers {
			peers = append(peers, net.JoinHostPort(m.Addr, strconv.Itoa(m.GossipPort)))
		}
		if _, err := g.Join(peers); err != nil {
			f.log.Warn("hollow gossip join", "node", i, "err", err)
		}
	}
	nctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	agent := worker.New(worker.Config{NodeID: n.ID, Engine: n.engine, Manager: (*session)(n), Logger: f.log.With("hollow", i), ReportQueue: 256})
	go func() {
		defer close(n.done)
		_ = agent.Run(nctx)
	}()
	f.mu.Lock()
	f.nodes = append(f.nodes, n)
	f.took = append(f.took, took)
	f.mu.Unlock()
	return nil
}

// Nodes returns the nodes that have joined, in the order they did.
func (f *Fleet) Nodes() []*Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Node(nil), f.nodes...)
}

// Kill ends nodes as a power cut would: no leave, no goodbye to gossip; their
// sessions' connections are cut.
func (f *Fleet) Kill(nodes ...*Node) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n.dead.Swap(true) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.cancel()
			if n.gossip != nil {
				_ = n.gossip.Shutdown()
			}
			<-n.done
			for _, c := range n.managers {
				c.Close()
			}
		}()
	}
	wg.Wait()
}

// Close kills every node.
func (f *Fleet) Close() { f.Kill(f.Nodes()...) }

// Stats reads the counters.
func (f *Fleet) Stats() Stats {
	nodes := f.Nodes()
	s := Stats{Joined: len(nodes), BytesIn: f.in.Load(), BytesOut: f.out.Load(), Answers: f.ans.Load(), Reports: f.rep.Load()}
	for _, n := range nodes {
		if !n.dead.Load() {
			s.Alive++
			s.Running += n.engine.Running()
		}
	}
	f.mu.Lock()
	s.JoinTook = append([]time.Duration(nil), f.took...)
	f.mu.Unlock()
	return s
}

// session is a hollow node's worker.Manager: the real session calls over mutual
// TLS, to the managers in turn (a follower forwards to the leader, as for any
// worker).
type session Node

// answer is the session answer as a hollow node reads it: the tables every node's
// DNS and balancer would be fed are read off the wire but not kept (a thousand
// copies of them would measure this process, not the managers).
type answer struct {
	Index   uint64      `json:"index"`
	Node    *api.Node   `json:"node"`
	Tasks   []*api.Task `json:"tasks"`
	Delta   bool        `json:"delta"`
	Since   uint64      `json:"since"`
	TaskIDs []string    `json:"task_ids"`
	// The tables are skipped over unparsed.
	Endpoints rawSkip `json:"endpoints"`
	Nodes     rawSkip `json:"nodes"`
}

// rawSkip accepts any JSON value and keeps nothing.
type rawSkip struct{}

func (*rawSkip) UnmarshalJSON([]byte) error { return nil }

// Assignments implements worker.Manager, with deltas as a daemon's session
// takes them (the tasks part of api.SessionView).
func (s *session) Assignments(ctx context.Context, _ string, index uint64, wait time.Duration) (api.Assignments, error) {
	if index != s.index {
		s.index, s.tasks = 0, nil
	}
	var ans answer
	err := s.call(ctx, func(c *client.Client) error {
		_, err := c.Do(ctx, "GET", "/v1/dispatcher/assignments?"+client.Blocking(s.index, wait)+"&delta=1", nil, &ans)
		return err
	})
	if errors.Is(err, api.ErrNotFound) {
		return api.Assignments{}, worker.ErrNodeRemoved
	}
	if err != nil {
		return api.Assignments{}, err
	}
	s.fleet.ans.Add(1)
	tasks := make(map[string]*api.Task, len(ans.Tasks))
	for _, t := range ans.Tasks {
		tasks[t.ID] = t
	}
	list := ans.Tasks
	if ans.Delta {
		if ans.Since != s.index {
			s.index = 0
			return api.Assignments{}, fmt.Errorf("hollow node %d: delta since %d, view at %d: %w", s.Index, ans.Since, s.index, api.ErrSessionGap)
		}
		list = make([]*api.Task, 0, len(ans.TaskIDs))
		for _, id := range ans.TaskIDs {
			t := tasks[id]
			if t == nil {
				t = s.tasks[id]
			}
			if t == nil {
				s.index = 0
				return api.Assignments{}, fmt.Errorf("hollow node %d: delta names unknown task %s: %w", s.Index, id, api.ErrSessionGap)
			}
			tasks[id] = t
			list = append(list, t)
		}
	}
	s.index, s.tasks = ans.Index, tasks
	return api.Assignments{Index: ans.Index, Node: ans.Node, Tasks: list}, nil
}

// ReportStatus implements worker.Manager.
func (s *session) ReportStatus(ctx context.Context, rep api.StatusReport) error {
	s.fleet.rep.Add(1)
	return s.call(ctx, func(c *client.Client) error { return c.ReportStatus(ctx, rep.Ops) })
}

// call tries the preferred manager, then the others, until one is reached;
// a manager that cannot serve (no leader, unreachable) moves the preference on.
func (s *session) call(ctx context.Context, fn func(*client.Client) error) error {
	var err error
	for k := range len(s.managers) {
		i := (int(s.pref.Load()) + k) % len(s.managers)
		err = fn(s.managers[i])
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !errors.Is(err, client.ErrUnreachable) && !errors.Is(err, api.ErrNotLeader) && !errors.Is(err, api.ErrNoQuorum) {
			return err
		}
		s.pref.Store(int32((i + 1) % len(s.managers)))
	}
	return err
}

// countingConn counts a connection's bytes.
type countingConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}
