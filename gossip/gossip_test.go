package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/internal/testlog"
)

// tLogWriter sends logs to t.Log and drops them once the test is over:
// memberlist goroutines can still log a moment after Shutdown, and t.Log
// after the test has finished panics.
// testLogger logs at info, or at debug (memberlist's own chatter included)
// with TESTLOG_LEVEL=debug.
func testLogger(t testing.TB) *slog.Logger { return testlog.New(t, slog.LevelInfo) }

// start starts a member on ip (port 0 unless cfg says otherwise) and shuts it
// down when the test ends.
func start(t testing.TB, name, ip string, mod func(*Config)) *Gossip {
	t.Helper()
	cfg := Config{Name: name, BindAddr: ip, Meta: map[string]string{"role": "worker", "name": name}, Logger: testLogger(t)}
	if mod != nil {
		mod(&cfg)
	}
	g, err := Start(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	return g
}

func addrOf(g *Gossip) string {
	ip, port := g.LocalAddr()
	return net.JoinHostPort(ip, fmt.Sprint(port))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		<-tick.C
	}
}

// waitEvent reads g's events until one of kind about node arrives, and
// returns the events read before it.
func waitEvent(t testing.TB, g *Gossip, d time.Duration, kind EventKind, node string) []Event {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	var before []Event
	for {
		select {
		case ev, ok := <-g.Events():
			if !ok {
				t.Fatalf("%s: events closed while waiting for %s of %s", g.LocalName(), kind, node)
			}
			if ev.Kind == kind && ev.Member.Name == node {
				return before
			}
			before = append(before, ev)
		case <-timer.C:
			t.Fatalf("%s: no %s event for %s within %s (saw %v)", g.LocalName(), kind, node, d, before)
		}
	}
}

func names(ms []Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// cluster starts n members on 127.77.<subnet>.1..n, joins them through the
// first and waits until every one sees all n.
func cluster(t testing.TB, subnet, n int) []*Gossip {
	t.Helper()
	gs := make([]*Gossip, n)
	for i := range gs {
		gs[i] = start(t, fmt.Sprintf("n%d", i+1), fmt.Sprintf("127.77.%d.%d", subnet, i+1), nil)
	}
	for _, g := range gs[1:] {
		if c, err := g.Join([]string{addrOf(gs[0])}); err != nil || c != 1 {
			t.Fatalf("%s join: contacted %d, %v", g.LocalName(), c, err)
		}
	}
	for _, g := range gs {
		waitFor(t, 5*time.Second, g.LocalName()+" to see all members", func() bool { return g.NumAlive() == n })
	}
	return gs
}

func TestJoinSeesMembersWithMeta(t *testing.T) {
	gs := cluster(t, 1, 3)
	for _, g := range gs {
		ms := g.Members()
		if got := names(ms); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
			t.Fatalf("%s members = %v", g.LocalName(), got)
		}
		for i, m := range ms {
			want := map[string]string{"role": "worker", "name": m.Name}
			if !maps.Equal(m.Meta, want) || m.State != Alive || m.Addr != fmt.Sprintf("127.77.1.%d", i+1) || m.Port == 0 {
				t.Errorf("%s sees %+v", g.LocalName(), m)
			}
		}
	}
	// Every node saw a join event for every member, itself included.
	for _, g := range gs {
		seen := map[string]bool{}
		waitFor(t, 2*time.Second, g.LocalName()+" join events", func() bool {
			select {
			case ev := <-g.Events():
				if ev.Kind == EventJoin {
					seen[ev.Member.Name] = true
				}
			default:
			}
			return len(seen) == 3
		})
	}
}

func TestUpdateMetaPropagates(t *testing.T) {
	gs := cluster(t, 2, 3)
	want := map[string]string{"role": "manager", "zone": "b"}
	if err := gs[2].UpdateMeta(want); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, gs[0], 5*time.Second, EventUpdate, "n3")
	for _, g := range gs {
		waitFor(t, 5*time.Second, g.LocalName()+" to see n3's new meta", func() bool {
			for _, m := range g.Members() {
				if m.Name == "n3" {
					return maps.Equal(m.Meta, want)
				}
			}
			return false
		})
	}
}

