package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// TrustBundle is the set of roots a node trusts. Outside a rotation it holds one root;
// during one, the previous root first and the new one second. The first root is the
// anchor join tokens pin.
type TrustBundle struct {
	Roots []*x509.Certificate
}

// NewTrustBundle checks that every root is a self-signed CA of one cluster.
func NewTrustBundle(roots ...*x509.Certificate) (*TrustBundle, error) {
	if len(roots) == 0 {
		return nil, errors.New("trust bundle: no root")
	}
	for _, r := range roots {
		if err := checkRoot(r); err != nil {
			return nil, fmt.Errorf("trust bundle: %w", err)
		}
		if clusterOf(r) != clusterOf(roots[0]) {
			return nil, fmt.Errorf("trust bundle: roots of clusters %q and %q", clusterOf(roots[0]), clusterOf(r))
		}
	}
	return &TrustBundle{Roots: roots}, nil
}

// ParseTrustBundle reads a bundle written by PEM.
func ParseTrustBundle(data []byte) (*TrustBundle, error) {
	certs, err := ParseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	return NewTrustBundle(certs...)
}

// PEM writes the roots in order.
func (b *TrustBundle) PEM() []byte { return EncodeCertsPEM(b.Roots...) }

// Anchor is the root join tokens pin.
func (b *TrustBundle) Anchor() *x509.Certificate { return b.Roots[0] }

// ClusterID is the cluster the roots belong to.
func (b *TrustBundle) ClusterID() string { return clusterOf(b.Roots[0]) }

// Pool is the roots as an x509 pool.
func (b *TrustBundle) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, r := range b.Roots {
		p.AddCert(r)
	}
	return p
}

// CrossSign certifies next's key and subject under prev: a certificate that is next's
// root as far as names and key go, but issued by prev. A leaf next signs then verifies
// against prev through it.
func CrossSign(prev *CA, next *x509.Certificate, now time.Time) (*x509.Certificate, error) {
	if err := checkRoot(next); err != nil {
		return nil, fmt.Errorf("cross-sign: %w", err)
	}
	if clusterOf(next) != prev.ClusterID() {
		return nil, fmt.Errorf("cross-sign: new root is of cluster %q, not %q", clusterOf(next), prev.ClusterID())
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               next.Subject,
		SubjectKeyId:          next.SubjectKeyId,
		NotBefore:             now.Add(-backdate),
		NotAfter:              next.NotAfter,
		KeyUsage:              next.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Only leaves below it.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	if tmpl.NotAfter.After(prev.Cert.NotAfter) {
		tmpl.NotAfter = prev.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, prev.Cert, next.PublicKey, prev.Key)
	if err != nil {
		return nil, fmt.Errorf("cross-sign: %w", err)
	}
	return x509.ParseCertificate(der)
}

// StartRotation makes the CA that replaces ca (swarmlet ca --rotate): a fresh key and
// root for the same cluster, cross-signed by ca. The daemon then, in this order,
// makes every node trust the new CA's Bundle (old and new roots), signs with the new
// CA (every issued chain runs through the cross-signed certificate to the old root),
// has every node renew, and when IssuedBy(new root) holds for every node's
// certificate calls FinishRotation.
func (ca *CA) StartRotation(now time.Time) (*CA, error) {
	if ca.Previous != nil {
		return nil, errors.New("a CA rotation is already under way; let it finish first")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl, err := rootTemplate(ca.ClusterID(), &key.PublicKey, now)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	cross, err := CrossSign(ca, root, now)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: root, Key: key, CrossSigned: cross, Previous: ca.Cert}, nil
}

// FinishRotation drops the old root: chains issued from now on end at the new root,
// and Bundle holds only it. Certificates the old root signed stop verifying on every
// node that takes the new bundle.
func (ca *CA) FinishRotation() *CA {
	return &CA{Cert: ca.Cert, Key: ca.Key}
}
