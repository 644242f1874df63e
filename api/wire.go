package api

// Wire types of the HTTP API (/v1/...).

// ErrorBody is every error response's body.
type ErrorBody struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

// JoinRequest asks the cluster to admit a node. It is sent only over a connection
// whose manager proved, in the handshake, the CA the token pins. The node's ID is
// the manager's choice; the node sends a certificate request for a key it keeps.
type JoinRequest struct {
	Token string `json:"token"`
	Node  Node   `json:"node"`
	CSR   []byte `json:"csr"` // DER
}

// JoinResponse tells a joining node what it joined and who it now is.
type JoinResponse struct {
	NodeID    string   `json:"node_id"`
	ClusterID string   `json:"cluster_id"`
	Role      NodeRole `json:"role"`
	Managers  []Node   `json:"managers"`
	// Network is the cluster's address plan, fixed at init.
	Network ClusterNetwork `json:"network"`
	// Certificate is the node's chain (PEM, leaf first); CA the roots to trust.
	Certificate string   `json:"certificate"`
	CA          string   `json:"ca"`
	GossipKeys  [][]byte `json:"gossip_keys"`
}

// ClusterNetwork is the cluster's address plan, set at init and never changed:
// the container pool that every node gets a subnet of, the length of those
// subnets, and the routable range service VIPs come from.
type ClusterNetwork struct {
	Pool       string `json:"pool,omitempty"`        // CIDR, e.g. 10.42.0.0/16
	SubnetBits int    `json:"subnet_bits,omitempty"` // per-node prefix length, e.g. 24
	// ServiceRange keeps the JSON name of the VIP pool it replaced, so clusters
	// initialised before the rename read the same.
	ServiceRange string `json:"vip_pool"`
}

// CertificateRequest asks for a certificate for a key the caller keeps: a node's
// renewal (the role and ID are the node table's) or an operator's client
// certificate (Name is then the operator's name).
type CertificateRequest struct {
	CSR  []byte `json:"csr"` // DER
	Name string `json:"name,omitempty"`
}

// CertificateResponse is an issued chain and the roots to trust.
type CertificateResponse struct {
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
}

// CAInfo describes the cluster's CA.
type CAInfo struct {
	// CA is the trust bundle (PEM): one root, or two during a rotation.
	CA string `json:"ca"`
	// Digest is the CA digest join tokens carry.
	Digest     string `json:"digest"`
	Rotating   bool   `json:"rotating"`
	CertExpiry string `json:"cert_expiry"`
	// Pending lists the nodes whose certificate the current root has not signed
	// yet: a rotation finishes when it is empty.
	Pending []string `json:"pending,omitempty"`
}

// GossipKeyInfo describes the gossip keyring (never the keys themselves).
type GossipKeyInfo struct {
	Keys int `json:"keys"`
	// Phase of a rotation under way: 1 new key installed, 2 new key in use, 0 done.
	Phase int `json:"phase"`
}

// UnlockKey is the cluster's unlock key ("" when autolock is off).
type UnlockKey struct {
	Key string `json:"key"`
}

// UnlockRequest gives a locked manager its unlock key.
type UnlockRequest struct {
	Key string `json:"key"`
}

// Info describes the node answering and the cluster as it sees it.
type Info struct {
	NodeID      string   `json:"node_id"`
	Hostname    string   `json:"hostname"`
	Addr        string   `json:"addr"`
	Role        NodeRole `json:"role"`
	ClusterID   string   `json:"cluster_id"`
	Engine      string   `json:"engine"`
	LB          string   `json:"lb"`
	LeaderID    string   `json:"leader_id"`
	IsLeader    bool     `json:"is_leader"`
	RaftIndex   uint64   `json:"raft_index"`
	RaftTerm    uint64   `json:"raft_term"`
	Managers    int      `json:"managers"`
	ManagersUp  int      `json:"managers_reachable"`
	Nodes       int      `json:"nodes"`
	Services    int      `json:"services"`
	Tasks       int      `json:"tasks"`
	DataDir     string   `json:"data_dir"`
	Version     string   `json:"version"`
	DNSAddr     string   `json:"dns_addr"`
	GossipAlive int      `json:"gossip_alive"`
	// Locked: an autolocked manager waiting for 'swarmlet unlock'.
	Locked bool `json:"locked,omitempty"`
}

// DebugState lets scenario checkers compare managers.
type DebugState struct {
	NodeID string `json:"node_id"`
	Index  uint64 `json:"index"`
	Term   uint64 `json:"term"`
	Leader string `json:"leader"`
	Digest string `json:"digest"`
}

