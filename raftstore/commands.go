package raftstore

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// MsgType is the first byte of every Raft log entry. The list is append-only: a
// released value never changes meaning, so old logs replay the same way.
type MsgType byte

const (
	MsgClusterInit MsgType = iota
	MsgNodeUpsert
	MsgNodeStatus
	MsgNodeUpdate
	MsgNodeRemove
	MsgServiceCreate
	MsgServiceUpdate
	MsgServiceScale
	MsgServiceRemove
	MsgTaskOps
	MsgTokenRotate
	MsgServiceRollback
	MsgServiceUpdateStatus
	MsgLeaderElected
	MsgCAUpdate
	MsgGossipKeys
	MsgUnlockKey
	MsgNodeCert
	MsgNodeRestarting
	MsgSecretCreate
	MsgSecretUpdate
	MsgSecretRemove
	MsgNodeStatuses
)

var msgNames = map[MsgType]string{
	MsgClusterInit: "cluster-init", MsgNodeUpsert: "node-upsert", MsgNodeStatus: "node-status",
	MsgNodeUpdate: "node-update", MsgNodeRemove: "node-remove", MsgServiceCreate: "service-create",
	MsgServiceUpdate: "service-update", MsgServiceScale: "service-scale", MsgServiceRemove: "service-remove",
	MsgTaskOps: "task-ops", MsgTokenRotate: "token-rotate", MsgServiceRollback: "service-rollback",
	MsgServiceUpdateStatus: "service-update-status", MsgLeaderElected: "leader-elected",
	MsgCAUpdate: "ca-update", MsgGossipKeys: "gossip-keys", MsgUnlockKey: "unlock-key", MsgNodeCert: "node-cert", MsgNodeRestarting: "node-restarting",
	MsgSecretCreate: "secret-create", MsgSecretUpdate: "secret-update", MsgSecretRemove: "secret-remove",
	MsgNodeStatuses: "node-statuses",
}

func (t MsgType) String() string {
	if n, ok := msgNames[t]; ok {
		return n
	}
	return fmt.Sprintf("msg(%d)", byte(t))
}

// Command is one typed state change. Everything time- or randomness-dependent is
// chosen by the proposer and carried in the command, so Apply is deterministic.
type Command interface{ Type() MsgType }

// ClusterInit creates the cluster: its ID, its trust material (CA, hashed join
// secrets, gossip keys, unlock key) and the address plan (container pool, per-node
// subnet length, service range).
type ClusterInit struct {
	ClusterID string       `json:"cluster_id"`
	Trust     ClusterTrust `json:"trust"`
	// An init written before the cluster network has only the service range
	// (then called the VIP pool); the pool then takes its defaults.
	api.ClusterNetwork
	PortRange [2]int    `json:"port_range"` // published ports picked when the user gives none
	At        time.Time `json:"at"`
	// RestartGrace: how long a restarting node's tasks are kept (nil: the
	// default, api.DefaultRestartGrace; 0: not at all).
	RestartGrace *time.Duration `json:"restart_grace,omitempty"`
}

// NodeUpsert registers a node (join) or refreshes its self-description (restart).
// Operator-owned fields (availability, labels) of an existing node are kept.
type NodeUpsert struct {
	Node api.Node `json:"node"`
	// Refresh only updates a node that exists: a restarting node that was removed
	// while it was away must not put itself back without a join token.
	Refresh bool `json:"refresh,omitempty"`
}

// NodeStatus records the leader's liveness verdict from gossip.
type NodeStatus struct {
	NodeID string         `json:"node_id"`
	Status api.NodeStatus `json:"status"`
	At     time.Time      `json:"at"`
}

// NodeUpdate is an operator's change to a node.
type NodeUpdate struct {
	NodeID       string            `json:"node_id"`
	Availability api.Availability  `json:"availability,omitempty"`
	Role         api.NodeRole      `json:"role,omitempty"`
	LabelAdd     map[string]string `json:"label_add,omitempty"`
	LabelRm      []string          `json:"label_rm,omitempty"`
}

// NodeRemove drops a node from the cluster.
type NodeRemove struct {
	NodeID string `json:"node_id"`
	Force  bool   `json:"force"`
}

// ServiceCreate adds a service; the name must be free.
type ServiceCreate struct {
	ID   string          `json:"id"`
	Spec api.ServiceSpec `json:"spec"`
	At   time.Time       `json:"at"`
	// RegistryAuth: the creator's registry credentials (registryauth.go).
	RegistryAuth string `json:"registry_auth,omitempty"`
}

// ServiceUpdate replaces a spec if it is still at ExpectedVersion (0: any).
type ServiceUpdate struct {
	Name            string          `json:"name"`
	ExpectedVersion uint64          `json:"expected_version"`
	Spec            api.ServiceSpec `json:"spec"`
	At              time.Time       `json:"at"`
	// RegistryAuth replaces the stored credentials when set.
	RegistryAuth string `json:"registry_auth,omitempty"`
}

// ServiceRollback returns a service to its previous spec, rolled out with its
// rollback settings: by an operator (service rollback) or by the leader's update
// loop when an update fails (Message says why). Refused when the service has no
// previous spec, or is no longer at ExpectedVersion (0: any).
type ServiceRollback struct {
	Name            string    `json:"name"`
	ExpectedVersion uint64    `json:"expected_version"`
	Message         string    `json:"message,omitempty"`
	At              time.Time `json:"at"`
}

// ServiceUpdateStatus records what the leader's update loop decided about a rolling
// update (paused, completed), made on the service at SpecVersion; refused if the
// service has moved on since.
type ServiceUpdateStatus struct {
	ServiceID   string           `json:"service_id"`
	SpecVersion uint64           `json:"spec_version"`
	Status      api.UpdateStatus `json:"status"`
}

