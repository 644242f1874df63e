package pki

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/api"
)

func TestHandshake(t *testing.T) {
	ca := mustCA(t, "cluster1")
	other := mustCA(t, "cluster2")
	// A second CA claiming the same cluster ID: only the root decides.
	impostor := mustCA(t, "cluster1")

	mgr := node(t, ca, "mgr1", api.RoleManager)
	wrk := node(t, ca, "wrk1", api.RoleWorker)
	gone := node(t, ca, "gone1", api.RoleWorker)
	demoted := node(t, ca, "demoted1", api.RoleManager)
	expired := node(t, ca, "wrk2", api.RoleWorker, func(r *NodeRequest) {
		r.Now, r.Expiry = time.Now().Add(-48*time.Hour), time.Hour
	})
	notYet := node(t, ca, "wrk3", api.RoleWorker, func(r *NodeRequest) { r.Now = time.Now().Add(48 * time.Hour) })
	foreign := node(t, other, "mgr9", api.RoleManager)
	fake := node(t, impostor, "mgr1", api.RoleManager)
	op := operator(t, ca, "alice")

	// The node table the daemon would pass in: gone1 was removed, demoted1 is now a worker.
	table := map[string]api.NodeRole{"mgr1": api.RoleManager, "wrk1": api.RoleWorker, "wrk2": api.RoleWorker,
		"wrk3": api.RoleWorker, "demoted1": api.RoleWorker}
	revoked := func(id Identity) bool {
		if id.Role == RoleOperator {
			return false
		}
		role, ok := table[id.NodeID]
		return !ok || role != id.Role
	}
	v := NewVerifier("cluster1", ca.Bundle(), revoked)
	vOther := NewVerifier("cluster2", other.Bundle(), nil)
	// Trusts cluster1's root but admits only cluster "x": the cluster ID is checked
	// on its own.
	vWrongCluster := NewVerifier("x", ca.Bundle(), nil)

	managersOnly := ServerOptions{Roles: []api.NodeRole{api.RoleManager}}
	wantManager := ClientOptions{Roles: []api.NodeRole{api.RoleManager}}
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}

	cases := []struct {
		name           string
		server, client *tls.Config
		serverErr      error  // sentinel the server's error wraps; nil: accepted
		clientErr      error  // sentinel the client's error wraps
		serverMsg      string // or: text the server's error holds (crypto/tls's own refusals)
	}{
		{name: "mutual TLS worker to manager",
			server: ServerConfig(NewCertHolder(mgr), v, ServerOptions{}),
			client: ClientConfig(NewCertHolder(wrk), v, wantManager)},
		{name: "manager to manager on a managers-only listener (Raft)",
			server: ServerConfig(NewCertHolder(mgr), v, managersOnly),
			client: ClientConfig(NewCertHolder(mgr), v, wantManager)},
		{name: "operator client certificate on the API",
			server: ServerConfig(NewCertHolder(mgr), v, ServerOptions{}),
			client: ClientConfig(NewCertHolder(op), v, ClientOptions{})},
		{name: "client certificate from another CA",
			server: ServerConfig(NewCertHolder(mgr), v, ServerOptions{}),
			client: ClientConfig(NewCertHolder(foreign), v, ClientOptions{}), serverErr: ErrUntrusted},
		{name: "server certificate from another CA",
			server: ServerConfig(NewCertHolder(foreign), vOther, ServerOptions{}),
			client: ClientConfig(NewCertHolder(wrk), v, ClientOptions{}), clientErr: ErrUntrusted},
		{name: "impostor CA with the same cluster ID and node ID",
			server: ServerConfig(NewCertHolder(fake), NewVerifier("cluster1", impostor.Bundle(), nil), ServerOptions{}),
			client: ClientConfig(NewCertHolder(wrk), v, wantManager), clientErr: ErrUntrusted},
		{name: "expired client certificate",
			server: ServerConfig(NewCertHolder(mgr), v, ServerOptions{}),
			client: ClientConfig(NewCertHolder(expired), v, ClientOptions{}), serverErr: ErrUntrusted},
		{name: "expired server certificate",
			server: ServerConfig(NewCertHolder(expired), v, ServerOptions{}),
			client: ClientConfig(NewCertHolder(mgr), v, ClientOptions{}), clientErr: ErrUntrusted},
		{name: "client certificate not valid yet",
			server: ServerConfig(NewCertHolder(mgr), v, ServerOptions{}),
			client: ClientConfig(NewCertHolder(notYet), v, ClientOptions{}), serverErr: ErrUntrusted},
		{name: "worker certificate on a managers-only listener",
			server: ServerConfig(NewCertHolder(mgr), v, managersOnly),
			client: ClientConfig(NewCertHolder(wrk), v, ClientOptions{}), serverErr: ErrWrongRole},
		{name: "worker server where a manager is required",
			server: ServerConfig(NewCertHolder(wrk), v, ServerOptions{}),
			client: ClientConfig(NewCertHolder(mgr), v, wantManager), clientErr: ErrWrongRole},
		{name: "removed node as client",
			server: ServerConfig(NewCertHolder(mgr), v, ServerOptions{}),
			client: ClientConfig(NewCertHolder(gone), v, ClientOptions{}), serverErr: ErrRevoked},
		{name: "removed node as server",
			server: ServerConfig(NewCertHolder(gone), v, ServerOptions{}),
			client: ClientConfig(NewCertHolder(mgr), v, ClientOptions{}), clientErr: ErrRevoked},
		{name: "demoted manager's old certificate on a managers-only listener",
			server: ServerConfig(NewCertHolder(mgr), v, managersOnly),
			client: ClientConfig(NewCertHolder(demoted), v, ClientOptions{}), serverErr: ErrRevoked},
		{name: "operator certificate cannot serve",
			server: ServerConfig(NewCertHolder(op), v, ServerOptions{}),
			client: ClientConfig(NewCertHolder(wrk), v, ClientOptions{}), clientErr: ErrUntrusted},
		{name: "certificate of a cluster the verifier does not admit",
			server: ServerConfig(NewCertHolder(mgr), vWrongCluster, ServerOptions{}),
			client: ClientConfig(NewCertHolder(wrk), v, ClientOptions{}), serverErr: ErrWrongCluster},
		{name: "dialed node ID differs",
			server: ServerConfig(NewCertHolder(mgr), v, ServerOptions{}),
			client: ClientConfig(NewCertHolder(wrk), v, ClientOptions{NodeID: "mgr2"}), clientErr: ErrWrongNode},
		{name: "client without a certificate",
			server: ServerConfig(NewCertHolder(mgr), v, ServerOptions{}),
			client: noCert, serverMsg: "didn't provide a certificate"},
		{name: "client without a certificate where anonymous is allowed (join)",
			server: ServerConfig(NewCertHolder(mgr), v, ServerOptions{AllowAnonymous: true}),
			client: noCert},
		{name: "client that shows a bad certificate where anonymous is allowed",
			server: ServerConfig(NewCertHolder(mgr), v, ServerOptions{AllowAnonymous: true}),
			client: ClientConfig(NewCertHolder(foreign), v, ClientOptions{}), serverErr: ErrUntrusted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := handshake(t, tc.server, tc.client)
			if tc.serverErr == nil && tc.clientErr == nil && tc.serverMsg == "" {
				if !r.ok() {
					t.Fatalf("refused: server %v; client %v", r.serverErr, r.clientErr)
				}
				return
			}
			if r.ok() {
				t.Fatal("accepted")
			}
			if tc.serverErr != nil && !errors.Is(r.serverErr, tc.serverErr) {
				t.Errorf("server error %v, want %v", r.serverErr, tc.serverErr)
			}
			if tc.serverMsg != "" && (r.serverErr == nil || !strings.Contains(r.serverErr.Error(), tc.serverMsg)) {
				t.Errorf("server error %v, want one saying %q", r.serverErr, tc.serverMsg)
			}
			if tc.clientErr != nil && !errors.Is(r.clientErr, tc.clientErr) {
				t.Errorf("client error %v, want %v", r.clientErr, tc.clientErr)
			}
		})
	}
}

