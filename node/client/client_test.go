package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

// An error answered by the server is the same sentinel on the client's side.
func TestErrorsCrossTheWire(t *testing.T) {
	var answer error
	var overTLS bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		overTLS = r.TLS != nil
		body := api.ErrorBodyOf(answer)
		w.WriteHeader(api.HTTPStatus(body.Kind))
		_ = json.NewEncoder(w).Encode(body)
	}))
	defer srv.Close()
	tlsCfg := srv.Client().Transport.(*http.Transport).TLSClientConfig
	c, err := New("tcp://"+srv.Listener.Addr().String(), Options{TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	for _, sentinel := range []error{api.ErrNotFound, api.ErrInvalid, api.ErrConflict, api.ErrNotLeader, api.ErrNoQuorum, api.ErrForbidden, api.ErrOutcomeUnknown} {
		answer = fmt.Errorf("service %q: %w", "web", sentinel)
		_, err := c.Service(context.Background(), "web")
		if !errors.Is(err, sentinel) {
			t.Errorf("server said %v; client error %v is not that sentinel", answer, err)
		}
		if err.Error() != answer.Error() && sentinel != api.ErrOutcomeUnknown {
			t.Errorf("message changed on the way: %q vs %q", err, answer)
		}
	}
	if !overTLS {
		t.Fatal("a tcp:// client spoke plaintext")
	}
}

func TestUnreachable(t *testing.T) {
	c, _ := New("unix:///nonexistent/swarmlet.sock", Options{})
	if _, err := c.Info(context.Background()); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("got %v", err)
	}
	if _, err := New("ftp://x", Options{}); err == nil {
		t.Fatal("bad host accepted")
	}
	// The API on TCP is TLS only: a client without TLS options is not made.
	for _, h := range []string{"tcp://127.0.0.1:1", "127.0.0.1:1"} {
		if _, err := New(h, Options{}); !errors.Is(err, ErrNoTLS) {
			t.Fatalf("New(%q) without TLS: %v", h, err)
		}
	}
}

// A large answer (sent chunked) decoded by Do leaves its connection for the next
// request: a handshake per session answer was most of a thousand nodes' cost.
func TestLargeAnswersKeepTheConnection(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"x": strings.Repeat("a", 100000)})
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	c, err := New(srv.Listener.Addr().String(), Options{TLS: srv.Client().Transport.(*http.Transport).TLSClientConfig})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		var v map[string]string
		if _, err := c.Do(context.Background(), http.MethodGet, "/", nil, &v); err != nil || len(v["x"]) != 100000 {
			t.Fatalf("answer %d bytes, %v", len(v["x"]), err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 10 requests, want 1", n)
	}
}

// So does an answer nobody decodes (a status report's).
func TestUndecodedAnswersKeepTheConnection(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(struct{}{})
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	c, err := New(srv.Listener.Addr().String(), Options{TLS: srv.Client().Transport.(*http.Transport).TLSClientConfig})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := c.Do(context.Background(), http.MethodPost, "/", struct{}{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 10 requests, want 1", n)
	}
}
