package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/node/httpapi"
	"github.com/swarmlet/swarmlet/node/pki"
	"github.com/swarmlet/swarmlet/node/token"
	"github.com/swarmlet/swarmlet/raftstore"
)

// How a node gets its identity and trust: init makes a cluster's CA and the first
// node's certificate; join checks the manager's CA against the token before it sends
// anything, and leaves with a certificate for the role the token grants.

// initTrust is what a fresh init made before Raft runs, written to Raft once this
// node leads its new cluster (initCluster).
type initTrust struct {
	ca        *pki.CA
	gossipKey []byte
	unlockKey string
}

// forgetFiles removes what a failed or abandoned start may have left: a data dir
// without node.json holds no identity worth keeping.
func (d *Daemon) forgetFiles() {
	_ = os.RemoveAll(d.raftDir())
	_ = os.RemoveAll(tlsDir(d.cfg.DataDir))
	_ = os.Remove(d.cfg.DataDir + "/" + gossipKeyFile)
	_ = os.Remove(d.cfg.DataDir + "/" + sealedGossipKeyFile)
}

// prepareInit makes a new cluster's trust: its CA (ECDSA P-256), this node's
// manager certificate, the first gossip key, the Raft data key and, with
// --autolock, the unlock key that wraps it.
func (d *Daemon) prepareInit() (*identity, error) {
	d.forgetFiles()
	id := &identity{NodeID: token.RandomID(12), Role: api.RoleManager, ClusterID: token.RandomID(16)}
	now := time.Now()
	ca, err := pki.NewCA(id.ClusterID, now)
	if err != nil {
		return nil, err
	}
	key, csr, err := pki.NewCSR()
	if err != nil {
		return nil, err
	}
	chain, err := ca.IssueNode(csr, pki.NodeRequest{NodeID: id.NodeID, Role: api.RoleManager, Addrs: []string{d.cfg.AdvertiseAddr}, Expiry: d.cfg.CertExpiry, Now: now})
	if err != nil {
		return nil, err
	}
	it := &initTrust{ca: ca, gossipKey: make([]byte, 32)}
	if _, err := rand.Read(it.gossipKey); err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	if d.cfg.Autolock {
		if it.unlockKey, err = raftstore.NewUnlockKey(); err != nil {
			return nil, err
		}
	}
	if err := d.createDataKey(it.unlockKey); err != nil {
		return nil, err
	}
	if err := (&trustFiles{bundle: ca.Bundle(), chain: chain, key: key}).save(d.cfg.DataDir, d.dek); err != nil {
		return nil, err
	}
	if err := saveGossipKeys(d.cfg.DataDir, [][]byte{it.gossipKey}, d.dek); err != nil {
		return nil, err
	}
	d.pendingInit = it
	return id, nil
}

