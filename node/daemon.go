package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dispatcher"
	"github.com/swarmlet/swarmlet/gossip"
	"github.com/swarmlet/swarmlet/node/forward"
	"github.com/swarmlet/swarmlet/node/metrics"
	"github.com/swarmlet/swarmlet/node/pki"
	"github.com/swarmlet/swarmlet/raftstore"
)

// Version is the daemon's version string.
var Version = "0.1.0-dev"

// Daemon is one running swarmlet node. Its files split by job: this one is start
// and stop order; gossip.go membership; parts.go the engine, DNS and balancer;
// api.go the listeners and what the API asks of the node; session.go the worker's
// session with the leader; leader.go the leader-only loops; members.go Raft
// membership from gossip; roles.go promotion and demotion. See DESIGN.md.
type Daemon struct {
	cfg  Config
	log  *slog.Logger
	lock *os.File

	roleMu sync.Mutex // serialises promotion and demotion
	mu     sync.Mutex
	id     *identity
	store  *raftstore.Store // nil unless this node is a manager

	gossip  *gossip.Gossip
	servers []*http.Server

	peers      *forward.Peers
	router     *forward.Router
	leadership forward.Leadership
	// dispatcher serves worker sessions while this node leads.
	dispatcher atomic.Pointer[dispatcher.Dispatcher]
	// session is this node's side of its worker session (session.go): the
	// whole assignments the leader's deltas apply to.
	sessionMu sync.Mutex
	session   api.SessionView

	leaving chan struct{} // closed by `swarmlet leave`
	stopped chan struct{}
	bg      sync.WaitGroup
	cancel  context.CancelFunc

	memberChanged chan struct{} // gossip saw a join, leave or failure

	gossipStarted time.Time

	parts      *nodeParts
	engineKind string
	metrics    *metrics.Metrics
	left       bool // this node left the cluster: forget it on stop

	// platform and engineLabels are what the node registers of its engine
	// (platform.go).
	platform     api.Platform
	engineLabels map[string]string

	// Trust (trust.go, follow.go, atrest.go).
	trust        *nodeTrust
	renewer      *pki.Renewer
	sessionNodes atomic.Pointer[map[string]api.NodeRole] // a worker's node table, from its session
	gossipKeys   [][]byte
	pendingInit  *initTrust
	keyFile      *raftstore.KeyFile // a manager's Raft data key file
	dek          *raftstore.DataKey
	wrappedWith  string // the unlock key the data key is wrapped with ("" without autolock)
}

// ErrAlreadyRunning is returned when another daemon holds the data dir.
var ErrAlreadyRunning = errors.New("already running")

// New checks the configuration and prepares a daemon; Run starts it.
func New(cfg Config) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger,
		leaving: make(chan struct{}), stopped: make(chan struct{}), memberChanged: make(chan struct{}, 1)}
	d.metrics = d.newMetrics()
	return d, nil
}

// Run starts the node and blocks until ctx ends (SIGTERM) or the node leaves.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	d.cancel = cancel
	defer cancel()
	if err := d.start(ctx); err != nil {
		d.shutdown()
		return err
	}
	select {
	case <-ctx.Done():
		d.announceRestart() // a stop that is not a leave is a restart
	case <-d.leaving:
	}
	d.shutdown()
	return nil
}

