package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// Reasons a peer is refused; the error text says which peer and why.
var (
	ErrNoCertificate = errors.New("no client certificate")
	ErrUntrusted     = errors.New("certificate not signed by this cluster's CA")
	ErrWrongCluster  = errors.New("certificate of another cluster")
	ErrRevoked       = errors.New("certificate revoked")
	ErrWrongRole     = errors.New("role not allowed here")
	ErrWrongNode     = errors.New("not the node dialed")
)

// Identity is who a verified certificate says its holder is. Callees take the
// caller's identity from here, never from the request.
type Identity struct {
	NodeID    string // CN: the node ID, or an operator's name
	Role      api.NodeRole
	ClusterID string
}

func (id Identity) String() string { return fmt.Sprintf("%s %s", id.Role, id.NodeID) }

// IdentityOf reads the identity in a certificate's subject. It does not verify the
// certificate: use it on a connection's PeerCertificates after the handshake, which a
// Verifier has checked.
func IdentityOf(c *x509.Certificate) (Identity, error) {
	s := c.Subject
	if len(s.OrganizationalUnit) != 1 || len(s.Organization) != 1 || s.CommonName == "" {
		return Identity{}, fmt.Errorf("certificate %q does not carry a swarmlet identity (CN, one OU, one O)", s.CommonName)
	}
	id := Identity{NodeID: s.CommonName, Role: api.NodeRole(s.OrganizationalUnit[0]), ClusterID: s.Organization[0]}
	switch id.Role {
	case api.RoleManager, api.RoleWorker, RoleOperator:
	default:
		return Identity{}, fmt.Errorf("certificate %q has unknown role %q", s.CommonName, id.Role)
	}
	return id, nil
}

// PeerIdentity is the identity of a connection's verified peer; false when the peer
// showed no certificate (only possible on a server built with AllowAnonymous).
func PeerIdentity(cs tls.ConnectionState) (Identity, bool) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, false
	}
	id, err := IdentityOf(cs.PeerCertificates[0])
	return id, err == nil
}

// Verifier decides whether a peer's certificate chain belongs to this cluster. Its
// roots change atomically (CA rotation) and its revocation check is a lookup the
// daemon passes in, so a node removed from the node table is refused on its next
// handshake.
type Verifier struct {
	clusterID string
	roots     atomic.Pointer[x509.CertPool]
	revoked   func(Identity) bool
	now       func() time.Time
}

// NewVerifier trusts bundle's roots for clusterID. revoked, if not nil, is asked about
// every otherwise valid peer; the daemon answers from its node table (unknown node,
// or a role other than the one it now has: a demoted manager's certificate stops
// opening manager doors at once).
func NewVerifier(clusterID string, bundle *TrustBundle, revoked func(Identity) bool) *Verifier {
	v := &Verifier{clusterID: clusterID, revoked: revoked, now: time.Now}
	v.SetRoots(bundle)
	return v
}

// SetRoots replaces the trusted roots; handshakes already under way finish with the
// old ones.
func (v *Verifier) SetRoots(b *TrustBundle) { v.roots.Store(b.Pool()) }

// ClusterID is the cluster this verifier admits.
func (v *Verifier) ClusterID() string { return v.clusterID }

// Verify checks a chain as presented in a handshake (leaf first): signed through
// the given intermediates up to a trusted root, valid now, allowed the usage, of
// this cluster, not revoked.
func (v *Verifier) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, ErrNoCertificate
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots.Load(),
		Intermediates: inter,
		CurrentTime:   v.now(),
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return Identity{}, fmt.Errorf("peer %q: %w: %v", leaf.Subject.CommonName, ErrUntrusted, err)
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	if id.ClusterID != v.clusterID {
		return Identity{}, fmt.Errorf("peer %s: %w %q (this is %q)", id, ErrWrongCluster, id.ClusterID, v.clusterID)
	}
	if v.revoked != nil && v.revoked(id) {
		return Identity{}, fmt.Errorf("peer %s: %w (not in the node table with this role)", id, ErrRevoked)
	}
	return id, nil
}

// VerifyConnection is Verify as a tls.Config.VerifyConnection hook, for connections
// whose config is built elsewhere (a library's transport): usage is ClientAuth on the
// accepting side and ServerAuth on the dialing side; roles, if any, are the only ones
// admitted. The config must leave the stock verification off (InsecureSkipVerify on a
// client, RequireAnyClientCert on a server): this replaces it.
func (v *Verifier) VerifyConnection(usage x509.ExtKeyUsage, roles ...api.NodeRole) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		id, err := v.Verify(cs.PeerCertificates, usage)
		if err != nil {
			return err
		}
		return requireRole(id, roles)
	}
}

func requireRole(id Identity, roles []api.NodeRole) error {
	if len(roles) == 0 {
		return nil
	}
	for _, r := range roles {
		if id.Role == r {
			return nil
		}
	}
	return fmt.Errorf("peer %s: %w (want %v)", id, ErrWrongRole, roles)
}
