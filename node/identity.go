package node

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// randomID returns n random base32 characters, lower case.
func randomID(n int) string {
	b := make([]byte, (n*5+7)/8)
	_, _ = rand.Read(b)
	return strings.ToLower(b32.EncodeToString(b))[:n]
}

// Token layout: SWLT-1-<cluster digest>-<secret>. The digest lets a node tell a
// token of another cluster from a wrong secret; the secret says the role.
func clusterDigest(clusterID string) string {
	h := sha256.Sum256([]byte(clusterID))
	return hex.EncodeToString(h[:])[:20]
}

func makeToken(clusterID, secret string) string {
	return "SWLT-1-" + clusterDigest(clusterID) + "-" + secret
}

func parseToken(tok string) (digest, secret string, err error) {
	parts := strings.Split(tok, "-")
	if len(parts) != 4 || parts[0] != "SWLT" || parts[1] != "1" || parts[2] == "" || parts[3] == "" {
		return "", "", fmt.Errorf("malformed join token: expected SWLT-1-<cluster>-<secret>")
	}
	return parts[2], parts[3], nil
}
