package raftstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/swarmlet/swarmlet/api"
)

// Errors a proposer acts on. ErrNotLeader and ErrNoQuorum are refusals: nothing was
// written. ErrOutcomeUnknown means the entry may or may not commit.
var (
	ErrNotLeader      = api.ErrNotLeader
	ErrNoQuorum       = api.ErrNoQuorum
	ErrOutcomeUnknown = api.ErrOutcomeUnknown
)

// Timing holds Raft's clocks. LAN defaults give a failover of about 1-2 s.
type Timing struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
}

// LANTiming suits managers on one network: hashicorp/raft's defaults are tuned for
// WANs and take several seconds to notice a dead leader.
func LANTiming() Timing {
	return Timing{HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond, CommitTimeout: 20 * time.Millisecond}
}

// Config opens a store.
type Config struct {
	NodeID   string
	RaftAddr string // advertised ip:port of this manager's Raft transport
	DataDir  string // raft.db and snapshots/ go here
	// Stream carries Raft traffic; node passes the one seam where TLS plugs in.
	// Nil means plain TCP on RaftAddr.
	Stream    raft.StreamLayer
	Bootstrap bool // start a new single-voter cluster if there is no state yet
	Timing    Timing
	// SnapshotThreshold is how many entries trigger a snapshot (0: 8192),
	// TrailingLogs how many entries a snapshot leaves in the log (0: 4096), and
	// SnapshotInterval how often the threshold is checked (0: 30 s). Small values
	// make a lagging manager catch up from a snapshot (scenarios use that).
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	Logger            *slog.Logger
	// DataKey, if set, seals every log entry and snapshot on disk (encryption at
	// rest; atrest.go). The daemon always sets it; nil is for tests and benchmarks
	// of the raw stores.
	DataKey *DataKey
	// InMemory keeps log and snapshots in memory (tests and benchmarks).
	InMemory bool
	// Transport overrides Stream entirely (raft.InmemTransport in tests).
	Transport raft.Transport
	// Hooks observe commits and applies (metrics); any may be nil.
	Hooks Hooks
}

// Hooks are called synchronously and must be cheap. They only observe: nothing
// they do can change what Apply does, which stays deterministic.
type Hooks struct {
	// Commit: a proposal of this store's Apply committed and was applied here
	// (or failed) after d.
	Commit func(t MsgType, d time.Duration)
	// Apply: one committed entry took d in the state machine.
	Apply func(t MsgType, d time.Duration)
	// Entry: one committed entry of n bytes (as in the log, before sealing).
	Entry func(t MsgType, n int)
	// Snapshot: a snapshot of n bytes (before sealing) was written in d.
	Snapshot func(n int64, d time.Duration)
}

// Store is a manager's replicated state: Raft plus the FSM's State.
type Store struct {
	raft      *raft.Raft
	state     *State
	transport raft.Transport
	closers   []io.Closer
	log       *slog.Logger
	id        string
	hooks     Hooks
	closed    chan struct{}
	closeOnce sync.Once
}