func (d *Daemon) start(ctx context.Context) error {
	if err := os.MkdirAll(d.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	err := d.lockDataDir()
	if err != nil {
		return err
	}
	if d.engineKind, err = d.chooseEngine(ctx); err != nil {
		return err
	}
	d.describeEngine(ctx)
	id, err := loadIdentity(d.cfg.DataDir)
	if err != nil {
		return err
	}
	fresh := id == nil
	switch {
	case fresh && d.cfg.Init:
		if d.cfg.ForceNewCluster {
			return fmt.Errorf("--force-new-cluster needs the data dir of a former manager; %s holds none", d.cfg.DataDir)
		}
		if id, err = d.prepareInit(); err != nil {
			return err
		}
	case fresh:
		if id, err = d.joinCluster(ctx); err != nil {
			return err
		}
	default:
		d.log.Info("resuming", "node", id.NodeID, "role", id.Role, "cluster", id.ClusterID)
	}
	d.mu.Lock()
	d.id = id
	d.mu.Unlock()
	if id.Role == api.RoleManager && d.dek == nil {
		// A resumed manager: with autolock this waits for 'swarmlet unlock'. Its
		// node key and gossip keys are sealed with the data key too.
		if err := d.openDataKey(ctx); err != nil {
			return err
		}
	}
	tf, err := loadTrustFiles(d.cfg.DataDir, d.dek)
	if err != nil {
		return err
	}
	d.trust = d.newTrust(tf)
	if d.gossipKeys, err = loadGossipKeys(d.cfg.DataDir, d.dek); err != nil {
		return err
	}
	if !fresh && d.cfg.ForceNewCluster {
		if id.Role != api.RoleManager {
			return fmt.Errorf("--force-new-cluster: this node is a worker; run it on a surviving manager")
		}
		if err := raftstore.RecoverSingle(raftstore.Config{NodeID: id.NodeID, RaftAddr: d.cfg.raftAddr(), DataDir: d.raftDir(), DataKey: d.dek}); err != nil {
			return err
		}
		d.log.Info("raft configuration reset to this node alone", "node", id.NodeID)
	}
	id.PortBase, id.Addr = d.cfg.PortBase, d.cfg.AdvertiseAddr
	// A fresh init is saved by initCluster once the cluster exists, so a failed
	// first start leaves a data dir that can simply be initialised again.
	if !(fresh && d.cfg.Init) {
		if err := id.save(d.cfg.DataDir); err != nil {
			return err
		}
	}
	d.log = d.log.With("node", id.NodeID)
	d.peers = forward.NewPeers(d.cfg.AdvertiseAddr, d.trust.clientConfig(false), d.trust.clientConfig(true))
	d.router = d.newRouter()

	if id.Role == api.RoleManager {
		if err := d.startRaft(fresh && d.cfg.Init); err != nil {
			return err
		}
	}
	if err := d.startParts(ctx); err != nil {
		return err
	}
	if err := d.startGossip(); err != nil {
		return err
	}
	if st := d.currentStore(); st != nil {
		d.goBG(func() { d.leaderLoop(ctx, st) })
	}
	if fresh && d.cfg.Init {
		if err := d.initCluster(ctx); err != nil {
			return err
		}
	}
	// The API opens last: once the socket answers, the node is fully up.
	if err := d.startAPI(); err != nil {
		return err
	}
	// The worker starts once gossip and raft are up: its session needs them.
	d.goBG(func() { _ = d.parts.agent.Run(ctx) })
	d.goBG(func() { d.registerLoop(ctx) })
	d.renewer = pki.NewRenewer(pki.RenewerConfig{Holder: d.trust.holder, Renew: d.renewCert, Logger: d.log.With("component", "renewer")})
	d.goBG(func() { _ = d.renewer.Run(ctx) })
	d.goBG(func() { d.watchTrust(ctx) })
	d.log.Info("started", "role", id.Role, "api", d.cfg.apiAddr(), "socket", d.cfg.socketPath())
	return nil
}

func (d *Daemon) goBG(f func()) {
	d.bg.Add(1)
	go func() { defer d.bg.Done(); f() }()
}

func (d *Daemon) raftDir() string { return d.cfg.DataDir + "/raft" }

// lockDataDir makes a second daemon on the same data dir fail at once instead of
// corrupting the first one's Raft log.
func (d *Daemon) lockDataDir() error {
	f, err := os.OpenFile(d.cfg.DataDir+"/lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("a swarmlet daemon is already running with data dir %s: %w", d.cfg.DataDir, ErrAlreadyRunning)
	}
	d.lock = f
	return nil
}

func (d *Daemon) startRaft(bootstrap bool) error {
	if d.currentDEK() == nil {
		// A promoted worker: its Raft dir is new, and its node key and gossip keys
		// are sealed from now on.
		if err := d.openDataKey(context.Background()); err != nil {
			return err
		}
		d.resealSecrets()
	}
	stream, err := d.newStreamLayer(d.cfg.raftAddr())
	if err != nil {
		return fmt.Errorf("start raft: %w (is another node using port %d on %s?)", err, d.cfg.PortBase+offsetRaft, d.cfg.AdvertiseAddr)
	}
	st, err := raftstore.Open(raftstore.Config{
		NodeID: d.id.NodeID, RaftAddr: d.cfg.raftAddr(), DataDir: d.raftDir(),
		Stream: stream, Bootstrap: bootstrap, DataKey: d.dek,
		SnapshotThreshold: envUint("SWARMLET_RAFT_SNAPSHOT_THRESHOLD"),
		TrailingLogs:      envUint("SWARMLET_RAFT_TRAILING_LOGS"),
		SnapshotInterval:  envDuration("SWARMLET_RAFT_SNAPSHOT_INTERVAL"),
		Logger:            d.log.With("component", "raftstore"),
		Hooks:             d.raftHooks(),
	})
	if err != nil {
		stream.Close()
		return fmt.Errorf("start raft on %s: %w", d.cfg.raftAddr(), err)
	}
	d.observeLeaders(st)
	d.mu.Lock()
	d.store = st
	d.mu.Unlock()
	return nil
}

// selfNode describes this node as it registers itself.
func (d *Daemon) selfNode(id *identity) api.Node {
	return api.Node{
		ID: id.NodeID, Hostname: d.cfg.Hostname, Addr: d.cfg.AdvertiseAddr,
		APIPort: d.cfg.PortBase + offsetAPI, RaftPort: d.cfg.PortBase + offsetRaft,
		GossipPort: d.cfg.gossipPort(), DNSPort: d.cfg.DNSPort,
		Role: id.Role, Availability: d.cfg.Availability, Engine: d.engineName(),
		Resources: hostResources(), Platform: d.platform, EngineLabels: d.engineLabels,
	}
}

func (d *Daemon) engineName() string {
	if d.engineKind != "" {
		return d.engineKind
	}
	return d.cfg.Engine
}

// shutdown stops the node's parts in reverse order. Tasks keep running: a restart
// must not interrupt services (CLI.md).
func (d *Daemon) shutdown() {
	select {
	case <-d.stopped:
		return
	default:
	}
	close(d.stopped)
	d.mu.Lock()
	st := d.store
	d.mu.Unlock()
	if st != nil && st.IsLeader() {
		// Hand leadership over before anything stops, so a graceful stop of the
		// leader costs the cluster no election timeout.
		if err := st.Raft().LeadershipTransfer().Error(); err != nil {
			d.log.Info("leadership transfer", "err", err)
		}
	}
	if d.cancel != nil {
		d.cancel()
	}
	for _, s := range d.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.Shutdown(ctx)
		cancel()
	}
	if d.gossip != nil {
		if err := d.gossip.Leave(2 * time.Second); err != nil {
			d.log.Warn("gossip leave", "err", err)
		}
		_ = d.gossip.Shutdown()
	}
	d.bg.Wait()
	d.mu.Lock()
	st = d.store
	d.mu.Unlock()
	if st != nil {
		if err := st.Close(); err != nil {
			d.log.Warn("raft shutdown", "err", err)
		}
	}
	d.stopParts()
	if d.left {
		d.forgetCluster()
	}
	if len(d.servers) > 0 {
		_ = os.Remove(d.cfg.socketPath())
	}
	if d.lock != nil {
		d.lock.Close()
	}
	d.log.Info("stopped")
}

func envUint(name string) uint64 {
	v, _ := strconv.ParseUint(os.Getenv(name), 10, 64)
	return v
}

func envDuration(name string) time.Duration {
	v, _ := time.ParseDuration(os.Getenv(name))
	return v
}

// hostResources is what this node offers the scheduler.
func hostResources() api.Resources {
	var r api.Resources
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		r.MemoryBytes = int64(si.Totalram) * int64(si.Unit)
	}
	r.NanoCPUs = int64(runtime.NumCPU()) * 1e9
	return r
}
