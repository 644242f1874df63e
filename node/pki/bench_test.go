package pki

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

// BenchmarkHandshake measures one node-to-node connection over loopback: dial, a full
// mutual TLS 1.3 handshake with P-256 certificates verified on both sides (chain,
// cluster, role, revocation lookup), one byte each way, close. "plain-tcp" is the
// same without TLS, to subtract.
func BenchmarkHandshake(b *testing.B) {
	ca := mustCA(b, "c1")
	v := NewVerifier("c1", ca.Bundle(), func(Identity) bool { return false })
	server := ServerConfig(NewCertHolder(node(b, ca, "m1", api.RoleManager)), v, ServerOptions{Roles: []api.NodeRole{api.RoleManager}})
	server.SessionTicketsDisabled = true // every handshake is a full one
	client := ClientConfig(NewCertHolder(node(b, ca, "m2", api.RoleManager)), v, ClientOptions{Roles: []api.NodeRole{api.RoleManager}})
	x25519 := func(c *tls.Config) *tls.Config {
		c = c.Clone()
		c.CurvePreferences = []tls.CurveID{tls.X25519}
		return c
	}
	cases := []struct {
		name           string
		server, client *tls.Config
	}{
		{"mtls-default-curves", server, client}, // Go's default: X25519MLKEM768 hybrid key exchange
		{"mtls-x25519", x25519(server), x25519(client)},
		{"plain-tcp", nil, nil},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			ln := listen(b)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						var rw io.ReadWriter = c
						if tc.server != nil {
							s := tls.Server(c, tc.server)
							if s.Handshake() != nil {
								return
							}
							rw = s
						}
						buf := make([]byte, 1)
						if _, err := io.ReadFull(rw, buf); err == nil {
							_, _ = rw.Write(buf)
						}
					}()
				}
			}()
			addr := ln.Addr().String()
			buf := make([]byte, 1)
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				var rw io.ReadWriter = c
				if tc.client != nil {
					tc := tls.Client(c, tc.client)
					if err := tc.Handshake(); err != nil {
						b.Fatal(err)
					}
					rw = tc
				}
				if _, err := rw.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(rw, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkVerify is the verification alone (one side's share of a handshake's
// certificate work, without the signatures of the handshake itself).
func BenchmarkVerify(b *testing.B) {
	ca := mustCA(b, "c1")
	v := NewVerifier("c1", ca.Bundle(), func(Identity) bool { return false })
	chain := certs(node(b, ca, "m1", api.RoleManager))
	for b.Loop() {
		if _, err := v.Verify(chain, x509.ExtKeyUsageClientAuth); err != nil {
			b.Fatal(err)
		}
	}
}
