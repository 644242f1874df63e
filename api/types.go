package api

import (
	"time"
)

// NodeRole says whether a node is a Raft voter (manager) or only runs tasks (worker).
type NodeRole string

const (
	RoleManager NodeRole = "manager"
	RoleWorker  NodeRole = "worker"
)

// NodeStatus is the leader's view of a node's liveness, fed by gossip.
type NodeStatus string

const (
	NodeReady NodeStatus = "ready"
	NodeDown  NodeStatus = "down"
)

// Availability is the operator's wish for a node: active takes new tasks, pause keeps
// what it has but takes nothing new, drain moves its tasks elsewhere.
type Availability string

const (
	AvailabilityActive Availability = "active"
	AvailabilityPause  Availability = "pause"
	AvailabilityDrain  Availability = "drain"
)

// Resources are CPU in nano-CPUs (1e9 = one core) and memory in bytes.
type Resources struct {
	NanoCPUs    int64 `json:"nano_cpus,omitempty"`
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
}

// Node is one member of the cluster as recorded in Raft.
type Node struct {
	ID           string            `json:"id"`
	Hostname     string            `json:"hostname"`
	Addr         string            `json:"addr"` // advertise address (IP only)
	APIPort      int               `json:"api_port"`
	RaftPort     int               `json:"raft_port"`
	GossipPort   int               `json:"gossip_port"`
	DNSPort      int               `json:"dns_port"`
	Role         NodeRole          `json:"role"`
	Status       NodeStatus        `json:"status"`
	Availability Availability      `json:"availability"`
	Labels       map[string]string `json:"labels,omitempty"`
	Engine       string            `json:"engine"`
	Resources    Resources         `json:"resources"` // capacity the node offers
	// Platform and EngineLabels are what the node's engine reports at registration
	// (docker info's OSType, Architecture and Labels; the process engine's are Go's
	// and --engine-label), for node.platform.* and engine.labels.* constraints.
	Platform     Platform          `json:"platform,omitzero"`
	EngineLabels map[string]string `json:"engine_labels,omitempty"`
	// The node's current certificate as its issuer recorded it: the signing root's
	// key ID (a CA rotation finishes when every node is on the new root) and expiry.
	CertIssuer  string    `json:"cert_issuer,omitempty"`
	CertExpiry  time.Time `json:"cert_expiry,omitzero"`
	StatusAt    time.Time `json:"status_at"`
	CreatedAt   time.Time `json:"created_at"`
	CreateIndex uint64    `json:"create_index"`
	ModifyIndex uint64    `json:"modify_index"`

	// Subnet is the node's share of the cluster's container pool (CIDR), chosen by
	// the FSM when the node joins and freed when it is removed; "" before then.
	Subnet string `json:"subnet,omitempty"`

	// RestartingUntil is set when the node's daemon said it is restarting (a
	// graceful stop, not a leave): its tasks keep running and serving, so while
	// the node is down they are kept, not replaced, until then. The node's
	// return clears it (api/restart.go).
	RestartingUntil time.Time `json:"restarting_until,omitzero"`
}

// ServiceMode: replicated runs Replicas tasks; global runs one task per eligible node.
type ServiceMode string

const (
	ModeReplicated ServiceMode = "replicated"
	ModeGlobal     ServiceMode = "global"
)

// EndpointMode: vip gives the service one virtual IP; dnsrr answers DNS with task addresses.
type EndpointMode string

const (
	EndpointVIP   EndpointMode = "vip"
	EndpointDNSRR EndpointMode = "dnsrr"
)

// PublishMode: ingress publishes on every node (routing mesh); host only where a task runs.
type PublishMode string

const (
	PublishIngress PublishMode = "ingress"
	PublishHost    PublishMode = "host"
)

// PortConfig publishes a task's TargetPort on PublishedPort (0: the cluster picks one).
type PortConfig struct {
	Protocol      string      `json:"protocol"` // tcp or udp
	TargetPort    int         `json:"target_port"`
	PublishedPort int         `json:"published_port,omitempty"`
	PublishMode   PublishMode `json:"publish_mode,omitempty"`
}

// RestartCondition says when a finished task is replaced.
type RestartCondition string