// initCluster waits for the fresh single-voter Raft to elect this node, then
// records the cluster, its trust, and this node.
func (d *Daemon) initCluster(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for !d.store.IsLeader() {
		if time.Now().After(deadline) {
			return fmt.Errorf("init: this node did not become leader of its new cluster within 10s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	it := d.pendingInit
	plan, err := d.cfg.plan()
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := it.ca.MarshalPEM()
	if err != nil {
		return err
	}
	trust := raftstore.ClusterTrust{CACert: certPEM, CAKey: keyPEM, CertExpiry: d.cfg.CertExpiry,
		GossipKeys: [][]byte{it.gossipKey}, UnlockKey: it.unlockKey}
	if trust.CertExpiry == 0 {
		trust.CertExpiry = pki.DefaultCertExpiry
	}
	for _, role := range []api.NodeRole{api.RoleWorker, api.RoleManager} {
		h, err := httpapi.TokenHash(it.ca, role, 0)
		if err != nil {
			return err
		}
		trust.Token(role).Hash = h
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := d.store.Apply(actx, &raftstore.ClusterInit{
		ClusterID: d.id.ClusterID, Trust: trust,
		ClusterNetwork: plan, PortRange: [2]int{30000, 32767}, At: time.Now().UTC(), RestartGrace: d.cfg.RestartGrace,
	}); err != nil {
		return fmt.Errorf("init cluster: %w", err)
	}
	self := d.selfNode(d.id)
	self.Status, self.StatusAt = api.NodeReady, time.Now().UTC()
	self.CertIssuer, self.CertExpiry = httpapi.RootID(it.ca), d.trust.holder.Leaf().NotAfter.UTC()
	if _, err := d.store.Apply(actx, &raftstore.NodeUpsert{Node: self}); err != nil {
		return fmt.Errorf("init cluster: register node: %w", err)
	}
	d.mu.Lock()
	d.id.Managers = []api.Node{self}
	d.id.Network = plan
	err = d.id.save(d.cfg.DataDir)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	toks, err := httpapi.JoinTokens(d.store.Snapshot().Cluster(), it.ca)
	if err != nil {
		return err
	}
	d.cfg.Out("Swarmlet initialised: node %s is now a manager.\n\n", d.id.NodeID)
	joinAddr := JoinAddr(d.cfg.AdvertiseAddr, d.cfg.PortBase+offsetAPI)
	d.cfg.Out("To add a worker to this cluster, run:\n\n    swarmlet join --token %s %s\n\n", toks.Worker, joinAddr)
	d.cfg.Out("To add a manager to this cluster, run:\n\n    swarmlet join --token %s %s\n\n", toks.Manager, joinAddr)
	if it.unlockKey != "" {
		d.cfg.Out("Autolock is on. After a restart, each manager waits until it is given this key:\n\n    %s\n\n"+
			"Keep it somewhere safe: it is printed once ('swarmlet unlock-key' on an unlocked manager shows it again).\n"+
			"Unlock a restarted manager with 'swarmlet unlock'.\n\n", it.unlockKey)
	}
	d.pendingInit = nil
	return nil
}

// joinCluster asks a manager to admit this node and returns its new identity, its
// certificate and keys saved. The token pins the cluster's CA: the handshake fails,
// and nothing is sent, unless the manager proves that CA.
func (d *Daemon) joinCluster(ctx context.Context) (*identity, error) {
	if d.cfg.Token == "" {
		return nil, fmt.Errorf("join needs --token (get one with 'swarmlet join-token worker' on a manager)")
	}
	if _, err := pki.ParseToken(d.cfg.Token); err != nil {
		return nil, err
	}
	d.forgetFiles()
	addr := d.cfg.JoinAddr
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, strconv.Itoa(DefaultPortBase+offsetAPI))
	}
	start := time.Now()
	j, err := JoinExchange(ctx, addr, d.cfg.Token, d.selfNode(&identity{}), d.cfg.AdvertiseAddr)
	if err != nil {
		return nil, err
	}
	resp := j.Response
	if resp.Role == api.RoleManager {
		// A new manager's data key starts without autolock; if the cluster has it on,
		// the key is wrapped again once the log brings the unlock key (followTrust).
		if err := d.createDataKey(""); err != nil {
			return nil, err
		}
	}
	if err := j.files.save(d.cfg.DataDir, d.dek); err != nil {
		return nil, err
	}
	if err := saveGossipKeys(d.cfg.DataDir, resp.GossipKeys, d.dek); err != nil {
		return nil, err
	}
	id := &identity{NodeID: resp.NodeID, ClusterID: resp.ClusterID, Role: resp.Role, Managers: resp.Managers, Network: resp.Network}
	d.log.Info("joined", "cluster", resp.ClusterID, "role", resp.Role, "via", addr, "node", id.NodeID, "took", time.Since(start).Round(time.Millisecond))
	d.cfg.Out("This node joined the cluster as a %s (node %s).\n", resp.Role, id.NodeID)
	return id, nil
}

// Joined is what a join exchange leaves a node with: the manager's answer (its
// node ID, the cluster, the managers, the gossip keys) and a certificate for a
// key only it holds.
type Joined struct {
	Response api.JoinResponse
	files    *trustFiles
}

// ClientTLS is mutual TLS as the joined node towards managers only (sessions):
// its certificate out, the cluster's roots and a manager's role in.
func (j *Joined) ClientTLS() *tls.Config {
	h := pki.NewCertHolder(j.files.chain.TLS(j.files.key))
	v := pki.NewVerifier(j.Response.ClusterID, j.files.bundle, nil)
	return pki.ClientConfig(h, v, pki.ClientOptions{Roles: managersOnly})
}

// JoinExchange is the joining side of the join protocol, as 'swarmlet join' runs
// it (hollow nodes run it too): a TLS handshake that the token's CA digest must
// pin, a certificate request for a fresh key, and the manager's answer checked:
// a chain for that key, naming the node ID the leader chose, of the cluster the
// token named. self is the record the node asks to be registered with (its ID is
// the leader's choice); connections leave from local if given.
func JoinExchange(ctx context.Context, addr, joinToken string, self api.Node, local string) (*Joined, error) {
	tok, err := pki.ParseToken(joinToken)
	if err != nil {
		return nil, err
	}
	tcfg := pki.JoinClientConfig(tok)
	tcfg.ServerName = joinServerName
	c, err := client.New("tcp://"+addr, client.Options{LocalAddr: local, Timeout: 15 * time.Second, TLS: tcfg})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	key, csr, err := pki.NewCSR()
	if err != nil {
		return nil, err
	}
	jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := c.Join(jctx, api.JoinRequest{Token: joinToken, Node: self, CSR: csr})
	switch {
	case errors.Is(err, pki.ErrCAMismatch):
		return nil, fmt.Errorf("join %s: the manager there does not hold the CA this join token pins: another cluster, an impostor, or a token from before a CA rotation; nothing was sent (%v)", addr, err)
	case errors.Is(err, client.ErrTLS):
		return nil, fmt.Errorf("join %s: the TLS handshake failed, nothing was sent: %v (is it a manager of the token's cluster?)", addr, err)
	case errors.Is(err, client.ErrUnreachable):
		return nil, fmt.Errorf("join %s: no swarmlet manager answers there (is the address right and the manager running?)", addr)
	case err != nil:
		return nil, fmt.Errorf("join %s: %w", addr, err)
	}
	tf, err := joinedFiles(resp, key)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", addr, err)
	}
	return &Joined{Response: resp, files: tf}, nil
}

// joinedFiles checks what the manager sent: a chain for this node's key, of the
// cluster the token pinned.
func joinedFiles(resp api.JoinResponse, key *ecdsa.PrivateKey) (*trustFiles, error) {
	chain, err := pki.ParseChainPEM([]byte(resp.Certificate))
	if err != nil {
		return nil, fmt.Errorf("certificate from the manager: %w", err)
	}
	bundle, err := pki.ParseTrustBundle([]byte(resp.CA))
	if err != nil {
		return nil, fmt.Errorf("CA from the manager: %w", err)
	}
	v := pki.NewVerifier(resp.ClusterID, bundle, nil)
	idt, err := v.Verify(chain, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, fmt.Errorf("certificate from the manager: %w", err)
	}
	if idt.NodeID != resp.NodeID || idt.Role != resp.Role {
		return nil, fmt.Errorf("certificate from the manager names %s, not %s %s", idt, resp.Role, resp.NodeID)
	}
	if len(resp.GossipKeys) == 0 {
		return nil, errors.New("the manager sent no gossip key")
	}
	if !key.PublicKey.Equal(chain.Leaf().PublicKey) {
		return nil, errors.New("certificate from the manager is not for this node's key")
	}
	return &trustFiles{bundle: bundle, chain: chain, key: key}, nil
}
