package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/swarmlet/swarmlet/api"
)

// identity is what a node must remember across restarts to come back as itself.
type identity struct {
	NodeID    string       `json:"node_id"`
	ClusterID string       `json:"cluster_id"`
	Role      api.NodeRole `json:"role"`
	// Managers as last known, to find the cluster again after a restart.
	Managers []api.Node `json:"managers"`
	PortBase int        `json:"port_base"`
	Addr     string     `json:"addr"`
	// Network is the cluster's address plan, fixed at init (absent in the
	// identity of a node that joined before the cluster network existed).
	Network api.ClusterNetwork `json:"network"`
}

func identityPath(dataDir string) string { return filepath.Join(dataDir, "node.json") }

func loadIdentity(dataDir string) (*identity, error) {
	b, err := os.ReadFile(identityPath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read node identity: %w", err)
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("node identity %s is corrupt: %w", identityPath(dataDir), err)
	}
	return &id, nil
}

// save writes atomically so a crash never leaves a half-written identity.
func (id *identity) save(dataDir string) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	tmp := identityPath(dataDir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write node identity: %w", err)
	}
	if err := os.Rename(tmp, identityPath(dataDir)); err != nil {
		return fmt.Errorf("write node identity: %w", err)
	}
	return nil
}
