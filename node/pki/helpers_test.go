package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

func mustCA(t testing.TB, cluster string) *CA {
	t.Helper()
	ca, err := NewCA(cluster, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// node issues a certificate the way a joining node gets one: its own key and CSR,
// signed by the CA.
func node(t testing.TB, ca *CA, id string, role api.NodeRole, mod ...func(*NodeRequest)) *tls.Certificate {
	t.Helper()
	key, csr, err := NewCSR()
	if err != nil {
		t.Fatal(err)
	}
	r := NodeRequest{NodeID: id, Role: role, Addrs: []string{"127.62.0.1"}}
	for _, m := range mod {
		m(&r)
	}
	chain, err := ca.IssueNode(csr, r)
	if err != nil {
		t.Fatal(err)
	}
	return chain.TLS(key)
}

func operator(t testing.TB, ca *CA, name string) *tls.Certificate {
	t.Helper()
	key, csr, err := NewCSR()
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.IssueClient(csr, name, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return chain.TLS(key)
}

type result struct {
	serverErr, clientErr error
	serverSaw, clientSaw tls.ConnectionState
}

func (r result) ok() bool { return r.serverErr == nil && r.clientErr == nil }

// handshake runs a TLS handshake over a loopback TCP connection and then one byte
// each way: in TLS 1.3 a client learns that the server refused its certificate only
// on its first read, so success means data flowed.
func handshake(t testing.TB, server, client *tls.Config) result {
	t.Helper()
	ln := listen(t)
	deadline := time.Now().Add(10 * time.Second)
	var r result
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc, err := ln.Accept()
		if err != nil {
			r.serverErr = err
			return
		}
		defer sc.Close()
		_ = sc.SetDeadline(deadline)
		s := tls.Server(sc, server)
		if r.serverErr = s.Handshake(); r.serverErr != nil {
			return
		}
		r.serverSaw = s.ConnectionState()
		b := make([]byte, 1)
		if _, r.serverErr = io.ReadFull(s, b); r.serverErr != nil {
			return
		}
		_, r.serverErr = s.Write(b)
	}()
	func() {
		cc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			r.clientErr = err
			return
		}
		defer cc.Close()
		_ = cc.SetDeadline(deadline)
		c := tls.Client(cc, client)
		if r.clientErr = c.Handshake(); r.clientErr != nil {
			return
		}
		r.clientSaw = c.ConnectionState()
		if _, r.clientErr = c.Write([]byte{'x'}); r.clientErr != nil {
			return
		}
		b := make([]byte, 1)
		_, r.clientErr = io.ReadFull(c, b)
	}()
	<-done
	var ne net.Error
	if errors.As(r.serverErr, &ne) && ne.Timeout() || errors.As(r.clientErr, &ne) && ne.Timeout() {
		t.Fatalf("handshake hung: server %v, client %v", r.serverErr, r.clientErr)
	}
	return r
}

// listen binds a loopback listener in this helper's range (127.62.x.x).
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.62.0.1:0")
	if err != nil {
		t.Fatalf("listen on 127.62.0.1 (loopback range of these tests): %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

type tlsCert = tls.Certificate

// certs parses a tls.Certificate's chain as a handshake presents it.
func certs(c *tls.Certificate) []*x509.Certificate {
	out := []*x509.Certificate{}
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
		out = append(out, x)
	}
	return out
}

type tlsX509 = x509.Certificate
