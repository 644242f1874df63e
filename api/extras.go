package api

import "os"

// The types below are what a Swarm user's compose file or `docker service create`
// line carries beyond image, command and ports (issue 12). Each field's behaviour
// lives with its owner: secrets and configs in raftstore and the session, mounts
// and container options in the engines, jobs and placement in the dispatcher.

// SecretRef hands one stored secret (or config) to a service's tasks as a file.
// Docker's long syntax: source=,target=,uid=,gid=,mode=.
type SecretRef struct {
	// Source names the secret or config (its Name, not its ID).
	Source string `json:"source"`
	// Target is the file name: for secrets relative to /run/secrets/ (or an
	// absolute path), for configs an absolute path (default /SOURCE).
	Target string      `json:"target,omitempty"`
	UID    string      `json:"uid,omitempty"`
	GID    string      `json:"gid,omitempty"`
	Mode   os.FileMode `json:"mode,omitempty"` // 0 means 0444

	// ID and Version are the manager's, set where the spec is applied: the
	// stored secret or config Source named then, and which of its values the
	// tasks get (secret update makes a new version and moves the services that
	// use it to it, api/secrets.go).
	ID      string `json:"id,omitempty"`
	Version uint64 `json:"version,omitempty"`
}

// MountType is what backs a mount.
type MountType string

const (
	MountBind   MountType = "bind"
	MountVolume MountType = "volume"
	MountTmpfs  MountType = "tmpfs"
)

// Mount is one --mount. Source may hold a template ({{.Task.Slot}} ...).
type Mount struct {
	Type     MountType `json:"type"`
	Source   string    `json:"source,omitempty"` // host path (bind), volume name (volume), unused (tmpfs)
	Target   string    `json:"target"`
	ReadOnly bool      `json:"readonly,omitempty"`
	// TmpfsSize bounds a tmpfs mount in bytes (0: the engine's default).
	TmpfsSize int64 `json:"tmpfs_size,omitempty"`
}

// Ulimit is one --ulimit NAME=SOFT[:HARD].
type Ulimit struct {
	Name string `json:"name"`
	Soft int64  `json:"soft"`
	Hard int64  `json:"hard"`
}

// ContainerOptions are docker's per-container settings a service passes to each
// task. Hostname and Env-like strings may hold templates.
type ContainerOptions struct {
	Hostname        string            `json:"hostname,omitempty"`
	User            string            `json:"user,omitempty"`
	Workdir         string            `json:"workdir,omitempty"`
	Entrypoint      []string          `json:"entrypoint,omitempty"`
	ContainerLabels map[string]string `json:"container_labels,omitempty"`
	Init            bool              `json:"init,omitempty"`
	ReadOnly        bool              `json:"read_only,omitempty"`
	CapAdd          []string          `json:"cap_add,omitempty"`
	CapDrop         []string          `json:"cap_drop,omitempty"`
	Sysctls         map[string]string `json:"sysctls,omitempty"`
	Ulimits         []Ulimit          `json:"ulimits,omitempty"`
	PidsLimit       int64             `json:"pids_limit,omitempty"`
	DNSOptions      []string          `json:"dns_options,omitempty"`
}

// PlacementPref is one --placement-pref; preferences nest in order, as Swarm's.
type PlacementPref struct {
	Spread string `json:"spread"` // e.g. node.labels.zone
}

// Job modes run tasks to completion (Swarm's replicated-job and global-job).
const (
	ModeReplicatedJob ServiceMode = "replicated-job"
	ModeGlobalJob     ServiceMode = "global-job"
)

// IsJob says whether the mode runs tasks to completion rather than keeping them up.
func (m ServiceMode) IsJob() bool { return m == ModeReplicatedJob || m == ModeGlobalJob }
