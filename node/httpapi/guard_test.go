package httpapi

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/dispatcher"
	"github.com/swarmlet/swarmlet/node/authn"
	"github.com/swarmlet/swarmlet/node/forward"
	"github.com/swarmlet/swarmlet/node/pki"
	"github.com/swarmlet/swarmlet/raftstore"
)

// fakeNode answers for the daemon: a node table of roles.
type fakeNode struct{ table map[string]api.NodeRole }

func (n fakeNode) ID() string                         { return "m1" }
func (n fakeNode) Info(*raftstore.Store) api.Info     { return api.Info{} }
func (n fakeNode) Leave(context.Context) error        { return nil }
func (n fakeNode) Dispatcher() *dispatcher.Dispatcher { return nil }
func (n fakeNode) MembersChanged()                    {}
func (n fakeNode) TaskLogs(context.Context, string, api.LogOptions, io.Writer) error {
	return nil
}
func (n fakeNode) RoleOf(id string, _ api.NodeRole) api.NodeRole { return n.table[id] }

func memStore(t *testing.T) *raftstore.Store {
	t.Helper()
	_, tr := raft.NewInmemTransport("m1")
	st, err := raftstore.Open(raftstore.Config{NodeID: "m1", InMemory: true, Transport: tr, Bootstrap: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func testServer(t *testing.T, st *raftstore.Store, table map[string]api.NodeRole) *Server {
	rt := forward.New(forward.Config{Self: "m1", Store: func() *raftstore.Store { return st },
		Leadership: &forward.Leadership{}, Peers: forward.NewPeers("", nil, nil)})
	return New(Config{Node: fakeNode{table}, Router: rt, Peers: forward.NewPeers("", nil, nil), Logger: slog.New(slog.DiscardHandler)})
}

func certOf(t *testing.T, ca *pki.CA, id string, role api.NodeRole) []*x509.Certificate {
	t.Helper()
	_, csr, err := pki.NewCSR()
	if err != nil {
		t.Fatal(err)
	}
	var chain pki.Chain
	if role == pki.RoleOperator {
		chain, err = ca.IssueClient(csr, id, 0, time.Time{})
	} else {
		chain, err = ca.IssueNode(csr, pki.NodeRequest{NodeID: id, Role: role})
	}
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

// TestGuard: who each caller is taken to be, and what each may call.
func TestGuard(t *testing.T) {
	ca, err := pki.NewCA("c", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	table := map[string]api.NodeRole{"m2": api.RoleManager, "w1": api.RoleWorker, "w2": api.RoleWorker, "demoted": api.RoleWorker}
	manager := certOf(t, ca, "m2", api.RoleManager)
	worker := certOf(t, ca, "w1", api.RoleWorker)
	demoted := certOf(t, ca, "demoted", api.RoleManager)
	removed := certOf(t, ca, "gone", api.RoleWorker)
	operator := certOf(t, ca, "alice", pki.RoleOperator)

	type caller struct {
		socket bool
		certs  []*x509.Certificate
		vouch  string
	}
	cases := []struct {
		name   string
		c      caller
		access access
		want   string // the caller the handler sees, or the error kind
	}{
		{"socket is the operator", caller{socket: true}, admin, "operator on the local socket"},
		{"socket cannot open a session", caller{socket: true}, nodes, api.ErrKindForbidden},
		{"operator certificate", caller{certs: operator}, admin, "operator alice"},
		{"operator cannot open a session", caller{certs: operator}, nodes, api.ErrKindForbidden},
		{"manager certificate", caller{certs: manager}, admin, "manager m2"},
		{"worker: its session", caller{certs: worker}, nodes, "worker w1"},
		{"worker: no manager endpoint", caller{certs: worker}, admin, api.ErrKindForbidden},
		{"demoted manager is a worker until it renews", caller{certs: demoted}, admin, api.ErrKindForbidden},
		{"demoted manager keeps its session", caller{certs: demoted}, nodes, "worker demoted"},
		{"removed node hears it is removed", caller{certs: removed}, nodes, api.ErrKindNotFound},
		{"removed node: nothing else either", caller{certs: removed}, anyone, api.ErrKindNotFound},
		{"anonymous may join", caller{}, anyone, "anonymous client"},
		{"anonymous nothing else", caller{}, admin, api.ErrKindForbidden},
		{"anonymous no session", caller{}, nodes, api.ErrKindForbidden},
		{"a manager vouches for a worker", caller{certs: manager, vouch: "worker/w2"}, nodes, "worker w2"},
		{"a manager vouches for the socket", caller{certs: manager, vouch: "operator/socket"}, admin, "operator on the local socket"},
		{"a worker cannot vouch for another node", caller{certs: worker, vouch: "worker/w2"}, nodes, "worker w1"},
		{"a worker cannot vouch for an operator", caller{certs: worker, vouch: "operator/socket"}, admin, api.ErrKindForbidden},
		{"an operator cannot vouch", caller{certs: operator, vouch: "manager/m2"}, nodes, api.ErrKindForbidden},
		{"a demoted manager cannot vouch", caller{certs: demoted, vouch: "operator/socket"}, admin, api.ErrKindForbidden},
		{"a malformed vouch is refused", caller{certs: manager, vouch: "worker/../../x"}, nodes, api.ErrKindInvalid},
	}
	s := testServer(t, memStore(t), table)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var saw string
			h := s.guard(forward.Local, tc.access, func(w http.ResponseWriter, r *http.Request) {
				c, _ := authn.From(r.Context())
				saw = c.String()
			})
			r := httptest.NewRequest("GET", "/v1/x", nil)
			switch {
			case tc.c.socket:
				r = r.WithContext(authn.MarkSocket(r.Context()))
			default:
				r.TLS = &tls.ConnectionState{PeerCertificates: tc.c.certs}
			}
			if tc.c.vouch != "" {
				r.Header.Set(authn.Header, tc.c.vouch)
			}
			w := httptest.NewRecorder()
			h(w, r)
			got := saw
			if w.Code != 200 {
				var eb api.ErrorBody
				_ = jsonDecode(w.Body, &eb)
				got = eb.Kind
			}
			if got != tc.want {
				t.Fatalf("got %q (%d %s), want %q", got, w.Code, w.Body, tc.want)
			}
		})
	}

	// Plain HTTP that came neither over the socket nor over TLS is nobody.
	r := httptest.NewRequest("GET", "/v1/x", nil)
	w := httptest.NewRecorder()
	s.guard(forward.Local, admin, func(http.ResponseWriter, *http.Request) { t.Fatal("served") })(w, r)
	if w.Code != 403 {
		t.Fatalf("neither socket nor TLS: %d", w.Code)
	}

	// A worker serves its own node only: nothing to forward, even for an operator.
	ws := testServer(t, nil, table)
	r = httptest.NewRequest("GET", "/v1/nodes", nil).WithContext(authn.MarkSocket(context.Background()))
	w = httptest.NewRecorder()
	ws.guard(forward.Read, admin, func(http.ResponseWriter, *http.Request) { t.Fatal("served") })(w, r)
	if w.Code != 403 {
		t.Fatalf("a worker forwarded a cluster read: %d %s", w.Code, w.Body)
	}
}

// TestLimits: long requests are capped per kind; past the cap the answer is 503
// "busy" at once, and a slot comes back when a request ends.
func TestLimits(t *testing.T) {
	l := newLimits(Limits{Blocking: 2, Sessions: 1, Follows: 1})
	req := func(url string) *http.Request { return httptest.NewRequest("GET", url, nil) }
	var release []func()
	for range 2 {
		rel, err := l.acquire(req("/v1/services?index=5&wait=10s"))
		if err != nil {
			t.Fatal(err)
		}
		release = append(release, rel)
	}
	if _, err := l.acquire(req("/v1/nodes?index=9")); !errors.Is(err, api.ErrBusy) || api.HTTPStatus(api.KindOf(err)) != 503 {
		t.Fatalf("third blocking query: %v", err)
	}
	// Other kinds have their own caps; plain requests none.
	if _, err := l.acquire(req("/v1/dispatcher/assignments?index=3")); err != nil {
		t.Fatalf("a session while blocking queries are full: %v", err)
	}
	if _, err := l.acquire(req("/v1/dispatcher/assignments?index=4")); !errors.Is(err, api.ErrBusy) {
		t.Fatalf("second session past a cap of 1: %v", err)
	}
	if _, err := l.acquire(req("/v1/services/web/logs?follow=true")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.acquire(req("/v1/services/web/logs?follow=1")); !errors.Is(err, api.ErrBusy) {
		t.Fatalf("second follow: %v", err)
	}
	for range 10 {
		if _, err := l.acquire(req("/v1/services")); err != nil {
			t.Fatalf("a plain read was capped: %v", err)
		}
	}
	release[0]()
	if _, err := l.acquire(req("/v1/services?index=5")); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

// TestServerTimeouts: a client that sends a request slowly, or keeps an idle
// connection, is cut off.
func TestServerTimeouts(t *testing.T) {
	old := timeouts
	timeouts.header, timeouts.read, timeouts.idle = 300*time.Millisecond, 500*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() { timeouts = old })
	s := testServer(t, memStore(t), nil)
	ln, err := net.Listen("unix", t.TempDir()+"/api.sock")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.Serve(ln, ServeOptions{Socket: true})
	t.Cleanup(func() { _ = srv.Close() })
	closedWithin := func(what string, conn net.Conn, d time.Duration) {
		t.Helper()
		start := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, conn)
		if took := time.Since(start); took > d {
			t.Fatalf("%s: connection open for %s, want at most %s", what, took, d)
		}
	}
	slow, _ := net.Dial("unix", ln.Addr().String())
	_, _ = io.WriteString(slow, "GET /v1/info HTTP/1.1\r\nHost: x\r\n") // never ends its headers
	closedWithin("slow headers", slow, 2*time.Second)
	idle, _ := net.Dial("unix", ln.Addr().String())
	_, _ = io.WriteString(idle, "GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	closedWithin("idle keep-alive", idle, 2*time.Second)
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
