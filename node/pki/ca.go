package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"
)

const (
	// DefaultCertExpiry is a node certificate's lifetime unless init says otherwise
	// (--cert-expiry), as Swarm's.
	DefaultCertExpiry = 90 * 24 * time.Hour
	// MinCertExpiry keeps renewal (at 50-80% of the lifetime) from turning into a storm.
	MinCertExpiry = time.Hour
	// RootExpiry is long because replacing a root is a rotation, not a renewal.
	RootExpiry = 20 * 365 * 24 * time.Hour
	// backdate absorbs clock skew between the issuing manager and its peers: a
	// certificate is valid on a node whose clock runs a little behind.
	backdate = time.Hour
)

// CA is the cluster's signing authority: a self-signed root and its key. While a
// rotation is under way it also holds the root it replaces (Previous) and its own key
// certified by that root (CrossSigned): every chain it issues then runs through the
// cross-signed certificate to the previous root, so peers that trust only the
// previous root still accept it.
type CA struct {
	Cert        *x509.Certificate
	Key         *ecdsa.PrivateKey
	CrossSigned *x509.Certificate
	Previous    *x509.Certificate
}

// ClusterID is the cluster the root belongs to (its subject's O).
func (ca *CA) ClusterID() string { return clusterOf(ca.Cert) }

// NewCA makes the root of a new cluster: ECDSA P-256, self-signed, the cluster ID as
// the subject's organization.
func NewCA(clusterID string, now time.Time) (*CA, error) {
	if err := checkName("cluster ID", clusterID); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl, err := rootTemplate(clusterID, &key.PublicKey, now)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// rootTemplate names a root after its key, so the old and new roots of a rotation have
// different subjects and a chain builder never confuses them.
func rootTemplate(clusterID string, pub *ecdsa.PublicKey, now time.Time) (*x509.Certificate, error) {
	ski, err := keyID(pub)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "swarmlet-ca-" + hex.EncodeToString(ski[:6]),
			Organization: []string{clusterID},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(RootExpiry),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// One level below the root: the cross-signed certificate of a rotation.
		MaxPathLen:   1,
		SubjectKeyId: ski,
	}, nil
}

// LoadCA rebuilds a CA from its PEM forms (MarshalPEM). certPEM holds the root, then
// during a rotation the cross-signed certificate and the previous root.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	ca := &CA{Cert: certs[0], Key: key}
	if !key.PublicKey.Equal(ca.Cert.PublicKey) {
		return nil, errors.New("CA key does not match the CA certificate")
	}
	if err := checkRoot(ca.Cert); err != nil {
		return nil, err
	}
	switch len(certs) {
	case 1:
	case 3:
		ca.CrossSigned, ca.Previous = certs[1], certs[2]
		if err := checkRoot(ca.Previous); err != nil {
			return nil, fmt.Errorf("previous root: %w", err)
		}
		if err := ca.CrossSigned.CheckSignatureFrom(ca.Previous); err != nil {
			return nil, fmt.Errorf("cross-signed certificate is not signed by the previous root: %w", err)
		}
		if !key.PublicKey.Equal(ca.CrossSigned.PublicKey) {
			return nil, errors.New("cross-signed certificate does not carry the CA key")
		}
	default:
		return nil, fmt.Errorf("CA certificate PEM holds %d certificates; want 1 (root) or 3 (root, cross-signed, previous root)", len(certs))
	}
	return ca, nil
}

// MarshalPEM is the inverse of LoadCA. The key PEM is the secret the cluster must
// keep encrypted (in Raft, under encryption at rest).
func (ca *CA) MarshalPEM() (certPEM, keyPEM []byte, err error) {
	certs := []*x509.Certificate{ca.Cert}
	if ca.CrossSigned != nil {
		certs = append(certs, ca.CrossSigned, ca.Previous)
	}
	keyPEM, err = EncodeKeyPEM(ca.Key)
	if err != nil {
		return nil, nil, err
	}
	return EncodeCertsPEM(certs...), keyPEM, nil
}

// Bundle is what every node must trust while this CA signs: its root, and during a
// rotation the previous root first (join tokens pin the bundle's first root).
func (ca *CA) Bundle() *TrustBundle {
	if ca.Previous != nil {
		return &TrustBundle{Roots: []*x509.Certificate{ca.Previous, ca.Cert}}
	}
	return &TrustBundle{Roots: []*x509.Certificate{ca.Cert}}
}

// checkRoot accepts a self-signed CA certificate that names a cluster.
func checkRoot(c *x509.Certificate) error {
	if !c.IsCA || !c.BasicConstraintsValid {
		return fmt.Errorf("certificate %q is not a CA", c.Subject.CommonName)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		return fmt.Errorf("certificate %q is not a self-signed root: %w", c.Subject.CommonName, err)
	}
	if clusterOf(c) == "" {
		return fmt.Errorf("root %q names no cluster (subject O)", c.Subject.CommonName)
	}
	return nil
}

func clusterOf(c *x509.Certificate) string {
	if len(c.Subject.Organization) != 1 {
		return ""
	}
	return c.Subject.Organization[0]
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// keyID is RFC 7093's method 1: the leftmost 160 bits of SHA-256 of the public key.
func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return sha256Sum(der)[:20], nil
}

// checkName accepts what may go into a subject field and come back as an identity:
// printable ASCII without separators that would make logs or paths ambiguous.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > 64 {
		return fmt.Errorf("%s is %d bytes long; the limit is 64", what, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("%s %q: only letters, digits, '-', '_' and '.' are allowed", what, s)
		}
	}
	return nil
}
