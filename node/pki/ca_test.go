package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

func TestNodeCertificateLayout(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ca, err := NewCA("c1", now)
	if err != nil {
		t.Fatal(err)
	}
	if ca.ClusterID() != "c1" || !ca.Cert.IsCA {
		t.Fatalf("root: cluster %q, CA %v", ca.ClusterID(), ca.Cert.IsCA)
	}
	if ca.Key.Curve != elliptic.P256() {
		t.Errorf("root key curve %s, want P-256", ca.Key.Curve.Params().Name)
	}
	key, csr, err := NewCSR()
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.IssueNode(csr, NodeRequest{NodeID: "n1", Role: api.RoleManager,
		Addrs: []string{"127.62.0.7:4240", "node1.example"}, Expiry: 30 * 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain.Leaf()
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Error("the certificate does not carry the node's own key")
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Identity{NodeID: "n1", Role: api.RoleManager, ClusterID: "c1"}); id != want {
		t.Errorf("identity %+v, want %+v", id, want)
	}
	if got := leaf.NotAfter.Sub(now); got != 30*24*time.Hour {
		t.Errorf("lifetime from now %s, want 720h", got)
	}
	if !leaf.NotBefore.Before(now) {
		t.Error("NotBefore is not backdated for clock skew")
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ext key usage %v", leaf.ExtKeyUsage)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.62.0.7")) {
		t.Errorf("IP SANs %v", leaf.IPAddresses)
	}
	if !slices.Equal(leaf.DNSNames, []string{"manager", "n1", "node1.example"}) {
		t.Errorf("DNS SANs %v", leaf.DNSNames)
	}
	if len(chain) != 2 || !chain[1].Equal(ca.Cert) {
		t.Error("chain does not end with the root")
	}
	if !IssuedBy(leaf, ca.Cert) {
		t.Error("IssuedBy(root) false")
	}
	// A stock verifier with the host name the SAN names agrees (operators' tools).
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Bundle().Pool(), DNSName: "127.62.0.7", CurrentTime: now}); err != nil {
		t.Errorf("stock verification by IP: %v", err)
	}

	_, csr2, _ := NewCSR()
	op, err := ca.IssueClient(csr2, "alice", 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := IdentityOf(op.Leaf()); id.Role != RoleOperator || id.NodeID != "alice" {
		t.Errorf("operator identity %+v", id)
	}
	if !slices.Equal(op.Leaf().ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("operator ext key usage %v, want client auth only", op.Leaf().ExtKeyUsage)
	}
	if got := op.Leaf().NotAfter.Sub(now); got != DefaultCertExpiry {
		t.Errorf("default lifetime %s, want %s", got, DefaultCertExpiry)
	}
}

func TestIssueRefusals(t *testing.T) {
	ca := mustCA(t, "c1")
	_, csr, _ := NewCSR()
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	_ = edPub
	edCSR, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, edKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384CSR, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, p384)
	tampered := slices.Clone(csr)
	tampered[len(tampered)-5] ^= 0xff

	cases := []struct {
		name string
		csr  []byte
		req  NodeRequest
		want string
	}{
		{"unknown role", csr, NodeRequest{NodeID: "n1", Role: "admin"}, `role "admin"`},
		{"operator role on a node", csr, NodeRequest{NodeID: "n1", Role: RoleOperator}, `role "operator"`},
		{"empty node ID", csr, NodeRequest{Role: api.RoleWorker}, "node ID is empty"},
		{"node ID with a slash", csr, NodeRequest{NodeID: "../n1", Role: api.RoleWorker}, "only letters"},
		{"node ID too long", csr, NodeRequest{NodeID: strings.Repeat("a", 65), Role: api.RoleWorker}, "limit is 64"},
		{"lifetime below the minimum", csr, NodeRequest{NodeID: "n1", Role: api.RoleWorker, Expiry: time.Minute}, "below the minimum"},
		{"ed25519 key", edCSR, NodeRequest{NodeID: "n1", Role: api.RoleWorker}, "P-256"},
		{"P-384 key", p384CSR, NodeRequest{NodeID: "n1", Role: api.RoleWorker}, "P-256"},
		{"tampered request", tampered, NodeRequest{NodeID: "n1", Role: api.RoleWorker}, "certificate request"},
		{"garbage", []byte("not a csr"), NodeRequest{NodeID: "n1", Role: api.RoleWorker}, "parse certificate request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.IssueNode(tc.csr, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestPEMRoundTrip(t *testing.T) {
	ca := mustCA(t, "c1")
	certPEM, keyPEM, err := ca.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := LoadCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Cert.Equal(ca.Cert) || !back.Key.Equal(ca.Key) {
		t.Error("CA changed in the round trip")
	}

	next, err := ca.StartRotation(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPEM2, keyPEM2, err := next.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	back2, err := LoadCA(certPEM2, keyPEM2)
	if err != nil {
		t.Fatal(err)
	}
	if !back2.CrossSigned.Equal(next.CrossSigned) || !back2.Previous.Equal(ca.Cert) {
		t.Error("rotating CA lost its cross-signed certificate or previous root")
	}

	other := mustCA(t, "c1")
	_, otherKey, _ := other.MarshalPEM()
	if _, err := LoadCA(certPEM, otherKey); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: %v", err)
	}
	if _, err := LoadCA(keyPEM, keyPEM); err == nil || !strings.Contains(err.Error(), "CERTIFICATE was expected") {
		t.Errorf("key as certificate: %v", err)
	}
	if _, err := ParseKeyPEM(certPEM); err == nil {
		t.Error("certificate accepted as a key")
	}
	if _, err := ParseCertsPEM([]byte("nothing")); err == nil {
		t.Error("empty PEM accepted")
	}

	key, csr, _ := NewCSR()
	chain, err := ca.IssueNode(csr, NodeRequest{NodeID: "n1", Role: api.RoleWorker})
	if err != nil {
		t.Fatal(err)
	}
	chain2, err := ParseChainPEM(chain.PEM())
	if err != nil || len(chain2) != 2 || !chain2.Leaf().Equal(chain.Leaf()) {
		t.Fatalf("chain round trip: %v", err)
	}
	kp, _ := EncodeKeyPEM(key)
	if k2, err := ParseKeyPEM(kp); err != nil || !k2.Equal(key) {
		t.Fatalf("key round trip: %v", err)
	}
	bundle, err := ParseTrustBundle(next.Bundle().PEM())
	if err != nil || len(bundle.Roots) != 2 || !bundle.Anchor().Equal(ca.Cert) || bundle.ClusterID() != "c1" {
		t.Fatalf("bundle round trip: %v", err)
	}
	if _, err := NewTrustBundle(ca.Cert, mustCA(t, "c2").Cert); err == nil {
		t.Error("bundle mixing two clusters accepted")
	}
	if _, err := NewTrustBundle(chain.Leaf()); err == nil {
		t.Error("bundle with a leaf accepted")
	}
}
