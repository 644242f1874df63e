package raftstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// TLSStream is a raft.StreamLayer that speaks TLS both ways: the daemon passes the
// server config (which verifies callers) and a client config per dial (which
// verifies the callee). It knows nothing of certificates itself.
//
// Accept hands raft only connections whose handshake has completed, so a peer that
// connects and says nothing (or shows no certificate) never reaches raft and ties
// up no raft goroutine: handshakes run here, each bounded by a deadline.
type TLSStream struct {
	ln        net.Listener
	server    *tls.Config
	client    func() *tls.Config
	local     net.IP
	onConn    func(*tls.Conn) func()
	handshake time.Duration
	log       func(msg string, args ...any)

	accepted chan net.Conn
	done     chan struct{}
	once     sync.Once
}

// TLSStreamConfig configures NewTLSStream.
type TLSStreamConfig struct {
	Addr   string      // ip:port to listen on; dials leave from the same IP
	Server *tls.Config // must require and verify client certificates
	// Client returns the config for one dial (called per dial, so certificate and
	// roots are current).
	Client func() *tls.Config
	// OnConn, if set, is told of every established connection (both directions)
	// and returns a function called when it closes: the daemon tracks connections
	// by peer so that it can cut off a removed node.
	OnConn func(*tls.Conn) (closed func())
	// Log reports refused handshakes (nil: silent).
	Log func(msg string, args ...any)
}

// NewTLSStream listens on cfg.Addr.
func NewTLSStream(cfg TLSStreamConfig) (*TLSStream, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", cfg.Addr, err)
	}
	s := &TLSStream{ln: ln, server: cfg.Server, client: cfg.Client, local: ln.Addr().(*net.TCPAddr).IP,
		onConn: cfg.OnConn, handshake: 5 * time.Second, log: cfg.Log,
		accepted: make(chan net.Conn), done: make(chan struct{})}
	if s.log == nil {
		s.log = func(string, ...any) {}
	}
	go s.acceptLoop()
	return s, nil
}

func (s *TLSStream) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.Close()
			return
		}
		go s.serverHandshake(c)
	}
}

func (s *TLSStream) serverHandshake(c net.Conn) {
	tc := tls.Server(c, s.server)
	_ = tc.SetDeadline(time.Now().Add(s.handshake))
	if err := tc.Handshake(); err != nil {
		s.log("raft connection refused", "from", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	conn := s.track(tc)
	select {
	case s.accepted <- conn:
	case <-s.done:
		conn.Close()
	}
}

// Accept implements net.Listener.
func (s *TLSStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.accepted:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (s *TLSStream) Close() error {
	s.once.Do(func() { close(s.done) })
	return s.ln.Close()
}

// Addr implements net.Listener.
func (s *TLSStream) Addr() net.Addr { return s.ln.Addr() }

// Dial implements raft.StreamLayer: from the listening IP, handshake included in
// the timeout.
func (s *TLSStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: s.local}}
	c, err := d.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, s.client())
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("raft TLS handshake with %s: %w", addr, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return s.track(tc), nil
}

func (s *TLSStream) track(tc *tls.Conn) net.Conn {
	if s.onConn == nil {
		return tc
	}
	return &trackedConn{Conn: tc, closed: s.onConn(tc)}
}

type trackedConn struct {
	*tls.Conn
	once   sync.Once
	closed func()
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		if c.closed != nil {
			c.closed()
		}
	})
	return c.Conn.Close()
}
