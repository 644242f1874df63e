package pki

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// Listener completes each TLS handshake before Accept returns the connection, with
// a deadline and off the accept path. A server behind it never sees a client that
// failed the handshake (no certificate, another CA, plaintext): such a client gets
// a TLS alert or a closed connection, never an answer, and a client that connects
// and says nothing ties up nothing but its own goroutine for the deadline.
type Listener struct {
	inner    net.Listener
	cfg      *tls.Config
	opt      ListenerOptions
	accepted chan net.Conn
	done     chan struct{}
	once     sync.Once
}

// ListenerOptions tune a Listener.
type ListenerOptions struct {
	// HandshakeTimeout bounds a handshake (0: 5 s).
	HandshakeTimeout time.Duration
	// OnConn, if set, learns of every accepted connection and returns what to call
	// when it closes; Accept then returns a wrapper of the *tls.Conn (fine for raft,
	// not for net/http, which needs the *tls.Conn itself: use its ConnState hook).
	OnConn func(*tls.Conn) (closed func())
	// Refused, if set, hears of each failed handshake.
	Refused func(remote net.Addr, err error)
}

// NewListener serves TLS with cfg on inner.
func NewListener(inner net.Listener, cfg *tls.Config, opt ListenerOptions) *Listener {
	if opt.HandshakeTimeout == 0 {
		opt.HandshakeTimeout = 5 * time.Second
	}
	l := &Listener{inner: inner, cfg: cfg, opt: opt, accepted: make(chan net.Conn), done: make(chan struct{})}
	go l.loop()
	return l
}

func (l *Listener) loop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.Close()
			return
		}
		go l.handshake(c)
	}
}

func (l *Listener) handshake(c net.Conn) {
	tc := tls.Server(c, l.cfg)
	_ = tc.SetDeadline(time.Now().Add(l.opt.HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		if l.opt.Refused != nil {
			l.opt.Refused(c.RemoteAddr(), err)
		}
		c.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	var out net.Conn = tc
	if l.opt.OnConn != nil {
		out = Track(tc, l.opt.OnConn(tc))
	}
	select {
	case l.accepted <- out:
	case <-l.done:
		out.Close()
	}
}

// Accept returns the next connection whose handshake succeeded.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.inner.Close()
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Track wraps c so that closed runs once when it is closed.
func Track(c *tls.Conn, closed func()) net.Conn {
	return &trackedConn{Conn: c, closed: closed}
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
