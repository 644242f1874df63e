package node

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/swarmlet/swarmlet/node/client"
)

// This file is the one seam node-to-node traffic goes through: Raft's stream layer
// and the API dialer. Mutual TLS plugs in here (wrap the listener and the dialer).

// localDialer dials from the node's advertise address, so firewall rules keyed on
// address pairs can cut one node off from another (DESIGN.md).
func localDialer(advertise string, timeout time.Duration) *net.Dialer {
	return client.Dialer(advertise, timeout)
}

// streamLayer carries Raft traffic.
type streamLayer struct {
	addr string
	ln   net.Listener
	err  error
}

func newStreamLayer(addr string) (*streamLayer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", addr, err)
	}
	return &streamLayer{addr: addr, ln: ln}, nil
}

func (s *streamLayer) Accept() (net.Conn, error) {
	if s.err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", s.addr, s.err)
	}
	return s.ln.Accept()
}

func (s *streamLayer) Close() error {
	if s.ln == nil {
		return nil
	}
	return s.ln.Close()
}

func (s *streamLayer) Addr() net.Addr {
	if s.ln == nil {
		a, _ := net.ResolveTCPAddr("tcp", s.addr)
		return a
	}
	return s.ln.Addr()
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(s.addr)
	return localDialer(host, timeout).Dial("tcp", string(addr))
}
