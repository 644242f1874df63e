package lb

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

// freeAddr returns an unused port on ip (127/8 addresses need no setup).
func freeAddr(t testing.TB, network, ip string) string {
	t.Helper()
	switch network {
	case "udp":
		pc, err := net.ListenPacket("udp", ip+":0")
		if err != nil {
			t.Fatalf("free udp port: %v", err)
		}
		defer pc.Close()
		return pc.LocalAddr().String()
	default:
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatalf("free tcp port: %v", err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
}

// randVIP picks a loopback VIP unlikely to collide with a parallel test run.
func randVIP() string {
	return fmt.Sprintf("127.77.%d.%d", rand.IntN(250)+1, rand.IntN(250)+1)
}

func frontendFor(service, proto, addr string, backends ...string) Frontend {
	t := vipTable("0.0.0.0", 1, backends...)
	h, p, _ := net.SplitHostPort(addr)
	var port int
	fmt.Sscan(p, &port)
	f := t.Frontends[0]
	f.Service, f.Proto, f.IP, f.Port = service, proto, net.ParseIP(h), port
	return f
}

func newUserspaceLB(t *testing.T) Balancer {
	b, err := New(KindUserspace, Config{Logger: testLogger(t), UDPIdleTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("New(userspace): %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestUserspaceTCP(t *testing.T) {
	ctx := context.Background()
	var backends []string
	for i := range 3 {
		s := startIDServer(t, fmt.Sprintf("b%d", i+1), fmt.Sprintf("127.0.0.%d:0", 21+i), func(a string) (net.Listener, error) { return net.Listen("tcp", a) })
		backends = append(backends, s.ln.Addr().String())
	}
	echo := startEcho(t, "127.0.0.24:0")
	echo2 := startEcho(t, "127.0.0.25:0")
	vip := freeAddr(t, "tcp", randVIP())
	echoVIP := freeAddr(t, "tcp", randVIP())
	emptyVIP := freeAddr(t, "tcp", randVIP())
	table := func(web []string, echoBackend string) Table {
		return Table{Frontends: []Frontend{
			frontendFor("web", "tcp", vip, web...),
			frontendFor("echo", "tcp", echoVIP, echoBackend),
			frontendFor("empty", "tcp", emptyVIP),
		}}
	}
	b := newUserspaceLB(t)
	if err := b.Sync(ctx, table(backends, echo)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	const n = 300
	got, err := spread(n, func() (string, error) { return askID(vip) })
	if err != nil {
		t.Fatalf("through the proxy: %v (so far %v)", err, got)
	}
	assertEven(t, got, n, "b1", "b2", "b3")

	if _, err := askID(emptyVIP); err == nil {
		t.Errorf("frontend without backends answered")
	}

	// An established connection survives its backend's removal; new ones go
	// to the remaining backends only.
	old, err := net.Dial("tcp", echoVIP)
	if err != nil {
		t.Fatalf("dial echo: %v", err)
	}
	defer old.Close()
	oldR := bufio.NewReader(old)
	roundTrip := func(c net.Conn, r *bufio.Reader, msg string) (string, error) {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			return "", err
		}
		line, err := r.ReadString('\n')
		return strings.TrimSpace(line), err
	}
	if got, err := roundTrip(old, oldR, "hello"); err != nil || got != echo+" hello" {
		t.Fatalf("echo before removal = %q, %v", got, err)
	}
	if err := b.Sync(ctx, table(backends[:2], echo2)); err != nil {
		t.Fatalf("Sync with removals: %v", err)
	}
	if err := b.Sync(ctx, table(backends[:2], echo2)); err != nil { // idempotent
		t.Fatalf("Sync again: %v", err)
	}
	got, err = spread(100, func() (string, error) { return askID(vip) })
	if err != nil {
		t.Fatalf("after removal: %v", err)
	}
	if got["b3"] != 0 {
		t.Errorf("removed backend got %d new connections: %v", got["b3"], got)
	}
	assertEven(t, got, 100, "b1", "b2")
	if got, err := roundTrip(old, oldR, "still"); err != nil || got != echo+" still" {
		t.Errorf("established connection after its backend's removal = %q, %v; want it to finish normally", got, err)
	}
	c2, err := net.Dial("tcp", echoVIP)
	if err != nil {
		t.Fatalf("dial echo: %v", err)
	}
	defer c2.Close()
	if got, err := roundTrip(c2, bufio.NewReader(c2), "new"); err != nil || got != echo2+" new" {
		t.Errorf("new connection = %q, %v; want the new backend", got, err)
	}

	// Close ends listeners and established connections.
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := roundTrip(old, oldR, "closed?"); err == nil {
		t.Errorf("connection still proxied after Close")
	}
	if c, err := net.Dial("tcp", vip); err == nil {
		c.Close()
		t.Errorf("frontend %s still listening after Close", vip)
	}
}

// startEcho runs a line echo server that prefixes answers with its address.
func startEcho(t testing.TB, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("echo listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	name := ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, name+" "+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return name
}

// startUDPID answers every datagram with its name.
func startUDPID(t testing.TB, name, addr string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("udp listen: %v", err)
	}
	return serveUDPID(t, name, pc)
}

func serveUDPID(t testing.TB, name string, pc net.PacketConn) string {
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(name), from)
		}
	}()
	return pc.LocalAddr().String()
}

func askUDP(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("who")); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return "", fmt.Errorf("udp read from %s: %w", addr, err)
	}
	return string(buf[:n]), nil
}

func TestUserspaceUDP(t *testing.T) {
	ctx := context.Background()
	var backends []string
	for i := range 3 {
		backends = append(backends, startUDPID(t, fmt.Sprintf("u%d", i+1), fmt.Sprintf("127.0.0.%d:0", 31+i)))
	}
	vip := freeAddr(t, "udp", randVIP())
	b := newUserspaceLB(t)
	if err := b.Sync(ctx, Table{Frontends: []Frontend{frontendFor("dns", "udp", vip, backends...)}}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// Each askUDP uses a fresh client socket, so a fresh session.
	got, err := spread(90, func() (string, error) { return askUDP(vip) })
	if err != nil {
		t.Fatalf("udp through the proxy: %v (so far %v)", err, got)
	}
	assertEven(t, got, 90, "u1", "u2", "u3")
	if err := b.Sync(ctx, Table{Frontends: []Frontend{frontendFor("dns", "udp", vip, backends[1:]...)}}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	got, err = spread(30, func() (string, error) { return askUDP(vip) })
	if err != nil {
		t.Fatalf("udp after removal: %v", err)
	}
	if got["u1"] != 0 {
		t.Errorf("removed udp backend got %d sessions: %v", got["u1"], got)
	}
}
