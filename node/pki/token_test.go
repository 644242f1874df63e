package pki

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

func TestParseToken(t *testing.T) {
	ca := mustCA(t, "c1")
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	good := NewToken(ca.Cert, secret).String()
	d := RootDigest(ca.Cert)
	cases := []struct {
		name string
		in   string
		want string // "" means it parses
	}{
		{"good", good, ""},
		{"good with surrounding space (pasted)", " " + good + "\n", ""},
		{"empty", "", "got 1 dash-separated parts"},
		{"swarm's prefix", "SWMTKN-1-" + d + "-" + secret, "does not start with SWLT-"},
		{"version 2", "SWLT-2-" + d + "-" + secret, `version "2" is not supported`},
		{"missing secret", "SWLT-1-" + d, "got 3 dash-separated parts"},
		{"extra part", good + "-x", "got 5 dash-separated parts"},
		{"short digest", "SWLT-1-" + d[1:] + "-" + secret, "CA digest is 49 characters long, want 50"},
		{"short secret", "SWLT-1-" + d + "-" + secret[1:], "secret is 24 characters long, want 25"},
		{"upper-case digest", "SWLT-1-" + strings.ToUpper(d[:10]) + d[10:] + "-" + secret, "CA digest holds a character"},
		{"secret with punctuation", "SWLT-1-" + d + "-" + secret[:24] + "!", "secret holds a character"},
		{"old swarmlet token (sha256 of the cluster ID, hex)", "SWLT-1-" + strings.Repeat("ab", 32) + "-" + secret, "CA digest is 64 characters long"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := ParseToken(tc.in)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tok.String() != good || tok.Secret != secret || tok.CADigest != d {
					t.Fatalf("parsed %+v", tok)
				}
				return
			}
			if !errors.Is(err, ErrMalformedToken) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrMalformedToken saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret[:20]) {
				t.Fatalf("the error repeats the secret: %v", err)
			}
		})
	}
}

func TestPinRoot(t *testing.T) {
	ca := mustCA(t, "c1")
	other := mustCA(t, "c1")
	tok := NewToken(ca.Cert, "0000000000000000000000000")
	chain := certs(node(t, ca, "m1", api.RoleManager))
	otherChain := certs(node(t, other, "m1", api.RoleManager))

	cases := []struct {
		name    string
		certs   []*tlsX509
		wantErr error
	}{
		{"the CA PEM a manager serves", ca.Bundle().Roots, nil},
		{"a manager's handshake chain", chain, nil},
		{"a rotation bundle (old root first)", mustRotate(t, ca).Bundle().Roots, nil},
		{"another CA", other.Bundle().Roots, ErrCAMismatch},
		{"another CA's handshake chain", otherChain, ErrCAMismatch},
		{"the leaf alone", chain[:1], ErrCAMismatch},
		{"nothing", nil, ErrCAMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root, err := tok.PinRoot(tc.certs)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err == nil && !root.Equal(ca.Cert) {
				t.Fatal("pinned a different root")
			}
		})
	}
}

func mustRotate(t *testing.T, ca *CA) *CA {
	next, err := ca.StartRotation(ca.Cert.NotBefore)
	if err != nil {
		t.Fatal(err)
	}
	return next
}

