package lb

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarmlet/swarmlet/internal/netnstest"
	"github.com/swarmlet/swarmlet/internal/testlog"
)

// Network namespace tests run in internal/netnstest's anonymous namespaces:
// the nftables balancer gets the namespace fd in Config.NetNSFd and opens its
// netlink sockets there, so it never sees the host's ruleset.
type testNS = netnstest.NS

func newTestNS(t testing.TB) *testNS { return netnstest.New(t) }

// idServer is a TCP backend that answers each connection with its name and
// records the peer address it saw.
type idServer struct {
	name string
	ln   net.Listener
	mu   sync.Mutex
	hits int
	peer string
}

func startIDServer(t testing.TB, name, addr string, listen func(string) (net.Listener, error)) *idServer {
	t.Helper()
	ln, err := listen(addr)
	if err != nil {
		t.Fatalf("backend %s listen %s: %v", name, addr, err)
	}
	s := &idServer{name: name, ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.hits++
			s.peer = c.RemoteAddr().String()
			s.mu.Unlock()
			io.WriteString(c, name+"\n")
			c.Close()
		}
	}()
	return s
}

func (s *idServer) stats() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits, s.peer
}

// askID dials addr and returns the name the backend answered with.
func askID(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	return strings.TrimSpace(line), nil
}

// spread makes n connections to addr with dial (which must create the socket
// in the right namespace) and counts answers per backend name.
func spread(n int, dial func() (string, error)) (map[string]int, error) {
	got := map[string]int{}
	for range n {
		id, err := dial()
		if err != nil {
			return got, err
		}
		got[id]++
	}
	return got, nil
}

func testLogger(t testing.TB) *slog.Logger { return testlog.New(t) }
