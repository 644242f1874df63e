package client

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/pki"
)

// BenchmarkNodeRequest: one small node-to-node API request over mutual TLS with
// P-256 certificates, on a kept-alive connection (how Peers and the forwarding
// proxy run) and on a fresh connection each time (what keep-alive saves: the
// handshake), against plain HTTP on a kept-alive connection for reference.
//
//	go test -run '^$' -bench NodeRequest ./node/client/
func BenchmarkNodeRequest(b *testing.B) {
	ca, err := pki.NewCA("bench", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	holder := func(id string, role api.NodeRole) *pki.CertHolder {
		key, csr, err := pki.NewCSR()
		if err != nil {
			b.Fatal(err)
		}
		chain, err := ca.IssueNode(csr, pki.NodeRequest{NodeID: id, Role: role})
		if err != nil {
			b.Fatal(err)
		}
		return pki.NewCertHolder(chain.TLS(key))
	}
	v := pki.NewVerifier(ca.ClusterID(), ca.Bundle(), func(pki.Identity) bool { return false })
	srvCfg := pki.ServerConfig(holder("m1", api.RoleManager), v, pki.ServerOptions{})
	cliCfg := pki.ClientConfig(holder("w1", api.RoleWorker), v, pki.ClientOptions{Roles: []api.NodeRole{api.RoleManager}})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"node_id":"m1"}` + "\n"))
	})
	serve := func(b *testing.B, tlsCfg *tls.Config) string {
		ln, err := net.Listen("tcp", "127.66.0.60:0")
		if err != nil {
			b.Fatalf("listen on 127.66.0.60 (this helper's loopback range): %v", err)
		}
		var l net.Listener = ln
		if tlsCfg != nil {
			l = pki.NewListener(ln, tlsCfg, pki.ListenerOptions{})
		}
		srv := &http.Server{Handler: handler}
		go func() { _ = srv.Serve(l) }()
		b.Cleanup(func() { _ = srv.Close() })
		return ln.Addr().String()
	}
	run := func(b *testing.B, c *Client, fresh bool) {
		ctx := context.Background()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := c.Info(ctx); err != nil {
				b.Fatal(err)
			}
			if fresh {
				c.hc.Transport.(*http.Transport).CloseIdleConnections()
			}
		}
	}
	b.Run("mtls-keepalive", func(b *testing.B) {
		c, _ := New("tcp://"+serve(b, srvCfg), Options{TLS: cliCfg})
		run(b, c, false)
	})
	b.Run("mtls-new-connection", func(b *testing.B) {
		c, _ := New("tcp://"+serve(b, srvCfg), Options{TLS: cliCfg})
		run(b, c, true)
	})
	b.Run("plain-keepalive", func(b *testing.B) {
		addr := serve(b, nil)
		c := &Client{base: "http://" + addr, host: addr, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}}
		run(b, c, false)
	})
}
