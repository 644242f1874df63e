package dnsdisco

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults for the zero values of Config.
const (
	DefaultZone           = "swarmlet."
	DefaultTTL            = 5
	DefaultForwardTimeout = 2 * time.Second
)

// ErrClosed is returned by Start on a server that was closed.
var ErrClosed = errors.New("dnsdisco: server closed")

// Config configures a Server. Only Addr is required.
type Config struct {
	Addr      string   // "ip:port" to listen on, UDP and TCP
	Zone      string   // cluster zone suffix, default "swarmlet."
	Upstreams []string // "ip:port" resolvers for names outside the zone
	TTL       uint32   // default 5 seconds
	Logger    *slog.Logger

	// ForwardTimeout bounds one try at one upstream; default 2s. It is short
	// because a client's own resolver retries after about 5s, and we want to
	// have tried the next upstream by then.
	ForwardTimeout time.Duration

	// Observe, if set, is told of each query answered: its type and the kind of
	// answer (metrics). It must be cheap.
	Observe func(qtype, kind string)
	// RecursionFrom, if not nil, limits forwarding to clients whose source
	// address is in one of these prefixes; others get REFUSED for names
	// outside the zone (the zone itself is answered to anyone). A node's DNS
	// listens on its advertise address, which anyone on the network can
	// reach: without a limit it would be an open resolver. Nil forwards for
	// everyone. SetRecursionFrom replaces it.
	RecursionFrom []netip.Prefix
}

// Server is a DNS server answering cluster names from a Table and forwarding
// everything else to upstream resolvers.
type Server struct {
	cfg       Config
	zone      string // canonical: lower case, fully qualified
	zoneErr   error
	wire      soaNames // the zone's SOA names packed, for the fast path
	log       *slog.Logger
	upstreams []string

	table  atomic.Pointer[index]
	serial atomic.Uint32
	nsGlue atomic.Pointer[entry] // records of the server's own name (nsLabel)

	lastFailWarn atomic.Int64 // unix nanos of the last "all upstreams failed" warning

	recursion atomic.Pointer[[]netip.Prefix] // nil: everyone

	mu     sync.Mutex
	closed bool
	main   *listener // on Config.Addr, once started
	addr   string
	extra  map[string]*listener // Listen's, by requested address
}

// listener is one address the server answers on, over UDP and TCP.
type listener struct {
	udp  *udpServer
	tcp  *dns.Server
	done chan struct{} // closed when the TCP serve loop has returned
	addr string        // bound
}

// New returns a server that is not yet listening. It answers from an empty
// table until SetTable is called.
func New(cfg Config) *Server {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		log:       log, // the caller owns the component key
		upstreams: append([]string(nil), cfg.Upstreams...),
		addr:      cfg.Addr,
	}
	s.zone, s.zoneErr = canonicalZone(cfg.Zone)
	if s.zoneErr == nil {
		s.wire = newSOANames(s.zone)
	}
	s.nsGlue.Store(selfEntry(cfg.Addr))
	if cfg.RecursionFrom != nil {
		s.SetRecursionFrom(cfg.RecursionFrom)
	}
	s.SetTable(Table{})
	return s
}

// canonicalZone validates the zone. The root zone is refused: it would make
// every name ours and nothing would ever be forwarded.
func canonicalZone(z string) (string, error) {
	if z == "" {
		z = DefaultZone
	}
	z = strings.ToLower(dns.Fqdn(z))
	if z == "." {
		return "", fmt.Errorf("dnsdisco: zone %q: the root zone cannot be the cluster zone", z)
	}
	if _, ok := dns.IsDomainName(z); !ok {
		return "", fmt.Errorf("dnsdisco: zone %q is not a domain name", z)
	}
	return z, nil
}

// SetTable replaces the record table. Queries already running finish with
// the old table; the next query sees the new one.
func (s *Server) SetTable(t Table) {
	serial := s.serial.Add(1)
	ix := buildIndex(t, s.zone, serial, s.cfg.TTL, s.log)
	s.table.Store(ix)
}

// Start binds UDP and TCP on Config.Addr and returns once both are serving.
// With port 0 both transports share the port the kernel gave UDP.
func (s *Server) Start() error {
	if s.zoneErr != nil {
		return s.zoneErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.main != nil {
		return errors.New("dnsdisco: server already started")
	}
	pc, l, err := listenBoth(s.cfg.Addr)
	if err != nil {
		return err
	}
	// Before the first query: the reply to a query from ourselves must
	// not be forwarded back to us.
	s.upstreams = withoutSelf(s.upstreams, pc.LocalAddr().String(), s.log)
	ln, err := s.serve(pc, l)
	if err != nil {
		return err
	}
	s.main, s.addr = ln, ln.addr
	// The NS glue record carries the bound address, known only now.
	s.nsGlue.Store(selfEntry(s.addr))
	s.log.Info("dns server listening", "addr", s.addr, "zone", s.zone, "upstreams", s.upstreams)
	return nil
}

// serve answers on the bound sockets, UDP on our own readers (udp.go) and
// TCP on a miekg server, and returns once both are serving. On failure both
// sockets are closed.
func (s *Server) serve(pc net.PacketConn, l net.Listener) (*listener, error) {
	udp, err := serveUDP(s, pc)
	if err != nil {
		_ = pc.Close()
		_ = l.Close()
		return nil, fmt.Errorf("dnsdisco: serve udp on %s: %w", pc.LocalAddr(), err)
	}
	started := make(chan struct{})
	ln := &listener{
		udp: udp,
		tcp: &dns.Server{Listener: l, Handler: dns.HandlerFunc(s.ServeDNS), NotifyStartedFunc: func() { close(started) },
			// Idle TCP clients must not pin goroutines forever; busy ones may
			// keep their connection (miekg closes after 128 queries by default,
			// which costs a stub resolver that pipelines a reconnect).
			IdleTimeout:   func() time.Duration { return 10 * time.Second },
			MaxTCPQueries: -1},
		done: make(chan struct{}),
		addr: pc.LocalAddr().String(),
	}
	errc := make(chan error, 1)
	go func() {
		defer close(ln.done)
		if err := ln.tcp.ActivateAndServe(); err != nil {
			errc <- err
		}
	}()
	select {
	case <-started:
		return ln, nil
	case err := <-errc:
		// TCP failed before serving: take UDP down too.
		_ = udp.close()
		_ = l.Close()
		return nil, fmt.Errorf("dnsdisco: serve on %s: %w", ln.addr, err)
	}
}

// selfEntry is the address entry of the server's own name, empty when it
// listens on a wildcard address and so has no one address to give.
func selfEntry(addr string) *entry {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return &entry{}
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return &entry{}
	}
	return addrEntry([]net.IP{ip})
}

