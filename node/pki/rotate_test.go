package pki

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

// TestRotation walks a CA rotation: during it, certificates of either root are
// accepted by peers of either trust; after it, only the new root's.
func TestRotation(t *testing.T) {
	old := mustCA(t, "c1")
	oldCert := node(t, old, "n-old", api.RoleManager)

	next, err := old.StartRotation(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := next.StartRotation(time.Now()); err == nil {
		t.Error("a second rotation started while one is under way")
	}
	newCert := node(t, next, "n-new", api.RoleManager)
	if got := len(newCert.Certificate); got != 3 {
		t.Fatalf("a leaf issued during rotation carries %d certificates; want leaf, cross-signed, old root", got)
	}
	if !IssuedBy(newCert.Leaf, next.Cert) || IssuedBy(newCert.Leaf, old.Cert) {
		t.Error("the new leaf is not signed by the new root alone")
	}

	onlyOld := NewVerifier("c1", old.Bundle(), nil)
	both := NewVerifier("c1", next.Bundle(), nil)
	onlyNew := NewVerifier("c1", next.FinishRotation().Bundle(), nil)
	if len(next.Bundle().Roots) != 2 || !next.Bundle().Anchor().Equal(old.Cert) {
		t.Fatal("the rotation bundle is not old root then new root")
	}

	cases := []struct {
		name   string
		server *tlsPeer
		client *tlsPeer
		ok     bool
	}{
		{"new cert to a peer trusting only the old root (via the cross-signed cert)",
			&tlsPeer{oldCert, onlyOld}, &tlsPeer{newCert, both}, true},
		{"new cert as server to a client trusting only the old root",
			&tlsPeer{newCert, both}, &tlsPeer{oldCert, onlyOld}, true},
		{"old cert to a peer trusting old and new",
			&tlsPeer{newCert, both}, &tlsPeer{oldCert, both}, true},
		{"new cert to a peer trusting only the new root",
			&tlsPeer{node(t, next, "n-new2", api.RoleManager), onlyNew}, &tlsPeer{newCert, onlyNew}, true},
		{"old cert after the old root is dropped",
			&tlsPeer{newCert, onlyNew}, &tlsPeer{oldCert, both}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := handshake(t,
				ServerConfig(NewCertHolder(tc.server.cert), tc.server.v, ServerOptions{}),
				ClientConfig(NewCertHolder(tc.client.cert), tc.client.v, ClientOptions{}))
			if tc.ok && !r.ok() {
				t.Fatalf("refused: server %v; client %v", r.serverErr, r.clientErr)
			}
			if !tc.ok && !errors.Is(r.serverErr, ErrUntrusted) {
				t.Fatalf("server error %v, want %v", r.serverErr, ErrUntrusted)
			}
		})
	}

	// The old-root-only peer accepts the new leaf through the cross-signed
	// certificate and only through it.
	chain := certs(newCert)
	if _, err := onlyOld.Verify(chain[:2], x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("new leaf with the cross-signed cert, old root only: %v", err)
	}
	if _, err := onlyOld.Verify(chain[:1], x509.ExtKeyUsageClientAuth); !errors.Is(err, ErrUntrusted) {
		t.Errorf("new leaf without the cross-signed cert, old root only: %v", err)
	}

	// After the rotation leaves end at the new root and carry no cross-signed cert.
	done := next.FinishRotation()
	after := node(t, done, "n-after", api.RoleWorker)
	if len(after.Certificate) != 2 || !done.Bundle().Anchor().Equal(next.Cert) {
		t.Errorf("after rotation: chain of %d, anchor changed: %v", len(after.Certificate), !done.Bundle().Anchor().Equal(next.Cert))
	}
	// A live verifier switches roots without a restart.
	v := NewVerifier("c1", next.Bundle(), nil)
	if _, err := v.Verify(certs(oldCert), x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatalf("old cert during rotation: %v", err)
	}
	v.SetRoots(done.Bundle())
	if _, err := v.Verify(certs(oldCert), x509.ExtKeyUsageClientAuth); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("old cert after SetRoots(new only): %v", err)
	}
}

type tlsPeer struct {
	cert *tlsCert
	v    *Verifier
}
