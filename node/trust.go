package node

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/pki"
	"github.com/swarmlet/swarmlet/raftstore"
)

// This node's trust: its certificate and key, the roots it trusts, the verifiers
// every TLS connection goes through, and the files they live in. Why it is built
// this way: node/pki/DESIGN.md.

// joinServerName is the server name (SNI) a node without a certificate asks for on
// the API port: only then does the server complete a handshake without a client
// certificate, and such a connection can only join. Every other TLS client must
// show a certificate of the cluster or gets a TLS alert. (SNI, not ALPN: net/http
// drops connections that negotiated a protocol it does not serve.)
const joinServerName = "join.swarmlet.invalid"

// Files in DATA_DIR/tls: the roots, this node's chain and its key (0600), and in
// DATA_DIR the gossip keyring. On a manager the key and the keyring are sealed with
// its Raft data key (raftstore.SealBlob), so that autolock guards them with the
// Raft data; a worker has no data key and keeps them plain, as Swarm's workers do.
const (
	tlsDirName          = "tls"
	caFile              = "ca.pem"
	certFile            = "node.pem"
	keyFile             = "node-key.pem"
	sealedKeyFile       = "node-key.sealed"
	gossipKeyFile       = "gossip-keys.json"
	sealedGossipKeyFile = "gossip-keys.sealed"
)

// readSecret reads a secret file: the sealed form when there is one (which needs
// the data key), else the plain one.
func readSecret(dir, plain, sealed, purpose string, dek *raftstore.DataKey) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, sealed))
	if err == nil {
		if dek == nil {
			return nil, fmt.Errorf("%s is sealed with a Raft data key this node does not hold", filepath.Join(dir, sealed))
		}
		return dek.OpenBlob(purpose, b)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return os.ReadFile(filepath.Join(dir, plain))
}

// writeSecret writes a secret file sealed (dek given) or plain, and removes the
// other form.
func writeSecret(dir, plain, sealed, purpose string, b []byte, dek *raftstore.DataKey) error {
	name, other := plain, sealed
	if dek != nil {
		var err error
		if b, err = dek.SealBlob(purpose, b); err != nil {
			return err
		}
		name, other = sealed, plain
	}
	if err := writeAtomic(filepath.Join(dir, name), b); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, other)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func tlsDir(dataDir string) string { return filepath.Join(dataDir, tlsDirName) }

// trustFiles is what a node keeps on disk to come back with the same identity.
type trustFiles struct {
	bundle *pki.TrustBundle
	chain  pki.Chain
	key    *ecdsa.PrivateKey
}

func loadTrustFiles(dataDir string, dek *raftstore.DataKey) (*trustFiles, error) {
	dir := tlsDir(dataDir)
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("this data dir has no %s/%s (written by a build without TLS?): stop the node, empty %s and join again with a token", tlsDirName, name, dataDir)
		}
		return b, err
	}
	caPEM, err := read(caFile)
	if err != nil {
		return nil, err
	}
	certPEM, err := read(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readSecret(dir, keyFile, sealedKeyFile, "node key", dek)
	if errors.Is(err, fs.ErrNotExist) {
		_, err = read(keyFile)
	}
	if err != nil {
		return nil, err
	}
	tf := &trustFiles{}
	if tf.bundle, err = pki.ParseTrustBundle(caPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, caFile), err)
	}
	if tf.chain, err = pki.ParseChainPEM(certPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, certFile), err)
	}
	if tf.key, err = pki.ParseKeyPEM(keyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, keyFile), err)
	}
	return tf, nil
}

