package httpapi

import (
	"fmt"
	"net/http"

	"github.com/swarmlet/swarmlet/api"
	"github.com/swarmlet/swarmlet/node/authn"
	"github.com/swarmlet/swarmlet/node/forward"
)

// This file is the one place where the caller of a request is identified and
// where what each caller may do is decided (node/pki/DESIGN.md, "Who checks what").
//
//   - The unix socket (0600, root) is this node's operator.
//   - On TCP, every connection completed a mutual-TLS handshake with a certificate
//     of the cluster's roots (the listener refuses the rest); the caller is the
//     node or operator its certificate names, with the role the node table gives it
//     now (a demoted manager whose certificate still says manager is a worker here
//     until it renews; a removed node is told so and nothing else).
//   - A request a manager forwarded names the original caller in authn.Header;
//     that header counts only when the TLS peer is a manager now. From anyone
//     else it is ignored, so a worker cannot speak for another node or an operator.
//   - A client without a certificate exists only on the join handshake and may
//     only join.

// access is who may call a route.
type access int

const (
	// anyone: the join endpoint (the token is the credential).
	anyone access = iota
	// nodes: a node's own session, status, registration, departure and certificate.
	nodes
	// admin: operators, and managers (which call each other's local endpoints).
	admin
)

// identify names the caller of r.
func (s *Server) identify(r *http.Request) (authn.Caller, error) {
	if authn.OnSocket(r) {
		return authn.Caller{Name: "socket", Role: authn.RoleOperator, Socket: true}, nil
	}
	if r.TLS == nil {
		// Only the unix socket serves plain HTTP; this cannot happen on TCP.
		return authn.Caller{}, fmt.Errorf("request over neither the socket nor TLS: %w", api.ErrForbidden)
	}
	peer, err := authn.FromTLS(r.TLS)
	if err != nil || peer.Anonymous() {
		return peer, err
	}
	if peer.Node() {
		role := s.cfg.Node.RoleOf(peer.Name, peer.Role)
		switch {
		case role == "":
			// The one answer a removed node gets, to anything: it stops its tasks
			// when its session hears it.
			return authn.Caller{}, fmt.Errorf("node %s is not part of the cluster (removed): to bring it back, empty its data dir and join again with a token: %w", peer.Name, api.ErrNotFound)
		case role != peer.Role:
			// Promoted or demoted since its certificate was issued: the lesser of
			// the two until it renews.
			peer.Role = api.RoleWorker
		}
	}
	if v := r.Header.Get(authn.Header); v != "" && peer.Role == api.RoleManager {
		orig, err := authn.Decode(v)
		if err != nil {
			return authn.Caller{}, fmt.Errorf("%v: %w", err, api.ErrInvalid)
		}
		return orig, nil
	}
	return peer, nil
}

// guard identifies the caller, checks that it may call a route of this kind and
// access, and hands the request on with the caller in its context (the router
// vouches for it when it forwards).
func (s *Server) guard(kind forward.Kind, a access, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.identify(r)
		if err == nil {
			err = s.allowed(c, kind, a)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		release, err := s.limits.acquire(r)
		if err != nil {
			writeError(w, err)
			return
		}
		defer release()
		next(w, r.WithContext(authn.With(r.Context(), c)))
	}
}

func (s *Server) allowed(c authn.Caller, kind forward.Kind, a access) error {
	if kind != forward.Local && s.cfg.Router.Store() == nil {
		// A worker serves its own endpoints only. Were it to forward, the manager
		// would see the worker's certificate: an operator's request would be refused
		// there, and another node's would run as this worker.
		return fmt.Errorf("this node is a worker: run cluster commands against a manager (its socket, or --host tcp://MANAGER:PORT with an operator certificate from 'swarmlet ca issue-client'): %w", api.ErrForbidden)
	}
	switch a {
	case anyone:
		return nil
	case nodes:
		if !c.Node() {
			return fmt.Errorf("this endpoint is for swarmlet nodes, not the %s: %w", c, api.ErrForbidden)
		}
	case admin:
		if c.Role != authn.RoleOperator && c.Role != api.RoleManager {
			return fmt.Errorf("this endpoint needs an operator or a manager; the caller is a %s: %w", c, api.ErrForbidden)
		}
	}
	return nil
}

// caller is the node a session request is from: the guard admitted only nodes.
func caller(r *http.Request) (string, error) {
	c, ok := authn.From(r.Context())
	if !ok || !c.Node() {
		return "", fmt.Errorf("this endpoint is for swarmlet nodes: %w", api.ErrForbidden)
	}
	return c.Name, nil
}