// JoinTokens carries the current tokens.
type JoinTokens struct {
	Worker  string `json:"worker"`
	Manager string `json:"manager"`
}

// NodeUpdateRequest changes a node (operator-owned fields).
type NodeUpdateRequest struct {
	Availability Availability      `json:"availability,omitempty"`
	Role         NodeRole          `json:"role,omitempty"`
	LabelAdd     map[string]string `json:"label_add,omitempty"`
	LabelRm      []string          `json:"label_rm,omitempty"`
}

// ScaleRequest sets a service's replica count.
type ScaleRequest struct {
	Replicas uint64 `json:"replicas"`
}

// ServiceRollbackRequest returns a service to its previous spec, checked against
// Version (0: any).
type ServiceRollbackRequest struct {
	Version uint64 `json:"version"`
}

// ServiceUpdateRequest replaces a spec, checked against Version (0: any).
type ServiceUpdateRequest struct {
	Version uint64      `json:"version"`
	Spec    ServiceSpec `json:"spec"`
}

// Assignments is what a worker's session receives: its own record, its tasks, and
// the endpoint table for discovery and load balancing.
//
// A worker that asks with delta=1 may get a delta instead (Delta true): what
// changed since the index it sent (Since), which the leader still remembers the
// tables at. Then Tasks holds only the node's tasks changed since, TaskIDs names
// every task of the node, Endpoints holds each service whose endpoints or header
// changed (Tasks: the endpoints added or changed; Gone: those that left),
// EndpointsGone the services removed, Nodes the nodes changed and NodesGone
// those removed; CA and GossipKeys come only when they changed. SessionView
// turns a run of answers back into whole ones. A leader that does not know
// deltas, or no longer knows the worker's index, answers whole.
type Assignments struct {
	Index     uint64             `json:"index"`
	Node      *Node              `json:"node"`
	Tasks     []*Task            `json:"tasks"`
	Endpoints []ServiceEndpoints `json:"endpoints,omitempty"`
	Nodes     []Node             `json:"nodes,omitempty"` // every node's address, for SRV targets and managers
	// Voters are the Raft voters as the leader sees them: a demoted manager learns
	// from this that it was removed (the leader stops talking to it, so its own
	// Raft never hears of the change).
	Voters []string `json:"voters,omitempty"`
	// RegistryAuth holds the registry credentials (docker's X-Registry-Auth
	// encoding) of the services this node runs live tasks of, and of no other.
	RegistryAuth map[string]string `json:"registry_auth,omitempty"`
	// ImageSources names, for each pinned image ID this node's tasks need, the
	// other nodes whose live tasks hold it (node-to-node image sharing).
	ImageSources map[string][]string `json:"image_sources,omitempty"`
	// Secrets and Configs hold the values of the secrets and configs (each at
	// the version the task names) that this node's live tasks use, and of no
	// other: the one answer a secret's value ever leaves the managers in.
	Secrets []SecretValue `json:"secrets,omitempty"`
	Configs []SecretValue `json:"configs,omitempty"`
	// CA is the trust bundle (PEM) and GossipKeys the gossip keyring: a worker
	// follows CA rotations and gossip key changes through its session.
	CA         string   `json:"ca,omitempty"`
	GossipKeys [][]byte `json:"gossip_keys,omitempty"`

	// Rows is the endpoint table as a leader that takes deltas sends it (rows.go)
	// instead of Endpoints, whole or as a delta.
	Rows []ServiceRows `json:"rows,omitempty"`

	Delta         bool     `json:"delta,omitempty"`
	Since         uint64   `json:"since,omitempty"`
	TaskIDs       []string `json:"task_ids,omitempty"`
	EndpointsGone []string `json:"endpoints_gone,omitempty"`
	NodesGone     []string `json:"nodes_gone,omitempty"`
}

// StatusReport carries a worker's task status changes. Whose tasks they are is
// the caller's identity, never a field of the report.
type StatusReport struct {
	Ops []TaskOp `json:"ops"`
}

// RegisterRequest refreshes the caller's own node record after a restart (address,
// ports, engine, resources); the node must already be a member.
type RegisterRequest struct {
	Node Node `json:"node"`
}

// NodeInfo is a node as the API shows it.
type NodeInfo struct {
	Node
	Leader bool `json:"leader"`
}

// ServiceInfo is a service as the API shows it: the stored service and live counts.
type ServiceInfo struct {
	Service
	Running int    `json:"running"`
	Desired uint64 `json:"desired"`
	// Completed counts, for a job, the tasks of its current run that completed.
	Completed int `json:"completed,omitempty"`
}