// TestVerifyConnectionHook: the hook on a config built by hand behaves as ServerConfig.
func TestVerifyConnectionHook(t *testing.T) {
	ca := mustCA(t, "cluster1")
	v := NewVerifier("cluster1", ca.Bundle(), nil)
	mgr := node(t, ca, "mgr1", api.RoleManager)
	server := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*mgr},
		ClientAuth: tls.RequireAnyClientCert, VerifyConnection: v.VerifyConnection(x509.ExtKeyUsageClientAuth, api.RoleManager)}
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		want error
	}{
		{"manager", node(t, ca, "mgr2", api.RoleManager), nil},
		{"worker", node(t, ca, "wrk1", api.RoleWorker), ErrWrongRole},
		{"other CA", node(t, mustCA(t, "cluster1"), "mgr2", api.RoleManager), ErrUntrusted},
	} {
		r := handshake(t, server, ClientConfig(NewCertHolder(tc.cert), v, ClientOptions{}))
		if tc.want == nil && !r.ok() || tc.want != nil && !errors.Is(r.serverErr, tc.want) {
			t.Errorf("%s: server %v, client %v; want %v", tc.name, r.serverErr, r.clientErr, tc.want)
		}
	}
}

func TestPeerIdentity(t *testing.T) {
	ca := mustCA(t, "cluster1")
	v := NewVerifier("cluster1", ca.Bundle(), nil)
	r := handshake(t,
		ServerConfig(NewCertHolder(node(t, ca, "mgr1", api.RoleManager)), v, ServerOptions{}),
		ClientConfig(NewCertHolder(node(t, ca, "wrk1", api.RoleWorker)), v, ClientOptions{}))
	if !r.ok() {
		t.Fatalf("server %v; client %v", r.serverErr, r.clientErr)
	}
	if r.serverSaw.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", r.serverSaw.Version)
	}
	for _, c := range []struct {
		cs   tls.ConnectionState
		want Identity
	}{
		{r.serverSaw, Identity{NodeID: "wrk1", Role: api.RoleWorker, ClusterID: "cluster1"}},
		{r.clientSaw, Identity{NodeID: "mgr1", Role: api.RoleManager, ClusterID: "cluster1"}},
	} {
		got, ok := PeerIdentity(c.cs)
		if !ok || got != c.want {
			t.Errorf("peer identity %+v (%v), want %+v", got, ok, c.want)
		}
	}
	if _, ok := PeerIdentity(tls.ConnectionState{}); ok {
		t.Error("identity from a connection without certificates")
	}
}