func TestShutdownIsFailure(t *testing.T) {
	gs := cluster(t, 3, 3)
	start := time.Now()
	if err := gs[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, g := range gs[:2] {
		before := waitEvent(t, g, 8*time.Second, EventFail, "n3")
		for _, ev := range before {
			if ev.Kind == EventLeave && ev.Member.Name == "n3" {
				t.Errorf("%s saw a leave for n3 before the failure", g.LocalName())
			}
		}
		t.Logf("%s: n3 failed after %s", g.LocalName(), time.Since(start).Round(time.Millisecond))
		if got := names(g.Members()); !slices.Equal(got, []string{"n1", "n2"}) {
			t.Errorf("%s members = %v", g.LocalName(), got)
		}
		all := g.AllMembers()
		if len(all) != 3 || all[2].Name != "n3" || all[2].State != Dead {
			t.Errorf("%s all members = %+v", g.LocalName(), all)
		}
	}
}

func TestLeaveIsNotFailure(t *testing.T) {
	gs := cluster(t, 4, 3)
	if err := gs[2].Leave(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, gs[2], time.Second, EventLeave, "n3") // its own view
	if err := gs[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, g := range gs[:2] {
		before := waitEvent(t, g, 5*time.Second, EventLeave, "n3")
		for _, ev := range before {
			if ev.Kind == EventFail {
				t.Errorf("%s saw a failure before n3's leave: %+v", g.LocalName(), ev)
			}
		}
		all := g.AllMembers()
		if len(all) != 3 || all[2].State != Left || g.NumAlive() != 2 {
			t.Errorf("%s all members = %+v", g.LocalName(), all)
		}
	}
}

// A node restarted with the same name and address comes back with an
// EventJoin, after a failure and after a leave.
func TestRejoinAfterFailAndLeave(t *testing.T) {
	gs := cluster(t, 5, 3)
	_, port := gs[2].LocalAddr()
	restart := func() *Gossip {
		g := start(t, "n3", "127.77.5.3", func(c *Config) { c.BindPort = port })
		if _, err := g.Join([]string{addrOf(gs[0])}); err != nil {
			t.Fatal(err)
		}
		return g
	}

	_ = gs[2].Shutdown()
	waitEvent(t, gs[0], 8*time.Second, EventFail, "n3")
	n3 := restart()
	for _, g := range gs[:2] {
		waitEvent(t, g, 8*time.Second, EventJoin, "n3")
	}
	waitFor(t, 5*time.Second, "n3 to see everyone again", func() bool { return n3.NumAlive() == 3 })

	if err := n3.Leave(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	_ = n3.Shutdown()
	waitEvent(t, gs[0], 5*time.Second, EventLeave, "n3")
	restart()
	waitEvent(t, gs[0], 8*time.Second, EventJoin, "n3")
	waitFor(t, 5*time.Second, "n1 to see 3 members", func() bool { return gs[0].NumAlive() == 3 })
}

func TestMetaTooBig(t *testing.T) {
	big := map[string]string{"k": strings.Repeat("x", 600)}
	_, err := Start(Config{Name: "a", BindAddr: "127.77.6.1", Meta: big})
	if !errors.Is(err, ErrMetaTooBig) {
		t.Fatalf("Start with big meta: %v, want ErrMetaTooBig", err)
	}
	g := start(t, "a", "127.77.6.1", nil)
	if err := g.UpdateMeta(big); !errors.Is(err, ErrMetaTooBig) {
		t.Fatalf("UpdateMeta with big meta: %v, want ErrMetaTooBig", err)
	}
	if m := g.Members()[0].Meta; m["role"] != "worker" {
		t.Fatalf("meta changed after a refused update: %v", m)
	}
}

func TestEncryption(t *testing.T) {
	key1 := []byte("0123456789abcdef")
	key2 := []byte("fedcba9876543210")
	withKey := func(k []byte) func(*Config) { return func(c *Config) { c.SecretKey = k } }
	a := start(t, "a", "127.77.7.1", withKey(key1))

	for _, tc := range []struct {
		name string
		key  []byte
	}{{"other key", key2}, {"no key", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			b := start(t, "b-"+strings.ReplaceAll(tc.name, " ", ""), "127.77.7.2", withKey(tc.key))
			n, err := b.Join([]string{addrOf(a)})
			if err == nil || n != 0 {
				t.Fatalf("join with %s: contacted %d, err %v; want failure", tc.name, n, err)
			}
			if !strings.Contains(err.Error(), addrOf(a)) {
				t.Errorf("join error does not name the address: %v", err)
			}
		})
	}

	c := start(t, "c", "127.77.7.3", withKey(key1))
	if _, err := c.Join([]string{addrOf(a)}); err != nil {
		t.Fatalf("join with the same key: %v", err)
	}
	waitFor(t, 5*time.Second, "a and c to see each other", func() bool { return a.NumAlive() == 2 && c.NumAlive() == 2 })
}

// Outgoing TCP (join, push/pull, fallback pings) must leave from the bind
// address, not from whatever source the kernel would pick (127.0.0.1).
func TestDialsFromBindAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.77.8.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	g := start(t, "b", "127.77.8.2", nil)
	joined := make(chan error, 1)
	go func() { _, err := g.Join([]string{ln.Addr().String()}); joined <- err }()

	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	remote := conn.RemoteAddr().(*net.TCPAddr)
	conn.Close()
	if got := remote.IP.String(); got != "127.77.8.2" {
		t.Errorf("join dialled from %s, want 127.77.8.2", got)
	}
	if err := <-joined; err == nil {
		t.Error("join to a non-memberlist listener succeeded")
	}
}

// Probes of a member that stopped (UDP pings, then TCP fallback pings) leave
// from the prober's bind address: take over the dead member's address and
// port and look at where the probes come from.
func TestProbesFromBindAddr(t *testing.T) {
	a := start(t, "a", "127.77.9.1", nil)
	b := start(t, "b", "127.77.9.2", nil)
	if _, err := b.Join([]string{addrOf(a)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a and b to see each other", func() bool { return a.NumAlive() == 2 && b.NumAlive() == 2 })
	aAddr := addrOf(a)
	_ = a.Shutdown()

	udp, err := net.ListenPacket("udp", aAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp", aAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()

	_ = udp.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	_, from, err := udp.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no UDP probe: %v", err)
	}
	if from.String() != addrOf(b) {
		t.Errorf("UDP probe from %s, want %s", from, addrOf(b))
	}

	_ = tcp.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	conn, err := tcp.Accept()
	if err != nil {
		t.Fatalf("no TCP fallback probe: %v", err)
	}
	defer conn.Close()
	if ip := conn.RemoteAddr().(*net.TCPAddr).IP.String(); ip != "127.77.9.2" {
		t.Errorf("TCP fallback probe from %s, want 127.77.9.2", ip)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no name", Config{BindAddr: "127.77.10.1"}, "Name"},
		{"no addr", Config{Name: "a"}, "BindAddr"},
		{"wildcard addr", Config{Name: "a", BindAddr: "0.0.0.0"}, "BindAddr"},
		{"bad port", Config{Name: "a", BindAddr: "127.77.10.1", BindPort: 70000}, "BindPort"},
		{"bad key", Config{Name: "a", BindAddr: "127.77.10.1", SecretKey: []byte("short")}, "key"},
		{"probe timeout", Config{Name: "a", BindAddr: "127.77.10.1", ProbeTimeout: time.Second}, "ProbeTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := Start(tc.cfg)
			if err == nil {
				_ = g.Shutdown()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestJoinErrorNamesAddresses(t *testing.T) {
	g := start(t, "a", "127.77.11.1", nil)
	// A port nobody listens on: bind and close a listener to find one.
	ln, err := net.Listen("tcp", "127.77.11.2:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	n, err := g.Join([]string{dead})
	if err == nil || n != 0 || !strings.Contains(err.Error(), dead) {
		t.Fatalf("join %s: contacted %d, err %v", dead, n, err)
	}
	if _, err := g.Join(nil); err == nil {
		t.Fatal("join with no addresses succeeded")
	}
}

func TestShutdownClosesEventsAndIsIdempotent(t *testing.T) {
	g := start(t, "a", "127.77.12.1", nil)
	if err := g.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := g.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for range g.Events() { // drains the self-join, then ends
	}
	if err := g.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Leave after Shutdown: %v", err)
	}
	if err := g.UpdateMeta(nil); !errors.Is(err, ErrShutdown) {
		t.Fatalf("UpdateMeta after Shutdown: %v", err)
	}
}

func TestEmitNeverBlocks(t *testing.T) {
	g := &Gossip{events: make(chan Event, EventBuffer), log: slog.New(slog.DiscardHandler)}
	for i := range EventBuffer + 10 {
		g.emit(Event{Kind: EventUpdate, Member: Member{Name: fmt.Sprint(i)}})
	}
	if got := g.dropped.Load(); got != 10 {
		t.Fatalf("dropped %d, want 10", got)
	}
	if first := <-g.events; first.Member.Name != "10" {
		t.Fatalf("oldest kept event is %q, want 10 (oldest dropped first)", first.Member.Name)
	}
}

func TestMetaCodec(t *testing.T) {
	for _, m := range []map[string]string{
		nil,
		{},
		{"role": "manager"},
		{"a": "", "": "b", "ünï": "cödé", "raft": "127.0.0.1:7947"},
	} {
		b, err := encodeMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMeta(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(m) || !maps.Equal(got, m) && len(m) > 0 {
			t.Errorf("round trip %v -> %v", m, got)
		}
	}
	// Deterministic, so an unchanged map is never gossiped as an update.
	m := map[string]string{"x": "1", "y": "2", "z": "3", "w": "4"}
	b1, _ := encodeMeta(m)
	for range 20 {
		b2, _ := encodeMeta(m)
		if string(b1) != string(b2) {
			t.Fatal("encoding is not deterministic")
		}
	}
	for _, bad := range [][]byte{{2}, {1, 5, 'a'}, {1, 1, 'a', 9}} {
		if _, err := decodeMeta(bad); err == nil {
			t.Errorf("decode %v succeeded", bad)
		}
	}
	if got, err := decodeMeta(nil); err != nil || len(got) != 0 {
		t.Errorf("decode nil = %v, %v", got, err)
	}
}

// A member that restarts without joining anyone is found again by the
// survivors' reconnect loop (the path that heals a partition after
// memberlist has stopped talking to members it declared dead).
func TestReconnectFindsRestartedMember(t *testing.T) {
	fast := func(c *Config) { c.ReconnectInterval = 200 * time.Millisecond }
	a := start(t, "a", "127.77.13.1", fast)
	b := start(t, "b", "127.77.13.2", fast)
	if _, err := b.Join([]string{addrOf(a)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a and b to see each other", func() bool { return a.NumAlive() == 2 && b.NumAlive() == 2 })
	_, port := a.LocalAddr()
	_ = a.Shutdown()
	waitEvent(t, b, 8*time.Second, EventFail, "a")

	a2 := start(t, "a", "127.77.13.1", func(c *Config) { fast(c); c.BindPort = port })
	waitEvent(t, b, 5*time.Second, EventJoin, "a")
	waitFor(t, 5*time.Second, "restarted a to see b", func() bool { return a2.NumAlive() == 2 })
}