// save writes the three files, each atomically, the key sealed if dek is given.
func (tf *trustFiles) save(dataDir string, dek *raftstore.DataKey) error {
	dir := tlsDir(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	keyPEM, err := pki.EncodeKeyPEM(tf.key)
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{caFile: tf.bundle.PEM(), certFile: tf.chain.PEM()} {
		if err := writeAtomic(filepath.Join(dir, name), b); err != nil {
			return fmt.Errorf("save %s: %w", name, err)
		}
	}
	if err := writeSecret(dir, keyFile, sealedKeyFile, "node key", keyPEM, dek); err != nil {
		return fmt.Errorf("save the node key: %w", err)
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// gossip keys are kept beside the certificate: a restarted node needs them to gossip
// before its session (or its Raft log) tells it the current ones.
func loadGossipKeys(dataDir string, dek *raftstore.DataKey) ([][]byte, error) {
	b, err := readSecret(dataDir, gossipKeyFile, sealedGossipKeyFile, "gossip keys", dek)
	if err != nil {
		return nil, fmt.Errorf("read gossip keys: %w", err)
	}
	var keys [][]byte
	if err := json.Unmarshal(b, &keys); err != nil || len(keys) == 0 {
		return nil, fmt.Errorf("%s is corrupt", filepath.Join(dataDir, gossipKeyFile))
	}
	return keys, nil
}

func saveGossipKeys(dataDir string, keys [][]byte, dek *raftstore.DataKey) error {
	b, err := json.Marshal(keys)
	if err != nil {
		return err
	}
	return writeSecret(dataDir, gossipKeyFile, sealedGossipKeyFile, "gossip keys", b, dek)
}

// nodeTrust is the live side of trustFiles.
type nodeTrust struct {
	holder *pki.CertHolder
	// api admits any certificate of the cluster's roots. Membership is checked
	// per request (httpapi's identify), not in the handshake: a removed node must
	// hear "you were removed" to stop its tasks (every request of it gets that
	// answer and nothing else, and its open connections are cut, sweepConns), and
	// a node promoted or demoted since its certificate was issued must reach the
	// API, as the lesser role, to renew.
	api *pki.Verifier
	// raft admits only managers the node table (or Raft's own configuration, which
	// a restarting manager knows before it has replayed its log) says are managers.
	raft   *pki.Verifier
	bundle atomic.Pointer[pki.TrustBundle]
	conns  connSet

	mu    sync.Mutex // serialises saving the files
	files *trustFiles
	dek   func() *raftstore.DataKey // the data key to seal the node key with (nil on a worker)
}

func (d *Daemon) newTrust(tf *trustFiles) *nodeTrust {
	t := &nodeTrust{holder: pki.NewCertHolder(tf.chain.TLS(tf.key)), files: tf, dek: d.currentDEK}
	cluster := tf.bundle.ClusterID()
	t.api = pki.NewVerifier(cluster, tf.bundle, nil)
	t.raft = pki.NewVerifier(cluster, tf.bundle, d.revokedOnRaft)
	t.bundle.Store(tf.bundle)
	return t
}

// setBundle trusts new roots (a CA rotation) and keeps them.
func (t *nodeTrust) setBundle(dataDir string, b *pki.TrustBundle) error {
	if cur := t.bundle.Load(); cur != nil && bytes.Equal(cur.PEM(), b.PEM()) {
		return nil
	}
	t.api.SetRoots(b)
	t.raft.SetRoots(b)
	t.bundle.Store(b)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.files.bundle = b
	return t.files.save(dataDir, t.dek())
}

// resave writes the files again: sealed after a promotion, plain after a demotion.
func (t *nodeTrust) resave(dataDir string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.files.save(dataDir, t.dek())
}

// setCert installs a renewed certificate: new connections show it, open ones keep
// theirs.
func (t *nodeTrust) setCert(dataDir string, chain pki.Chain, key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	t.mu.Lock()
	t.files.chain, t.files.key = chain, key
	err := t.files.save(dataDir, t.dek())
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	c := chain.TLS(key)
	t.holder.Store(c)
	return c, nil
}

// needsRenewal says whether this node's certificate is behind: not signed by the
// newest root (a rotation), not ending at the root join tokens pin (a rotation
// finished), or naming a role the node no longer has.
func (t *nodeTrust) needsRenewal(role api.NodeRole) bool {
	c := t.holder.Load()
	b := t.bundle.Load()
	if c == nil || b == nil || len(c.Certificate) == 0 {
		return false
	}
	newest := b.Roots[len(b.Roots)-1]
	if !pki.IssuedBy(c.Leaf, newest) {
		return true
	}
	if !bytes.Equal(c.Certificate[len(c.Certificate)-1], b.Anchor().Raw) {
		return true
	}
	id, err := pki.IdentityOf(c.Leaf)
	return err == nil && role != "" && id.Role != role
}

var managersOnly = []api.NodeRole{api.RoleManager}

// apiServerConfig serves the API: mutual TLS, except for a client that asks for
// the join protocol, which may come without a certificate and then only join.
func (t *nodeTrust) apiServerConfig() *tls.Config {
	mutual := pki.ServerConfig(t.holder, t.api, pki.ServerOptions{})
	join := pki.ServerConfig(t.holder, t.api, pki.ServerOptions{AllowAnonymous: true})
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if h.ServerName == joinServerName {
				return join, nil
			}
			return mutual, nil
		},
	}
}

// clientConfig dials another node's API; managerOnly refuses a server that is not
// a manager (sessions, forwarding).
func (t *nodeTrust) clientConfig(managerOnly bool) *tls.Config {
	o := pki.ClientOptions{}
	if managerOnly {
		o.Roles = managersOnly
	}
	return pki.ClientConfig(t.holder, t.api, o)
}

// revokedOnAPI: a node certificate whose node is not in the node table; its API
// connections are cut. An operator's certificate is not in the table; it is
// refused only when its root is no longer trusted. Until a manager has replayed its
// log (or a worker has had its first session) the table is unknown and nothing is
// cut for absence.
func (d *Daemon) revokedOnAPI(id pki.Identity) bool {
	if id.Role == pki.RoleOperator {
		return false
	}
	_, member, known := d.memberRole(id.NodeID)
	return known && !member
}

// revokedOnRaft: anything but a manager that is a Raft voter or a manager in the
// node table. Until this node has replayed its log it knows no table: then the
// managers it was told of when it joined (or last saw) count too, so that a new
// manager accepts the leader that is about to send it that log.
func (d *Daemon) revokedOnRaft(id pki.Identity) bool {
	if id.Role != api.RoleManager {
		return true
	}
	if st := d.currentStore(); st != nil {
		if voters, err := st.Voters(); err == nil {
			if _, ok := voters[id.NodeID]; ok {
				return false
			}
		}
	}
	role, member, known := d.memberRole(id.NodeID)
	if !known {
		d.mu.Lock()
		defer d.mu.Unlock()
		return !slices.ContainsFunc(d.id.Managers, func(m api.Node) bool { return m.ID == id.NodeID })
	}
	return !(member && role == api.RoleManager)
}

// memberRole looks a node up in the node table this node knows: the FSM on a
// manager, the last session's node list on a worker.
func (d *Daemon) memberRole(nodeID string) (role api.NodeRole, member, known bool) {
	if st := d.currentStore(); st != nil {
		snap := st.Snapshot()
		if snap.Cluster() == nil {
			return "", false, false
		}
		if n := snap.Node(nodeID); n != nil {
			return n.Role, true, true
		}
		return "", false, true
	}
	table := d.sessionNodes.Load()
	if table == nil {
		return "", false, false
	}
	role, member = (*table)[nodeID]
	return role, member, true
}

// roleOf is the role the API authorizes a node as: the table's, or the
// certificate's while this node knows no table yet (it has not replayed its log):
// the certificate was verified against the cluster's roots, and the table could
// only lower it.
func (d *Daemon) roleOf(nodeID string, certRole api.NodeRole) api.NodeRole {
	role, member, known := d.memberRole(nodeID)
	switch {
	case !known:
		return certRole
	case !member:
		return ""
	}
	return role
}

// connSet tracks live TLS connections by peer, so that removing a node cuts it
// off at once rather than at its next handshake.
type connSet struct {
	mu sync.Mutex
	m  map[net.Conn]trackedPeer
}

type trackedPeer struct {
	id   pki.Identity
	raft bool
}

func (s *connSet) add(c net.Conn, cs tls.ConnectionState, raft bool) {
	id, ok := pki.PeerIdentity(cs)
	if !ok {
		return // anonymous (join): nothing to revoke
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[net.Conn]trackedPeer{}
	}
	s.m[c] = trackedPeer{id: id, raft: raft}
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

// sweep closes the connections whose peer is now revoked; it returns how many.
func (s *connSet) sweep(onAPI, onRaft func(pki.Identity) bool) []pki.Identity {
	s.mu.Lock()
	var cut []net.Conn
	var who []pki.Identity
	for c, p := range s.m {
		revoked := onAPI(p.id)
		if p.raft {
			revoked = onRaft(p.id)
		}
		if revoked {
			cut = append(cut, c)
			who = append(who, p.id)
			delete(s.m, c)
		}
	}
	s.mu.Unlock()
	for _, c := range cut {
		c.Close()
	}
	return who
}

// leafRole is the role this node's current certificate names.
func leafRole(leaf *x509.Certificate) api.NodeRole {
	id, err := pki.IdentityOf(leaf)
	if err != nil {
		return ""
	}
	return id.Role
}