const (
	RestartAny       RestartCondition = "any"
	RestartOnFailure RestartCondition = "on-failure"
	RestartNone      RestartCondition = "none"
)

// RestartPolicy bounds how hard the orchestrator tries to keep a slot running.
// MaxAttempts 0 means unlimited; attempts are counted within Window (0: forever).
// Delay, when given, is a fixed wait before each restart; nil means a backoff that
// replaces a first crash at once and waits longer after each quick crash in a row
// (dispatcher.RestartBackoff).
type RestartPolicy struct {
	Condition   RestartCondition `json:"condition"`
	Delay       *time.Duration   `json:"delay,omitempty"`
	MaxAttempts uint64           `json:"max_attempts,omitempty"`
	Window      time.Duration    `json:"window,omitempty"`
}

// ServiceSpec is what the user declares.
type ServiceSpec struct {
	Name          string            `json:"name"`
	Image         string            `json:"image"`
	Command       []string          `json:"command,omitempty"` // COMMAND [ARG...] after IMAGE
	Env           []string          `json:"env,omitempty"`     // K=V
	Labels        map[string]string `json:"labels,omitempty"`
	Mode          ServiceMode       `json:"mode"`
	Replicas      uint64            `json:"replicas"`
	Ports         []PortConfig      `json:"ports,omitempty"`
	EndpointMode  EndpointMode      `json:"endpoint_mode"`
	Constraints   []string          `json:"constraints,omitempty"`
	Limits        Resources         `json:"limits"`
	Reservations  Resources         `json:"reservations"`
	RestartPolicy RestartPolicy     `json:"restart_policy"`
	// Health is the task's health check; nil keeps the image's own (Docker).
	Health *HealthCheck `json:"health,omitempty"`
	// StopGracePeriod is the wait between the stop signal and a kill (Normalize: 10 s).
	StopGracePeriod *time.Duration `json:"stop_grace_period,omitempty"`
	// StopSignal is sent first when a task is stopped ("" means SIGTERM).
	StopSignal string `json:"stop_signal,omitempty"`
	// Update and Rollback say how a spec change rolls out, and how a rollback does
	// (Normalize fills Docker's defaults).
	Update   *UpdateConfig `json:"update_config,omitempty"`
	Rollback *UpdateConfig `json:"rollback_config,omitempty"`
	// ForceUpdate changes only to redeploy every task with no other change
	// (service update --force), as Docker's TaskTemplate.ForceUpdate.
	ForceUpdate uint64 `json:"force_update,omitempty"`

	// ImageDigest and ImageID pin Image to exact bits; the manager sets them when
	// the service is created or its image changes (api/images.go says how), and a
	// tag moved later changes nothing until then. Tasks run the pinned image.
	ImageDigest string `json:"image_digest,omitempty"` // registry manifest digest, sha256:...
	ImageID     string `json:"image_id,omitempty"`     // engine image ID (config digest), sha256:...

	// What else a task gets (api/extras.go): stored secrets and configs as files,
	// mounts, and docker's container options.
	Secrets   []SecretRef       `json:"secrets,omitempty"`
	Configs   []SecretRef       `json:"configs,omitempty"`
	Mounts    []Mount           `json:"mounts,omitempty"`
	Container *ContainerOptions `json:"container,omitempty"`

	// Placement beyond constraints: spread preferences, nested in order, and a cap
	// on this service's tasks per node (0: none).
	PlacementPrefs     []PlacementPref `json:"placement_prefs,omitempty"`
	MaxReplicasPerNode uint64          `json:"max_replicas_per_node,omitempty"`
	// MaxConcurrent bounds how many tasks of a job run at once (0: Replicas).
	MaxConcurrent uint64 `json:"max_concurrent,omitempty"`
}

