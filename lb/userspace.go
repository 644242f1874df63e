package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The userspace balancer is a plain TCP and UDP proxy: one listener per
// frontend, new connections spread round-robin over the frontend's current
// backends. It needs no privileges beyond binding the frontend address (any
// 127/8 address binds on Linux without configuration), so it is the fallback
// that always works, and the reference the kernel balancers are measured by.
//
// Backend changes swap the frontend's backend list atomically: new connections
// see the new list at once, established ones run to completion. A removed
// frontend stops listening; its established TCP connections may finish, its
// UDP sessions end with the socket. Close ends everything.
type userspace struct {
	log     *slog.Logger
	udpIdle time.Duration

	mu     sync.Mutex
	fronts map[key]*uFront
	closed bool

	connsMu sync.Mutex
	conns   map[io.Closer]struct{} // every open TCP conn and UDP session, for Close
	wg      sync.WaitGroup
}

type uFront struct {
	key      key
	service  string
	backends atomic.Pointer[[]netip.AddrPort]
	next     atomic.Uint64
	ln       net.Listener   // tcp
	pc       net.PacketConn // udp
	fp       string

	sessMu   sync.Mutex
	sessions map[netip.AddrPort]*udpSession
}

func newUserspace(cfg Config) *userspace {
	idle := cfg.UDPIdleTimeout
	if idle <= 0 {
		idle = 60 * time.Second
	}
	return &userspace{log: cfg.Logger, udpIdle: idle, fronts: map[key]*uFront{}, conns: map[io.Closer]struct{}{}}
}

func (u *userspace) Name() string { return KindUserspace }

func usFingerprint(d desiredFE) string {
	var sb strings.Builder
	sb.WriteString(d.Service)
	for _, be := range d.Backends {
		sb.WriteString("|" + be.String())
	}
	return sb.String()
}

func (u *userspace) Sync(ctx context.Context, t Table) error {
	desired, verr := normalize(t, false)
	verr = errors.Join(verr, onePortOnly(desired))
	if err := ctx.Err(); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return errors.New("userspace balancer: closed")
	}
	cur := make(map[key]string, len(u.fronts))
	for k, f := range u.fronts {
		cur[k] = f.fp
	}
	plan := planFrontends(desired, cur, usFingerprint)
	var errs []error
	for _, k := range plan.Remove {
		u.fronts[k].stop()
		delete(u.fronts, k)
	}
	for _, d := range plan.Update {
		f := u.fronts[d.Key]
		f.setBackends(d)
		f.service, f.fp = d.Service, usFingerprint(d)
	}
	for _, d := range plan.Add {
		f, err := u.start(d)
		if err != nil {
			// Not recorded, so the next Sync tries again.
			errs = append(errs, fmt.Errorf("userspace: frontend %s %s: %w", d.Service, d.Key, err))
			continue
		}
		u.fronts[d.Key] = f
	}
	if !plan.empty() {
		u.log.Info("userspace synced", "frontends", len(u.fronts), "added", len(plan.Add), "updated", len(plan.Update), "removed", len(plan.Remove), "failed", len(errs))
	}
	return errors.Join(append(errs, verr)...)
}

// reusePort lets several nodes sharing one host (a cluster on 127.0.0.x) each serve
// the same VIP: the kernel spreads new connections over their listeners, and every
// one of them balances over the same backends.
var reusePort = net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}}

func (u *userspace) start(d desiredFE) (*uFront, error) {
	f := &uFront{key: d.Key, service: d.Service, fp: usFingerprint(d), sessions: map[netip.AddrPort]*udpSession{}}
	bs := slices.Clone(d.Backends)
	f.backends.Store(&bs)
	addr := netip.AddrPortFrom(d.Key.Addr, d.Key.Port).String()
	switch d.Key.Proto {
	case "tcp":
		ln, err := reusePort.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		f.ln = ln
		u.wg.Go(func() { u.acceptLoop(f) })
	case "udp":
		pc, err := reusePort.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		f.pc = pc
		u.wg.Go(func() { u.udpLoop(f) })
	}
	return f, nil
}

func (f *uFront) setBackends(d desiredFE) {
	bs := slices.Clone(d.Backends)
	f.backends.Store(&bs)
	// UDP has no connection end: a session pinned to a removed backend would
	// keep sending there for as long as the client talks, so end it now and
	// let the client's next datagram pick a live backend.
	f.sessMu.Lock()
	defer f.sessMu.Unlock()
	for client, s := range f.sessions {
		if !slices.Contains(bs, s.backend) {
			s.conn.Close()
			delete(f.sessions, client)
		}
	}
}

func (f *uFront) stop() {
	if f.ln != nil {
		f.ln.Close()
	}
	if f.pc != nil {
		f.pc.Close()
	}
}

// pick returns the backends to try, round-robin start first.
func (f *uFront) pick() []netip.AddrPort {
	bs := *f.backends.Load()
	if len(bs) == 0 {
		return nil
	}
	i := int(f.next.Add(1)-1) % len(bs)
	return append(slices.Clone(bs[i:]), bs[:i]...)
}