// TestJoinHandshake: a node with only a token completes a handshake with a manager of
// the pinned CA, and stops on the digest before sending anything when the manager
// belongs to another CA.
func TestJoinHandshake(t *testing.T) {
	ca := mustCA(t, "c1")
	impostor := mustCA(t, "c1")
	secret, _ := NewSecret()
	tok := NewToken(ca.Cert, secret)
	v := NewVerifier("c1", ca.Bundle(), nil)
	vImp := NewVerifier("c1", impostor.Bundle(), nil)
	anon := ServerOptions{AllowAnonymous: true}

	cases := []struct {
		name    string
		server  *tls.Config
		wantErr error
	}{
		{"manager of the pinned CA", ServerConfig(NewCertHolder(node(t, ca, "m1", api.RoleManager)), v, anon), nil},
		{"manager during a rotation (new cert, chain to the pinned old root)",
			ServerConfig(NewCertHolder(node(t, mustRotate(t, ca), "m1", api.RoleManager)), v, anon), nil},
		{"impostor CA with the same cluster ID", ServerConfig(NewCertHolder(node(t, impostor, "m1", api.RoleManager)), vImp, anon), ErrCAMismatch},
		{"worker of the pinned CA", ServerConfig(NewCertHolder(node(t, ca, "w1", api.RoleWorker)), v, anon), ErrWrongRole},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := handshake(t, tc.server, JoinClientConfig(tok))
			if tc.wantErr == nil {
				if !r.ok() {
					t.Fatalf("refused: server %v; client %v", r.serverErr, r.clientErr)
				}
				root, err := tok.PinRoot(r.clientSaw.PeerCertificates)
				if err != nil || !root.Equal(ca.Cert) {
					t.Fatalf("pinned root after the handshake: %v", err)
				}
				return
			}
			if !errors.Is(r.clientErr, tc.wantErr) {
				t.Fatalf("client error %v, want %v", r.clientErr, tc.wantErr)
			}
			// The client gave up inside the handshake: the server never got a byte
			// of application data (where the token would have gone).
			if r.serverErr == nil {
				t.Fatal("the server read application data from a client that refused it")
			}
		})
	}
}

func TestSecretHash(t *testing.T) {
	ca := mustCA(t, "c1")
	s1, _ := NewSecret()
	s2, _ := NewSecret()
	if s1 == s2 || len(s1) != secretLen {
		t.Fatalf("secrets %q %q", s1, s2)
	}
	stored := HashSecret(s1)
	if strings.Contains(stored, s1) {
		t.Fatal("the hash holds the secret")
	}
	cases := []struct {
		name   string
		tok    Token
		stored string
		want   bool
	}{
		{"right secret", NewToken(ca.Cert, s1), stored, true},
		{"wrong secret", NewToken(ca.Cert, s2), stored, false},
		{"stored plaintext instead of a hash", NewToken(ca.Cert, s1), s1, false},
		{"empty stored hash", NewToken(ca.Cert, s1), "", false},
	}
	for _, tc := range cases {
		if got := tc.tok.MatchesHash(tc.stored); got != tc.want {
			t.Errorf("%s: MatchesHash %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDeriveSecret(t *testing.T) {
	ca := mustCA(t, "c1")
	w0, err := DeriveSecret(ca.Key, api.RoleWorker, 0)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := DeriveSecret(ca.Key, api.RoleWorker, 0)
	m0, _ := DeriveSecret(ca.Key, api.RoleManager, 0)
	w1, _ := DeriveSecret(ca.Key, api.RoleWorker, 1)
	otherCA, _ := DeriveSecret(mustCA(t, "c1").Key, api.RoleWorker, 0)
	if w0 != again {
		t.Error("not deterministic")
	}
	if w0 == m0 || w0 == w1 || w0 == otherCA {
		t.Error("role, generation or CA key does not change the secret")
	}
	if _, err := ParseToken(NewToken(ca.Cert, w0).String()); err != nil {
		t.Errorf("derived secret does not make a valid token: %v", err)
	}
}

// FuzzParseToken: the parser never panics, and whatever it accepts prints back to
// itself (modulo surrounding space).
func FuzzParseToken(f *testing.F) {
	f.Add("SWLT-1-" + strings.Repeat("0", 50) + "-" + strings.Repeat("z", 25))
	f.Add("SWLT-1--")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedToken) {
				t.Fatalf("error %v does not wrap ErrMalformedToken", err)
			}
			return
		}
		if tok.String() != strings.TrimSpace(s) {
			t.Fatalf("accepted %q but prints %q", s, tok.String())
		}
		if _, err := ParseToken(tok.String()); err != nil {
			t.Fatalf("printed token does not parse: %v", err)
		}
	})
}
