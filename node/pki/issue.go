package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// RoleOperator is the role of a client certificate for a human or a script using the
// API over TCP. It only ever appears in certificates, never in the node table; such a
// certificate can authenticate a client but cannot serve.
const RoleOperator api.NodeRole = "operator"

// Chain is a certificate and what a peer needs to verify it, leaf first. A chain the
// CA issues ends with the root that join tokens pin, so a joining node can check the
// digest during the handshake.
type Chain []*x509.Certificate

// Leaf is the chain's first certificate.
func (c Chain) Leaf() *x509.Certificate { return c[0] }

// PEM writes the chain, leaf first.
func (c Chain) PEM() []byte { return EncodeCertsPEM(c...) }

// TLS pairs the chain with its private key for a tls.Config.
func (c Chain) TLS(key crypto.Signer) *tls.Certificate {
	out := &tls.Certificate{PrivateKey: key, Leaf: c[0]}
	for _, x := range c {
		out.Certificate = append(out.Certificate, x.Raw)
	}
	return out
}

// ParseChainPEM reads a chain written by Chain.PEM.
func ParseChainPEM(data []byte) (Chain, error) {
	certs, err := ParseCertsPEM(data)
	if err != nil {
		return nil, err
	}
	return Chain(certs), nil
}

// NewCSR makes a node's (or an operator's) key and a certificate request for it. The
// key stays with the caller; only the CSR travels. The CA ignores the CSR's subject
// and writes the one it decides.
func NewCSR() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate request: %w", err)
	}
	return key, der, nil
}

// NodeRequest is what the CA puts in a node certificate. The issuing manager fills it
// from what it knows (the node ID it assigned, the role the join token granted, the
// address it registered), never from the CSR.
type NodeRequest struct {
	NodeID string
	Role   api.NodeRole
	// Addrs become SANs (IPs, or DNS names) so operators' tools that verify host
	// names accept the node's API.
	Addrs []string
	// Expiry is the lifetime (--cert-expiry); zero means DefaultCertExpiry.
	Expiry time.Duration
	// Now is the issue time; zero means time.Now.
	Now time.Time
}

// IssueNode signs a node certificate for the key in csrDER: CN node ID, OU role,
// O cluster ID (Swarm's layout), usable as server and client.
func (ca *CA) IssueNode(csrDER []byte, r NodeRequest) (Chain, error) {
	if err := checkName("node ID", r.NodeID); err != nil {
		return nil, err
	}
	if r.Role != api.RoleManager && r.Role != api.RoleWorker {
		return nil, fmt.Errorf("node role %q: want manager or worker", r.Role)
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName:         r.NodeID,
			OrganizationalUnit: []string{string(r.Role)},
			Organization:       []string{ca.ClusterID()},
		},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		// The role and node ID as names too, as Swarm does: a stock TLS client can ask
		// for ServerName "manager".
		DNSNames: []string{string(r.Role), r.NodeID},
	}
	for _, a := range r.Addrs {
		if h, _, err := net.SplitHostPort(a); err == nil {
			a = h
		}
		if ip := net.ParseIP(a); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if a != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, a)
		}
	}
	return ca.sign(csrDER, tmpl, r.Expiry, r.Now)
}

// IssueClient signs an operator's client certificate (swarmlet ca issue-client): CN
// the operator's name, OU "operator", client authentication only.
func (ca *CA) IssueClient(csrDER []byte, name string, expiry time.Duration, now time.Time) (Chain, error) {
	if err := checkName("operator name", name); err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName:         name,
			OrganizationalUnit: []string{string(RoleOperator)},
			Organization:       []string{ca.ClusterID()},
		},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.sign(csrDER, tmpl, expiry, now)
}

func (ca *CA) sign(csrDER []byte, tmpl *x509.Certificate, expiry time.Duration, now time.Time) (Chain, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("parse certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature: %w", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("certificate request key: swarmlet accepts ECDSA P-256 keys only")
	}
	if expiry == 0 {
		expiry = DefaultCertExpiry
	}
	if expiry < MinCertExpiry {
		return nil, fmt.Errorf("certificate expiry %s is below the minimum of %s", expiry, MinCertExpiry)
	}
	if now.IsZero() {
		now = time.Now()
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, err
	}
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(expiry)
	// A leaf must not outlive the certificates above it, or it would fail early
	// and unexplained.
	for _, up := range []*x509.Certificate{ca.Cert, ca.CrossSigned} {
		if up != nil && tmpl.NotAfter.After(up.NotAfter) {
			tmpl.NotAfter = up.NotAfter
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	if ca.CrossSigned != nil {
		return Chain{leaf, ca.CrossSigned, ca.Previous}, nil
	}
	return Chain{leaf, ca.Cert}, nil
}

// IssuedBy reports whether root's key signed leaf: the daemon counts the nodes whose
// certificate the new root signed to know when a rotation may finish.
func IssuedBy(leaf, root *x509.Certificate) bool { return leaf.CheckSignatureFrom(root) == nil }