// ServiceScale sets the replica count, the one change that needs no version check.
type ServiceScale struct {
	Name     string    `json:"name"`
	Replicas uint64    `json:"replicas"`
	At       time.Time `json:"at"`
}

// ServiceRemove deletes a service; its tasks are told to shut down in the same entry.
type ServiceRemove struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

// TaskOps is a batch of task changes in one log entry.
type TaskOps struct {
	Ops []api.TaskOp `json:"ops"`
}

// TokenRotate moves one role's join token to the next generation: the proposer
// derives the new secret from the CA key and sends only its hash, so the old token
// stops working at once and no secret is written.
type TokenRotate struct {
	Role       api.NodeRole `json:"role"`
	Generation uint64       `json:"generation"` // the current generation + 1
	Hash       string       `json:"hash"`
}

// LeaderElected records, in the log and so in the event log, that a new leader
// took over. Leadership is Raft's own business, not a command; the new leader
// proposes this once its barrier has applied, so its place in the log follows
// everything the old leader committed.
type LeaderElected struct {
	NodeID   string    `json:"node_id"`
	Hostname string    `json:"hostname"`
	Term     uint64    `json:"term"`
	At       time.Time `json:"at"`
}

// NodeRestarting records that a node's daemon is stopping to restart, not to
// leave (api/restart.go): its tasks are kept until At plus the cluster's
// restart grace. The node's return clears the mark.
type NodeRestarting struct {
	NodeID string    `json:"node_id"`
	At     time.Time `json:"at"`
}

// NodeStatuses is the leader's liveness verdicts of one member reconciliation in
// one entry: after a mass join or a loss of many nodes at once, one entry
// rather than one per node. Each applies as a NodeStatus; a node removed
// meanwhile is skipped.
type NodeStatuses struct {
	Statuses []NodeStatus `json:"statuses"`
}

func (ClusterInit) Type() MsgType         { return MsgClusterInit }
func (NodeUpsert) Type() MsgType          { return MsgNodeUpsert }
func (NodeStatus) Type() MsgType          { return MsgNodeStatus }
func (NodeUpdate) Type() MsgType          { return MsgNodeUpdate }
func (NodeRemove) Type() MsgType          { return MsgNodeRemove }
func (ServiceCreate) Type() MsgType       { return MsgServiceCreate }
func (ServiceUpdate) Type() MsgType       { return MsgServiceUpdate }
func (ServiceScale) Type() MsgType        { return MsgServiceScale }
func (ServiceRemove) Type() MsgType       { return MsgServiceRemove }
func (TaskOps) Type() MsgType             { return MsgTaskOps }
func (TokenRotate) Type() MsgType         { return MsgTokenRotate }
func (ServiceRollback) Type() MsgType     { return MsgServiceRollback }
func (ServiceUpdateStatus) Type() MsgType { return MsgServiceUpdateStatus }
func (LeaderElected) Type() MsgType       { return MsgLeaderElected }
func (CAUpdate) Type() MsgType            { return MsgCAUpdate }
func (GossipKeysSet) Type() MsgType       { return MsgGossipKeys }
func (UnlockKeySet) Type() MsgType        { return MsgUnlockKey }
func (NodeCert) Type() MsgType            { return MsgNodeCert }
func (NodeRestarting) Type() MsgType      { return MsgNodeRestarting }
func (NodeStatuses) Type() MsgType        { return MsgNodeStatuses }

// Encode turns a command into a log entry: the type byte, then JSON.
func Encode(c Command) ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.Type(), err)
	}
	return append([]byte{byte(c.Type())}, body...), nil
}

// Decode is the inverse of Encode.
func Decode(b []byte) (Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("decode: empty entry")
	}
	var c Command
	switch MsgType(b[0]) {
	case MsgClusterInit:
		c = &ClusterInit{}
	case MsgNodeUpsert:
		c = &NodeUpsert{}
	case MsgNodeStatus:
		c = &NodeStatus{}
	case MsgNodeUpdate:
		c = &NodeUpdate{}
	case MsgNodeRemove:
		c = &NodeRemove{}
	case MsgServiceCreate:
		c = &ServiceCreate{}
	case MsgServiceUpdate:
		c = &ServiceUpdate{}
	case MsgServiceScale:
		c = &ServiceScale{}
	case MsgServiceRemove:
		c = &ServiceRemove{}
	case MsgTaskOps:
		c = &TaskOps{}
	case MsgTokenRotate:
		c = &TokenRotate{}
	case MsgServiceRollback:
		c = &ServiceRollback{}
	case MsgServiceUpdateStatus:
		c = &ServiceUpdateStatus{}
	case MsgLeaderElected:
		c = &LeaderElected{}
	case MsgCAUpdate:
		c = &CAUpdate{}
	case MsgGossipKeys:
		c = &GossipKeysSet{}
	case MsgUnlockKey:
		c = &UnlockKeySet{}
	case MsgNodeStatuses:
		c = &NodeStatuses{}
	case MsgNodeCert:
		c = &NodeCert{}
	case MsgNodeRestarting:
		c = &NodeRestarting{}
	case MsgSecretCreate:
		c = &SecretCreate{}
	case MsgSecretUpdate:
		c = &SecretUpdate{}
	case MsgSecretRemove:
		c = &SecretRemove{}
	default:
		return nil, fmt.Errorf("decode: unknown message type %d", b[0])
	}
	if err := json.Unmarshal(b[1:], c); err != nil {
		return nil, fmt.Errorf("decode %s: %w", MsgType(b[0]), err)
	}
	return c, nil
}
