package dnsdisco

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// referenceServer serves s's ServeDNS over UDP on a miekg dns.Server, the
// way the server did before it had readers of its own.
func referenceServer(t *testing.T, s *Server) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.ServeDNS), NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return pc.LocalAddr().String()
}

// exchangeRaw sends b to addr and returns the reply, or nil when none came
// within wait.
func exchangeRaw(t *testing.T, addr string, b []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func packQuery(name string, qtype uint16, edit func(*dns.Msg)) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edit != nil {
		edit(m)
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// TestUDPSameAsMiekgServer: over the socket, every kind of packet gets from
// the server the bytes a miekg dns.Server running the same handler sends
// back, or, like it, nothing: fast path, generic path, junk and rejects.
func TestUDPSameAsMiekgServer(t *testing.T) {
	s := startServer(t, Config{}, testTable())
	ref := referenceServer(t, s)
	long := packQuery(strings.Repeat("abcdefghij.", 20)+"swarmlet.", dns.TypeA, func(m *dns.Msg) {
		m.SetEdns0(4096, false)
		m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_PADDING{Padding: make([]byte, 400)}}
	})
	header := func(id, bits, qd, an, ns, ar uint16) []byte {
		b := make([]byte, 12)
		for i, v := range []uint16{id, bits, qd, an, ns, ar} {
			binary.BigEndian.PutUint16(b[2*i:], v)
		}
		return b
	}
	tests := []struct {
		name   string
		pkt    []byte
		silent bool // no reply expected
	}{
		{name: "fast a", pkt: packQuery("web.", dns.TypeA, nil)},
		{name: "fast nxdomain", pkt: packQuery("NoPe.swarmlet.", dns.TypeA, nil)},
		{name: "fast nodata edns", pkt: packQuery("web.swarmlet.", dns.TypeAAAA, func(m *dns.Msg) { m.SetEdns0(1232, true) })},
		{name: "srv one record", pkt: packQuery("rr.swarmlet.", dns.TypeSRV, nil)},
		{name: "apex soa", pkt: packQuery("swarmlet.", dns.TypeSOA, nil)},
		{name: "outside, no upstream", pkt: packQuery("example.org.", dns.TypeA, nil)},
		{name: "edns version 1", pkt: packQuery("web.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) })},
		{name: "chaos", pkt: packQuery("web.", dns.TypeTXT, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })},
		{name: "notify", pkt: packQuery("web.", dns.TypeSOA, func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify })},
		{name: "update", pkt: packQuery("web.", dns.TypeSOA, func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate })},
		{name: "two questions", pkt: packQuery("web.", dns.TypeA, func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) })},
		{name: "longer than 512", pkt: long},
		{name: "text", pkt: []byte("hello, world, this is not DNS")},
		{name: "compression loop", pkt: append(header(0xabcd, 0x0100, 1, 0, 0, 0), 0xc0, 0x0c)},
		{name: "questions missing", pkt: header(0xabcd, 0x0100, 0xffff, 0, 0, 0)},
		{name: "header only", pkt: header(0xabcd, 0x0100, 0, 0, 0, 0)},
		{name: "truncated question", pkt: packQuery("web.", dns.TypeA, nil)[:15]},
		{name: "response", pkt: packQuery("web.", dns.TypeA, func(m *dns.Msg) { m.Response = true }), silent: true},
		{name: "short", pkt: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, silent: true},
	}
	if len(long) <= dns.MinMsgSize {
		t.Fatalf("long query is %d bytes", len(long))
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wait := 5 * time.Second
			if tc.silent {
				wait = 300 * time.Millisecond
			}
			want := exchangeRaw(t, ref, tc.pkt, wait)
			got := exchangeRaw(t, s.Addr(), tc.pkt, wait)
			if (want == nil) != tc.silent {
				t.Fatalf("reference server replied: %v, want %v", want != nil, !tc.silent)
			}
			if !bytes.Equal(got, want) {
				g, w := new(dns.Msg), new(dns.Msg)
				_ = g.Unpack(got)
				_ = w.Unpack(want)
				t.Fatalf("reply differs\ngot  % x\n%v\nwant % x\n%v", got, g, want, w)
			}
		})
	}
}

// TestUDPCloseWaits: Close returns after the readers and the queries in
// flight, and the port is free again.
func TestUDPCloseWaits(t *testing.T) {
	up := silentAddr(t)
	s := New(Config{Addr: "127.0.0.1:0", Upstreams: []string{up}, ForwardTimeout: 300 * time.Millisecond, Logger: testLogger(t)})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A query stuck on a silent upstream is in flight while we close.
	if _, err := c.Write(packQuery("example.org.", dns.TypeA, nil)); err != nil {
		t.Fatal(err)
	}
	if r := query(t, "udp", addr, "web.swarmlet.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("empty table: %v", r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("the query in flight got no answer: %v", err)
	}
	if r := new(dns.Msg); r.Unpack(buf[:n]) != nil || r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("the query in flight got % x, want SERVFAIL", buf[:n])
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("port still taken after Close: %v", err)
	}
	_ = pc.Close()
}

// inNetns runs f on a thread of its own in a new network namespace with
// only its loopback up. The namespace is anonymous: it goes away with the
// sockets in it.
func inNetns(t *testing.T, f func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) to create a network namespace")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return // the thread stays locked and Go discards it
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			errc <- fmt.Errorf("new netns: %w", err)
			return
		}
		defer ns.Close()
		err = func() error {
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(lo); err != nil {
				return err
			}
			return f()
		}()
		if e := netns.Set(orig); e == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestWildcardAddress: on a wildcard address, each reply leaves from the
// address its query came to (a client's connected socket takes no other),
// on the fast path and on the generic one, IPv4 and IPv6.
func TestWildcardAddress(t *testing.T) {
	for _, tc := range []struct{ bind, to1, to2 string }{
		{"0.0.0.0:0", "127.0.0.1", "127.0.0.2"},
		{"[::]:0", "::1", "127.0.0.3"},
	} {
		t.Run(tc.bind, func(t *testing.T) {
			inNetns(t, func() error {
				s := New(Config{Addr: tc.bind, Logger: testLogger(t)})
				s.SetTable(testTable())
				if err := s.Start(); err != nil {
					return err
				}
				defer s.Close()
				_, port, _ := net.SplitHostPort(s.Addr())
				for _, to := range []string{tc.to1, tc.to2} {
					for _, q := range []struct {
						name  string
						qtype uint16
					}{{"web.", dns.TypeA}, {"rr.", dns.TypeSRV}} {
						c := &dns.Client{Timeout: 5 * time.Second}
						m := new(dns.Msg)
						m.SetQuestion(q.name, q.qtype)
						r, _, err := c.Exchange(m, net.JoinHostPort(to, port))
						if err != nil {
							return fmt.Errorf("%s %s via %s: %w", q.name, dns.TypeToString[q.qtype], to, err)
						}
						if len(r.Answer) != 1 {
							return fmt.Errorf("%s %s via %s: %v", q.name, dns.TypeToString[q.qtype], to, r)
						}
					}
				}
				return nil
			})
		})
	}
}
