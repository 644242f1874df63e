package raftstore

import (
	"bytes"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/swarmlet/swarmlet/api"
)

// The cluster's trust material lives in Raft, sealed on disk like everything else
// (node/pki/DESIGN.md). No join secret is stored: only a hash and a generation,
// from which a manager holding the CA key derives the token again.

// ClusterTrust is the trust part of the cluster record.
type ClusterTrust struct {
	// CACert is the CA as pki.LoadCA reads it: the root, or during a rotation the
	// new root, the cross-signed certificate and the previous root.
	CACert []byte `json:"ca_cert"`
	CAKey  []byte `json:"ca_key"`
	// CertExpiry is the lifetime of the certificates the CA issues (--cert-expiry).
	CertExpiry   time.Duration `json:"cert_expiry"`
	WorkerToken  TokenSecret   `json:"worker_token"`
	ManagerToken TokenSecret   `json:"manager_token"`
	// GossipKeys is memberlist's keyring, the key used to send first.
	GossipKeys [][]byte `json:"gossip_keys"`
	// GossipRotation is a gossip key rotation under way (zero: none).
	GossipRotation GossipRotation `json:"gossip_rotation,omitzero"`
	// UnlockKey wraps every manager's data key when autolock is on; empty otherwise.
	UnlockKey string `json:"unlock_key,omitempty"`
}

// TokenSecret is what the FSM keeps of a join token's secret.
type TokenSecret struct {
	Hash       string `json:"hash"`
	Generation uint64 `json:"generation"`
}

// Token is the stored secret of role's join token.
func (t *ClusterTrust) Token(role api.NodeRole) *TokenSecret {
	if role == api.RoleManager {
		return &t.ManagerToken
	}
	return &t.WorkerToken
}

// CAUpdate replaces the CA (a rotation's start or finish). Prev is the CA
// certificate PEM it replaces: two rotations racing cannot both apply. The join
// tokens' hashes come along, because the secrets derive from the CA key.
type CAUpdate struct {
	Prev        []byte `json:"prev"`
	CACert      []byte `json:"ca_cert"`
	CAKey       []byte `json:"ca_key"`
	WorkerHash  string `json:"worker_hash"`
	ManagerHash string `json:"manager_hash"`
}

// GossipRotation is where a gossip key rotation stands. A rotation changes the
// keyring in three steps, each long enough for every node to take the previous one,
// so that at every moment every member opens what every other sends (no split):
// 1 the new key is added as a secondary, 2 it becomes the key that seals, 0 the old
// key is dropped and the rotation is over.
type GossipRotation struct {
	Phase int       `json:"phase"`
	At    time.Time `json:"at"` // when the phase began (the proposer's clock)
}

// GossipKeysSet replaces the gossip keyring (primary first) and records the
// rotation phase it belongs to.
type GossipKeysSet struct {
	Keys     [][]byte       `json:"keys"`
	Rotation GossipRotation `json:"rotation,omitzero"`
}

// UnlockKeySet turns autolock on, rotates its key, or (empty) turns it off; every
// manager wraps its data key again.
type UnlockKeySet struct {
	Key string `json:"key"`
}

// NodeCert records the certificate a manager issued to a node.
type NodeCert struct {
	NodeID string    `json:"node_id"`
	Issuer string    `json:"issuer"`
	Expiry time.Time `json:"expiry"`
}

func updateCluster(txn *memdb.Txn, index uint64, f func(*Cluster) error) (any, error) {
	cur := getCluster(txn)
	if cur == nil {
		return nil, ErrNotInitialized
	}
	cl := *cur
	if err := f(&cl); err != nil {
		return nil, err
	}
	cl.ModifyIndex = index
	putCluster(txn, &cl)
	return &cl, nil
}

func applyTokenRotate(txn *memdb.Txn, index uint64, c *TokenRotate) (any, error) {
	return updateCluster(txn, index, func(cl *Cluster) error {
		if c.Role != api.RoleWorker && c.Role != api.RoleManager {
			return fmt.Errorf("unknown role %q: %w", c.Role, ErrInvalid)
		}
		tok := cl.Trust.Token(c.Role)
		if c.Generation != tok.Generation+1 {
			return fmt.Errorf("%s token is at generation %d, not %d: %w", c.Role, tok.Generation, c.Generation-1, ErrVersionConflict)
		}
		if c.Hash == "" {
			return fmt.Errorf("token rotation without a hash: %w", ErrInvalid)
		}
		*tok = TokenSecret{Hash: c.Hash, Generation: c.Generation}
		return nil
	})
}

func applyCAUpdate(txn *memdb.Txn, index uint64, c *CAUpdate) (any, error) {
	return updateCluster(txn, index, func(cl *Cluster) error {
		if !bytes.Equal(cl.Trust.CACert, c.Prev) {
			return fmt.Errorf("the CA changed meanwhile: %w", ErrVersionConflict)
		}
		if len(c.CACert) == 0 || len(c.CAKey) == 0 || c.WorkerHash == "" || c.ManagerHash == "" {
			return fmt.Errorf("CA update lacks a certificate, key or token hash: %w", ErrInvalid)
		}
		t := &cl.Trust
		t.CACert, t.CAKey = c.CACert, c.CAKey
		t.WorkerToken.Hash, t.ManagerToken.Hash = c.WorkerHash, c.ManagerHash
		return nil
	})
}

func applyGossipKeys(txn *memdb.Txn, index uint64, c *GossipKeysSet) (any, error) {
	return updateCluster(txn, index, func(cl *Cluster) error {
		if len(c.Keys) == 0 {
			return fmt.Errorf("gossip keyring without a key: %w", ErrInvalid)
		}
		for _, k := range c.Keys {
			if n := len(k); n != 16 && n != 24 && n != 32 {
				return fmt.Errorf("gossip key of %d bytes: want 16, 24 or 32: %w", n, ErrInvalid)
			}
		}
		if c.Rotation.Phase < 0 || c.Rotation.Phase > 2 {
			return fmt.Errorf("gossip rotation phase %d: %w", c.Rotation.Phase, ErrInvalid)
		}
		cl.Trust.GossipKeys, cl.Trust.GossipRotation = c.Keys, c.Rotation
		return nil
	})
}

func applyUnlockKey(txn *memdb.Txn, index uint64, c *UnlockKeySet) (any, error) {
	return updateCluster(txn, index, func(cl *Cluster) error {
		if c.Key != "" {
			if _, err := ParseUnlockKey(c.Key); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalid, err)
			}
		}
		cl.Trust.UnlockKey = c.Key
		return nil
	})
}

func applyNodeCert(txn *memdb.Txn, index uint64, c *NodeCert) (any, error) {
	old := getNode(txn, c.NodeID)
	if old == nil {
		return nil, fmt.Errorf("node %s: %w", c.NodeID, ErrNotFound)
	}
	n := *old
	n.CertIssuer, n.CertExpiry, n.ModifyIndex = c.Issuer, c.Expiry, index
	mustInsert(txn, tableNodes, &n)
	return &n, nil
}
