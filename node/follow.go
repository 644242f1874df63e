package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/node/httpapi"
	"github.com/swarmlet/swarmlet/node/pki"
	"github.com/swarmlet/swarmlet/raftstore"
)

// Every node follows the cluster's trust as it changes: a manager from the cluster
// record in its FSM, a worker from its session. Following means: trust the current
// roots (CA rotation), gossip with the current keyring, renew when the certificate
// is behind, wrap the data key with the current unlock key, and cut the live
// connections of nodes that are no longer members.

// watchTrust is a manager's follower; it runs for the daemon's life and follows
// whichever store the node has (a promotion or demotion swaps it).
func (d *Daemon) watchTrust(ctx context.Context) {
	var seen uint64
	for {
		var wake <-chan struct{}
		if st := d.currentStore(); st != nil {
			wake = st.Watch()
			snap := st.Snapshot()
			if cl := snap.Cluster(); cl != nil {
				if cl.ModifyIndex != seen {
					d.followCluster(cl)
					seen = cl.ModifyIndex
				}
				if n := snap.Node(d.id.NodeID); n != nil {
					d.renewIfBehind(n.Role)
				}
				d.sweepConns()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-time.After(time.Second):
		}
		// Coalesce bursts (status batches commit many times a second).
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// followCluster takes the trust of a cluster record.
func (d *Daemon) followCluster(cl *raftstore.Cluster) {
	ca, err := pki.LoadCA(cl.Trust.CACert, cl.Trust.CAKey)
	if err != nil {
		d.log.Error("CA in the cluster record", "err", err)
	} else if err := d.trust.setBundle(d.cfg.DataDir, ca.Bundle()); err != nil {
		d.log.Error("save trusted roots", "err", err)
	}
	d.followGossipKeys(cl.Trust.GossipKeys)
	d.followUnlockKey(cl.Trust.UnlockKey)
}

// followSession takes the trust a worker's session carries.
func (d *Daemon) followSession(as api.Assignments) {
	if d.currentStore() != nil {
		return // a manager follows its FSM
	}
	table := make(map[string]api.NodeRole, len(as.Nodes))
	for _, n := range as.Nodes {
		table[n.ID] = n.Role
	}
	d.sessionNodes.Store(&table)
	if as.CA != "" {
		if b, err := pki.ParseTrustBundle([]byte(as.CA)); err != nil {
			d.log.Error("CA in the session", "err", err)
		} else if err := d.trust.setBundle(d.cfg.DataDir, b); err != nil {
			d.log.Error("save trusted roots", "err", err)
		}
	}
	if len(as.GossipKeys) > 0 {
		d.followGossipKeys(as.GossipKeys)
	}
	if as.Node != nil {
		d.renewIfBehind(as.Node.Role)
	}
	d.sweepConns()
}

func (d *Daemon) followGossipKeys(keys [][]byte) {
	d.mu.Lock()
	cur := d.gossipKeys
	d.mu.Unlock()
	if slices.EqualFunc(cur, keys, bytes.Equal) || len(keys) == 0 {
		return
	}
	if d.gossip != nil {
		if err := d.gossip.SetKeys(keys); err != nil {
			d.log.Error("gossip keyring", "err", err)
			return
		}
	}
	if err := saveGossipKeys(d.cfg.DataDir, keys, d.currentDEK()); err != nil {
		d.log.Error("save gossip keys", "err", err)
	}
	d.mu.Lock()
	d.gossipKeys = keys
	d.mu.Unlock()
	d.log.Info("gossip keyring changed", "keys", len(keys))
}

func (d *Daemon) renewIfBehind(role api.NodeRole) {
	if r := d.renewer; r != nil && d.trust.needsRenewal(role) {
		r.RenewNow()
	}
}

// sweepConns closes the live connections of peers that are no longer members (or,
// on Raft, no longer managers).
func (d *Daemon) sweepConns() {
	for _, id := range d.trust.conns.sweep(d.revokedOnAPI, d.revokedOnRaft) {
		d.log.Info("connection of a removed node closed", "peer", id.String())
	}
}

// renewCert gets a new certificate for a new key from the leader: the role of the
// node table, the current root. The renewer calls it at 50-80% of the lifetime,
// and at once when the certificate is behind.
func (d *Daemon) renewCert(ctx context.Context) (*tls.Certificate, error) {
	key, csr, err := pki.NewCSR()
	if err != nil {
		return nil, err
	}
	var resp api.CertificateResponse
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = d.toLeaderAPI(cctx, func(c *client.Client) error {
		var err error
		resp, err = c.RenewCertificate(cctx, csr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("renew certificate: %w", err)
	}
	chain, err := pki.ParseChainPEM([]byte(resp.Certificate))
	if err != nil {
		return nil, fmt.Errorf("renewed certificate: %w", err)
	}
	bundle, err := pki.ParseTrustBundle([]byte(resp.CA))
	if err != nil {
		return nil, fmt.Errorf("renewed certificate's CA: %w", err)
	}
	v := pki.NewVerifier(d.trust.api.ClusterID(), bundle, nil)
	if _, err := v.Verify(chain, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, fmt.Errorf("renewed certificate: %w", err)
	}
	if !key.PublicKey.Equal(chain.Leaf().PublicKey) {
		return nil, fmt.Errorf("renewed certificate is not for this node's key")
	}
	if err := d.trust.setBundle(d.cfg.DataDir, bundle); err != nil {
		return nil, err
	}
	return d.trust.setCert(d.cfg.DataDir, chain, key)
}

// finishRotation, on the leader: once every node in the table holds a certificate
// of the new root, the old root goes (and the join tokens change with it).
func (d *Daemon) finishRotation(ctx context.Context, st *raftstore.Store) {
	snap := st.Snapshot()
	cl := snap.Cluster()
	if cl == nil {
		return
	}
	ca, err := pki.LoadCA(cl.Trust.CACert, cl.Trust.CAKey)
	if err != nil || ca.Previous == nil {
		return
	}
	for _, n := range snap.Nodes() {
		if n.CertIssuer != httpapi.RootID(ca) {
			return
		}
	}
	upd, err := httpapi.CAUpdateTo(cl, ca.FinishRotation())
	if err != nil {
		d.log.Error("finish CA rotation", "err", err)
		return
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := st.Apply(actx, upd); err != nil {
		d.log.Warn("finish CA rotation", "err", err)
		return
	}
	d.log.Info("CA rotation finished: every node holds a certificate of the new root", "root", httpapi.RootID(ca))
}

// stepGossipRotation, on the leader, moves a gossip key rotation on when its step
// is over.
func (d *Daemon) stepGossipRotation(ctx context.Context, st *raftstore.Store) {
	cl := st.Snapshot().Cluster()
	if cl == nil {
		return
	}
	next := httpapi.GossipRotationStep(cl, time.Now())
	if next == nil {
		return
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := st.Apply(actx, next); err != nil {
		d.log.Warn("gossip key rotation", "err", err)
		return
	}
	d.log.Info("gossip key rotation", "phase", next.Rotation.Phase, "keys", len(next.Keys))
}