func (u *userspace) track(c io.Closer) bool {
	u.connsMu.Lock()
	defer u.connsMu.Unlock()
	if u.conns == nil {
		return false
	}
	u.conns[c] = struct{}{}
	return true
}

func (u *userspace) untrack(c io.Closer) {
	u.connsMu.Lock()
	defer u.connsMu.Unlock()
	delete(u.conns, c)
}

func (u *userspace) acceptLoop(f *uFront) {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.log.Warn("accept failed", "frontend", f.key.String(), "err", err)
			time.Sleep(10 * time.Millisecond) // EMFILE and friends: don't spin
			continue
		}
		if !u.track(c) {
			c.Close()
			return
		}
		u.wg.Go(func() {
			defer u.untrack(c)
			u.proxyTCP(f, c.(*net.TCPConn))
		})
	}
}

// dialTimeout bounds a connect to one backend before trying the next.
const dialTimeout = 2 * time.Second

func (u *userspace) proxyTCP(f *uFront, client *net.TCPConn) {
	defer client.Close()
	var be *net.TCPConn
	for _, b := range f.pick() {
		c, err := net.DialTimeout("tcp", b.String(), dialTimeout)
		if err != nil {
			// Unlike the kernel balancers the proxy can skip a dead backend
			// before the orchestrator notices it is gone.
			u.log.Debug("backend dial failed", "frontend", f.key.String(), "backend", b.String(), "err", err)
			continue
		}
		be = c.(*net.TCPConn)
		break
	}
	if be == nil {
		// No backend: reset rather than accept-and-hang, like the kernel
		// balancers' reject.
		client.SetLinger(0)
		return
	}
	if !u.track(be) {
		be.Close()
		return
	}
	defer u.untrack(be)
	defer be.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// io.Copy between TCP conns uses splice(2): no copy through userspace.
		io.Copy(be, client)
		be.CloseWrite()
	}()
	io.Copy(client, be)
	client.CloseWrite()
	<-done
}

type udpSession struct {
	backend netip.AddrPort
	conn    *net.UDPConn
	last    atomic.Int64 // unix nanos of the last datagram either way
}

func (u *userspace) udpLoop(f *uFront) {
	buf := make([]byte, 64*1024)
	for {
		n, from, err := f.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				f.sessMu.Lock()
				for _, s := range f.sessions {
					s.conn.Close()
				}
				f.sessMu.Unlock()
				return
			}
			u.log.Warn("udp read failed", "frontend", f.key.String(), "err", err)
			continue
		}
		client := from.(*net.UDPAddr).AddrPort()
		s := u.udpSessionFor(f, client)
		if s == nil {
			continue // no backend: drop, as the kernel would after ICMP
		}
		s.last.Store(time.Now().UnixNano())
		if _, err := s.conn.Write(buf[:n]); err != nil {
			u.log.Debug("udp write to backend failed", "backend", s.backend.String(), "err", err)
		}
	}
}

func (u *userspace) udpSessionFor(f *uFront, client netip.AddrPort) *udpSession {
	f.sessMu.Lock()
	defer f.sessMu.Unlock()
	if s, ok := f.sessions[client]; ok {
		return s
	}
	for _, b := range f.pick() {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(b))
		if err != nil {
			continue
		}
		s := &udpSession{backend: b, conn: c}
		s.last.Store(time.Now().UnixNano())
		if !u.track(c) {
			c.Close()
			return nil
		}
		f.sessions[client] = s
		u.wg.Go(func() { u.udpReplies(f, client, s) })
		return s
	}
	return nil
}

// udpReplies relays a backend's datagrams to the client until the session has
// been idle for udpIdle in both directions, or is closed.
func (u *userspace) udpReplies(f *uFront, client netip.AddrPort, s *udpSession) {
	defer u.untrack(s.conn)
	defer func() {
		f.sessMu.Lock()
		if f.sessions[client] == s {
			delete(f.sessions, client)
		}
		f.sessMu.Unlock()
		s.conn.Close()
	}()
	buf := make([]byte, 64*1024)
	dst := net.UDPAddrFromAddrPort(client)
	for {
		s.conn.SetReadDeadline(time.Unix(0, s.last.Load()).Add(u.udpIdle))
		n, err := s.conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, s.last.Load())) < u.udpIdle {
				continue // the client spoke meanwhile: extend
			}
			return
		}
		s.last.Store(time.Now().UnixNano())
		if _, err := f.pc.WriteTo(buf[:n], dst); err != nil {
			return
		}
	}
}

// Close stops every listener and closes every proxied connection.
func (u *userspace) Close() error {
	u.mu.Lock()
	u.closed = true
	for k, f := range u.fronts {
		f.stop()
		delete(u.fronts, k)
	}
	u.mu.Unlock()
	u.connsMu.Lock()
	for c := range u.conns {
		c.Close()
	}
	u.conns = nil
	u.connsMu.Unlock()
	u.wg.Wait()
	return nil
}
