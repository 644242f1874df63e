package dnsdisco

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/swarmlet/swarmlet/internal/testlog"
)

func testLogger(t testing.TB) *slog.Logger { return testlog.New(t) }

// startServer starts a server on a random loopback port and closes it when
// the test ends.
func startServer(t testing.TB, cfg Config, table Table) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s := New(cfg)
	s.SetTable(table)
	if err := s.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

type queryOpt func(*dns.Msg)

func withEDNS(size uint16) queryOpt { return func(m *dns.Msg) { m.SetEdns0(size, false) } }

// query asks addr over network ("udp" or "tcp") and fails the test on a
// transport error. The client never retries over TCP by itself, so a
// truncated UDP answer comes back as it is.
func query(t testing.TB, network, addr, name string, qtype uint16, opts ...queryOpt) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	for _, o := range opts {
		o(m)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: dns.MaxMsgSize}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

// rdata renders records as "TYPE rdata", sorted, so tests compare sets.
func rdata(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		h := rr.Header().String()
		out = append(out, dns.TypeToString[rr.Header().Rrtype]+" "+strings.TrimPrefix(rr.String(), h))
	}
	slices.Sort(out)
	return out
}

// upstream is a fake resolver on loopback. It answers A queries for any name
// with 203.0.113.7 (a documentation address, never contacted), NXDOMAIN for
// names starting with "nx", and records which transports it saw.
type upstream struct {
	addr  string
	mu    sync.Mutex
	nets  []string
	names []string
	ids   []uint16
	rcode int // when non-zero, answer every query with this rcode
}

func startUpstream(t testing.TB, rcode int) *upstream {
	t.Helper()
	pc, l, err := listenBoth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{addr: pc.LocalAddr().String(), rcode: rcode}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		network := "tcp"
		if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
			network = "udp"
		}
		u.mu.Lock()
		u.nets = append(u.nets, network)
		u.names = append(u.names, r.Question[0].Name)
		u.ids = append(u.ids, r.Id)
		u.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		switch {
		case u.rcode != 0:
			m.Rcode = u.rcode
		case strings.HasPrefix(r.Question[0].Name, "nx"):
			m.Rcode = dns.RcodeNameError
		case r.Question[0].Qtype == dns.TypeA:
			rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A 203.0.113.7", r.Question[0].Name))
			m.Answer = []dns.RR{rr}
		}
		_ = w.WriteMsg(m)
	})
	var started sync.WaitGroup
	started.Add(2)
	udp := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: started.Done}
	tcp := &dns.Server{Listener: l, Handler: h, NotifyStartedFunc: started.Done}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	started.Wait()
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
	return u
}

func (u *upstream) seen() (nets, names []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.nets), slices.Clone(u.names)
}

// deadAddr returns a loopback address where nothing listens, on UDP or TCP:
// queries there fail at once with "connection refused".
func deadAddr(t testing.TB) string {
	t.Helper()
	pc, l, err := listenBoth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close()
	_ = l.Close()
	return addr
}

// silentAddr returns a loopback UDP address that reads queries and never
// answers, and a TCP one that accepts and never answers: the timeout case.
func silentAddr(t testing.TB) string {
	t.Helper()
	pc, l, err := listenBoth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = pc.Close()
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return pc.LocalAddr().String()
}