// TestCertificateReload: a renewed certificate is served on the next handshake with
// the same tls.Config.
func TestCertificateReload(t *testing.T) {
	ca := mustCA(t, "cluster1")
	v := NewVerifier("cluster1", ca.Bundle(), nil)
	holder := NewCertHolder(node(t, ca, "mgr1", api.RoleManager))
	server := ServerConfig(holder, v, ServerOptions{})
	client := ClientConfig(NewCertHolder(node(t, ca, "wrk1", api.RoleWorker)), v, ClientOptions{})
	first := handshake(t, server, client)
	renewed := node(t, ca, "mgr1", api.RoleManager)
	holder.Store(renewed)
	second := handshake(t, server, client)
	if !first.ok() || !second.ok() {
		t.Fatalf("handshakes: %v %v / %v %v", first.serverErr, first.clientErr, second.serverErr, second.clientErr)
	}
	if got := second.clientSaw.PeerCertificates[0].SerialNumber; got.Cmp(renewed.Leaf.SerialNumber) != 0 {
		t.Errorf("second handshake served serial %v, want the renewed %v", got, renewed.Leaf.SerialNumber)
	}
	if first.clientSaw.PeerCertificates[0].SerialNumber.Cmp(renewed.Leaf.SerialNumber) == 0 {
		t.Error("first handshake already served the renewed certificate")
	}
}

// TestPlaintextRefused: a plaintext client on a real loopback listener gets no answer
// and the server sees a TLS record error.
func TestPlaintextRefused(t *testing.T) {
	ca := mustCA(t, "cluster1")
	v := NewVerifier("cluster1", ca.Bundle(), nil)
	ln := listen(t)
	tln := tls.NewListener(ln, ServerConfig(NewCertHolder(node(t, ca, "mgr1", api.RoleManager)), v, ServerOptions{}))
	serverErr := make(chan error, 1)
	go func() {
		c, err := tln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		serverErr <- c.(*tls.Conn).Handshake()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /v1/join-tokens HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	reply, _ := io.ReadAll(bufio.NewReader(c))
	if strings.Contains(string(reply), "HTTP/") || strings.Contains(string(reply), "SWLT") {
		t.Fatalf("plaintext request got an answer: %q", reply)
	}
	var rh tls.RecordHeaderError
	if err := <-serverErr; !errors.As(err, &rh) {
		t.Fatalf("server handshake error %v, want a TLS record header error", err)
	}
}