// Open starts Raft over the data dir. Bootstrap only takes effect on an empty dir.
func Open(cfg Config) (*Store, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := cfg.Timing
	if t.HeartbeatTimeout == 0 {
		t = LANTiming()
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout, rc.ElectionTimeout = t.HeartbeatTimeout, t.ElectionTimeout
	rc.LeaderLeaseTimeout, rc.CommitTimeout = t.LeaderLeaseTimeout, t.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	if rc.SnapshotThreshold == 0 {
		rc.SnapshotThreshold = 8192
	}
	rc.SnapshotInterval = cfg.SnapshotInterval
	if rc.SnapshotInterval == 0 {
		rc.SnapshotInterval = 30 * time.Second
	}
	rc.TrailingLogs = cfg.TrailingLogs
	if rc.TrailingLogs == 0 {
		rc.TrailingLogs = 4096
	}
	// Entries are up to about a megabyte (a loop's batch of 1,024 task ops), and
	// one AppendEntries must cross within the transport's timeout even on a busy
	// machine: 256 of them (256 MB) never did, and the leader lost its lease.
	rc.MaxAppendEntries = 32
	rc.BatchApplyCh = true
	rc.Logger = newHCLogger(logger.With("subsystem", "raft"))

	s := &Store{state: NewState(), log: logger, id: cfg.NodeID, hooks: cfg.Hooks, closed: make(chan struct{})}
	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if cfg.InMemory {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("raft data dir: %w", err)
		}
		bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft.db")})
		if err != nil {
			return nil, fmt.Errorf("open raft.db: %w", err)
		}
		s.closers = append(s.closers, bolt)
		logs, stable = bolt, bolt
		fss, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, rc.Logger)
		if err != nil {
			s.closeAll()
			return nil, fmt.Errorf("snapshot store: %w", err)
		}
		snaps = fss
		if cfg.DataKey != nil {
			if logs, snaps, err = sealStores(bolt, fss, *cfg.DataKey); err != nil {
				s.closeAll()
				return nil, err
			}
		}
	}
	// Replication reads back what was just appended; the cache spares reading it
	// from bolt, unsealing and decoding it again for each follower.
	if cached, err := raft.NewLogCache(64, logs); err == nil {
		logs = cached
	}
	switch {
	case cfg.Transport != nil:
		s.transport = cfg.Transport
	default:
		stream := cfg.Stream
		if stream == nil {
			ln, err := newTCPStream(cfg.RaftAddr)
			if err != nil {
				s.closeAll()
				return nil, err
			}
			stream = ln
		}
		s.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: stream, MaxPool: 3, Timeout: 2 * time.Second, Logger: rc.Logger})
	}
	if cfg.Bootstrap {
		has, err := raft.HasExistingState(logs, stable, snaps)
		if err != nil {
			s.closeAll()
			return nil, fmt.Errorf("check raft state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: s.transport.LocalAddr()}}}
			if err := raft.BootstrapCluster(rc, logs, stable, snaps, s.transport, conf); err != nil {
				s.closeAll()
				return nil, fmt.Errorf("bootstrap raft: %w", err)
			}
		}
	}
	r, err := raft.NewRaft(rc, &fsm{state: s.state, hooks: cfg.Hooks}, logs, stable, snaps, s.transport)
	if err != nil {
		s.closeAll()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	s.raft = r
	return s, nil
}

// RecoverSingle rewrites the Raft configuration in the data dir so this node is the
// only voter: the way out when a majority of managers is lost for good.
func RecoverSingle(cfg Config) error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = newHCLogger(slog.New(slog.DiscardHandler))
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft.db")})
	if err != nil {
		return fmt.Errorf("open raft.db: %w", err)
	}
	defer bolt.Close()
	fss, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, rc.Logger)
	if err != nil {
		return fmt.Errorf("snapshot store: %w", err)
	}
	var (
		logs  raft.LogStore      = bolt
		snaps raft.SnapshotStore = fss
	)
	if cfg.DataKey != nil {
		if logs, snaps, err = sealStores(bolt, fss, *cfg.DataKey); err != nil {
			return err
		}
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.RaftAddr))
	conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(cfg.RaftAddr)}}}
	if err := raft.RecoverCluster(rc, &fsm{state: NewState()}, logs, bolt, snaps, trans, conf); err != nil {
		return fmt.Errorf("recover raft configuration: %w", err)
	}
	return nil
}

// sealStores puts the encryption-at-rest wrappers around raft-boltdb's log and the
// file snapshot store; the stable store (term, vote) stays as it is.
func sealStores(bolt *raftboltdb.BoltStore, fss *raft.FileSnapshotStore, key DataKey) (raft.LogStore, raft.SnapshotStore, error) {
	logs, err := NewEncryptedLogStore(bolt, key)
	if err != nil {
		return nil, nil, err
	}
	return logs, NewEncryptedSnapshotStore(fss, key), nil
}

func (s *Store) closeAll() {
	for _, c := range s.closers {
		_ = c.Close()
	}
}

// State is the replicated state this manager has applied.
func (s *Store) State() *State { return s.state }

// Raft exposes the underlying node for leadership and configuration changes.
func (s *Store) Raft() *raft.Raft { return s.raft }

