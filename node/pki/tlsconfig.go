package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/swarmlet/swarmlet/api"
)

// CertHolder holds a node's current certificate. TLS configs read it on every
// handshake, so a renewal (Store) takes effect on the next connection with no restart.
type CertHolder struct {
	p atomic.Pointer[tls.Certificate]
}

// NewCertHolder starts with c, which must have Leaf set (Chain.TLS does).
func NewCertHolder(c *tls.Certificate) *CertHolder {
	h := &CertHolder{}
	h.Store(c)
	return h
}

// Store replaces the certificate.
func (h *CertHolder) Store(c *tls.Certificate) { h.p.Store(c) }

// Load returns the current certificate.
func (h *CertHolder) Load() *tls.Certificate { return h.p.Load() }

// Leaf is the current certificate's leaf.
func (h *CertHolder) Leaf() *x509.Certificate { return h.p.Load().Leaf }

func (h *CertHolder) get() (*tls.Certificate, error) {
	c := h.p.Load()
	if c == nil {
		return nil, errors.New("no certificate loaded")
	}
	return c, nil
}

// ServerOptions narrow who may connect to a listener.
type ServerOptions struct {
	// Roles, if set, are the only roles admitted (Raft: manager).
	Roles []api.NodeRole
	// AllowAnonymous completes handshakes with clients that show no certificate; the
	// handler then sees no PeerIdentity. Only for the endpoint a joining node uses
	// before it has a certificate; a client that shows one is still verified.
	AllowAnonymous bool
}

// ServerConfig is TLS 1.3 that requires and verifies a client certificate of this
// cluster on every connection.
func ServerConfig(h *CertHolder, v *Verifier, o ServerOptions) *tls.Config {
	auth := tls.RequireAnyClientCert
	if o.AllowAnonymous {
		auth = tls.RequestClientCert
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return h.get() },
		// Verification is ours (VerifyConnection): the roots change at rotation and
		// the revocation lookup is live, which ClientCAs cannot express.
		ClientAuth: auth,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 && o.AllowAnonymous {
				return nil
			}
			id, err := v.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
			if err != nil {
				return err
			}
			return requireRole(id, o.Roles)
		},
	}
}

// ClientOptions say which server a client accepts.
type ClientOptions struct {
	// Roles, if set, are the only server roles accepted (Raft, forwarding to the
	// leader: manager).
	Roles []api.NodeRole
	// NodeID, if set, is the only node accepted: the one the caller meant to dial.
	NodeID string
}

// ClientConfig is TLS 1.3 that presents this node's certificate and accepts only a
// node of this cluster as the server.
func ClientConfig(h *CertHolder, v *Verifier, o ClientOptions) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return h.get() },
		// Host-name checks do not fit: a node is known by its ID and role, which
		// VerifyConnection checks against this cluster's roots instead. Skipping
		// the stock check is not skipping verification.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := v.Verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			if o.NodeID != "" && id.NodeID != o.NodeID {
				return fmt.Errorf("peer %s: %w (dialed %s)", id, ErrWrongNode, o.NodeID)
			}
			return requireRole(id, o.Roles)
		},
	}
}
