package node

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/swarmlet/swarmlet/node/client"
	"github.com/swarmlet/swarmlet/node/pki"
)

// This file is the one seam node-to-node traffic goes through: Raft's stream layer
// and the API's listener, both mutual TLS (trust.go), and both tracking their
// connections by peer so that a removed node is cut off at once.

// localDialer dials from the node's advertise address, so firewall rules keyed on
// address pairs can cut one node off from another (DESIGN.md).
func localDialer(advertise string, timeout time.Duration) *net.Dialer {
	return client.Dialer(advertise, timeout)
}

// streamLayer carries Raft traffic: TLS 1.3 with certificates both ways, managers
// only (trust.go, revokedOnRaft).
type streamLayer struct {
	*pki.Listener
	local string
	trust *nodeTrust
}

func (d *Daemon) newStreamLayer(addr string) (*streamLayer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", addr, err)
	}
	t := d.trust
	srv := pki.ServerConfig(t.holder, t.raft, pki.ServerOptions{Roles: managersOnly})
	host, _, _ := net.SplitHostPort(addr)
	return &streamLayer{local: host, trust: t, Listener: pki.NewListener(ln, srv, pki.ListenerOptions{
		OnConn: func(c *tls.Conn) func() { return d.trackConn(c, true) },
		Refused: func(remote net.Addr, err error) {
			d.log.Warn("raft connection refused", "component", "raft-tls", "from", remote.String(), "err", err)
		},
	})}, nil
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	raw, err := localDialer(s.local, timeout).Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, pki.ClientConfig(s.trust.holder, s.trust.raft, pki.ClientOptions{Roles: managersOnly}))
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("raft TLS with %s: %w", addr, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return pki.Track(tc, s.trust.conns.trackRaw(tc, true)), nil
}

// trackConn records c under its peer and returns what to call when it closes.
func (d *Daemon) trackConn(c *tls.Conn, raft bool) func() {
	return d.trust.conns.trackRaw(c, raft)
}

func (s *connSet) trackRaw(c *tls.Conn, raft bool) func() {
	s.add(c, c.ConnectionState(), raft)
	return func() { s.remove(c) }
}

// apiConnState tracks the API's TLS connections (net/http needs the *tls.Conn
// itself, so no wrapper: its connection hook instead).
func (d *Daemon) apiConnState(c net.Conn, state http.ConnState) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return
	}
	switch state {
	case http.StateNew:
		d.trust.conns.add(tc, tc.ConnectionState(), false)
	case http.StateClosed, http.StateHijacked:
		d.trust.conns.remove(tc)
	}
}