// Service is a spec plus what the cluster decided about it.
type Service struct {
	ID   string      `json:"id"`
	Spec ServiceSpec `json:"spec"`
	// SpecVersion increases with every spec change; updates name the version they
	// were based on so a concurrent change is detected instead of overwritten.
	SpecVersion uint64       `json:"spec_version"`
	VIP         string       `json:"vip,omitempty"`
	Ports       []PortConfig `json:"ports,omitempty"` // spec ports with published ports resolved
	CreatedAt   time.Time    `json:"created_at"`
	UpdatedAt   time.Time    `json:"updated_at"`
	// PreviousSpec is the spec before the last update, what a rollback returns to.
	PreviousSpec *ServiceSpec `json:"previous_spec,omitempty"`
	// UpdateStatus is the rolling update's state (nil: the service never changed).
	UpdateStatus *UpdateStatus `json:"update_status,omitempty"`
	CreateIndex  uint64        `json:"create_index"`
	ModifyIndex  uint64        `json:"modify_index"`

	// JobRun, for a job, is the spec version its current run started at
	// (InJobRun); 0 for a service.
	JobRun uint64 `json:"job_run,omitempty"`
}

// PortBinding is where one target port of a task is reachable on its node.
type PortBinding struct {
	Protocol   string `json:"protocol"`
	TargetPort int    `json:"target_port"`
	HostPort   int    `json:"host_port"`
}

// TaskStatus is what the worker observed.
type TaskStatus struct {
	State       TaskState     `json:"state"`
	Message     string        `json:"message,omitempty"`
	Err         string        `json:"err,omitempty"`
	ExitCode    int           `json:"exit_code,omitempty"`
	Timestamp   time.Time     `json:"timestamp"`
	ContainerID string        `json:"container_id,omitempty"` // container ID or PID
	Addr        string        `json:"addr,omitempty"`         // address the task answers on
	Ports       []PortBinding `json:"ports,omitempty"`
	// Health is what the task's health check last said ("" when it has none).
	Health Health `json:"health,omitempty"`
	// ImageID is the image the node verified for the task (from preparing on): the
	// node holds it, so other nodes may fetch it from there.
	ImageID string `json:"image_id,omitempty"`
}

// Task is one attempt at running one slot of a service.
type Task struct {
	ID          string `json:"id"`
	ServiceID   string `json:"service_id"`
	ServiceName string `json:"service_name"`
	Slot        uint64 `json:"slot"` // replica number from 1; 0 for global tasks
	NodeID      string `json:"node_id,omitempty"`
	// Spec is the service spec the task was created from, so a worker can run it
	// without another lookup and a later spec change does not alter a running task.
	Spec         ServiceSpec `json:"spec"`
	SpecVersion  uint64      `json:"spec_version"`
	DesiredState TaskState   `json:"desired_state"`
	Status       TaskStatus  `json:"status"`
	// PendingReason says why the scheduler could not place the task.
	PendingReason string `json:"pending_reason,omitempty"`
	Attempt       uint64 `json:"attempt"` // restarts of this slot before this task
	// CrashLoop counts the slot's quick exits in a row before this task: the restart
	// backoff grows with it.
	CrashLoop uint64 `json:"crash_loop,omitempty"`
	// RestartAt: a task held with desired state ready (a restart delay) is started
	// no earlier than this.
	RestartAt time.Time `json:"restart_at,omitzero"`
	// StartedAt is when the worker first reported the task running (set by the FSM
	// from that report), so how long it ran survives later status changes.
	StartedAt   time.Time `json:"started_at,omitzero"`
	CreatedAt   time.Time `json:"created_at"`
	CreateIndex uint64    `json:"create_index"`
	ModifyIndex uint64    `json:"modify_index"`
}

// Endpoint is one running task as discovery and load balancing see it.
type Endpoint struct {
	Service string        `json:"service"`
	TaskID  string        `json:"task_id"`
	Slot    uint64        `json:"slot"`
	NodeID  string        `json:"node_id"`
	NodeIP  string        `json:"node_ip"`
	Addr    string        `json:"addr"`
	Ports   []PortBinding `json:"ports,omitempty"`
}

// ServiceEndpoints is the discovery view of one service.
type ServiceEndpoints struct {
	Service      string       `json:"service"`
	VIP          string       `json:"vip,omitempty"`
	EndpointMode EndpointMode `json:"endpoint_mode"`
	Ports        []PortConfig `json:"ports,omitempty"`
	Tasks        []Endpoint   `json:"tasks"`
	// Gone, in a delta session answer only: the task IDs that left the service's
	// endpoints since the worker's index (Tasks then holds those added or changed).
	Gone []string `json:"gone,omitempty"`
}
