package raftstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/swarmlet/swarmlet/api"
)

// Business errors returned by Apply: the command was valid but refused, and nothing changed.
var (
	// They are the api sentinels (or wrap them), so errors.Is works the same on
	// an error that crossed the wire.
	ErrNameTaken       = fmt.Errorf("name already in use: %w", api.ErrConflict)
	ErrNotFound        = api.ErrNotFound
	ErrVersionConflict = fmt.Errorf("version conflict: %w", api.ErrConflict)
	ErrNotInitialized  = fmt.Errorf("cluster not initialised: %w", api.ErrNotLeader)
	ErrInvalid         = api.ErrInvalid
)

// Cluster is the cluster-wide record: identity, trust material and the address plan.
type Cluster struct {
	ID    string       `json:"id"`
	Trust ClusterTrust `json:"trust"`
	api.ClusterNetwork
	PortRange   [2]int `json:"port_range"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`

	// RestartGrace is how long a restarting node's tasks are kept (nil: the
	// default; 0: not at all). RestartGraceOrDefault reads it.
	RestartGrace *time.Duration `json:"restart_grace,omitempty"`
}

// RestartGraceOrDefault is the cluster's restart grace.
func (c *Cluster) RestartGraceOrDefault() time.Duration {
	if c == nil || c.RestartGrace == nil {
		return api.DefaultRestartGrace
	}
	return *c.RestartGrace
}

const (
	tableNodes    = "nodes"
	tableServices = "services"
	tableTasks    = "tasks"
	tableCluster  = "cluster"
)

func schema() *memdb.DBSchema {
	id := &memdb.IndexSchema{Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}}
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableNodes: {Name: tableNodes, Indexes: map[string]*memdb.IndexSchema{"id": id}},
		tableServices: {Name: tableServices, Indexes: map[string]*memdb.IndexSchema{
			"id":   id,
			"name": {Name: "name", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
		}},
		tableTasks: {Name: tableTasks, Indexes: map[string]*memdb.IndexSchema{
			"id":      id,
			"service": {Name: "service", Indexer: &memdb.StringFieldIndex{Field: "ServiceID"}},
			"node":    {Name: "node", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "NodeID"}},
		}},
		tableCluster:      {Name: tableCluster, Indexes: map[string]*memdb.IndexSchema{"id": id}},
		tableRegistryAuth: registryAuthTable(),
		tableSecrets:      secretsTable(),
		tableEvents: {Name: tableEvents, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: &memdb.UintFieldIndex{Field: "ID"}},
		}},
	}}
}

// serviceRow wraps a service so memdb can index it by name.
type serviceRow struct {
	ID   string
	Name string
	S    *api.Service
}

// State is the in-memory cluster state every manager holds. It is written only by
// the FSM (or directly in tests, with no Raft at all) and read through snapshots.
type State struct {
	db *memdb.MemDB

	mu     sync.Mutex
	index  uint64
	notify chan struct{}
	feed   feed // what recent entries changed (changes.go)
}

// NewState returns an empty state.
func NewState() *State {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		panic(fmt.Sprintf("memdb schema: %v", err)) // a bug in schema(), not a runtime condition
	}
	return &State{db: db, notify: make(chan struct{})}
}

// Index is the Raft index of the last applied change.
func (s *State) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// Watch returns a channel closed at the next change.
func (s *State) Watch() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify
}

// WaitIndex blocks until the state is past minIndex or ctx ends, and returns the index.
func (s *State) WaitIndex(ctx context.Context, minIndex uint64) uint64 {
	for {
		s.mu.Lock()
		idx, ch := s.index, s.notify
		s.mu.Unlock()
		if idx > minIndex {
			return idx
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return idx
		}
	}
}

func (s *State) current() *memdb.MemDB {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db
}

// commit publishes a write transaction and its index together, so a snapshot never
// pairs new data with an old index (managers compare digests at equal indexes).
func (s *State) commit(txn *memdb.Txn, index uint64) {
	changed := changedOf(txn.Changes())
	s.mu.Lock()
	txn.Commit()
	if index > s.index {
		s.index = index
	}
	s.feed.add(index, changed)
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
}

// Snapshot is a consistent read view of the state at one index.
type Snapshot struct {
	txn   *memdb.Txn
	index uint64
}

// Snapshot returns a read view; it is cheap (memdb's radix trees are immutable).
func (s *State) Snapshot() *Snapshot {
	s.mu.Lock()
	idx := s.index
	txn := s.db.Txn(false)
	s.mu.Unlock()
	return &Snapshot{txn: txn, index: idx}
}

func (v *Snapshot) Index() uint64 { return v.index }

func (v *Snapshot) Cluster() *Cluster {
	raw, _ := v.txn.First(tableCluster, "id", "cluster")
	if raw == nil {
		return nil
	}
	return raw.(*clusterRow).C
}

func (v *Snapshot) Nodes() []*api.Node {
	var out []*api.Node
	it, _ := v.txn.Get(tableNodes, "id")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*api.Node))
	}
	return out
}

func (v *Snapshot) Node(id string) *api.Node {
	raw, _ := v.txn.First(tableNodes, "id", id)
	if raw == nil {
		return nil
	}
	return raw.(*api.Node)
}

func (v *Snapshot) Services() []*api.Service {
	var out []*api.Service
	it, _ := v.txn.Get(tableServices, "id")
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*serviceRow).S)
	}
	return out
}

// Service finds a service by name or ID.
func (v *Snapshot) Service(nameOrID string) *api.Service {
	if raw, _ := v.txn.First(tableServices, "name", nameOrID); raw != nil {
		return raw.(*serviceRow).S
	}
	if raw, _ := v.txn.First(tableServices, "id", nameOrID); raw != nil {
		return raw.(*serviceRow).S
	}
	return nil
}

func (v *Snapshot) Task(id string) *api.Task {
	raw, _ := v.txn.First(tableTasks, "id", id)
	if raw == nil {
		return nil
	}
	return raw.(*api.Task)
}

func (v *Snapshot) Tasks() []*api.Task { return v.tasks("id") }

func (v *Snapshot) TasksByService(serviceID string) []*api.Task {
	return v.tasks("service", serviceID)
}

func (v *Snapshot) TasksByNode(nodeID string) []*api.Task { return v.tasks("node", nodeID) }

func (v *Snapshot) tasks(index string, args ...any) []*api.Task {
	var out []*api.Task
	it, _ := v.txn.Get(tableTasks, index, args...)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*api.Task))
	}
	return out
}

// Digest is a hash of the whole state, equal on two managers exactly when their
// states are equal; scenario checkers compare it across managers at one index.
func (v *Snapshot) Digest() string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	_ = enc.Encode(v.Cluster())
	nodes := v.Nodes()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	_ = enc.Encode(nodes)
	svcs := v.Services()
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].ID < svcs[j].ID })
	_ = enc.Encode(svcs)
	tasks := v.Tasks()
	sort.Slice(tasks, func(i, j int) bool { return tasks[i].ID < tasks[j].ID })
	_ = enc.Encode(tasks)
	// Secrets by metadata only: a digest of a value would let whoever reads
	// debug state test guesses of it.
	_ = enc.Encode(v.Secrets(api.KindSecret))
	_ = enc.Encode(v.Secrets(api.KindConfig))
	return hex.EncodeToString(h.Sum(nil))
}