// listenBoth binds UDP first and then TCP on the same port. When the port was
// 0 the TCP port may be taken by someone else, so it retries with a new one.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnsdisco: listen address %q: %w", addr, err)
	}
	tries := 1
	if port == "0" {
		tries = 10
	}
	var lastErr error
	for range tries {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnsdisco: listen udp %s: %w", addr, err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		_ = pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("dnsdisco: listen tcp %s: %w", addr, lastErr)
}

// Close stops every listener and waits for the queries in flight. It is
// safe to call more than once and on a server never started.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	lns := []*listener{s.main}
	for _, l := range s.extra {
		lns = append(lns, l)
	}
	s.extra = nil
	s.mu.Unlock()
	var errs []error
	for _, l := range lns {
		if l != nil {
			errs = append(errs, l.close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dnsdisco: close: %w", err)
	}
	return nil
}

// Listen makes the server answer on addr too ("ip:port", UDP and TCP), as it
// does on Config.Addr: a node's DNS also listens on its container network's
// gateway, where its containers are pointed. Listening again on the same
// address does nothing. The server must have been started. It returns the
// bound address (the real port when addr asked for port 0).
func (s *Server) Listen(addr string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", ErrClosed
	}
	if s.main == nil {
		return "", errors.New("dnsdisco: Listen before Start")
	}
	if ln, ok := s.extra[addr]; ok {
		return ln.addr, nil
	}
	pc, l, err := listenBoth(addr)
	if err != nil {
		return "", err
	}
	ln, err := s.serve(pc, l)
	if err != nil {
		return "", err
	}
	if s.extra == nil {
		s.extra = map[string]*listener{}
	}
	s.extra[addr] = ln
	s.log.Info("dns server listening", "addr", ln.addr)
	return ln.addr, nil
}

// Unlisten stops answering on an address given to Listen; an unknown address
// is no error.
func (s *Server) Unlisten(addr string) error {
	s.mu.Lock()
	ln := s.extra[addr]
	delete(s.extra, addr)
	s.mu.Unlock()
	if ln == nil {
		return nil
	}
	return ln.close()
}

func (l *listener) close() error {
	err := errors.Join(l.udp.close(), l.tcp.Shutdown())
	<-l.done
	return err
}

// SetRecursionFrom replaces Config.RecursionFrom (nil: everyone).
func (s *Server) SetRecursionFrom(prefixes []netip.Prefix) {
	if prefixes == nil {
		s.recursion.Store(nil)
		return
	}
	p := slices.Clone(prefixes)
	s.recursion.Store(&p)
}

// mayRecurse says whether a client at remote may have names outside the zone
// forwarded.
func (s *Server) mayRecurse(remote net.Addr) bool {
	allow := s.recursion.Load()
	if allow == nil {
		return true
	}
	var ip net.IP
	switch a := remote.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	default:
		return false
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	addr = addr.Unmap()
	for _, p := range *allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Addr is the bound address once Start has returned (the real port when
// Config.Addr asked for port 0), and Config.Addr before that.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// withoutSelf drops upstreams that are this server: forwarding to ourselves
// would loop until every try timed out.
func withoutSelf(ups []string, self string, log *slog.Logger) []string {
	out := ups[:0:0]
	for _, u := range ups {
		if isSelf(u, self) {
			log.Warn("ignoring upstream that is this server itself", "upstream", u)
			continue
		}
		out = append(out, u)
	}
	return out
}

// isSelf reports whether upstream addresses the server listening on self.
// A server on a wildcard address is reached through every local address.
func isSelf(upstream, self string) bool {
	uh, up, err := net.SplitHostPort(upstream)
	if err != nil {
		return false
	}
	sh, sp, err := net.SplitHostPort(self)
	if err != nil || up != sp {
		return false
	}
	uip, sip := net.ParseIP(uh), net.ParseIP(sh)
	if uip == nil || sip == nil {
		return false
	}
	if uip.Equal(sip) {
		return true
	}
	if !sip.IsUnspecified() {
		return false
	}
	if uip.IsLoopback() || uip.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(uip) {
			return true
		}
	}
	return false
}
