package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/swarmlet/swarmlet/api"
)

// An error answered by the server is the same sentinel on the client's side.
func TestErrorsCrossTheWire(t *testing.T) {
	var answer error
	var gotNode string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotNode = r.Header.Get(NodeHeader)
		body := api.ErrorBodyOf(answer)
		w.WriteHeader(api.HTTPStatus(body.Kind))
		_ = json.NewEncoder(w).Encode(body)
	}))
	defer srv.Close()
	c, err := New(srv.URL[len("http://"):], Options{NodeID: "n1"})
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
	if gotNode != "n1" {
		t.Fatalf("node header %q", gotNode)
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
}