// IsLeader reports whether this manager is the Raft leader.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's ID and Raft address, empty when none is known.
func (s *Store) Leader() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// Apply proposes one command and waits for it to commit, bounded by ctx.
// Errors: a business error from the FSM (nothing changed), ErrNotLeader (nothing
// written), or ErrOutcomeUnknown.
func (s *Store) Apply(ctx context.Context, c Command) (any, error) {
	b, err := Encode(c)
	if err != nil {
		return nil, err
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	start := time.Now()
	f := s.raft.Apply(b, timeout)
	done := make(chan struct{})
	go func() {
		_ = f.Error()
		if s.hooks.Commit != nil {
			s.hooks.Commit(c.Type(), time.Since(start))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: waiting for commit: %w", c.Type(), ErrOutcomeUnknown)
	}
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrRaftShutdown):
			// The entry never reached the log: a clean refusal.
			return nil, fmt.Errorf("%s: %w", c.Type(), ErrNotLeader)
		default:
			// ErrLeadershipLost and friends: the entry was appended and may still commit.
			return nil, fmt.Errorf("%s: %v: %w", c.Type(), err, ErrOutcomeUnknown)
		}
	}
	r, _ := f.Response().(applyResult)
	return r.Value, r.Err
}

// ApplyTaskOps writes a batch of task changes in one entry (dispatcher.Store).
func (s *Store) ApplyTaskOps(ctx context.Context, ops []api.TaskOp) error {
	if len(ops) == 0 {
		return nil
	}
	_, err := s.Apply(ctx, &TaskOps{Ops: ops})
	return err
}

// ApplyUpdateOp writes a decision of the leader's update loop (dispatcher.Store):
// a status change as ServiceUpdateStatus, a rollback as ServiceRollback.
func (s *Store) ApplyUpdateOp(ctx context.Context, op api.UpdateOp) error {
	var c Command
	switch op.Kind {
	case api.UpdateOpStatus:
		c = &ServiceUpdateStatus{ServiceID: op.ServiceID, SpecVersion: op.SpecVersion, Status: op.Status}
	case api.UpdateOpRollback:
		c = &ServiceRollback{Name: op.ServiceID, ExpectedVersion: op.SpecVersion, Message: op.Status.Message, At: op.At}
	default:
		return fmt.Errorf("update op %q: %w", op.Kind, ErrInvalid)
	}
	_, err := s.Apply(ctx, c)
	return err
}

// Snapshot returns a read view of the applied state.
func (s *Store) Snapshot() *Snapshot { return s.state.Snapshot() }

// Watch returns a channel closed at the next applied change.
func (s *Store) Watch() <-chan struct{} { return s.state.Watch() }

// Barrier waits until everything committed before it is applied locally; a new
// leader calls it before its control loops read the state.
func (s *Store) Barrier(timeout time.Duration) error { return s.raft.Barrier(timeout).Error() }

// AddVoter makes a manager a Raft voter (idempotent).
func (s *Store) AddVoter(id, addr string) error {
	return s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error()
}

// RemoveServer drops a server from the Raft configuration (idempotent).
func (s *Store) RemoveServer(id string) error {
	return s.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error()
}

// Voters returns the Raft configuration's voter IDs mapped to their addresses.
func (s *Store) Voters() (map[string]string, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			out[string(srv.ID)] = string(srv.Address)
		}
	}
	return out, nil
}

// Term is the current Raft term.
func (s *Store) Term() uint64 { return s.raft.CurrentTerm() }

// LeaderCh reports leadership gained (true) and lost (false).
func (s *Store) LeaderCh() <-chan bool { return s.raft.LeaderCh() }

// Closed is closed once Close is called.
func (s *Store) Closed() <-chan struct{} { return s.closed }

// Close stops Raft and closes the log store.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	err := s.raft.Shutdown().Error()
	s.closeAll()
	if s.transport != nil {
		if c, ok := s.transport.(io.Closer); ok {
			_ = c.Close()
		}
	}
	return err
}

// tcpStream is a plain TCP raft.StreamLayer whose dials leave from the bound address.
type tcpStream struct {
	net.Listener
	local net.Addr
}

func newTCPStream(addr string) (*tcpStream, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", addr, err)
	}
	return &tcpStream{Listener: ln, local: ln.Addr()}, nil
}

func (t *tcpStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	tcp := t.local.(*net.TCPAddr)
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: tcp.IP}}
	return d.Dial("tcp", string(addr))
}

// newHCLogger routes hashicorp/raft's hclog output into slog.
func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Info,
		Output: slogWriter{l},
		// slog adds its own time.
		DisableTime: true,
	})
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	for len(msg) > 0 && (msg[len(msg)-1] == '\n') {
		msg = msg[:len(msg)-1]
	}
	w.l.Info(msg)
	return len(p), nil
}

// LocalAddr is the address this manager's Raft transport listens on.
func (s *Store) LocalAddr() string { return string(s.transport.LocalAddr()) }
